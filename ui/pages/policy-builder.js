// The policy builder (`/policies/new`, `/policies/{id}`): targeting checkboxes for platforms,
// channels, release channels and countries (values seen in the last 30 days, plus any typed
// in), a version range, a rollout slider, schedule pickers, the enabled switch and the
// settings; a live preview ("N of M installs would match", by platform and version) with the
// dry run over the last 7 days; save. Viewers see the policy read-only.

import { h, replace, debounce } from '../lib/dom.js';
import { api, query, session } from '../lib/api.js';
import { navigate } from '../lib/router.js';
import { fmtNumber, fmtPercent, countryName, toLocalInput, fromLocalInput } from '../lib/format.js';
import { LEVELS } from './overview.js';
import { toDraft } from './policies.js';
import { panel, table, products, errorState, loadingState, emptyState, flashNext } from '../lib/ui.js';

const CHECK_GROUPS = [
  ['platforms', 'platform', 'Platforms'],
  ['channels', 'channel', 'Channels'],
  ['release_channels', 'release_channel', 'Release channels'],
  ['countries', 'country_code', 'Countries'],
];
const LISTS = [['events_allow', 'Only these events'], ['events_deny', 'Never these events'], ['modules_allow', 'Only these modules'], ['modules_deny', 'Never these modules']];
const NUMBERS = [['batch_size', 'Batch size', 1], ['flush_interval_ms', 'Flush interval (ms)', 100], ['max_queue_size', 'Max queue size', 1]];

const splitList = (text) => text.split(/[,\s]+/).map((v) => v.trim()).filter(Boolean);

/** A group of checkboxes over `values`, with an input to add a value not seen yet. */
function checkGroup(key, label, values, selected, onchange, labelOf = (v) => v) {
  const boxes = h('div', { class: 'checks', 'data-group': key });
  const add = (value, checked) => {
    if (!value || boxes.querySelector(`input[value="${CSS.escape(value)}"]`)) return;
    boxes.append(h('label', { class: 'inline' },
      h('input', { type: 'checkbox', name: key, value, checked, onchange }), labelOf(value)));
  };
  for (const v of new Set([...selected, ...values])) add(v, selected.includes(v));
  const extra = h('input', { type: 'text', placeholder: 'add…', 'aria-label': `Add a value to ${label}`, size: 10 });
  extra.addEventListener('keydown', (e) => {
    if (e.key !== 'Enter') return;
    e.preventDefault();
    const value = key === 'countries' ? extra.value.trim().toUpperCase() : extra.value.trim();
    add(value, true);
    extra.value = '';
    onchange();
  });
  return h('fieldset', {}, h('legend', {}, label),
    values.length || selected.length ? null : h('p', { class: 'muted small' }, 'No values seen in the last 30 days; add one.'),
    boxes, extra);
}

