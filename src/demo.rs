//! `telemetryd demo`: fills a data dir with a realistic week of traffic from the two example
//! products — the voice SDK's activation funnel and the dictation app's usage on four
//! platforms — with error clusters (one resolved and then regressed, one escalating now),
//! installs in several countries, two collection policies, and the voice SDK's OpenTelemetry
//! metrics (a counter, a histogram and a gauge, from client runs that restart), so a first run
//! shows a living UI.

use std::sync::Arc;

use crate::clusters::{StatusKind, StatusRequest};
use crate::config::Config;
use crate::model::{now_ms, DimValue, ErrorInfo, Event, Level, Source};
use crate::policies::{Policy, Settings, Targeting};
use crate::store::audit::{self, AuditEntry};
use crate::timespan::{hour_start, DAY_MS, HOUR_MS, MINUTE_MS};
use crate::AppState;

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Config file whose data dir is filled (the server must not be running).
    #[arg(long, short)]
    pub config: std::path::PathBuf,
    /// About how many events to make.
    #[arg(long, default_value_t = 60_000)]
    pub events: u64,
}

/// (country, region) pairs the demo's installs come from, most common first.
const PLACES: [(&str, Option<&str>); 10] = [
    ("US", Some("US-CA")),
    ("US", Some("US-NY")),
    ("GB", Some("GB-ENG")),
    ("DE", Some("DE-BE")),
    ("IN", Some("IN-MH")),
    ("BR", Some("BR-SP")),
    ("JP", Some("JP-13")),
    ("FR", Some("FR-IDF")),
    ("AU", Some("AU-NSW")),
    ("CA", Some("CA-ON")),
];

struct Install {
    product: &'static str,
    id: String,
    platform: &'static str,
    version: &'static str,
    country_code: &'static str,
    region_code: Option<&'static str>,
    release_channel: &'static str,
}

/// What goes wrong: the event name, its level and the error's domain and code.
#[derive(Clone, Copy)]
struct Problem {
    name: &'static str,
    level: Level,
    domain: &'static str,
    code: &'static str,
}

const fn problem(
    name: &'static str,
    level: Level,
    domain: &'static str,
    code: &'static str,
) -> Problem {
    Problem {
        name,
        level,
        domain,
        code,
    }
}

struct Maker {
    rng: fastrand::Rng,
    received_at: i64,
}

impl Maker {
    fn event(&mut self, install: &Install, name: &str, timestamp: i64) -> Event {
        Event {
            timestamp,
            received_at: self.received_at,
            platform: Some(install.platform.into()),
            app_version: Some(install.version.into()),
            release_channel: Some(install.release_channel.into()),
            os_family: Some(match install.platform {
                "python" | "node" => "linux".into(),
                other => other.into(),
            }),
            install_id: Some(install.id.clone()),
            country_code: Some(install.country_code.into()),
            region_code: install.region_code.map(str::to_string),
            source: if install.product == "voice-sdk" {
                Source::FLAT
            } else {
                Source::NATIVE
            },
            ..Event::new(install.product, name)
        }
    }

    fn error(
        &mut self,
        install: &Install,
        problem: Problem,
        message: String,
        timestamp: i64,
    ) -> Event {
        let Problem {
            name,
            level,
            domain,
            code,
        } = problem;
        let mut event = self.event(install, name, timestamp);
        event.level = level;
        event.module = Some("dictation".into());
        event.error = Some(ErrorInfo {
            domain: Some(domain.into()),
            code: Some(code.into()),
            message: Some(message),
            stack: Some(format!(
                "at {domain}.{code}()\n  at Recognizer.start (Recognizer.swift:{})",
                40 + self.rng.u32(..60)
            )),
        });
        event.fingerprint = crate::clusters::fingerprint(&event);
        event
    }
}

/// Installs for a store of `events`: at least 400, and about 250 events (some 35 a day) each,
/// as real installs send, so a large store is not a few hundred impossibly busy installs.
fn install_count(events: u64) -> usize {
    (events / 250).max(400) as usize
}

