//! The traffic of `telemetryd bench --mode posthog|aptabase|sentry`: batches as the PostHog,
//! Aptabase and Sentry SDKs send them (posthog-node's `{"api_key", "batch", "sent_at"}` to
//! `/batch/`; Aptabase's array of at most 25 events to `/api/v0/events` with its `App-Key`;
//! a Sentry envelope of event items to `/api/{project_id}/envelope/` with `X-Sentry-Auth`),
//! with the same share of errors as the other modes (`$exception` events for PostHog, events
//! with an exception and its frames for Sentry, the others message events). Their answers list
//! refused events by index like the native answer (a Sentry envelope's items are its events),
//! so the runner counts them the same way.

use serde_json::{json, Value};

use super::{install_id, now_ms, pick, BenchArgs, Request};

/// Aptabase's limit of events per request.
pub const APTABASE_MAX_EVENTS: usize = 25;

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// One posthog-node batch from one install.
pub fn posthog_request(rng: &mut fastrand::Rng, args: &BenchArgs) -> Request {
    let install = install_id(rng, args.installs);
    let version = pick(rng, &["3.2.0", "3.3.0", "3.3.1", "3.4.0-beta.2"]);
    let session = uuid::Uuid::new_v4().to_string();
    let mut ids = Vec::with_capacity(args.batch_size());
    let events: Vec<Value> = (0..args.batch_size())
        .map(|_| {
            let id = uuid::Uuid::new_v4().to_string();
            ids.push(id.clone());
            let mut properties = json!({
                "$lib": "posthog-node", "$lib_version": "5.70.0", "$app_version": version,
                "$os": pick(rng, &["Mac OS X", "Windows", "Linux"]), "$session_id": session,
                "$process_person_profile": false,
            });
            let event = if rng.f64() * 100.0 < args.error_percent {
                super::merge(
                    &mut properties,
                    json!({"$exception_list": [{
                        "type": "TypeError",
                        "value": format!("Cannot read properties of undefined (reading '{}')", pick(rng, &["id", "items", "total"])),
                        "stacktrace": {"type": "raw", "frames": [
                            {"function": "checkout", "filename": "app/cart.js", "lineno": rng.u32(10..400), "colno": 12, "in_app": true},
                            {"function": "handle", "filename": "app/server.js", "lineno": 88, "colno": 5, "in_app": true}]}}]}),
                );
                "$exception"
            } else {
                super::merge(
                    &mut properties,
                    json!({"plan": pick(rng, &["free", "team", "enterprise"]),
                           "items": rng.u32(1..20), "latency_ms": rng.u32(20..900)}),
                );
                pick(rng, &["page_viewed", "checkout_done", "search_run", "item_added"])
            };
            json!({"event": event, "distinct_id": install, "uuid": id, "type": "capture",
                   "timestamp": rfc3339(now_ms() - rng.i64(0..5000)), "properties": properties})
        })
        .collect();
    let body =
        json!({"api_key": args.posthog_token, "batch": events, "sent_at": rfc3339(now_ms())});
    Request {
        path: "/batch/".into(),
        content_type: "application/json",
        headers: Vec::new(),
        body: serde_json::to_vec(&body).unwrap_or_default(),
        items: ids.len(),
        ids,
    }
}

/// One Aptabase SDK request: at most 25 events of one session.
pub fn aptabase_request(rng: &mut fastrand::Rng, args: &BenchArgs) -> Request {
    let count = args.batch_size().min(APTABASE_MAX_EVENTS);
    let session = format!("{}{:08}", now_ms() / 1000, rng.u32(..100_000_000));
    let version = pick(rng, &["1.4.0", "1.5.0", "1.5.1"]);
    let os = pick(rng, &["macOS", "Windows", "Linux", "iOS", "Android"]);
    let events: Vec<Value> = (0..count)
        .map(|_| {
            json!({"timestamp": rfc3339(now_ms() - rng.i64(0..5000)), "sessionId": session,
                   "eventName": pick(rng, &["app_started", "screen_viewed", "export_done", "settings_changed"]),
                   "systemProps": {"isDebug": false, "locale": pick(rng, &["en-US", "de-DE", "fr-FR"]),
                                   "osName": os, "osVersion": "14.2", "appVersion": version,
                                   "engineName": "Electron", "engineVersion": "31.0.1",
                                   "sdkVersion": "aptabase-electron@0.3.1"},
                   "props": {"screen": pick(rng, &["home", "editor", "settings"]), "duration_ms": rng.u32(10..5000)}})
        })
        .collect();
    Request {
        path: "/api/v0/events".into(),
        content_type: "application/json",
        headers: vec![("app-key", args.aptabase_app_key.clone())],
        body: serde_json::to_vec(&events).unwrap_or_default(),
        items: count,
        ids: Vec::new(),
    }
}

/// One Sentry envelope of event items from one install (the SDKs send one event per envelope;
/// the bench sends `--batch-size` to compare with the other modes per event), to the project and
/// with the public key of `--sentry-dsn`.
pub fn sentry_request(rng: &mut fastrand::Rng, args: &BenchArgs) -> Request {
    let (project, key) = crate::config::sentry_dsn_parts(&args.sentry_dsn).unwrap_or(("1", ""));
    let install = install_id(rng, args.installs);
    let release = format!("shop@{}", pick(rng, &["3.2.0", "3.3.0", "3.3.1"]));
    let mut body = json!({"sent_at": rfc3339(now_ms())}).to_string();
    let mut ids = Vec::with_capacity(args.batch_size());
    for _ in 0..args.batch_size() {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut event = json!({
            "event_id": id, "timestamp": (now_ms() - rng.i64(0..5000)) as f64 / 1000.0,
            "platform": "python", "release": release, "environment": "production",
            "sdk": {"name": "sentry.python", "version": "2.75.0"},
            "contexts": {"runtime": {"name": "CPython", "version": "3.12.3"},
                         "os": {"name": pick(rng, &["Linux", "Darwin", "Windows"])}},
            "user": {"id": install}, "tags": {"plan": pick(rng, &["free", "team", "enterprise"])},
        });
        if rng.f64() * 100.0 < args.error_percent {
            super::merge(
                &mut event,
                json!({"level": "error", "exception": {"values": [{
                    "type": "KeyError",
                    "value": format!("'{}'", pick(rng, &["id", "items", "total"])),
                    "stacktrace": {"frames": [
                        {"function": "handle", "filename": "app/server.py", "lineno": 88, "in_app": true},
                        {"function": "checkout", "filename": "app/cart.py", "lineno": rng.u32(10..400), "in_app": true}]}}]}}),
            );
        } else {
            super::merge(
                &mut event,
                json!({"level": "info", "message": pick(rng, &["cart loaded", "search run", "item added"])}),
            );
        }
        let payload = event.to_string();
        body.push_str(&format!(
            "\n{}\n{payload}",
            json!({"type": "event", "length": payload.len()})
        ));
        ids.push(id);
    }
    body.push('\n');
    Request {
        path: format!("/api/{project}/envelope/"),
        content_type: "application/x-sentry-envelope",
        headers: vec![(
            "x-sentry-auth",
            format!("Sentry sentry_key={key}, sentry_version=7, sentry_client=telemetryd-bench"),
        )],
        body: body.into_bytes(),
        items: ids.len(),
        ids,
    }
}