export default {
  title: 'Policy',
  render(ctx) {
    const id = ctx.params.id || null;
    const readOnly = !session.canWrite;
    const body = h('div', {}, loadingState());
    ctx.view.append(h('p', {}, h('a', { href: '/policies' }, '← All policies')), body);

    (async () => {
      try {
        const [policy, productList] = await Promise.all([
          id ? api(`/api/v1/policies/${encodeURIComponent(id)}`, { signal: ctx.signal }) : null,
          products(),
        ]);
        const product = policy?.product || ctx.query.get('product') || productList[0] || '';
        const seen = await seenValues(product, ctx.signal);
        build(policy, product, productList, seen);
      } catch (error) {
        if (error.name !== 'AbortError') replace(body, errorState(error));
      }
      ctx.loaded();
    })();

    function build(policy, product, productList, seen) {
      const t = policy?.targeting || {};
      const st = policy?.settings || {};
      const message = h('div', { role: 'alert', id: 'builder-error' });
      const preview = h('div', { id: 'preview' }, emptyState(readOnly ? 'Only admins can preview.' : 'Set at least one setting to see who the policy reaches.'));
      const changed = debounce(() => runPreview(), 350);
      const onchange = () => changed();

      const name = h('input', { type: 'text', name: 'name', value: policy?.name || '', required: true, maxlength: 200 });
      const productSel = h('select', { name: 'product' }, [...new Set([product, ...productList])].filter(Boolean).map((p) => h('option', { value: p, selected: p === product }, p)));
      const enabled = h('input', { type: 'checkbox', name: 'enabled', role: 'switch', checked: policy ? policy.enabled : true });
      const priority = h('input', { type: 'number', name: 'priority', value: policy?.priority ?? 0, step: 1 });
      const versions = h('input', { type: 'text', name: 'app_versions', value: t.app_versions || '', placeholder: '>=1.4.0, <2', spellcheck: 'false' });
      const regions = h('input', { type: 'text', name: 'regions', value: (t.regions || []).join(', '), placeholder: 'US-WA, DE-BY' });
      const limitRollout = h('input', { type: 'checkbox', name: 'limit_rollout', checked: t.rollout_percent != null });
      const rollout = h('input', { type: 'range', name: 'rollout_percent', min: 0, max: 100, step: 1, value: t.rollout_percent ?? 100, 'aria-label': 'Rollout percentage' });
      const rolloutOut = h('output', { for: 'rollout_percent' }, `${rollout.value} %`);
      rollout.addEventListener('input', () => { rolloutOut.textContent = `${rollout.value} %`; limitRollout.checked = true; });
      const startsAt = h('input', { type: 'datetime-local', name: 'starts_at', value: toLocalInput(policy?.starts_at) });
      const expiresAt = h('input', { type: 'datetime-local', name: 'expires_at', value: toLocalInput(policy?.expires_at) });
      const collection = h('select', { name: 'collection_enabled' },
        [['', 'inherit'], ['true', 'on'], ['false', 'off']].map(([v, l]) => h('option', { value: v, selected: String(st.collection_enabled ?? '') === v }, l)));
      const minLevel = h('select', { name: 'min_level' }, [['', 'inherit'], ...LEVELS.map((l) => [l, l])].map(([v, l]) => h('option', { value: v, selected: (st.min_level || '') === v }, l)));
      const sampleRate = h('input', { type: 'number', name: 'sample_rate', min: 0, max: 1, step: 0.01, value: st.sample_rate ?? '', placeholder: 'inherit' });
      const lists = LISTS.map(([key]) => h('input', { type: 'text', name: key, value: (st[key] || []).join(', '), placeholder: 'inherit', spellcheck: 'false' }));
      const numbers = NUMBERS.map(([key, , min]) => h('input', { type: 'number', name: key, min, step: 1, value: st[key] ?? '', placeholder: 'inherit' }));
      const rates = h('textarea', { name: 'event_sample_rates', placeholder: 'call_completed = 0.1', spellcheck: 'false' },
        Object.entries(st.event_sample_rates || {}).map(([k, v]) => `${k} = ${v}`).join('\n'));
      const groups = CHECK_GROUPS.map(([key, field, label]) => checkGroup(key, label, seen[field] || [], t[key] || [], onchange,
        key === 'countries' ? (c) => `${countryName(c)} (${c})` : undefined));

      const form = h('form', { id: 'policy-form', onsubmit: (e) => { e.preventDefault(); save(); } },
        h('fieldset', { disabled: readOnly },
          h('legend', {}, 'Policy'),
          h('div', { class: 'form-grid' },
            h('label', {}, 'Name', name),
            h('label', {}, 'Product', productSel),
            h('label', {}, 'Priority (higher wins)', priority),
            h('label', { class: 'inline' }, enabled, 'Enabled')),
          h('h3', {}, 'Targeting'),
          groups,
          h('div', { class: 'form-grid' },
            h('label', {}, 'App versions (SemVer range)', versions),
            h('label', {}, 'Regions (ISO 3166-2)', regions)),
          h('div', { class: 'row' }, h('label', { class: 'inline' }, limitRollout, 'Only a share of installs:'), rollout, rolloutOut),
          h('h3', {}, 'Schedule'),
          h('div', { class: 'form-grid' }, h('label', {}, 'Starts', startsAt), h('label', {}, 'Expires', expiresAt)),
          h('h3', {}, 'Settings'),
          h('div', { class: 'form-grid' },
            h('label', {}, 'Collection', collection),
            h('label', {}, 'Minimum level', minLevel),
            h('label', {}, 'Sample rate (0–1)', sampleRate),
            LISTS.map(([, label], i) => h('label', {}, label, lists[i])),
            NUMBERS.map(([, label], i) => h('label', {}, label, numbers[i]))),
          h('label', {}, 'Per-event sample rates (one “name = rate” a line)', rates)),
        message,
        readOnly ? null : h('div', { class: 'row' },
          h('button', { type: 'submit', id: 'save-policy' }, id ? 'Save changes' : 'Create policy'),
          h('a', { class: 'button ghost', href: '/policies' }, 'Cancel')));
      form.addEventListener('input', onchange);
      productSel.addEventListener('change', async () => {
        const fresh = await seenValues(productSel.value, ctx.signal);
        CHECK_GROUPS.forEach(([key, field, label], i) => {
          const next = checkGroup(key, label, fresh[field] || [], checked(key), onchange, key === 'countries' ? (c) => `${countryName(c)} (${c})` : undefined);
          groups[i].replaceWith(next);
          groups[i] = next;
        });
      });

      function checked(key) {
        return [...form.querySelectorAll(`input[type=checkbox][name="${key}"]:checked`)].map((i) => i.value);
      }

      /** The draft as the API takes it, or throws a message naming the field. */
      function draft() {
        const settings = {};
        if (collection.value) settings.collection_enabled = collection.value === 'true';
        if (minLevel.value) settings.min_level = minLevel.value;
        if (sampleRate.value !== '') settings.sample_rate = Number(sampleRate.value);
        LISTS.forEach(([key], i) => { if (lists[i].value.trim()) settings[key] = splitList(lists[i].value); });
        NUMBERS.forEach(([key], i) => { if (numbers[i].value !== '') settings[key] = Number(numbers[i].value); });
        const rateLines = rates.value.split('\n').map((l) => l.trim()).filter(Boolean);
        if (rateLines.length) {
          settings.event_sample_rates = {};
          for (const line of rateLines) {
            const [event, rate] = line.split('=').map((p) => p.trim());
            if (!event || rate === undefined || Number.isNaN(Number(rate))) throw new Error(`Per-event sample rates: “${line}” is not “name = rate”.`);
            settings.event_sample_rates[event] = Number(rate);
          }
        }
        const targeting = {
          platforms: checked('platforms'), channels: checked('channels'), release_channels: checked('release_channels'),
          countries: checked('countries'), regions: splitList(regions.value.toUpperCase()),
        };
        if (versions.value.trim()) targeting.app_versions = versions.value.trim();
        if (limitRollout.checked) targeting.rollout_percent = Number(rollout.value);
        const out = {
          name: name.value.trim(), product: productSel.value, enabled: enabled.checked,
          priority: Number(priority.value) || 0, targeting, settings,
          starts_at: fromLocalInput(startsAt.value), expires_at: fromLocalInput(expiresAt.value),
        };
        if (id) out.id = id;
        return out;
      }

      let previewSerial = 0;
      async function runPreview() {
        if (readOnly) return;
        let d;
        try { d = draft(); } catch (e) { replace(preview, errorState(e)); return; }
        if (!Object.keys(d.settings).length) {
          replace(preview, emptyState('Set at least one setting to see who the policy reaches.'));
          return;
        }
        const mine = ++previewSerial;
        preview.setAttribute('aria-busy', 'true');
        try {
          const report = await api('/api/v1/policies/preview', { method: 'POST', body: { ...d, name: d.name || 'preview' }, signal: ctx.signal });
          if (mine === previewSerial) replace(preview, renderPreview(report));
        } catch (error) {
          if (error.name !== 'AbortError' && mine === previewSerial) replace(preview, errorState(error));
        } finally {
          if (mine === previewSerial) preview.removeAttribute('aria-busy');
        }
      }

      async function save() {
        replace(message);
        let d;
        try { d = draft(); } catch (e) { replace(message, errorState(e)); return; }
        try {
          const saved = id
            ? await api(`/api/v1/policies/${encodeURIComponent(id)}`, { method: 'PUT', body: d })
            : await api('/api/v1/policies', { method: 'POST', body: d });
          flashNext(`Policy “${saved.name}” ${id ? 'saved' : 'created'}.`);
          navigate('/policies');
        } catch (error) {
          const field = error.details?.field;
          replace(message, errorState(field ? Object.assign(error, { message: `${field}: ${error.details.reason}` }) : error));
          if (field) form.querySelector(`[name="${CSS.escape(field.split('.').pop())}"]`)?.focus();
        }
      }

      replace(body,
        h('div', { class: 'page-head' }, h('div', {}, h('h1', {}, policy ? policy.name : 'New policy'),
          h('p', {}, readOnly ? 'Read-only: viewers cannot change policies.' : 'Targeting narrows who gets the settings; the preview updates as you edit.'))),
        h('div', { class: 'grid-2 builder' }, panel(null, form), h('div', { class: 'sticky' }, panel('Preview', preview))));
      if (policy && !readOnly) runPreview();
      if (readOnly && policy) replace(preview, h('p', { class: 'muted' }, toDraft(policy).enabled ? 'This policy is enabled.' : 'This policy is disabled.'));
    }
  },
};

