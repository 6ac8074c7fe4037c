// Runs the browser tests: starts a filled telemetryd, opens headless Chromium, runs the specs in
// order (a failed spec does not stop the rest), saves screenshots and the per-page timings
// under target/e2e-screenshots/, and ends with the plain line `N passed, M failed`.
//
//   node run.mjs                          the suite against a fresh server (debug binary)
//   node run.mjs --bin PATH               another binary (e.g. target/release/telemetryd)
//   node run.mjs --url URL --token TOKEN  only the page timings, against a running server
//   node run.mjs --only WORDS             the specs whose names contain WORDS

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startServer, apiClient, ROOT } from './server.mjs';
import { launch, Tab } from './browser.mjs';
import { specs } from './specs.mjs';

const { values: opts } = parseArgs({
  options: {
    bin: { type: 'string', default: join(ROOT, 'target/debug/telemetryd') },
    url: { type: 'string' },
    token: { type: 'string' },
    only: { type: 'string' },
    screenshots: { type: 'string', default: join(ROOT, 'target/e2e-screenshots') },
  },
});

const started = Date.now();
const log = (line) => console.log(`e2e: ${line}`);

let server;
if (opts.url) {
  server = { url: opts.url.replace(/\/$/, ''), api: apiClient(opts.url.replace(/\/$/, ''), opts.token), source: 'an existing server', stop: async () => {} };
} else {
  server = await startServer({ bin: opts.bin, log });
}
log(`server ${server.url} (${server.source}), ready after ${Date.now() - started} ms`);

const browser = await launch({ screenshots: opts.screenshots });
const t = {
  server,
  api: server.api,
  // For pages that are not the UI (another origin's page); their requests are not the UI's.
  browser,
  timings: [],
  tabs: [],
  async newTab() {
    const tab = await Tab.open(browser, server.url, opts.screenshots);
    this.tabs.push(tab);
    return tab;
  },
};

let selected = specs;
if (opts.url) {
  // Against a server we must not change: sign in, then only the timings.
  t.admin = await t.newTab();
  await t.admin.signIn(opts.token);
  const clusters = await t.api('/api/v1/clusters?limit=1').catch(() => ({ clusters: [] }));
  t.cluster = clusters.clusters[0] || { id: 'none' };
  selected = specs.filter(([name]) => name.startsWith('timing'));
} else if (opts.only) {
  selected = specs.filter(([name]) => name.includes(opts.only));
}

let passed = 0;
let failed = 0;
for (const [name, run] of selected) {
  const began = Date.now();
  try {
    await run(t);
    passed += 1;
    log(`ok   ${name} (${Date.now() - began} ms)`);
  } catch (error) {
    failed += 1;
    log(`FAIL ${name} (${Date.now() - began} ms)\n${String(error.stack || error).split('\n').map((l) => `      ${l}`).join('\n')}`);
    const tab = t.tabs[t.tabs.length - 1];
    if (tab) await tab.shot(`failed-${passed + failed}`).catch(() => {});
  }
}

if (t.timings.length) {
  log('navigation → data on screen (client-side navigation: median and max of 3; full page load incl. scripts: 1)');
  for (const row of t.timings) {
    log(`  ${row.page.padEnd(14)} ${String(row.nav_median_ms).padStart(5)} ms nav${row.nav_max_ms != null ? ` (max ${row.nav_max_ms})` : ''}  ${String(row.full_load_ms).padStart(5)} ms full load  ${row.path}`);
  }
  writeFileSync(join(opts.screenshots, 'timings.json'), JSON.stringify({ server: server.source, timings: t.timings }, null, 2));
}

await browser.close();
if (failed && server.stderr) log(`server log (tail):\n${server.stderr().split('\n').slice(-15).join('\n')}`);
await server.stop();
log(`screenshots in ${opts.screenshots}; took ${((Date.now() - started) / 1000).toFixed(1)} s`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
