// Events: search with the query language (with its syntax help), filters that live in the
// URL, a time range with presets or custom bounds, the matches over time, a table that pages
// by cursor as it scrolls, rows that expand into the whole event, NDJSON / CSV export, and a
// link to the trace when the search is for one.

import { h, replace } from '../lib/dom.js';
import { api, query, download, session } from '../lib/api.js';
import { fmtNumber, toLocalInput, fromLocalInput } from '../lib/format.js';
import { eventsTable } from '../lib/events-table.js';
import { eventsChart, seriesRange, LEVELS } from './overview.js';
import { load, panel, pageHead, productSelect, select, textInput, rangePresets, errorState, emptyState, loadingState } from '../lib/ui.js';

const PAGE_SIZE = 50;
const DEFAULT_FROM = '-24h';
/** Filters with their own inputs; `datalist` ones suggest values seen in the range. */
const FIELDS = [['platform', 'Platform'], ['channel', 'Channel'], ['module', 'Module'], ['name', 'Event name'], ['app_version', 'App version']];
/** Filters that arrive by link (from an event, a cluster, a map) and show as removable chips. */
const LINKED = ['install_id', 'user_id', 'session_id', 'trace_id', 'span_id', 'parent_span_id', 'fingerprint', 'country_code', 'region_code', 'release_channel'];
const ALL_KEYS = ['q', 'product', 'level', ...FIELDS.map(([k]) => k), ...LINKED, 'from', 'to'];
/** Older spellings that saved links may still carry: `/events?country=US` is `country_code=US`. */
const ALIASES = { country: 'country_code', region: 'region_code' };

const HELP = [
  ['timeout', 'free text in the name, error message/code/domain, module and string dimensions'],
  ['"connection reset"', 'a phrase'],
  ['level:error', 'exact field match (product, name, level, platform, channel, module, app_version, release_channel, os_family, install_id, user_id, session_id, trace_id, span_id, parent_span_id, country_code, region_code, error_domain, error_code, fingerprint)'],
  ['carrier:twilio', 'a dimension'],
  ['latency_ms:>500', 'a metric range (>, >=, <, <=)'],
  ['timestamp:>=-2h', 'a time bound (RFC 3339, a date, epoch ms, now, -24h)'],
  ['level:error AND NOT platform:web', 'AND (or just a space), OR, NOT / -word, parentheses'],
];

/** The trace a search is for: its `trace_id` filter, or a `trace_id:` term of the query. */
function searchedTrace(state) {
  if (/^[0-9a-f]{32}$/i.test(state.trace_id)) return state.trace_id;
  const term = /(?<![-\w])(?<!NOT\s+)trace_id:"?([0-9a-f]{32})(?![0-9a-z])/i.exec(state.q);
  return term ? term[1] : null;
}

/** The API's `from`: `all` means no lower bound. */
function apiFrom(from) {
  return from === 'all' ? '' : from;
}

