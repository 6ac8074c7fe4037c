// Analytics: builds a query for POST /api/v1/analytics/query — a trend, a distribution, a
// funnel, active installs or retention — from a form, and shows the API's answer as a chart
// suited to the kind and a table, exportable as CSV. Every figure shown is the API's; the query
// lives in the address, so a query is a link.

import { h, replace } from '../lib/dom.js';
import { api } from '../lib/api.js';
import { fmtNumber, fmtDay, fmtTime, fmtDuration } from '../lib/format.js';
import { lineChart, hbars } from '../lib/chart.js';
import { load, panel, pageHead, select, textInput, productSelect, table, rangePresets } from '../lib/ui.js';

const KINDS = [['trend', 'Trend'], ['distribution', 'Distribution'], ['funnel', 'Funnel'], ['active_installs', 'Active installs'], ['retention', 'Retention']];
const MEASURES = ['events', 'installs', 'sessions', 'users', 'sum', 'avg', 'min', 'max', 'p50', 'p90', 'p95', 'p99'];
const RANGES = [['-24h', '24 h'], ['-7d', '7 d'], ['-30d', '30 d']];
/** The form's members, as kept in the address. */
const MEMBERS = ['kind', 'product', 'from', 'q', 'measure', 'metric', 'group1', 'group2', 'bucket', 'steps', 'window', 'per', 'breakdown', 'period'];

const pct = (share) => (share == null ? '—' : `${(100 * share).toFixed(1)} %`);
const num = (v) => (v == null ? '—' : fmtNumber(Math.round(v * 100) / 100));
const cls = (i) => `s-${i % 8}`;
const groupLabel = (group) => (group.length ? group.join(' · ') : 'all events');

/** The API spec of the form's state. */
export function specOf(state) {
  const spec = { kind: state.kind, from: state.from || '-7d' };
  if (state.product) spec.product = state.product;
  if (state.q) spec.q = state.q;
  const groupBy = [state.group1, state.group2].filter(Boolean);
  if (state.kind === 'trend') {
    Object.assign(spec, { measure: state.measure || 'events', bucket: state.bucket || '1d', group_by: groupBy });
    if (state.metric) spec.metric = state.metric;
  } else if (state.kind === 'distribution') {
    Object.assign(spec, { metric: state.metric, group_by: groupBy });
  } else if (state.kind === 'funnel') {
    spec.steps = (state.steps || '').split(',').map((s) => s.trim()).filter(Boolean).map((name) => ({ name }));
    spec.window = state.window || '1d';
    spec.per = state.per || 'install';
    if (state.breakdown) spec.breakdown = state.breakdown;
  } else if (state.kind === 'retention') {
    spec.period = state.period || 'week';
  }
  return spec;
}

/** Columns and rows (plain values) of an answer: what the table shows and the CSV holds. */
export function tabulate(answer) {
  if (answer.kind === 'trend') {
    const columns = ['bucket', ...answer.series.map((s) => groupLabel(s.group))];
    const rows = answer.buckets.map((start, i) => [fmtTime(start), ...answer.series.map((s) => num(s.values[i]))]);
    return { columns, rows };
  }
  if (answer.kind === 'distribution') {
    const columns = ['group', 'installs', 'events', 'stored', 'p50', 'p90', 'p95', 'p99', 'avg', 'min', 'max'];
    const rows = answer.groups.map((g) => {
      const m = g.summary || {};
      return [groupLabel(g.group), num(g.installs), num(m.count), num(m.raw_count), num(m.p50), num(m.p90), num(m.p95), num(m.p99), num(m.avg), num(m.min), num(m.max)];
    });
    return { columns, rows };
  }
  if (answer.kind === 'funnel') {
    const columns = ['step', 'count', 'stored', 'conversion', 'drop-off', 'median from previous', 'errors of those who stopped'];
    const rows = answer.steps.map((s) => [s.name, num(s.count), num(s.raw_count), pct(s.conversion), num(s.drop_off),
      s.median_ms_from_previous == null ? '—' : fmtDuration(s.median_ms_from_previous),
      s.dropped_errors.map((e) => `${e.error_code || e.fingerprint} (${e.units})`).join(', ')]);
    return { columns, rows };
  }
  if (answer.kind === 'active_installs') {
    const columns = ['day', 'daily', 'weekly', 'monthly', 'new', 'returning', ...answer.versions.map((v) => `version ${v.version}`)];
    const rows = answer.days.map((day, i) => [fmtDay(day), num(answer.dau[i]), num(answer.wau[i]), num(answer.mau[i]), num(answer.new[i]),
      num(answer.returning[i]), ...answer.versions.map((v) => pct(v.share[i]))]);
    return { columns, rows };
  }
  const periods = Math.max(0, ...answer.cohorts.map((c) => c.share.length));
  const columns = ['cohort', 'installs', ...Array.from({ length: periods }, (_, k) => `${answer.period} ${k}`)];
  const rows = answer.cohorts.map((c) => [c.start_ms == null ? c.label : fmtDay(c.start_ms), num(c.installs), ...c.share.map(pct)]);
  return { columns, rows };
}

