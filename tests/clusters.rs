//! Error clusters against a real server: fingerprints at ingest, the pass and its cursor across
//! a restart, escalation, resolve → regression, ignore until more events, erasure, audit, and
//! webhook alerts to a real local receiver.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{json, Value};

fn config(extra: &str) -> String {
    format!(
        "[clusters]\nschedule = \"0 0 0 1 1 *\"\n[clusters.escalation]\nerror_events = 5\nerror_installs = 50\nfatal_events = 1000\nfatal_installs = 100\n{extra}\n[[products]]\nid = \"app\"\n{}",
        tokens_toml()
    )
}

fn errors(n: usize, version: &str, code: &str, install: &str) -> String {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            json!({"name": "recognition_failed", "level": "warn", "platform": "ios", "module": "dictation", "install_id": install,
                   "app_version": version, "error": {"domain": "speech", "code": code, "message": format!("Timeout after {} ms", 1000 + i)}})
        })
        .collect();
    Value::Array(events).to_string()
}

fn run_pass(server: &TestServer) -> Value {
    let resp = request(
        "POST",
        &format!("{}/api/v1/clusters/run", server.url),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        None,
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()
}

fn patch(server: &TestServer, id: &str, body: Value) -> Resp {
    request(
        "PATCH",
        &format!("{}/api/v1/clusters/{id}", server.url),
        &[
            ("authorization", &format!("Bearer {ADMIN_TOKEN}")),
            ("content-type", "application/json"),
        ],
        Some(body.to_string().into_bytes()),
    )
}

fn clusters(server: &TestServer, query: &str) -> Vec<Value> {
    server
        .admin_get(&format!("/api/v1/clusters?{query}"))
        .json()["clusters"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn fingerprints_passes_and_the_cursor_survive_a_restart() {
    let config = config("");
    let server = TestServer::start(&config, &[]);
    assert_eq!(
        server
            .post_events("", &errors(3, "3.3.0", "timeout", "i1"))
            .json()["accepted"],
        3
    );
    assert_eq!(
        server
            .post_events("", &errors(2, "3.4.0", "timeout", "i2"))
            .json()["accepted"],
        2
    );
    assert_eq!(
        server
            .post_events("", &errors(1, "3.4.0", "no_mic", "i2"))
            .json()["accepted"],
        1
    );
    server.post_events(
        "",
        &json!([{"name": "app_opened", "install_id": "i1"}]).to_string(),
    );
    let stored = server.stored();
    let timeout_prints: Vec<_> = stored
        .iter()
        .filter(|e| e.error.as_ref().and_then(|x| x.code.as_deref()) == Some("timeout"))
        .map(|e| e.fingerprint.clone().unwrap())
        .collect();
    assert_eq!(timeout_prints.len(), 5);
    assert!(
        timeout_prints.iter().all(|f| *f == timeout_prints[0]),
        "one problem across versions is one fingerprint"
    );
    let other = stored
        .iter()
        .find(|e| e.error.as_ref().and_then(|x| x.code.as_deref()) == Some("no_mic"))
        .unwrap();
    assert_ne!(other.fingerprint.as_ref(), Some(&timeout_prints[0]));
    assert!(stored
        .iter()
        .find(|e| e.name == "app_opened")
        .unwrap()
        .fingerprint
        .is_none());

    let report = run_pass(&server);
    assert_eq!(report["clustered"], 6);
    assert_eq!(report["new_clusters"], 2);
    let list = clusters(&server, "sort=count");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], timeout_prints[0].as_str());
    assert_eq!(list[0]["count"], 5.0);
    assert_eq!(list[0]["raw_count"], 5);
    assert_eq!(list[0]["count_estimated"], false);
    assert_eq!(list[0]["distinguished_by"], json!([]));
    assert_eq!(list[0]["installs"], 2);
    assert_eq!(list[0]["installs_estimated"], false);
    assert_eq!(list[0]["app_versions"], json!({"3.3.0": 3, "3.4.0": 2}));
    assert_eq!(list[0]["title"], "recognition_failed: speech/timeout");
    assert_eq!(list[0]["daily"].as_array().unwrap().len(), 14);
    assert_eq!(list[0]["daily"][13]["count"], 5.0);
    // A second pass counts nothing twice.
    assert_eq!(run_pass(&server)["clustered"], 0);

    let dir = server.stop();
    let server = TestServer::start_in(dir, &config, &[]);
    assert_eq!(run_pass(&server)["clustered"], 0, "the cursor is persisted");
    assert_eq!(clusters(&server, "sort=count")[0]["count"], 5.0);
    server.post_events("", &errors(2, "3.4.0", "timeout", "i3"));
    assert_eq!(run_pass(&server)["clustered"], 2);
    server.settle();
    let one = server
        .admin_get(&format!("/api/v1/clusters/{}", timeout_prints[0]))
        .json();
    assert_eq!(one["cluster"]["count"], 7.0);
    assert_eq!(one["cluster"]["daily"].as_array().unwrap().len(), 30);
    assert_eq!(one["samples"].as_array().unwrap().len(), 7);
    assert_eq!(one["samples"][0]["fingerprint"], timeout_prints[0].as_str());
    let timeline = server
        .admin_get(&format!("/api/v1/clusters/{}/timeline", timeout_prints[0]))
        .json();
    assert_eq!(timeline["days"][29]["count"], 7.0);
    let stacked = server.admin_get("/api/v1/clusters/timeline").json();
    let today = &stacked["days"][13];
    assert_eq!(
        today["error"].as_f64().unwrap() + today["warn"].as_f64().unwrap(),
        8.0
    );
}

#[test]
fn escalation_resolve_regression_ignore_and_audit() {
    let server = TestServer::start(&config(""), &[]);
    server.post_events("", &errors(3, "3.3.0", "timeout", "i1"));
    run_pass(&server);
    let id = clusters(&server, "")[0]["id"].as_str().unwrap().to_string();
    assert_eq!(clusters(&server, "")[0]["severity"], "warn");
    server.post_events("", &errors(3, "3.3.0", "timeout", "i1"));
    run_pass(&server);
    assert_eq!(
        clusters(&server, "severity=error").len(),
        1,
        "6 events in 24 h pass the threshold of 5"
    );

    // Resolve in 3.4.0: an event from an older version does not reopen it; a newer one does.
    let resp = patch(
        &server,
        &id,
        json!({"status": "resolved", "in_version": "3.4.0"}),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["status"], "resolved");
    assert_eq!(resp.json()["resolved_in_version"], "3.4.0");
    server.post_events("", &errors(1, "3.3.0", "timeout", "i1"));
    run_pass(&server);
    assert_eq!(clusters(&server, "")[0]["status"], "resolved");
    server.post_events("", &errors(1, "3.5.0-beta.1", "timeout", "i9"));
    run_pass(&server);
    assert_eq!(clusters(&server, "status=regressed").len(), 1);

    // Ignore until 3 more events.
    assert_eq!(
        patch(&server, &id, json!({"status": "ignored", "more_events": 3})).json()["status"],
        "ignored"
    );
    server.post_events("", &errors(2, "3.5.0", "timeout", "i1"));
    run_pass(&server);
    assert_eq!(clusters(&server, "")[0]["status"], "ignored");
    server.post_events("", &errors(2, "3.5.0", "timeout", "i1"));
    run_pass(&server);
    assert_eq!(
        clusters(&server, "")[0]["status"],
        "open",
        "the ignore condition was met"
    );

    // Bad requests name the problem; viewers cannot change clusters.
    let resp = patch(&server, &id, json!({"status": "resolved", "color": "red"}));
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (400, "invalid_parameter")
    );
    let resp = patch(&server, &id, json!({"status": "ignored", "more_events": 0}));
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(
        patch(&server, "nope", json!({"status": "open"})).status,
        404
    );
    let viewer = request(
        "PATCH",
        &format!("{}/api/v1/clusters/{id}", server.url),
        &[
            ("authorization", &format!("Bearer {VIEWER_TOKEN}")),
            ("content-type", "application/json"),
        ],
        Some(b"{\"status\":\"open\"}".to_vec()),
    );
    assert_eq!(viewer.status, 403);
    assert_eq!(
        server
            .admin_get("/api/v1/clusters?status=bogus")
            .error_code(),
        "invalid_parameter"
    );

    let audit = server
        .admin_get("/api/v1/audit?action=cluster.update")
        .json();
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["result"]["to"], "resolved");
    assert_eq!(entries[0]["result"]["to"], "ignored");
    assert_eq!(entries[0]["target"], format!("cluster:{id}"));
}

