// Sends through the official, unmodified @sentry/node SDK to telemetryd (driven by
// tests/compat_sdks.rs): `node sentry_send.mjs URL`. Prints a JSON summary of what was sent and
// every HTTP answer the SDK got (its transport's `httpModule` option is given node:http with
// the exchanges recorded, nothing changed), and exits non-zero when the SDK reported an error.
//
// DSN http://PUBLIC_KEY@HOST/4242 (HOST from URL). Two releases, shop@1.0.0 and shop@1.1.0,
// each: the same TypeError (captureException) from the same functions, a warning message, a
// transaction `checkout` with two spans (streamed as `span` items, the SDK's default), and two
// sessions of two installs; in 1.0.0 one of them crashes (an unhandled exception).

import * as http from 'node:http';
import * as Sentry from '@sentry/node';

const url = new URL(process.argv[2]);
const dsn = `http://0123456789abcdef0123456789abcdef@${url.host}/4242`;
const requests = [];
const pending = [];
const errors = [];
const transactions = [];
const segments = {};
const children = [];

// node:http, recording each exchange once its answer is read.
const observedHttp = {
  ...http,
  request(options, callback) {
    return http.request(options, (res) => {
      let body = '';
      pending.push(
        new Promise((resolve) => {
          res.on('data', (chunk) => {
            body += chunk;
          });
          res.on('end', () => {
            requests.push({
              url: `${url.origin}${options.path}`,
              content_encoding: options.headers?.['content-encoding'] ?? null,
              status: res.statusCode,
              body: body.slice(0, 2000),
            });
            resolve();
          });
        }),
      );
      callback(res);
    });
  },
};

// The SDK logs refused or failed uploads with console.warn / console.error.
for (const level of ['warn', 'error']) {
  const original = console[level];
  console[level] = (...args) => {
    errors.push(`console.${level}: ${args.join(' ')}`);
    original(...args);
  };
}

function parse(text) {
  // The same error in every release.
  return text.definitely.missing;
}

function failingCall() {
  try {
    parse({});
  } catch (error) {
    return error;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function session(user, crash) {
  Sentry.setUser({ id: user });
  Sentry.startSession();
  if (crash) {
    Sentry.captureException(new RangeError('crashed'), { mechanism: { type: 'test', handled: false } });
    // The event updates the session once processed (asynchronously): before it ends.
    await Sentry.flush(10000);
  }
  Sentry.endSession();
}

async function release(version) {
  Sentry.init({
    dsn,
    release: `shop@${version}`,
    environment: 'production',
    tracesSampleRate: 1.0,
    transportOptions: { httpModule: observedHttp },
    // The sessions are the ones below, not the process's own.
    integrations: (defaults) => defaults.filter((integration) => integration.name !== 'ProcessSession'),
    // The SDK streams spans (`span` items) rather than sending transactions.
    beforeSendSpan(span) {
      const attributes = span.attributes ?? {};
      if (span.is_segment) {
        segments[span.span_id] = { release: attributes['sentry.release'], name: span.name, spans: [] };
        transactions.push(segments[span.span_id]);
      } else {
        children.push({
          segment: attributes['sentry.segment.id'],
          op: attributes['sentry.op'],
          description: span.name,
          duration_ms: (span.end_timestamp - span.start_timestamp) * 1000,
        });
      }
      return span;
    },
  });
  Sentry.setUser({ id: `install-${version}` });
  Sentry.setTag('plan', 'pro');
  const ids = { exception: Sentry.captureException(failingCall()) };
  ids.message = Sentry.captureMessage('disk almost full', 'warning');
  await Sentry.startSpan({ name: 'checkout', op: 'task', forceTransaction: true }, async () => {
    await Sentry.startSpan({ name: 'load cart', op: 'db.query' }, () => sleep(20));
    await Sentry.startSpan({ name: 'charge card', op: 'http.client' }, () => sleep(10));
  });
  await session(`install-${version}-a`, false);
  await session(`install-${version}-b`, version === '1.0.0');
  Sentry.setUser({ id: `install-${version}` });
  await Sentry.flush(10000);
  await Sentry.close(10000);
  return ids;
}

const ids = {};
for (const version of ['1.0.0', '1.1.0']) {
  ids[version] = await release(version);
}
await Promise.all(pending);
for (const { segment, ...span } of children) {
  segments[segment]?.spans.push(span);
}
const error = failingCall();
const summary = {
  dsn,
  ids,
  exception: { type: error.name, message: error.message },
  transactions,
  requests,
  errors,
};
summary.ok = errors.length === 0 && requests.length > 0 && requests.every((r) => r.status < 300);
console.log(JSON.stringify(summary, null, 1));
process.exit(summary.ok ? 0 : 1);
