//! Tests of the search module against a temp dir and an in-memory event source: every query
//! form and filter (checked against an independent predicate over the same events), syntax
//! errors, cursor pagination under inserts, catch-up, reopen, delete + purge (raw bytes),
//! aggregations, dropped notifications, rebuild and kill -9 at random moments.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::*;
use crate::model::{DimValue, ErrorInfo, Event, Level, Source};
use crate::timespan::{DAY_MS, HOUR_MS, MINUTE_MS};

/// 2026-11-21T00:00:00Z
const BASE: i64 = 1_795_219_200_000;
const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// In-memory store

#[derive(Default)]
struct MemInner {
    events: BTreeMap<u64, Event>,
    next: u64,
    gated: bool,
    min_from: Option<u64>,
}

#[derive(Default)]
struct MemSource {
    inner: Mutex<MemInner>,
    gate: Condvar,
}

impl MemSource {
    fn new(events: Vec<Event>) -> Arc<MemSource> {
        let source = Arc::new(MemSource::default());
        source.append(events);
        source
    }

    /// Stores events (one "commit") and returns them as the store writer would notify them.
    fn append(&self, events: Vec<Event>) -> Vec<(u64, Arc<Event>)> {
        let mut inner = self.inner.lock().unwrap();
        let mut out = Vec::new();
        for event in events {
            let seq = inner.next;
            inner.next += 1;
            inner.events.insert(seq, event.clone());
            out.push((seq, Arc::new(event)));
        }
        out
    }

    fn remove_where(&self, predicate: impl Fn(&Event) -> bool) {
        self.inner
            .lock()
            .unwrap()
            .events
            .retain(|_, e| !predicate(e));
    }

    fn set_gate(&self, gated: bool) {
        self.inner.lock().unwrap().gated = gated;
        self.gate.notify_all();
    }

    fn all(&self) -> Vec<(u64, Event)> {
        let inner = self.inner.lock().unwrap();
        inner.events.iter().map(|(s, e)| (*s, e.clone())).collect()
    }

    fn next(&self) -> u64 {
        self.inner.lock().unwrap().next
    }
}

impl EventSource for MemSource {
    fn events_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, Event)>, String> {
        let mut inner = self.inner.lock().unwrap();
        while inner.gated {
            inner = self.gate.wait(inner).unwrap();
        }
        inner.min_from = Some(inner.min_from.map_or(from, |m| m.min(from)));
        Ok(inner
            .events
            .range(from..)
            .take(limit)
            .map(|(s, e)| (*s, e.clone()))
            .collect())
    }

    fn next_seq(&self) -> Result<u64, String> {
        Ok(self.inner.lock().unwrap().next)
    }
}

// ---------------------------------------------------------------------------------------------
// Realistic events: a voice SDK (flat events) and a dictation app

