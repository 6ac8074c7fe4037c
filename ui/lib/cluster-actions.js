// Status changes of an error cluster, shared by the cluster list and the cluster page:
// resolve (optionally in a version), ignore (forever, until a time, for N more events or
// installs) and reopen, each through a dialog that says what will happen. Admins only.

import { h } from './dom.js';
import { api, session } from './api.js';
import { fmtTime, fromLocalInput, toLocalInput } from './format.js';
import { dialog, badge } from './ui.js';

export function statusBadge(cluster) {
  return h('span', { class: 'row', 'data-status': cluster.status },
    badge(`status-${cluster.status}`, cluster.status),
    cluster.escalating ? badge('escalating', 'escalating') : null);
}

/** A sentence describing an ignore condition from the API. */
export function describeIgnore(ignore) {
  if (!ignore) return '';
  switch (ignore.kind) {
    case 'forever': return 'ignored forever';
    case 'time': return `ignored until ${fmtTime(ignore.until_ms)}`;
    case 'events': return `ignored for ${ignore.count} more events`;
    case 'installs': return `ignored until ${ignore.count} more installs are affected`;
    default: return `ignored (${ignore.kind})`;
  }
}

async function patch(cluster, body) {
  return api(`/api/v1/clusters/${encodeURIComponent(cluster.id)}`, { method: 'PATCH', body });
}

async function resolve(cluster) {
  const versions = Object.keys(cluster.app_versions || {});
  const values = await dialog({
    title: 'Resolve this cluster',
    confirm: 'Resolve',
    body: h('div', { class: 'stack' },
      h('p', {}, `“${cluster.title}” will be marked resolved. If it happens again it becomes regressed.`),
      h('label', {}, 'Resolved in version (optional: only events from newer versions count as a regression)',
        h('input', { type: 'text', name: 'in_version', list: 'resolve-versions', placeholder: 'e.g. 1.4.2', autocomplete: 'off' }),
        h('datalist', { id: 'resolve-versions' }, versions.map((v) => h('option', { value: v }))))),
  });
  if (!values) return null;
  const body = { status: 'resolved' };
  if (values.in_version?.trim()) body.in_version = values.in_version.trim();
  return patch(cluster, body);
}

async function ignore(cluster) {
  const values = await dialog({
    title: 'Ignore this cluster',
    confirm: 'Ignore',
    body: h('fieldset', {},
      h('legend', {}, 'Until'),
      h('label', { class: 'inline' }, h('input', { type: 'radio', name: 'kind', value: 'forever', checked: true }), 'Forever'),
      h('label', { class: 'inline' }, h('input', { type: 'radio', name: 'kind', value: 'time' }), 'Until',
        h('input', { type: 'datetime-local', name: 'until', value: toLocalInput(Date.now() + 7 * 86400_000), 'aria-label': 'Ignore until' })),
      h('label', { class: 'inline' }, h('input', { type: 'radio', name: 'kind', value: 'events' }), 'For',
        h('input', { type: 'number', name: 'events', min: 1, value: 100, 'aria-label': 'Number of events' }), 'more events'),
      h('label', { class: 'inline' }, h('input', { type: 'radio', name: 'kind', value: 'installs' }), 'Until',
        h('input', { type: 'number', name: 'installs', min: 1, value: 10, 'aria-label': 'Number of installs' }), 'more installs are affected')),
    validate: (v) => {
      if (v.kind === 'time' && !(fromLocalInput(v.until) > Date.now())) return 'Pick a time in the future.';
      if ((v.kind === 'events' || v.kind === 'installs') && !(Number(v[v.kind]) >= 1)) return 'Enter a count of at least 1.';
      return null;
    },
  });
  if (!values) return null;
  const until = values.kind === 'forever' ? { kind: 'forever' }
    : values.kind === 'time' ? { kind: 'time', until_ms: fromLocalInput(values.until) }
      : { kind: values.kind, count: Number(values[values.kind]) };
  return patch(cluster, { status: 'ignored', until });
}

async function reopen(cluster) {
  const ok = await dialog({ title: 'Reopen this cluster', confirm: 'Reopen', body: h('p', {}, `“${cluster.title}” will be open again.`) });
  return ok ? patch(cluster, { status: 'open' }) : null;
}

/**
 * The buttons for `cluster`'s current status; `changed(updated)` gets the API's answer,
 * `failed(error)` an error. Viewers get nothing.
 */
export function clusterActions(cluster, changed, failed) {
  if (!session.canWrite) return null;
  const run = (action) => async () => {
    try {
      const updated = await action(cluster);
      if (updated) changed(updated);
    } catch (error) {
      failed(error);
    }
  };
  const open = cluster.status === 'open' || cluster.status === 'regressed';
  return h('div', { class: 'row cluster-actions' },
    open ? h('button', { type: 'button', class: 'ghost small', onclick: run(resolve) }, 'Resolve…') : null,
    open ? h('button', { type: 'button', class: 'ghost small', onclick: run(ignore) }, 'Ignore…') : null,
    open ? null : h('button', { type: 'button', class: 'ghost small', onclick: run(reopen) }, 'Reopen'));
}
