//! `telemetryd bench`: a load generator for a running server. `--mode ingest` (the default)
//! sends realistic traffic — flat SDK batches shaped like the voice-AI SDK's and native app
//! batches, a few percent errors — and reports events/s and ack latency percentiles;
//! `--mode otlp-traces` and `--mode otlp-metrics` send OTLP/HTTP exports (protobuf or JSON) of
//! the voice SDK's spans or metric data points the same way ([`otlp`]); `--mode posthog` and
//! `--mode aptabase` and `--mode sentry` send batches as those services' SDKs do ([`compat`]); `--mode query` runs
//! realistic searches (free text + two filters + a 7-day range) and reports their latency;
//! `--mode searchable` sends single events and measures ack → searchable.
//!
//! The sending modes share one runner (connections, pacing, timing, the tally, the report);
//! what differs — the request and how its answer counts acknowledgements — is [`Load`].

mod compat;
mod otlp;

use std::cell::RefCell;
use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::otlp::Encoding;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Send events.
    Ingest,
    /// Send OTLP trace exports (spans) to /otlp/{product}/v1/traces.
    OtlpTraces,
    /// Send OTLP metric exports (data points) to /otlp/{product}/v1/metrics.
    OtlpMetrics,
    /// Send PostHog batches (as posthog-node does) to /batch/ with --posthog-token.
    Posthog,
    /// Send Aptabase batches (at most 25 events) to /api/v0/events with --aptabase-app-key.
    Aptabase,
    /// Send Sentry envelopes of events to /api/{project_id}/envelope/ with --sentry-dsn.
    Sentry,
    /// Run searches (needs --token).
    Query,
    /// Send one event at a time and time until search finds it (needs --token).
    Searchable,
}

/// The encoding of OTLP requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WireEncoding {
    /// application/x-protobuf
    Protobuf,
    /// application/json (OTLP JSON: hex ids, camelCase, 64-bit integers as strings)
    Json,
}

impl From<WireEncoding> for Encoding {
    fn from(encoding: WireEncoding) -> Encoding {
        match encoding {
            WireEncoding::Protobuf => Encoding::Protobuf,
            WireEncoding::Json => Encoding::Json,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Base URL of the server, e.g. http://127.0.0.1:8080
    #[arg(long)]
    pub target: String,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Ingest)]
    pub mode: Mode,
    /// Admin or viewer token, for the query and searchable modes.
    #[arg(long, env = "TELEMETRYD_TOKEN")]
    pub token: Option<String>,
    /// Items per request: events (ingest; default 50), spans (otlp-traces; default 100) or
    /// data points (otlp-metrics; default 100).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// How long to send, in seconds (ignored when --events is given).
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Stop after this many events instead of after --duration.
    #[arg(long)]
    pub events: Option<u64>,
    /// Offered load in events (spans, data points) per second across all connections
    /// (default: as fast as acked).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Percentage of events (spans) that are errors.
    #[arg(long, default_value_t = 3.0)]
    pub error_percent: f64,
    /// Distinct installs the traffic comes from (keep it large enough for the rate limit).
    #[arg(long, default_value_t = 200_000)]
    pub installs: u32,
    /// Product that receives flat SDK events.
    #[arg(long, default_value = "voice-sdk")]
    pub flat_product: String,
    /// Product that receives native app events.
    #[arg(long, default_value = "dictation-app")]
    pub native_product: String,
    /// Share of batches that are flat SDK batches (0–1).
    #[arg(long, default_value_t = 0.5)]
    pub flat_share: f64,
    /// Encoding of the OTLP modes' requests.
    #[arg(long, value_enum, default_value_t = WireEncoding::Protobuf)]
    pub encoding: WireEncoding,
    /// Product of the OTLP modes: requests go to {target}/otlp/{product}/v1/traces (or
    /// /v1/metrics). It needs an open schema (or an allowlist with the getpatter.* names) and a
    /// per-install rate limit high enough for the load.
    #[arg(long, default_value = "voice-sdk")]
    pub otlp_product: String,
    /// Project token of the posthog mode (a product's `[products.compat] posthog_tokens`).
    #[arg(long, default_value = "phc_bench")]
    pub posthog_token: String,
    /// App key of the aptabase mode (a product's `[products.compat] aptabase_app_keys`).
    #[arg(long, default_value = "A-SH-BENCH")]
    pub aptabase_app_key: String,
    /// DSN of the sentry mode (a product's `[products.compat] sentry_dsns`): its project id
    /// and public key are sent, the host is --target's.
    #[arg(
        long,
        default_value = "https://0123456789abcdef0123456789abcdef@bench.invalid/1"
    )]
    pub sentry_dsn: String,
    /// Ingest key sent in X-Telemetry-Key, if the products need one.
    #[arg(long)]
    pub ingest_key: Option<String>,
    /// Append the id of every acknowledged event to this file (one per line; ingest mode).
    #[arg(long)]
    pub record_acks: Option<PathBuf>,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 5)]
    pub progress_every: u64,
}

