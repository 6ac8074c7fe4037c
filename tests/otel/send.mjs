// Sends traces, logs and metrics to a telemetryd server through the official OpenTelemetry JS
// SDK and its OTLP/HTTP exporters (JSON, their default), unmodified; driven by
// tests/otel_sdks.rs.
//
//     node send.mjs ENDPOINT [SIGNALS]
//
// ENDPOINT is the OTLP base URL (`http://127.0.0.1:PORT/otlp/voice-sdk`); each exporter is given
// `url: ENDPOINT/v1/<signal>`. SIGNALS is a comma-separated subset of `traces,logs,metrics` (all
// three by default).
//
// Prints one JSON object to stdout: what was sent (ids, exact durations, attribute values,
// expected metric values) and every HTTP request the exporters made with its answer. Exits 1
// when any export failed (an export callback result other than SUCCESS, a rejected forceFlush,
// an answer other than 200, or a partial success the exporter reported).

import dc from 'node:diagnostics_channel';
import { randomUUID } from 'node:crypto';

import { context, diag, DiagLogLevel, SpanKind, SpanStatusCode, trace, TraceFlags } from '@opentelemetry/api';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, detectResources, osDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { BatchLogRecordProcessor, LoggerProvider } from '@opentelemetry/sdk-logs';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';

const SIGNALS = ['traces', 'logs', 'metrics'];
const [endpointArg, signalsArg] = process.argv.slice(2);
if (!endpointArg) {
  console.error('usage: node send.mjs ENDPOINT [traces,logs,metrics]');
  process.exit(2);
}
const endpoint = endpointArg.replace(/\/+$/, '');
const signals = signalsArg ? signalsArg.split(',') : SIGNALS;
if (signals.some((s) => !SIGNALS.includes(s))) {
  console.error(`unknown signals in ${signalsArg}; expected a subset of ${SIGNALS}`);
  process.exit(2);
}

// Every HTTP answer the exporters get (Node's own diagnostics channel; nothing is patched).
const requests = [];
dc.subscribe('http.client.response.finish', ({ request, response }) => {
  requests.push({
    url: `${request.protocol}//${request.getHeader('host')}${request.path}`,
    status: response.statusCode,
    request_content_type: request.getHeader('content-type') ?? null,
    request_content_encoding: request.getHeader('content-encoding') ?? null,
    response_content_type: response.headers['content-type'] ?? null,
  });
});
// What the SDK itself reports: partial successes and export errors come through diag.
const diagnostics = [];
diag.setLogger(
  {
    error: (...args) => diagnostics.push({ level: 'error', message: args.map(String).join(' ') }),
    warn: (...args) => diagnostics.push({ level: 'warn', message: args.map(String).join(' ') }),
    info: () => {},
    debug: () => {},
    verbose: () => {},
  },
  DiagLogLevel.WARN,
);

