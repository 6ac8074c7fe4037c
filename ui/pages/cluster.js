// One error cluster: its title, status and figures, its 30-day daily chart, the versions and
// platforms it occurs on, sample events (expandable), a link to all its events, and the
// resolve / ignore / reopen actions.

import { h, replace } from '../lib/dom.js';
import { api, query } from '../lib/api.js';
import { fmtNumber, fmtRelative, fmtTime, fmtDay } from '../lib/format.js';
import { stackedBars, hbars } from '../lib/chart.js';
import { eventsTable } from '../lib/events-table.js';
import { statusBadge, clusterActions, describeIgnore } from '../lib/cluster-actions.js';
import { installsText, countText, distinctionText } from './clusters.js';
import { badge, panel, card, errorState, loadingState, emptyState, flash } from '../lib/ui.js';

function shares(map, title) {
  const rows = Object.entries(map || {}).sort((a, b) => b[1] - a[1]).slice(0, 12)
    .map(([label, value]) => ({ label, value }));
  return rows.length ? hbars(rows, { title, cls: 's-3' }) : emptyState('None recorded.');
}

export default {
  title: 'Cluster',
  render(ctx) {
    const id = ctx.params.id;
    const notices = h('div', {});
    const body = h('div', {}, loadingState());
    ctx.view.append(h('p', {}, h('a', { href: '/clusters' }, '← All clusters')), notices, body);

    const show = ({ cluster: c, samples }) => {
      document.title = `${c.title} · telemetryd`;
      const samplesTable = eventsTable({ caption: 'Sample events' });
      samplesTable.add(samples || []);
      const changed = (updated) => {
        flash(notices, `Cluster is now ${updated.status}.`);
        show({ cluster: { ...c, ...updated, daily: c.daily }, samples });
      };
      replace(body,
        h('div', { class: 'page-head' },
          h('div', {},
            h('h1', { id: 'cluster-title' }, c.title),
            distinctionText(c) ? h('p', { class: 'cluster-distinction', id: 'cluster-distinction' }, distinctionText(c)) : null,
            h('div', { class: 'row' }, badge(`level-${c.severity}`, c.severity), statusBadge(c),
              c.status === 'ignored' ? h('span', { class: 'muted small' }, describeIgnore(c.ignore)) : null,
              c.resolved_in_version ? h('span', { class: 'muted small' }, `resolved in ${c.resolved_in_version}`) : null,
              h('span', { class: 'muted small' }, `${c.product} · fingerprint `, h('code', {}, c.id)))),
          h('div', { class: 'row' },
            h('a', { class: 'button ghost', href: `/events${query({ fingerprint: c.id, from: 'all' })}`, id: 'cluster-events-link' }, 'All its events'),
            clusterActions(c, changed, (e) => notices.prepend(errorState(e))))),
        h('div', { class: 'cards' },
          card('Events', countText(c), c.count_estimated ? `estimated from ${fmtNumber(c.raw_count)} stored (sampled)` : null, 'count'),
          card('Installs', installsText(c), c.installs_estimated ? 'estimated' : null, 'installs'),
          card('First seen', fmtRelative(c.first_seen), fmtTime(c.first_seen), 'first_seen'),
          card('Last seen', fmtRelative(c.last_seen), fmtTime(c.last_seen), 'last_seen')),
        panel('Events per day (30 days)', (c.daily || []).some((d) => d.count > 0)
          ? stackedBars(c.daily.map((d) => ({ ...d, x: d.day_ms })), [{ label: 'events', cls: `s-${c.severity}`, value: (d) => d.count }], { title: 'Events per day', xLabel: fmtDay })
          : emptyState('No events in the last 30 days.')),
        h('div', { class: 'grid-2' },
          panel('App versions', shares(c.app_versions, 'Events by app version')),
          panel('Platforms', shares(c.platforms, 'Events by platform'))),
        panel('Sample events', samples?.length ? samplesTable.element : emptyState('No sample events are stored any more.')));
    };

    const fetchCluster = async () => {
      try {
        show(await api(`/api/v1/clusters/${encodeURIComponent(id)}`, { signal: ctx.signal }));
      } catch (error) {
        if (error.name === 'AbortError') return;
        replace(body, errorState(error, fetchCluster));
      }
      ctx.loaded();
    };
    fetchCluster();
  },
};
