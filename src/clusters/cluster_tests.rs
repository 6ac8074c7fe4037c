//! Behaviour tests of the cluster lifecycle: folding, escalation by thresholds and by spike,
//! resolve → regression, ignore conditions, admin validation, idempotent evaluation and
//! persistence round trips.

use std::collections::HashMap;

use super::cluster::{MAX_VERSIONS, OTHER_KEY};
use super::fingerprint::tests::event;
use super::*;
use crate::model::{Event, Level};
use crate::timespan::{DAY_MS, HOUR_MS, MINUTE_MS};

/// 2023-11-14T00:00:00Z, a Tuesday.
const T0: i64 = 1_699_920_000_000;

fn ev(ts: i64, version: &str, install: &str, level: Level) -> Event {
    let mut e = event("recognition_failed", level, Some("-1001"), "timed out");
    e.timestamp = ts;
    e.received_at = ts;
    e.app_version = Some(version.into());
    e.install_id = Some(install.into());
    e.fingerprint = fingerprint(&e);
    e
}

fn new_cluster(first: &Event) -> Cluster {
    let fp = first.fingerprint.clone().unwrap();
    let mut c = Cluster::new(first, &fp);
    c.add(first);
    c
}

fn add_n(c: &mut Cluster, n: u64, ts: i64, version: &str, install_prefix: &str) {
    for i in 0..n {
        c.add(&ev(
            ts,
            version,
            &format!("{install_prefix}{}", i % 3),
            Level::Warn,
        ));
    }
}

fn status(request: &str) -> StatusRequest {
    serde_json::from_str(request).unwrap()
}

#[test]
fn fold_counts_and_first_evaluation_is_new_once() {
    let rules = EscalationRules::default();
    let events = vec![
        ev(T0 + 5 * HOUR_MS, "1.0.0", "a", Level::Warn),
        ev(T0 + 2 * HOUR_MS, "1.1.0", "b", Level::Error),
        ev(T0 + DAY_MS + 1, "1.1.0", "a", Level::Warn),
    ];
    let mut clusters = HashMap::new();
    let summary = fold(&mut clusters, &events);
    assert_eq!(summary.events, 3);
    assert_eq!(summary.clustered, 3);
    assert_eq!(summary.new_clusters.len(), 1);
    let id = &summary.new_clusters[0];
    let c = &clusters[id];
    assert_eq!(c.id, *id);
    assert_eq!(c.title, "recognition_failed: NSURLErrorDomain/-1001");
    assert_eq!(c.count, 3);
    assert_eq!(c.first_seen, T0 + 2 * HOUR_MS);
    assert_eq!(c.last_seen, T0 + DAY_MS + 1);
    assert_eq!(c.last_event_id, Some(events[2].id));
    assert_eq!(c.installs.estimate(), (2, true));
    assert_eq!(c.app_versions["1.1.0"], 2);
    assert_eq!(c.platforms["ios"], 3);
    assert_eq!(c.daily[&T0], 2);
    assert_eq!(c.daily[&(T0 + DAY_MS)], 1);
    assert_eq!(c.hourly.len(), 3);
    assert_eq!(c.level_seen, Level::Error);

    let now = T0 + DAY_MS + HOUR_MS;
    let evaluation = evaluate_pending(&mut clusters, &rules, now);
    assert_eq!(evaluation.evaluated, vec![id.clone()]);
    assert_eq!(evaluation.changes, vec![(id.clone(), Change::New)]);
    assert_eq!(
        clusters[id].severity,
        Severity::Error,
        "from the error-level event"
    );
    // Idempotent, and an idle cluster needs no evaluation at all.
    assert!(!clusters[id].needs_evaluation(now));
    assert_eq!(
        evaluate_pending(&mut clusters, &rules, now),
        Evaluation::default()
    );
    assert!(clusters
        .get_mut(id)
        .unwrap()
        .evaluate(&rules, now)
        .is_empty());
}

