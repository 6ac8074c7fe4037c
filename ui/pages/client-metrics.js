// Client metrics: the OpenTelemetry metrics clients send over OTLP, as time series. The list
// of a product's metrics (kind, unit, series, last seen), and one metric over time from
// /api/v1/metrics/query — increases per bucket for counters, the mean value for gauges,
// p50 / p95 / p99 for histograms — grouped by a chosen attribute, with each group's figure over
// the whole range in a table. Every figure shown is the API's; choices live in the address.

import { h, replace } from '../lib/dom.js';
import { api, query } from '../lib/api.js';
import { fmtNumber, fmtRelative, fmtTime, fmtDay } from '../lib/format.js';
import { stackedBars, lineChart } from '../lib/chart.js';
import { load, panel, pageHead, select, rangePresets, table } from '../lib/ui.js';
import { seriesRange } from './overview.js';

const RANGES = [['-1h', '1 h'], ['-24h', '24 h'], ['-7d', '7 d'], ['-30d', '30 d']];
const RANGE_MS = { '-1h': 3_600_000, '-24h': 86_400_000, '-7d': 7 * 86_400_000, '-30d': 30 * 86_400_000 };
/** The three percentiles shown together for a histogram or summary when nothing is grouped. */
const PERCENTILES = ['p50', 'p95', 'p99'];
const TRIO = PERCENTILES.join(',');
/** Groups drawn in the chart (the API orders them largest first); the table lists all. */
const CHART_GROUPS = 8;

const KIND_LABELS = {
  counter: 'counter', updown_counter: 'up-down counter', gauge: 'gauge', histogram: 'histogram',
  exponential_histogram: 'exponential histogram', summary: 'summary',
};
const STAT_LABELS = {
  increase: 'Increase', rate: 'Rate (per s)', value: 'Value (mean)', sum: 'Sum', avg: 'Average', min: 'Min', max: 'Max',
};

export const statLabel = (stat) => STAT_LABELS[stat] || stat;

/** The statistic a metric is charted with by default: all three percentiles for distributions. */
function defaultStat(metric, group) {
  if (['histogram', 'summary'].includes(metric.kind) && !group) return TRIO;
  if (metric.kind === 'histogram' || metric.kind === 'summary') return 'p95';
  return metric.stats[0];
}

/** The unit worth showing: UCUM's `1` (a plain count) says nothing. */
const shownUnit = (unit) => (unit && unit !== '1' ? unit : '');

/** A group's name: its attribute values, or a placeholder for a series without them. */
export function groupName(attributes) {
  const values = Object.entries(attributes || {}).map(([k, v]) => (v === '' ? `${k} (none)` : v));
  return values.length ? values.join(' · ') : 'all series';
}

