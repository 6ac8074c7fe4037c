// Clusters: the 14-day timeline of clustered errors by severity, and the cluster list with
// severity, status, title (with what sets it apart from clusters sharing it), weighted count,
// installs, versions, last seen and a daily sparkline; filters and sorting in the URL, paging,
// and resolve / ignore / reopen for admins.

import { h } from '../lib/dom.js';
import { api, query } from '../lib/api.js';
import { fmtNumber, fmtRelative, fmtTime, fmtDay } from '../lib/format.js';
import { stackedBars, sparkline } from '../lib/chart.js';
import { statusBadge, clusterActions, describeIgnore } from '../lib/cluster-actions.js';
import { load, panel, pageHead, productSelect, select, textInput, badge, table, errorState, flash } from '../lib/ui.js';

const PAGE_SIZE = 25;
const KEYS = ['product', 'status', 'severity', 'platform', 'app_version', 'sort'];
export const SEVERITY_SERIES = ['warn', 'error', 'fatal'].map((level) => ({ label: level, cls: `s-${level}`, value: (d) => d[level] || 0 }));

/** The versions a cluster was seen in, most events first. */
export function topVersions(map, n = 3) {
  const entries = Object.entries(map || {}).sort((a, b) => b[1] - a[1]);
  const shown = entries.slice(0, n).map(([v]) => v).join(', ');
  return entries.length > n ? `${shown} +${entries.length - n}` : shown;
}

export function installsText(cluster) {
  return `${cluster.installs_estimated ? '~' : ''}${fmtNumber(cluster.installs)}`;
}

/** The weighted event count, `~` when sampling makes it an estimate. */
export function countText(cluster) {
  return `${cluster.count_estimated ? '~' : ''}${fmtNumber(Math.round(cluster.count))}`;
}

const DIMENSION_LABELS = { error_domain: 'domain', error_code: 'code' };
/** What sets a cluster apart from the clusters sharing its title ('' when none do). */
export function distinctionText(cluster) {
  return (cluster.distinguished_by || [])
    .map((d) => `${DIMENSION_LABELS[d.field] || d.field} ${d.value ?? '(none)'}`).join(' · ');
}

export default {
  title: 'Clusters',
  render(ctx) {
    const state = Object.fromEntries(KEYS.map((k) => [k, ctx.query.get(k) || '']));
    state.sort ||= 'last_seen';
    let offset = Number(ctx.query.get('offset')) || 0;
    const timeline = h('div', { id: 'clusters-timeline' });
    const list = h('div', { id: 'clusters-list' });
    const notices = h('div', {});

    const refreshTimeline = () => load(timeline,
      () => api(`/api/v1/clusters/timeline${query({ product: state.product, days: 14 })}`, { signal: ctx.signal }),
      (t) => stackedBars(t.days.map((d) => ({ ...d, x: d.day_ms })), SEVERITY_SERIES, { title: 'Clustered errors per day by severity', xLabel: fmtDay }),
      { isEmpty: (t) => !t.days.some((d) => d.warn + d.error + d.fatal > 0), empty: 'No clustered errors in the last 14 days.' });

    const refreshList = () => {
      ctx.setQuery({ ...state, sort: state.sort === 'last_seen' ? '' : state.sort, offset: offset || '' });
      return load(list,
        () => api(`/api/v1/clusters${query({ ...state, limit: PAGE_SIZE, offset })}`, { signal: ctx.signal }),
        renderList,
        { isEmpty: (r) => r.clusters.length === 0, empty: 'No clusters match these filters.' });
    };

    const changed = (updated) => {
      flash(notices, `Cluster “${updated.title}” is now ${updated.status}.`);
      refreshList();
    };
    const failed = (error) => notices.prepend(errorState(error));

    function renderList(r) {
      const rows = r.clusters.map((c) => [
        badge(`level-${c.severity}`, c.severity),
        h('div', {}, statusBadge(c), c.status === 'ignored' ? h('div', { class: 'muted small' }, describeIgnore(c.ignore)) : null,
          c.status === 'resolved' && c.resolved_in_version ? h('div', { class: 'muted small' }, `in ${c.resolved_in_version}`) : null),
        h('div', {}, h('a', { href: `/clusters/${encodeURIComponent(c.id)}`, class: 'cluster-title' }, c.title),
          distinctionText(c) ? h('div', { class: 'cluster-distinction small' }, distinctionText(c)) : null,
          h('div', { class: 'muted small' }, `${c.product} · first seen ${fmtRelative(c.first_seen)}`)),
        h('span', { class: 'cluster-count', title: c.count_estimated ? `${fmtNumber(c.raw_count)} stored, weighted by sampling` : null }, countText(c)),
        installsText(c),
        topVersions(c.app_versions),
        h('span', { title: fmtTime(c.last_seen) }, fmtRelative(c.last_seen)),
        sparkline((c.daily || []).map((d) => d.count), { labels: (c.daily || []).map((d) => fmtDay(d.day_ms)), title: `Daily events of ${c.title}` }),
        clusterActions(c, changed, failed),
      ]);
      const pages = Math.ceil(r.total / PAGE_SIZE);
      const page = Math.floor(offset / PAGE_SIZE) + 1;
      return [
        h('p', { class: 'muted', id: 'clusters-total', 'data-total': r.total }, `${fmtNumber(r.total)} ${r.total === 1 ? 'cluster' : 'clusters'}`),
        table([{ label: 'Severity' }, { label: 'Status' }, { label: 'Title' }, { label: 'Events', num: true }, { label: 'Installs', num: true },
          { label: 'Versions', className: 'hide-narrow' }, { label: 'Last seen' }, { label: '14 days', className: 'hide-narrow' }, { label: '' }],
        rows, { rowAttrs: (i) => ({ class: 'cluster-row', 'data-id': r.clusters[i].id, 'data-status': r.clusters[i].status }) }),
        pages > 1 ? h('div', { class: 'pager' },
          h('button', { type: 'button', class: 'ghost small', disabled: page <= 1, onclick: () => { offset -= PAGE_SIZE; refreshList(); } }, 'Previous'),
          h('span', { class: 'muted' }, `Page ${page} of ${pages}`),
          h('button', { type: 'button', class: 'ghost small', disabled: page >= pages, onclick: () => { offset += PAGE_SIZE; refreshList(); } }, 'Next')) : null,
      ];
    }

    const set = (key) => (value) => { state[key] = value; offset = 0; refreshList(); if (key === 'product') refreshTimeline(); };
    const textFilter = (key, label) => {
      const wrapper = textInput(label, key, state[key]);
      wrapper.querySelector('input').addEventListener('change', (e) => set(key)(e.target.value.trim()));
      return wrapper;
    };
    const filters = h('div', { class: 'filters' },
      productSelect(state.product, set('product')),
      select('Status', 'status', [['', 'Any status'], 'open', 'regressed', 'resolved', 'ignored'], state.status, set('status')),
      select('Severity', 'severity', [['', 'Any severity'], 'warn', 'error', 'fatal'], state.severity, set('severity')),
      textFilter('platform', 'Platform'),
      textFilter('app_version', 'App version'),
      select('Sort by', 'sort', [['last_seen', 'Last seen'], ['count', 'Events'], ['installs', 'Installs']], state.sort, set('sort')));

    ctx.view.append(
      pageHead('Clusters', 'Errors and warnings grouped by fingerprint.'),
      panel('Last 14 days', timeline),
      notices,
      panel(null, filters, list));
    Promise.all([refreshTimeline(), refreshList()]).then(() => ctx.loaded());
  },
};