fn base_event(product: &str, name: &str, timestamp: i64) -> Event {
    Event {
        timestamp,
        received_at: timestamp + 150,
        schema_version: Some(1),
        ..Event::new(product, name)
    }
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn voice_event(i: usize) -> Event {
    let names = [
        "sdk_initialized",
        "call_started",
        "call_completed",
        "call_failed",
    ];
    let name = names[i % 4];
    let mut e = base_event("voice-sdk", name, BASE + i as i64 * MINUTE_MS);
    e.source = Source::FLAT;
    e.platform = s(if i.is_multiple_of(2) {
        "python"
    } else {
        "node"
    });
    e.runtime = s(if i.is_multiple_of(2) {
        "cpython-3.12"
    } else {
        "node-22"
    });
    e.os_family = s(["linux", "macos", "windows"][i % 3]);
    e.app_version = s(if i < 100 { "1.2.0" } else { "1.3.0" });
    e.release_channel = s("stable");
    e.install_id = Some(format!("voice-install-{}", i % 10));
    e.session_id = Some(format!("voice-session-{}", i / 5));
    let country = ["US", "US", "DE", "IN"][i % 4];
    e.country_code = s(country);
    e.region_code = match country {
        "US" if (i / 4).is_multiple_of(2) => s("US-WA"),
        "US" => s("US-CA"),
        "DE" => s("DE-BE"),
        _ => None,
    };
    e.dims.insert(
        "carrier".into(),
        DimValue::Str(["twilio", "telnyx", "vonage"][i % 3].into()),
    );
    e.dims.insert(
        "engine".into(),
        DimValue::Str(["whisper", "deepgram"][(i / 2) % 2].into()),
    );
    e.dims.insert(
        "provider".into(),
        DimValue::Str(["openai", "anthropic", "google"][(i % 5) % 3].into()),
    );
    e.dims
        .insert("streaming".into(), DimValue::Bool(i.is_multiple_of(3)));
    e.metrics
        .insert("latency_ms".into(), ((i * 37) % 1000) as f64);
    e.metrics
        .insert("cost_usd".into(), (i % 10) as f64 * 0.01 + 0.005);
    if name == "call_failed" {
        e.level = Level::Error;
        let (code, message) = if i % 8 == 3 {
            ("E_TIMEOUT", "provider timeout after 30s")
        } else {
            ("E_AUTH", "Authentication failed for carrier")
        };
        e.error = Some(ErrorInfo {
            domain: s("voice"),
            code: s(code),
            message: s(message),
            stack: s("Traceback (most recent call last):\n  File \"call.py\", line 3"),
        });
        e.fingerprint = Some(format!("fp-{code}"));
    }
    e
}

fn dictation_event(i: usize) -> Event {
    let names = [
        "app_opened",
        "dictation_started",
        "recognition_failed",
        "settings_changed",
        "keyboard_shown",
    ];
    let name = names[i % 5];
    let mut e = base_event("dictation", name, BASE + i as i64 * 45_000 + 7);
    let platform = ["ios", "android", "desktop", "web"][i % 4];
    e.platform = s(platform);
    e.os_family = s(match platform {
        "ios" => "ios",
        "android" => "android",
        "desktop" => "macos",
        _ => "web",
    });
    e.channel = s(if i.is_multiple_of(2) {
        "keyboard"
    } else {
        "app"
    });
    e.module = s(["dictation", "keyboard", "settings"][i % 3]);
    e.app_version = s(["4.0.1", "4.1.0"][(i / 150) % 2]);
    e.release_channel = s(if i.is_multiple_of(5) {
        "beta"
    } else {
        "stable"
    });
    e.install_id = Some(format!("dict-install-{}", i % 12));
    if i.is_multiple_of(3) {
        e.user_id = Some(format!("user-{}", i % 6));
    }
    e.session_id = Some(format!("dict-session-{}", i / 10));
    let country = ["US", "GB", "DE", "JP"][i % 4];
    e.country_code = s(country);
    e.region_code = match country {
        "US" => s("US-NY"),
        "GB" => s("GB-ENG"),
        "DE" => s("DE-BY"),
        _ => None,
    };
    if i.is_multiple_of(2) {
        e.dims.insert(
            "keyboard_layout".into(),
            DimValue::Str(["qwerty", "azerty"][(i / 2) % 2].into()),
        );
    }
    e.dims.insert(
        "locale".into(),
        DimValue::Str(["en-US", "de-DE", "ja-JP"][i % 3].into()),
    );
    e.metrics
        .insert("audio_seconds".into(), (i % 60) as f64 + 0.5);
    e.level = if name == "recognition_failed" {
        Level::Error
    } else if i % 50 == 1 {
        Level::Fatal
    } else if i.is_multiple_of(7) {
        Level::Warn
    } else if i.is_multiple_of(11) {
        Level::Debug
    } else {
        Level::Info
    };
    if name == "recognition_failed" {
        let (domain, code, message) = if i.is_multiple_of(2) {
            ("NSURLErrorDomain", "-1001", "The request timed out.")
        } else {
            ("SpeechRecognizer", "E_NO_AUDIO", "No audio input detected")
        };
        e.error = Some(ErrorInfo {
            domain: s(domain),
            code: s(code),
            message: s(message),
            stack: None,
        });
        e.fingerprint = Some(format!("fp-{code}"));
    }
    e
}

/// 200 voice + 300 dictation events, interleaved by timestamp order of creation.
fn dataset() -> Vec<Event> {
    let mut events: Vec<Event> = (0..200).map(voice_event).collect();
    events.extend((0..300).map(dictation_event));
    events
}

fn options() -> SearchOptions {
    SearchOptions {
        commit_interval: Duration::from_millis(50),
        writer_memory_bytes: 20_000_000,
        merge_threads: 1,
        queue_capacity: 64,
        queue_events: 100_000,
        scan_cache_mb: 64,
    }
}

fn open_indexed(dir: &Path, source: Arc<MemSource>) -> SearchIndex {
    let index = SearchIndex::open(dir, source.clone(), options()).unwrap();
    assert!(
        index.wait_indexed(source.next(), WAIT),
        "catch-up timed out"
    );
    index
}

fn q(query: &str) -> Filter {
    Filter {
        q: Some(query.to_string()),
        ..Filter::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Oracle: the same semantics evaluated directly on events

fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(|t| t.to_lowercase())
        .collect()
}

fn text_values(e: &Event) -> Vec<String> {
    let mut values = vec![e.name.clone()];
    if let Some(err) = &e.error {
        values.extend(
            [&err.message, &err.code, &err.domain]
                .into_iter()
                .flatten()
                .cloned(),
        );
    }
    values.extend(e.module.clone());
    for v in e.dims.values() {
        if let DimValue::Str(s) = v {
            values.push(s.clone());
        }
    }
    values
}

/// Free-text match: all tokens of `text` adjacent and in order within one indexed value.
fn has_text(e: &Event, text: &str) -> bool {
    let wanted = tokens(text);
    text_values(e).iter().any(|value| {
        let have = tokens(value);
        have.windows(wanted.len()).any(|w| w == wanted.as_slice())
    })
}

fn expected(source: &MemSource, predicate: impl Fn(&Event) -> bool) -> Vec<u64> {
    source
        .all()
        .into_iter()
        .filter(|(_, e)| predicate(e))
        .map(|(seq, _)| seq)
        .collect()
}

fn dim(e: &Event, key: &str) -> Option<String> {
    e.dims.get(key).map(|v| schema::dim_text(v).to_string())
}

fn metric(e: &Event, key: &str) -> Option<f64> {
    e.metrics.get(key).copied()
}

type Predicate = Box<dyn Fn(&Event) -> bool>;

fn query_cases() -> Vec<(&'static str, Predicate)> {
    let err_code = |e: &Event| e.error.as_ref().and_then(|x| x.code.clone());
    vec![
        ("", Box::new(|_| true)),
        ("timeout", Box::new(|e| has_text(e, "timeout"))),
        ("TIMEOUT", Box::new(|e| has_text(e, "timeout"))),
        (
            "authentication",
            Box::new(|e| has_text(e, "authentication")),
        ),
        (
            "\"request timed out\"",
            Box::new(|e| has_text(e, "request timed out")),
        ),
        ("\"timed request\"", Box::new(|_| false)),
        (
            "recognition_failed",
            Box::new(|e| e.name == "recognition_failed"),
        ),
        ("twilio", Box::new(|e| has_text(e, "twilio"))),
        ("level:error", Box::new(|e| e.level == Level::Error)),
        ("level:ERROR", Box::new(|e| e.level == Level::Error)),
        ("level:warning", Box::new(|e| e.level == Level::Warn)),
        (
            "platform:ios",
            Box::new(|e| e.platform.as_deref() == Some("ios")),
        ),
        ("product:voice-sdk", Box::new(|e| e.product == "voice-sdk")),
        ("product:Voice-SDK", Box::new(|_| false)),
        (
            "carrier:twilio",
            Box::new(|e| dim(e, "carrier").as_deref() == Some("twilio")),
        ),
        (
            "dims.engine:whisper",
            Box::new(|e| dim(e, "engine").as_deref() == Some("whisper")),
        ),
        (
            "streaming:true",
            Box::new(|e| dim(e, "streaming").as_deref() == Some("true")),
        ),
        (
            "locale:\"de-DE\"",
            Box::new(|e| dim(e, "locale").as_deref() == Some("de-DE")),
        ),
        (
            "country:US",
            Box::new(|e| e.country_code.as_deref() == Some("US")),
        ),
        (
            "country_code:DE",
            Box::new(|e| e.country_code.as_deref() == Some("DE")),
        ),
        (
            "region:US-WA",
            Box::new(|e| e.region_code.as_deref() == Some("US-WA")),
        ),
        (
            "latency_ms:>500",
            Box::new(|e| metric(e, "latency_ms").is_some_and(|v| v > 500.0)),
        ),
        (
            "latency_ms:>=481",
            Box::new(|e| metric(e, "latency_ms").is_some_and(|v| v >= 481.0)),
        ),
        (
            "latency_ms:<100",
            Box::new(|e| metric(e, "latency_ms").is_some_and(|v| v < 100.0)),
        ),
        (
            "latency_ms:<=37.5",
            Box::new(|e| metric(e, "latency_ms").is_some_and(|v| v <= 37.5)),
        ),
        (
            "latency_ms:370",
            Box::new(|e| metric(e, "latency_ms") == Some(370.0)),
        ),
        (
            "cost_usd:<=0.025",
            Box::new(|e| metric(e, "cost_usd").is_some_and(|v| v <= 0.025)),
        ),
        (
            "metrics.audio_seconds:>=58.5",
            Box::new(|e| metric(e, "audio_seconds").is_some_and(|v| v >= 58.5)),
        ),
        (
            "name:\"call_failed\"",
            Box::new(|e| e.name == "call_failed"),
        ),
        (
            "name:call",
            Box::new(|_| false), // exact fields match whole values only
        ),
        (
            "error_code:-1001",
            Box::new(move |e| err_code(e).as_deref() == Some("-1001")),
        ),
        (
            "error_domain:SpeechRecognizer",
            Box::new(|e| {
                e.error.as_ref().and_then(|x| x.domain.as_deref()) == Some("SpeechRecognizer")
            }),
        ),
        (
            "fingerprint:fp-E_NO_AUDIO",
            Box::new(|e| e.fingerprint.as_deref() == Some("fp-E_NO_AUDIO")),
        ),
        (
            "install_id:dict-install-3",
            Box::new(|e| e.install_id.as_deref() == Some("dict-install-3")),
        ),
        (
            "user_id:user-1",
            Box::new(|e| e.user_id.as_deref() == Some("user-1")),
        ),
        (
            "session_id:voice-session-4",
            Box::new(|e| e.session_id.as_deref() == Some("voice-session-4")),
        ),
        (
            "app_version:1.3.0",
            Box::new(|e| e.app_version.as_deref() == Some("1.3.0")),
        ),
        (
            "release_channel:beta",
            Box::new(|e| e.release_channel.as_deref() == Some("beta")),
        ),
        (
            "os_family:macos",
            Box::new(|e| e.os_family.as_deref() == Some("macos")),
        ),
        (
            "module:settings",
            Box::new(|e| e.module.as_deref() == Some("settings")),
        ),
        (
            "channel:keyboard",
            Box::new(|e| e.channel.as_deref() == Some("keyboard")),
        ),
        (
            "platform:ios OR platform:android",
            Box::new(|e| matches!(e.platform.as_deref(), Some("ios" | "android"))),
        ),
        (
            "level:error platform:ios",
            Box::new(|e| e.level == Level::Error && e.platform.as_deref() == Some("ios")),
        ),
        (
            "level:error AND NOT platform:ios",
            Box::new(|e| e.level == Level::Error && e.platform.as_deref() != Some("ios")),
        ),
        (
            "-platform:ios product:dictation",
            Box::new(|e| e.product == "dictation" && e.platform.as_deref() != Some("ios")),
        ),
        ("NOT level:info", Box::new(|e| e.level != Level::Info)),
        (
            "(platform:ios OR platform:web) level:error",
            Box::new(|e| {
                matches!(e.platform.as_deref(), Some("ios" | "web")) && e.level == Level::Error
            }),
        ),
        (
            "platform:ios OR platform:web level:error",
            Box::new(|e| {
                e.platform.as_deref() == Some("ios")
                    || (e.platform.as_deref() == Some("web") && e.level == Level::Error)
            }),
        ),
        (
            "timeout OR \"no audio\"",
            Box::new(|e| has_text(e, "timeout") || has_text(e, "no audio")),
        ),
        (
            "carrier:twilio latency_ms:>500 -streaming:true",
            Box::new(|e| {
                dim(e, "carrier").as_deref() == Some("twilio")
                    && metric(e, "latency_ms").is_some_and(|v| v > 500.0)
                    && dim(e, "streaming").as_deref() != Some("true")
            }),
        ),
        (
            "NOT (level:info OR level:debug) AND product:dictation",
            Box::new(|e| {
                !matches!(e.level, Level::Info | Level::Debug) && e.product == "dictation"
            }),
        ),
        (
            "timestamp:>=2026-11-21T02:00:00Z timestamp:<2026-11-21T03:00:00Z",
            Box::new(|e| e.timestamp >= BASE + 2 * HOUR_MS && e.timestamp < BASE + 3 * HOUR_MS),
        ),
        (
            "!!!",
            Box::new(|_| true), // no letters or digits: no constraint
        ),
    ]
}

#[test]
fn query_forms_match_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let source = MemSource::new(dataset());
    let index = open_indexed(dir.path(), source.clone());
    for (query, predicate) in query_cases() {
        let want = expected(&source, predicate);
        let got = index
            .positions(&q(query))
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        assert_eq!(got, want, "query {query:?}");
        assert_eq!(
            index.count(&q(query)).unwrap(),
            want.len() as u64,
            "{query}"
        );
    }
    // Sanity: the oracle cases are not trivially empty.
    assert_eq!(index.count(&q("level:error")).unwrap(), 50 + 60);
    assert_eq!(index.count(&q("carrier:twilio")).unwrap(), 67);
    index.close();
}

#[test]
fn filters_match_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let source = MemSource::new(dataset());
    let index = open_indexed(dir.path(), source.clone());
    let cases: Vec<(Filter, Predicate)> = vec![
        (
            Filter::default()
                .with(EventField::Product, "dictation")
                .with(EventField::Platform, "android"),
            Box::new(|e| e.product == "dictation" && e.platform.as_deref() == Some("android")),
        ),
        (
            Filter::default().with(EventField::Level, "error,fatal"),
            Box::new(|e| matches!(e.level, Level::Error | Level::Fatal)),
        ),
        (
            Filter::default()
                .with(EventField::Level, "Warning")
                .with(EventField::Channel, "keyboard"),
            Box::new(|e| e.level == Level::Warn && e.channel.as_deref() == Some("keyboard")),
        ),
        (
            Filter::default()
                .with(EventField::Module, "dictation")
                .with(EventField::Name, "recognition_failed")
                .with(EventField::AppVersion, "4.1.0"),
            Box::new(|e| {
                e.module.as_deref() == Some("dictation")
                    && e.name == "recognition_failed"
                    && e.app_version.as_deref() == Some("4.1.0")
            }),
        ),
        (
            Filter::default()
                .with(EventField::ReleaseChannel, "beta")
                .with(EventField::CountryCode, "US")
                .with(EventField::RegionCode, "US-NY"),
            Box::new(|e| {
                e.release_channel.as_deref() == Some("beta")
                    && e.region_code.as_deref() == Some("US-NY")
            }),
        ),
        (
            Filter::default()
                .with(EventField::InstallId, "voice-install-3")
                .with(EventField::SessionId, "voice-session-3"),
            Box::new(|e| {
                e.install_id.as_deref() == Some("voice-install-3")
                    && e.session_id.as_deref() == Some("voice-session-3")
            }),
        ),
        (
            Filter::default()
                .with(EventField::UserId, "user-3")
                .with(EventField::Fingerprint, "fp-E_NO_AUDIO"),
            Box::new(|e| {
                e.user_id.as_deref() == Some("user-3")
                    && e.fingerprint.as_deref() == Some("fp-E_NO_AUDIO")
            }),
        ),
        (
            Filter {
                from_ms: Some(BASE + HOUR_MS),
                to_ms: Some(BASE + 2 * HOUR_MS),
                q: s("timeout OR carrier:vonage"),
                ..Filter::default().with(EventField::Product, "voice-sdk")
            },
            Box::new(|e| {
                e.timestamp >= BASE + HOUR_MS
                    && e.timestamp < BASE + 2 * HOUR_MS
                    && e.product == "voice-sdk"
                    && (has_text(e, "timeout") || dim(e, "carrier").as_deref() == Some("vonage"))
            }),
        ),
        (
            Filter::default()
                .with(EventField::Product, "")
                .with(EventField::Level, ""),
            Box::new(|_| true),
        ),
    ];
    for (i, (filter, predicate)) in cases.into_iter().enumerate() {
        let want = expected(&source, predicate);
        assert!(
            i == 6 || i == 8 || !want.is_empty() || i == 5,
            "case {i} empty"
        );
        assert_eq!(
            index.positions(&filter).unwrap(),
            want,
            "case {i}: {filter:?}"
        );
    }
    let bad_level = Filter::default().with(EventField::Level, "error,loud");
    assert!(matches!(
        index.count(&bad_level),
        Err(SearchError::InvalidRequest(m)) if m.contains("loud")
    ));
    index.close();
}