impl BenchArgs {
    /// Items per request: `--batch-size`, or the mode's default.
    pub fn batch_size(&self) -> usize {
        let default = match self.mode {
            Mode::OtlpTraces | Mode::OtlpMetrics => 100,
            Mode::Aptabase => compat::APTABASE_MAX_EVENTS,
            Mode::Ingest | Mode::Posthog | Mode::Sentry | Mode::Query | Mode::Searchable => 50,
        };
        self.batch_size.unwrap_or(default).max(1)
    }
}

/// What a sending mode puts on the wire and how a successful answer counts what it refused.
/// Everything else (connections, pacing, timing, the tally, the report) is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    /// Flat SDK and native app batches to `/api/v1/events` (JSON; `rejected[].index`).
    Events,
    /// OTLP exports to `/otlp/{product}/v1/...` (`partial_success.rejected_*`).
    Otlp(otlp::Signal, Encoding),
    /// PostHog batches to `/batch/` (`rejected[].index` beside `"status": 1`).
    Posthog,
    /// Aptabase batches to `/api/v0/events` (`rejected[].index`).
    Aptabase,
    /// Sentry envelopes to `/api/{project_id}/envelope/` (`rejected[].index` beside `id`).
    Sentry,
}

/// One request of a sending mode.
struct Request {
    /// Path and query under the target.
    path: String,
    content_type: &'static str,
    /// Headers beside the content type (Aptabase's `App-Key`).
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Events, spans or data points in the body.
    items: usize,
    /// Ids of the events, for --record-acks (empty when they have none).
    ids: Vec<String>,
}

/// What a successful answer refused: how many items, and which when it says so.
#[derive(Debug, Default, PartialEq)]
struct Refused {
    count: u64,
    indexes: Vec<usize>,
}

impl Load {
    /// The sending load of a mode; `None` for the query modes.
    fn of(args: &BenchArgs) -> Option<Load> {
        match args.mode {
            Mode::Ingest => Some(Load::Events),
            Mode::OtlpTraces => Some(Load::Otlp(otlp::Signal::Traces, args.encoding.into())),
            Mode::OtlpMetrics => Some(Load::Otlp(otlp::Signal::Metrics, args.encoding.into())),
            Mode::Posthog => Some(Load::Posthog),
            Mode::Aptabase => Some(Load::Aptabase),
            Mode::Sentry => Some(Load::Sentry),
            Mode::Query | Mode::Searchable => None,
        }
    }

    fn request(self, rng: &mut fastrand::Rng, args: &BenchArgs, shape: &otlp::Shape) -> Request {
        match self {
            Load::Events => events_request(rng, args),
            Load::Otlp(signal, encoding) => Request {
                path: format!("/otlp/{}{}", args.otlp_product, signal.path()),
                content_type: encoding.content_type(),
                headers: Vec::new(),
                body: signal.body(rng, shape, args.batch_size(), encoding),
                items: args.batch_size(),
                ids: Vec::new(),
            },
            Load::Posthog => compat::posthog_request(rng, args),
            Load::Aptabase => compat::aptabase_request(rng, args),
            Load::Sentry => compat::sentry_request(rng, args),
        }
    }

