// One trace as a waterfall: the API's rows in tree order, each indented by its depth, spans as
// bars placed by their start offset and sized by their duration against the trace's total,
// logs as markers at their time, errors marked by class, colour and label; a row expands into
// the whole event. Figures (duration, counts, offsets, widths) are the API's.

import { h, s, replace } from '../lib/dom.js';
import { api, query } from '../lib/api.js';
import { fmtDuration, fmtNumber, fmtTime } from '../lib/format.js';
import { eventDetail } from '../lib/events-table.js';
import { badge, card, panel, errorState, loadingState } from '../lib/ui.js';

/** Attributes shown in a row; all of them are in its tooltip and in the expanded event. */
const SHOWN_ATTRIBUTES = 4;
const COLUMNS = [['', null], ['Name', 'wf-name-col'], ['Timeline', 'wf-timeline-col'], ['Start', 'num hide-narrow'], ['Duration', 'num'], ['Attributes', 'hide-narrow']];

/** Percent of the trace's total, for SVG x/width attributes (a trace of 0 ms puts all at 0). */
function percent(ms, total) {
  return total > 0 ? (100 * ms) / total : 0;
}

function attributesText(attributes) {
  return Object.entries(attributes || {}).map(([k, v]) => `${k}=${v}`);
}

/** The time axis over the timeline column: 0, quarters, the total. */
function axis(total) {
  return s('svg', { class: 'wf-axis', 'aria-hidden': 'true' },
    [0, 0.25, 0.5, 0.75, 1].map((f) => s('text', {
      x: `${100 * f}%`, y: 12, 'text-anchor': f === 0 ? 'start' : f === 1 ? 'end' : 'middle',
      class: f > 0 && f < 1 ? 'wf-tick-mid' : null,
    }, fmtDuration(total * f))));
}

/** The bar of a span (a tick when it lasted 0 ms), or the marker of a log, on a track with quarter grid lines. */
function track(row, total) {
  const x = percent(row.offset_ms, total);
  const width = percent(row.duration_ms, total);
  const tone = row.error ? 's-error' : row.kind === 'span' ? 's-0' : 's-6';
  const tip = `${row.name}: ${row.kind === 'span' ? fmtDuration(row.duration_ms) : 'log'} at +${fmtDuration(row.offset_ms)}`;
  let mark;
  if (row.kind === 'log') mark = s('circle', { class: ['wf-marker', tone], cx: `${x}%`, cy: 9, r: 4.5 }, s('title', {}, tip));
  else if (width > 0) mark = s('rect', { class: ['wf-bar', tone], x: `${x}%`, width: `${width}%`, y: 3, height: 12, rx: 2 }, s('title', {}, tip));
  else mark = s('line', { class: ['wf-bar', 'wf-instant', tone], x1: `${x}%`, x2: `${x}%`, y1: 2, y2: 16 }, s('title', {}, tip));
  return s('svg', { class: 'wf-track', role: 'img', 'aria-label': tip },
    [25, 50, 75].map((p) => s('line', { class: 'gridline', x1: `${p}%`, x2: `${p}%`, y1: 0, y2: 18 })),
    mark);
}