export default {
  title: 'Client metrics',
  render(ctx) {
    const state = {
      product: ctx.query.get('product') || '',
      name: ctx.query.get('name') || '',
      range: RANGE_MS[ctx.query.get('range')] ? ctx.query.get('range') : '-24h',
      group: ctx.query.get('group') || '',
      stat: ctx.query.get('stat') || '',
    };
    const controls = h('div', { class: 'filters', id: 'client-metrics-controls' });
    const list = h('div', { id: 'client-metrics-list' });
    const chart = h('div', { id: 'client-metrics-chart' });
    const groups = h('div', { id: 'client-metrics-groups' });
    const chartTitle = h('h2', { id: 'client-metrics-title' }, 'Metric');
    let metrics = [];

    const current = () => metrics.find((m) => m.product === state.product && m.name === state.name);
    const remember = () => ctx.setQuery({
      product: state.product, name: state.name, range: state.range === '-24h' ? '' : state.range, group: state.group, stat: state.stat,
    });

    async function loadList() {
      const data = await load(list, () => api('/api/v1/metrics/names', { signal: ctx.signal }), (r) => {
        metrics = r.metrics;
        const products = [...new Set(metrics.map((m) => m.product))].sort();
        if (!products.includes(state.product)) state.product = products[0];
        const own = metrics.filter((m) => m.product === state.product);
        if (!own.some((m) => m.name === state.name)) { state.name = own[0].name; state.group = ''; state.stat = ''; }
        return renderList(products, own);
      }, {
        isEmpty: (r) => r.metrics.length === 0,
        empty: 'No client metrics yet. OpenTelemetry SDKs send them over OTLP/HTTP (POST /v1/metrics); they appear here per product.',
      });
      return data && data.metrics.length > 0;
    }

    function renderList(products, own) {
      return [
        h('div', { class: 'filters' },
          select('Product', 'product', products, state.product, (v) => {
            state.product = v; state.name = ''; state.group = ''; state.stat = ''; refresh();
          })),
        table(
          [{ label: 'Metric' }, { label: 'Last seen' }],
          own.map((m) => [
            h('div', {},
              h('button', { type: 'button', class: 'link', 'aria-pressed': String(m.name === state.name), title: m.description || m.name,
                onclick: () => { state.name = m.name; state.group = ''; state.stat = ''; refresh({ list: false }); } }, m.name),
              h('div', { class: 'muted small' }, `${KIND_LABELS[m.kind] || m.kind} · `,
                h('span', { class: 'metric-series' }, `${fmtNumber(m.series)} series`),
                shownUnit(m.unit) ? [' · ', h('code', {}, m.unit)] : null)),
            h('span', { class: 'nowrap', title: fmtTime(m.last_seen_ms) }, fmtRelative(m.last_seen_ms)),
          ]),
          { rowAttrs: (i) => ({ class: ['metric-row', own[i].name === state.name && 'selected'], 'data-name': own[i].name, 'data-series': own[i].series }) }),
      ];
    }

    function renderControls(metric) {
      const stats = [...(['histogram', 'summary'].includes(metric.kind) && !state.group ? [[TRIO, 'p50 · p95 · p99']] : []),
        ...metric.stats.map((s) => [s, statLabel(s)])];
      replace(controls,
        select('Group by', 'group', [['', 'No grouping'], ...metric.attributes.map((a) => [a, a])], state.group, (v) => {
          state.group = v;
          if (state.stat === TRIO || !state.stat) state.stat = defaultStat(metric, v);
          refreshChart();
        }),
        select('Statistic', 'stat', stats, state.stat, (v) => { state.stat = v; refreshChart(); }),
        rangePresets(state.range, (v) => { state.range = v; refreshChart(); }, RANGES));
    }

    async function refreshChart() {
      const metric = current();
      if (!metric) { replace(chart); replace(groups); replace(controls); return; }
      delete chart.dataset.shown;
      if (!state.stat || (state.stat === TRIO && state.group)) state.stat = defaultStat(metric, state.group);
      remember();
      renderControls(metric);
      replace(chartTitle, metric.name, shownUnit(metric.unit) ? h('span', { class: 'muted' }, ` (${metric.unit})`) : null);
      // Absolute times, so every query of one view (and anyone replaying it) covers the same span.
      const to = Date.now();
      const from = to - (RANGE_MS[state.range] || RANGE_MS['-24h']);
      const { bucket } = seriesRange(state.range);
      const stats = state.stat === TRIO ? PERCENTILES : [state.stat];
      const ask = (stat) => api(`/api/v1/metrics/query${query({
        product: state.product, name: state.name, from, to, bucket, stat, group_by: state.group,
      })}`, { signal: ctx.signal });
      let results = null;
      await load(chart, async () => { results = await Promise.all(stats.map(ask)); return results; },
        (rs) => renderChart(metric, rs),
        { isEmpty: (rs) => rs[0].groups.length === 0, empty: 'No points of this metric in this range.' });
      if (results) replace(groups, renderGroups(metric, results));
      else replace(groups);
      // What is on screen now (for tests and for anyone inspecting the page).
      chart.dataset.shown = JSON.stringify({ name: state.name, stat: state.stat, group: state.group });
    }

    function renderChart(metric, results) {
      const first = results[0];
      const xLabel = first.bucket_ms >= 86_400_000 ? fmtDay : undefined;
      const starts = first.groups[0].buckets.map((b) => b.start_ms);
      const opts = { title: `${metric.name}: ${results.map((r) => statLabel(r.stat)).join(', ')}`, xLabel };
      if (results.length > 1) {
        // One line per percentile, from each answer's single group.
        const points = starts.map((x, i) => ({ x, ...Object.fromEntries(results.map((r) => [r.stat, r.groups[0]?.buckets[i]?.value ?? null])) }));
        return lineChart(points, results.map((r, i) => ({ label: r.stat, cls: `s-${i}`, value: (p) => p[r.stat] })), { ...opts, gaps: true });
      }
      const shown = first.groups.slice(0, CHART_GROUPS);
      const points = starts.map((x, i) => ({ x, values: shown.map((g) => g.buckets[i]?.value ?? null) }));
      const series = shown.map((g, j) => ({ label: groupName(g.attributes), cls: `s-${j}`, value: (p) => p.values[j] }));
      const figure = first.stat === 'increase' ? stackedBars(points, series, opts) : lineChart(points, series, { ...opts, gaps: true });
      return [
        figure,
        first.groups.length > CHART_GROUPS
          ? h('p', { class: 'muted small' }, `The chart shows the ${CHART_GROUPS} largest of ${fmtNumber(first.groups.length)} groups; the table lists all.`)
          : null,
      ];
    }

    function renderGroups(metric, results) {
      const over = `over ${RANGES.find(([r]) => r === state.range)?.[1] || state.range}`;
      if (results.length > 1) {
        return panel(`Percentiles ${over}`, table(
          [{ label: 'Statistic' }, { label: 'Value', num: true }],
          results.map((r) => [r.stat, h('span', { 'data-overall': r.stat }, fmtNumber(r.groups[0]?.overall))]),
          { rowAttrs: (i) => ({ class: 'group-row', 'data-stat': results[i].stat }) }));
      }
      const r = results[0];
      if (r.groups.length === 0) return null;
      const keys = r.group_by;
      return panel(`${fmtNumber(r.groups.length)} ${r.groups.length === 1 ? 'group' : 'groups'}: ${statLabel(r.stat)} ${over}`, table(
        [...(keys.length ? keys.map((k) => ({ label: k })) : [{ label: 'Group' }]), { label: 'Series', num: true }, { label: statLabel(r.stat), num: true }],
        r.groups.map((g) => [
          ...(keys.length ? keys.map((k) => (g.attributes[k] === '' ? h('span', { class: 'muted' }, '(none)') : g.attributes[k])) : [groupName(g.attributes)]),
          fmtNumber(g.series),
          h('span', { 'data-overall': '' }, fmtNumber(g.overall)),
        ]),
        { rowAttrs: (i) => ({ class: 'group-row', 'data-group': JSON.stringify(r.groups[i].attributes) }) }));
    }

    async function refresh({ list: withList = true } = {}) {
      remember();
      const any = withList ? await loadList() : (markSelected(), true);
      if (any) await refreshChart();
      else { replace(controls); replace(chart); replace(groups); }
      ctx.loaded();
    }

    /** Marks the chosen metric in the list without reloading it. */
    function markSelected() {
      for (const row of list.querySelectorAll('.metric-row')) {
        const chosen = row.dataset.name === state.name;
        row.classList.toggle('selected', chosen);
        row.querySelector('button')?.setAttribute('aria-pressed', String(chosen));
      }
    }

    ctx.view.append(
      pageHead('Client metrics', 'OpenTelemetry metrics your clients send (OTLP), as time series: counters as increases per interval, gauges as values, histograms as percentiles.'),
      h('div', { class: 'grid-metrics' },
        panel('Metrics', list),
        panel(null, chartTitle, controls, chart)),
      groups);
    refresh();
  },
};