#[test]
fn time_range_is_half_open() {
    let dir = tempfile::tempdir().unwrap();
    let source = MemSource::new(dataset());
    let index = open_indexed(dir.path(), source.clone());
    // voice events are exactly one minute apart from BASE.
    let filter = Filter {
        from_ms: Some(BASE + 10 * MINUTE_MS),
        to_ms: Some(BASE + 20 * MINUTE_MS),
        ..Filter::default().with(EventField::Product, "voice-sdk")
    };
    let page = index
        .search(&SearchRequest {
            filter,
            limit: 100,
            cursor: None,
            exact_total: false,
        })
        .unwrap();
    let stamps: Vec<i64> = page.hits.iter().map(|h| h.timestamp).collect();
    let want: Vec<i64> = (10..20).rev().map(|i| BASE + i * MINUTE_MS).collect();
    assert_eq!(stamps, want);
    assert_eq!(page.total, 10);
    assert_eq!(page.next_cursor, None);
    // Open-ended ranges.
    let from_only = Filter {
        from_ms: Some(BASE + 190 * MINUTE_MS),
        ..Filter::default().with(EventField::Product, "voice-sdk")
    };
    assert_eq!(index.count(&from_only).unwrap(), 10);
    let inverted = Filter {
        from_ms: Some(BASE + 5),
        to_ms: Some(BASE + 5),
        ..Filter::default()
    };
    assert_eq!(index.count(&inverted).unwrap(), 0);
    let to_only = Filter {
        to_ms: Some(BASE),
        ..Filter::default()
    };
    assert_eq!(index.count(&to_only).unwrap(), 0);
    let rel = Filter {
        from_ms: Some(parse_time_param("-1h", BASE + 2 * HOUR_MS).unwrap()),
        to_ms: Some(parse_time_param("now", BASE + 2 * HOUR_MS).unwrap()),
        ..Filter::default().with(EventField::Product, "voice-sdk")
    };
    assert_eq!(index.count(&rel).unwrap(), 60);
    index.close();
}

#[test]
fn syntax_errors_point_at_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let source = MemSource::new(dataset());
    let index = open_indexed(dir.path(), source);
    let cases: [(&str, usize, &str); 16] = [
        (
            "level:error  \"timeout",
            13,
            "unclosed quote at position 13",
        ),
        ("carrier:\"twilio", 8, "unclosed quote at position 8"),
        (
            "level: error",
            6,
            "expected a value after \"level:\" at position 6",
        ),
        (
            "level:",
            6,
            "expected a value after \"level:\" at position 6",
        ),
        (
            "lvel:error",
            0,
            "unknown field \"lvel\" at position 0; known: product,",
        ),
        ("(level:error", 0, "unclosed parenthesis at position 0"),
        ("level:error)", 11, "unexpected \")\" at position 11"),
        ("level:error AND", 12, "expected a term after \"AND\""),
        (
            "OR timeout",
            0,
            "expected a term but found \"OR\" at position 0",
        ),
        (
            "a OR OR b",
            5,
            "expected a term after \"OR\" but found \"OR\" at position 5",
        ),
        (
            "latency_ms:>abc",
            12,
            "expected a number after \"latency_ms:>\" at position 12",
        ),
        (
            "latency_ms:>",
            12,
            "expected a value after \"latency_ms:>\" at position 12",
        ),
        ("level:>3", 0, "\"level\" is matched exactly"),
        ("()", 1, "empty parentheses at position 0"),
        ("level:eror", 6, "unknown level \"eror\" at position 6"),
        (
            "timeout - x",
            9,
            "expected a term after \"-\" at position 9",
        ),
    ];
    for (query, position, message) in cases {
        match index.count(&q(query)) {
            Err(SearchError::Query {
                message: m,
                position: p,
            }) => {
                assert!(m.starts_with(message), "{query:?}: {m:?} !~ {message:?}");
                assert_eq!(p, position, "{query:?}: {m}");
            }
            other => panic!("{query:?}: expected a query error, got {other:?}"),
        }
    }
    // The unknown-field message lists dimensions and metrics from the index.
    let Err(err) = index.count(&q("lvel:error")) else {
        panic!("expected an error")
    };
    let text = err.to_string();
    for known in [
        "level",
        "country",
        "carrier",
        "latency_ms",
        "keyboard_layout",
    ] {
        assert!(text.contains(known), "{text}");
    }
    assert!(text.starts_with("invalid query: unknown field \"lvel\" at position 0"));
    assert!(matches!(
        index.count(&q("timestamp:2026-11-21")),
        Err(SearchError::Query { position: 0, .. })
    ));
    // Comparisons on a timestamp need a time.
    assert!(matches!(
        index.count(&q("timestamp:>yesterday")),
        Err(SearchError::Query { position: 11, .. })
    ));
    index.close();
}