function waterfall(trace) {
  const events = new Map(trace.events.map((e) => [e.id, e]));
  const tbody = h('tbody', {});
  const total = trace.duration_ms;

  function toggle(tr, row, button) {
    const open = button.getAttribute('aria-expanded') === 'true';
    button.setAttribute('aria-expanded', String(!open));
    if (open) { tr.nextElementSibling?.remove(); return; }
    const event = events.get(row.event_id);
    tr.after(h('tr', { class: 'detail-row', id: button.getAttribute('aria-controls') },
      h('td', { colspan: COLUMNS.length }, event ? eventDetail(event, { inTrace: true }) : errorState(new Error('The event is not in this answer.')))));
  }

  trace.waterfall.forEach((row, i) => {
    const button = h('button', { type: 'button', class: 'expander', 'aria-expanded': 'false', 'aria-controls': `trace-event-${i}`, 'aria-label': `Show event ${row.name}` }, '▸');
    const name = h('div', { class: 'wf-indent' },
      h('span', { class: ['wf-kind', row.kind], 'aria-hidden': 'true' }, row.kind === 'span' ? '▬' : '◆'),
      h('span', { class: 'wf-label' }, row.name),
      row.error ? badge('level-error wf-error-label', 'error') : null,
      row.orphan ? h('span', { class: 'muted small nowrap', title: 'Its parent is not in this trace (or the parent chain loops); shown as a root.' }, 'no parent') : null);
    // The depth as a custom property (set through the CSSOM, which the CSP allows).
    name.style.setProperty('--depth', String(row.depth));
    const attributes = attributesText(row.attributes);
    const tr = h('tr', {
      class: ['wf-row', row.kind, row.error && 'error'],
      'data-event-id': row.event_id, 'data-depth': row.depth, 'data-kind': row.kind,
      'data-offset-ms': row.offset_ms, 'data-duration-ms': row.duration_ms,
    },
    h('td', {}, button),
    h('td', { class: 'wf-name' }, name),
    h('td', { class: 'wf-timeline' }, track(row, total)),
    h('td', { class: 'num nowrap hide-narrow wf-start' }, `+${fmtDuration(row.offset_ms)}`),
    h('td', { class: 'num nowrap wf-duration' }, row.kind === 'span' ? fmtDuration(row.duration_ms) : '—'),
    h('td', { class: 'hide-narrow truncate wf-attributes', title: attributes.join('\n') },
      attributes.slice(0, SHOWN_ATTRIBUTES).join(' '), attributes.length > SHOWN_ATTRIBUTES ? ` +${attributes.length - SHOWN_ATTRIBUTES}` : ''));
    button.addEventListener('click', (e) => { e.stopPropagation(); toggle(tr, row, button); });
    tr.addEventListener('click', (e) => { if (!e.target.closest('a, button') && !getSelection().toString()) toggle(tr, row, button); });
    tbody.append(tr);
  });

  return h('div', { class: 'table-wrap' },
    h('table', { class: 'waterfall', id: 'waterfall' },
      h('caption', { class: 'muted small', hidden: true }, 'Spans and logs of the trace'),
      h('thead', {}, h('tr', {}, COLUMNS.map(([label, cls]) => h('th', { scope: 'col', class: cls },
        label === 'Timeline' ? [h('span', { class: 'visually-hidden' }, label), axis(total)] : label)))),
      tbody));
}

export default {
  title: 'Trace',
  render(ctx) {
    const id = ctx.params.id;
    const body = h('div', {}, loadingState());
    ctx.view.append(
      h('p', {}, h('a', { href: `/events${query({ trace_id: id, from: 'all' })}`, id: 'trace-events-link' }, '← Events of this trace')),
      body);

    const show = (trace) => {
      document.title = `Trace ${id.slice(0, 8)}… · telemetryd`;
      replace(body,
        h('div', { class: 'page-head' },
          h('div', {},
            h('h1', {}, 'Trace'),
            h('p', {}, h('code', { id: 'trace-id' }, trace.trace_id), ` · started ${fmtTime(trace.start_ms)}`))),
        h('div', { class: 'cards' },
          card('Duration', fmtDuration(trace.duration_ms), null, 'duration'),
          card('Spans', fmtNumber(trace.spans), null, 'spans'),
          card('Logs', fmtNumber(trace.logs), null, 'logs'),
          card('Errors', fmtNumber(trace.errors), null, 'errors'),
          card('Events', fmtNumber(trace.total), trace.truncated ? `the first ${fmtNumber(trace.limit)} are shown` : null, 'events')),
        trace.truncated
          ? h('div', { class: 'notice', id: 'trace-truncated', role: 'status' },
            `This trace has ${fmtNumber(trace.total)} events; the waterfall shows the first ${fmtNumber(trace.limit)} by time.`)
          : null,
        panel('Waterfall', waterfall(trace),
          h('p', { class: 'legend' },
            h('span', {}, h('span', { class: 'swatch s-0' }), 'span'),
            h('span', {}, h('span', { class: 'swatch s-6 round' }), 'log'),
            h('span', {}, h('span', { class: 'swatch s-error' }), 'error'))));
    };

    const fetchTrace = async () => {
      try {
        show(await api(`/api/v1/traces/${encodeURIComponent(id)}`, { signal: ctx.signal }));
      } catch (error) {
        if (error.name === 'AbortError') return;
        replace(body, errorState(error, fetchTrace));
      }
      ctx.loaded();
    };
    fetchTrace();
  },
};
