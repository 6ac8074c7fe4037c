// The end-to-end tests, run in order against one filled server: sign-in for both roles and a
// rejected token; a token scoped to one product sees only it (product picker, cards); every page shows the data the API has (texts and counts); search narrows;
// rows expand; links lead to the cluster and the install; a trace sent through the native
// ingest API is a waterfall with the API's figures and is reached from the Events page;
// resolving a cluster; clusters sharing a title say what sets them apart; each analytics kind;
// a saved query is a link and a dashboard tile with the API's figures, renamed, unpinned and
// deleted; a policy built in the builder is served by /api/v1/config; an erasure
// empties the Events page; narrow screen, dark theme, keyboard; a web app's page on another
// origin sends events with fetch and sendBeacon and is refused admin calls (CORS); posthog-js
// on another origin reads its flags and sends an event; Sentry sessions give the overview's
// release health the API's figures; page timings; nothing requested from elsewhere.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { ADMIN_TOKEN, VIEWER_TOKEN, SCOPED_TOKEN, POSTHOG_TOKEN, SENTRY_KEY, SENTRY_PROJECT, servePage } from './server.mjs';
import { LOCALE, TIME_ZONE } from './browser.mjs';

const fmt = (n) => new Intl.NumberFormat(LOCALE).format(n);
const fmtTime = (ms) => new Intl.DateTimeFormat(LOCALE, { dateStyle: 'medium', timeStyle: 'medium', timeZone: TIME_ZONE }).format(ms);
const qs = (params) => new URLSearchParams(params).toString();
const millis = new Intl.NumberFormat(LOCALE, { maximumFractionDigits: 2 });
/** The UI's duration format (ui/lib/format.js fmtDuration), for spans under a minute. */
const fmtDuration = (ms) => (ms < 1000 ? `${millis.format(ms)} ms` : `${millis.format(ms / 1000)} s`);

