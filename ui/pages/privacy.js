// Privacy (admins; viewers get a note): look up, export and erase one data subject (an install
// or a user id) — the erasure is confirmed in a dialog that says exactly what will happen and
// then shows the counts — and the audit log with action and time filters.

import { h, replace } from '../lib/dom.js';
import { api, apiRaw, query, session, download } from '../lib/api.js';
import { fmtNumber, fmtTime } from '../lib/format.js';
import { eventsTable } from '../lib/events-table.js';
import { panel, pageHead, table, select, rangePresets, dialog, errorState, emptyState, loadingState, load } from '../lib/ui.js';

const AUDIT_PAGE = 50;
const ACTIONS = ['', 'subject.erase', 'subject.export', 'events.export', 'policy.create', 'policy.update', 'policy.delete',
  'cluster.update', 'clustering.run', 'purge.start', 'backup.create'];
const PREVIEW_ROWS = 20;

function subjectPath(kind, id) {
  return `/api/v1/subjects/${kind}/${encodeURIComponent(id)}`;
}

/** The subject's events (NDJSON) and their count. */
async function lookUp(kind, id, signal) {
  const response = await apiRaw(subjectPath(kind, id), { signal });
  const text = await response.text();
  const events = text.split('\n').filter(Boolean).map((line) => JSON.parse(line));
  return { events, total: Number(response.headers.get('x-total-count') ?? events.length) };
}

