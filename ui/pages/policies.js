// Policies: the stored collection policies with what they target, what they set and when they
// apply; admins enable/disable, edit (in the builder) and delete them.

import { h } from '../lib/dom.js';
import { api, query, session } from '../lib/api.js';
import { fmtTime, fmtRelative } from '../lib/format.js';
import { load, pageHead, panel, productSelect, table, badge, dialog, errorState, flash, showPendingFlash } from '../lib/ui.js';

/** A policy as the API's PUT/POST body (the stored fields a draft may not carry removed). */
export function toDraft(policy) {
  const { created_at: _c, updated_at: _u, ...draft } = policy;
  return draft;
}

export function describeTargeting(t = {}) {
  const parts = [];
  if (t.platforms?.length) parts.push(`platforms ${t.platforms.join(', ')}`);
  if (t.channels?.length) parts.push(`channels ${t.channels.join(', ')}`);
  if (t.release_channels?.length) parts.push(`release ${t.release_channels.join(', ')}`);
  if (t.app_versions) parts.push(`versions ${t.app_versions}`);
  if (t.countries?.length) parts.push(`countries ${t.countries.join(', ')}`);
  if (t.regions?.length) parts.push(`regions ${t.regions.join(', ')}`);
  if (t.rollout_percent != null) parts.push(`${t.rollout_percent} % of installs`);
  return parts.length ? parts.join('; ') : 'every install';
}

export function describeSettings(s = {}) {
  return Object.entries(s).map(([k, v]) => `${k} = ${Array.isArray(v) ? v.join(', ') : typeof v === 'object' ? JSON.stringify(v) : v}`).join('; ') || '—';
}

function schedule(p) {
  if (!p.starts_at && !p.expires_at) return 'always';
  return [p.starts_at ? `from ${fmtTime(p.starts_at)}` : null, p.expires_at ? `until ${fmtTime(p.expires_at)}` : null].filter(Boolean).join(' ');
}

export default {
  title: 'Policies',
  render(ctx) {
    let product = ctx.query.get('product') || '';
    const list = h('div', { id: 'policies-list' });
    const notices = h('div', {});
    showPendingFlash(notices);

    const refresh = () => {
      ctx.setQuery({ product });
      return load(list, () => api(`/api/v1/policies${query({ product })}`, { signal: ctx.signal }), render,
        { isEmpty: (r) => r.policies.length === 0, empty: 'No policies: every client gets its product’s defaults.' });
    };

    const write = async (action, message) => {
      try {
        await action();
        flash(notices, message);
      } catch (error) {
        notices.prepend(errorState(error));
      }
      refresh();
    };

    function render(r) {
      return table(
        [{ label: 'Name' }, { label: 'Product' }, { label: 'State' }, { label: 'Priority', num: true }, { label: 'Targets' },
          { label: 'Settings', className: 'hide-narrow' }, { label: 'Schedule', className: 'hide-narrow' }, { label: 'Updated' }, { label: '' }],
        r.policies.map((p) => [
          h('a', { href: `/policies/${encodeURIComponent(p.id)}`, class: 'policy-name' }, p.name),
          p.product,
          badge(p.enabled ? 'on' : 'off', p.enabled ? 'enabled' : 'disabled'),
          String(p.priority),
          h('span', { class: 'small' }, describeTargeting(p.targeting)),
          h('span', { class: 'small mono' }, describeSettings(p.settings)),
          h('span', { class: 'small' }, schedule(p)),
          h('span', { title: fmtTime(p.updated_at) }, fmtRelative(p.updated_at)),
          session.canWrite ? h('div', { class: 'row' },
            h('button', {
              type: 'button', class: 'ghost small',
              onclick: () => write(() => api(`/api/v1/policies/${encodeURIComponent(p.id)}`, { method: 'PUT', body: { ...toDraft(p), enabled: !p.enabled } }),
                `Policy “${p.name}” ${p.enabled ? 'disabled' : 'enabled'}.`),
            }, p.enabled ? 'Disable' : 'Enable'),
            h('button', {
              type: 'button', class: 'ghost small',
              onclick: async () => {
                const ok = await dialog({ title: 'Delete this policy?', confirm: 'Delete', danger: true, body: h('p', {}, `“${p.name}” stops applying at once; clients get the change on their next config fetch.`) });
                if (ok) write(() => api(`/api/v1/policies/${encodeURIComponent(p.id)}`, { method: 'DELETE' }), `Policy “${p.name}” deleted.`);
              },
            }, 'Delete')) : null,
        ]),
        { rowAttrs: (i) => ({ class: 'policy-row', 'data-id': r.policies[i].id }) });
    }

    ctx.view.append(
      pageHead('Policies', 'What clients collect, decided centrally: served by /api/v1/config and enforced at ingest.',
        productSelect(product, (v) => { product = v; refresh(); }),
        session.canWrite ? h('a', { class: 'button', href: '/policies/new', id: 'new-policy' }, 'New policy') : null),
      notices, panel(null, list));
    refresh().then(() => ctx.loaded());
  },
};
