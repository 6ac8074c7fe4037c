// Sends through the official, unmodified posthog-node and @aptabase/web SDKs to telemetryd
// (driven by tests/compat_sdks.rs): `node compat_send.mjs URL`. Prints a JSON summary of what
// was sent and every HTTP answer the SDKs got (the global fetch both use is observed, not
// changed), and exits non-zero when an SDK reported an error.
//
// PostHog (posthog-node, host = URL, token phc_compat_node, gzip as it sends by default): two
// installs of app versions 3.0.0 and 3.1.0 each capture `checkout_done` and the same TypeError
// with captureException; an identify and a groupIdentify (person and group updates); the
// flags of the first install. Aptabase (@aptabase/web, host = URL, app key A-SH-COMPATJS01):
// `page_viewed` with props, one request to /api/v0/event.

import { PostHog } from 'posthog-node';
import { init, trackEvent } from '@aptabase/web';

const url = process.argv[2];
const requests = [];
const errors = [];

const realFetch = globalThis.fetch;
globalThis.fetch = async (resource, options = {}) => {
  const response = await realFetch(resource, options);
  const body = await response.clone().text();
  const headers = new Headers(options.headers ?? {});
  requests.push({
    url: String(resource),
    content_encoding: headers.get('content-encoding'),
    status: response.status,
    body: body.slice(0, 2000),
  });
  return response;
};
// @aptabase/web reports a refused event with console.warn.
const warn = console.warn;
console.warn = (...args) => {
  errors.push(`console.warn: ${args.join(' ')}`);
  warn(...args);
};

function failingCall() {
  try {
    null.checkout();
  } catch (error) {
    return error;
  }
}

async function posthog() {
  const client = new PostHog('phc_compat_node', { host: url, flushAt: 100, flushInterval: 0 });
  client.on('error', (error) => errors.push(`posthog-node: ${error}`));
  const installs = { 'install-js-0': '3.0.0', 'install-js-1': '3.1.0' };
  for (const [install, version] of Object.entries(installs)) {
    client.capture({
      distinctId: install,
      event: 'checkout_done',
      properties: { $app_version: version, $session_id: `session-${install}`, cart_items: 2, coupon: 'spring' },
    });
    client.captureException(failingCall(), install, { $app_version: version });
  }
  client.identify({ distinctId: 'install-js-0', properties: { plan: 'team' } });
  client.groupIdentify({ groupType: 'company', groupKey: 'acme', properties: { seats: 5 } });
  await client.flush();
  const flags = await client.evaluateFlags('install-js-0');
  const enabled = Object.fromEntries(
    flags.keys.map((key) => [key, flags.isEnabled(key, { sendFeatureFlagEvents: false })]),
  );
  const payload = flags.getFlagPayload('telemetryd-collection');
  await client.shutdown();
  const error = failingCall();
  return { installs, flags: { payload, enabled }, exception: { type: error.name, message: error.message } };
}

async function aptabase() {
  init('A-SH-COMPATJS01', { host: url, appVersion: '4.2.0', isDebug: false });
  await trackEvent('page_viewed', { page: 'pricing', scroll_pct: 80 });
  return { app_version: '4.2.0', sdk_version: 'aptabase-web@0.5.0' };
}

const summary = { posthog: await posthog(), aptabase: await aptabase() };
summary.requests = requests;
summary.errors = errors;
summary.ok = errors.length === 0 && requests.every((r) => r.status < 300);
console.log(JSON.stringify(summary, null, 1));
process.exit(summary.ok ? 0 : 1);