fn installs(rng: &mut fastrand::Rng, count: usize) -> Vec<Install> {
    let mut out = Vec::new();
    for i in 0..count {
        let (country_code, region_code) =
            PLACES[(rng.f64().powi(2) * PLACES.len() as f64) as usize];
        let sdk = i % 3 == 0;
        out.push(Install {
            product: if sdk { "voice-sdk" } else { "dictation-app" },
            id: format!("{:032x}", rng.u128(..)),
            platform: if sdk {
                ["python", "python", "node"][rng.usize(..3)]
            } else {
                ["ios", "ios", "android", "android", "desktop", "web"][rng.usize(..6)]
            },
            version: if sdk {
                ["0.6.2", "0.7.0", "0.7.0", "0.7.1"][rng.usize(..4)]
            } else {
                ["3.2.0", "3.3.0", "3.3.1", "3.3.1"][rng.usize(..4)]
            },
            country_code,
            region_code,
            release_channel: if rng.u8(..10) == 0 { "beta" } else { "stable" },
        });
    }
    out
}

/// One install's activity at one moment: a short session of events.
fn session(maker: &mut Maker, install: &Install, at: i64, out: &mut Vec<Event>) {
    if install.product == "voice-sdk" {
        let run = format!("{:032x}", maker.rng.u128(..));
        for (i, (name, keep)) in [
            ("sdk_initialized", 1.0),
            ("call_started", 0.8),
            ("call_completed", 0.7),
            ("feature_used", 0.5),
        ]
        .iter()
        .enumerate()
        {
            if maker.rng.f64() > *keep {
                break;
            }
            let mut event = maker.event(install, name, at + i as i64 * 30_000);
            event.session_id = Some(run.clone());
            event.dims.insert(
                "provider".into(),
                DimValue::Str(["openai", "deepgram", "elevenlabs"][maker.rng.usize(..3)].into()),
            );
            if *name == "call_completed" {
                event
                    .metrics
                    .insert("latency_ms".into(), 300.0 + maker.rng.f64() * 900.0);
                event
                    .metrics
                    .insert("duration_seconds".into(), 20.0 + maker.rng.f64() * 300.0);
                event
                    .dims
                    .insert("outcome".into(), DimValue::Str("completed".into()));
            }
            out.push(event);
        }
        return;
    }
    let channel = if maker.rng.bool() { "keyboard" } else { "app" };
    for (i, name) in [
        "app_opened",
        "keyboard_shown",
        "dictation_started",
        "dictation_completed",
    ]
    .iter()
    .enumerate()
    {
        let mut event = maker.event(install, name, at + i as i64 * 20_000);
        event.channel = Some(channel.into());
        event.module = Some(if i == 1 { "keyboard" } else { "dictation" }.into());
        event.dims.insert(
            "language".into(),
            DimValue::Str(["en", "en", "de", "fr", "es", "ja"][maker.rng.usize(..6)].into()),
        );
        if *name == "dictation_completed" {
            event
                .metrics
                .insert("latency_ms".into(), 150.0 + maker.rng.f64() * 600.0);
            event
                .metrics
                .insert("words".into(), (5 + maker.rng.u32(..80)) as f64);
        }
        out.push(event);
    }
}

/// Writes events through the store writer (the index follows), in batches, all queued before
/// waiting so the writer commits many of them together.
fn write(state: &AppState, events: Vec<Event>) -> Result<u64, String> {
    let mut receivers = Vec::new();
    for chunk in events.chunks(500) {
        let batch: Vec<Arc<Event>> = chunk.iter().cloned().map(Arc::new).collect();
        let receiver = loop {
            match state.writer.submit(batch.clone()) {
                Ok(r) => break r,
                Err(crate::store::writer::SubmitError::Full) => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => return Err(format!("store writer: {e:?}")),
            }
        };
        receivers.push(receiver);
    }
    let mut stored = 0;
    for receiver in receivers {
        let result = receiver
            .blocking_recv()
            .map_err(|_| "the store writer stopped".to_string())?;
        stored += result
            .map_err(|e| e.to_string())?
            .iter()
            .filter(|s| **s)
            .count() as u64;
    }
    Ok(stored)
}