export default {
  title: 'Events',
  render(ctx) {
    const state = Object.fromEntries(ALL_KEYS.map((k) => [k, ctx.query.get(k) || '']));
    for (const [old, key] of Object.entries(ALIASES)) state[key] ||= ctx.query.get(old) || '';
    if (!state.from) state.from = DEFAULT_FROM;
    let cursor = null;
    let loading = false;
    let generation = 0;

    const filters = () => {
      const f = {};
      for (const k of ALL_KEYS) if (state[k]) f[k] = state[k];
      f.from = apiFrom(state.from);
      return f;
    };

    const results = eventsTable();
    const summary = h('p', { class: 'muted', id: 'events-summary', role: 'status' });
    const tableBox = h('div', { id: 'events-results' });
    const chartBox = h('div', { id: 'events-chart' });
    const more = h('button', { type: 'button', class: 'ghost', hidden: true, onclick: () => nextPage() }, 'Load more');
    const sentinel = h('div', { class: 'pager' }, more);
    const chips = h('div', { class: 'chips', id: 'events-chips' });
    const traceLink = h('a', { class: 'button ghost small', id: 'events-trace-link', hidden: true }, 'View trace');

    async function nextPage() {
      if (loading || !cursor) return;
      loading = true;
      more.disabled = true;
      const mine = generation;
      try {
        const page = await api(`/api/v1/events${query({ ...filters(), limit: PAGE_SIZE, cursor })}`, { signal: ctx.signal });
        if (mine !== generation) return;
        results.add(page.events);
        cursor = page.next_cursor;
      } catch (error) {
        if (error.name !== 'AbortError') sentinel.append(errorState(error));
      } finally {
        loading = false;
        more.disabled = false;
        more.hidden = !cursor;
      }
    }

    async function search({ push = false } = {}) {
      generation += 1;
      const mine = generation;
      const shown = { ...state, from: state.from === DEFAULT_FROM ? '' : state.from };
      ctx.setQuery(shown, { push });
      renderChips();
      const trace = searchedTrace(state);
      traceLink.hidden = !trace;
      if (trace) traceLink.setAttribute('href', `/traces/${encodeURIComponent(trace)}`);
      results.clear();
      cursor = null;
      more.hidden = true;
      summary.textContent = '';
      replace(tableBox, loadingState('Searching…'));
      const f = filters();
      load(chartBox, () => api(`/api/v1/stats/timeseries${query({ ...f, ...seriesRange(state.from, state.to) })}`, { signal: ctx.signal }),
        (s) => eventsChart(s, 'Matching events over time', 150),
        { isEmpty: (s) => !s.buckets.some((b) => b.total > 0), empty: 'No matching events over time.' });
      try {
        const page = await api(`/api/v1/events${query({ ...f, limit: PAGE_SIZE })}`, { signal: ctx.signal });
        if (mine !== generation) return;
        cursor = page.next_cursor;
        summary.textContent = `${fmtNumber(page.total)}${page.total_exact === false ? '+' : ''} ${page.total === 1 ? 'event' : 'events'} match`;
        summary.dataset.total = String(page.total);
        if (page.events.length === 0) {
          replace(tableBox, emptyState('No events match. Widen the time range or remove a filter.'));
        } else {
          results.add(page.events);
          replace(tableBox, results.element);
        }
        more.hidden = !cursor;
      } catch (error) {
        if (error.name === 'AbortError') return;
        summary.textContent = '';
        replace(tableBox, errorState(error, () => search()));
      }
      ctx.loaded();
    }

    function renderChips() {
      replace(chips, LINKED.filter((k) => state[k]).map((k) => h('span', { class: 'chip', 'data-filter': k },
        `${k}: ${state[k]}`,
        h('button', { type: 'button', 'aria-label': `Remove filter ${k}`, onclick: () => { state[k] = ''; search({ push: true }); } }, '×'))));
    }

    // The filter form.
    const qInput = h('input', { type: 'search', name: 'q', value: state.q, placeholder: 'level:error timeout', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'query-help' });
    const fieldInputs = FIELDS.map(([key, label]) => {
      const wrapper = textInput(label, key, state[key], { list: `suggest-${key}` });
      const input = wrapper.querySelector('input');
      const list = h('datalist', { id: `suggest-${key}` });
      input.addEventListener('focus', () => suggest(key, list), { once: true });
      input.addEventListener('change', () => { state[key] = input.value.trim(); search({ push: true }); });
      wrapper.append(list);
      return wrapper;
    });
    const fromInput = h('input', { type: 'datetime-local', name: 'from_custom', value: isRelative(state.from) ? '' : toLocalInput(Date.parse(state.from)) });
    const toInput = h('input', { type: 'datetime-local', name: 'to_custom', value: state.to ? toLocalInput(Date.parse(state.to)) : '' });
    const presetValues = [['-1h', '1 h'], ['-24h', '24 h'], ['-7d', '7 d'], ['-30d', '30 d'], ['all', 'All']];
    const presets = rangePresets(state.from, (v) => { state.from = v; state.to = ''; fromInput.value = ''; toInput.value = ''; search({ push: true }); }, presetValues);
    const custom = () => {
      const from = fromLocalInput(fromInput.value);
      const to = fromLocalInput(toInput.value);
      state.from = from ? new Date(from).toISOString() : DEFAULT_FROM;
      state.to = to ? new Date(to).toISOString() : '';
      for (const b of presets.children) b.setAttribute('aria-pressed', String(b.dataset.range === state.from));
      search({ push: true });
    };
    fromInput.addEventListener('change', custom);
    toInput.addEventListener('change', custom);

    const form = h('form', {
      class: 'filters', role: 'search', 'aria-label': 'Search events',
      onsubmit: (e) => { e.preventDefault(); state.q = qInput.value.trim(); search({ push: true }); },
    },
    h('label', { class: 'wide' }, 'Search', qInput),
    h('button', { type: 'submit' }, 'Search'),
    productSelect(state.product, (v) => { state.product = v; search({ push: true }); }),
    select('Level', 'level', [['', 'Any level'], ...LEVELS], state.level, (v) => { state.level = v; search({ push: true }); }),
    fieldInputs);

    const help = h('details', { id: 'query-help', class: 'small' },
      h('summary', {}, 'Query syntax'),
      h('table', {}, h('tbody', {}, HELP.map(([example, meaning]) => h('tr', {},
        h('td', {}, h('button', { type: 'button', class: 'link mono', onclick: () => { qInput.value = example; qInput.focus(); } }, example)),
        h('td', { class: 'muted' }, meaning))))));

    const exportButtons = ['ndjson', 'csv'].map((format) => h('button', {
      type: 'button', class: 'ghost small',
      onclick: async (e) => {
        const button = e.currentTarget;
        button.disabled = true;
        try { await download(`/api/v1/events/export${query({ ...filters(), format })}`, `events.${format}`); } catch (error) { tableBox.prepend(errorState(error)); } finally { button.disabled = false; }
      },
    }, `Export ${format.toUpperCase()}`));

    ctx.view.append(
      pageHead('Events', 'Newest first. Filters and the query are kept in the address, so a search can be shared.'),
      panel(null, form, help,
        h('div', { class: 'row' }, presets,
          h('label', { class: 'inline small' }, 'From', fromInput),
          h('label', { class: 'inline small' }, 'To', toInput))),
      chips,
      panel(null, chartBox),
      // Exports are admin actions (audited); viewers browse only.
      panel(null, h('div', { class: 'row' }, summary, traceLink, h('span', { class: 'spacer' }), session.canWrite ? exportButtons : null), tableBox, sentinel),
    );

    const observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) nextPage();
    }, { rootMargin: '300px' });
    observer.observe(sentinel);
    ctx.signal.addEventListener('abort', () => observer.disconnect());
    search();

    const suggestions = {};
    async function suggest(field, list) {
      const key = `${field}|${state.product}`;
      suggestions[key] ||= api(`/api/v1/stats/breakdown${query({ field, product: state.product, from: apiFrom(state.from), limit: 50 })}`)
        .then((r) => r.rows.map((row) => row.value)).catch(() => []);
      replace(list, (await suggestions[key]).map((v) => h('option', { value: v })));
    }
  },
};

function isRelative(from) {
  return !from || from === 'all' || from.startsWith('-');
}
