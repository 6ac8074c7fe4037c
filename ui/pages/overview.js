// Overview: the last 24 h at a glance (events, errors, active installs, ingest rate, rejected
// and PII-blocked counts), events over time stacked by level, and the top event names,
// platforms and app versions of the chosen range; bars link into the Events page. With one
// product chosen, the release health of its app versions (crash-free sessions and installs,
// from Sentry SDKs' sessions) as the analytics API answers it.

import { h } from '../lib/dom.js';
import { api, query } from '../lib/api.js';
import { fmtNumber, fmtRate, fmtDay, fmtPercent } from '../lib/format.js';
import { stackedBars, hbars } from '../lib/chart.js';
import { load, panel, pageHead, card, productSelect, rangePresets, table } from '../lib/ui.js';

export const LEVELS = ['debug', 'info', 'warn', 'error', 'fatal'];
export const LEVEL_SERIES = LEVELS.map((level) => ({ label: level, cls: `s-${level}`, value: (b) => b.by_level?.[level] || 0 }));

const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const BUCKETS = ['1m', '5m', '15m', '1h', '3h', '6h', '12h', '1d'];
/** The longest range a chart without a lower bound ("all") shows. */
const ALL_FROM = '-90d';

function toMs(value, now) {
  const relative = /^-(\d+)([smhd])$/.exec(value || '');
  if (relative) return now - Number(relative[1]) * UNIT_MS[relative[2]];
  const parsed = Date.parse(value);
  return Number.isNaN(parsed) ? now : parsed;
}

/**
 * The time-series parameters for a range (`from` relative like `-24h`, RFC 3339, or `all`;
 * `to` optional): the smallest bucket that keeps the chart at 60 bars or fewer.
 */
export function seriesRange(from, to) {
  const now = Date.now();
  const start = from === 'all' || !from ? ALL_FROM : from;
  const span = (to ? toMs(to, now) : now) - toMs(start, now);
  const bucket = BUCKETS.find((b) => span / (Number(b.slice(0, -1)) * UNIT_MS[b.slice(-1)]) <= 60) || '1d';
  return { from: start, to: to || '', bucket };
}

const RANGES = [['-24h', '24 h'], ['-7d', '7 d'], ['-30d', '30 d']];
const BREAKDOWNS = [['name', 'Top event names'], ['platform', 'Platforms'], ['app_version', 'App versions']];

/** The events-over-time chart for a timeseries answer. */
export function eventsChart(series, title = 'Events over time by level', height = 220) {
  const buckets = series.buckets.map((b) => ({ ...b, x: b.start_ms }));
  return stackedBars(buckets, LEVEL_SERIES, { title, height, xLabel: series.bucket_ms >= 86_400_000 ? fmtDay : undefined });
}

export default {
  title: 'Overview',
  render(ctx) {
    const state = { product: ctx.query.get('product') || '', range: ctx.query.get('range') || '-24h' };
    const cards = h('div', { class: 'cards', id: 'overview-cards' });
    const timeline = h('div', { id: 'overview-timeline' });
    const breakdowns = BREAKDOWNS.map(([field]) => h('div', { id: `overview-${field}` }));
    const health = h('div', { id: 'overview-release-health' });
    const healthPanel = panel('Release health by app version', health);
    const rangeLabel = h('span', {}, RANGES.find(([r]) => r === state.range)?.[1] || state.range);

    const refresh = async () => {
      ctx.setQuery({ product: state.product, range: state.range === '-24h' ? '' : state.range });
      rangeLabel.textContent = RANGES.find(([r]) => r === state.range)?.[1] || state.range;
      const filter = { product: state.product, from: state.range };
      const opts = { signal: ctx.signal };
      const loads = [
        load(cards, () => api(`/api/v1/stats/overview${query({ product: state.product })}`, opts), renderCards),
        load(timeline, () => api(`/api/v1/stats/timeseries${query({ ...filter, ...seriesRange(state.range) })}`, opts),
          (series) => eventsChart(series), { isEmpty: (s) => !s.buckets.some((b) => b.total > 0), empty: 'No events in this range.' }),
        ...BREAKDOWNS.map(([field], i) => load(breakdowns[i],
          () => api(`/api/v1/stats/breakdown${query({ ...filter, field, limit: 10 })}`, opts),
          (r) => hbars(r.rows.map((row) => ({
            label: row.value || '(none)',
            value: row.events,
            title: `${row.value}: ${fmtNumber(row.events)} events, ${fmtNumber(row.installs)} installs`,
            href: `/events${query({ ...filter, [field]: row.value })}`,
          })), { title: BREAKDOWNS[i][1] }),
          { isEmpty: (r) => r.rows.length === 0, empty: 'No events in this range.' })),
      ];
      // Release health is per product: shown once one is chosen.
      healthPanel.hidden = !state.product;
      if (state.product) {
        const spec = { product: state.product, kind: 'release_health', from: state.range };
        loads.push(load(health,
          () => api('/api/v1/analytics/query', { ...opts, method: 'POST', body: spec }),
          renderHealth,
          { isEmpty: (r) => r.releases.length === 0, empty: 'No sessions in this range (Sentry SDKs report them).' }));
      }
      await Promise.all(loads);
      ctx.loaded();
    };

    ctx.view.append(
      pageHead('Overview', 'The last 24 hours of every product, or of one.',
        productSelect(state.product, (v) => { state.product = v; refresh(); }),
        rangePresets(state.range, (v) => { state.range = v; refresh(); }, RANGES)),
      cards,
      panel(null, h('h2', {}, 'Events over time (', rangeLabel, ')'), timeline),
      h('div', { class: 'grid-3' }, BREAKDOWNS.map(([, title], i) => panel(title, breakdowns[i]))),
      healthPanel,
    );
    refresh();
  },
};

/** Crash-free share as a percentage of whole sessions or installs (`—` without any). */
const crashFree = (share) => (share == null ? '—' : fmtPercent(share, 1));

function renderHealth(answer) {
  const rows = answer.releases.map((r) => [r.app_version, fmtNumber(r.sessions), crashFree(r.crash_free_sessions),
    fmtNumber(r.installs), crashFree(r.crash_free_installs)]);
  const folded = answer.suppressed_groups
    ? `${answer.suppressed_groups} versions with too few installs are in "other".` : null;
  return table([{ label: 'App version' }, { label: 'Sessions', num: true }, { label: 'Crash-free sessions', num: true },
    { label: 'Installs', num: true }, { label: 'Crash-free installs', num: true }], rows,
  { caption: folded, rowAttrs: (i) => ({ 'data-release': answer.releases[i].app_version }) });
}

function renderCards(o) {
  // Process-wide figures are null for a token scoped to some products: only its own cards show.
  const processWide = o.store_events !== null;
  const own = [
    card('Events (24 h)', fmtNumber(o.events_24h), processWide ? `${fmtNumber(o.store_events)} stored in total` : null, 'events_24h'),
    card('Errors (24 h)', fmtNumber(o.errors_24h), 'level error or fatal', 'errors_24h'),
    card('Active installs (24 h)', fmtNumber(o.active_installs_24h), null, 'active_installs_24h'),
  ];
  if (!processWide) return own;
  return [
    ...own,
    card('Ingest rate', fmtRate(o.ingest_rate_per_s), 'over the last minute', 'ingest_rate_per_s'),
    card('Rejected', fmtNumber(o.rejected_total), 'since start', 'rejected_total'),
    card('PII blocked', fmtNumber(o.pii_blocked_total), o.index_lag ? `index lag ${fmtNumber(o.index_lag)}` : 'since start', 'pii_blocked_total'),
  ];
}