/// `n` `recognition_failed: speech/network_timeout` errors from one platform and module, each
/// sampled at `rate`.
fn timeouts(n: usize, platform: &str, module: &str, rate: f64) -> String {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            json!({"name": "recognition_failed", "level": "warn", "platform": platform, "module": module,
                   "install_id": format!("{platform}-{i}"), "sample_rate": rate,
                   "error": {"domain": "speech", "code": "network_timeout"}})
        })
        .collect();
    Value::Array(events).to_string()
}

#[test]
fn sampled_errors_count_weighted_and_same_titles_say_what_differs() {
    let server = TestServer::start(&config(""), &[]);
    // Two events sampled at 25 % stand for 8: past the error threshold of 5 that 2 are not.
    server.post_events("", &timeouts(2, "ios", "dictation", 0.25));
    server.post_events("", &timeouts(3, "android", "dictation", 1.0));
    server.post_events("", &timeouts(1, "ios", "keyboard", 1.0));
    server.post_events("", &timeouts(1, "android", "keyboard", 0.5));
    server.post_events("", &errors(1, "3.3.0", "no_mic", "i1"));
    run_pass(&server);
    let list = clusters(&server, "sort=count");
    let row = |platform: &str, module: &str| {
        list.iter()
            .find(|c| c["platform"] == platform && c["module"] == module)
            .unwrap_or_else(|| panic!("{platform}/{module} in {list:?}"))
            .clone()
    };
    let sampled = row("ios", "dictation");
    assert_eq!(list[0]["id"], sampled["id"], "sorted by the weighted count");
    assert_eq!(sampled["count"], 8.0);
    assert_eq!(sampled["raw_count"], 2);
    assert_eq!(sampled["count_estimated"], true);
    assert_eq!(sampled["severity"], "error");
    assert_eq!(sampled["daily"][13]["count"], 8.0);
    assert_eq!(sampled["daily"][13]["raw_count"], 2);
    let unsampled = row("android", "dictation");
    assert_eq!(unsampled["count"], 3.0);
    assert_eq!(unsampled["count_estimated"], false);
    assert_eq!(unsampled["severity"], "warn", "3 events stay below 5");
    assert_eq!(row("android", "keyboard")["count"], 2.0);
    let stacked = server.admin_get("/api/v1/clusters/timeline").json();
    let today = &stacked["days"][13];
    assert_eq!(
        today["error"].as_f64().unwrap() + today["warn"].as_f64().unwrap(),
        8.0 + 3.0 + 1.0 + 2.0 + 1.0
    );

    // Four clusters share a title; each says the platform and module that set it apart.
    for (platform, module) in [
        ("ios", "dictation"),
        ("android", "dictation"),
        ("ios", "keyboard"),
        ("android", "keyboard"),
    ] {
        let cluster = row(platform, module);
        assert_eq!(
            cluster["title"],
            "recognition_failed: speech/network_timeout"
        );
        assert_eq!(
            cluster["distinguished_by"],
            json!([{"field": "platform", "value": platform}, {"field": "module", "value": module}])
        );
    }
    let alone = list.iter().find(|c| c["error_code"] == "no_mic").unwrap();
    assert_eq!(alone["distinguished_by"], json!([]));
    // Also on one cluster, and whatever the list's filter.
    let one = server
        .admin_get(&format!(
            "/api/v1/clusters/{}",
            sampled["id"].as_str().unwrap()
        ))
        .json();
    assert_eq!(
        one["cluster"]["distinguished_by"],
        sampled["distinguished_by"]
    );
    let resolved = patch(
        &server,
        sampled["id"].as_str().unwrap(),
        json!({"status": "resolved"}),
    );
    assert_eq!(
        resolved.json()["distinguished_by"],
        sampled["distinguished_by"]
    );
    let filtered = clusters(&server, "platform=ios");
    assert_eq!(filtered.len(), 3, "two timeouts and no_mic on ios");
    for cluster in filtered
        .iter()
        .filter(|c| c["error_code"] == "network_timeout")
    {
        assert_eq!(cluster["distinguished_by"][0]["value"], "ios");
    }
}