/** The chart of an answer. */
function chartOf(answer) {
  if (answer.kind === 'trend') {
    const points = answer.buckets.map((x, i) => ({ x, i }));
    return lineChart(points, answer.series.slice(0, 8).map((s, n) => ({ label: groupLabel(s.group), cls: cls(n), value: (p) => s.values[p.i] })),
      { title: `${answer.measure} over time`, gaps: true });
  }
  if (answer.kind === 'distribution') {
    return hbars(answer.groups.map((g) => ({ label: groupLabel(g.group), value: g.summary?.p95 ?? 0 })), { title: `p95 of ${answer.metric}`, width: 900 });
  }
  if (answer.kind === 'funnel') {
    return hbars(answer.steps.map((s) => ({ label: s.name, value: s.count, title: `${s.name}: ${num(s.count)} (${pct(s.conversion)})` })), { title: 'Funnel', width: 900 });
  }
  if (answer.kind === 'active_installs') {
    const points = answer.days.map((x, i) => ({ x, i }));
    return lineChart(points, [['daily', answer.dau], ['weekly', answer.wau], ['monthly', answer.mau]].map(([label, values], n) => ({ label, cls: cls(n), value: (p) => values[p.i] })),
      { title: 'Active installs' });
  }
  return null;
}

function csvOf({ columns, rows }) {
  const cell = (v) => {
    const text = String(v ?? '');
    return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  };
  return [columns, ...rows].map((r) => r.map(cell).join(',')).join('\n') + '\n';
}

function saveCsv(tabulated, kind) {
  const url = URL.createObjectURL(new Blob([csvOf(tabulated)], { type: 'text/csv' }));
  const link = Object.assign(document.createElement('a'), { href: url, download: `analytics-${kind}.csv` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export default {
  title: 'Analytics',
  render(ctx) {
    const state = Object.fromEntries(MEMBERS.map((m) => [m, ctx.query.get(m) || '']));
    if (!KINDS.some(([k]) => k === state.kind)) state.kind = 'trend';
    const form = h('form', { class: 'filters', id: 'analytics-form' });
    const result = h('div', { id: 'analytics-result' });

    const field = (label, name, attrs) => {
      const el = textInput(label, name, state[name], attrs);
      el.querySelector('input').addEventListener('input', (e) => { state[name] = e.target.value.trim(); });
      return el;
    };
    const choice = (label, name, options) => select(label, name, options, state[name] || (Array.isArray(options[0]) ? options[0][0] : options[0]), (v) => { state[name] = v; });

    function renderForm() {
      const byKind = {
        trend: [choice('Measure', 'measure', MEASURES), field('Metric', 'metric', { placeholder: 'stt_latency_ms' }),
          field('Group by', 'group1', { placeholder: 'platform' }), field('Then by', 'group2', { placeholder: 'app_version' }),
          choice('Bucket', 'bucket', [['1d', '1 day'], ['1h', '1 hour'], ['7d', '7 days']])],
        distribution: [field('Metric', 'metric', { placeholder: 'stt_latency_ms' }), field('Group by', 'group1', { placeholder: 'platform' }),
          field('Then by', 'group2', { placeholder: 'app_version' })],
        funnel: [field('Steps (event names, in order)', 'steps', { placeholder: 'app_opened, dictation_started, dictation_completed', wide: true }),
          field('Window', 'window', { placeholder: '1d' }), choice('Per', 'per', [['install', 'install'], ['session', 'session']]),
          field('Breakdown', 'breakdown', { placeholder: 'platform' })],
        active_installs: [],
        retention: [choice('Cohorts by', 'period', [['week', 'week'], ['day', 'day']])],
      };
      replace(form,
        select('Kind', 'kind', KINDS, state.kind, (v) => { state.kind = v; renderForm(); }),
        productSelect(state.product, (v) => { state.product = v; }, { allLabel: 'Choose a product' }),
        rangePresets(state.from || '-7d', (v) => { state.from = v; }, RANGES),
        field('Filter', 'q', { placeholder: 'platform:ios', wide: true }),
        ...byKind[state.kind],
        h('button', { type: 'submit', class: 'primary', id: 'analytics-run' }, 'Run'));
    }

    async function run() {
      ctx.setQuery(state);
      const spec = specOf(state);
      await load(result, () => api('/api/v1/analytics/query', { method: 'POST', body: spec, signal: ctx.signal }), (answer) => {
        const tabulated = tabulate(answer);
        const notes = [
          answer.estimated ? 'Estimated: some events were sampled and count as 1 / sample rate.' : null,
          answer.suppressed_groups ? `${answer.suppressed_groups} group(s) with too few installs folded into “other”.` : null,
        ].filter(Boolean);
        return [
          notes.length ? h('p', { class: 'muted', id: 'analytics-notes' }, notes.join(' ')) : null,
          panel(KINDS.find(([k]) => k === answer.kind)[1], chartOf(answer),
            h('div', { id: 'analytics-table' }, table(tabulated.columns.map((label, i) => ({ label, num: i > 0 })), tabulated.rows)),
            h('button', { type: 'button', id: 'analytics-csv', onclick: () => saveCsv(tabulated, answer.kind) }, 'Export CSV')),
        ];
      });
      ctx.loaded();
    }

    form.addEventListener('submit', (e) => { e.preventDefault(); run(); });
    renderForm();
    ctx.view.append(pageHead('Analytics', 'Trends, distributions, funnels, active installs and retention, weighted by sampling.'), form, result);
    if (ctx.query.get('kind')) run();
    else ctx.loaded();
  },
};