#[test]
fn fold_skips_non_clusterable_and_fingerprints_legacy_events() {
    let mut info = ev(T0, "1.0.0", "a", Level::Info);
    info.error = None;
    info.fingerprint = None;
    let mut legacy = ev(T0, "1.0.0", "a", Level::Error);
    let expected = legacy.fingerprint.take().unwrap();
    let mut clusters = HashMap::new();
    let summary = fold(&mut clusters, [&info, &legacy]);
    assert_eq!(summary.skipped, 1);
    assert_eq!(summary.fingerprinted_now, 1);
    assert_eq!(summary.new_clusters, vec![expected]);
}

#[test]
fn escalation_by_event_threshold_in_window() {
    let rules = EscalationRules::default();
    let now = T0 + 10 * DAY_MS;
    let mut c = new_cluster(&ev(now - 3 * DAY_MS, "1.0.0", "a0", Level::Warn));
    // Old events (outside the 24 h window) do not count towards the window.
    add_n(&mut c, 500, now - 3 * DAY_MS, "1.0.0", "a");
    assert_eq!(c.evaluate(&rules, now), vec![Change::New]);
    assert_eq!(c.severity, Severity::Warn);

    add_n(&mut c, 99, now - 2 * HOUR_MS, "1.0.0", "b");
    assert!(c.evaluate(&rules, now).is_empty());
    assert_eq!(c.window_counts(24, now).0, 99);
    add_n(&mut c, 1, now - HOUR_MS, "1.0.0", "b");
    assert_eq!(
        c.evaluate(&rules, now),
        vec![Change::Escalated {
            from: Severity::Warn,
            to: Severity::Error
        }]
    );
    assert!(c.evaluate(&rules, now).is_empty(), "idempotent");
    add_n(&mut c, 900, now, "1.0.0", "b");
    assert_eq!(
        c.evaluate(&rules, now),
        vec![Change::Escalated {
            from: Severity::Error,
            to: Severity::Fatal
        }]
    );
    // Severity does not drop when the window calms down.
    assert!(c.evaluate(&rules, now + 5 * DAY_MS).is_empty());
    assert_eq!(c.severity, Severity::Fatal);
}

#[test]
fn escalation_by_install_threshold_and_custom_rules() {
    let rules = EscalationRules {
        error_installs: 3,
        fatal_installs: 5,
        ..EscalationRules::default()
    };
    rules.validate().unwrap();
    let now = T0 + 10 * DAY_MS;
    let mut c = new_cluster(&ev(now - HOUR_MS, "1.0.0", "i0", Level::Warn));
    c.add(&ev(now - HOUR_MS, "1.0.0", "i1", Level::Warn));
    c.add(&ev(now - HOUR_MS, "1.0.0", "i1", Level::Warn));
    assert_eq!(c.evaluate(&rules, now), vec![Change::New]);
    c.add(&ev(now - 30 * HOUR_MS, "1.0.0", "old", Level::Warn));
    assert!(
        c.evaluate(&rules, now).is_empty(),
        "install outside the window"
    );
    c.add(&ev(now, "1.0.0", "i2", Level::Warn));
    assert_eq!(
        c.evaluate(&rules, now),
        vec![Change::Escalated {
            from: Severity::Warn,
            to: Severity::Error
        }]
    );
    c.add(&ev(now, "1.0.0", "i3", Level::Warn));
    c.add(&ev(now, "1.0.0", "i4", Level::Warn));
    assert_eq!(
        c.evaluate(&rules, now),
        vec![Change::Escalated {
            from: Severity::Error,
            to: Severity::Fatal
        }]
    );
    assert_eq!(c.installs.estimate(), (6, true));
}

#[test]
fn a_cluster_born_over_the_threshold_reports_new_only() {
    let rules = EscalationRules::default();
    let now = T0 + 10 * DAY_MS;
    let mut c = new_cluster(&ev(now, "1.0.0", "a", Level::Warn));
    add_n(&mut c, 499, now, "1.0.0", "a");
    // No history: a first burst is not a "spike", it is the new-cluster alert.
    assert_eq!(c.evaluate(&rules, now), vec![Change::New]);
    assert_eq!(c.severity, Severity::Error);
    assert!(!c.escalating);
}