#[test]
fn parser_builds_the_expected_tree() {
    use query::{parse, CmpOp, Expr};
    let text = |t: &str, p: usize| Expr::Text {
        text: t.to_string(),
        phrase: false,
        position: p,
    };
    assert_eq!(parse("  ").unwrap(), Expr::All);
    assert_eq!(
        parse("a b OR c").unwrap(),
        Expr::Or(vec![
            Expr::And(vec![text("a", 0), text("b", 2)]),
            text("c", 7)
        ])
    );
    assert_eq!(parse("-a").unwrap(), Expr::Not(Box::new(text("a", 1))));
    assert_eq!(
        parse("x:>=5").unwrap(),
        Expr::Compare {
            field: "x".into(),
            field_pos: 0,
            op: CmpOp::Ge,
            value: "5".into(),
            value_pos: 4
        }
    );
    assert_eq!(
        parse(r#"name:"call \"x\" started""#).unwrap(),
        Expr::Match {
            field: "name".into(),
            field_pos: 0,
            value: "call \"x\" started".into(),
            value_pos: 5
        }
    );
    // Lower-case operators are words; a word with a non-field colon is text.
    assert_eq!(
        parse("a and 12:30").unwrap(),
        Expr::And(vec![text("a", 0), text("and", 2), text("12:30", 6)])
    );
}

#[test]
fn nesting_is_limited_at_the_documented_depth() {
    use query::{parse, MAX_QUERY_DEPTH};
    let nested =
        |open: &str, levels: usize| format!("{}a{}", open.repeat(levels), ")".repeat(levels));
    assert!(parse(&nested("(", MAX_QUERY_DEPTH)).is_ok());
    assert!(parse(&"NOT ".repeat(MAX_QUERY_DEPTH)).is_err()); // no term after the last NOT
    assert!(parse(&format!("{}a", "NOT ".repeat(MAX_QUERY_DEPTH))).is_ok());
    for deep in [
        nested("(", MAX_QUERY_DEPTH + 1),
        nested("-(", MAX_QUERY_DEPTH),
        format!("{}a", "NOT ".repeat(MAX_QUERY_DEPTH + 1)),
        "(".repeat(1_000_000),
    ] {
        match parse(&deep) {
            Err(SearchError::Query { message, .. }) => {
                assert!(message.contains("nested deeper than 64"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn the_handle_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<SearchIndex>();
}

#[test]
fn time_params() {
    let now = BASE + 5 * DAY_MS;
    assert_eq!(parse_time_param("now", now), Ok(now));
    assert_eq!(parse_time_param("-24h", now), Ok(now - DAY_MS));
    assert_eq!(parse_time_param("-7d", now), Ok(now - 7 * DAY_MS));
    assert_eq!(parse_time_param("-30m", now), Ok(now - 30 * MINUTE_MS));
    assert_eq!(parse_time_param("-15min", now), Ok(now - 15 * MINUTE_MS));
    assert_eq!(parse_time_param("-2w", now), Ok(now - 14 * DAY_MS));
    assert_eq!(parse_time_param("-250ms", now), Ok(now - 250));
    assert_eq!(parse_time_param(" -45s ", now), Ok(now - 45_000));
    assert_eq!(parse_time_param("2026-11-21T00:00:00Z", now), Ok(BASE));
    assert_eq!(parse_time_param("2026-11-21T02:00:00+02:00", now), Ok(BASE));
    assert_eq!(parse_time_param("2026-11-21", now), Ok(BASE));
    assert_eq!(parse_time_param("1795219200000", now), Ok(BASE));
    for bad in [
        "",
        "-5",
        "-5y",
        "-",
        "--5m",
        "-5 m",
        "yesterday",
        "2026-13-01",
        "-99999999999999999d",
    ] {
        assert!(parse_time_param(bad, now).is_err(), "{bad}");
    }
}

#[test]
fn cursor_pages_have_no_duplicates_or_gaps_while_events_arrive() {
    let dir = tempfile::tempdir().unwrap();
    // 2,500 events, three per timestamp (ties broken by seq).
    let events: Vec<Event> = (0..2_500)
        .map(|i| {
            let mut e = if i % 2 == 0 {
                voice_event(i % 200)
            } else {
                dictation_event(i % 300)
            };
            e.timestamp = BASE + (i as i64 / 3) * 1_000;
            e
        })
        .collect();
    let source = MemSource::new(events);
    let index = open_indexed(dir.path(), source.clone());
    let original: BTreeSet<u64> = (0..2_500).collect();
    let mut seen: Vec<(i64, u64)> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    let mut added = 0u64;
    loop {
        let page = index
            .search(&SearchRequest {
                filter: Filter::default(),
                limit: 100,
                cursor: cursor.clone(),
                exact_total: false,
            })
            .unwrap();
        if pages == 0 {
            assert_eq!(page.total, 2_500);
        }
        pages += 1;
        seen.extend(page.hits.iter().map(|h| (h.timestamp, h.seq)));
        let Some(next) = page.next_cursor else {
            break;
        };
        cursor = Some(next);
        // Between pages: events newer than everything, and events with timestamps equal to
        // existing ones (at the cursor, already seen, and not seen yet).
        let (cursor_ts, _) = *seen.last().unwrap();
        let mut more = Vec::new();
        for (k, ts) in [
            BASE + 10_000_000 + pages as i64,
            cursor_ts,
            seen[0].0,
            BASE + 7_000, // near the end of the order, not yet seen early on
        ]
        .into_iter()
        .enumerate()
        {
            let mut e = dictation_event(k);
            e.timestamp = ts;
            more.push(e);
        }
        added += more.len() as u64;
        index.notify_committed(source.append(more));
        assert!(index.wait_indexed(source.next(), WAIT));
        assert!(pages < 100, "pagination does not end");
    }
    // Strictly descending, hence no duplicates.
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "order broken");
    let seqs: BTreeSet<u64> = seen.iter().map(|(_, s)| *s).collect();
    assert!(
        original.is_subset(&seqs),
        "gap: an original event was skipped"
    );
    // Added events show up only if they sort after the cursor at the time they were added.
    assert!(seqs.len() as u64 <= 2_500 + added);
    assert!(pages >= 25);
    // total counts everything now.
    let page = index
        .search(&SearchRequest {
            filter: Filter::default(),
            limit: 0,
            cursor: None,
            exact_total: false,
        })
        .unwrap();
    assert_eq!(page.total, 2_500 + added);
    assert!(page.hits.is_empty() && page.next_cursor.is_none());
    // A bad cursor is a request error.
    assert!(matches!(
        index.search(&SearchRequest {
            filter: Filter::default(),
            limit: 10,
            cursor: Some("nope".into()),
            exact_total: false,
        }),
        Err(SearchError::InvalidRequest(_))
    ));
    // limit is capped at 1000.
    let page = index
        .search(&SearchRequest {
            filter: Filter::default(),
            limit: 5_000,
            cursor: None,
            exact_total: false,
        })
        .unwrap();
    assert_eq!(page.hits.len(), MAX_LIMIT);
    index.close();
}

#[test]
fn time_ranges_over_days_and_hours_match_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    // Four days of events at irregular spacing, a few of them late (out of position order).
    let stamps: Vec<i64> = (0..3_000i64)
        .map(|i| BASE - HOUR_MS + i * 115_321 + if i % 97 == 0 { -40_000_000 } else { 0 })
        .collect();
    let events: Vec<Event> = stamps
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let mut e = voice_event(i % 200);
            e.timestamp = t;
            e
        })
        .collect();
    let index = open_indexed(dir.path(), MemSource::new(events));
    let (lo, hi) = (*stamps.iter().min().unwrap(), *stamps.iter().max().unwrap());
    let mut rng = fastrand::Rng::with_seed(11);
    let mut cases = vec![
        (None, None),
        (Some(lo), None),
        (None, Some(hi + 1)),
        (Some(lo), Some(hi + 1)),
        (Some(hi + 1), None),
        (None, Some(lo)),
        (Some(BASE), Some(BASE + DAY_MS)),
        (Some(BASE + HOUR_MS), Some(BASE + 2 * DAY_MS + 2 * HOUR_MS)),
        (Some(BASE - 1), Some(BASE + 1)),
    ];
    for _ in 0..60 {
        let a = rng.i64(lo - 5_000_000..hi + 5_000_000);
        let b = a + rng.i64(0..3 * DAY_MS);
        let align = |t: i64, unit: i64| t - t.rem_euclid(unit);
        cases.push(match rng.u8(..3) {
            0 => (Some(a), Some(b)),
            1 => (Some(align(a, HOUR_MS)), Some(align(b, DAY_MS))),
            _ => (Some(a), None),
        });
    }
    for (from, to) in cases {
        let expected = stamps
            .iter()
            .filter(|&&t| from.is_none_or(|f| t >= f) && to.is_none_or(|e| t < e))
            .count() as u64;
        let filter = Filter {
            from_ms: from,
            to_ms: to,
            ..Filter::default()
        };
        assert_eq!(index.count(&filter).unwrap(), expected, "{from:?}..{to:?}");
        if let (Some(a), Some(b)) = (from, to) {
            // The query language's comparisons, each way round.
            let count = |query: String| index.count(&q(&query)).unwrap();
            assert_eq!(count(format!("timestamp:>={a} timestamp:<{b}")), expected);
            let inclusive = stamps.iter().filter(|&&t| t > a && t <= b).count() as u64;
            assert_eq!(count(format!("timestamp:>{a} timestamp:<={b}")), inclusive);
        }
    }
    index.close();
}

#[test]
fn totals_past_the_exact_bound_say_at_least_unless_asked_to_count() {
    let dir = tempfile::tempdir().unwrap();
    let n = EXACT_TOTAL_UP_TO as usize + 2_000;
    let events: Vec<Event> = (0..n)
        .map(|i| {
            let mut e = dictation_event(i % 300);
            e.timestamp = BASE + i as i64 * 1_000;
            e
        })
        .collect();
    let index = open_indexed(dir.path(), MemSource::new(events));
    let page = |filter: Filter, exact_total: bool| {
        index
            .search(&SearchRequest {
                filter,
                limit: 20,
                cursor: None,
                exact_total,
            })
            .unwrap()
    };
    let broad = page(Filter::default(), false);
    assert_eq!((broad.total, broad.total_exact), (EXACT_TOTAL_UP_TO, false));
    let newest: Vec<u64> = broad.hits.iter().map(|h| h.seq).collect();
    assert_eq!(newest, (n as u64 - 20..n as u64).rev().collect::<Vec<_>>());
    assert!(broad.next_cursor.is_some());
    let counted = page(Filter::default(), true);
    assert_eq!((counted.total, counted.total_exact), (n as u64, true));
    assert_eq!(counted.hits, broad.hits);
    // Under the bound the count is exact without asking.
    let hour = Filter {
        from_ms: Some(BASE + (n as i64 - 3_600) * 1_000),
        ..Filter::default()
    };
    let recent = page(hour, false);
    assert_eq!((recent.total, recent.total_exact), (3_600, true));
    index.close();
}

#[test]
fn oldest_matches_come_oldest_first_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let trace = |i: usize, trace_id: &str, offset_ms: i64| Event {
        trace_id: s(trace_id),
        span_id: Some(format!("{i:016x}")),
        ..base_event("sdk", "span", BASE + offset_ms)
    };
    let wanted = "4bf92f3577b34da6a3ce929d0e0e4736";
    let other = "0af7651916cd43dd8448eb211c80319c";
    // Out of time order, a tie at +20 ms, and another trace in between.
    let source = MemSource::new(vec![
        trace(0, wanted, 40),
        trace(1, other, 0),
        trace(2, wanted, 20),
        trace(3, wanted, 20),
    ]);
    let index = open_indexed(dir.path(), source.clone());
    // A second commit, so the matches span two segments.
    index.notify_committed(source.append(vec![trace(4, wanted, 10), trace(5, wanted, 30)]));
    assert!(index.wait_indexed(source.next(), WAIT));
    let filter = Filter::default().with(EventField::TraceId, wanted);
    let keys = |hits: &OldestHits| -> Vec<(i64, u64)> {
        hits.hits
            .iter()
            .map(|h| (h.timestamp - BASE, h.seq))
            .collect()
    };
    let all = index.oldest(&filter, 100).unwrap();
    assert_eq!(all.total, 5);
    assert_eq!(keys(&all), [(10, 4), (20, 2), (20, 3), (30, 5), (40, 0)]);
    let first = index.oldest(&filter, 3).unwrap();
    assert_eq!(first.total, 5);
    assert_eq!(keys(&first), [(10, 4), (20, 2), (20, 3)]);
    let none = index
        .oldest(&Filter::default().with(EventField::TraceId, "nope"), 10)
        .unwrap();
    assert_eq!((none.total, none.hits.len()), (0, 0));
    index.close();
}

#[test]
fn span_ids_are_found_whatever_their_form() {
    let dir = tempfile::tempdir().unwrap();
    let span = |id: &str, parent: Option<&str>| Event {
        trace_id: s("4bf92f3577b34da6a3ce929d0e0e4736"),
        span_id: s(id),
        parent_span_id: parent.map(str::to_string),
        ..base_event("sdk", "span", BASE)
    };
    let root = "00f067aa0ba902b7";
    let source = MemSource::new(vec![
        span(root, None),
        span("ffffffffffffffff", Some(root)),
        // Not the canonical form: kept as exact terms, never confused with the numbers.
        span("00F067AA0BA902B7", Some(root)),
        span("span-1", Some("00f067aa0ba902b")),
    ]);
    let index = open_indexed(dir.path(), source.clone());
    // A second segment.
    index.notify_committed(source.append(vec![span("0000000000000000", Some(root))]));
    assert!(index.wait_indexed(source.next(), WAIT));
    for (query, expected) in [
        ("span_id:00f067aa0ba902b7", vec![0]),
        ("span_id:ffffffffffffffff", vec![1]),
        ("span_id:00F067AA0BA902B7", vec![2]),
        ("span_id:span-1", vec![3]),
        ("span_id:0000000000000000", vec![4]),
        ("span_id:00f067aa0ba902b", vec![]),
        ("parent_span_id:00f067aa0ba902b7", vec![1, 2, 4]),
        ("parent_span_id:00f067aa0ba902b", vec![3]),
        (
            "span_id:00f067aa0ba902b7 OR parent_span_id:00f067aa0ba902b7",
            vec![0, 1, 2, 4],
        ),
    ] {
        let mut found = index.positions(&q(query)).unwrap();
        found.sort_unstable();
        assert_eq!(found, expected, "{query}");
    }
    let by_filter = Filter::default().with(EventField::ParentSpanId, root);
    let mut found = index.positions(&by_filter).unwrap();
    found.sort_unstable();
    assert_eq!(found, vec![1, 2, 4]);
    index.close();
}

fn snapshot(index: &SearchIndex) -> Vec<Vec<u64>> {
    [
        "",
        "timeout",
        "level:error platform:ios",
        "carrier:twilio latency_ms:>500",
        "\"no audio\" OR module:settings",
    ]
    .iter()
    .map(|query| index.positions(&q(query)).unwrap())
    .collect()
}

#[test]
fn catch_up_rebuilds_a_deleted_index_dir() {
    let dir = tempfile::tempdir().unwrap();
    let index_dir = dir.path().join("index");
    let source = MemSource::new(dataset());
    let index = open_indexed(&index_dir, source.clone());
    let before = snapshot(&index);
    index.close();
    drop(index);
    std::fs::remove_dir_all(&index_dir).unwrap();
    let index = open_indexed(&index_dir, source.clone());
    assert_eq!(snapshot(&index), before);
    assert_eq!(index.indexed_position(), 500);
    index.close();
}

#[test]
fn reopen_after_close_keeps_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let source = MemSource::new(dataset());
    let index = open_indexed(dir.path(), source.clone());
    let before = snapshot(&index);
    index.close();
    // Searching still works after close; delete does not.
    assert_eq!(snapshot(&index), before);
    assert!(matches!(
        index.delete(&Filter::default(), 0..10),
        Err(SearchError::Closed)
    ));
    drop(index);

    // New events while closed; the reopened index starts at its payload position.
    source.append((300..310).map(dictation_event).collect());
    source.inner.lock().unwrap().min_from = None;
    let index = SearchIndex::open(dir.path(), source.clone(), options()).unwrap();
    assert!(index.indexed_position() >= 500);
    assert!(index.wait_indexed(510, WAIT));
    assert_eq!(source.inner.lock().unwrap().min_from, Some(500));
    assert_eq!(index.count(&Filter::default()).unwrap(), 510);
    let stats = index.stats();
    assert_eq!(stats.docs, 510);
    assert_eq!(stats.indexed_position, 510);
    assert!(stats.size_bytes > 0 && stats.segments >= 1 && stats.last_commit_ms > 0);
    index.close();
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            // Background merges may garbage-collect a file meanwhile.
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[test]
fn delete_then_purge_erases_the_id_from_the_index_files() {
    let dir = tempfile::tempdir().unwrap();
    let source = MemSource::new(dataset());
    let index = open_indexed(dir.path(), source.clone());
    // A realistic install id: the term dictionaries prefix-compress keys, so look for the
    // distinctive part of it in the raw bytes.
    let erased = "3f2b8c1e-9d4a-4e7b-b6a1-c0ffee000003";
    let needle = &erased.as_bytes()[6..];
    let mut theirs: Vec<Event> = (0..25).map(dictation_event).collect();
    for e in &mut theirs {
        e.install_id = s(erased);
    }
    // Another install with a realistic id, which must survive.
    let kept = "9a7d0c55-1b2e-4f3a-8c9d-0badcafe0004";
    let mut others: Vec<Event> = (0..5).map(dictation_event).collect();
    for e in &mut others {
        e.install_id = s(kept);
    }
    theirs.extend(others);
    index.notify_committed(source.append(theirs));
    assert!(index.wait_indexed(source.next(), WAIT));
    let by_install = Filter::default().with(EventField::InstallId, erased);
    let want = expected(&source, |e| e.install_id.as_deref() == Some(erased)).len() as u64;
    assert_eq!(want, 25);
    assert!(!files_containing(dir.path(), needle).is_empty());

    // An event of the same install stored after the erasure point survives.
    let below = source.next();
    let mut late = dictation_event(3);
    late.install_id = s(erased);
    index.notify_committed(source.append(vec![late]));
    assert!(index.wait_indexed(source.next(), WAIT));

    let stored_before: BTreeSet<u64> = source.all().iter().map(|(seq, _)| *seq).collect();
    source.remove_where(|e| e.install_id.as_deref() == Some(erased));
    assert_eq!(stored_before.len(), 531);
    assert_eq!(index.delete(&by_install, 0..below).unwrap(), want);
    assert_eq!(
        index.delete(&by_install, 0..below).unwrap(),
        0,
        "idempotent"
    );
    assert_eq!(index.positions(&by_install).unwrap(), vec![below]);
    assert_eq!(index.delete(&by_install, 0..u64::MAX).unwrap(), 1);
    assert_eq!(index.count(&by_install).unwrap(), 0);

    // Delete by product + time.
    let old_voice = Filter {
        to_ms: Some(BASE + 100 * MINUTE_MS),
        ..Filter::default().with(EventField::Product, "voice-sdk")
    };
    assert_eq!(index.delete(&old_voice, 0..source.next()).unwrap(), 100);
    assert_eq!(index.count(&q("product:voice-sdk")).unwrap(), 100);
    assert_eq!(index.count(&Filter::default()).unwrap(), 505 - 100);

    // Deleted documents are only marked; their terms stay in the files until the purge (or a
    // background merge of the segment, which may or may not have happened by now).
    index.purge().unwrap();
    assert_eq!(files_containing(dir.path(), needle), Vec::<String>::new());
    // Other installs are still there, in the files and in results.
    assert!(!files_containing(dir.path(), &kept.as_bytes()[6..]).is_empty());
    assert_eq!(index.count(&q(&format!("install_id:{kept}"))).unwrap(), 5);
    assert_eq!(index.count(&q("install_id:dict-install-4")).unwrap(), 25);
    assert_eq!(index.count(&Filter::default()).unwrap(), 405);

    // Indexing goes on after a purge, and reopening keeps the deletes.
    index.notify_committed(source.append(vec![dictation_event(5)]));
    assert!(index.wait_indexed(source.next(), WAIT));
    assert_eq!(index.count(&Filter::default()).unwrap(), 406);
    index.close();
    drop(index);
    let index = open_indexed(dir.path(), source.clone());
    assert_eq!(index.count(&Filter::default()).unwrap(), 406);
    assert_eq!(index.count(&by_install).unwrap(), 0);
    index.close();
}

fn install_set<'a>(events: impl Iterator<Item = &'a Event>) -> u64 {
    events
        .filter_map(|e| e.install_id.clone())
        .collect::<HashSet<_>>()
        .len() as u64
}

