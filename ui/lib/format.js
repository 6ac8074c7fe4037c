// Formatting for display, always in the browser's locale and time zone: times, days,
// relative times, numbers, bytes, percentages, durations and country names.

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const shortDateTime = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
const timeOnly = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayOnly = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const number = new Intl.NumberFormat();
const compact = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 });
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
let regionNames = null;
try { regionNames = new Intl.DisplayNames(undefined, { type: 'region' }); } catch { /* old browser */ }

export const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone;

export const fmtTime = (ms) => (ms == null ? '—' : dateTime.format(ms));
export const fmtShortTime = (ms) => shortDateTime.format(ms);
export const fmtClock = (ms) => timeOnly.format(ms);
export const fmtDay = (ms) => dayOnly.format(ms);
export const fmtNumber = (n) => (n == null || Number.isNaN(n) ? '—' : number.format(n));
export const fmtCompact = (n) => (n == null ? '—' : compact.format(n));

/** Axis labels: clock times for spans under two days, dates beyond. */
export function timeLabeller(spanMs) {
  if (spanMs <= 36 * 3600_000) return fmtClock;
  if (spanMs <= 4 * 86400_000) return fmtShortTime;
  return fmtDay;
}

export function fmtRelative(ms, now = Date.now()) {
  if (ms == null) return '—';
  const seconds = Math.round((ms - now) / 1000);
  const units = [['day', 86400], ['hour', 3600], ['minute', 60]];
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size) return relative.format(Math.round(seconds / size), unit);
  }
  return relative.format(seconds, 'second');
}

export function fmtBytes(bytes) {
  if (bytes == null) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(value < 10 && unit > 0 ? 1 : 0)} ${units[unit]}`;
}

export function fmtRate(perSecond) {
  if (perSecond == null) return '—';
  return `${perSecond >= 10 ? number.format(Math.round(perSecond)) : perSecond.toFixed(1)}/s`;
}

const millis = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
/** A duration given in ms: `0.25 ms`, `812.5 ms`, `1.23 s`, `2 min 5 s`. */
export function fmtDuration(ms) {
  if (ms == null || Number.isNaN(ms)) return '—';
  if (Math.abs(ms) < 1000) return `${millis.format(ms)} ms`;
  if (Math.abs(ms) < 60_000) return `${millis.format(ms / 1000)} s`;
  const seconds = Math.round(ms / 1000);
  return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
}

export const fmtPercent = (part, whole) => (whole ? `${((100 * part) / whole).toFixed(1)} %` : '—');

export function countryName(code) {
  if (!code) return 'Unknown';
  try { return regionNames?.of(code.toUpperCase()) || code; } catch { return code; }
}

/** `datetime-local` input value ↔ ms since the epoch, in the browser's zone. */
export function toLocalInput(ms) {
  if (ms == null) return '';
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
export function fromLocalInput(value) {
  if (!value) return null;
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? null : ms;
}