#[test]
fn spike_against_ten_times_max_for_a_young_cluster() {
    let rules = EscalationRules::default();
    let start = T0 + 20 * DAY_MS;
    let mut c = new_cluster(&ev(start, "1.0.0", "a", Level::Warn));
    // Three days of 1-2 events an hour: max 2, forecast 20.
    for h in 0..72 {
        add_n(
            &mut c,
            1 + (h % 2) as u64,
            start + h * HOUR_MS,
            "1.0.0",
            "a",
        );
    }
    let now = start + 72 * HOUR_MS + 10 * MINUTE_MS;
    assert_eq!(c.evaluate(&rules, now - 2 * HOUR_MS), vec![Change::New]);
    add_n(&mut c, 20, now, "1.0.0", "a");
    assert!(c.evaluate(&rules, now).is_empty(), "20 is not above 20");
    add_n(&mut c, 1, now, "1.0.0", "a");
    assert_eq!(
        c.evaluate(&rules, now),
        vec![Change::Spike {
            hourly: 21,
            forecast: 20.0
        }]
    );
    assert!(c.escalating);
    assert!(c.evaluate(&rules, now).is_empty(), "idempotent");
    // The next hour still sees the spike in the previous hour: no second alert.
    assert!(c.evaluate(&rules, now + HOUR_MS).is_empty());
    assert!(c.escalating);
    assert!(c.needs_evaluation(now + 2 * HOUR_MS));
    // Two hours later it is over; a new spike alerts again.
    assert!(c.evaluate(&rules, now + 2 * HOUR_MS).is_empty());
    assert!(!c.escalating);
    add_n(&mut c, 300, now + 2 * HOUR_MS, "1.0.0", "a");
    assert!(matches!(
        c.evaluate(&rules, now + 2 * HOUR_MS)[..],
        [Change::Escalated { .. }, Change::Spike { hourly: 300, .. }]
    ));
}