pub fn run(args: &DemoArgs) -> Result<(), String> {
    let mut config = Config::load(&args.config).map_err(|e| e.to_string())?;
    // The demo fills the store and serves nothing: no metrics listener to bind.
    config.metrics.listen = None;
    let known: Vec<&str> = config.products.iter().map(|p| p.id.as_str()).collect();
    for needed in ["voice-sdk", "dictation-app"] {
        if !known.contains(&needed) {
            return Err(format!(
                "the demo needs the shipped products `voice-sdk` and `dictation-app` in {}",
                args.config.display()
            ));
        }
    }
    let state = AppState::open(config)
        .map_err(|e| format!("{e} (is a server running on this data dir?)"))?;
    let now = now_ms();
    let mut maker = Maker {
        rng: fastrand::Rng::with_seed(42),
        received_at: now,
    };
    let installs = installs(&mut maker.rng, install_count(args.events));
    let sessions = (args.events / 4).max(100);
    let week_start = now - 7 * DAY_MS;
    // The week's traffic, written as it is made (so a large demo store stays within memory);
    // the keyboard crash happens only in the first five days, before its fix in 3.3.1.
    let mut pending = Vec::new();
    let mut stored = 0;
    for s in 0..sessions {
        if pending.len() >= 50_000 {
            let before = stored;
            stored += write(&state, std::mem::take(&mut pending))?;
            if stored / 500_000 > before / 500_000 {
                println!("demo: {stored} events written (of about {})", args.events);
            }
        }
        let install = &installs[maker.rng.usize(..installs.len())];
        // Busier in the daytime (UTC), growing over the week.
        let day = (s * 7 / sessions) as i64;
        let hour = [8, 10, 12, 14, 16, 18, 20, 22, 2][maker.rng.usize(..9)];
        let at = (week_start + day * DAY_MS + hour * HOUR_MS + maker.rng.i64(0..HOUR_MS))
            .min(now - MINUTE_MS);
        let target = &mut pending;
        session(&mut maker, install, at, target);
        if install.product == "dictation-app" && maker.rng.u8(..12) == 0 {
            let code_message = [
                (
                    "network_timeout",
                    format!(
                        "Timeout after {} ms contacting 10.0.0.{}",
                        1000 + maker.rng.u32(..8000),
                        maker.rng.u8(..250)
                    ),
                ),
                (
                    "audio_session",
                    "Audio session interrupted by phone call".to_string(),
                ),
                (
                    "model_load",
                    format!(
                        "Failed to load model en-US-{} (0x{:x})",
                        maker.rng.u8(..9),
                        maker.rng.u32(..)
                    ),
                ),
            ][maker.rng.usize(..3)]
            .clone();
            target.push(maker.error(
                install,
                problem("recognition_failed", Level::Error, "speech", code_message.0),
                code_message.1,
                at + 5_000,
            ));
        }
        // The keyboard crash, fixed in 3.3.1: before the fix from 3.3.0 and older.
        if install.platform == "ios" && day < 5 && maker.rng.u8(..15) == 0 {
            target.push(maker.error(
                install,
                problem("app_crashed", Level::Fatal, "keyboard", "layout_overflow"),
                "Index 12 out of range for layout with 11 keys".into(),
                at + 8_000,
            ));
        }
        if install.product == "voice-sdk" && maker.rng.u8(..20) == 0 {
            let mut event = maker.event(install, "config_incomplete", at);
            event.level = Level::Warn;
            event
                .dims
                .insert("missing".into(), DimValue::Str("llm_key".into()));
            event.fingerprint = crate::clusters::fingerprint(&event);
            target.push(event);
        }
    }
    stored += write(&state, std::mem::take(&mut pending))?;
    let mut late = Vec::new();
    state.clusters.pass().map_err(|e| e.to_string())?;
    // The crash is resolved in 3.3.1 …
    let crash = state
        .clusters
        .list(&Default::default())
        .0
        .into_iter()
        .find(|c| c.name == "app_crashed")
        .map(|c| c.id);
    if let Some(id) = &crash {
        let mut resolve = StatusRequest::new(StatusKind::Resolved);
        resolve.in_version = Some("3.3.1".into());
        state
            .clusters
            .set_status(id, resolve, "demo")
            .map_err(|e| e.to_string())?;
    }
    // Events arriving from here on come after the resolution.
    maker.received_at = now_ms();
    // … and comes back in 3.4.0-beta.1.
    let beta = Install {
        product: "dictation-app",
        id: format!("{:032x}", maker.rng.u128(..)),
        platform: "ios",
        version: "3.4.0-beta.1",
        country_code: "US",
        region_code: Some("US-CA"),
        release_channel: "beta",
    };
    for i in 0..6 {
        late.push(maker.error(
            &beta,
            problem("app_crashed", Level::Fatal, "keyboard", "layout_overflow"),
            "Index 12 out of range for layout with 11 keys".into(),
            now - DAY_MS + i * HOUR_MS,
        ));
    }
    // A new problem escalating right now: a few an hour yesterday, a burst in the last hour.
    for i in 0..24 {
        let install = &installs[maker.rng.usize(..installs.len())];
        if install.product == "dictation-app" {
            late.push(maker.error(
                install,
                problem("sync_failed", Level::Error, "cloud", "quota_exceeded"),
                "Sync quota exceeded for workspace".into(),
                now - 30 * HOUR_MS + i * HOUR_MS,
            ));
        }
    }
    // The burst fills the last whole hour, so the spike shows whatever the time now.
    let burst_hour = hour_start(now) - HOUR_MS;
    let ios: Vec<&Install> = installs.iter().filter(|i| i.platform == "ios").collect();
    for i in 0..150 {
        late.push(maker.error(
            ios[i % ios.len()],
            problem("sync_failed", Level::Error, "cloud", "quota_exceeded"),
            "Sync quota exceeded for workspace".into(),
            burst_hour + i as i64 * 20_000,
        ));
    }
    stored += write(&state, late)?;
    let pass = state.clusters.pass().map_err(|e| e.to_string())?;
    let policies = demo_policies(now);
    let count = policies.len();
    state
        .writer
        .exclusive_blocking(move |store| {
            store.write(|txn| {
                for policy in &policies {
                    crate::store::policies::put_policy(txn, policy)?;
                    audit::append(
                        txn,
                        AuditEntry {
                            id: 0,
                            time_ms: now,
                            actor: "demo".into(),
                            action: "policy.create".into(),
                            target: format!("policy:{}", policy.id),
                            outcome: "ok".into(),
                            result: serde_json::json!({ "name": policy.name, "product": policy.product }),
                            products: vec![policy.product.clone()],
                        },
                    )?;
                }
                Ok(())
            })
        })
        .map_err(|e| e.to_string())?;
    let (points, runs) = demo_metrics(&state, now)?;
    let position = state.store.next_seq().map_err(|e| e.to_string())?;
    state
        .search
        .wait_indexed(position, std::time::Duration::from_secs(120));
    let clusters = state.clusters.list(&Default::default()).1;
    state.tasks.stop_threads();
    println!(
        "demo: {stored} events from {} installs over 7 days",
        installs.len() + 1
    );
    println!("demo: {clusters} error clusters ({} changes in the last pass: a regression and an escalation)", pass.changes);
    println!("demo: {count} collection policies");
    println!("demo: {points} OpenTelemetry metric points from {runs} client runs");
    println!("demo: data dir {}", state.config.server.data_dir.display());
    Ok(())
}

