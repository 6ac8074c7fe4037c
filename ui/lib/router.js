// The client-side router: matches `location.pathname` against `/clusters/:id`-style patterns,
// intercepts same-origin link clicks, renders one page at a time into the view (aborting the
// previous page's requests), and measures navigation → data on screen: a page calls
// `ctx.loaded()` when its data is visible, which sets `data-loaded` and `data-load-ms` on the
// view and records the time in `window.__telemetryd.timings`.

const timings = [];
window.__telemetryd = { timings };

let routes = [];
let view = null;
let guard = null;
let current = null;
let onRendered = () => {};
let firstRender = true;
/** Work deferred until the current page's data is on screen (see `whenLoaded`). */
let deferred = [];

function runDeferred() {
  const jobs = deferred;
  deferred = [];
  for (const job of jobs) job();
}

/** Runs `job` once the current page has its data on screen (at once if it has). */
export function whenLoaded(job) {
  if (view?.dataset.loaded === 'true') job();
  else deferred.push(job);
}

function compile(pattern) {
  const names = [];
  const source = pattern.replace(/:([a-z_]+)/g, (_, name) => { names.push(name); return '([^/]+)'; });
  return { regex: new RegExp(`^${source}/?$`), names };
}

/**
 * `table`: [{path, page}] where a page is `{title, render(ctx)}`; `render` may return a
 * cleanup function. `gate(path)` may return a page to render instead (the sign-in).
 */
export function start({ table, element, gate, rendered }) {
  routes = table.map((route) => ({ ...route, ...compile(route.path) }));
  view = element;
  guard = gate;
  onRendered = rendered || onRendered;
  window.addEventListener('popstate', () => render());
  document.addEventListener('click', interceptLinks);
  render();
}

function interceptLinks(event) {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest('a[href]');
  // getAttribute: SVG links (charts) have no string `href`/`target` properties.
  if (!link || link.getAttribute('target') || link.hasAttribute('download')) return;
  const url = new URL(link.getAttribute('href'), location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api/')) return;
  event.preventDefault();
  navigate(url.pathname + url.search + url.hash);
}

/** Goes to `url` (path + query) and renders its page. */
export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  render();
}

/** Re-renders the current page (after sign-in, or to reload). */
export function reload() {
  render();
}

function match(pathname) {
  for (const route of routes) {
    const found = route.regex.exec(pathname);
    if (found) {
      const params = {};
      route.names.forEach((name, i) => { params[name] = decodeURIComponent(found[i + 1]); });
      return { route, params };
    }
  }
  return null;
}

function render() {
  const startedAt = performance.now();
  if (current) {
    current.controller.abort();
    if (typeof current.cleanup === 'function') current.cleanup();
  }
  deferred = [];
  const controller = new AbortController();
  const found = match(location.pathname);
  const page = (guard && guard(location.pathname)) || found?.route.page || notFoundPage;
  const path = location.pathname;
  view.dataset.loaded = 'false';
  view.dataset.route = found && page === found.route.page ? found.route.path : page.id || 'none';
  delete view.dataset.loadMs;
  view.replaceChildren();
  const ctx = {
    view,
    params: found?.params || {},
    query: new URLSearchParams(location.search),
    signal: controller.signal,
    /** Marks the page's data as on screen (once per navigation). */
    loaded() {
      if (controller.signal.aborted || view.dataset.loaded === 'true') return;
      const ms = Math.round(performance.now() - startedAt);
      view.dataset.loaded = 'true';
      view.dataset.loadMs = String(ms);
      timings.push({ path, route: view.dataset.route, ms });
      setTimeout(runDeferred, 0);
    },
    /** Puts page state into the URL without re-rendering (`push` adds a history entry). */
    setQuery(params, { push = false } = {}) {
      const search = new URLSearchParams();
      for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') search.set(k, v);
      const text = search.toString();
      const url = location.pathname + (text ? `?${text}` : '');
      if (url === location.pathname + location.search) return;
      if (push) history.pushState(null, '', url);
      else history.replaceState(null, '', url);
      ctx.query = search;
    },
  };
  current = { controller, cleanup: null };
  document.title = page.title ? `${page.title} · telemetryd` : 'telemetryd';
  onRendered(path);
  try {
    current.cleanup = page.render(ctx);
  } catch (e) {
    view.textContent = `This page failed to render: ${e.message}`;
    throw e;
  }
  // After a navigation (not the first page), focus moves to the new content for screen readers.
  if (!firstRender && !view.contains(document.activeElement)) view.focus({ preventScroll: true });
  firstRender = false;
}

const notFoundPage = {
  id: 'not-found',
  title: 'Not found',
  render(ctx) {
    const p = document.createElement('p');
    p.className = 'state';
    p.textContent = `There is no page at ${location.pathname}.`;
    ctx.view.append(p);
    ctx.loaded();
  },
};