#[test]
fn spike_against_a_week_of_history() {
    let rules = EscalationRules::default();
    let start = T0 + 30 * DAY_MS;
    let mut c = new_cluster(&ev(start, "1.0.0", "a", Level::Warn));
    for h in 0..(9 * 24) {
        add_n(
            &mut c,
            18 + (h % 5) as u64,
            start + h * HOUR_MS,
            "1.0.0",
            "a",
        );
    }
    let now = start + 9 * 24 * HOUR_MS;
    c.evaluate(&rules, now - HOUR_MS);
    c.evaluate(&rules, now + 2 * HOUR_MS);
    assert!(!c.escalating);
    // ~20/h with low variance: the forecast is ~120; 80 is within it.
    add_n(&mut c, 80, now, "1.0.0", "a");
    assert!(c.evaluate(&rules, now).is_empty());
    add_n(&mut c, 120, now, "1.0.0", "a");
    let changes = c.evaluate(&rules, now);
    match &changes[..] {
        [Change::Spike {
            hourly: 200,
            forecast,
        }] => assert!(*forecast > 100.0 && *forecast < 130.0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn spike_needs_the_minimum_hourly_events() {
    let rules = EscalationRules {
        spike_min_events: 50,
        ..EscalationRules::default()
    };
    let now = T0 + 40 * DAY_MS;
    let mut c = new_cluster(&ev(now - DAY_MS, "1.0.0", "a", Level::Warn));
    c.evaluate(&rules, now - DAY_MS);
    add_n(&mut c, 40, now, "1.0.0", "a");
    assert!(
        c.evaluate(&rules, now).is_empty(),
        "40 > 10 × 1 but below 50"
    );
    add_n(&mut c, 10, now, "1.0.0", "a");
    assert!(matches!(
        c.evaluate(&rules, now)[..],
        [Change::Spike { hourly: 50, .. }]
    ));
}

#[test]
fn resolve_in_version_then_regression_by_newer_version() {
    let rules = EscalationRules {
        spike_min_events: u64::MAX,
        ..EscalationRules::default()
    };
    let now = T0 + 50 * DAY_MS;
    let mut c = new_cluster(&ev(now - DAY_MS, "1.1.0", "a", Level::Error));
    c.evaluate(&rules, now - DAY_MS);
    c.set_status(
        status(r#"{"status":"resolved","in_version":" 1.2.0 "}"#),
        now,
    )
    .unwrap();
    assert_eq!(
        c.status,
        Status::Resolved {
            in_version: Some("1.2.0".into())
        }
    );
    assert_eq!(c.status_changed_at, now);
    // Old versions, and the fixed version itself, do not reopen it.
    for v in ["1.1.0", "1.2.0", "1.2.0-rc.1", "nightly"] {
        c.add(&ev(now + 1, v, "a", Level::Error));
    }
    let mut e = ev(now + 1, "x", "a", Level::Error);
    e.app_version = None;
    c.add(&e);
    assert!(c.evaluate(&rules, now + 1).is_empty());
    assert!(matches!(c.status, Status::Resolved { .. }));
    // Newer versions do; the newest seen in the pass is reported.
    c.add(&ev(now + 2, "1.2.1", "a", Level::Error));
    c.add(&ev(now + 2, "1.10.0", "b", Level::Error));
    c.add(&ev(now + 2, "1.3.0", "c", Level::Error));
    assert_eq!(
        c.evaluate(&rules, now + 3),
        vec![Change::Regressed {
            version: Some("1.10.0".into())
        }]
    );
    assert_eq!(c.status, Status::Regressed);
    assert_eq!(c.status_changed_at, now + 3);
    assert!(c.evaluate(&rules, now + 3).is_empty(), "idempotent");
    // Regressed clusters alert on escalation again.
    add_n(&mut c, 100, now + 3, "1.3.0", "z");
    assert_eq!(c.evaluate(&rules, now + 3), vec![]);
    assert_eq!(c.severity, Severity::Error);
    add_n(&mut c, 1000, now + 3, "1.3.0", "z");
    assert_eq!(
        c.evaluate(&rules, now + 3),
        vec![Change::Escalated {
            from: Severity::Error,
            to: Severity::Fatal
        }]
    );
}

#[test]
fn resolve_without_version_regresses_on_any_new_event() {
    let rules = EscalationRules::default();
    let now = T0 + 60 * DAY_MS;
    let mut c = new_cluster(&ev(now - DAY_MS, "2.0.0", "a", Level::Error));
    c.evaluate(&rules, now - DAY_MS);
    c.set_status(StatusRequest::new(StatusKind::Resolved), now)
        .unwrap();
    // Stored before the resolution but folded after it: not a regression.
    c.add(&ev(now - 10, "2.0.0", "a", Level::Error));
    assert!(c.evaluate(&rules, now + 1).is_empty());
    c.add(&ev(now + 5, "1.0.0", "a", Level::Error));
    assert_eq!(
        c.evaluate(&rules, now + 6),
        vec![Change::Regressed {
            version: Some("1.0.0".into())
        }]
    );
    // Escalations while resolved are recorded but not reported.
    c.set_status(StatusRequest::new(StatusKind::Resolved), now + 7)
        .unwrap();
    let mut quiet = c.clone();
    for i in 0..150 {
        let mut e = ev(now + 3, "2.0.0", &format!("x{i}"), Level::Error);
        e.received_at = now; // before the second resolution
        quiet.add(&e);
    }
    assert!(quiet.evaluate(&rules, now + 8).is_empty());
    assert_eq!(quiet.severity, Severity::Fatal);
}

#[test]
fn ignore_until_more_events_installs_time_and_forever() {
    let rules = EscalationRules::default();
    let now = T0 + 70 * DAY_MS;
    let mut c = new_cluster(&ev(now - DAY_MS, "1.0.0", "a", Level::Warn));
    add_n(&mut c, 9, now - DAY_MS, "1.0.0", "a");
    c.evaluate(&rules, now - DAY_MS);

    c.set_status(status(r#"{"status":"ignored","more_events":5}"#), now)
        .unwrap();
    assert_eq!(
        c.status,
        Status::Ignored {
            until: IgnoreUntil::MoreEvents {
                count: 5,
                baseline: 10
            }
        }
    );
    add_n(&mut c, 4, now, "1.0.0", "a");
    assert!(c.evaluate(&rules, now).is_empty());
    add_n(&mut c, 1, now, "1.0.0", "a");
    assert_eq!(c.evaluate(&rules, now), vec![Change::Unignored]);
    assert_eq!(c.status, Status::Open);
    assert!(c.evaluate(&rules, now).is_empty());

    c.set_status(status(r#"{"status":"ignored","more_installs":2}"#), now)
        .unwrap();
    add_n(&mut c, 50, now, "1.0.0", "a");
    c.add(&ev(now, "1.0.0", "new-1", Level::Warn));
    assert!(c.evaluate(&rules, now).is_empty());
    c.add(&ev(now, "1.0.0", "new-2", Level::Warn));
    assert_eq!(c.evaluate(&rules, now), vec![Change::Unignored]);

    let until = now + HOUR_MS;
    c.set_status(
        status(&format!(r#"{{"status":"ignored","until_ms":{until}}}"#)),
        now,
    )
    .unwrap();
    // While ignored, escalations are not reported, even when the cluster is unignored later.
    add_n(&mut c, 200, now, "1.0.0", "b");
    assert!(c.evaluate(&rules, now).is_empty());
    assert_eq!(c.severity, Severity::Error);
    assert!(c.escalating, "the burst is a spike, recorded silently");
    assert!(c.evaluate(&rules, until - 1).is_empty());
    assert!(c.needs_evaluation(until));
    assert_eq!(c.evaluate(&rules, until), vec![Change::Unignored]);

    c.set_status(
        status(r#"{"status":"ignored","until":"2100-01-01T00:00:00Z"}"#),
        now,
    )
    .unwrap();
    assert_eq!(
        c.status,
        Status::Ignored {
            until: IgnoreUntil::Time {
                until_ms: 4_102_444_800_000
            }
        }
    );
    c.set_status(status(r#"{"status":"ignored"}"#), now)
        .unwrap();
    add_n(&mut c, 10_000, now, "1.0.0", "c");
    assert!(c.evaluate(&rules, now + 400 * DAY_MS).is_empty());
    assert_eq!(
        c.status,
        Status::Ignored {
            until: IgnoreUntil::Forever
        }
    );
    c.set_status(status(r#"{"status":"open"}"#), now).unwrap();
    assert_eq!(c.status, Status::Open);
}

#[test]
fn status_requests_are_validated_by_field() {
    let now = T0;
    let mut c = new_cluster(&ev(now, "1.0.0", "a", Level::Warn));
    let cases = [
        (r#"{"status":"open","in_version":"1.0"}"#, "in_version"),
        (r#"{"status":"resolved","more_events":3}"#, "more_events"),
        (r#"{"status":"resolved","in_version":"  "}"#, "in_version"),
        (r#"{"status":"ignored","until":"tomorrow"}"#, "until"),
        (
            r#"{"status":"ignored","until":"2001-01-01T00:00:00Z"}"#,
            "until",
        ),
        (r#"{"status":"ignored","until_ms":5}"#, "until_ms"),
        (r#"{"status":"ignored","more_events":0}"#, "more_events"),
        (
            r#"{"status":"ignored","more_events":3,"more_installs":3}"#,
            "more_installs",
        ),
        (r#"{"status":"ignored","in_version":"1"}"#, "in_version"),
    ];
    for (body, field) in cases {
        let err = c.set_status(status(body), now).unwrap_err();
        assert_eq!(err.field(), field, "{body}: {err}");
        assert_eq!(err.code(), "invalid_field");
        assert!(err.to_string().starts_with(field));
    }
    assert_eq!(c.status, Status::Open, "failed requests change nothing");
    let long = format!(
        r#"{{"status":"resolved","in_version":"{}"}}"#,
        "9".repeat(200)
    );
    assert_eq!(
        c.set_status(status(&long), now).unwrap_err().field(),
        "in_version"
    );
    for bad in [
        r#"{"status":"regressed"}"#,
        r#"{"status":"open","typo":1}"#,
        "{}",
    ] {
        assert!(serde_json::from_str::<StatusRequest>(bad).is_err(), "{bad}");
    }
}

#[test]
fn persistence_round_trip_keeps_behaviour() {
    let rules = EscalationRules::default();
    let now = T0 + 80 * DAY_MS;
    let mut c = new_cluster(&ev(now - DAY_MS, "1.0.0", "a", Level::Error));
    for i in 0..1500 {
        c.add(&ev(
            now - 2 * HOUR_MS,
            "1.0.0",
            &format!("i{i}"),
            Level::Error,
        ));
    }
    c.evaluate(&rules, now);
    c.set_status(status(r#"{"status":"resolved","in_version":"1.2.0"}"#), now)
        .unwrap();
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["status"], "resolved");
    assert_eq!(json["in_version"], "1.2.0");
    assert_eq!(json["severity"], "fatal");
    let text = serde_json::to_string(&c).unwrap();
    let mut back: Cluster = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), json);
    let (installs, exact) = back.installs.estimate();
    assert!(
        !exact && (installs as f64 - 1501.0).abs() < 100.0,
        "{installs}"
    );
    assert!(back.evaluate(&rules, now).is_empty());
    back.add(&ev(now + 1, "1.3.0", "a", Level::Error));
    assert_eq!(
        back.evaluate(&rules, now + 1),
        vec![Change::Regressed {
            version: Some("1.3.0".into())
        }]
    );
    let ignored: Cluster = {
        let mut i = back.clone();
        i.set_status(status(r#"{"status":"ignored","more_events":10}"#), now)
            .unwrap();
        serde_json::from_str(&serde_json::to_string(&i).unwrap()).unwrap()
    };
    assert_eq!(
        ignored.status,
        Status::Ignored {
            until: IgnoreUntil::MoreEvents {
                count: 10,
                baseline: 1502
            }
        }
    );
}

#[test]
fn buckets_and_versions_are_pruned() {
    let rules = EscalationRules::default();
    let now = T0 + 100 * DAY_MS;
    let mut c = new_cluster(&ev(now - 60 * DAY_MS, "0.1.0", "a", Level::Warn));
    for d in 0..60 {
        c.add(&ev(now - d * DAY_MS, &format!("1.{d}.0"), "a", Level::Warn));
        c.add(&ev(now - d * DAY_MS, &format!("2.{d}.0"), "a", Level::Warn));
        c.add(&ev(now - d * DAY_MS, "3.0.0", "a", Level::Warn));
    }
    assert!(c.app_versions.len() > MAX_VERSIONS);
    c.evaluate(&rules, now);
    assert_eq!(c.daily.len(), 36);
    assert!(*c.daily.keys().next().unwrap() >= now - 35 * DAY_MS);
    assert_eq!(c.hourly.len(), 9);
    assert!(*c.hourly.keys().next().unwrap() >= now - 8 * DAY_MS);
    assert_eq!(c.app_versions.len(), MAX_VERSIONS);
    assert_eq!(c.app_versions["3.0.0"], 60);
    assert_eq!(c.app_versions.values().sum::<u64>(), c.count);
    assert!(c.app_versions[OTHER_KEY] > 0);
    assert_eq!(c.count, 181);
}

#[test]
fn erasure_takes_an_install_back_out() {
    let now = T0 + 90 * DAY_MS;
    let a = ev(now, "1.0.0", "erase-me", Level::Error);
    let b = ev(now - 2 * DAY_MS, "1.1.0", "keep", Level::Error);
    let mut c = new_cluster(&a);
    c.add(&b);
    c.remove(&a);
    assert_eq!(c.count, 1);
    assert_eq!(c.installs.estimate(), (1, true));
    assert_eq!(c.window_counts(24, now).1, 0);
    assert!(!c.app_versions.contains_key("1.0.0"));
    assert_eq!(c.platforms["ios"], 1);
    assert!(!c.daily.contains_key(&crate::timespan::day_start(now)));
    assert_eq!(c.hourly.values().sum::<u64>(), 1);
}

#[test]
fn sampled_events_count_weighted_towards_thresholds() {
    let rules = EscalationRules::default();
    let now = T0 + 10 * DAY_MS;
    let sampled = |ts: i64, rate: f64| {
        let mut e = ev(ts, "1.0.0", "a", Level::Warn);
        e.sample_rate = rate;
        e
    };
    let mut c = new_cluster(&sampled(now - 2 * HOUR_MS, 0.1));
    assert_eq!(c.evaluate(&rules, now), vec![Change::New]);
    // 9 more events sampled at 10 %: 10 stored stand for 100, the error threshold.
    for _ in 0..8 {
        c.add(&sampled(now - 2 * HOUR_MS, 0.1));
    }
    assert_eq!((c.count, c.weighted_count), (9, 90.0));
    assert!(c.evaluate(&rules, now).is_empty());
    let last = sampled(now - HOUR_MS, 0.1);
    c.add(&last);
    assert_eq!(c.window_counts(24, now).0, 100);
    assert!(c.is_estimated());
    assert_eq!(
        c.evaluate(&rules, now),
        vec![Change::Escalated {
            from: Severity::Warn,
            to: Severity::Error
        }]
    );
    assert_eq!(
        c.weighted_daily[&crate::timespan::day_start(now - HOUR_MS)],
        100.0
    );
    assert_eq!(c.weighted_hourly[&(now - HOUR_MS)], 10.0);

    // Ignoring until 15 more events: two sampled events at 10 % are 20.
    c.set_status(status(r#"{"status":"ignored","more_events":15}"#), now)
        .unwrap();
    c.add(&sampled(now, 0.1));
    assert!(c.evaluate(&rules, now).is_empty());
    c.add(&sampled(now, 0.1));
    assert_eq!(c.evaluate(&rules, now), vec![Change::Unignored]);

    // An erasure takes an event's weight out with it.
    c.remove(&last);
    assert_eq!((c.count, c.weighted_count), (11, 110.0));
    assert_eq!(c.weighted_hourly.get(&(now - HOUR_MS)), None);
}

#[test]
fn clusters_stored_before_weighting_count_each_event_once() {
    let mut c = new_cluster(&ev(T0, "1.0.0", "a", Level::Warn));
    add_n(&mut c, 4, T0 + HOUR_MS, "1.0.0", "b");
    let mut stored = serde_json::to_value(&c).unwrap();
    for member in ["weighted_count", "weighted_daily", "weighted_hourly"] {
        stored.as_object_mut().unwrap().remove(member);
    }
    let mut loaded: Cluster = serde_json::from_value(stored).unwrap();
    assert!(loaded.weighted_count.is_nan());
    loaded.fill_missing_weights();
    assert_eq!(loaded.weighted_count, 5.0);
    assert_eq!(loaded.weighted_hourly[&(T0 + HOUR_MS)], 4.0);
    assert_eq!(loaded.weighted_daily[&T0], 5.0);
    assert!(!loaded.is_estimated());
    // A cluster that has its weights keeps them.
    let mut kept: Cluster = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
    kept.fill_missing_weights();
    assert_eq!(kept.weighted_count, 5.0);
}
