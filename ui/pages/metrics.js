// Metrics: the appliance's own health. Totals since start (accepted, duplicates, rate limited,
// rejected by reason, PII scrubbed/rejected, dropped by policy, sampled out), the export sinks
// (position, lag, deliveries, last error), and over time from
// the sampled history — per-interval deltas of the cumulative counters, the writer queue and
// index lag, and the store's size. Refreshes itself while open.

import { h, replace } from '../lib/dom.js';
import { api, query } from '../lib/api.js';
import { fmtNumber, fmtBytes } from '../lib/format.js';
import { stackedBars, lineChart } from '../lib/chart.js';
import { pageHead, panel, card, table, rangePresets, errorState, loadingState, emptyState } from '../lib/ui.js';

const WINDOWS = [['15', '15 min'], ['60', '1 h'], ['360', '6 h'], ['1440', '24 h']];
const REFRESH_MS = 15_000;
/** Charts in a three-column grid draw in a narrower box, so their text stays legible. */
const SMALL = { width: 460, height: 230 };

const INGEST_SERIES = [
  ['accepted', 'accepted', 's-1'], ['duplicates', 'duplicates', 's-6'], ['rate_limited', 'rate limited', 's-2'],
  ['rejected', 'rejected', 's-3'], ['dropped_by_policy', 'dropped by policy', 's-4'], ['sampled_out', 'sampled out', 's-5'],
].map(([key, label, cls]) => ({ label, cls, value: (d) => d[key] }));
const PII_SERIES = [['pii_scrubbed', 'scrubbed', 's-2'], ['pii_rejected', 'rejected', 's-3']]
  .map(([key, label, cls]) => ({ label, cls, value: (d) => d[key] }));

/** Per-interval changes of the cumulative counters (a restart's drop counts as 0). */
export function deltas(points) {
  const counters = ['accepted', 'duplicates', 'rate_limited', 'pii_scrubbed', 'pii_rejected', 'dropped_by_policy', 'sampled_out'];
  const out = [];
  for (let i = 1; i < points.length; i += 1) {
    const prev = points[i - 1];
    const cur = points[i];
    const d = { x: cur.time_ms, by_code: {} };
    for (const key of counters) d[key] = Math.max(0, (cur[key] || 0) - (prev[key] || 0));
    d.rejected = 0;
    for (const [code, n] of Object.entries(cur.rejected || {})) {
      d.by_code[code] = Math.max(0, n - (prev.rejected?.[code] || 0));
      d.rejected += d.by_code[code];
    }
    out.push(d);
  }
  return out;
}

export default {
  title: 'Metrics',
  render(ctx) {
    let minutes = ctx.query.get('minutes') || '60';
    const totals = h('div', { id: 'metrics-totals' }, loadingState());
    const charts = h('div', { id: 'metrics-charts' });
    let timer = null;

    async function refresh() {
      clearTimeout(timer);
      try {
        const [stats, history] = await Promise.all([
          api('/api/v1/stats', { signal: ctx.signal }),
          api(`/api/v1/stats/history${query({ minutes })}`, { signal: ctx.signal }),
        ]);
        replace(totals, renderTotals(stats));
        replace(charts, renderCharts(history));
      } catch (error) {
        if (error.name === 'AbortError') return;
        replace(totals, errorState(error, refresh));
        replace(charts);
      }
      ctx.loaded();
      if (!ctx.signal.aborted) timer = setTimeout(refresh, REFRESH_MS);
    }
    ctx.signal.addEventListener('abort', () => clearTimeout(timer));

    ctx.view.append(
      pageHead('Metrics', `Ingest and storage health; counters since the server started. Refreshes every ${REFRESH_MS / 1000} s.`,
        rangePresets(minutes, (v) => { minutes = v; ctx.setQuery({ minutes: v === '60' ? '' : v }); refresh(); }, WINDOWS),
        h('a', { class: 'button ghost', href: '/metrics', target: '_blank', rel: 'noopener' }, 'Prometheus text')),
      totals, charts);
    refresh();
  },
};