#[test]
fn erasure_takes_the_subject_out_of_its_clusters() {
    let server = TestServer::start(&config(""), &[]);
    server.post_events("", &errors(3, "3.3.0", "timeout", "gone"));
    server.post_events("", &errors(2, "3.3.0", "timeout", "stays"));
    run_pass(&server);
    assert_eq!(clusters(&server, "")[0]["count"], 5.0);
    let resp = request(
        "DELETE",
        &format!("{}/api/v1/subjects/install/gone", server.url),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        None,
    );
    assert_eq!(resp.json()["events_removed"], 3);
    let after = &clusters(&server, "")[0];
    assert_eq!(after["count"], 2.0);
    assert_eq!(after["installs"], 1);
}

/// A local webhook receiver: answers the first `fail_first` requests with 500, then 200, and
/// keeps every request's headers and body.
/// Requests a receiver got: headers (lower-case names) and body.
type Received = Arc<Mutex<Vec<(Vec<(String, String)>, Vec<u8>)>>>;

fn receiver(fail_first: usize) -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let trimmed = line.trim_end();
                if trimmed.is_empty() {
                    break;
                }
                if let Some((k, v)) = trimmed.split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let length: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            log.lock().unwrap().push((headers, body));
            let status = if n < fail_first {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (url, seen)
}