#[test]
fn geo_timeseries_and_breakdown_values() {
    let dir = tempfile::tempdir().unwrap();
    let source = MemSource::new(dataset());
    let index = open_indexed(dir.path(), source.clone());
    let all: Vec<Event> = source.all().into_iter().map(|(_, e)| e).collect();

    // Geo over everything, checked against a direct computation.
    let geo = index.geo(&Filter::default(), 0).unwrap().rows;
    let mut by_country: HashMap<String, Vec<&Event>> = HashMap::new();
    for e in &all {
        if let Some(c) = &e.country_code {
            by_country.entry(c.clone()).or_default().push(e);
        }
    }
    assert_eq!(geo.len(), by_country.len());
    assert!(geo.windows(2).all(|w| w[0].events >= w[1].events));
    for row in &geo {
        let events = &by_country[&row.country_code];
        assert_eq!(row.events, events.len() as u64, "{}", row.country_code);
        assert_eq!(
            row.installs,
            install_set(events.iter().copied()),
            "{}",
            row.country_code
        );
        let mut regions: HashMap<String, Vec<&Event>> = HashMap::new();
        for e in events {
            if let Some(r) = &e.region_code {
                regions.entry(r.clone()).or_default().push(e);
            }
        }
        assert_eq!(row.regions.len(), regions.len());
        for region in &row.regions {
            let evs = &regions[&region.region_code];
            assert_eq!(region.events, evs.len() as u64);
            assert_eq!(region.installs, install_set(evs.iter().copied()));
        }
    }
    // Hand-checked: US = voice i%4 in {0,1} (100) + dictation i%4==0 (75).
    let us = geo.iter().find(|c| c.country_code == "US").unwrap();
    assert_eq!((us.events, us.installs), (175, 10 + 3));
    assert_eq!(geo[0].country_code, "US");
    let us_wa = us
        .regions
        .iter()
        .find(|r| r.region_code == "US-WA")
        .unwrap();
    assert_eq!(us_wa.events, 50);
    // Filtered geo.
    let geo_voice = index
        .geo(&Filter::default().with(EventField::Product, "voice-sdk"), 0)
        .unwrap()
        .rows;
    let countries: Vec<(&str, u64)> = geo_voice
        .iter()
        .map(|c| (c.country_code.as_str(), c.events))
        .collect();
    assert_eq!(countries, vec![("US", 100), ("DE", 50), ("IN", 50)]);
    assert!(geo_voice[2].regions.is_empty());

    // Time series: hourly buckets over 4 hours, zero buckets included.
    let filter = Filter {
        from_ms: Some(BASE - HOUR_MS),
        to_ms: Some(BASE + 3 * HOUR_MS),
        ..Filter::default()
    };
    let series = index.timeseries(&filter, HOUR_MS).unwrap();
    assert_eq!(series.len(), 4);
    assert_eq!(series[0].start_ms, BASE - HOUR_MS);
    assert_eq!(series[0].total, 0);
    for bucket in &series {
        let in_bucket: Vec<&Event> = all
            .iter()
            .filter(|e| e.timestamp >= bucket.start_ms && e.timestamp < bucket.start_ms + HOUR_MS)
            .collect();
        assert_eq!(bucket.total, in_bucket.len() as u64);
        let count = |l: Level| in_bucket.iter().filter(|e| e.level == l).count() as u64;
        assert_eq!(
            bucket.by_level,
            LevelCounts {
                debug: count(Level::Debug),
                info: count(Level::Info),
                warn: count(Level::Warn),
                error: count(Level::Error),
                fatal: count(Level::Fatal),
            }
        );
    }
    assert_eq!(series[1].total, 60 + 80); // voice 1/min, dictation 1/45s
                                          // Without a range: from the first to the last matching event.
    let voice_series = index
        .timeseries(
            &Filter::default().with(EventField::Product, "voice-sdk"),
            HOUR_MS,
        )
        .unwrap();
    assert_eq!(voice_series.len(), 4);
    assert_eq!(voice_series.iter().map(|b| b.total).sum::<u64>(), 200);
    assert_eq!(voice_series[3].by_level.error, 5);
    assert!(matches!(
        index.timeseries(&filter, 0),
        Err(SearchError::InvalidRequest(_))
    ));
    assert!(matches!(
        index.timeseries(&filter, 1),
        Err(SearchError::InvalidRequest(_))
    ));

    // Breakdowns: exact fields, aliases and dimensions.
    let platforms = index
        .breakdown(&Filter::default(), "platform", 10, 0)
        .unwrap()
        .rows;
    let want: Vec<(String, u64, u64)> = vec![
        ("node".into(), 100, 5),
        ("python".into(), 100, 5),
        ("android".into(), 75, 3),
        ("desktop".into(), 75, 3),
        ("ios".into(), 75, 3),
        ("web".into(), 75, 3),
    ];
    let got: Vec<(String, u64, u64)> = platforms
        .iter()
        .map(|r| (r.value.clone(), r.events, r.installs))
        .collect();
    assert_eq!(got, want);
    let top2 = index
        .breakdown(&q("level:error"), "error_code", 2, 0)
        .unwrap()
        .rows;
    assert_eq!(top2.len(), 2);
    let top2: Vec<(&str, u64)> = top2.iter().map(|r| (r.value.as_str(), r.events)).collect();
    assert_eq!(top2, vec![("-1001", 30), ("E_NO_AUDIO", 30)]);
    let carriers = index
        .breakdown(&Filter::default(), "carrier", 10, 0)
        .unwrap()
        .rows;
    assert_eq!(
        carriers.iter().map(|r| r.events).collect::<Vec<_>>(),
        vec![67, 67, 66]
    );
    let countries = index
        .breakdown(&Filter::default(), "country_code", 10, 0)
        .unwrap()
        .rows;
    assert_eq!(countries[0].value, "US");
    // The older spelling still names the same field.
    assert_eq!(
        index
            .breakdown(&Filter::default(), "country", 10, 0)
            .unwrap()
            .rows,
        countries
    );
    for bad in ["nonsense", "session_id", "dims.", "a b", ""] {
        assert!(
            matches!(
                index.breakdown(&Filter::default(), bad, 10, 0),
                Err(SearchError::InvalidRequest(_))
            ),
            "{bad}"
        );
    }
    let engines = index
        .breakdown(&q("product:voice-sdk"), "dims.engine", 10, 0)
        .unwrap()
        .rows;
    assert_eq!(
        engines
            .iter()
            .map(|r| (r.value.as_str(), r.events, r.installs))
            .collect::<Vec<_>>(),
        vec![("deepgram", 100, 10), ("whisper", 100, 10)]
    );
    index.close();
}

