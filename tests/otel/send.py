"""Sends traces, logs and metrics to a telemetryd server through the official OpenTelemetry Python
SDK and its OTLP/HTTP protobuf exporter, unmodified; driven by tests/otel_sdks.rs.

    send.py ENDPOINT [SIGNALS]

ENDPOINT is the OTLP base URL (`http://127.0.0.1:PORT/otlp/voice-sdk`), used as
`OTEL_EXPORTER_OTLP_ENDPOINT`: the exporters are built without an endpoint and append
`/v1/traces`, `/v1/logs` and `/v1/metrics` themselves. When the variable is already set it
wins (the Rust test sets it). SIGNALS is a comma-separated subset of `traces,logs,metrics`
(all three by default). Requests are gzip-compressed (`OTEL_EXPORTER_OTLP_COMPRESSION`).

Prints one JSON object to stdout: what was sent (ids, exact durations, attribute values,
expected metric values) and every HTTP request the exporters made with its answer. Exits 1 when
any export failed (an exporter result other than SUCCESS, or an answer other than 200).
"""

import json
import math
import os
import sys
import time
import traceback
import uuid

import requests

SIGNALS = ("traces", "logs", "metrics")


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: send.py ENDPOINT [traces,logs,metrics]")
    endpoint = sys.argv[1].rstrip("/")
    signals = sys.argv[2].split(",") if len(sys.argv) > 2 else list(SIGNALS)
    unknown = [s for s in signals if s not in SIGNALS]
    if unknown:
        sys.exit(f"unknown signals {unknown}; expected a subset of {SIGNALS}")
    os.environ.setdefault("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    os.environ.setdefault("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")

    # Imported after the environment is set, as an application configured by it would be.
    from opentelemetry.sdk.resources import OsResourceDetector, Resource

    install_id = str(uuid.uuid4())
    resource = Resource.create(
        {
            "service.name": "getpatter",
            "service.version": "0.9.2",
            "getpatter.install_id": install_id,
        }
    ).merge(OsResourceDetector().detect())
    summary = {
        "sdk": "python",
        "endpoint": os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"],
        "resource": {k: v for k, v in resource.attributes.items()},
        "install_id": install_id,
        "exports": [],
        "requests": [],
    }
    session = recording_session(summary["requests"])
    if "traces" in signals:
        summary["traces"] = send_traces(resource, session, summary["exports"])
    if "logs" in signals:
        summary["logs"] = send_logs(resource, session, summary["exports"], summary.get("traces"))
    if "metrics" in signals:
        summary["metrics"] = send_metrics(resource, session, summary["exports"])

    failed = [e for e in summary["exports"] if e["result"] != "SUCCESS"]
    failed += [r for r in summary["requests"] if r["status"] != 200]
    summary["ok"] = not failed and bool(summary["exports"])
    print(json.dumps(summary, indent=1, sort_keys=True))
    if failed:
        print(f"send.py: {len(failed)} exports failed: {failed}", file=sys.stderr)
        sys.exit(1)


def recording_session(log):
    """A requests session for the exporters that records every answer (the exporters use it
    unchanged: `session=` is their own option)."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceResponse,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    answers = {
        "/v1/traces": ExportTraceServiceResponse,
        "/v1/logs": ExportLogsServiceResponse,
        "/v1/metrics": ExportMetricsServiceResponse,
    }

    def hook(response, *args, **kwargs):
        request = response.request
        entry = {
            "url": request.url,
            "status": response.status_code,
            "request_content_type": request.headers.get("content-type"),
            "request_content_encoding": request.headers.get("content-encoding"),
            "response_content_type": response.headers.get("content-type"),
        }
        answer = next((m for path, m in answers.items() if request.url.endswith(path)), None)
        if answer is not None and response.status_code == 200:
            try:
                message = answer.FromString(response.content)
                entry["partial_success"] = (
                    str(message.partial_success) if message.HasField("partial_success") else None
                )
            except DecodeError as e:
                entry["partial_success"] = f"undecodable answer: {e}"
        else:
            entry["body"] = response.text[:500]
        log.append(entry)

    session = requests.Session()
    session.hooks["response"].append(hook)
    return session


# Times: the trace starts at T0, whole seconds a minute ago, and everything else is an offset
# from it in nanoseconds, so every duration and timestamp is exact.
T0 = (int(time.time()) - 60) * 1_000_000_000
MS = 1_000_000
# The log records are emitted inside the LLM span (400 ms to 1212.5 ms), one millisecond apart.
LOG_OFFSET_MS = 500


# Failures a few frames deep, so the stack traces are as long as real ones.
def synthesize(message):
    def stream_audio_chunks(text):
        raise TimeoutError(text)

    return stream_audio_chunks(message)


def stream_audio(message):
    def read_provider_stream(text):
        raise ConnectionError(text)

    return read_provider_stream(message)


def send_traces(resource, session, exports):
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode

    class CheckedSpanExporter(OTLPSpanExporter):
        def export(self, spans):
            result = super().export(spans)
            exports.append({"signal": "traces", "items": len(spans), "result": result.name})
            return result

    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(CheckedSpanExporter(session=session)))
    tracer = provider.get_tracer("getpatter.voice", "0.9.2")
    t0 = T0
    call_id = "call-py-1"
    call = tracer.start_span(
        "getpatter.call",
        kind=SpanKind.SERVER,
        start_time=t0,
        attributes={
            "getpatter.call.id": call_id,
            "getpatter.direction": "inbound",
            "getpatter.turns": 2,
        },
    )
    parent = trace.set_span_in_context(call)
    stt = tracer.start_span(
        "getpatter.stt",
        context=parent,
        start_time=t0 + 50 * MS,
        attributes={"getpatter.stt.provider": "deepgram", "getpatter.stt.audio_ms": 1800},
    )
    stt.end(end_time=t0 + 50 * MS + 250_250_000)  # 250.25 ms
    llm = tracer.start_span(
        "getpatter.llm",
        context=parent,
        kind=SpanKind.CLIENT,
        start_time=t0 + 400 * MS,
        attributes={
            "getpatter.llm.ttft_ms": 245,
            "getpatter.call.id": call_id,
            "patter.cost.tts_chars": 132,
            "getpatter.llm.streaming": True,
            "getpatter.llm.model": "gpt-4o-mini",
            "getpatter.llm.temperature": 0.7,
            "getpatter.llm.tools": ["search", "calendar"],
        },
    )
    llm.end(end_time=t0 + 400 * MS + 812_500_000)  # 812.5 ms
    tts = tracer.start_span(
        "getpatter.tts",
        context=parent,
        start_time=t0 + 1300 * MS,
        attributes={"getpatter.tts.provider": "elevenlabs"},
    )
    try:
        synthesize("TTS timed out after 40 ms")
    except TimeoutError as e:
        tts.record_exception(e, timestamp=t0 + 1340 * MS)
        tts_stack = "".join(traceback.format_exception(e))
    tts.set_status(Status(StatusCode.ERROR, "synthesis failed"))
    tts.end(end_time=t0 + 1340 * MS)  # 40 ms
    call.end(end_time=t0 + 3000 * MS)  # 3000 ms

    flushed = provider.force_flush()
    provider.shutdown()
    if not flushed:
        exports.append({"signal": "traces", "items": 0, "result": "FLUSH_TIMED_OUT"})

    def ids(span):
        ctx = span.get_span_context()
        return {
            "trace_id": format(ctx.trace_id, "032x"),
            "span_id": format(ctx.span_id, "016x"),
        }

    return {
        "trace_id": ids(call)["trace_id"],
        "start_ms": t0 // MS,
        "spans": {
            "getpatter.call": {**ids(call), "parent_span_id": None, "duration_ms": 3000.0,
                               "offset_ms": 0},
            "getpatter.stt": {**ids(stt), "parent_span_id": ids(call)["span_id"],
                              "duration_ms": 250.25, "offset_ms": 50},
            "getpatter.llm": {**ids(llm), "parent_span_id": ids(call)["span_id"],
                              "duration_ms": 812.5, "offset_ms": 400},
            "getpatter.tts": {**ids(tts), "parent_span_id": ids(call)["span_id"],
                              "duration_ms": 40.0, "offset_ms": 1300},
        },
        "call_id": call_id,
        "error": {
            "type": "TimeoutError",
            "message": "TTS timed out after 40 ms",
            "status_message": "synthesis failed",
            "stack": tts_stack,
        },
    }


def send_logs(resource, session, exports, traces):
    from opentelemetry import trace
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    class CheckedLogExporter(OTLPLogExporter):
        def export(self, batch):
            result = super().export(batch)
            exports.append({"signal": "logs", "items": len(batch), "result": result.name})
            return result

    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(CheckedLogExporter(session=session)))
    logger = provider.get_logger("getpatter.agent", "0.9.2")
    # The records belong to the LLM span of the trace sent above (or to a made-up one).
    if traces:
        trace_id, span_id = traces["trace_id"], traces["spans"]["getpatter.llm"]["span_id"]
    else:
        trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    span = NonRecordingSpan(
        SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=False,
                    trace_flags=TraceFlags(TraceFlags.SAMPLED))
    )
    context = trace.set_span_in_context(span)
    t0 = T0 + LOG_OFFSET_MS * MS
    logger.emit(
        timestamp=t0 + 1 * MS,
        context=context,
        severity_number=SeverityNumber.INFO,
        severity_text="INFO",
        body="call connected",
        event_name="getpatter.call.connected",
        attributes={"getpatter.call.id": "call-py-1", "getpatter.sip.codec": "opus"},
    )
    logger.emit(
        timestamp=t0 + 2 * MS,
        context=context,
        severity_number=SeverityNumber.WARN,
        severity_text="WARN",
        body="slow provider: deepgram took 1800 ms",
        attributes={"getpatter.stt.provider": "deepgram", "getpatter.stt.latency_ms": 1800},
    )
    try:
        stream_audio("provider closed the stream")
    except ConnectionError as e:
        error = e
    logger.emit(
        timestamp=t0 + 3 * MS,
        context=context,
        severity_number=SeverityNumber.ERROR,
        severity_text="ERROR",
        body="tts provider failed",
        exception=error,
    )
    logger.emit(
        timestamp=t0 + 4 * MS,
        context=context,
        severity_number=SeverityNumber.DEBUG,
        body="audio frame stats",
        attributes={"event.name": "getpatter.audio.stats", "getpatter.audio.frames": 480},
    )
    flushed = provider.force_flush()
    provider.shutdown()
    if not flushed:
        exports.append({"signal": "logs", "items": 0, "result": "FLUSH_TIMED_OUT"})
    return {
        "trace_id": trace_id,
        "span_id": span_id,
        "first_timestamp_ms": T0 // MS + LOG_OFFSET_MS + 1,
        "records": [
            {"body": "call connected", "level": "info", "severity_number": 9,
             "name": "getpatter.call.connected", "name_from": "event_name field"},
            {"body": "slow provider: deepgram took 1800 ms", "level": "warn",
             "severity_number": 13, "name": "getpatter.agent", "name_from": "scope"},
            {"body": "tts provider failed", "level": "error", "severity_number": 17,
             "name": "getpatter.agent", "name_from": "scope",
             "exception": {"type": "ConnectionError", "message": "provider closed the stream",
                           "stack": "".join(traceback.format_exception(error))}},
            {"body": "audio frame stats", "level": "debug", "severity_number": 5,
             "name": "getpatter.audio.stats", "name_from": "event.name attribute"},
        ],
    }


BOUNDARIES = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5]


def send_metrics(resource, session, exports):
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    class CheckedMetricExporter(OTLPMetricExporter):
        def export(self, metrics_data, timeout_millis=10_000, **kwargs):
            result = super().export(metrics_data, timeout_millis=timeout_millis, **kwargs)
            exports.append({"signal": "metrics", "result": result.name})
            return result

    def run(phases):
        # An infinite interval: no background thread, each force_flush is one collect + export.
        reader = PeriodicExportingMetricReader(
            CheckedMetricExporter(session=session), export_interval_millis=math.inf
        )
        provider = MeterProvider(resource=resource, metric_readers=[reader])
        meter = provider.get_meter("getpatter.metrics", "0.9.2")
        events = meter.create_counter("atlas_sdk_events_total", unit="1",
                                      description="SDK events by surface")
        durations = meter.create_histogram(
            "atlas_sdk_request_duration_seconds", unit="s", description="Request duration",
            explicit_bucket_boundaries_advisory=BOUNDARIES,
        )
        active = meter.create_gauge("atlas_sdk_active_calls", unit="1",
                                    description="Calls in progress")
        for phase in phases:
            for (surface, event), n in phase["counter"].items():
                events.add(n, {"surface": surface, "event": event})
            for value in phase["histogram"]:
                durations.record(value, {"route": "/v1/calls"})
            active.set(phase["gauge"], {"surface": "cli"})
            if not provider.force_flush():
                exports.append({"signal": "metrics", "result": "FLUSH_TIMED_OUT"})
        provider.shutdown()

    return metric_plan(run)


def metric_plan(run):
    """Two exports from one MeterProvider, then a new one (a client restart: new start time,
    cumulative values from 0) exporting once more. Returns what a reader should find."""
    first_life = [
        {"counter": {("cli", "call_started"): 3, ("api", "call_failed"): 1},
         "histogram": [0.03, 0.07, 0.2, 0.3], "gauge": 3},
        {"counter": {("cli", "call_started"): 2},
         "histogram": [0.4, 0.8, 1.5, 3.0, 0.09, 0.2], "gauge": 1},
    ]
    second_life = [
        {"counter": {("cli", "call_started"): 4}, "histogram": [0.6, 0.06], "gauge": 2},
    ]
    run(first_life)
    time.sleep(0.01)  # the new provider's start time is strictly later
    run(second_life)
    return expected_metrics(first_life, second_life)


def expected_metrics(first_life, second_life):
    phases = first_life + second_life
    cumulative = []
    for life in (first_life, second_life):
        totals = {}
        for phase in life:
            for key, n in phase["counter"].items():
                totals[key] = totals.get(key, 0) + n
            cumulative.append({f"{s}/{e}": v for (s, e), v in totals.items()})
    increases = {}
    for phase in phases:
        for (s, e), n in phase["counter"].items():
            increases[f"{s}/{e}"] = increases.get(f"{s}/{e}", 0) + n
    values = [v for phase in phases for v in phase["histogram"]]
    buckets = [0] * (len(BOUNDARIES) + 1)
    for v in values:
        buckets[next((i for i, b in enumerate(BOUNDARIES) if v <= b), len(BOUNDARIES))] += 1
    return {
        "counter": {
            "name": "atlas_sdk_events_total",
            "labels": ["surface", "event"],
            "temporality": "cumulative",
            "exports": 3,
            "restart_after_export": 2,
            "cumulative_values_per_export": cumulative,
            "increase_total": increases,
        },
        "histogram": {
            "name": "atlas_sdk_request_duration_seconds",
            "boundaries": BOUNDARIES,
            "values": values,
            "count": len(values),
            "sum": round(sum(values), 9),
            "bucket_counts": buckets,
            "p50_estimate": quantile(0.5, buckets),
            "p90_estimate": quantile(0.9, buckets),
        },
        "gauge": {
            "name": "atlas_sdk_active_calls",
            "values_per_export": [p["gauge"] for p in phases],
            "last": phases[-1]["gauge"],
        },
    }


def quantile(q, buckets):
    """Prometheus' histogram_quantile: linear interpolation inside the bucket that holds the
    rank, the lowest bucket starting at 0, the +Inf bucket answering its lower bound."""
    rank = q * sum(buckets)
    seen = 0
    for i, n in enumerate(buckets):
        if seen + n >= rank and n > 0:
            if i == len(BOUNDARIES):
                return BOUNDARIES[-1]
            lower = BOUNDARIES[i - 1] if i > 0 else 0.0
            return round(lower + (BOUNDARIES[i] - lower) * (rank - seen) / n, 9)
        seen += n
    return None


if __name__ == "__main__":
    main()