    /// What a 2xx answer refused; an error is a sentence for the report.
    fn refused(self, answer: &[u8]) -> Result<Refused, String> {
        match self {
            Load::Events | Load::Posthog | Load::Aptabase | Load::Sentry => {
                let indexes = serde_json::from_slice::<Value>(answer)
                    .ok()
                    .and_then(|v| v.get("rejected").and_then(Value::as_array).cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|r| r.get("index").and_then(Value::as_u64).map(|i| i as usize))
                    .collect::<Vec<_>>();
                Ok(Refused {
                    count: indexes.len() as u64,
                    indexes,
                })
            }
            Load::Otlp(signal, encoding) => Ok(Refused {
                count: signal.rejected(answer, encoding)?,
                indexes: Vec::new(),
            }),
        }
    }

    /// What the report counts.
    fn unit(self) -> &'static str {
        match self {
            Load::Events | Load::Posthog | Load::Aptabase | Load::Sentry => "events",
            Load::Otlp(otlp::Signal::Traces, _) => "spans",
            Load::Otlp(otlp::Signal::Metrics, _) => "data points",
        }
    }
}

/// A flat SDK batch or a native app batch, as `--flat-share` says.
fn events_request(rng: &mut fastrand::Rng, args: &BenchArgs) -> Request {
    let flat = rng.f64() < args.flat_share;
    let (product, events) = if flat {
        (&args.flat_product, flat_batch(rng, args))
    } else {
        (&args.native_product, native_batch(rng, args))
    };
    // An event without an id (the SDK's flat events) is recorded as an empty string.
    let ids = events
        .iter()
        .map(|e| {
            e.get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let body = if flat {
        serde_json::to_vec(&events)
    } else {
        serde_json::to_vec(&json!({ "sent_at": now_ms(), "events": events }))
    }
    .unwrap_or_default();
    Request {
        path: format!("/api/v1/events?product={product}"),
        content_type: "application/json",
        headers: Vec::new(),
        body,
        items: events.len(),
        ids,
    }
}

#[derive(Default)]
struct Tally {
    requests: u64,
    events_sent: u64,
    events_acked: u64,
    events_rejected: u64,
    latencies_us: Vec<u32>,
    errors: std::collections::BTreeMap<String, u64>,
}

/// The figures of a finished run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub seconds: f64,
    pub requests: u64,
    pub events_acked: u64,
    pub events_rejected: u64,
    pub events_per_second: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub errors: std::collections::BTreeMap<String, u64>,
}

pub fn run(args: BenchArgs) -> std::io::Result<BenchReport> {
    actix_web::rt::System::new().block_on(run_async(args))
}

async fn run_async(args: BenchArgs) -> std::io::Result<BenchReport> {
    let client = awc::Client::builder()
        .connector(awc::Connector::new().limit(args.connections.max(1)))
        .timeout(Duration::from_secs(30))
        .finish();
    let tally = Rc::new(RefCell::new(Tally::default()));
    let acks = match &args.record_acks {
        Some(path) => Some(Rc::new(RefCell::new(std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        )))),
        None => None,
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let load = Load::of(&args);
    let unit = unit(&args);
    // A request is one item in the query modes.
    let per_request = if load.is_some() { args.batch_size() } else { 1 };
    let per_connection_interval = args.rate.map(|rate| {
        Duration::from_secs_f64(per_request as f64 * args.connections as f64 / rate.max(1) as f64)
    });
    let shape = otlp::Shape {
        error_percent: args.error_percent,
        installs: args.installs,
        // Cumulative metric series start an hour before the run.
        series_start_ns: otlp::now_ns().saturating_sub(3_600_000_000_000),
    };
    let what = match load {
        Some(Load::Otlp(signal, encoding)) => format!(
            "{:?} to {}/otlp/{}{}, ",
            encoding,
            args.target.trim_end_matches('/'),
            args.otlp_product,
            signal.path()
        ),
        _ => String::new(),
    };
    eprintln!(
        "bench: {what}{} connections, {per_request} {unit} per request, {}{}",
        args.connections,
        match args.events {
            Some(n) => format!("{n} {unit}"),
            None => format!("{} s", args.duration),
        },
        args.rate
            .map(|r| format!(", offered {r} {unit}/s"))
            .unwrap_or_default()
    );
    let mut tasks = Vec::new();
    for worker in 0..args.connections {
        let ctx = Worker {
            client: client.clone(),
            args: args.clone(),
            tally: tally.clone(),
            acks: acks.clone(),
            deadline,
            interval: per_connection_interval,
            rng: fastrand::Rng::with_seed(worker as u64 ^ started.elapsed().as_nanos() as u64),
            load,
            shape,
        };
        tasks.push(actix_web::rt::spawn(ctx.run()));
    }
    let progress = actix_web::rt::spawn(report_progress(
        tally.clone(),
        started,
        args.progress_every,
        unit,
    ));
    for task in tasks {
        let _ = task.await;
    }
    progress.abort();
    if let Some(acks) = &acks {
        acks.borrow_mut().flush()?;
    }
    let tally = tally.borrow();
    let report = summarize(&tally, started.elapsed());
    print_report(&report, &args);
    Ok(report)
}

struct Worker {
    client: awc::Client,
    args: BenchArgs,
    tally: Rc<RefCell<Tally>>,
    acks: Option<Rc<RefCell<std::io::BufWriter<std::fs::File>>>>,
    deadline: Instant,
    interval: Option<Duration>,
    rng: fastrand::Rng,
    /// What the sending modes send (`None` in the query modes).
    load: Option<Load>,
    shape: otlp::Shape,
}

impl Worker {
    async fn run(mut self) {
        let mut next_send = Instant::now();
        loop {
            let sent = self.tally.borrow().events_sent;
            let done = match self.args.events {
                Some(limit) => sent >= limit,
                None => Instant::now() >= self.deadline,
            };
            if done {
                return;
            }
            if let Some(interval) = self.interval {
                let now = Instant::now();
                if next_send > now {
                    actix_web::rt::time::sleep(next_send - now).await;
                }
                next_send += interval;
            }
            match (self.load, self.args.mode) {
                (Some(load), _) => {
                    self.tally.borrow_mut().events_sent += self.args.batch_size() as u64;
                    self.send_one(load).await;
                }
                (None, Mode::Query) => {
                    self.tally.borrow_mut().events_sent += 1;
                    self.query_one().await;
                }
                (None, _) => {
                    self.tally.borrow_mut().events_sent += 1;
                    self.searchable_one().await;
                }
            }
        }
    }

    /// Sends one request of the load and counts its answer: a 2xx acknowledges the request's
    /// items but those the answer says it refused; any other status is an error.
    async fn send_one(&mut self, load: Load) {
        let request = load.request(&mut self.rng, &self.args, &self.shape);
        let url = format!("{}{}", self.args.target.trim_end_matches('/'), request.path);
        let mut http = self
            .client
            .post(url)
            .insert_header(("content-type", request.content_type));
        if let Some(key) = &self.args.ingest_key {
            http = http.insert_header(("x-telemetry-key", key.as_str()));
        }
        for (name, value) in &request.headers {
            http = http.insert_header((*name, value.as_str()));
        }
        let started = Instant::now();
        let response = http.send_body(request.body).await;
        let elapsed = started.elapsed();
        let mut response = match response {
            Ok(r) => r,
            Err(e) => {
                self.note_error(format!("connection: {e}"));
                actix_web::rt::time::sleep(Duration::from_millis(50)).await;
                return;
            }
        };
        let status = response.status();
        // Read the answer to the end, or its connection never returns to the pool.
        let body = response.body().limit(4 << 20).await.unwrap_or_default();
        if !status.is_success() {
            self.note_error(format!("HTTP {}", status.as_u16()));
            if status.as_u16() == 503 || status.as_u16() == 429 {
                actix_web::rt::time::sleep(Duration::from_millis(100)).await;
            }
            return;
        }
        let refused = load.refused(&body).unwrap_or_else(|e| {
            // A 2xx whose answer does not decode: the items count as acknowledged.
            self.note_error(format!(
                "HTTP {} with an unreadable answer: {e}",
                status.as_u16()
            ));
            Refused::default()
        });
        let sent = request.items as u64;
        {
            let mut tally = self.tally.borrow_mut();
            tally.requests += 1;
            tally.events_acked += sent - refused.count.min(sent);
            tally.events_rejected += refused.count.min(sent);
            tally
                .latencies_us
                .push(elapsed.as_micros().min(u32::MAX as u128) as u32);
        }
        if let Some(acks) = &self.acks {
            let mut out = acks.borrow_mut();
            for (i, id) in request.ids.iter().enumerate() {
                if !id.is_empty() && !refused.indexes.contains(&i) {
                    let _ = writeln!(out, "{id}");
                }
            }
            let _ = out.flush();
        }
    }

    /// One realistic explorer search: a word, two filters and the last 7 days.
    async fn query_one(&mut self) {
        let word = pick(
            &mut self.rng,
            &[
                "timeout",
                "recognizer",
                "completed",
                "dictation",
                "shown",
                "error",
            ],
        );
        let platform = pick(&mut self.rng, &["ios", "android", "python", "web"]);
        let level = pick(&mut self.rng, &["info", "error", "warn"]);
        let path =
            format!("/api/v1/events?q={word}&platform={platform}&level={level}&from=-7d&limit=50");
        let started = Instant::now();
        match self.get_json(&path).await {
            Some(_) => self.record(1, started.elapsed()),
            None => actix_web::rt::time::sleep(Duration::from_millis(50)).await,
        }
    }

    /// Sends one event, then searches for it until it is found: ack → searchable.
    async fn searchable_one(&mut self) {
        let marker = format!("probe-{:032x}", self.rng.u128(..));
        let body =
            json!([{"name": "app_opened", "installId": marker, "platform": "ios"}]).to_string();
        let url = format!(
            "{}/api/v1/events?product={}",
            self.args.target.trim_end_matches('/'),
            self.args.native_product
        );
        let sent = self
            .client
            .post(url)
            .insert_header(("content-type", "application/json"))
            .send_body(body)
            .await;
        // Read the answer to the end, or its connection never returns to the pool.
        let acknowledged = match sent {
            Ok(mut response) => response.status().is_success() && response.body().await.is_ok(),
            Err(_) => false,
        };
        if !acknowledged {
            self.note_error("probe not acknowledged".into());
            return;
        }
        let acked = Instant::now();
        let path = format!("/api/v1/events?install_id={marker}&limit=1");
        while acked.elapsed() < Duration::from_secs(30) {
            let found = self
                .get_json(&path)
                .await
                .and_then(|v| v.get("total").and_then(Value::as_u64));
            if found == Some(1) {
                self.record(1, acked.elapsed());
                return;
            }
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        self.note_error("probe not searchable within 30 s".into());
    }

    async fn get_json(&mut self, path: &str) -> Option<Value> {
        let url = format!("{}{path}", self.args.target.trim_end_matches('/'));
        let token = format!("Bearer {}", self.args.token.as_deref().unwrap_or_default());
        let mut response = match self
            .client
            .get(url)
            .insert_header(("authorization", token))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.note_error(format!("connection: {e}"));
                return None;
            }
        };
        if !response.status().is_success() {
            self.note_error(format!("HTTP {}", response.status().as_u16()));
            return None;
        }
        let body = response.body().limit(16 << 20).await.ok()?;
        serde_json::from_slice(&body).ok()
    }

    fn record(&self, done: u64, elapsed: Duration) {
        let mut tally = self.tally.borrow_mut();
        tally.requests += 1;
        tally.events_acked += done;
        tally
            .latencies_us
            .push(elapsed.as_micros().min(u32::MAX as u128) as u32);
    }

    fn note_error(&self, kind: String) {
        *self.tally.borrow_mut().errors.entry(kind).or_default() += 1;
    }
}