#[test]
fn dropped_notifications_are_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let source = MemSource::new(dataset());
    // Hold the indexer in its initial catch-up so the queue (capacity 1) overflows.
    source.set_gate(true);
    let index = SearchIndex::open(
        dir.path(),
        source.clone(),
        SearchOptions {
            queue_capacity: 1,
            ..options()
        },
    )
    .unwrap();
    for i in 0..10 {
        index.notify_committed(source.append(vec![voice_event(i), dictation_event(i)]));
    }
    source.set_gate(false);
    assert!(index.wait_indexed(520, WAIT));
    assert!(index.stats().dropped_batches >= 9);
    assert_eq!(index.count(&Filter::default()).unwrap(), 520);

    // Events stored without any notification are picked up by the periodic store check.
    source.append((20..30).map(voice_event).collect());
    assert!(index.wait_indexed(530, WAIT));
    assert_eq!(
        index.positions(&Filter::default()).unwrap(),
        (0..530).collect::<Vec<_>>()
    );

    // A gap in the notified positions (an earlier batch dropped) is filled from the store.
    let _dropped = source.append(vec![voice_event(40)]);
    index.notify_committed(source.append(vec![voice_event(41)]));
    assert!(index.wait_indexed(532, WAIT));
    assert_eq!(index.count(&Filter::default()).unwrap(), 532);
    index.close();
}

/// The queue is bounded in events too: batches past `queue_events` are dropped (never held in
/// memory) and read back from the store.
#[test]
fn the_queue_holds_at_most_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let source = MemSource::new(dataset());
    source.set_gate(true);
    let index = SearchIndex::open(
        dir.path(),
        source.clone(),
        SearchOptions {
            queue_events: 3,
            ..options()
        },
    )
    .unwrap();
    for i in 0..10 {
        index.notify_committed(source.append(vec![voice_event(i), dictation_event(i)]));
        assert!(index.stats().queued_events <= 3);
    }
    assert_eq!(index.stats().queued_events, 2);
    assert_eq!(index.stats().dropped_batches, 9);
    source.set_gate(false);
    assert!(index.wait_indexed(520, WAIT));
    assert_eq!(index.count(&Filter::default()).unwrap(), 520);
    assert_eq!(index.stats().queued_events, 0);
    index.close();
}

#[test]
fn rebuild_from_scratch_reports_progress() {
    let dir = tempfile::tempdir().unwrap();
    let source = MemSource::new(dataset());
    // Some positions were deleted from the store.
    source.remove_where(|e| e.install_id.as_deref() == Some("voice-install-0"));
    std::fs::write(dir.path().join("stale-file"), b"x").unwrap();
    let mut reports = Vec::new();
    let docs = rebuild(
        dir.path(),
        source.as_ref(),
        &options(),
        &mut |done, total| reports.push((done, total)),
    )
    .unwrap();
    assert_eq!(docs, 480);
    assert_eq!(reports.first(), Some(&(0, 500)));
    assert_eq!(reports.last(), Some(&(500, 500)));
    assert!(reports.windows(2).all(|w| w[0].0 <= w[1].0));
    assert!(!dir.path().join("stale-file").exists());
    let index = SearchIndex::open(dir.path(), source.clone(), options()).unwrap();
    assert_eq!(index.indexed_position(), 500);
    assert_eq!(index.count(&Filter::default()).unwrap(), 480);
    assert_eq!(index.count(&q("install_id:voice-install-0")).unwrap(), 0);
    index.close();
}

#[test]
fn an_index_with_another_schema_is_discarded_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut builder = tantivy::schema::Schema::builder();
        builder.add_text_field("other", tantivy::schema::TEXT);
        let index = tantivy::Index::create_in_dir(dir.path(), builder.build()).unwrap();
        let mut writer: tantivy::IndexWriter = index.writer(15_000_000).unwrap();
        writer.commit().unwrap();
    }
    let source = MemSource::new(dataset());
    let index = open_indexed(dir.path(), source);
    assert_eq!(index.count(&Filter::default()).unwrap(), 500);
    index.close();
}

// ---------------------------------------------------------------------------------------------
// kill -9 at random moments

const CRASH_ENV: &str = "SEARCH_CRASH_CHILD_DIR";
const CRASH_EVENTS: usize = 30_000;

fn crash_source() -> Arc<MemSource> {
    MemSource::new(
        (0..CRASH_EVENTS)
            .map(|i| {
                if i % 2 == 0 {
                    voice_event(i % 200)
                } else {
                    dictation_event(i % 300)
                }
            })
            .collect(),
    )
}

