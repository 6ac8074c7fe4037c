// The project's own SVG charts: stacked bars over time, lines over time, horizontal bars and
// sparklines. Axes with rounded ticks, series colours by CSS class (s-info, s-0, ...), and a
// native tooltip (`<title>`) on every bar and point. Charts scale with their container.

import { h, s } from './dom.js';
import { fmtCompact, fmtNumber, timeLabeller } from './format.js';

/** Time charts draw in an 800-unit-wide box (420 on narrow screens or when asked, for legible text). */
const chartWidth = (width) => width || (window.innerWidth < 760 ? 420 : 800);
const PAD = { top: 10, right: 12, bottom: 24, left: 48 };

/** A round upper bound for an axis whose largest value is `max`. */
export function niceMax(max) {
  if (!(max > 0)) return 1;
  const exp = 10 ** Math.floor(Math.log10(max));
  const f = max / exp;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * exp;
}

/** The frame shared by time charts: y ticks with grid lines and x labels at even steps. */
function timeFrame(svg, { W, height, top, xs, xLabel, yFormat }) {
  const plotH = height - PAD.top - PAD.bottom;
  const y = (v) => PAD.top + plotH - (v / top) * plotH;
  for (let i = 0; i <= 4; i += 1) {
    const v = (top * i) / 4;
    svg.append(s('line', { class: 'gridline', x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }),
      s('text', { x: PAD.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, yFormat(v)));
  }
  const step = Math.max(1, Math.ceil(xs.length / (W < 800 ? 4 : 7)));
  xs.forEach((x, i) => {
    if (i % step === 0) svg.append(s('text', { x: x.center, y: height - 6, 'text-anchor': 'middle' }, xLabel(x.value)));
  });
  svg.append(s('line', { class: 'axis', x1: PAD.left, x2: W - PAD.right, y1: y(0), y2: y(0) }));
  return y;
}

function legend(series) {
  return h('div', { class: 'legend' }, series.map((sr) => h('span', {}, h('span', { class: `swatch ${sr.cls}` }), sr.label)));
}

/**
 * Stacked bars, one per bucket. `buckets`: [{x (ms), ...}], `series`: [{label, cls,
 * value(bucket)}]. Options: `height`, `yFormat`, `valueFormat`, `xLabel`, `title` (aria).
 */
export function stackedBars(buckets, series, { height = 220, yFormat = fmtCompact, valueFormat = fmtNumber, xLabel, title = 'Chart', width } = {}) {
  const W = chartWidth(width);
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${height}`, role: 'img', 'aria-label': title });
  const span = buckets.length > 1 ? buckets[buckets.length - 1].x - buckets[0].x : 0;
  const label = xLabel || timeLabeller(span);
  const totals = buckets.map((b) => series.reduce((sum, sr) => sum + (sr.value(b) || 0), 0));
  const top = niceMax(Math.max(0, ...totals));
  const plotW = W - PAD.left - PAD.right;
  const slot = plotW / Math.max(1, buckets.length);
  const barW = Math.max(1, slot * 0.78);
  const xs = buckets.map((b, i) => ({ value: b.x, left: PAD.left + i * slot + (slot - barW) / 2, center: PAD.left + i * slot + slot / 2 }));
  const y = timeFrame(svg, { W, height, top, xs, xLabel: label, yFormat });
  buckets.forEach((bucket, i) => {
    let base = 0;
    const group = s('g', {});
    for (const sr of series) {
      const v = sr.value(bucket) || 0;
      if (v <= 0) continue;
      group.append(s('rect', { class: sr.cls, x: xs[i].left, width: barW, y: y(base + v), height: Math.max(0.5, y(base) - y(base + v)) },
        s('title', {}, `${label(bucket.x)} · ${sr.label}: ${valueFormat(v)}`)));
      base += v;
    }
    if (totals[i] > 0) group.append(s('title', {}, `${label(bucket.x)} · total ${valueFormat(totals[i])}`));
    svg.append(group);
  });
  return h('figure', { class: 'chart-figure' }, svg, series.length > 1 ? legend(series) : null);
}

/**
 * Lines over time: `points`: [{x, ...}], `series`: [{label, cls, value(point)}]. With `gaps`, a
 * missing value (null) breaks its line instead of counting as 0.
 */
export function lineChart(points, series, { height = 200, yFormat = fmtCompact, valueFormat = fmtNumber, title = 'Chart', width, gaps = false, xLabel } = {}) {
  const W = chartWidth(width);
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${height}`, role: 'img', 'aria-label': title });
  const span = points.length > 1 ? points[points.length - 1].x - points[0].x : 0;
  const label = xLabel || timeLabeller(span);
  const valueOf = (sr, p) => {
    const v = sr.value(p);
    return gaps && (v === null || v === undefined) ? null : v || 0;
  };
  const max = Math.max(0, ...points.flatMap((p) => series.map((sr) => valueOf(sr, p) || 0)));
  const top = niceMax(max);
  const plotW = W - PAD.left - PAD.right;
  const first = points[0]?.x ?? 0;
  const xOf = (x) => PAD.left + (span ? ((x - first) / span) * plotW : plotW / 2);
  const xs = points.map((p) => ({ value: p.x, center: xOf(p.x) }));
  const y = timeFrame(svg, { W, height, top, xs, xLabel: label, yFormat });
  for (const sr of series) {
    let d = '';
    let drawing = false;
    for (const p of points) {
      const v = valueOf(sr, p);
      if (v === null) { drawing = false; continue; }
      d += `${drawing ? 'L' : 'M'}${xOf(p.x).toFixed(1)},${y(v).toFixed(1)}`;
      drawing = true;
    }
    svg.append(s('path', { class: `line ${sr.cls}`, d }));
    const step = Math.max(1, Math.ceil(points.length / 60));
    points.forEach((p, i) => {
      const v = valueOf(sr, p);
      if ((i % step && i !== points.length - 1) || v === null) return;
      svg.append(s('circle', { class: sr.cls, cx: xOf(p.x), cy: y(v), r: 2.5 },
        s('title', {}, `${label(p.x)} · ${sr.label}: ${valueFormat(v)}`)));
    });
  }
  return h('figure', { class: 'chart-figure' }, svg, series.length > 1 ? legend(series) : null);
}