async fn report_progress(tally: Rc<RefCell<Tally>>, started: Instant, every: u64, unit: &str) {
    let mut last_acked = 0;
    let every = every.max(1);
    loop {
        actix_web::rt::time::sleep(Duration::from_secs(every)).await;
        let tally = tally.borrow();
        let rate = (tally.events_acked - last_acked) as f64 / every as f64;
        last_acked = tally.events_acked;
        let errors: u64 = tally.errors.values().sum();
        eprintln!(
            "bench: {:>4.0} s  acked {:>10}  {:>9.0} {unit}/s  errors {}",
            started.elapsed().as_secs_f64(),
            tally.events_acked,
            rate,
            errors
        );
    }
}

fn summarize(tally: &Tally, elapsed: Duration) -> BenchReport {
    let mut latencies = tally.latencies_us.clone();
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * (latencies.len() - 1) as f64).round() as usize;
        latencies[rank.min(latencies.len() - 1)] as f64 / 1000.0
    };
    let seconds = elapsed.as_secs_f64();
    BenchReport {
        seconds,
        requests: tally.requests,
        events_acked: tally.events_acked,
        events_rejected: tally.events_rejected,
        events_per_second: tally.events_acked as f64 / seconds.max(1e-9),
        p50_ms: pct(50.0),
        p95_ms: pct(95.0),
        p99_ms: pct(99.0),
        errors: tally.errors.clone(),
    }
}