#[test]
fn alerts_are_signed_retried_and_throttled() {
    let (url, seen) = receiver(1);
    let extra = format!("[alerts]\nui_base_url = \"http://telemetry.example\"\n[[alerts.webhooks]]\nname = \"ops\"\nurl = \"{url}\"\nsecret = \"s3cret-0123456789\"\nmin_severity = \"warn\"\n");
    let server = TestServer::start(&config(&extra), &[]);
    server.post_events("", &errors(6, "3.3.0", "timeout", "i1"));
    run_pass(&server);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while seen.lock().unwrap().len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "one failed attempt (500) and one retry");
    let (headers, body) = &requests[1];
    let signature = headers
        .iter()
        .find(|(k, _)| k == "x-telemetryd-signature")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(telemetryd::clusters::verify_signature(
        body,
        "s3cret-0123456789",
        &signature
    ));
    assert!(!telemetryd::clusters::verify_signature(
        body, "wrong", &signature
    ));
    let payload: Value = serde_json::from_slice(body).unwrap();
    assert!(payload["text"]
        .as_str()
        .unwrap()
        .contains("recognition_failed"));
    let details = &payload["telemetryd"];
    assert_eq!(details["event"], "new");
    assert_eq!(details["product"], "app");
    assert_eq!(details["severity"], "error");
    assert_eq!(details["count"], 6.0);
    assert!(details["url"]
        .as_str()
        .unwrap()
        .starts_with("http://telemetry.example/clusters/"));

    // A regression of the same cluster within 30 minutes is throttled.
    let id = details["cluster_id"].as_str().unwrap().to_string();
    patch(&server, &id, json!({"status": "resolved"}));
    server.post_events("", &errors(1, "3.3.1", "timeout", "i1"));
    run_pass(&server);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let log = loop {
        let log = server.admin_get("/api/v1/alerts").json();
        if log["entries"].as_array().unwrap().len() >= 2 || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(log["entries"][0]["outcome"], "throttled");
    assert_eq!(log["entries"][1]["outcome"], "delivered");
    assert_eq!(log["stats"]["delivered"], 1);
    assert_eq!(log["stats"]["retries"], 1);
    assert_eq!(seen.lock().unwrap().len(), 2, "nothing more was sent");
    assert_eq!(clusters(&server, "")[0]["status"], "regressed");
    let metrics = server.get("/metrics").text();
    assert!(metrics.contains("telemetryd_alerts_delivered_total 1"));
    assert!(metrics.contains("telemetryd_alerts_throttled_total 1"));
}

/// Reads of the clusters API answer while a pass (or a status change or erasure) holds the
/// clusters' lock: the reads are made and answered from inside the lock holder, and a pass
/// requested meanwhile completes only after the holder lets go.
#[test]
fn reads_do_not_wait_for_a_pass() {
    use std::sync::mpsc;
    use std::time::Duration;
    let server = TestServer::start(&config(""), &[]);
    assert_eq!(
        server
            .post_events("", &errors(3, "1.0", "E1", "i-1"))
            .json()["accepted"],
        3
    );
    run_pass(&server);
    let id = clusters(&server, "")[0]["id"].as_str().unwrap().to_string();
    let url = server.url.clone();
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let (pass_tx, pass_rx) = mpsc::channel();
    let answers = server
        .state
        .clusters
        .erase_events(|| {
            // A pass asked for now waits for this holder...
            let (run_url, run_auth) = (url.clone(), auth.clone());
            std::thread::spawn(move || {
                let resp = request(
                    "POST",
                    &format!("{run_url}/api/v1/clusters/run"),
                    &[("authorization", &run_auth)],
                    None,
                );
                pass_tx.send(resp.status).unwrap();
            });
            // ...while every read answers (a reader that waited would never send).
            let (tx, rx) = mpsc::channel();
            let paths = [
                "/api/v1/clusters".to_string(),
                "/api/v1/clusters/timeline".to_string(),
                format!("/api/v1/clusters/{id}"),
                format!("/api/v1/clusters/{id}/timeline"),
            ];
            for path in paths {
                let (url, auth, tx) = (url.clone(), auth.clone(), tx.clone());
                std::thread::spawn(move || {
                    let resp = request(
                        "GET",
                        &format!("{url}{path}"),
                        &[("authorization", &auth)],
                        None,
                    );
                    tx.send((path, resp.status, resp.json())).unwrap();
                });
            }
            let answers: Vec<_> = (0..4)
                .map(|_| {
                    rx.recv_timeout(Duration::from_secs(120))
                        .expect("a read waited for the lock")
                })
                .collect();
            assert!(
                pass_rx.try_recv().is_err(),
                "the pass ran while the lock was held"
            );
            Ok::<_, telemetryd::error::StoreError>((Vec::new(), answers))
        })
        .unwrap()
        .1;
    for (path, status, body) in answers {
        assert_eq!(status, 200, "{path}: {body}");
    }
    assert_eq!(pass_rx.recv().unwrap(), 200);
}