/**
 * Horizontal bars: `rows`: [{label, value, title?, href?}], largest first. The label and the
 * value are drawn beside the bar; `href` makes the row a link.
 */
export function hbars(rows, { valueFormat = fmtNumber, title = 'Chart', cls = 's-0', width = 440 } = {}) {
  const rowH = 24;
  const height = rows.length * rowH + 4;
  const labelW = Math.round(width * 0.34);
  const valueW = 64;
  const barMax = width - labelW - valueW - 8;
  const top = Math.max(1, ...rows.map((r) => r.value));
  const svg = s('svg', { class: 'chart hbars', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title });
  const maxChars = Math.floor(labelW / 7);
  rows.forEach((row, i) => {
    const y = i * rowH + 2;
    const text = row.label.length > maxChars ? `${row.label.slice(0, maxChars - 1)}…` : row.label;
    const group = s('g', {},
      s('title', {}, row.title || `${row.label}: ${valueFormat(row.value)}`),
      s('text', { class: 'bar-label', x: labelW - 8, y: y + 15, 'text-anchor': 'end' }, text),
      s('rect', { class: 'hbar-track', x: labelW, y: y + 3, width: barMax, height: rowH - 8, rx: 3 }),
      s('rect', { class: cls, x: labelW, y: y + 3, width: Math.max(1, (row.value / top) * barMax), height: rowH - 8, rx: 3 }),
      s('text', { x: labelW + barMax + 8, y: y + 15 }, valueFormat(row.value)));
    svg.append(row.href ? s('a', { href: row.href }, group) : group);
  });
  return svg;
}

/** A tiny bar sparkline of `values` (e.g. daily counts), with a tooltip per bar. */
export function sparkline(values, { labels = [], title = 'Trend' } = {}) {
  const w = 120;
  const ht = 28;
  const top = Math.max(1, ...values);
  const slot = w / Math.max(1, values.length);
  const svg = s('svg', { class: 'sparkline', viewBox: `0 0 ${w} ${ht}`, role: 'img', 'aria-label': title });
  values.forEach((v, i) => {
    const barH = v > 0 ? Math.max(1.5, (v / top) * (ht - 2)) : 0.5;
    svg.append(s('rect', { x: i * slot + 0.5, width: Math.max(1, slot - 1), y: ht - barH, height: barH },
      s('title', {}, `${labels[i] ?? i}: ${fmtNumber(v)}`)));
  });
  return svg;
}