/** Values of the targeting fields seen in the product's last 30 days. */
async function seenValues(product, signal) {
  const out = {};
  await Promise.all(CHECK_GROUPS.map(async ([, field]) => {
    try {
      const r = await api(`/api/v1/stats/breakdown${query({ field, product, from: '-30d', limit: 50 })}`, { signal });
      out[field] = r.rows.map((row) => row.value).filter(Boolean);
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      out[field] = [];
    }
  }));
  return out;
}

function renderPreview(r) {
  const dry = r.dry_run;
  const base = dry.baseline || {};
  const breakdown = (rows, label) => (rows.length ? table([{ label }, { label: 'Matching', num: true }, { label: 'Installs', num: true }],
    rows.map((b) => [b.value, fmtNumber(b.matching), fmtNumber(b.total)])) : null);
  return [
    h('p', { class: 'preview-match', id: 'preview-match', 'data-matching': r.matching_installs, 'data-total': r.total_installs },
      h('strong', {}, `${fmtNumber(r.matching_installs)} of ${fmtNumber(r.total_installs)} installs would match`),
      ` (${fmtPercent(r.matching_installs, r.total_installs)}, installs seen in the last 30 days).`),
    h('h3', {}, 'Dry run over the last 7 days of events'),
    table([{ label: '' }, { label: 'With this policy', num: true }, { label: 'Today', num: true }], [
      ['Events', fmtNumber(dry.events), fmtNumber(base.events)],
      ['Kept', fmtNumber(dry.kept), fmtNumber(base.kept)],
      ['Dropped by policy', fmtNumber(dry.dropped_by_policy), fmtNumber(base.dropped_by_policy)],
      ['Sampled out', fmtNumber(dry.sampled_out), fmtNumber(base.sampled_out)],
    ], { rowAttrs: (i) => ({ 'data-dry': ['events', 'kept', 'dropped_by_policy', 'sampled_out'][i] }) }),
    Object.keys(dry.dropped_by_reason || {}).length
      ? h('p', { class: 'small muted' }, `Dropped because: ${Object.entries(dry.dropped_by_reason).map(([k, v]) => `${k} ${fmtNumber(v)}`).join(', ')}`) : null,
    h('h3', {}, 'By platform'), breakdown(r.by_platform || [], 'Platform'),
    h('h3', {}, 'By app version'), breakdown(r.by_app_version || [], 'Version'),
  ];
}
