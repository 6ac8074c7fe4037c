// Analytics: builds a query for POST /api/v1/analytics/query — a trend, a distribution, a
// funnel, active installs or retention — from a form, and shows the API's answer as a chart
// suited to the kind and a table, exportable as CSV. Every figure shown is the API's; the query
// lives in the address, so a query is a link. Queries can be saved by name (admins), renamed,
// pinned to the product's dashboard and deleted; `/analytics?saved=ID` opens a saved query,
// built in the form and run.

import { h, replace } from '../lib/dom.js';
import { api, query, session } from '../lib/api.js';
import { fmtNumber, fmtDay, fmtTime, fmtDuration } from '../lib/format.js';
import { lineChart, hbars } from '../lib/chart.js';
import { load, panel, pageHead, select, textInput, productSelect, table, rangePresets, dialog, flash, errorState, badge } from '../lib/ui.js';

const KINDS = [['trend', 'Trend'], ['distribution', 'Distribution'], ['funnel', 'Funnel'], ['active_installs', 'Active installs'], ['retention', 'Retention']];
const MEASURES = ['events', 'installs', 'sessions', 'users', 'sum', 'avg', 'min', 'max', 'p50', 'p90', 'p95', 'p99'];
const RANGES = [['-24h', '24 h'], ['-7d', '7 d'], ['-30d', '30 d']];
/** The form's members, as kept in the address. */
const MEMBERS = ['kind', 'product', 'from', 'q', 'measure', 'metric', 'group1', 'group2', 'bucket', 'steps', 'window', 'per', 'breakdown', 'period'];
/** The address member naming the saved query shown. */
const SAVED = 'saved';

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

/** The form's state of a (saved) spec: the inverse of `specOf`. */
export function stateOf(spec, product) {
  const [group1 = '', group2 = ''] = spec.group_by || [];
  return {
    kind: spec.kind, product, from: spec.from == null ? '-7d' : String(spec.from), q: spec.q || '',
    measure: spec.measure || '', metric: spec.metric || '', group1, group2, bucket: spec.bucket || '',
    steps: (spec.steps || []).map((step) => step.name).join(', '), window: spec.window || '',
    per: spec.per || '', breakdown: spec.breakdown || '', period: spec.period || '',
  };
}

/** A spec's members without its product: what a saved query keeps. */
export function savedSpec(spec) {
  const { product: _product, ...rest } = spec;
  return rest;
}

