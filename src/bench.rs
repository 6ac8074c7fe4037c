//! `telemetryd bench`: a load generator for a running server. `--mode ingest` (the default)
//! sends realistic traffic — flat SDK batches shaped like the voice-AI SDK's and native app
//! batches, a few percent errors — and reports events/s and ack latency percentiles;
//! `--mode query` runs realistic searches (free text + two filters + a 7-day range) and reports
//! their latency; `--mode searchable` sends single events and measures ack → searchable.

use std::cell::RefCell;
use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Send events.
    Ingest,
    /// Run searches (needs --token).
    Query,
    /// Send one event at a time and time until search finds it (needs --token).
    Searchable,
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
    /// Events per request.
    #[arg(long, default_value_t = 50)]
    pub batch_size: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// How long to send, in seconds (ignored when --events is given).
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Stop after this many events instead of after --duration.
    #[arg(long)]
    pub events: Option<u64>,
    /// Offered load in events per second across all connections (default: as fast as acked).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Percentage of events that are errors.
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
    /// Ingest key sent in X-Telemetry-Key, if the products need one.
    #[arg(long)]
    pub ingest_key: Option<String>,
    /// Append the id of every acknowledged event to this file (one per line).
    #[arg(long)]
    pub record_acks: Option<PathBuf>,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 5)]
    pub progress_every: u64,
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
    let per_connection_interval = args.rate.map(|rate| {
        Duration::from_secs_f64(
            args.batch_size as f64 * args.connections as f64 / rate.max(1) as f64,
        )
    });
    eprintln!(
        "bench: {} connections, batches of {}, {}{}",
        args.connections,
        args.batch_size,
        match args.events {
            Some(n) => format!("{n} events"),
            None => format!("{} s", args.duration),
        },
        args.rate
            .map(|r| format!(", offered {r} events/s"))
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
        };
        tasks.push(actix_web::rt::spawn(ctx.run()));
    }
    let progress =
        actix_web::rt::spawn(report_progress(tally.clone(), started, args.progress_every));
    for task in tasks {
        let _ = task.await;
    }
    progress.abort();
    if let Some(acks) = &acks {
        acks.borrow_mut().flush()?;
    }
    let tally = tally.borrow();
    let report = summarize(&tally, started.elapsed());
    print_report(&report, args.mode);
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
            match self.args.mode {
                Mode::Ingest => {
                    self.tally.borrow_mut().events_sent += self.args.batch_size as u64;
                    self.send_one().await;
                }
                Mode::Query => {
                    self.tally.borrow_mut().events_sent += 1;
                    self.query_one().await;
                }
                Mode::Searchable => {
                    self.tally.borrow_mut().events_sent += 1;
                    self.searchable_one().await;
                }
            }
        }
    }

    async fn send_one(&mut self) {
        let flat = self.rng.f64() < self.args.flat_share;
        let (product, events) = if flat {
            (
                self.args.flat_product.clone(),
                flat_batch(&mut self.rng, &self.args),
            )
        } else {
            (
                self.args.native_product.clone(),
                native_batch(&mut self.rng, &self.args),
            )
        };
        let sent = events.len();
        // An event without an id (the SDK's flat events) is recorded as an empty string.
        let ids: Vec<String> = events
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
        let url = format!(
            "{}/api/v1/events?product={product}",
            self.args.target.trim_end_matches('/')
        );
        let mut request = self
            .client
            .post(url)
            .insert_header(("content-type", "application/json"));
        if let Some(key) = &self.args.ingest_key {
            request = request.insert_header(("x-telemetry-key", key.as_str()));
        }
        let started = Instant::now();
        let response = request.send_body(body).await;
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
        let body = response.body().limit(4 << 20).await.unwrap_or_default();
        if !status.is_success() {
            self.note_error(format!("HTTP {}", status.as_u16()));
            if status.as_u16() == 503 || status.as_u16() == 429 {
                actix_web::rt::time::sleep(Duration::from_millis(100)).await;
            }
            return;
        }
        let rejected: Vec<usize> = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("rejected").and_then(Value::as_array).cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r.get("index").and_then(Value::as_u64).map(|i| i as usize))
            .collect();
        {
            let mut tally = self.tally.borrow_mut();
            tally.requests += 1;
            tally.events_acked += (sent - rejected.len().min(sent)) as u64;
            tally.events_rejected += rejected.len() as u64;
            tally
                .latencies_us
                .push(elapsed.as_micros().min(u32::MAX as u128) as u32);
        }
        if let Some(acks) = &self.acks {
            let mut out = acks.borrow_mut();
            for (i, id) in ids.iter().enumerate() {
                if !id.is_empty() && !rejected.contains(&i) {
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

async fn report_progress(tally: Rc<RefCell<Tally>>, started: Instant, every: u64) {
    let mut last_acked = 0;
    let every = every.max(1);
    loop {
        actix_web::rt::time::sleep(Duration::from_secs(every)).await;
        let tally = tally.borrow();
        let rate = (tally.events_acked - last_acked) as f64 / every as f64;
        last_acked = tally.events_acked;
        let errors: u64 = tally.errors.values().sum();
        eprintln!(
            "bench: {:>4.0} s  acked {:>10}  {:>9.0} events/s  errors {}",
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

fn print_report(r: &BenchReport, mode: Mode) {
    let (unit, latency) = match mode {
        Mode::Ingest => ("events", "ack latency"),
        Mode::Query => ("queries", "query latency"),
        Mode::Searchable => ("probes", "ack → searchable"),
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
    (0..args.batch_size)
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
    (0..args.batch_size)
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
