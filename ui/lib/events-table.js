// The events table shared by the Events and cluster pages: one row per event that expands
// (click, or Enter/Space on its toggle) into the whole event — environment, ids, dimensions,
// metrics, the error with its stack, links to its cluster, to its install's events and to its
// trace, and the raw JSON.

import { h } from './dom.js';
import { query } from './api.js';
import { fmtTime, fmtShortTime, countryName, fmtNumber } from './format.js';
import { badge } from './ui.js';

const ENVIRONMENT = ['product', 'platform', 'channel', 'module', 'app_version', 'release_channel', 'os_family',
  'os_version', 'arch', 'runtime', 'device_model', 'source', 'schema_version', 'sample_rate'];
const IDS = ['id', 'install_id', 'user_id', 'session_id', 'trace_id', 'span_id', 'parent_span_id', 'fingerprint'];

function kv(entries) {
  const rows = entries.filter(([, v]) => v !== undefined && v !== null && v !== '');
  if (!rows.length) return h('p', { class: 'muted small' }, 'None');
  return h('dl', { class: 'kv' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v instanceof Node ? v : String(v))]));
}

function section(title, body) {
  return h('div', {}, h('h3', {}, title), body);
}

/** Everything about one event, with links to related pages (`inTrace`: shown on its trace's page). */
export function eventDetail(event, { inTrace = false } = {}) {
  const err = event.error || {};
  const place = event.country_code
    ? `${countryName(event.country_code)}${event.region_code ? ` (${event.region_code})` : ''}`
    : null;
  const links = h('div', { class: 'row' },
    event.fingerprint ? h('a', { class: 'button ghost small', href: `/clusters/${encodeURIComponent(event.fingerprint)}`, 'data-link': 'cluster' }, 'Open its cluster') : null,
    event.install_id ? h('a', { class: 'button ghost small', href: `/events${query({ install_id: event.install_id, from: 'all' })}`, 'data-link': 'install' }, 'All events of this install') : null,
    event.user_id ? h('a', { class: 'button ghost small', href: `/events${query({ user_id: event.user_id, from: 'all' })}` }, 'All events of this user') : null,
    event.session_id ? h('a', { class: 'button ghost small', href: `/events${query({ session_id: event.session_id, from: 'all' })}` }, 'This session') : null,
    event.trace_id && !inTrace ? h('a', { class: 'button ghost small', href: `/traces/${encodeURIComponent(event.trace_id)}`, 'data-link': 'trace' }, 'View trace') : null,
    event.trace_id ? h('a', { class: 'button ghost small', href: `/events${query({ trace_id: event.trace_id, from: 'all' })}`, 'data-link': 'trace-events' }, 'All events of this trace') : null);
  return h('div', { class: 'event-detail' },
    links,
    h('div', { class: 'detail-grid' },
      section('Time', kv([['timestamp', fmtTime(event.timestamp)], ['received', fmtTime(event.received_at)], ['flags', (event.flags || []).join(', ')]])),
      section('Environment', kv([...ENVIRONMENT.map((k) => [k, event[k]]), ['location', place]])),
      section('Ids', kv(IDS.map((k) => [k, event[k] && h('code', {}, event[k])]))),
      section('Dimensions', kv(Object.entries(event.dims || {}))),
      section('Metrics', kv(Object.entries(event.metrics || {}).map(([k, v]) => [k, fmtNumber(v)])))),
    event.error ? section('Error', h('div', {},
      kv([['domain', err.domain], ['code', err.code], ['message', err.message]]),
      err.stack ? h('pre', { class: 'stack' }, err.stack) : null)) : null,
    h('details', {}, h('summary', {}, 'Raw JSON'), h('pre', {}, JSON.stringify(event, null, 2))));
}

/** The one-line summary of an event's error, or its most telling dimension. */
function summary(event) {
  if (event.error) return [event.error.code, event.error.message].filter(Boolean).join(': ');
  return Object.entries(event.dims || {}).slice(0, 3).map(([k, v]) => `${k}=${v}`).join(' ');
}

const COLUMNS = ['', 'Time', 'Level', 'Name', 'Product', 'Platform', 'Version', 'Install', 'Summary'];

/** An empty table; `add(events)` appends rows. */
export function eventsTable({ caption = 'Events' } = {}) {
  const tbody = h('tbody', {});
  const element = h('div', { class: 'table-wrap' },
    h('table', { class: 'events' },
      h('caption', { class: 'muted small', hidden: true }, caption),
      h('thead', {}, h('tr', {}, COLUMNS.map((c, i) => h('th', { scope: 'col', class: i >= 4 && i <= 7 ? 'hide-narrow' : null }, c)))),
      tbody));
  let serial = 0;

  function toggle(row, event, button) {
    const open = button.getAttribute('aria-expanded') === 'true';
    button.setAttribute('aria-expanded', String(!open));
    if (open) { row.nextElementSibling?.remove(); return; }
    const detail = h('tr', { class: 'detail-row', id: button.getAttribute('aria-controls') },
      h('td', { colspan: COLUMNS.length }, eventDetail(event)));
    row.after(detail);
  }

  function add(events) {
    for (const event of events) {
      serial += 1;
      const button = h('button', { type: 'button', class: 'expander', 'aria-expanded': 'false', 'aria-controls': `event-detail-${serial}`, 'aria-label': `Show event ${event.name}` }, '▸');
      const row = h('tr', { class: 'event-row', 'data-id': event.id },
        h('td', {}, button),
        h('td', { class: 'nowrap', title: fmtTime(event.timestamp) }, fmtShortTime(event.timestamp)),
        h('td', {}, badge(`level-${event.level}`, event.level)),
        h('td', { class: 'event-name' }, event.name),
        h('td', { class: 'hide-narrow' }, event.product),
        h('td', { class: 'hide-narrow' }, event.platform || ''),
        h('td', { class: 'hide-narrow' }, event.app_version || ''),
        h('td', { class: 'hide-narrow mono' }, event.install_id ? event.install_id.slice(0, 8) : ''),
        h('td', { class: 'truncate' }, summary(event)));
      button.addEventListener('click', (e) => { e.stopPropagation(); toggle(row, event, button); });
      row.addEventListener('click', (e) => { if (!e.target.closest('a, button') && !getSelection().toString()) toggle(row, event, button); });
      tbody.append(row);
    }
  }

  return { element, add, clear: () => tbody.replaceChildren(), rows: () => tbody.querySelectorAll('tr.event-row').length };
}
