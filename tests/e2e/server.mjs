// The real telemetryd for the browser tests: writes a config (the shipped one plus an admin and
// a viewer token, a viewer token scoped to the `voice-sdk` product, and an open-schema product `e2e-traces` that keeps what spans carry and takes posthog-js's events and Sentry's), fills a
// temporary data dir with `telemetryd demo`, starts the binary on 127.0.0.1, waits until it is
// ready and its index has caught up, and stops it afterwards. Also a small API client for
// assertions, and a plain HTTP server for a page on another origin.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
export const ADMIN_TOKEN = 'e2e-admin-token-0123456789abcdef';
export const VIEWER_TOKEN = 'e2e-viewer-token-0123456789abcdef';
/** The Sentry DSN's public key and project id of the `e2e-traces` product. */
export const SENTRY_KEY = 'e2e0123456789abcdef0123456789abc';
export const SENTRY_PROJECT = '31';
/** The PostHog project token of the `e2e-traces` product (posthog-js sends it). */
export const POSTHOG_TOKEN = 'phc_e2e_web_0123456789';
/** A viewer of the `voice-sdk` product only. */
export const SCOPED_TOKEN = 'e2e-scoped-token-0123456789abcdef';

function hashToken(bin, token) {
  const out = spawnSync(bin, ['hash-token'], { input: token, encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`hash-token failed: ${out.stderr}`);
  return out.stdout.trim();
}

function freePort() {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.once('error', fail);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => done(port));
    });
  });
}

/** A small API client: JSON in and out, with the admin token unless told otherwise. */
export function apiClient(url, token = ADMIN_TOKEN) {
  return async function call(path, { method = 'GET', body, as = token } = {}) {
    const response = await fetch(url + path, {
      method,
      headers: { authorization: `Bearer ${as}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await response.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* not JSON */ }
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text.slice(0, 300)}`);
    return json ?? text;
  };
}

async function waitFor(what, check, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try { if (await check()) return; } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

/** Starts a filled server; `stop()` ends it and removes its data dir. */
export async function startServer({ bin, log = () => {} }) {
  const dir = mkdtempSync(join(tmpdir(), 'telemetryd-e2e-'));
  const dataDir = join(dir, 'data');
  const configPath = join(dir, 'telemetry.toml');
  const shipped = readFileSync(join(ROOT, 'config/telemetry.toml'), 'utf8').replace(/^tokens = \[\]\n/m, '');
  writeFileSync(configPath, `${shipped}
[[admin.tokens]]
name = "ops"
role = "admin"
hash = "${hashToken(bin, ADMIN_TOKEN)}"

[[admin.tokens]]
name = "dash"
role = "viewer"
hash = "${hashToken(bin, VIEWER_TOKEN)}"

[[admin.tokens]]
name = "voice-team"
role = "viewer"
hash = "${hashToken(bin, SCOPED_TOKEN)}"
products = ["voice-sdk"]

[[products]]
id = "e2e-traces"
name = "E2E traces"
retention_days = 30
[products.compat]
posthog_tokens = ["${POSTHOG_TOKEN}"]
sentry_dsns = ["http://${SENTRY_KEY}@telemetry.example/${SENTRY_PROJECT}"]
`);
  const port = await freePort();
  const env = {
    ...process.env,
    TELEMETRYD_SERVER__DATA_DIR: dataDir,
    TELEMETRYD_SERVER__LISTEN: `127.0.0.1:${port}`,
    RUST_LOG: process.env.RUST_LOG || 'warn',
  };
  const began = Date.now();
  const demo = spawnSync(bin, ['demo', '--config', configPath], { env, encoding: 'utf8' });
  if (demo.status !== 0) throw new Error(`telemetryd demo failed (${demo.status}): ${demo.stderr}`);
  log(`demo data made in ${Date.now() - began} ms:\n${demo.stdout.trim().split('\n').map((l) => `      ${l}`).join('\n')}`);
  const child = spawn(bin, ['--config', configPath], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-20_000); });
  const url = `http://127.0.0.1:${port}`;
  const exited = new Promise((r) => child.once('exit', r));
  const api = apiClient(url);
  try {
    await waitFor('the server to be ready', async () => {
      if (child.exitCode !== null) throw new Error(`server exited ${child.exitCode}: ${stderr}`);
      return (await fetch(`${url}/readyz`)).ok;
    }, 30_000);
    await waitFor('the index to catch up', async () => (await api('/api/v1/stats')).store.index_lag === 0, 60_000);
  } catch (e) {
    child.kill('SIGTERM');
    throw e;
  }
  return {
    url,
    api,
    source: 'telemetryd demo',
    stderr: () => stderr,
    async stop() {
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Serves one HTML file at every path from its own port on 127.0.0.1: a page on another origin
 * than telemetryd's; `scripts` maps paths to JavaScript files served beside it (an SDK's
 * bundle). `close()` stops it.
 */
export async function servePage(file, scripts = {}) {
  const html = readFileSync(file);
  const server = createHttpServer((req, res) => {
    const script = scripts[new URL(req.url, 'http://page').pathname];
    const type = script ? 'text/javascript' : 'text/html; charset=utf-8';
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store' });
    res.end(script ? readFileSync(script) : html);
  });
  await new Promise((done) => server.listen(0, '127.0.0.1', done));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((done) => { server.closeAllConnections(); server.close(done); }),
  };
}