/// What a mode counts: events, spans, data points, queries or probes.
fn unit(args: &BenchArgs) -> &'static str {
    match (Load::of(args), args.mode) {
        (Some(load), _) => load.unit(),
        (None, Mode::Query) => "queries",
        (None, _) => "probes",
    }
}

fn print_report(r: &BenchReport, args: &BenchArgs) {
    let unit = unit(args);
    let latency = match args.mode {
        Mode::Ingest
        | Mode::OtlpTraces
        | Mode::OtlpMetrics
        | Mode::Posthog
        | Mode::Aptabase
        | Mode::Sentry => "ack latency",
        Mode::Query => "query latency",
        Mode::Searchable => "ack → searchable",
    };
    println!(
        "bench: {:.1} s, {} requests, {} {unit} done ({} rejected)",
        r.seconds, r.requests, r.events_acked, r.events_rejected
    );
    println!("bench: throughput {:.0} {unit}/s", r.events_per_second);
    println!(
        "bench: {latency} p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms",
        r.p50_ms, r.p95_ms, r.p99_ms
    );
    if r.errors.is_empty() {
        println!("bench: no errors");
    }
    for (kind, count) in &r.errors {
        println!("bench: error {kind}: {count}");
    }
}

fn now_ms() -> i64 {
    crate::model::now_ms()
}