// The results exporters hand to their callers, recorded on the way through.
const exports = [];
function checked(exporter, signal) {
  return new Proxy(exporter, {
    get(target, prop) {
      if (prop === 'export') {
        return (items, done) =>
          target.export(items, (result) => {
            exports.push({
              signal,
              items: Array.isArray(items) ? items.length : undefined,
              result: result.code === 0 ? 'SUCCESS' : 'FAILURE',
              error: result.error ? String(result.error) : undefined,
            });
            done(result);
          });
      }
      const value = Reflect.get(target, prop);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

const installId = randomUUID();
const resource = defaultResource()
  .merge(detectResources({ detectors: [osDetector] }))
  .merge(
    resourceFromAttributes({
      'service.name': 'getpatter',
      'service.version': '2.1.0',
      'getpatter.install_id': installId,
    }),
  );
if (resource.waitForAsyncAttributes) await resource.waitForAsyncAttributes();

// Times: the trace starts at T0, whole seconds a minute ago, and everything else is an offset from
// it in nanoseconds (as HrTime), so every duration and timestamp is exact.
const T0 = (BigInt(Math.floor(Date.now() / 1000)) - 60n) * 1_000_000_000n;
const MS = 1_000_000n;
const hr = (ns) => [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)];
// The log records are emitted inside the LLM span (400 ms to 1212.5 ms), one millisecond apart.
const LOG_OFFSET_MS = 500n;

const summary = {
  sdk: 'nodejs',
  endpoint,
  resource: resource.attributes,
  install_id: installId,
  exports,
  requests,
  diagnostics,
};
const failures = [];
async function flushed(signal, promise) {
  try {
    await promise;
  } catch (e) {
    failures.push(`${signal}: forceFlush rejected: ${e}`);
  }
}

// Failures a few frames deep, so the stack traces are as long as real ones.
function failure(run) {
  try {
    run();
  } catch (e) {
    return e;
  }
  throw new Error('expected a failure');
}
function synthesize(message) {
  const streamAudioChunks = (text) => {
    const e = new Error(text);
    e.name = 'TimeoutError';
    throw e;
  };
  return streamAudioChunks(message);
}
function streamAudio(message) {
  const readProviderStream = (text) => {
    const e = new Error(text);
    e.name = 'ConnectionError';
    throw e;
  };
  return readProviderStream(message);
}

async function sendTraces() {
  const exporter = checked(new OTLPTraceExporter({ url: `${endpoint}/v1/traces` }), 'traces');
  const provider = new BasicTracerProvider({ resource, spanProcessors: [new BatchSpanProcessor(exporter)] });
  const tracer = provider.getTracer('getpatter.voice', '2.1.0');
  const t0 = T0;
  const callId = 'call-js-1';
  const call = tracer.startSpan('getpatter.call', {
    kind: SpanKind.SERVER,
    startTime: hr(t0),
    attributes: { 'getpatter.call.id': callId, 'getpatter.direction': 'inbound', 'getpatter.turns': 2 },
  });
  const parent = trace.setSpan(context.active(), call);
  const stt = tracer.startSpan(
    'getpatter.stt',
    {
      startTime: hr(t0 + 50n * MS),
      attributes: { 'getpatter.stt.provider': 'deepgram', 'getpatter.stt.audio_ms': 1800 },
    },
    parent,
  );
  stt.end(hr(t0 + 50n * MS + 250_250_000n)); // 250.25 ms
  const llm = tracer.startSpan(
    'getpatter.llm',
    {
      kind: SpanKind.CLIENT,
      startTime: hr(t0 + 400n * MS),
      attributes: {
        'getpatter.llm.ttft_ms': 245,
        'getpatter.call.id': callId,
        'patter.cost.tts_chars': 132,
        'getpatter.llm.streaming': true,
        'getpatter.llm.model': 'gpt-4o-mini',
        'getpatter.llm.temperature': 0.7,
        'getpatter.llm.tools': ['search', 'calendar'],
      },
    },
    parent,
  );
  llm.end(hr(t0 + 400n * MS + 812_500_000n)); // 812.5 ms
  const tts = tracer.startSpan(
    'getpatter.tts',
    { startTime: hr(t0 + 1300n * MS), attributes: { 'getpatter.tts.provider': 'elevenlabs' } },
    parent,
  );
  const timeout = failure(() => synthesize('TTS timed out after 40 ms'));
  tts.recordException(timeout, hr(t0 + 1340n * MS));
  tts.setStatus({ code: SpanStatusCode.ERROR, message: 'synthesis failed' });
  tts.end(hr(t0 + 1340n * MS)); // 40 ms
  call.end(hr(t0 + 3000n * MS)); // 3000 ms

  await flushed('traces', provider.forceFlush());
  await flushed('traces', provider.shutdown());
  const ids = (span) => ({ trace_id: span.spanContext().traceId, span_id: span.spanContext().spanId });
  const root = ids(call).span_id;
  return {
    trace_id: ids(call).trace_id,
    start_ms: Number(t0 / MS),
    spans: {
      'getpatter.call': { ...ids(call), parent_span_id: null, duration_ms: 3000.0, offset_ms: 0 },
      'getpatter.stt': { ...ids(stt), parent_span_id: root, duration_ms: 250.25, offset_ms: 50 },
      'getpatter.llm': { ...ids(llm), parent_span_id: root, duration_ms: 812.5, offset_ms: 400 },
      'getpatter.tts': { ...ids(tts), parent_span_id: root, duration_ms: 40.0, offset_ms: 1300 },
    },
    call_id: callId,
    error: { type: 'TimeoutError', message: 'TTS timed out after 40 ms', status_message: 'synthesis failed', stack: timeout.stack },
  };
}

async function sendLogs(traces) {
  const exporter = checked(new OTLPLogExporter({ url: `${endpoint}/v1/logs` }), 'logs');
  const provider = new LoggerProvider({ resource, processors: [new BatchLogRecordProcessor({ exporter })] });
  const logger = provider.getLogger('getpatter.agent', '2.1.0');
  // The records belong to the LLM span of the trace sent above (or to a made-up one).
  const traceId = traces ? traces.trace_id : randomUUID().replaceAll('-', '');
  const spanId = traces ? traces.spans['getpatter.llm'].span_id : randomUUID().replaceAll('-', '').slice(0, 16);
  const ctx = trace.setSpanContext(context.active(), { traceId, spanId, traceFlags: TraceFlags.SAMPLED });
  const t0 = T0 + LOG_OFFSET_MS * MS;
  logger.emit({
    timestamp: hr(t0 + 1n * MS),
    context: ctx,
    severityNumber: SeverityNumber.INFO,
    severityText: 'INFO',
    body: 'call connected',
    eventName: 'getpatter.call.connected',
    attributes: { 'getpatter.call.id': 'call-js-1', 'getpatter.sip.codec': 'opus' },
  });
  logger.emit({
    timestamp: hr(t0 + 2n * MS),
    context: ctx,
    severityNumber: SeverityNumber.WARN,
    severityText: 'WARN',
    body: 'slow provider: deepgram took 1800 ms',
    attributes: { 'getpatter.stt.provider': 'deepgram', 'getpatter.stt.latency_ms': 1800 },
  });
  const error = failure(() => streamAudio('provider closed the stream'));
  logger.emit({
    timestamp: hr(t0 + 3n * MS),
    context: ctx,
    severityNumber: SeverityNumber.ERROR,
    severityText: 'ERROR',
    body: 'tts provider failed',
    exception: error,
  });
  logger.emit({
    timestamp: hr(t0 + 4n * MS),
    context: ctx,
    severityNumber: SeverityNumber.DEBUG,
    body: 'audio frame stats',
    attributes: { 'event.name': 'getpatter.audio.stats', 'getpatter.audio.frames': 480 },
  });
  await flushed('logs', provider.forceFlush());
  await flushed('logs', provider.shutdown());
  return {
    trace_id: traceId,
    span_id: spanId,
    first_timestamp_ms: Number(T0 / MS + LOG_OFFSET_MS) + 1,
    records: [
      { body: 'call connected', level: 'info', severity_number: 9, name: 'getpatter.call.connected', name_from: 'eventName field' },
      { body: 'slow provider: deepgram took 1800 ms', level: 'warn', severity_number: 13, name: 'getpatter.agent', name_from: 'scope' },
      {
        body: 'tts provider failed',
        level: 'error',
        severity_number: 17,
        name: 'getpatter.agent',
        name_from: 'scope',
        exception: { type: 'ConnectionError', message: 'provider closed the stream', stack: error.stack },
      },
      { body: 'audio frame stats', level: 'debug', severity_number: 5, name: 'getpatter.audio.stats', name_from: 'event.name attribute' },
    ],
  };
}

const BOUNDARIES = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

// A reader that exports when asked, once per call, and hands back the exporter's result (a
// PeriodicExportingMetricReader would export once more on shutdown and swallow failures).
class ExportOnDemand extends MetricReader {
  constructor(exporter) {
    super({
      aggregationTemporalitySelector: exporter.selectAggregationTemporality.bind(exporter),
      aggregationSelector: exporter.selectAggregation?.bind(exporter),
    });
    this.exporter = exporter;
  }
  async exportNow() {
    const { resourceMetrics, errors } = await this.collect();
    if (errors.length > 0) failures.push(`metrics: collection errors: ${errors}`);
    await new Promise((resolve) => this.exporter.export(resourceMetrics, resolve));
  }
  async onForceFlush() {
    await this.exporter.forceFlush();
  }
  async onShutdown() {
    await this.exporter.shutdown();
  }
}

async function sendMetrics() {
  // Two exports from one MeterProvider, then a new one (a client restart: new start time,
  // cumulative values from 0) exporting once more.
  const firstLife = [
    { counter: [['cli', 'call_started', 3], ['api', 'call_failed', 1]], histogram: [0.03, 0.07, 0.2, 0.3], gauge: 3 },
    { counter: [['cli', 'call_started', 2]], histogram: [0.4, 0.8, 1.5, 3.0, 0.09, 0.2], gauge: 1 },
  ];
  const secondLife = [{ counter: [['cli', 'call_started', 4]], histogram: [0.6, 0.06], gauge: 2 }];
  for (const life of [firstLife, secondLife]) {
    const exporter = checked(new OTLPMetricExporter({ url: `${endpoint}/v1/metrics` }), 'metrics');
    const reader = new ExportOnDemand(exporter);
    const provider = new MeterProvider({ resource, readers: [reader] });
    const meter = provider.getMeter('getpatter.metrics', '2.1.0');
    const events = meter.createCounter('atlas_sdk_events_total', { unit: '1', description: 'SDK events by surface' });
    const durations = meter.createHistogram('atlas_sdk_request_duration_seconds', {
      unit: 's',
      description: 'Request duration',
      advice: { explicitBucketBoundaries: BOUNDARIES },
    });
    const active = meter.createGauge('atlas_sdk_active_calls', { unit: '1', description: 'Calls in progress' });
    for (const phase of life) {
      for (const [surface, event, n] of phase.counter) events.add(n, { surface, event });
      for (const value of phase.histogram) durations.record(value, { route: '/v1/calls' });
      active.record(phase.gauge, { surface: 'cli' });
      await reader.exportNow();
    }
    await flushed('metrics', provider.shutdown());
    await new Promise((resolve) => setTimeout(resolve, 10)); // the new provider starts later
  }
  return expectedMetrics(firstLife, secondLife);
}

function expectedMetrics(firstLife, secondLife) {
  const phases = [...firstLife, ...secondLife];
  const cumulative = [];
  for (const life of [firstLife, secondLife]) {
    const totals = {};
    for (const phase of life) {
      for (const [s, e, n] of phase.counter) totals[`${s}/${e}`] = (totals[`${s}/${e}`] ?? 0) + n;
      cumulative.push({ ...totals });
    }
  }
  const increases = {};
  for (const phase of phases) {
    for (const [s, e, n] of phase.counter) increases[`${s}/${e}`] = (increases[`${s}/${e}`] ?? 0) + n;
  }
  const values = phases.flatMap((p) => p.histogram);
  const buckets = new Array(BOUNDARIES.length + 1).fill(0);
  for (const v of values) {
    const i = BOUNDARIES.findIndex((b) => v <= b);
    buckets[i === -1 ? BOUNDARIES.length : i] += 1;
  }
  const round = (x) => Math.round(x * 1e9) / 1e9;
  return {
    counter: {
      name: 'atlas_sdk_events_total',
      labels: ['surface', 'event'],
      temporality: 'cumulative',
      exports: 3,
      restart_after_export: 2,
      cumulative_values_per_export: cumulative,
      increase_total: increases,
    },
    histogram: {
      name: 'atlas_sdk_request_duration_seconds',
      boundaries: BOUNDARIES,
      values,
      count: values.length,
      sum: round(values.reduce((a, b) => a + b, 0)),
      bucket_counts: buckets,
      p50_estimate: quantile(0.5, buckets),
      p90_estimate: quantile(0.9, buckets),
    },
    gauge: { name: 'atlas_sdk_active_calls', values_per_export: phases.map((p) => p.gauge), last: phases.at(-1).gauge },
  };
}

// Prometheus' histogram_quantile: linear interpolation inside the bucket that holds the rank, the
// lowest bucket starting at 0, the +Inf bucket answering its lower bound.
function quantile(q, buckets) {
  const rank = q * buckets.reduce((a, b) => a + b, 0);
  let seen = 0;
  for (let i = 0; i < buckets.length; i++) {
    const n = buckets[i];
    if (seen + n >= rank && n > 0) {
      if (i === BOUNDARIES.length) return BOUNDARIES.at(-1);
      const lower = i > 0 ? BOUNDARIES[i - 1] : 0;
      return Math.round((lower + ((BOUNDARIES[i] - lower) * (rank - seen)) / n) * 1e9) / 1e9;
    }
    seen += n;
  }
  return null;
}

if (signals.includes('traces')) summary.traces = await sendTraces();
if (signals.includes('logs')) summary.logs = await sendLogs(summary.traces);
if (signals.includes('metrics')) summary.metrics = await sendMetrics();

failures.push(...exports.filter((e) => e.result !== 'SUCCESS').map((e) => `${e.signal}: ${e.error}`));
failures.push(...requests.filter((r) => r.status !== 200).map((r) => `${r.url}: HTTP ${r.status}`));
failures.push(...diagnostics.map((d) => `diag ${d.level}: ${d.message}`));
if (exports.length === 0) failures.push('nothing was exported');
summary.ok = failures.length === 0;
summary.failures = failures;
console.log(JSON.stringify(summary, null, 1));
if (failures.length > 0) {
  console.error(`send.mjs: ${failures.length} failures:\n${failures.join('\n')}`);
  process.exitCode = 1;
}