/** Waits until `fn()` is truthy (polling the page), with a message naming what was awaited. */
async function until(what, fn, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

async function cardValue(tab, key) {
  return tab.text(`[data-card="${key}"] .value`);
}

/** A cluster's weighted count as the UI shows it (ui/pages/clusters.js countText). */
const clusterCount = (c) => `${c.count_estimated ? '~' : ''}${fmt(Math.round(c.count))}`;
/** What sets a cluster apart from those sharing its title (ui/pages/clusters.js distinctionText). */
const distinction = (c) => c.distinguished_by.map((d) => `${{ error_domain: 'domain', error_code: 'code' }[d.field] || d.field} ${d.value ?? '(none)'}`).join(' · ');

export const specs = [
  ['sign-in: a wrong token is refused, the admin signs in, sees who they are, and signs out', async (t) => {
    const tab = await t.newTab();
    await tab.load('/');
    assert.equal(await tab.page.getAttribute('#view', 'data-route'), 'signin');
    assert.equal(await tab.page.isVisible('#nav'), false, 'no navigation before sign-in');
    await tab.shot('01-sign-in');
    await tab.page.fill('#token', 'not-a-real-token');
    await tab.page.click('#view button[type="submit"]');
    await until('the refusal', async () => (await tab.text('#signin-message')).includes('not accepted (invalid_token)'));
    await tab.page.fill('#token', ADMIN_TOKEN);
    await tab.page.click('#view button[type="submit"]');
    await tab.waitRoute('/');
    assert.equal(await tab.page.getAttribute('#view', 'data-route'), '/');
    assert.match(await tab.text('#who'), /^Signed in as ops/);
    assert.equal(await tab.text('#who .role'), 'admin');
    await tab.page.click('#sign-out');
    await tab.page.waitForSelector('#signin-reason');
    assert.equal(await tab.text('#signin-reason'), 'You signed out.');
    assert.equal(await tab.page.evaluate(() => sessionStorage.length), 0, 'the token is forgotten');
    await tab.signIn(ADMIN_TOKEN);
    t.admin = tab;
  }],

  ['sign-in: a viewer sees the data but no write controls', async (t) => {
    const tab = await t.newTab();
    await tab.signIn(VIEWER_TOKEN);
    assert.equal(await tab.text('#who .role'), 'viewer');
    assert.match(await tab.text('#who'), /Signed in as dash/);
    await tab.visit('/clusters');
    const clusters = await t.api('/api/v1/clusters?limit=25');
    assert.equal(await tab.page.locator('.cluster-row').count(), clusters.clusters.length);
    assert.equal(await tab.page.locator('.cluster-actions').count(), 0, 'no resolve/ignore for viewers');
    await tab.shot('02-viewer-clusters');
    await tab.visit('/policies');
    assert.equal(await tab.page.locator('#new-policy').count(), 0);
    assert.equal(await tab.page.getByRole('button', { name: /Disable|Enable|Delete/ }).count(), 0);
    await tab.visit('/privacy');
    assert.equal(await tab.page.locator('#erase-subject').count(), 0);
    // Exports (a subject's look-up, the events export) are admin actions: the API refuses viewers.
    assert.equal(await tab.page.locator('#subject-form').count(), 0);
    assert.match(await tab.text('#view'), /Looking up, exporting and erasing a data subject is for admins/);
    assert.match(await tab.text('#view'), /The audit log is visible to admins only/);
    await tab.visit('/events');
    assert.equal(await tab.page.getByRole('button', { name: /^Export/ }).count(), 0, 'no export for viewers');
    t.viewer = tab;
  }],

  ['sign-in: a token that stops being accepted brings the sign-in back with a message', async (t) => {
    const tab = t.viewer;
    await tab.page.evaluate(() => sessionStorage.setItem('telemetryd.token', 'revoked-token'));
    await tab.visit('/events');
    await tab.page.waitForSelector('#signin-reason');
    assert.match(await tab.text('#signin-reason'), /no longer accepted/);
    assert.equal(await tab.page.isVisible('#nav'), false);
    await tab.shot('03-token-rejected');
  }],

  ['scope: a token scoped to one product has only it in the product picker and only its figures', async (t) => {
    const tab = await t.newTab();
    await tab.signIn(SCOPED_TOKEN);
    assert.match(await tab.text('#who'), /Signed in as voice-team/);
    const me = await t.api('/api/v1/whoami', { as: SCOPED_TOKEN });
    assert.deepEqual(me.products.map((p) => p.id), ['voice-sdk']);
    const all = await t.api('/api/v1/whoami');
    assert.ok(all.products.length > 1, 'the server has other products');
    await tab.visit('/');
    const picker = tab.page.locator('#view select[name="product"]');
    await picker.focus();
    await until('the product picker to fill', async () => (await picker.locator('option').count()) > 1);
    const options = await picker.locator('option').evaluateAll((els) => els.map((e) => e.value));
    assert.deepEqual(options, ['', ...me.products.map((p) => p.id)], 'all of its products, and only them');
    // Its cards are the API's figures for its product; the process-wide cards are not shown.
    const o = await t.api('/api/v1/stats/overview', { as: SCOPED_TOKEN });
    assert.equal(o.store_events, null);
    for (const key of ['events_24h', 'errors_24h', 'active_installs_24h']) {
      assert.equal(await cardValue(tab, key), fmt(o[key]), key);
    }
    assert.equal(await tab.page.locator('[data-card="ingest_rate_per_s"]').count(), 0);
    assert.equal(await tab.page.isVisible('#nav a[href="/stats"]'), false, 'no process-wide Metrics page');
    await tab.shot('03b-scoped-overview');
    await tab.close();
  }],

  ['overview: the cards, the level chart and the top lists show the API figures', async (t) => {
    const tab = t.admin;
    await tab.visit('/');
    const o = await t.api('/api/v1/stats/overview');
    for (const key of ['events_24h', 'errors_24h', 'active_installs_24h', 'rejected_total', 'pii_blocked_total']) {
      assert.equal(await cardValue(tab, key), fmt(o[key]), key);
    }
    assert.ok(o.events_24h > 0, 'the demo data has events in the last 24 h');
    const series = await t.api('/api/v1/stats/timeseries?from=-24h&bucket=1h');
    const nonEmpty = series.buckets.filter((b) => b.total > 0).length;
    assert.ok(await tab.page.locator('#overview-timeline svg rect').count() >= nonEmpty, 'a bar per non-empty hour');
    for (const field of ['name', 'platform', 'app_version']) {
      const rows = (await t.api(`/api/v1/stats/breakdown?${qs({ field, from: '-24h', limit: 10 })}`)).rows;
      const labels = await tab.page.locator(`#overview-${field} text.bar-label`).allTextContents();
      assert.deepEqual(labels, rows.map((r) => r.value || '(none)'), field);
    }
    await tab.shot('04-overview');
  }],

  ['events: all events are listed, a query narrows them to its matches, a bad query shows the API error', async (t) => {
    const tab = t.admin;
    await tab.nav('Events');
    await tab.visit('/events?from=all');
    const all = await t.api('/api/v1/events?limit=1');
    assert.equal(await tab.page.getAttribute('#events-summary', 'data-total'), String(all.total));
    // Past 10,000 matches the API gives a lower bound and the page says so with a "+".
    assert.equal(all.total_exact, all.total < 10000);
    assert.equal(await tab.text('#events-summary'), `${fmt(all.total)}${all.total_exact ? '' : '+'} events match`);
    assert.equal(await tab.page.locator('.event-row').count(), Math.min(50, all.total));
    const errors = await t.api('/api/v1/events?limit=1&q=level%3Aerror');
    assert.ok(errors.total > 0 && (errors.total < all.total || !all.total_exact));
    await tab.page.fill('input[name="q"]', 'level:error');
    await tab.page.press('input[name="q"]', 'Enter');
    await until('the narrowed total', async () => (await tab.page.getAttribute('#events-summary', 'data-total')) === String(errors.total));
    const levels = await tab.page.locator('.event-row td:nth-child(3)').allInnerTexts();
    assert.equal(levels.length, Math.min(50, errors.total));
    assert.ok(levels.every((l) => l.trim() === 'error'), `only errors: ${levels}`);
    assert.match(tab.page.url(), /q=level%3Aerror/, 'the query is in the address');
    await tab.shot('05-events-search');
    // A query the API rejects shows its message instead of results.
    await tab.page.fill('input[name="q"]', 'level:');
    await tab.page.press('input[name="q"]', 'Enter');
    await tab.page.waitForSelector('#events-results .state.error');
    assert.match(await tab.text('#events-results'), /expected a value after "level:" at position \d+.*\(invalid_query\)/s);
    await tab.page.fill('input[name="q"]', 'level:error');
    await tab.page.press('input[name="q"]', 'Enter');
    await until('the results again', async () => (await tab.page.locator('.event-row').count()) > 0);
  }],

  ['events: a row expands (keyboard) into the whole event', async (t) => {
    const tab = t.admin;
    const first = tab.page.locator('.event-row').first();
    const id = await first.getAttribute('data-id');
    const event = await t.api(`/api/v1/events/${id}`);
    await first.locator('button.expander').focus();
    await tab.page.keyboard.press('Enter');
    const detail = tab.page.locator('tr.detail-row').first();
    await detail.waitFor();
    const text = await detail.textContent();
    for (const part of ['Environment', 'Ids', 'Dimensions', 'Metrics', event.id, event.install_id, fmtTime(event.timestamp)]) {
      assert.ok(text.includes(part), `detail shows ${part}`);
    }
    assert.ok(event.error, 'an error-level event carries its error');
    assert.ok(text.includes(event.error.message), 'the error message');
    if (event.error.stack) assert.equal((await detail.locator('pre.stack').innerText()).trim(), event.error.stack.trim());
    assert.equal(await first.locator('button.expander').getAttribute('aria-expanded'), 'true');
    await tab.shot('06-events-expanded');
    t.errorEvent = event;
  }],

  ['events: an event links to its cluster and to every event of its install', async (t) => {
    const tab = t.admin;
    const event = t.errorEvent;
    assert.ok(event.fingerprint, 'error events belong to a cluster');
    const cluster = await t.api(`/api/v1/clusters/${event.fingerprint}`);
    await tab.page.locator('tr.detail-row [data-link="cluster"]').first().click();
    await tab.waitRoute('/clusters/:id');
    assert.equal(await tab.text('#cluster-title'), cluster.cluster.title);
    await tab.page.goBack();
    await tab.waitRoute('/events');
    await tab.page.locator('.event-row button.expander').first().click();
    await tab.page.locator('tr.detail-row [data-link="install"]').first().click();
    await tab.waitRoute('/events');
    const installs = await t.api(`/api/v1/events?${qs({ install_id: event.install_id, limit: 1 })}`);
    assert.equal(await tab.page.getAttribute('#events-summary', 'data-total'), String(installs.total));
    assert.equal(await tab.page.locator('[data-filter="install_id"]').textContent(), `install_id: ${event.install_id}×`);
  }],

  ['traces: a trace sent as native events is a waterfall: tree order, indentation, bars sized by the API, the error marked', async (t) => {
    const tab = t.admin;
    const traceId = '5b8efff798038103d269b633813fc60c';
    const span = (n) => `00f067aa0ba902b${n}`;
    const t0 = Date.now() - 120_000;
    const common = { installId: 'e2e-trace-install', platform: 'python', traceId };
    // Children before their parent, as exporters send spans when they end; the product keeps
    // duration_ms and the attributes (an open schema, added to the config by server.mjs).
    const sent = await t.api('/api/v1/events?product=e2e-traces', {
      method: 'POST',
      body: { events: [
        { ...common, name: 'agent.llm', level: 'error', timestamp: t0 + 350, spanId: span(3), parentSpanId: span(1),
          error: { domain: 'llm', code: 'rate_limit', message: 'Provider answered 429' },
          dims: { provider: 'openai' }, metrics: { duration_ms: 812.5, tokens: 120 } },
        { ...common, name: 'agent.llm.retry', timestamp: t0 + 600, spanId: span(3), dims: { attempt: '2' } },
        { ...common, name: 'agent.stt', timestamp: t0 + 20, spanId: span(2), parentSpanId: span(1),
          dims: { provider: 'deepgram' }, metrics: { duration_ms: 300.5 } },
        { ...common, name: 'agent.turn', timestamp: t0, spanId: span(1), metrics: { duration_ms: 1200 } },
      ] },
    });
    assert.equal(sent.accepted, 4, JSON.stringify(sent));
    const trace = await until('the trace to be searchable', async () => {
      const r = await t.api(`/api/v1/traces/${traceId}`).catch(() => null);
      return r?.total === 4 ? r : null;
    });
    assert.deepEqual(trace.waterfall.map((r) => [r.name, r.depth]),
      [['agent.turn', 0], ['agent.stt', 1], ['agent.llm', 1], ['agent.llm.retry', 2]]);

    await tab.visit(`/traces/${traceId}`);
    assert.equal(await tab.page.getAttribute('#view', 'data-route'), '/traces/:id');
    assert.equal(await tab.text('#trace-id'), traceId);
    assert.equal(await cardValue(tab, 'duration'), fmtDuration(trace.duration_ms));
    for (const key of ['spans', 'logs', 'errors']) assert.equal(await cardValue(tab, key), fmt(trace[key]), key);
    assert.equal(await tab.page.locator('#trace-truncated').count(), 0);

    // One row per event, in the API's tree order, indented by depth.
    const rows = tab.page.locator('.wf-row');
    assert.equal(await rows.count(), trace.waterfall.length);
    assert.deepEqual(await rows.locator('.wf-label').allInnerTexts(), trace.waterfall.map((r) => r.name));
    const labelX = [];
    for (let i = 0; i < trace.waterfall.length; i += 1) {
      const row = rows.nth(i);
      const api = trace.waterfall[i];
      assert.equal(await row.getAttribute('data-event-id'), api.event_id);
      assert.equal(Number(await row.getAttribute('data-depth')), api.depth);
      assert.equal(await row.locator('.wf-start').innerText(), `+${fmtDuration(api.offset_ms)}`);
      assert.equal(await row.locator('.wf-duration').innerText(), api.kind === 'span' ? fmtDuration(api.duration_ms) : '—');
      labelX.push((await row.locator('.wf-kind').boundingBox()).x);
    }
    const step = labelX[1] - labelX[0];
    assert.ok(step > 8, `a child is indented (${step}px)`);
    trace.waterfall.forEach((r, i) => assert.ok(Math.abs(labelX[i] - labelX[0] - r.depth * step) < 1, `row ${i} indented by its depth`));

    // Bars: start and width as fractions of the trace's duration, relative to each other as the API says.
    const track = await rows.nth(0).locator('.wf-track').boundingBox();
    const bars = [];
    for (let i = 0; i < trace.waterfall.length; i += 1) {
      const api = trace.waterfall[i];
      if (api.kind !== 'span') continue;
      const box = await rows.nth(i).locator('.wf-bar').boundingBox();
      bars.push({ api, box });
      assert.ok(Math.abs((box.x - track.x) - (track.width * api.offset_ms) / trace.duration_ms) < 1.5, `${api.name} starts at its offset`);
      assert.ok(Math.abs(box.width - (track.width * api.duration_ms) / trace.duration_ms) < 1.5, `${api.name} is as long as its duration`);
    }
    assert.equal(bars.length, trace.spans);
    const [root, ...children] = bars;
    for (const { api, box } of children) {
      const ratio = box.width / root.box.width;
      assert.ok(Math.abs(ratio - api.duration_ms / root.api.duration_ms) < 0.01, `${api.name}: width ratio ${ratio}`);
    }
    // The log is a marker at its offset.
    const logIndex = trace.waterfall.findIndex((r) => r.kind === 'log');
    const marker = await rows.nth(logIndex).locator('.wf-marker').boundingBox();
    const markerCenter = marker.x + marker.width / 2 - track.x;
    assert.ok(Math.abs(markerCenter - (track.width * trace.waterfall[logIndex].offset_ms) / trace.duration_ms) < 1.5, 'the log marker sits at its time');

    // The error: a class, a colour and a label; nothing else is marked.
    const errorIndex = trace.waterfall.findIndex((r) => r.error);
    assert.equal(trace.waterfall[errorIndex].name, 'agent.llm');
    const errorRow = rows.nth(errorIndex);
    assert.match(await errorRow.getAttribute('class'), /\berror\b/);
    assert.equal(await errorRow.locator('.wf-error-label').innerText(), 'error');
    assert.equal(await tab.page.locator('.wf-row.error').count(), trace.errors);
    const fill = (i) => rows.nth(i).locator('.wf-bar').evaluate((el) => getComputedStyle(el).fill);
    assert.notEqual(await fill(errorIndex), await fill(0), 'the error bar has its own colour');
    await tab.shot('06b-trace');

    // A row expands into the whole event.
    await errorRow.locator('.wf-label').click();
    const detail = tab.page.locator('tr.detail-row');
    await detail.waitFor();
    assert.match(await detail.innerText(), /Provider answered 429/);
    assert.equal(await detail.locator('[data-link="trace"]').count(), 0, 'no link to the page it is on');
    t.traceId = traceId;
    t.trace = trace;
  }],

  ['traces: a trace_id search links to its trace, an event to its trace, and the trace back to its events', async (t) => {
    const tab = t.admin;
    const traceId = t.traceId;
    await tab.visit(`/events?${qs({ q: `trace_id:${traceId}`, from: 'all' })}`);
    const found = await t.api(`/api/v1/events?${qs({ q: `trace_id:${traceId}`, limit: 1 })}`);
    assert.equal(found.total, t.trace.total);
    assert.equal(await tab.page.getAttribute('#events-summary', 'data-total'), String(found.total));
    const link = tab.page.locator('#events-trace-link');
    assert.equal(await link.getAttribute('href'), `/traces/${traceId}`);
    await link.click();
    await tab.waitRoute('/traces/:id');
    assert.equal(await tab.text('#trace-id'), traceId);
    // Back on the events page of the trace (the trace_id filter, a chip), an event links to its trace.
    await tab.page.click('#trace-events-link');
    await tab.waitRoute('/events');
    assert.equal(await tab.page.locator('[data-filter="trace_id"]').textContent(), `trace_id: ${traceId}×`);
    assert.equal(await tab.page.getAttribute('#events-summary', 'data-total'), String(t.trace.total));
    assert.equal(await tab.page.locator('.event-row').count(), t.trace.total);
    await tab.page.locator('.event-row button.expander').first().click();
    const detail = tab.page.locator('tr.detail-row').first();
    assert.match(await detail.innerText(), new RegExp(traceId));
    await detail.locator('[data-link="trace"]').click();
    await tab.waitRoute('/traces/:id');
    assert.equal(await tab.page.locator('.wf-row').count(), t.trace.waterfall.length);
    // Without a trace in the search there is no trace link.
    await tab.visit('/events?q=level%3Aerror');
    assert.equal(await tab.page.isVisible('#events-trace-link'), false);
  }],

  ['clusters: the list and the 14-day timeline show the clusters the API has', async (t) => {
    const tab = t.admin;
    // The traces spec sent an error span. Fold it into its cluster now: otherwise the scheduled
    // pass (every minute) can add that cluster between the page and the API calls these specs
    // compare, and the page would lack a cluster the API has.
    await t.api('/api/v1/clusters/run', { method: 'POST' });
    await tab.nav('Clusters');
    const r = await t.api('/api/v1/clusters?limit=25');
    assert.ok(r.total > 0, 'the demo data has clusters');
    assert.equal(await tab.page.getAttribute('#clusters-total', 'data-total'), String(r.total));
    assert.equal(await tab.page.locator('.cluster-row').count(), r.clusters.length);
    const titles = await tab.page.locator('.cluster-row .cluster-title').allInnerTexts();
    assert.deepEqual(titles, r.clusters.map((c) => c.title));
    const first = tab.page.locator('.cluster-row').first();
    assert.equal(await first.locator('td:nth-child(4)').innerText(), clusterCount(r.clusters[0]));
    assert.equal(await first.getAttribute('data-status'), r.clusters[0].status);
    assert.ok(await tab.page.locator('#clusters-timeline svg rect').count() > 0, 'the timeline has bars');
    assert.ok(await first.locator('svg.sparkline rect').count() >= 14, 'a sparkline of 14 days');
    await tab.shot('07-clusters');
  }],

  ['clusters: resolving in a version changes the status in the UI and the API, and reopening undoes it', async (t) => {
    const tab = t.admin;
    const r = await t.api('/api/v1/clusters?limit=25');
    const open = r.clusters.find((c) => c.status === 'open' || c.status === 'regressed');
    assert.ok(open, 'an open cluster on the first page');
    const row = () => tab.page.locator(`.cluster-row[data-id="${open.id}"]`);
    await row().getByRole('button', { name: 'Resolve…' }).click();
    await tab.page.fill('dialog input[name="in_version"]', '99.0.0');
    await tab.shot('08-cluster-resolve-dialog');
    await tab.page.locator('dialog').getByRole('button', { name: 'Resolve', exact: true }).click();
    await until('the resolved row', async () => (await row().getAttribute('data-status')) === 'resolved');
    assert.match(await row().innerText(), /resolved[\s\S]*in 99\.0\.0/);
    const after = await t.api(`/api/v1/clusters/${open.id}`);
    assert.equal(after.cluster.status, 'resolved');
    assert.equal(after.cluster.resolved_in_version, '99.0.0');
    await row().getByRole('button', { name: 'Reopen' }).click();
    await tab.page.locator('dialog').getByRole('button', { name: 'Reopen' }).click();
    await until('the reopened row', async () => (await row().getAttribute('data-status')) === 'open');
    assert.equal((await t.api(`/api/v1/clusters/${open.id}`)).cluster.status, 'open');
    t.cluster = open;
  }],

  ['clusters: a cluster page has its figures, daily chart and sample events', async (t) => {
    const tab = t.admin;
    await tab.visit(`/clusters/${t.cluster.id}`);
    const { cluster, samples } = await t.api(`/api/v1/clusters/${t.cluster.id}`);
    assert.equal(await tab.text('#cluster-title'), cluster.title);
    assert.equal(await cardValue(tab, 'count'), clusterCount(cluster));
    assert.equal(await tab.page.locator('.event-row').count(), samples.length);
    assert.ok(await tab.page.locator('svg.chart rect').count() > 0);
    await tab.shot('09-cluster');
  }],

  ['analytics: each kind built from the form shows the API figures in its table, and exports CSV', async (t) => {
    const tab = t.admin;
    await tab.nav('Analytics');
    assert.equal(await tab.page.getAttribute('#view', 'data-route'), '/analytics');
    const round = (v) => fmt(Math.round(v * 100) / 100);
    /** The cells of one table column (0 = the first). */
    const column = (n) => tab.page.locator('#analytics-table tbody tr').evaluateAll((trs, i) => trs.map((tr) => tr.children[i].textContent), n);
    /** Runs the form's query (built through its controls) and returns the API's answer to the same spec. */
    const run = async (spec) => {
      await tab.page.click('#analytics-run');
      await tab.page.waitForSelector('#analytics-table tbody tr');
      return t.api('/api/v1/analytics/query', { method: 'POST', body: { product: 'dictation-app', from: '-30d', ...spec } });
    };
    await tab.page.selectOption('#analytics-form select[name="product"]', 'dictation-app');
    await tab.page.click('#analytics-form [data-range="-30d"]');

    // Trend of events by platform: one column per group, the API's weighted values per day.
    await tab.page.selectOption('#analytics-form select[name="kind"]', 'trend');
    await tab.page.fill('#analytics-form input[name="group1"]', 'platform');
    const trend = await run({ kind: 'trend', measure: 'events', bucket: '1d', group_by: ['platform'] });
    assert.ok(trend.series.length > 0, 'the demo has dictation events');
    assert.deepEqual(await column(1), trend.series[0].values.map(round));
    assert.match(tab.page.url(), /kind=trend/, 'the query is in the address');
    await tab.shot('13a-analytics-trend');
    const [download] = await Promise.all([tab.page.waitForEvent('download'), tab.page.click('#analytics-csv')]);
    assert.equal(download.suggestedFilename(), 'analytics-trend.csv');

    // Distribution of latency, still grouped by platform (the form keeps it): the API's p95s.
    await tab.page.selectOption('#analytics-form select[name="kind"]', 'distribution');
    assert.equal(await tab.page.inputValue('#analytics-form input[name="group1"]'), 'platform');
    await tab.page.fill('#analytics-form input[name="metric"]', 'latency_ms');
    const distribution = await run({ kind: 'distribution', metric: 'latency_ms', group_by: ['platform'] });
    assert.deepEqual(await column(0), distribution.groups.map((g) => g.group.join(' · ')));
    assert.deepEqual(await column(6), distribution.groups.map((g) => (g.summary ? round(g.summary.p95) : '—')));

    // Funnel: the counts per step.
    await tab.page.selectOption('#analytics-form select[name="kind"]', 'funnel');
    await tab.page.fill('#analytics-form input[name="steps"]', 'app_opened, dictation_started, dictation_completed');
    const funnel = await run({ kind: 'funnel', steps: [{ name: 'app_opened' }, { name: 'dictation_started' }, { name: 'dictation_completed' }], window: '1d', per: 'install' });
    assert.deepEqual(await column(0), ['app_opened', 'dictation_started', 'dictation_completed']);
    assert.deepEqual(await column(1), funnel.steps.map((s) => round(s.count)));
    await tab.shot('13b-analytics-funnel');

    // Active installs: the daily column.
    await tab.page.selectOption('#analytics-form select[name="kind"]', 'active_installs');
    const active = await run({ kind: 'active_installs' });
    assert.deepEqual(await column(1), active.dau.map(round));

    // Retention: one row per cohort with its installs.
    await tab.page.selectOption('#analytics-form select[name="kind"]', 'retention');
    const retention = await run({ kind: 'retention', period: 'week' });
    assert.deepEqual(await column(1), retention.cohorts.map((c) => round(c.installs)));
    await tab.shot('13c-analytics-retention');
  }],

  ['clusters: clusters that share a title say what sets them apart, beside the weighted counts of the API', async (t) => {
    const tab = t.admin;
    await tab.nav('Clusters');
    const r = await t.api('/api/v1/clusters?limit=25');
    const shared = r.clusters.filter((c) => c.distinguished_by.length > 0);
    assert.ok(shared.length >= 2, 'the demo data has clusters sharing a title');
    for (const c of r.clusters) {
      const row = tab.page.locator(`.cluster-row[data-id="${c.id}"]`);
      assert.equal(await row.locator('.cluster-count').innerText(), clusterCount(c), c.title);
      assert.equal(await row.locator('.cluster-distinction').count(), c.distinguished_by.length ? 1 : 0, c.title);
      if (c.distinguished_by.length) assert.equal(await row.locator('.cluster-distinction').innerText(), distinction(c));
    }
    // Rows with the same title read differently.
    const byTitle = new Map();
    for (const c of shared) byTitle.set(c.title, [...(byTitle.get(c.title) || []), c]);
    for (const group of [...byTitle.values()].filter((g) => g.length > 1)) {
      const texts = await Promise.all(group.map((c) => tab.text(`.cluster-row[data-id="${c.id}"] .cluster-distinction`)));
      assert.equal(new Set(texts).size, texts.length, `${group[0].title}: ${texts}`);
    }
    await tab.visit(`/clusters/${shared[0].id}`);
    assert.equal(await tab.text('#cluster-distinction'), distinction(shared[0]));
    await tab.shot('09b-clusters-distinguished');
  }],

  ['analytics: a query saved by name is a link, pinned to the product dashboard with the API figures, renamed, unpinned and deleted', async (t) => {
    const tab = t.admin;
    const NAME = 'Dictation events by platform';
    await tab.nav('Analytics');
    await tab.page.selectOption('#analytics-form select[name="product"]', 'dictation-app');
    await tab.page.click('#analytics-form [data-range="-30d"]');
    await tab.page.selectOption('#analytics-form select[name="kind"]', 'trend');
    await tab.page.fill('#analytics-form input[name="group1"]', 'platform');
    await tab.page.click('#analytics-run');
    await tab.page.waitForSelector('#analytics-table tbody tr');
    await tab.page.click('#analytics-save');
    await tab.page.fill('dialog input[name="name"]', NAME);
    await tab.page.locator('dialog').getByRole('button', { name: 'Save', exact: true }).click();
    await until('the saved query', async () => (await tab.page.locator('#analytics-saved-name').count()) === 1);
    assert.equal(await tab.text('#analytics-saved-name'), NAME);
    const mine = (await t.api('/api/v1/analytics/saved?product=dictation-app')).saved.find((q) => q.name === NAME);
    assert.ok(mine && mine.pinned, 'saved and pinned by default');
    assert.deepEqual(mine.query, { kind: 'trend', from: '-30d', measure: 'events', bucket: '1d', group_by: ['platform'] });
    assert.match(tab.page.url(), new RegExp(`saved=${mine.id}`), 'the saved query is in the address');
    const answer = await t.api('/api/v1/analytics/query', { method: 'POST', body: { ...mine.query, product: 'dictation-app' } });
    const round = (v) => fmt(Math.round(v * 100) / 100);
    const column = (selector, n) => tab.page.locator(`${selector} tbody tr`).evaluateAll((trs, i) => trs.map((tr) => tr.children[i].textContent), n);

    // The link, opened afresh, builds the query in the form and runs it.
    await tab.load(`/analytics?saved=${mine.id}`);
    assert.equal(await tab.page.inputValue('#analytics-form select[name="kind"]'), 'trend');
    assert.equal(await tab.page.inputValue('#analytics-form input[name="group1"]'), 'platform');
    assert.equal(await tab.text('#analytics-saved-name'), NAME);
    assert.deepEqual(await column('#analytics-table', 1), answer.series[0].values.map(round));

    // The product's dashboard shows it with the API's figures, and links back to it.
    await tab.nav('Dashboard');
    await tab.visit('/dashboard/dictation-app');
    const tileSelector = `.dashboard-tile[data-saved-id="${mine.id}"]`;
    assert.equal(await tab.text(`${tileSelector} h2`), NAME);
    assert.deepEqual(await column(tileSelector, 1), answer.series[0].values.map(round));
    assert.ok(await tab.page.locator(`${tileSelector} svg`).count() > 0, 'the tile has its chart');
    await tab.shot('13d-dashboard');
    await tab.page.locator(`${tileSelector} h2 a`).click();
    await tab.waitRoute('/analytics');
    assert.equal(await tab.text('#analytics-saved-name'), NAME);

    // A viewer opens the link too, with nothing to change.
    const viewer = await t.newTab();
    await viewer.signIn(VIEWER_TOKEN);
    await viewer.visit(`/analytics?saved=${mine.id}`);
    assert.equal(await viewer.text('#analytics-saved-name'), NAME);
    assert.equal(await viewer.page.locator('#analytics-save, #analytics-rename, #analytics-delete').count(), 0);
    await viewer.close();

    // Rename, unpin (it leaves the dashboard), delete.
    await tab.page.bringToFront();
    await tab.page.click('#analytics-rename');
    await tab.page.fill('dialog input[name="name"]', `${NAME} (renamed)`);
    await tab.page.locator('dialog').getByRole('button', { name: 'Rename' }).click();
    await until('the new name', async () => (await tab.text('#analytics-saved-name')) === `${NAME} (renamed)`);
    assert.equal((await t.api(`/api/v1/analytics/saved/${mine.id}`)).name, `${NAME} (renamed)`);
    await tab.page.click('#analytics-pin');
    await until('the unpinned query', async () => (await t.api(`/api/v1/analytics/saved/${mine.id}`)).pinned === false);
    await tab.visit('/dashboard/dictation-app');
    assert.equal(await tab.page.locator(tileSelector).count(), 0);
    await tab.visit(`/analytics?saved=${mine.id}`);
    await tab.page.click('#analytics-delete');
    await tab.page.locator('dialog').getByRole('button', { name: 'Delete' }).click();
    await until('the deleted query', async () => !(await t.api('/api/v1/analytics/saved?product=dictation-app')).saved.some((q) => q.id === mine.id));
  }],

  ['geo: countries as bars and a table, and a drill-down to regions', async (t) => {
    const tab = t.admin;
    await tab.nav('Geo');
    await tab.visit('/geo?range=all');
    const { countries } = await t.api('/api/v1/geo');
    assert.ok(countries.length > 1, 'the demo data is from several countries');
    const sorted = [...countries].sort((a, b) => b.events - a.events);
    assert.equal(await tab.page.locator('.country-row').count(), countries.length);
    const firstRow = tab.page.locator('.country-row').first();
    assert.equal(await firstRow.getAttribute('data-country'), sorted[0].country_code);
    assert.equal(await firstRow.locator('td:nth-child(3)').innerText(), fmt(sorted[0].events));
    assert.equal(await firstRow.locator('td:nth-child(4)').innerText(), fmt(sorted[0].installs));
    await tab.shot('10-geo');
    const withRegions = sorted.find((c) => c.regions?.length) || sorted[0];
    await tab.page.locator(`.country-row[data-country="${withRegions.country_code}"] a`).first().click();
    await tab.waitRoute('/geo/:country');
    assert.equal(await tab.page.locator('.region-row').count(), withRegions.regions?.length || 0);
    await tab.shot('11-geo-country');
    // A saved link with the older `country` spelling lands on the same filter.
    const code = withRegions.country_code;
    await tab.visit(`/events?country=${code}&from=all`);
    const fromThere = await t.api(`/api/v1/events?${qs({ country_code: code, limit: 1 })}`);
    assert.equal(await tab.page.getAttribute('#events-summary', 'data-total'), String(fromThere.total));
    assert.equal(await tab.page.locator('[data-filter="country_code"]').textContent(), `country_code: ${code}×`);
  }],

  ['metrics: totals match /api/v1/stats and the history is charted', async (t) => {
    const tab = t.admin;
    // The history gains a point every interval: compare with what the API had before and after.
    const before = await t.api('/api/v1/stats/history?minutes=60');
    await tab.nav('Metrics');
    const after = await t.api('/api/v1/stats/history?minutes=60');
    const s = await t.api('/api/v1/stats');
    assert.equal(await cardValue(tab, 'accepted'), fmt(s.accepted));
    assert.equal(await cardValue(tab, 'rejected_total'), fmt(s.rejected_total));
    assert.equal(await cardValue(tab, 'index_lag'), fmt(s.store.index_lag));
    // The e2e server has no [[sinks]]: the sinks panel says how to add one.
    assert.deepEqual(s.store.sinks, []);
    assert.match(await tab.text('#metrics-totals'), /No export sink is configured/);
    const charts = await tab.page.locator('#metrics-charts svg.chart').count();
    if (before.points.length >= 2) assert.ok(charts >= 5, 'the history is charted');
    if (after.points.length < 2) assert.match(await tab.text('#metrics-charts'), /fills in/);
    await tab.shot('12-metrics');
  }],

  ['client metrics: the metric list, a counter by surface and the histogram percentiles show the API figures', async (t) => {
    const tab = t.admin;
    await tab.nav('Client metrics');
    const { metrics } = await t.api('/api/v1/metrics/names');
    assert.ok(metrics.length >= 3, 'the demo sends OpenTelemetry metrics');
    const product = await tab.page.inputValue('#client-metrics-list select[name="product"]');
    const own = metrics.filter((m) => m.product === product);
    const rows = tab.page.locator('.metric-row');
    assert.deepEqual(await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.name)), own.map((m) => m.name));
    assert.deepEqual(await tab.page.locator('.metric-row .metric-series').allInnerTexts(), own.map((m) => `${fmt(m.series)} series`));
    /** The figures of the group table, and what the API answers to the page's own latest query for `stat`. */
    const compare = async (stat) => {
      const path = [...tab.requests].reverse().map((u) => new URL(u)).find((u) => u.pathname === '/api/v1/metrics/query' && u.searchParams.get('stat') === stat);
      assert.ok(path, `the page asked for ${stat}`);
      return t.api(path.pathname + path.search);
    };
    // A counter, grouped by surface: one row per group, largest first, with the API's totals.
    const counter = own.find((m) => m.kind === 'counter');
    await tab.page.locator(`.metric-row[data-name="${counter.name}"] button`).click();
    const shown = (want) => until(`the chart of ${JSON.stringify(want)}`,
      async () => (await tab.page.getAttribute('#client-metrics-chart', 'data-shown')) === JSON.stringify(want));
    await shown({ name: counter.name, stat: 'increase', group: '' });
    assert.equal(await tab.text('#client-metrics-title'), counter.name);
    await tab.page.selectOption('select[name="group"]', 'surface');
    await shown({ name: counter.name, stat: 'increase', group: 'surface' });
    const byGroup = await compare('increase');
    assert.deepEqual(byGroup.group_by, ['surface']);
    assert.deepEqual(await tab.page.locator('.group-row').evaluateAll((trs) => trs.map((tr) => JSON.parse(tr.dataset.group))), byGroup.groups.map((g) => g.attributes));
    assert.deepEqual(await tab.page.locator('.group-row [data-overall]').allInnerTexts(), byGroup.groups.map((g) => fmt(g.overall)));
    assert.ok(await tab.page.locator('#client-metrics-chart svg.chart rect').count() > 0, 'increases are drawn as bars');
    await tab.shot('12b-client-metrics-counter');
    // A histogram: p50, p95 and p99 together, each the API's figure over the range.
    const histogram = own.find((m) => m.kind === 'histogram');
    await tab.page.locator(`.metric-row[data-name="${histogram.name}"] button`).click();
    await shown({ name: histogram.name, stat: 'p50,p95,p99', group: '' });
    for (const stat of ['p50', 'p95', 'p99']) {
      const answer = await compare(stat);
      assert.equal(await tab.text(`.group-row[data-stat="${stat}"] [data-overall]`), fmt(answer.groups[0].overall));
    }
    assert.equal(await tab.page.locator('#client-metrics-chart svg.chart path.line').count(), 3);
    await tab.shot('12c-client-metrics-histogram');
  }],

  ['policies: the list shows the stored policies', async (t) => {
    const tab = t.admin;
    await tab.nav('Policies');
    const { policies } = await t.api('/api/v1/policies');
    assert.equal(await tab.page.locator('.policy-row').count(), policies.length);
    if (policies.length) assert.deepEqual(await tab.page.locator('.policy-name').allInnerTexts(), policies.map((p) => p.name));
    else assert.match(await tab.text('#policies-list'), /No policies/);
    await tab.shot('13-policies');
  }],

  ['policies: a policy made in the builder, with its live preview, is served by /api/v1/config', async (t) => {
    const tab = t.admin;
    await tab.page.click('#new-policy');
    await tab.waitRoute('/policies/new');
    await tab.page.fill('input[name="name"]', 'E2E quarter sampling');
    await tab.page.selectOption('select[name="product"]', 'voice-sdk');
    const platforms = (await t.api('/api/v1/stats/breakdown?field=platform&product=voice-sdk&from=-30d&limit=50')).rows.map((r) => r.value);
    const platform = platforms[0];
    const box = tab.page.locator(`[data-group="platforms"] input[value="${platform}"]`);
    await box.waitFor();
    await box.check();
    await tab.page.fill('input[name="sample_rate"]', '0.25');
    const draft = { name: 'E2E quarter sampling', product: 'voice-sdk', targeting: { platforms: [platform] }, settings: { sample_rate: 0.25 } };
    const expected = await t.api('/api/v1/policies/preview', { method: 'POST', body: draft });
    await until('the live preview', async () => (await tab.page.getAttribute('#preview-match', 'data-matching').catch(() => null)) === String(expected.matching_installs));
    assert.equal(await tab.text('#preview-match strong'), `${fmt(expected.matching_installs)} of ${fmt(expected.total_installs)} installs would match`);
    assert.equal(await tab.text('#preview [data-dry="events"] td:nth-child(2)'), fmt(expected.dry_run.events));
    await tab.shot('14-policy-builder');
    await tab.page.click('#save-policy');
    await tab.waitRoute('/policies');
    assert.match(await tab.text('#view'), /Policy “E2E quarter sampling” created/);
    const created = (await t.api('/api/v1/policies')).policies.find((p) => p.name === 'E2E quarter sampling');
    assert.ok(created, 'stored');
    const config = await t.api(`/api/v1/config?${qs({ product: 'voice-sdk', platform, install_id: 'e2e-client' })}`);
    assert.equal(config.settings.sample_rate, 0.25);
    assert.ok(config.applied_policies.includes(created.id));
    const other = platforms.find((p) => p !== platform) || 'no-such-platform';
    const untouched = await t.api(`/api/v1/config?${qs({ product: 'voice-sdk', platform: other, install_id: 'e2e-client' })}`);
    assert.ok(!untouched.applied_policies.includes(created.id), 'other platforms are not targeted');
  }],

  ['privacy: an erasure is confirmed with its consequences and removes the install from the Events page', async (t) => {
    const tab = t.admin;
    const { events } = await t.api('/api/v1/events?limit=20');
    const install = events.find((e) => e.install_id).install_id;
    const before = (await t.api(`/api/v1/events?${qs({ install_id: install, limit: 1 })}`)).total;
    assert.ok(before > 0);
    await tab.visit(`/events?${qs({ install_id: install, from: 'all' })}`);
    assert.equal(await tab.page.getAttribute('#events-summary', 'data-total'), String(before));
    await tab.nav('Privacy');
    await tab.page.fill('#subject-id', install);
    await tab.page.click('#erase-subject');
    const dialog = tab.page.locator('dialog');
    await dialog.waitFor();
    assert.match(await dialog.innerText(), new RegExp(`permanently deletes the ${fmt(before)} stored events? of install ${install}`));
    await tab.shot('15-privacy-erase-confirm');
    await dialog.getByRole('button', { name: `Erase ${fmt(before)} event` }).click();
    await tab.page.waitForSelector('#erase-report');
    assert.equal(await tab.text('#erase-report [data-count="events_removed"]'), fmt(before));
    assert.match(await tab.text('#erase-purge'), /^(running|idle|scheduled for .+)$/);
    await until('the audit entry', async () => (await tab.page.locator('.audit-row[data-action="subject.erase"]').count()) > 0);
    await tab.shot('16-privacy');
    await tab.visit(`/events?${qs({ install_id: install, from: 'all' })}`);
    assert.equal(await tab.text('#events-results'), 'No events match. Widen the time range or remove a filter.');
    assert.equal((await t.api(`/api/v1/events?${qs({ install_id: install, limit: 1 })}`)).total, 0);
  }],

  ['layout: a narrow screen gets a menu and no sideways scrolling; dark theme; times in the browser zone', async (t) => {
    const tab = t.admin;
    await tab.page.setViewportSize({ width: 400, height: 860 });
    await tab.visit('/');
    assert.ok(await tab.page.isVisible('#nav-toggle'));
    assert.equal(await tab.page.isVisible('#nav'), false);
    const overflow = await tab.page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 1, `no horizontal scroll (overflow ${overflow}px)`);
    await tab.shot('17-narrow-overview');
    await tab.page.click('#nav-toggle');
    assert.ok(await tab.page.isVisible('#nav'));
    await tab.nav('Events');
    await tab.shot('18-narrow-events');
    await tab.page.setViewportSize({ width: 1280, height: 900 });
    await tab.page.click('#theme-toggle');
    assert.equal(await tab.page.getAttribute('html', 'data-theme'), 'dark');
    const bg = await tab.page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const [r, g, b] = bg.match(/\d+/g).map(Number);
    assert.ok(r + g + b < 150, `dark background (${bg})`);
    await tab.visit('/');
    await tab.shot('19-dark-overview');
    await tab.page.click('#theme-toggle');
    assert.equal(await tab.text('#tz'), `Times in ${TIME_ZONE}`);
  }],

  ['api document: the footer links the OpenAPI document, which opens in a new tab', async (t) => {
    const tab = t.admin;
    await tab.visit('/');
    const link = tab.page.locator('footer #api-doc');
    assert.equal(await link.getAttribute('href'), '/api/v1/openapi.json');
    assert.equal(await link.getAttribute('target'), '_blank');
    const [doc] = await Promise.all([t.browser.context.waitForEvent('page'), link.click()]);
    try {
      await doc.waitForLoadState();
      assert.equal(new URL(doc.url()).pathname, '/api/v1/openapi.json');
      const text = await doc.evaluate(() => (document.querySelector('pre') ?? document.body).textContent);
      const spec = JSON.parse(text);
      assert.equal(spec.openapi, '3.1.0');
      assert.ok(spec.paths['/api/v1/events'].post, 'the ingest route is described');
      assert.ok(spec.components.schemas.ErrorCode.enum.includes('invalid_token'));
    } finally {
      await doc.close();
    }
  }],

  ['keyboard: the skip link and the navigation are reachable with Tab', async (t) => {
    const tab = t.admin;
    await tab.load('/');
    await tab.page.keyboard.press('Tab');
    assert.equal(await tab.page.evaluate(() => document.activeElement.className), 'skip-link');
    const order = [];
    for (let i = 0; i < 4; i += 1) {
      await tab.page.keyboard.press('Tab');
      order.push(await tab.page.evaluate(() => document.activeElement.textContent.trim()));
    }
    assert.deepEqual(order.slice(1, 4), ['Overview', 'Events', 'Clusters']);
    await tab.page.keyboard.press('Enter');
    await tab.waitRoute('/clusters');
    assert.equal(await tab.page.getAttribute('#view', 'data-route'), '/clusters');
  }],

  ['browser clients: a page on another origin sends with fetch and sendBeacon, reads its config, and is refused admin calls', async (t) => {
    const site = await servePage(fileURLToPath(new URL('./web-client.html', import.meta.url)));
    const page = await t.browser.context.newPage();
    try {
      assert.notEqual(new URL(site.url).origin, new URL(t.server.url).origin, 'another origin');
      await page.goto(`${site.url}/?${qs({ api: t.server.url, product: 'dictation-app' })}`);
      const installId = `web-${randomUUID()}`;
      const event = (eventName) => ({ eventId: randomUUID(), eventName, installId, platform: 'web', channel: 'app', appVersion: '5.1.0' });

      const fetched = event('app_opened');
      const sent = await page.evaluate((e) => window.sendWithFetch(e), fetched);
      assert.deepEqual(sent, { status: 200, body: { accepted: 1, duplicates: 0, dropped_by_policy: 0, sampled_out: 0, rejected: [] } });

      const beaconed = event('keyboard_shown');
      assert.equal(await page.evaluate((e) => window.sendWithBeacon(e), beaconed), true, 'the beacon is queued');
      // A beacon's answer is not the page's to read: the admin API tells that it was stored.
      const stored = await until('the beacon stored', () => t.api(`/api/v1/events/${beaconed.eventId}`).catch(() => null));
      for (const [sentEvent, got] of [[fetched, await t.api(`/api/v1/events/${fetched.eventId}`)], [beaconed, stored]]) {
        assert.equal(got.id, sentEvent.eventId);
        assert.equal(got.name, sentEvent.eventName);
        assert.equal(got.product, 'dictation-app');
        assert.equal(got.install_id, installId);
        assert.equal(got.platform, 'web');
        assert.equal(got.app_version, '5.1.0');
      }

      const config = await page.evaluate((id) => window.fetchConfig(id), installId);
      assert.equal(config.status, 200);
      assert.equal(config.body.product, 'dictation-app');
      assert.match(config.etag || '', /^(W\/)?".+"$/, 'the ETag is exposed to the page');

      for (const path of ['/api/v1/stats', '/api/v1/events?limit=1', `/api/v1/events/${fetched.eventId}`]) {
        const admin = await page.evaluate(([p, token]) => window.callAdmin(p, token), [path, ADMIN_TOKEN]);
        assert.equal(admin.error, 'TypeError', `${path}: the browser refuses the cross-origin admin call (${JSON.stringify(admin)})`);
      }
    } finally {
      await page.close();
      await site.close();
    }
  }],

  ['posthog-js on another origin: flags from the collection policy, an event stored with its fields', async (t) => {
    const bundle = fileURLToPath(new URL('./node_modules/posthog-js/dist/array.full.no-external.js', import.meta.url));
    const site = await servePage(fileURLToPath(new URL('./posthog-client.html', import.meta.url)), { '/posthog.js': bundle });
    const page = await t.browser.context.newPage();
    const answers = [];
    page.on('response', (r) => {
      if (r.url().startsWith(t.server.url)) answers.push({ url: r.url(), status: r.status(), origin: r.headers()['access-control-allow-origin'] });
    });
    try {
      assert.notEqual(new URL(site.url).origin, new URL(t.server.url).origin, 'another origin');
      await page.goto(`${site.url}/?${qs({ api: t.server.url, token: POSTHOG_TOKEN })}`);
      const run = randomUUID();
      const distinctId = `web-${randomUUID()}`;
      const flags = await page.evaluate(([id, props]) => window.sendWithPostHog(id, props), [distinctId, { plan: 'team', run }]);
      assert.equal(flags.collection, true, `the collection flag: ${JSON.stringify(flags)}`);
      assert.equal(flags.payload.product, 'e2e-traces');
      assert.equal(typeof flags.payload.settings.sample_rate, 'number');
      const stored = await until('the posthog-js event stored', async () => {
        const found = await t.api(`/api/v1/events?product=e2e-traces&limit=5&q=${encodeURIComponent(`name:signup_clicked install_id:${distinctId}`)}`);
        return found.events[0];
      });
      assert.equal(stored.source, 'posthog');
      assert.equal(stored.platform, 'web');
      assert.match(stored.runtime, /^web\/1\./);
      assert.equal(stored.install_id, distinctId);
      assert.equal(stored.dims.plan, 'team');
      assert.equal(stored.dims.run, run);
      assert.ok(stored.session_id, 'posthog-js sends its session id');
      assert.ok(stored.dims.browser, 'the browser is kept as a dimension');
      const captures = answers.filter((a) => /\/(e|i\/v0\/e)\//.test(new URL(a.url).pathname));
      assert.ok(captures.length > 0, `posthog-js posted its event: ${JSON.stringify(answers)}`);
      for (const a of [...captures, ...answers.filter((x) => x.url.includes('/flags'))]) {
        assert.equal(a.status, 200, JSON.stringify(a));
        assert.equal(a.origin, site.url, `CORS for the page's origin: ${JSON.stringify(a)}`);
      }
    } finally {
      await page.close();
      await site.close();
    }
  }],

  ['release health: Sentry sessions of two versions, the overview shows the API\'s crash-free figures', async (t) => {
    // Five installs per version (the product's k-anonymity bound): one crash in 2.0.0, none in 2.1.0.
    const now = new Date().toISOString();
    const items = [];
    for (const version of ['2.0.0', '2.1.0']) {
      for (let i = 0; i < 5; i += 1) {
        const crashed = version === '2.0.0' && i === 0;
        const session = { sid: randomUUID(), did: `e2e-sentry-${version}-${i}`, init: true, started: now, timestamp: now,
          status: crashed ? 'crashed' : 'exited', errors: crashed ? 1 : 0, attrs: { release: `shop@${version}`, environment: 'production' } };
        items.push(JSON.stringify({ type: 'session' }), JSON.stringify(session));
      }
    }
    const response = await fetch(`${t.server.url}/api/${SENTRY_PROJECT}/envelope/`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-sentry-envelope', 'x-sentry-auth': `Sentry sentry_key=${SENTRY_KEY}, sentry_version=7` },
      body: `${JSON.stringify({ sent_at: now })}\n${items.join('\n')}\n`,
    });
    assert.equal(response.status, 200, await response.text());
    const health = await until('the sessions searchable', async () => {
      const answer = await t.api('/api/v1/analytics/query', { method: 'POST', body: { product: 'e2e-traces', kind: 'release_health', from: '-24h' } });
      return answer.releases.length === 2 && answer;
    });
    assert.equal(health.releases[1].crash_free_sessions, 0.8, JSON.stringify(health));
    const tab = t.admin;
    await tab.visit(`/?${qs({ product: 'e2e-traces' })}`);
    const pct = (share) => `${(100 * share).toFixed(1)} %`;
    for (const release of health.releases) {
      const row = `#overview-release-health tr[data-release="${release.app_version}"]`;
      await until(`the row of ${release.app_version}`, () => tab.page.locator(row).count());
      const cells = await tab.page.locator(`${row} td`).allTextContents();
      assert.deepEqual(cells, [release.app_version, fmt(release.sessions), pct(release.crash_free_sessions),
        fmt(release.installs), pct(release.crash_free_installs)], release.app_version);
    }
    await tab.shot('22-release-health');
  }],

  ['timing: navigation to data on screen, per page (reported, not asserted)', async (t) => {
    const tab = t.admin;
    const pages = [['Overview', '/'], ['Events', '/events'], ['Clusters', '/clusters'], ['Geo', '/geo'], ['Client metrics', '/client-metrics'], ['Metrics', '/stats'], ['Policies', '/policies'], ['Privacy', '/privacy']];
    for (const [label, path] of pages) {
      const nav = [];
      for (let i = 0; i < 3; i += 1) {
        await tab.nav(label === 'Policies' ? 'Overview' : 'Policies');
        nav.push(await tab.nav(label));
      }
      nav.sort((a, b) => a - b);
      t.timings.push({ page: label, path, nav_median_ms: nav[1], nav_max_ms: nav[2], full_load_ms: await tab.load(path) });
    }
    if (t.traceId) t.timings.push({ page: 'Trace', path: `/traces/${t.traceId}`, nav_median_ms: await tab.visit(`/traces/${t.traceId}`), full_load_ms: await tab.load(`/traces/${t.traceId}`) });
    if (t.cluster) t.timings.push({ page: 'Cluster', path: `/clusters/${t.cluster.id}`, nav_median_ms: await tab.visit(`/clusters/${t.cluster.id}`), full_load_ms: await tab.load(`/clusters/${t.cluster.id}`) });
  }],

  ['the UI requested nothing from elsewhere and logged no errors', async (t) => {
    for (const tab of t.tabs) {
      const foreign = tab.requests.filter((u) => !u.startsWith(t.server.url) && !u.startsWith('data:') && !u.startsWith('blob:'));
      assert.deepEqual(foreign, [], 'only same-origin requests');
      assert.deepEqual(tab.problems, [], 'no console errors or page errors');
    }
  }],
];
