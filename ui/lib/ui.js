// Building blocks every page shares: the loading / empty / error states and `load()` that
// switches between them, panels, stat cards, badges, tables, selects, time-range presets,
// confirmation dialogs, and the product list for filters.

import { h, replace } from './dom.js';
import { api, session } from './api.js';
import { whenLoaded } from './router.js';

export function loadingState(text = 'Loading…') {
  return h('div', { class: 'state', role: 'status' }, h('span', { class: 'loader', 'aria-hidden': 'true' }), text);
}

export function emptyState(text) {
  return h('div', { class: 'state empty' }, text);
}

/** An API error as the operator should read it: the message, the code, and a retry. */
export function errorState(error, retry) {
  return h('div', { class: 'state error', role: 'alert' },
    h('strong', {}, 'Could not load this: '), error.message || String(error),
    error.code ? [' ', h('code', {}, `(${error.code})`)] : null,
    retry ? [' ', h('button', { type: 'button', class: 'ghost small', onclick: retry }, 'Retry')] : null);
}

/**
 * Shows a loading state in `container`, awaits `fetcher()`, then renders `render(data)` into
 * it, or the empty state when `isEmpty(data)`, or the error state. Resolves to the data (or
 * null on error). Aborted loads (navigation away) render nothing.
 */
export async function load(container, fetcher, render, { isEmpty = () => false, empty = 'Nothing here yet.' } = {}) {
  replace(container, loadingState());
  try {
    const data = await fetcher();
    if (isEmpty(data)) replace(container, emptyState(typeof empty === 'function' ? empty(data) : empty));
    else replace(container, render(data));
    return data;
  } catch (error) {
    if (error.name === 'AbortError') return null;
    replace(container, errorState(error, () => load(container, fetcher, render, { isEmpty, empty })));
    return null;
  }
}

export function panel(title, ...children) {
  return h('section', { class: 'panel' }, title ? h('h2', {}, title) : null, ...children);
}

export function pageHead(title, subtitle, ...actions) {
  return h('div', { class: 'page-head' },
    h('div', {}, h('h1', {}, title), subtitle ? h('p', {}, subtitle) : null),
    actions.length ? h('div', { class: 'row' }, ...actions) : null);
}

export function card(label, value, hint, testId) {
  return h('div', { class: 'card', 'data-card': testId },
    h('div', { class: 'label' }, label),
    h('div', { class: 'value' }, value),
    hint ? h('div', { class: 'hint' }, hint) : null);
}

export function badge(kind, text) {
  return h('span', { class: `badge ${kind}` }, text);
}

/** columns: [{label, num?, className?}]; rows: arrays of cells (nodes or text). */
export function table(columns, rows, { caption, rowAttrs } = {}) {
  return h('div', { class: 'table-wrap' },
    h('table', {},
      caption ? h('caption', { class: 'muted small' }, caption) : null,
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { class: [c.num && 'num', c.className], scope: 'col' }, c.label)))),
      h('tbody', {}, rows.map((cells, i) => h('tr', rowAttrs ? rowAttrs(i) : {},
        cells.map((cell, j) => h('td', { class: [columns[j]?.num && 'num', columns[j]?.className] }, cell)))))));
}

/** A labelled select; options are values or [value, label] pairs. */
export function select(label, name, options, value, onchange) {
  const el = h('select', { name, onchange: onchange && ((e) => onchange(e.target.value)) },
    options.map((o) => {
      const [v, text] = Array.isArray(o) ? o : [o, o];
      return h('option', { value: v, selected: v === value }, text);
    }));
  return h('label', {}, label, el);
}

export function textInput(label, name, value, attrs = {}) {
  return h('label', { class: attrs.wide ? 'wide' : null }, label,
    h('input', { type: attrs.type || 'text', name, value: value || '', placeholder: attrs.placeholder, list: attrs.list, autocomplete: 'off', spellcheck: 'false' }));
}

/** Time-range presets as a pressed-button group; `onpick(value)` with '' meaning all time. */
export const RANGES = [['-1h', '1 h'], ['-24h', '24 h'], ['-7d', '7 d'], ['-30d', '30 d'], ['', 'All']];
export function rangePresets(current, onpick, ranges = RANGES) {
  const group = h('div', { class: 'presets', role: 'group', 'aria-label': 'Time range' });
  for (const [value, label] of ranges) {
    group.append(h('button', {
      type: 'button', 'aria-pressed': String(value === current), 'data-range': value,
      onclick: () => {
        for (const b of group.children) b.setAttribute('aria-pressed', String(b.dataset.range === value));
        onpick(value);
      },
    }, label));
  }
  return group;
}

/**
 * A modal dialog with `body` and an OK button; resolves to the form's values (an object) when
 * confirmed, or null when cancelled. `validate(values)` may return a message to keep it open.
 */
export function dialog({ title, body, confirm = 'OK', danger = false, validate }) {
  return new Promise((resolve) => {
    const message = h('p', { class: 'field-error', role: 'alert' });
    const form = h('form', { method: 'dialog' },
      h('h2', {}, title), body, message,
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'ghost', value: 'cancel', onclick: () => el.close('cancel') }, 'Cancel'),
        h('button', { type: 'submit', class: danger ? 'danger' : null, value: 'ok' }, confirm)));
    const el = h('dialog', { 'aria-label': title }, form);
    form.addEventListener('submit', (event) => {
      const values = Object.fromEntries(new FormData(form));
      const problem = validate && validate(values);
      if (problem) { event.preventDefault(); message.textContent = problem; return; }
      el.returnValue = 'ok';
      el.dataset.values = JSON.stringify(values);
    });
    el.addEventListener('close', () => {
      el.remove();
      resolve(el.returnValue === 'ok' ? JSON.parse(el.dataset.values || '{}') : null);
    });
    document.body.append(el);
    el.showModal();
  });
}

let productsPromise = null;
/**
 * Ids of the products the signed-in token sees (`GET /api/v1/whoami`: the configured products
 * in its scope), cached for the session.
 */
export function products() {
  if (!productsPromise) {
    productsPromise = api('/api/v1/whoami')
      .then((me) => me.products.map((product) => product.id).sort())
      .catch(() => { productsPromise = null; return []; });
  }
  return productsPromise;
}
// Another token (after a sign-out and sign-in) sees other products.
session.onChange(() => { productsPromise = null; });

/**
 * A product select that fills itself in with the product list: when focused, or once the page's
 * own data is on screen (the list's query never delays a page).
 */
export function productSelect(value, onchange, { label = 'Product', allLabel = 'All products' } = {}) {
  const wrapper = select(label, 'product', [['', allLabel]], '', onchange);
  const el = wrapper.querySelector('select');
  if (value) el.append(h('option', { value, selected: true }, value));
  let filled = false;
  const fill = () => {
    if (filled) return;
    filled = true;
    products().then((list) => {
      for (const id of list) if (id !== value) el.append(h('option', { value: id }, id));
    });
  };
  el.addEventListener('focus', fill, { once: true });
  whenLoaded(fill);
  return wrapper;
}

/** A short notice that goes away by itself. */
export function flash(container, text, kind = 'ok') {
  const note = h('div', { class: `notice ${kind}`, role: 'status' }, text);
  container.prepend(note);
  setTimeout(() => note.remove(), 6000);
}

let pendingFlash = null;
/** A notice for the next page rendered (after a save that navigates away). */
export function flashNext(text) { pendingFlash = text; }
/** Shows the pending notice, if any, in `container`. */
export function showPendingFlash(container) {
  if (pendingFlash) flash(container, pendingFlash);
  pendingFlash = null;
}