/// The voice SDK's OpenTelemetry metrics over the week, as its clients export them (cumulative,
/// once an hour while a run lasts, through `Series::accept`): `atlas_sdk_events_total` by
/// surface and event, `atlas_sdk_request_duration_seconds` by surface, and
/// `atlas_sdk_queue_size`. Each run is a client process with its own start time, so the
/// counters start again from zero in every run. Returns the points sent and the runs.
fn demo_metrics(state: &AppState, now: i64) -> Result<(u64, u64), String> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
        Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use prost::Message;

    const SURFACES: [&str; 3] = ["cli", "python", "node"];
    const EVENTS: [&str; 3] = ["call_started", "call_completed", "tool_called"];
    const BOUNDS: [f64; 7] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
    let kv = |key: &str, value: &str| KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    };
    let ns = |ms: i64| ms as u64 * 1_000_000;
    let mut rng = fastrand::Rng::with_seed(7);
    let (mut points, mut runs) = (0u64, 0u64);
    let week_start = hour_start(now) - 7 * DAY_MS;
    for day in 0..7 {
        for _ in 0..(3 + day / 2) {
            runs += 1;
            let surface = SURFACES[rng.usize(..SURFACES.len())];
            let start = week_start + day * DAY_MS + rng.i64(6..20) * HOUR_MS + rng.i64(0..HOUR_MS);
            let mut events = [0i64; EVENTS.len()];
            let mut buckets = [0u64; BOUNDS.len() + 1];
            let (mut count, mut sum) = (0u64, 0.0f64);
            for hour in 1..=rng.i64(2..7) {
                let time = start + hour * HOUR_MS;
                if time > now - MINUTE_MS {
                    break;
                }
                let calls = rng.i64(5..40);
                events[0] += calls;
                events[1] += calls - rng.i64(0..3).min(calls);
                events[2] += rng.i64(0..3 * calls);
                for _ in 0..calls {
                    // Mostly fast, sometimes slow: a long tail for the percentiles.
                    let seconds = 0.03 + rng.f64().powi(3) * 4.0;
                    let at = BOUNDS
                        .iter()
                        .position(|b| seconds <= *b)
                        .unwrap_or(BOUNDS.len());
                    buckets[at] += 1;
                    count += 1;
                    sum += seconds;
                }
                let number =
                    |attributes: Vec<KeyValue>, value: number_data_point::Value| NumberDataPoint {
                        attributes,
                        start_time_unix_nano: ns(start),
                        time_unix_nano: ns(time),
                        value: Some(value),
                        ..NumberDataPoint::default()
                    };
                let counter = Metric {
                    name: "atlas_sdk_events_total".into(),
                    description: "SDK events by surface and event".into(),
                    unit: "1".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: EVENTS
                            .iter()
                            .zip(events)
                            .map(|(event, n)| {
                                let attributes = vec![kv("surface", surface), kv("event", event)];
                                number(attributes, number_data_point::Value::AsInt(n))
                            })
                            .collect(),
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    })),
                    ..Metric::default()
                };
                let histogram = Metric {
                    name: "atlas_sdk_request_duration_seconds".into(),
                    description: "Provider request latency".into(),
                    unit: "s".into(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points: vec![HistogramDataPoint {
                            attributes: vec![kv("surface", surface)],
                            start_time_unix_nano: ns(start),
                            time_unix_nano: ns(time),
                            count,
                            sum: Some(sum),
                            bucket_counts: buckets.to_vec(),
                            explicit_bounds: BOUNDS.to_vec(),
                            ..HistogramDataPoint::default()
                        }],
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    })),
                    ..Metric::default()
                };
                let gauge = Metric {
                    name: "atlas_sdk_queue_size".into(),
                    description: "Events waiting to be sent".into(),
                    unit: "{event}".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![number(
                            vec![kv("surface", surface)],
                            number_data_point::Value::AsInt(rng.i64(0..50)),
                        )],
                    })),
                    ..Metric::default()
                };
                let request = ExportMetricsServiceRequest {
                    resource_metrics: vec![ResourceMetrics {
                        resource: Some(Resource {
                            attributes: vec![
                                kv("service.name", "atlas-sdk"),
                                kv(
                                    "telemetry.sdk.language",
                                    if surface == "node" {
                                        "nodejs"
                                    } else {
                                        "python"
                                    },
                                ),
                            ],
                            ..Resource::default()
                        }),
                        scope_metrics: vec![ScopeMetrics {
                            metrics: vec![counter, histogram, gauge],
                            ..ScopeMetrics::default()
                        }],
                        ..ResourceMetrics::default()
                    }],
                };
                let outcome = state
                    .series
                    .accept(
                        Some("voice-sdk"),
                        None,
                        None,
                        &request.encode_to_vec(),
                        crate::otlp::Encoding::Protobuf,
                    )
                    .map_err(|e| e.to_string())?;
                if outcome.rejected_points > 0 {
                    return Err(format!("demo metrics: {}", outcome.error_message));
                }
                points += outcome.accepted_points;
            }
        }
    }
    Ok((points, runs))
}

fn demo_policies(now: i64) -> Vec<Policy> {
    let policy = |id: &str,
                  name: &str,
                  product: &str,
                  priority: i32,
                  targeting: Targeting,
                  settings: Settings| Policy {
        id: id.into(),
        name: name.into(),
        product: product.into(),
        enabled: true,
        priority,
        starts_at: None,
        expires_at: None,
        targeting,
        settings,
        created_at: now,
        updated_at: now,
    };
    vec![
        policy(
            "demo-android-beta-sampling",
            "Sample Android beta at 50%",
            "dictation-app",
            10,
            Targeting {
                platforms: vec!["android".into()],
                release_channels: vec!["beta".into()],
                ..Targeting::default()
            },
            Settings {
                sample_rate: Some(0.5),
                ..Settings::default()
            },
        ),
        policy(
            "demo-old-sdk-quiet",
            "Only warnings from SDKs before 0.7",
            "voice-sdk",
            20,
            Targeting {
                app_versions: Some("<0.7.0".into()),
                ..Targeting::default()
            },
            Settings {
                min_level: Some(Level::Warn),
                ..Settings::default()
            },
        ),
    ]
}