fn pick<'a>(rng: &mut fastrand::Rng, items: &[&'a str]) -> &'a str {
    items[rng.usize(..items.len())]
}

fn install_id(rng: &mut fastrand::Rng, installs: u32) -> String {
    format!(
        "{:032x}",
        0x5eed_0000_0000_0000_u128 + rng.u32(..installs.max(1)) as u128
    )
}

/// A batch as the voice-AI SDK's Python client sends it (see shared/testdata/flat-sdk-batch.json).
fn flat_batch(rng: &mut fastrand::Rng, args: &BenchArgs) -> Vec<Value> {
    let install = install_id(rng, args.installs);
    let run_id = format!("{:032x}", rng.u128(..));
    let version = pick(rng, &["0.6.2", "0.7.0", "0.7.1", "0.8.0-beta.1"]);
    let os = pick(rng, &["linux", "darwin", "windows"]);
    (0..args.batch_size())
        .map(|_| {
            let mut event = json!({
                "schema_version": 8, "run_id": run_id, "install_id": install,
                "sdk": "python", "sdk_version": version, "os": os, "arch": "x86_64",
                "runtime": "cpython", "runtime_version": "3.11", "ci": false,
            });
            let extra = if rng.f64() * 100.0 < args.error_percent {
                json!({"event": "call_completed", "outcome": "error",
                       "error_code": pick(rng, &["timeout", "connection", "auth", "provider_error"]),
                       "error_layer": pick(rng, &["stt", "llm", "tts"]), "latency_ms": rng.u32(200..5000)})
            } else {
                match rng.u8(..4) {
                    0 => json!({"event": "sdk_initialized", "carrier": pick(rng, &["twilio", "telnyx", "none"]),
                                "tunnel": "none", "container": rng.bool(), "cloud": pick(rng, &["aws", "gcp", "none"])}),
                    1 => json!({"event": "call_started", "direction": pick(rng, &["inbound", "outbound"]),
                                "engine": pick(rng, &["realtime", "pipeline"]), "provider": pick(rng, &["openai", "deepgram", "elevenlabs"])}),
                    2 => json!({"event": "call_completed", "outcome": "completed", "latency_ms": rng.u32(100..2000),
                                "duration_seconds": rng.f64() * 300.0, "cost_usd": rng.f64() / 10.0,
                                "turn_count_bucket": pick(rng, &["1", "2_3", "4_6"])}),
                    _ => json!({"event": "feature_used", "engine": "pipeline", "provider": "openai",
                                "stt_model": "deepgram-nova-3", "llm_model": "gpt-4o-mini"}),
                }
            };
            merge(&mut event, extra);
            // The SDK sends no event id; recording acknowledgements needs one to look for.
            if args.record_acks.is_some() {
                merge(&mut event, json!({ "id": uuid::Uuid::new_v4().to_string() }));
            }
            event
        })
        .collect()
}