export default {
  title: 'Privacy',
  render(ctx) {
    const result = h('div', { id: 'subject-result' });
    const idInput = h('input', { type: 'text', name: 'subject_id', id: 'subject-id', required: true, autocomplete: 'off', spellcheck: 'false', maxlength: 200, value: ctx.query.get('id') || '' });
    const kindSelect = select('Kind', 'kind', [['install', 'Install id'], ['user', 'User id']], ctx.query.get('kind') || 'install');
    const kindOf = () => kindSelect.querySelector('select').value;
    const subject = () => ({ kind: kindOf(), id: idInput.value.trim() });

    async function showLookup() {
      const { kind, id } = subject();
      if (!id) { idInput.focus(); return; }
      ctx.setQuery({ kind, id });
      await load(result, () => lookUp(kind, id, ctx.signal), ({ events, total }) => {
        const tableView = eventsTable({ caption: 'Events of this subject' });
        tableView.add(events.slice(0, PREVIEW_ROWS));
        return [
          h('p', { id: 'subject-count', 'data-total': total }, h('strong', {}, `${fmtNumber(total)} stored ${total === 1 ? 'event' : 'events'}`), ` of ${kind} `, h('code', {}, id),
            total > PREVIEW_ROWS ? ` (the newest ${PREVIEW_ROWS} are shown)` : ''),
          h('div', { class: 'row mb' },
            h('button', { type: 'button', class: 'ghost', onclick: () => download(subjectPath(kind, id), `${kind}-${id}.ndjson`) }, 'Download export (NDJSON)')),
          tableView.element,
        ];
      }, { isEmpty: (r) => r.total === 0, empty: `No stored events of ${kind} ${id}.` });
    }

    async function erase() {
      const { kind, id } = subject();
      if (!id) { idInput.focus(); return; }
      let count;
      try {
        count = (await lookUp(kind, id, ctx.signal)).total;
      } catch (error) {
        replace(result, errorState(error));
        return;
      }
      const ok = await dialog({
        title: `Erase ${kind} ${id}?`,
        confirm: `Erase ${fmtNumber(count)} ${count === 1 ? 'event' : 'events'}`,
        danger: true,
        body: h('div', { id: 'erase-explanation' },
          h('p', {}, `This permanently deletes the ${fmtNumber(count)} stored ${count === 1 ? 'event' : 'events'} of ${kind} `, h('code', {}, id),
            ' from the store and the search index, removes ', kind === 'install' ? 'the install from the install registry' : 'the installs only this user had',
            kind === 'install' ? ', its share of cluster counts and its client metric series' : ' and its share of cluster counts',
            ', and asks for a purge that rewrites the files on disk (at most one per purge interval; erasures in between share it).'),
          h('p', {}, 'An audit entry records the erasure with a hash of the id, not the id itself. This cannot be undone.')),
      });
      if (!ok) return;
      replace(result, loadingState('Erasing…'));
      try {
        const report = await api(subjectPath(kind, id), { method: 'DELETE' });
        replace(result, h('div', { class: 'notice ok', id: 'erase-report', role: 'status' },
          h('strong', {}, `Erased ${kind} ${id}.`),
          h('dl', { class: 'kv' },
            h('dt', {}, 'Events removed'), h('dd', { 'data-count': 'events_removed' }, fmtNumber(report.events_removed)),
            h('dt', {}, 'Installs removed'), h('dd', { 'data-count': 'installs_removed' }, fmtNumber(report.installs_removed)),
            kind === 'install' ? [h('dt', {}, 'Metric points removed'), h('dd', { 'data-count': 'series_points_removed' }, fmtNumber(report.series_points_removed))] : null,
            h('dt', {}, 'Index documents removed'), h('dd', {}, fmtNumber(report.index_documents_removed)),
            h('dt', {}, 'Audit entry'), h('dd', {}, `#${report.audit_id}`),
            h('dt', {}, 'Purge'), h('dd', { id: 'erase-purge' }, purgeText(report.purge)))));
        if (auditBox) refreshAudit();
      } catch (error) {
        replace(result, errorState(error));
      }
    }

    // Looking a subject up is its export (right of access): an admin action, audited.
    const form = session.canWrite
      ? h('form', { class: 'filters', id: 'subject-form', onsubmit: (e) => { e.preventDefault(); showLookup(); } },
        kindSelect,
        h('label', { class: 'wide' }, 'Id', idInput),
        h('button', { type: 'submit' }, 'Look up'),
        h('button', { type: 'button', class: 'danger', id: 'erase-subject', onclick: erase }, 'Erase…'))
      : emptyState('Looking up, exporting and erasing a data subject is for admins.');

    // The audit log (admins only: the API refuses viewers).
    let auditBox = null;
    const audit = { action: ctx.query.get('action') || '', from: '-7d', before: null };
    const pages = [];
    const refreshAudit = (before = null) => load(auditBox,
      () => api(`/api/v1/audit${query({ action: audit.action, from: audit.from === 'all' ? '' : audit.from, before, limit: AUDIT_PAGE })}`, { signal: ctx.signal }),
      (r) => [
        table([{ label: 'Time' }, { label: 'Actor' }, { label: 'Action' }, { label: 'Target' }, { label: 'Outcome' }, { label: 'Result', className: 'hide-narrow' }],
          r.entries.map((e) => [h('span', { class: 'nowrap' }, fmtTime(e.time_ms)), e.actor, h('code', {}, e.action), h('span', { class: 'mono small' }, e.target),
            e.outcome, h('span', { class: 'mono small truncate', title: JSON.stringify(e.result) }, JSON.stringify(e.result))]),
          { rowAttrs: (i) => ({ class: 'audit-row', 'data-action': r.entries[i].action }) }),
        h('div', { class: 'pager' },
          pages.length ? h('button', { type: 'button', class: 'ghost small', onclick: () => refreshAudit(pages.pop()) }, 'Newer') : null,
          r.next_before ? h('button', { type: 'button', class: 'ghost small', onclick: () => { pages.push(before); refreshAudit(r.next_before); } }, 'Older') : null),
      ],
      { isEmpty: (r) => r.entries.length === 0, empty: 'No audit entries match.' });

    let auditPanel;
    if (session.canWrite) {
      auditBox = h('div', { id: 'audit-log' });
      auditPanel = panel('Audit log',
        h('div', { class: 'filters' },
          select('Action', 'action', ACTIONS.map((a) => [a, a || 'Any action']), audit.action, (v) => { audit.action = v; pages.length = 0; refreshAudit(); }),
          rangePresets(audit.from, (v) => { audit.from = v; pages.length = 0; refreshAudit(); }, [['-24h', '24 h'], ['-7d', '7 d'], ['-30d', '30 d'], ['all', 'All']])),
        auditBox);
    } else {
      auditPanel = panel('Audit log', emptyState('The audit log is visible to admins only.'));
    }

    ctx.view.append(
      pageHead('Privacy', 'Right of access and erasure for one install or user id.'),
      panel('Data subject', form, result),
      auditPanel);
    Promise.all([auditBox ? refreshAudit() : null, idInput.value && session.canWrite ? showLookup() : null]).then(() => ctx.loaded());
  },
};

/** What the purge an erasure asked for will do: `running`, `scheduled for <time>` or `idle`. */
function purgeText(purge) {
  if (!purge) return '—';
  return purge.state === 'scheduled' && purge.due_at ? `scheduled for ${fmtTime(purge.due_at)}` : purge.state;
}