/** JSON with sorted keys: equal specs give equal text whatever their member order. */
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Runs a saved query through the query API (the figures the dashboard and this page show). */
export function runSaved(saved, signal) {
  return api('/api/v1/analytics/query', { method: 'POST', body: { ...saved.query, product: saved.product }, signal });
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
export function chartOf(answer) {
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

/** The answer's notes: estimates and folded groups. */
export function notesOf(answer) {
  return [
    answer.estimated ? 'Estimated: some events were sampled and count as 1 / sample rate.' : null,
    answer.suppressed_groups ? `${answer.suppressed_groups} group(s) with too few installs folded into “other”.` : null,
  ].filter(Boolean).join(' ');
}

/** The answer as a chart and a table. */
export function answerView(answer, tableId) {
  const tabulated = tabulate(answer);
  return [
    chartOf(answer),
    h('div', { id: tableId, class: 'answer-table' }, table(tabulated.columns.map((label, i) => ({ label, num: i > 0 })), tabulated.rows)),
  ];
}

const nameField = (value) => h('label', {}, 'Name', h('input', { name: 'name', value: value || '', required: true, maxlength: 120, autocomplete: 'off' }));

export default {
  title: 'Analytics',
  render(ctx) {
    const state = Object.fromEntries(MEMBERS.map((m) => [m, ctx.query.get(m) || '']));
    if (!KINDS.some(([k]) => k === state.kind)) state.kind = 'trend';
    let savedId = ctx.query.get(SAVED) || '';
    /** The saved query shown (when `savedId` is set and loaded). */
    let saved = null;
    const form = h('form', { class: 'filters', id: 'analytics-form' });
    const result = h('div', { id: 'analytics-result' });
    const savedBar = h('div', { class: 'saved-bar', id: 'analytics-saved' });
    const savedList = h('div', { id: 'analytics-saved-list' });
    const notices = h('div', {});

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
        productSelect(state.product, (v) => { state.product = v; refreshSavedList(); }, { allLabel: 'Choose a product' }),
        rangePresets(state.from || '-7d', (v) => { state.from = v; }, RANGES),
        field('Filter', 'q', { placeholder: 'platform:ios', wide: true }),
        ...byKind[state.kind],
        h('button', { type: 'submit', class: 'primary', id: 'analytics-run' }, 'Run'));
    }

    /** A write to the saved query shown: the API's answer, or null (the error shows above). */
    async function change(method, body) {
      try {
        return await api(`/api/v1/analytics/saved/${encodeURIComponent(saved.id)}`, { method, body });
      } catch (error) {
        notices.prepend(errorState(error));
        return null;
      }
    }

    async function saveAs(spec) {
      const values = await dialog({
        title: 'Save this query',
        body: h('div', {}, nameField(''),
          h('label', { class: 'inline' }, h('input', { type: 'checkbox', name: 'pinned', checked: true }), `Pin to the ${spec.product} dashboard`)),
        confirm: 'Save',
        validate: (v) => (v.name.trim() ? null : 'Give the query a name.'),
      });
      if (!values) return;
      try {
        saved = await api('/api/v1/analytics/saved', { method: 'POST', body: { product: spec.product, name: values.name.trim(), query: savedSpec(spec), pinned: values.pinned === 'on' } });
        savedId = saved.id;
        flash(notices, `Saved as “${saved.name}”.`);
      } catch (error) {
        notices.prepend(errorState(error));
      }
      showSaved(spec);
      refreshSavedList();
    }

    /** The bar above the answer: the saved query shown and its actions, or "Save as…". */
    function showSaved(spec) {
      ctx.setQuery({ ...state, [SAVED]: savedId });
      const canWrite = session.canWrite;
      const same = saved && canonical(saved.query) === canonical(savedSpec(spec));
      const link = saved ? `/analytics?${SAVED}=${encodeURIComponent(saved.id)}` : null;
      replace(savedBar,
        saved ? [
          h('span', { class: 'muted' }, same ? 'Saved query' : 'Changed from saved query'),
          h('a', { href: link, class: 'saved-name', id: 'analytics-saved-name' }, saved.name),
          saved.pinned ? badge('pinned', 'on dashboard') : null,
          h('a', { href: `/dashboard/${encodeURIComponent(saved.product)}`, class: 'small' }, `${saved.product} dashboard`),
        ] : null,
        canWrite && saved && !same ? h('button', { type: 'button', id: 'analytics-update', onclick: async () => {
          const updated = await change('PATCH', { query: savedSpec(spec) });
          if (updated) { saved = updated; flash(notices, `“${saved.name}” now runs this query.`); showSaved(spec); }
        } }, 'Save changes') : null,
        canWrite && saved ? h('button', { type: 'button', class: 'ghost', id: 'analytics-rename', onclick: async () => {
          const values = await dialog({ title: 'Rename the saved query', body: nameField(saved.name), confirm: 'Rename', validate: (v) => (v.name.trim() ? null : 'Give the query a name.') });
          if (!values) return;
          const updated = await change('PATCH', { name: values.name.trim() });
          if (updated) { saved = updated; showSaved(spec); refreshSavedList(); }
        } }, 'Rename…') : null,
        canWrite && saved ? h('button', { type: 'button', class: 'ghost', id: 'analytics-pin', onclick: async () => {
          const updated = await change('PATCH', { pinned: !saved.pinned });
          if (updated) { saved = updated; showSaved(spec); refreshSavedList(); }
        } }, saved.pinned ? 'Unpin from dashboard' : 'Pin to dashboard') : null,
        canWrite && saved ? h('button', { type: 'button', class: 'ghost', id: 'analytics-delete', onclick: async () => {
          const ok = await dialog({ title: `Delete “${saved.name}”?`, body: h('p', {}, 'The saved query and its place on the dashboard go; the data stays.'), confirm: 'Delete', danger: true });
          if (!ok) return;
          const gone = await change('DELETE');
          if (gone) { flash(notices, `Deleted “${saved.name}”.`); saved = null; savedId = ''; showSaved(spec); refreshSavedList(); }
        } }, 'Delete…') : null,
        canWrite && spec.product ? h('button', { type: 'button', class: 'ghost', id: 'analytics-save', onclick: () => saveAs(spec) }, saved ? 'Save as new…' : 'Save…') : null);
    }

    /** The product's saved queries, as links. */
    function refreshSavedList() {
      if (!state.product) { replace(savedList); return; }
      load(savedList, () => api(`/api/v1/analytics/saved${query({ product: state.product })}`, { signal: ctx.signal }),
        (r) => panel(`Saved queries of ${state.product}`, h('ul', { class: 'saved-queries' }, r.saved.map((q) => h('li', {},
          h('a', { href: `/analytics?${SAVED}=${encodeURIComponent(q.id)}`, 'data-saved-id': q.id }, q.name),
          q.pinned ? [' ', badge('pinned', 'on dashboard')] : null)))),
        { isEmpty: (r) => r.saved.length === 0, empty: `No saved queries of ${state.product} yet.` });
    }

    /** Runs `spec` and shows the answer. */
    async function show(spec) {
      showSaved(spec);
      await load(result, () => api('/api/v1/analytics/query', { method: 'POST', body: spec, signal: ctx.signal }), (answer) => {
        const tabulated = tabulate(answer);
        const notes = notesOf(answer);
        return [
          notes ? h('p', { class: 'muted', id: 'analytics-notes' }, notes) : null,
          panel(KINDS.find(([k]) => k === answer.kind)[1], ...answerView(answer, 'analytics-table'),
            h('button', { type: 'button', id: 'analytics-csv', onclick: () => saveCsv(tabulated, answer.kind) }, 'Export CSV')),
        ];
      });
      ctx.loaded();
    }

    /** Opens the saved query `savedId`: its spec built in the form, and run as saved. */
    async function openSaved() {
      try {
        saved = await api(`/api/v1/analytics/saved/${encodeURIComponent(savedId)}`, { signal: ctx.signal });
      } catch (error) {
        if (error.name === 'AbortError') return;
        replace(result, errorState(error));
        ctx.loaded();
        return;
      }
      Object.assign(state, stateOf(saved.query, saved.product));
      renderForm();
      refreshSavedList();
      await show({ ...saved.query, product: saved.product });
    }

    form.addEventListener('submit', (e) => { e.preventDefault(); show(specOf(state)); });
    renderForm();
    ctx.view.append(pageHead('Analytics', 'Trends, distributions, funnels, active installs and retention, weighted by sampling.'),
      form, notices, savedBar, result, savedList);
    if (savedId) openSaved();
    else if (ctx.query.get('kind')) show(specOf(state));
    else ctx.loaded();
    if (!savedId) refreshSavedList();
  },
};