/// A batch from the dictation app's native clients (they send random UUIDv4 ids).
fn native_batch(rng: &mut fastrand::Rng, args: &BenchArgs) -> Vec<Value> {
    let install = install_id(rng, args.installs);
    let platform = pick(rng, &["ios", "android", "desktop", "web"]);
    let version = pick(rng, &["3.2.0", "3.3.0", "3.3.1", "3.4.0-beta.2"]);
    let session = uuid::Uuid::new_v4().to_string();
    (0..args.batch_size())
        .map(|_| {
            let base = json!({
                "id": uuid::Uuid::new_v4().to_string(),
                "timestamp": now_ms() - rng.i64(0..5000),
                "platform": platform, "appVersion": version, "installId": install, "sessionId": session,
                "releaseChannel": "stable", "osFamily": platform, "channel": pick(rng, &["keyboard", "app"]),
            });
            let mut event = base;
            let extra = if rng.f64() * 100.0 < args.error_percent {
                json!({"eventName": "recognition_failed", "level": "error", "module": "dictation",
                       "error": {"domain": "speech", "code": pick(rng, &["network_timeout", "audio_session", "model_load"]),
                                 "message": format!("Timeout after {} ms contacting recognizer", rng.u32(1000..9000))}})
            } else {
                json!({"eventName": pick(rng, &["app_opened", "dictation_started", "dictation_completed", "keyboard_shown", "settings_changed"]),
                       "module": pick(rng, &["dictation", "keyboard", "settings"]),
                       "dims": {"language": pick(rng, &["en", "de", "fr", "es"]), "input_mode": pick(rng, &["voice", "typing"])},
                       "metrics": {"latency_ms": rng.u32(50..1500), "words": rng.u32(1..200)}})
            };
            merge(&mut event, extra);
            event
        })
        .collect()
}