/// The child half of `kill_9_at_any_moment_leaves_a_consistent_index`: indexes until killed.
/// Does nothing unless started by that test.
#[test]
fn crash_child_process() {
    let Ok(dir) = std::env::var(CRASH_ENV) else {
        return;
    };
    let source = crash_source();
    let index = SearchIndex::open(
        Path::new(&dir),
        source,
        SearchOptions {
            commit_interval: Duration::from_millis(5),
            ..options()
        },
    )
    .unwrap();
    println!("child-open {}", index.indexed_position());
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn kill_9_at_any_moment_leaves_a_consistent_index() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut positions = Vec::new();
    for round in 0..6u64 {
        let mut child = std::process::Command::new(&exe)
            .args([
                "--exact",
                "search::tests::crash_child_process",
                "--nocapture",
            ])
            .env(CRASH_ENV, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill at varying moments: while opening, mid catch-up, mid commit.
        std::thread::sleep(Duration::from_millis(400 + round * 237));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Each restart resumes from a committed position; never beyond what exists.
        let (_, position) = indexer::open_or_create(dir.path()).unwrap();
        assert!(position <= CRASH_EVENTS as u64);
        positions.push(position);
    }
    eprintln!("positions after kills: {positions:?}");
    assert!(positions.windows(2).all(|w| w[0] <= w[1]), "{positions:?}");
    let source = crash_source();
    let index = SearchIndex::open(dir.path(), source.clone(), options()).unwrap();
    assert!(index.wait_indexed(CRASH_EVENTS as u64, Duration::from_secs(120)));
    // Exactly one document per stored event: no duplicates, no gaps.
    assert_eq!(
        index.count(&Filter::default()).unwrap(),
        CRASH_EVENTS as u64
    );
    assert_eq!(
        index.positions(&Filter::default()).unwrap(),
        (0..CRASH_EVENTS as u64).collect::<Vec<_>>()
    );
    assert_eq!(
        index.count(&q("level:error")).unwrap(),
        expected(&source, |e| e.level == Level::Error).len() as u64
    );
    index.close();
}

// ---------------------------------------------------------------------------------------------
// Benchmark (release): cargo test --release -- --ignored bench_index_million --nocapture

/// Synthetic events generated from their position (nothing held in memory); `stored` is
/// advanced by the bench's "store writer" before it notifies.
struct SyntheticSource {
    stored: std::sync::atomic::AtomicU64,
    spacing_ms: i64,
}

fn synthetic_event(seq: u64, spacing_ms: i64) -> Event {
    let i = seq as usize;
    let mut e = if i.is_multiple_of(3) {
        voice_event(i % 200)
    } else {
        dictation_event(i % 300)
    };
    e.timestamp = BASE + (seq as i64) * spacing_ms;
    e.received_at = e.timestamp + 120;
    let install = (seq.wrapping_mul(2_654_435_761) % 50_000) as u128;
    e.install_id = Some(Uuid::from_u128(install * 7_919 + 1).to_string());
    e.session_id = Some(Uuid::from_u128(((seq / 20) as u128) << 64 | install).to_string());
    if i.is_multiple_of(4) {
        e.user_id = Some(Uuid::from_u128(install * 31 + 5).to_string());
    }
    e.app_version = Some(format!("4.{}.{}", (seq / 100_000) % 10, seq % 3));
    e.device_model = Some(["iPhone15,2", "Pixel 8", "MacBookPro18,1"][i % 3].into());
    e.os_version = Some(format!("17.{}", i % 6));
    e.id = Uuid::from_u128((seq as u128) << 32 | 0x7000_0000);
    e
}

impl EventSource for SyntheticSource {
    fn events_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, Event)>, String> {
        let stored = self.stored.load(std::sync::atomic::Ordering::SeqCst);
        Ok((from..stored.min(from + limit as u64))
            .map(|s| (s, synthetic_event(s, self.spacing_ms)))
            .collect())
    }
    fn next_seq(&self) -> Result<u64, String> {
        Ok(self.stored.load(std::sync::atomic::Ordering::SeqCst))
    }
}