function renderTotals(s) {
  const rejected = Object.entries(s.rejected || {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  const dropped = Object.entries(s.dropped_by_policy_reasons || {}).filter(([, n]) => n > 0);
  return [
    h('div', { class: 'cards' },
      card('Accepted', fmtNumber(s.accepted), null, 'accepted'),
      card('Rejected', fmtNumber(s.rejected_total), null, 'rejected_total'),
      card('Duplicates', fmtNumber(s.duplicates), null, 'duplicates'),
      card('Rate limited', fmtNumber(s.rate_limited), null, 'rate_limited'),
      card('PII scrubbed', fmtNumber(s.pii?.scrubbed), `${fmtNumber(s.pii?.fields_dropped)} fields dropped`, 'pii_scrubbed'),
      card('PII rejected', fmtNumber(s.pii?.rejected), null, 'pii_rejected'),
      card('Dropped by policy', fmtNumber(s.dropped_by_policy), `${fmtNumber(s.sampled_out)} sampled out`, 'dropped_by_policy'),
      card('Writer queue', `${fmtNumber(s.store?.writer_queue_depth)} / ${fmtNumber(s.store?.writer_queue_capacity)}`, `${fmtNumber(s.overloaded)} overloaded answers`, 'writer_queue'),
      card('Index lag', fmtNumber(s.store?.index_lag), `${fmtNumber(s.store?.index_docs)} documents, ${fmtBytes(s.store?.index_size_bytes)}`, 'index_lag'),
      card('Store', fmtBytes(s.store?.store_size_bytes), `${fmtNumber(s.store?.store_events)} events`, 'store_size')),
    h('div', { class: 'grid-2' },
      panel('Rejections by reason', rejected.length
        ? table([{ label: 'Code' }, { label: 'Events', num: true }], rejected.map(([code, n]) => [h('code', {}, code), fmtNumber(n)]))
        : emptyState('No event has been rejected.')),
      panel('Dropped by policy, by reason', dropped.length
        ? table([{ label: 'Reason' }, { label: 'Events', num: true }], dropped.map(([code, n]) => [h('code', {}, code), fmtNumber(n)]))
        : emptyState('No event has been dropped by a policy.'))),
    renderSinks(s.store?.sinks || []),
  ];
}

/** Export sinks ([[sinks]]): how far each is behind the store (events and metric points), its
 * deliveries and last error. */
function renderSinks(sinks) {
  if (!sinks.length) return panel('Export sinks', emptyState('No export sink is configured ([[sinks]] in the config streams events to ClickHouse).'));
  const columns = [{ label: 'Sink' }, { label: 'Kind' }, { label: 'Position', num: true }, { label: 'Lag (events)', num: true },
    { label: 'Lag (s)', num: true }, { label: 'Delivered', num: true }, { label: 'Per second', num: true },
    { label: 'Skipped', num: true }, { label: 'Erasures pending', num: true },
    { label: 'Metric points lag', num: true }, { label: 'Points delivered', num: true }, { label: 'Last error' }];
  const rows = sinks.map((k) => [h('code', {}, k.name), k.kind, fmtNumber(k.position), fmtNumber(k.lag_events),
    (k.lag_seconds || 0).toFixed(1), fmtNumber(k.delivered_total), (k.delivered_per_second || 0).toFixed(1),
    fmtNumber(k.skipped_total), fmtNumber(k.pending_erasures),
    k.points_copying ? 'copying' : fmtNumber(k.points_lag), fmtNumber(k.points_delivered_total), k.last_error || '—']);
  return h('div', { id: 'metrics-sinks' }, panel('Export sinks', table(columns, rows)));
}

function renderCharts(history) {
  const points = history.points || [];
  if (points.length < 2) return panel('Over time', emptyState('The history fills in as the server runs (one sample per interval).'));
  const d = deltas(points);
  const codes = [...new Set(d.flatMap((p) => Object.keys(p.by_code)))].filter((code) => d.some((p) => p.by_code[code] > 0));
  const gauges = points.map((p) => ({ ...p, x: p.time_ms }));
  const per = `per ${Math.round((history.interval_ms || 60_000) / 1000)} s`;
  return h('div', { class: 'grid-2' },
    panel(`Ingest (${per})`, stackedBars(d, INGEST_SERIES, { title: 'Ingest outcomes per interval', ...SMALL })),
    panel(`Rejections by reason (${per})`, codes.length
      ? stackedBars(d, codes.slice(0, 8).map((code, i) => ({ label: code, cls: `s-${i}`, value: (p) => p.by_code[code] || 0 })), { title: 'Rejections by reason', ...SMALL })
      : emptyState('No rejections in this window.')),
    panel(`PII (${per})`, stackedBars(d, PII_SERIES, { title: 'PII scrubbed and rejected', ...SMALL })),
    panel('Writer queue and index lag', lineChart(gauges, [
      { label: 'writer queue', cls: 's-0', value: (p) => p.writer_queue_depth },
      { label: 'index lag', cls: 's-4', value: (p) => p.index_lag }], { title: 'Writer queue depth and index lag', ...SMALL })),
    panel('Store size', lineChart(gauges, [{ label: 'store size', cls: 's-1', value: (p) => p.store_size_bytes }],
      { title: 'Store size', yFormat: fmtBytes, valueFormat: fmtBytes, ...SMALL })),
    panel('Stored events', lineChart(gauges, [{ label: 'events', cls: 's-0', value: (p) => p.store_events }], { title: 'Stored events', ...SMALL })));
}