fn merge(target: &mut Value, extra: Value) {
    if let (Value::Object(t), Value::Object(e)) = (target, extra) {
        t.extend(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn args(extra: &[&str]) -> BenchArgs {
        let mut argv = vec!["bench", "--target", "http://127.0.0.1:9/"];
        argv.extend_from_slice(extra);
        Cli::parse_from(argv).args
    }

    fn shape() -> otlp::Shape {
        otlp::Shape {
            error_percent: 3.0,
            installs: 100,
            series_start_ns: 0,
        }
    }

    #[test]
    fn batch_size_defaults_per_mode() {
        assert_eq!(args(&[]).batch_size(), 50);
        assert_eq!(args(&["--mode", "otlp-traces"]).batch_size(), 100);
        assert_eq!(args(&["--mode", "otlp-metrics"]).batch_size(), 100);
        assert_eq!(
            args(&["--mode", "otlp-traces", "--batch-size", "7"]).batch_size(),
            7
        );
        assert_eq!(args(&["--batch-size", "500"]).batch_size(), 500);
    }

    #[test]
    fn otlp_requests_go_to_the_product_in_their_encoding() {
        let mut rng = fastrand::Rng::with_seed(1);
        let traces = args(&["--mode", "otlp-traces", "--otlp-product", "atlas"]);
        let load = Load::of(&traces).unwrap();
        let request = load.request(&mut rng, &traces, &shape());
        assert_eq!(request.path, "/otlp/atlas/v1/traces");
        assert_eq!(request.content_type, "application/x-protobuf");
        assert_eq!(request.items, 100);
        let metrics = args(&[
            "--mode",
            "otlp-metrics",
            "--encoding",
            "json",
            "--batch-size",
            "30",
        ]);
        let load = Load::of(&metrics).unwrap();
        let request = load.request(&mut rng, &metrics, &shape());
        assert_eq!(request.path, "/otlp/voice-sdk/v1/metrics");
        assert_eq!(request.content_type, "application/json");
        assert_eq!(request.items, 30);
        assert!(
            serde_json::from_slice::<Value>(&request.body).unwrap()["resourceMetrics"].is_array()
        );
        assert_eq!(load.unit(), "data points");
        assert_eq!(Load::of(&args(&["--mode", "query"])), None);
    }

    /// The PostHog, Aptabase and Sentry modes send what those formats read: every event decodes.
    #[test]
    fn compat_requests_are_what_their_formats_read() {
        use crate::ingest::formats::{
            Body, DecodeLimits, Format, Params, ProductRequest, APTABASE, POSTHOG, SENTRY_ENVELOPE,
        };
        let config = crate::config::Config::from_toml(
            "[[products]]\nid = \"app\"\n[products.compat]\nposthog_tokens = [\"phc_bench\"]\naptabase_app_keys = [\"A-SH-BENCH\"]\nsentry_dsns = [\"https://0123456789abcdef0123456789abcdef@x.example/1\"]\n",
        )
        .unwrap();
        let products = crate::products::Products::compile(&config).unwrap();
        let limits = DecodeLimits {
            max_batch_events: 1000,
            max_event_bytes: 64 * 1024,
            max_decompressed_bytes: 1 << 20,
        };
        let mut rng = fastrand::Rng::with_seed(3);
        let cases: [(&[&str], &dyn Format, usize); 3] = [
            (
                &["--mode", "posthog", "--error-percent", "50"],
                &POSTHOG,
                50,
            ),
            (&["--mode", "aptabase", "--batch-size", "40"], &APTABASE, 25),
            (
                &["--mode", "sentry", "--error-percent", "50"],
                &SENTRY_ENVELOPE,
                50,
            ),
        ];
        for (argv, format, expected) in cases {
            let args = args(argv);
            let request = Load::of(&args).unwrap().request(&mut rng, &args, &shape());
            assert_eq!(request.items, expected, "{argv:?}");
            let project = request.path.split('/').nth(2).unwrap_or_default();
            let params = Params {
                path: vec![("project_id".into(), project.into())],
                query: Vec::new(),
                headers: request.headers.clone(),
            };
            let body = Body {
                bytes: &request.body,
                content_type: Some(request.content_type),
                params: &params,
            };
            let batch = format
                .decode(body, &products, &ProductRequest::default(), &limits)
                .unwrap();
            assert_eq!(batch.items.len(), expected, "{argv:?}");
            assert!(batch.items.iter().all(Result::is_ok), "{argv:?}");
        }
    }

    #[test]
    fn answers_count_what_they_refused() {
        let events = Load::Events;
        assert_eq!(
            events.refused(br#"{"accepted":1,"rejected":[{"index":2},{"index":0}]}"#),
            Ok(Refused {
                count: 2,
                indexes: vec![2, 0]
            })
        );
        let traces = Load::Otlp(otlp::Signal::Traces, Encoding::Json);
        assert_eq!(traces.refused(b"{}").map(|r| r.count), Ok(0));
        assert_eq!(
            traces
                .refused(
                    br#"{"partialSuccess":{"rejectedSpans":4,"errorMessage":"4 rate_limited"}}"#
                )
                .map(|r| r.count),
            Ok(4)
        );
        let protobuf = Load::Otlp(otlp::Signal::Traces, Encoding::Protobuf);
        assert_eq!(protobuf.refused(b"").map(|r| r.count), Ok(0));
        assert!(protobuf.refused(b"\xff\xff").is_err());
    }
}