#[test]
#[ignore]
fn bench_index_million() {
    let total: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    // Whatever the count, the events span 30 days (a 7-day range holds 23% of them).
    let spacing_ms = (30 * DAY_MS / total as i64).max(1);
    let sample = serde_json::to_vec(&synthetic_event(1, spacing_ms))
        .unwrap()
        .len();
    println!("events: {total}, sample event JSON: {sample} bytes");

    // Ingest path: a "store writer" thread notifies batches of 500 as fast as it can.
    let source = Arc::new(SyntheticSource {
        stored: std::sync::atomic::AtomicU64::new(0),
        spacing_ms,
    });
    let index = SearchIndex::open(dir.path(), source.clone(), SearchOptions::default()).unwrap();
    let started = Instant::now();
    let mut seq = 0u64;
    while seq < total {
        let end = (seq + 500).min(total);
        let batch: Vec<(u64, Arc<Event>)> = (seq..end)
            .map(|s| (s, Arc::new(synthetic_event(s, spacing_ms))))
            .collect();
        source
            .stored
            .store(end, std::sync::atomic::Ordering::SeqCst);
        index.notify_committed(batch);
        seq = end;
    }
    let handed_off = started.elapsed().as_secs_f64();
    assert!(index.wait_indexed(total, Duration::from_secs(3_600)));
    let secs = started.elapsed().as_secs_f64();
    println!(
        "indexed {total} events in {secs:.1} s = {:.0} events/s (notify → committed; \
         generating + handing off took {handed_off:.1} s, {} batches dropped and caught up)",
        total as f64 / secs,
        index.stats().dropped_batches
    );
    let stats = index.stats();
    println!(
        "after ingest: {} segments, {} bytes = {:.1} bytes/event",
        stats.segments,
        stats.size_bytes,
        stats.size_bytes as f64 / total as f64
    );

    // Latency while idle, on the segments as they are after ingest.
    let latency = |label: &str, run: &dyn Fn()| {
        let mut times: Vec<f64> = (0..60)
            .map(|_| {
                let t = Instant::now();
                run();
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{label}: p50 {:.1} ms, p95 {:.1} ms",
            times[times.len() / 2],
            times[times.len() * 95 / 100]
        );
    };
    let last = BASE + total as i64 * spacing_ms;
    let week = Filter {
        q: s("\"request timed out\""),
        from_ms: Some(last - 7 * DAY_MS),
        to_ms: Some(last),
        ..Filter::default()
            .with(EventField::Product, "dictation")
            .with(EventField::Platform, "ios")
    };
    let page = index
        .search(&SearchRequest {
            filter: week.clone(),
            limit: 100,
            cursor: None,
            exact_total: false,
        })
        .unwrap();
    println!("query total: {}", page.total);
    latency("search text+2 filters+7d, limit 100", &|| {
        index
            .search(&SearchRequest {
                filter: week.clone(),
                limit: 100,
                cursor: None,
                exact_total: false,
            })
            .unwrap();
    });
    let word = Filter {
        q: s("timed"),
        ..week.clone()
    };
    println!("word query total: {}", index.count(&word).unwrap());
    latency("search word+2 filters+7d, limit 100", &|| {
        index
            .search(&SearchRequest {
                filter: word.clone(),
                limit: 100,
                cursor: None,
                exact_total: false,
            })
            .unwrap();
    });
    let broad = Filter {
        q: s("level:error OR level:warn"),
        from_ms: Some(last - 7 * DAY_MS),
        to_ms: Some(last),
        ..Filter::default()
    };
    latency("search broad (error OR warn, 7d)", &|| {
        index
            .search(&SearchRequest {
                filter: broad.clone(),
                limit: 100,
                cursor: None,
                exact_total: false,
            })
            .unwrap();
    });
    latency("search everything, limit 100", &|| {
        index
            .search(&SearchRequest {
                filter: Filter::default(),
                limit: 100,
                cursor: None,
                exact_total: false,
            })
            .unwrap();
    });
    let install = synthetic_event(12_345, spacing_ms).install_id.unwrap();
    latency("count by install_id", &|| {
        index
            .count(&Filter::default().with(EventField::InstallId, install.clone()))
            .unwrap();
    });
    latency("geo, 7 days", &|| {
        index
            .geo(
                &Filter {
                    from_ms: Some(last - 7 * DAY_MS),
                    ..Filter::default()
                },
                0,
            )
            .unwrap();
    });
    latency("timeseries hourly, 7 days", &|| {
        index
            .timeseries(
                &Filter {
                    from_ms: Some(last - 7 * DAY_MS),
                    to_ms: Some(last),
                    ..Filter::default()
                },
                HOUR_MS,
            )
            .unwrap();
    });
    // After merges settle (purge waits for running merges; nothing deleted here).
    let t = Instant::now();
    index.purge().unwrap();
    let stats = index.stats();
    println!(
        "merges settled: {} segments, {} bytes = {:.1} bytes/event ({:.1} s)",
        stats.segments,
        stats.size_bytes,
        stats.size_bytes as f64 / total as f64,
        t.elapsed().as_secs_f64()
    );
    // Where the bytes go (per component and per field, all segments).
    let usage = index.searcher().space_usage().unwrap();
    let mut components: BTreeMap<&str, u64> = BTreeMap::new();
    let mut per_field: BTreeMap<String, u64> = BTreeMap::new();
    for segment in usage.segments() {
        let parts = [
            ("termdict", segment.termdict()),
            ("postings", segment.postings()),
            ("positions", segment.positions()),
            ("fast", segment.fast_fields()),
            ("fieldnorms", segment.fieldnorms()),
        ];
        for (name, part) in parts {
            *components.entry(name).or_default() += part.total().get_bytes();
            for field in part.fields() {
                let key = format!("{name}:{}", field.field_name());
                *per_field.entry(key).or_default() += field.total().get_bytes();
            }
        }
        *components.entry("store").or_default() += segment.store().total().get_bytes();
        *components.entry("deletes").or_default() += segment.deletes().get_bytes();
    }
    for (name, bytes) in &components {
        println!("  {name}: {:.1} B/event", *bytes as f64 / total as f64);
    }
    let mut fields: Vec<(String, u64)> = per_field.into_iter().collect();
    fields.sort_by_key(|f| std::cmp::Reverse(f.1));
    for (name, bytes) in fields.iter().take(16) {
        println!("    {name}: {:.2} B/event", *bytes as f64 / total as f64);
    }
    latency("search word+2 filters+7d (settled)", &|| {
        index
            .search(&SearchRequest {
                filter: word.clone(),
                limit: 100,
                cursor: None,
                exact_total: false,
            })
            .unwrap();
    });
    latency("geo 7 days (settled)", &|| {
        index
            .geo(
                &Filter {
                    from_ms: Some(last - 7 * DAY_MS),
                    ..Filter::default()
                },
                0,
            )
            .unwrap();
    });
    latency("search text+2 filters+7d (settled)", &|| {
        index
            .search(&SearchRequest {
                filter: week.clone(),
                limit: 100,
                cursor: None,
                exact_total: false,
            })
            .unwrap();
    });
    index.close();
}

/// Events sampled at 0.25 count four times in the time series, breakdowns and geo; the stored
/// counts stay beside them, and the scan hands out the same weights.
#[test]
fn sampled_events_are_weighted_in_every_aggregation() {
    let event = |id: usize, rate: f64, platform: &str| Event {
        sample_rate: rate,
        platform: s(platform),
        install_id: Some(format!("install-{id}")),
        country_code: s("US"),
        region_code: s("CA"),
        ..base_event("app", "app_opened", BASE + id as i64 * MINUTE_MS)
    };
    let source = MemSource::new(vec![
        event(1, 0.25, "ios"),
        event(2, 0.25, "ios"),
        event(3, 1.0, "android"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let index = open_indexed(dir.path(), source);
    let all = Filter::default();

    let rows = index.breakdown(&all, "platform", 10, 0).unwrap().rows;
    let rows: Vec<_> = rows
        .iter()
        .map(|r| (r.value.as_str(), r.events, r.raw_events, r.installs))
        .collect();
    assert_eq!(rows, vec![("ios", 8, 2, 2), ("android", 1, 1, 1)]);

    let series = index.timeseries(&all, DAY_MS).unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!((series[0].total, series[0].raw_total), (9, 3));
    assert_eq!(series[0].by_level.info, 9);

    let geo = index.geo(&all, 0).unwrap().rows;
    assert_eq!((geo[0].events, geo[0].raw_events), (9, 3));
    assert_eq!(
        (geo[0].regions[0].events, geo[0].regions[0].raw_events),
        (9, 3)
    );

    // k-anonymity: android (one install) folds into "other"; the only country (three
    // installs) folds whole under a bound of 5 and stays under a bound of 3.
    let folded = index.breakdown(&all, "platform", 10, 2).unwrap();
    assert_eq!(folded.suppressed_groups, 1);
    let rows: Vec<_> = folded
        .rows
        .iter()
        .map(|r| (r.value.as_str(), r.events, r.installs))
        .collect();
    assert_eq!(rows, vec![("ios", 8, 2), ("other", 1, 1)]);
    let geo = index.geo(&all, 5).unwrap();
    assert_eq!(geo.suppressed_groups, 1);
    assert_eq!(geo.rows[0].country_code, "other");
    assert_eq!(geo.rows[0].installs, 3);
    let geo = index.geo(&all, 3).unwrap();
    assert_eq!(
        (geo.suppressed_groups, geo.rows[0].country_code.as_str()),
        (0, "US")
    );

    let scanned = index.scan(&all, &["platform"], None).unwrap();
    let mut pairs: Vec<(String, f64)> = (0..scanned.len())
        .map(|i| {
            let platform = &scanned.columns[0];
            (
                platform.value(platform.ids[i]).unwrap().to_string(),
                scanned.weights[i],
            )
        })
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    assert_eq!(
        pairs,
        vec![
            ("android".to_string(), 1.0),
            ("ios".to_string(), 4.0),
            ("ios".to_string(), 4.0)
        ]
    );
}

/// A scan's string values are global ids: the same value has the same id in every segment and
/// in later scans; the time range is cut exactly inside segments; `present` keeps the events
/// with a value in one of its fields. The same with columns decoded per document and kept, and
/// read from the fast columns each time (no memory for them).
#[test]
fn scans_share_ids_across_segments_and_cut_time_exactly() {
    for scan_cache_mb in [64, 0] {
        scan_ids_and_time_cuts(scan_cache_mb);
    }
}

fn scan_ids_and_time_cuts(scan_cache_mb: usize) {
    let events: Vec<Event> = (0..300).map(dictation_event).collect();
    let source = MemSource::new(events[..100].to_vec());
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open(
        dir.path(),
        source.clone(),
        SearchOptions {
            scan_cache_mb,
            ..options()
        },
    )
    .unwrap();
    assert!(index.wait_indexed(source.next(), WAIT));
    index.notify_committed(source.append(events[100..200].to_vec()));
    assert!(index.wait_indexed(source.next(), WAIT));
    let rows = |scanned: &Scanned| -> Vec<(i64, Option<String>, Option<String>)> {
        let mut rows: Vec<_> = (0..scanned.len())
            .map(|i| {
                let value = |c: &ScanColumn| c.value(c.ids[i]).map(str::to_string);
                let (platform, code) = (&scanned.columns[0], &scanned.columns[1]);
                (scanned.timestamps[i], value(platform), value(code))
            })
            .collect();
        rows.sort();
        rows
    };
    let expected = |from: i64, to: i64, only_errors: bool| {
        let mut rows: Vec<_> = source
            .all()
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| from <= e.timestamp && e.timestamp < to)
            .filter(|e| !only_errors || e.error.is_some())
            .map(|e| {
                let code = e.error.and_then(|err| err.code);
                (e.timestamp, e.platform, code)
            })
            .collect();
        rows.sort();
        rows
    };
    let columns = ["platform", "error_code"];
    let first = index.scan(&Filter::default(), &columns, None).unwrap();
    assert_eq!(rows(&first), expected(i64::MIN, i64::MAX, false));
    let ids_of = |scanned: &Scanned| -> BTreeMap<String, BTreeSet<u32>> {
        let platform = &scanned.columns[0];
        let mut ids: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        for id in &platform.ids {
            ids.entry(platform.value(*id).unwrap().to_string())
                .or_default()
                .insert(*id);
        }
        ids
    };
    let before = ids_of(&first);
    assert_eq!(before.len(), 4);
    assert!(before.values().all(|ids| ids.len() == 1), "{before:?}");

    index.notify_committed(source.append(events[200..].to_vec()));
    assert!(index.wait_indexed(source.next(), WAIT));
    let (from, to) = (BASE + 30 * 45_000 + 7, BASE + 250 * 45_000 + 7);
    let cut = Filter {
        from_ms: Some(from),
        to_ms: Some(to),
        ..Filter::default()
    };
    let later = index.scan(&cut, &columns, None).unwrap();
    assert_eq!(rows(&later), expected(from, to, false));
    assert_eq!(ids_of(&later), before);
    assert_eq!(
        later.columns[0].dictionary.generation,
        first.columns[0].dictionary.generation
    );

    let errors = Filter {
        present: vec![EventField::ErrorCode],
        ..cut
    };
    let scanned = index.scan(&errors, &columns, None).unwrap();
    assert!(!scanned.is_empty());
    assert_eq!(rows(&scanned), expected(from, to, true));
    // Segments with deleted documents: those are skipped.
    let early = BASE + 50 * 45_000;
    let before_early = Filter {
        to_ms: Some(early),
        ..Filter::default()
    };
    assert_eq!(index.delete(&before_early, 0..u64::MAX).unwrap(), 50);
    source.remove_where(|e| e.timestamp < early);
    let rest = index.scan(&Filter::default(), &columns, None).unwrap();
    assert_eq!(rest.len(), 250);
    assert_eq!(rows(&rest), expected(i64::MIN, i64::MAX, false));
    // A metric's values, and one no event has.
    let with_metric = index
        .scan(&Filter::default(), &columns, Some("audio_seconds"))
        .unwrap();
    let mut values: Vec<(i64, u64)> = (0..with_metric.len())
        .map(|i| (with_metric.timestamps[i], with_metric.metric[i].to_bits()))
        .collect();
    values.sort();
    let mut wanted: Vec<(i64, u64)> = source
        .all()
        .into_iter()
        .map(|(_, e)| (e.timestamp, e.metrics["audio_seconds"].to_bits()))
        .collect();
    wanted.sort();
    assert_eq!(values, wanted);
    let missing = index
        .scan(&Filter::default(), &columns, Some("not_sent"))
        .unwrap();
    assert_eq!(missing.len(), 250);
    assert!(missing.metric.iter().all(|v| v.is_nan()));
    // Timestamps (as 32-bit offsets: the events span minutes), two columns and a metric of
    // 300 events, in whichever segments are live.
    let kept = index.stats().scan_cache_bytes;
    match scan_cache_mb {
        0 => assert_eq!(kept, 0),
        _ => assert!((300 * 20..=600 * 20).contains(&kept), "{kept} bytes"),
    }
    index.close();
}

#[test]
fn in_parallel_keeps_the_order_and_every_item() {
    let source = MemSource::new(Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let index = open_indexed(dir.path(), source);
    let items: Vec<u64> = (0..1000).collect();
    let squares = index.in_parallel(items, |n| n * n);
    assert_eq!(squares, (0..1000).map(|n| n * n).collect::<Vec<u64>>());
    assert_eq!(index.in_parallel(Vec::<u8>::new(), |n| n), Vec::<u8>::new());
    index.close();
}

/// Global ordinals keep a column's ids between scans, except a column of more values than the
/// per-column bound, and drop the least recently scanned columns past the total bound.
#[test]
fn global_ordinals_keep_small_columns_within_their_bounds() {
    let source = MemSource::new((0..300).map(dictation_event).collect());
    let dir = tempfile::tempdir().unwrap();
    let index = open_indexed(dir.path(), source);
    let searcher = index.searcher();
    // platform has 4 values, module 3, install_id 12.
    let ordinals = ordinals::GlobalOrdinals::with_limits(5, 6);
    let generation = |column: &str| ordinals.tables(&searcher, column).unwrap().0.generation;
    let platform = generation("platform");
    assert_eq!(generation("platform"), platform);
    let installs = generation("install_id");
    assert_ne!(generation("install_id"), installs, "12 values are not kept");
    assert_eq!(generation("platform"), platform);
    // module (3) and platform (4) are more than 6: platform, scanned longer ago, goes.
    let module = generation("module");
    assert_eq!(generation("module"), module);
    assert_ne!(generation("platform"), platform);
    index.close();
}
