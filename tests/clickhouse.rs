//! The ClickHouse sink against a real ClickHouse server (Debian's `clickhouse-server`, which
//! `scripts/test.sh` installs), each test with its own throwaway server on a free port: events
//! arrive with their fields, erasure reaches ClickHouse and says so, ClickHouse down does not
//! touch ingest and the sink catches up, retention drops old partitions, and a SIGKILL of
//! telemetryd mid-delivery leaves exactly one row per event. OTLP metric points reach their own
//! table (copied when the sink is added, then followed, replaced when a point changes, erased
//! with their install), and on a two-shard cluster erasure and retention reach every shard.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_telemetryd");
const DATABASE: &str = "telemetry_test";
/// How long a condition the test waits for may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(40);
/// The ClickHouse user's password: the sink reads it from a file.
const PASSWORD: &str = "ch-test-pw-4711";

/// The ClickHouse server binary: `$CLICKHOUSE_SERVER`, else Debian's.
fn clickhouse_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CLICKHOUSE_SERVER") {
        return PathBuf::from(path);
    }
    ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("clickhouse-server is not installed (scripts/test.sh installs it: apt-get install clickhouse-server)")
}

/// A throwaway ClickHouse server: its own data dir, HTTP and native ports, killed when dropped.
struct ClickHouse {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl ClickHouse {
    fn start() -> ClickHouse {
        Self::start_with(free_port(), "")
    }

    /// A server whose native protocol listens on `tcp_port`, with `extra` in its config.
    fn start_with(tcp_port: u16, extra: &str) -> ClickHouse {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let root = dir.path().display();
        std::fs::write(
            dir.path().join("config.xml"),
            format!(
                r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <http_port>{port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>{extra}
  <listen_host>127.0.0.1</listen_host>
  <path>{root}/data/</path>
  <tmp_path>{root}/tmp/</tmp_path>
  <format_schema_path>{root}/format_schemas/</format_schema_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>5368709</mark_cache_size>
</yandex>
"#
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("password"), format!("{PASSWORD}\n")).unwrap();
        std::fs::write(
            dir.path().join("users.xml"),
            format!(r#"<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users><default><password>{PASSWORD}</password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
"#),
        )
        .unwrap();
        let mut server = ClickHouse {
            dir,
            port,
            child: None,
        };
        server.resume();
        server
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the server process on its data dir and waits until it answers: it, not another
    /// server on its port, so the process must still run.
    fn resume(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
        let child = Command::new(clickhouse_binary())
            .arg(format!(
                "--config-file={}",
                self.dir.path().join("config.xml").display()
            ))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("clickhouse-server starts");
        let (port, url, log) = (self.port, self.url(), self.dir.path().join("server.log"));
        let child = self.child.insert(child);
        wait_for("ClickHouse answers", || {
            if let Some(status) = child.try_wait().unwrap() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("clickhouse-server exited ({status}):\n{log}");
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            let resp = request(
                "POST",
                &url,
                &[
                    ("x-clickhouse-user", "default"),
                    ("x-clickhouse-key", PASSWORD),
                ],
                Some(b"SELECT 1".to_vec()),
            );
            (resp.status == 200).then_some(())
        });
    }

    /// Kills the server process (SIGKILL).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The answer to `sql`, which must succeed.
    fn query(&self, sql: &str) -> String {
        let resp = request(
            "POST",
            &self.url(),
            &[
                ("x-clickhouse-user", "default"),
                ("x-clickhouse-key", PASSWORD),
            ],
            Some(sql.as_bytes().to_vec()),
        );
        assert_eq!(resp.status, 200, "{sql}: {}", resp.text());
        resp.text()
    }

    /// The rows of `sql` as JSON objects.
    fn rows(&self, sql: &str) -> Vec<Value> {
        self.query(&format!("{sql} FORMAT JSONEachRow"))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// One number `sql` answers.
    fn number(&self, sql: &str) -> u64 {
        self.query(sql).trim().parse().unwrap()
    }

    /// Rows in the events table once duplicates are merged away, and distinct ids.
    fn events_final(&self) -> (u64, u64) {
        let answer = self.query(&format!(
            "SELECT count(), uniqExact(id) FROM {DATABASE}.events FINAL FORMAT TSV"
        ));
        let mut parts = answer.split_whitespace().map(|n| n.parse().unwrap());
        (parts.next().unwrap(), parts.next().unwrap())
    }

    fn table_exists(&self) -> bool {
        self.number(&format!(
            "SELECT count() FROM system.tables WHERE database = '{DATABASE}' AND name = 'events'"
        )) == 1
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` until it gives a value; fails the test after [`PATIENCE`].
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(started.elapsed() < PATIENCE, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The voice-sdk product takes its metric points' install id from this attribute.
const INSTALL_ATTRIBUTE: &str = "app.install_id";

/// The shipped config with voice-sdk's install id attribute, and `extra` after it.
fn otlp_config(extra: &str) -> String {
    let text = shipped_config_text().replacen(
        "[products.otlp]\nservice_names = []\n",
        &format!(
            "[products.otlp]\nservice_names = []\ninstall_id_attribute = \"{INSTALL_ATTRIBUTE}\"\n"
        ),
        1,
    );
    assert!(
        text.contains(INSTALL_ATTRIBUTE),
        "the shipped config has [products.otlp]"
    );
    format!("{text}{extra}")
}

/// An OTLP/JSON metrics export of `metrics` for voice-sdk.
fn export(metrics: Value) -> String {
    json!({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "atlas-sdk"}}]},
        "scopeMetrics": [{"metrics": metrics}]
    }]})
    .to_string()
}

fn attrs(pairs: &[(&str, &str)]) -> Value {
    pairs
        .iter()
        .map(|(k, v)| json!({"key": k, "value": {"stringValue": v}}))
        .collect()
}

/// A cumulative counter report of one install (`surface` = cli).
fn counter(install: &str, start_ms: i64, time_ms: i64, value: i64) -> Value {
    json!({"name": "atlas_sdk_events_total", "unit": "1", "sum": {
        "aggregationTemporality": 2, "isMonotonic": true,
        "dataPoints": [{
            "attributes": attrs(&[("surface", "cli"), (INSTALL_ATTRIBUTE, install)]),
            "startTimeUnixNano": (start_ms * 1_000_000).to_string(),
            "timeUnixNano": (time_ms * 1_000_000).to_string(),
            "asInt": value.to_string()
        }]
    }})
}

/// Posts an OTLP/JSON metrics export to voice-sdk; every point must be accepted.
fn post_metrics(url: &str, metrics: Value) {
    let resp = request(
        "POST",
        &format!("{url}/otlp/voice-sdk/v1/metrics"),
        &[("content-type", "application/json")],
        Some(export(metrics).into_bytes()),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(
        resp.json()
            .get("partialSuccess")
            .is_none_or(|p| p.get("rejectedDataPoints").is_none()),
        "{}",
        resp.text()
    );
}

fn sink_toml(clickhouse: &ClickHouse, batch_size: usize) -> String {
    format!(
        "\n[[sinks]]\nname = \"warehouse\"\nkind = \"clickhouse\"\nurl = \"{}\"\ndatabase = \"{DATABASE}\"\ntable = \"events\"\nuser = \"default\"\npassword_file = \"{}\"\nbatch_size = {batch_size}\nflush_interval_ms = 20\ntimeout_ms = 5000\n",
        clickhouse.url(),
        clickhouse.dir.path().join("password").display()
    )
}

/// The JSON answer of an admin call to `path` of the server at `url`, which must be 200.
fn admin_call(method: &str, url: &str, path: &str) -> Value {
    let resp = request(
        method,
        &format!("{url}{path}"),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        None,
    );
    assert_eq!(resp.status, 200, "{method} {path}: {}", resp.text());
    resp.json()
}

/// The first sink's entry in `/api/v1/stats` of the server at `url`. Each one that differs
/// from the last seen is printed (shown when the test fails: a wait that gave up says what it
/// saw).
fn sink_status(url: &str) -> Value {
    thread_local!(static LAST: std::cell::RefCell<String> = Default::default());
    let status = admin_call("GET", url, "/api/v1/stats")["store"]["sinks"][0].clone();
    let mut shown = status.clone();
    if let Some(fields) = shown.as_object_mut() {
        // Times and rates change on every call; the rest is what a wait looks at.
        for key in [
            "lag_seconds",
            "delivered_per_second",
            "last_delivery_at",
            "last_error_at",
        ] {
            fields.remove(key);
        }
    }
    let shown = shown.to_string();
    LAST.with(|last| {
        if *last.borrow() != shown {
            eprintln!("sink status: {shown}");
            *last.borrow_mut() = shown;
        }
    });
    status
}

/// Erases an install through the API of the server at `url`; the erasure's sink answers.
fn erase_install(url: &str, install: &str) -> Value {
    let path = format!("/api/v1/subjects/install/{install}");
    admin_call("DELETE", url, &path)["sinks"].clone()
}

fn caught_up(url: &str) -> Option<Value> {
    let status = sink_status(url);
    (status["lag_events"] == 0 && status["last_error"].is_null()).then_some(status)
}

/// `n` events, each of its own install named `prefix-…` (installs are rate limited).
fn batch(prefix: &str, n: usize) -> (Vec<String>, String) {
    let ids: Vec<String> = (0..n).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let events: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "eventName": "app_opened", "installId": format!("{prefix}-{id}"), "platform": "ios", "appVersion": "3.3.1"}))
        .collect();
    (ids, json!({"events": events}).to_string())
}

#[test]
fn events_arrive_with_their_fields_and_erasure_reaches_clickhouse() {
    let clickhouse = ClickHouse::start();
    let config = format!("{}{}", shipped_config_text(), sink_toml(&clickhouse, 500));
    let server = TestServer::start(&config, &[]);
    let id = uuid::Uuid::new_v4().to_string();
    let now = telemetryd::model::now_ms();
    let body = json!({"sent_at": now, "events": [{
        "eventId": id, "eventName": "recognition_failed", "level": "ERROR", "installId": "inst-1",
        "userId": "u-42", "sessionId": "s-1", "platform": "ios", "channel": "keyboard", "module": "dictation",
        "appVersion": "3.3.1", "releaseChannel": "beta", "osFamily": "ios", "osVersion": "18.1",
        "deviceModel": "iPhone16,2", "timestamp": now - 5_000,
        "error": {"domain": "speech", "code": "network_timeout", "message": "Timeout after 3021 ms", "stack": "at Recognizer.start()"},
        "dims": {"language": "de", "offline": true},
        "metrics": {"latency_ms": 3021}
    }]});
    let resp = server.post_events("?product=dictation-app", &body.to_string());
    assert_eq!(resp.json()["accepted"], 1, "{}", resp.text());
    let (kept, others) = batch("inst-2", 20);
    assert_eq!(
        server.post_events("?product=dictation-app", &others).json()["accepted"],
        20
    );

    wait_for("the sink delivers 21 events", || {
        (clickhouse.table_exists() && clickhouse.events_final() == (21, 21)).then_some(())
    });
    let stored = server.event(&id);
    let row = &clickhouse.rows(&format!(
        "SELECT * FROM {DATABASE}.events WHERE id = '{id}'"
    ))[0];
    for (column, member) in [
        ("product", "product"),
        ("name", "name"),
        ("level", "level"),
        ("install_id", "install_id"),
        ("user_id", "user_id"),
        ("session_id", "session_id"),
        ("platform", "platform"),
        ("channel", "channel"),
        ("module", "module"),
        ("app_version", "app_version"),
        ("release_channel", "release_channel"),
        ("os_family", "os_family"),
        ("os_version", "os_version"),
        ("device_model", "device_model"),
        ("source", "source"),
    ] {
        assert_eq!(row[column], stored[member], "column {column}");
    }
    assert_eq!(row["timestamp_ms"], stored["timestamp"].to_string());
    assert_eq!(row["received_at_ms"], stored["received_at"].to_string());
    assert_eq!(row["error_domain"], "speech");
    assert_eq!(row["error_code"], "network_timeout");
    assert_eq!(row["error_stack"], "at Recognizer.start()");
    assert_eq!(row["error_message"], stored["error"]["message"]);
    assert_eq!(row["dim_keys"], json!(["language", "offline"]));
    assert_eq!(row["dim_values"], json!(["de", "true"]));
    assert_eq!(row["metric_keys"], json!(["latency_ms"]));
    assert_eq!(row["metric_values"], json!([3021]));
    assert_eq!(row["sample_rate"], 1);

    // ClickHouse 18.16 has no table TTLs: the sink sets none (and checks again next start).
    assert!(!server.dir.path().join("sinks/warehouse.ttl").exists());
    assert!(!clickhouse
        .query(&format!(
            "SELECT engine_full FROM system.tables WHERE database = '{DATABASE}' AND name = 'events'"
        ))
        .contains("TTL"));

    // The operator's view: lag 0, deliveries counted, in the stats, /readyz and /metrics.
    let status = wait_for("the sink reports it caught up", || caught_up(&server.url));
    assert_eq!(status["name"], "warehouse");
    assert_eq!(status["kind"], "clickhouse");
    assert_eq!(status["delivered_total"], 21);
    assert!(status["delivered_per_second"].as_f64().unwrap() > 0.0);
    let ready = server.get("/readyz").json();
    assert_eq!(ready["sinks"][0]["name"], "warehouse");
    let metrics = server.admin_get("/metrics").text();
    assert!(
        metrics.contains("telemetryd_sink_lag_events{sink=\"warehouse\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("telemetryd_sink_delivered_total{sink=\"warehouse\"} 21"));
    assert!(metrics.contains("telemetryd_subscriber_lag_events{subscriber=\"warehouse\"} 0"));

    // Erasure: the subject's rows leave ClickHouse before the answer, which says so, and
    // so does the audit entry.
    let sinks = erase_install(&server.url, "inst-1");
    assert_eq!(sinks, json!([{"sink": "warehouse", "confirmed": true}]));
    assert_eq!(
        clickhouse.number(&format!(
            "SELECT count() FROM {DATABASE}.events WHERE install_id = 'inst-1'"
        )),
        0
    );
    assert_eq!(clickhouse.events_final(), (20, 20));
    let kept_list = kept
        .iter()
        .map(|k| format!("'{k}'"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        clickhouse.number(&format!(
            "SELECT count() FROM {DATABASE}.events WHERE id IN ({kept_list})"
        )),
        20
    );
    let audit = server
        .admin_get("/api/v1/audit?action=subject.erase")
        .json();
    let entries = audit["entries"].as_array().expect("audit entries");
    let erase = entries
        .iter()
        .find(|e| e["action"] == "subject.erase")
        .expect("the erasure is audited");
    assert_eq!(
        erase["result"]["sinks"],
        json!([{"sink": "warehouse", "confirmed": true}])
    );
}

#[test]
fn clickhouse_down_leaves_ingest_alone_and_the_sink_catches_up() {
    let mut clickhouse = ClickHouse::start();
    let config = format!("{}{}", shipped_config_text(), sink_toml(&clickhouse, 100));
    let server = TestServer::start(&config, &[]);
    let (_, first) = batch("inst-1", 1);
    assert_eq!(
        server.post_events("?product=dictation-app", &first).json()["accepted"],
        1
    );
    wait_for("the first event arrives", || {
        (clickhouse.table_exists() && clickhouse.events_final() == (1, 1)).then_some(())
    });
    wait_for("the sink is caught up", || caught_up(&server.url));

    clickhouse.kill();
    let mut acknowledged = 1;
    for _ in 0..5 {
        let (_, body) = batch("inst-1", 100);
        let resp = server.post_events("?product=dictation-app", &body);
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.json()["accepted"], 100);
        acknowledged += 100;
    }
    assert_eq!(server.stored().len(), acknowledged);
    let behind = wait_for("the sink reports the failure and its lag", || {
        let status = sink_status(&server.url);
        (status["last_error"].is_string() && status["lag_events"] == 500).then_some(status)
    });
    assert!(behind["failures_total"].as_u64().unwrap() >= 1);
    assert!(
        behind["last_error"]
            .as_str()
            .unwrap()
            .starts_with("unreachable"),
        "{behind}"
    );
    assert!(behind["lag_seconds"].as_f64().unwrap() > 0.0, "{behind}");
    assert!(!behind.to_string().contains(PASSWORD));
    let ready = server.get("/readyz").json();
    assert_eq!(ready["sinks"][0]["lag_events"], 500);
    let metrics = server.admin_get("/metrics").text();
    assert!(
        metrics.contains("telemetryd_sink_lag_events{sink=\"warehouse\"} 500"),
        "{metrics}"
    );

    // An erasure while ClickHouse is down: the store forgets the subject at once, the answer
    // says the destination did not confirm, and the delete waits to be retried.
    let gone: Vec<Value> = (0..5)
        .map(|_| json!({"id": uuid::Uuid::new_v4().to_string(), "eventName": "app_opened", "installId": "gone"}))
        .collect();
    let resp = server.post_events(
        "?product=dictation-app",
        &json!({ "events": gone }).to_string(),
    );
    assert_eq!(resp.json()["accepted"], 5);
    let sinks = erase_install(&server.url, "gone");
    let answer = &sinks[0];
    assert_eq!(answer["confirmed"], false, "{answer}");
    assert!(answer["error"].as_str().unwrap().starts_with("unreachable"));
    assert!(!answer["error"].as_str().unwrap().contains("gone"));
    assert_eq!(sink_status(&server.url)["pending_erasures"], 1);

    clickhouse.resume();
    let status = wait_for("the sink catches up after ClickHouse is back", || {
        caught_up(&server.url).filter(|s| s["pending_erasures"] == 0)
    });
    assert_eq!(clickhouse.events_final(), (501, 501));
    // The erased events were gone from the store when the sink reached them: it says so.
    assert_eq!(status["skipped_total"], 5, "{status}");
    assert_eq!(
        status["skipped"][0]["below"].as_u64().unwrap()
            - status["skipped"][0]["from"].as_u64().unwrap(),
        5
    );
    let metrics = server.admin_get("/metrics").text();
    assert!(metrics.contains("telemetryd_sink_skipped_total{sink=\"warehouse\"} 5"));
}

#[test]
fn retention_drops_partitions_older_than_the_products_retention() {
    let clickhouse = ClickHouse::start();
    let config = format!("{}{}", shipped_config_text(), sink_toml(&clickhouse, 100));
    let server = TestServer::start(&config, &[]);
    let (_, body) = batch("inst-1", 3);
    assert_eq!(
        server.post_events("?product=dictation-app", &body).json()["accepted"],
        3
    );
    wait_for("the events arrive", || {
        (clickhouse.table_exists() && clickhouse.events_final() == (3, 3)).then_some(())
    });
    // Rows of days past and within retention (dictation-app keeps 30 days, voice-sdk 90),
    // as an earlier telemetryd would have delivered them.
    let day = 86_400;
    let now = telemetryd::model::now_ms() / 1000;
    for (product, days_ago) in [
        ("dictation-app", 45),
        ("dictation-app", 10),
        ("voice-sdk", 45),
        ("voice-sdk", 120),
    ] {
        let time = now - days_ago * day;
        clickhouse.query(&format!(
            "INSERT INTO {DATABASE}.events (id, product, name, time, timestamp_ms, received_at_ms, level, sample_rate, source) VALUES ('{}', '{product}', 'old', {time}, {}, {}, 'info', 1, 'native')",
            uuid::Uuid::new_v4(),
            time * 1000,
            time * 1000
        ));
    }
    let partitions = |product: &str| {
        clickhouse.number(&format!(
            "SELECT uniqExact(partition) FROM system.parts WHERE database = '{DATABASE}' AND table = 'events' AND active AND partition LIKE '(\\'{product}\\',%'"
        ))
    };
    assert_eq!(partitions("dictation-app"), 3);
    assert_eq!(partitions("voice-sdk"), 2);

    let report = server.state.retention.sweep().expect("sweep");
    assert_eq!(report.sink_partitions_dropped, 2);
    assert_eq!(partitions("dictation-app"), 2);
    assert_eq!(partitions("voice-sdk"), 1);
    let left = clickhouse.rows(&format!(
        "SELECT product, toUInt16(intDiv(toUInt32(now()) - toUInt32(time), 86400)) AS days FROM {DATABASE}.events WHERE name = 'old' ORDER BY product, days"
    ));
    assert_eq!(
        left,
        vec![
            json!({"product": "dictation-app", "days": 10}),
            json!({"product": "voice-sdk", "days": 45})
        ]
    );
    assert_eq!(clickhouse.events_final(), (5, 5));
}

#[test]
fn metric_points_are_copied_then_followed_into_their_own_table_and_erased_with_their_install() {
    let clickhouse = ClickHouse::start();
    let now = telemetryd::model::now_ms() - 60_000;
    let t = |minutes: i64| now - 30 * 60_000 + minutes * 60_000;
    // Points stored before any sink is configured.
    let server = TestServer::start(&otlp_config(""), &[]);
    post_metrics(
        &server.url,
        json!([
            counter("install-1", t(0), t(1), 3),
            counter("install-2", t(0), t(1), 7),
            {"name": "queue_depth", "unit": "{item}", "gauge": {"dataPoints": [
                {"timeUnixNano": (t(2) * 1_000_000).to_string(), "asDouble": 4.0}
            ]}},
            {"name": "request_seconds", "unit": "s", "histogram": {"aggregationTemporality": 1, "dataPoints": [{
                "attributes": attrs(&[("provider", "deepgram")]),
                "startTimeUnixNano": (t(0) * 1_000_000).to_string(),
                "timeUnixNano": (t(1) * 1_000_000).to_string(),
                "count": "3", "sum": 0.7, "min": 0.05, "max": 0.4,
                "bucketCounts": ["1", "2", "0"], "explicitBounds": [0.1, 0.5]
            }]}}
        ]),
    );
    let dir = server.stop();

    // The sink, added later, copies every stored point, then follows new ones.
    let config = otlp_config(&sink_toml(&clickhouse, 500));
    let server = TestServer::start_in(dir, &config, &[]);
    let points_final = |filter: &str| {
        clickhouse.rows(&format!(
            "SELECT metric, kind, unit, install_id, attribute_keys, attribute_values, value, count, sum, min, max, bucket_bounds, bucket_counts FROM {DATABASE}.metric_points FINAL WHERE {filter} ORDER BY metric, install_id, time_ms"
        ))
    };
    let table_exists = || {
        clickhouse.number(&format!(
            "SELECT count() FROM system.tables WHERE database = '{DATABASE}' AND name = 'metric_points'"
        )) == 1
    };
    wait_for("the stored points are copied", || {
        (table_exists() && points_final("1").len() == 4).then_some(())
    });
    let rows = points_final("1");
    assert_eq!(
        rows[0],
        json!({"metric": "atlas_sdk_events_total", "kind": "counter", "unit": "1", "install_id": "install-1",
               "attribute_keys": ["surface"], "attribute_values": ["cli"], "value": 3, "count": "0", "sum": null,
               "min": null, "max": null, "bucket_bounds": [], "bucket_counts": []})
    );
    assert_eq!(rows[1]["install_id"], "install-2");
    assert_eq!(rows[1]["value"], 7);
    assert_eq!(
        (&rows[2]["metric"], &rows[2]["value"], &rows[2]["count"]),
        (&json!("queue_depth"), &json!(4), &json!("1"))
    );
    assert_eq!(
        rows[3],
        json!({"metric": "request_seconds", "kind": "histogram", "unit": "s", "install_id": null,
               "attribute_keys": ["provider"], "attribute_values": ["deepgram"], "value": null, "count": "3", "sum": 0.7,
               "min": 0.05, "max": 0.4, "bucket_bounds": [0.1, 0.5], "bucket_counts": ["1", "2", "0"]})
    );

    // New points follow through the outbox: the counter's next report is its increase, and a
    // second gauge report at the same millisecond replaces the delivered point with the mean.
    post_metrics(
        &server.url,
        json!([
            counter("install-1", t(0), t(3), 9),
            {"name": "queue_depth", "unit": "{item}", "gauge": {"dataPoints": [
                {"timeUnixNano": (t(2) * 1_000_000).to_string(), "asDouble": 8.0}
            ]}}
        ]),
    );
    wait_for("the new points follow", || {
        let queue = points_final("metric = 'queue_depth'");
        (points_final("1").len() == 5 && queue[0]["value"] == 6).then_some(())
    });
    let rows = points_final("install_id = 'install-1'");
    let increases: Vec<&Value> = rows.iter().map(|r| &r["value"]).collect();
    assert_eq!(increases, [&json!(3), &json!(6)]);
    let queue = points_final("metric = 'queue_depth'");
    assert_eq!(
        (&queue[0]["value"], &queue[0]["count"]),
        (&json!(6), &json!("2"))
    );
    let status = wait_for("the sink reports the points delivered", || {
        let status = sink_status(&server.url);
        (status["points_lag"] == 0 && status["points_copying"] == false).then_some(status)
    });
    assert!(
        status["points_delivered_total"].as_u64().unwrap() >= 6,
        "{status}"
    );

    // Erasing install-1 deletes its points in ClickHouse too; install-2's stay.
    let sinks = erase_install(&server.url, "install-1");
    assert_eq!(sinks, json!([{"sink": "warehouse", "confirmed": true}]));
    assert_eq!(
        clickhouse.number(&format!(
            "SELECT count() FROM {DATABASE}.metric_points WHERE install_id = 'install-1'"
        )),
        0
    );
    assert_eq!(points_final("install_id = 'install-2'").len(), 1);
    // The outbox is pruned behind the sink: what it delivered is not kept for it.
    post_metrics(&server.url, json!([counter("install-2", t(0), t(4), 10)]));
    wait_for("install-2's next increase arrives", || {
        (points_final("install_id = 'install-2'").len() == 2).then_some(())
    });
}

/// Two ClickHouse servers as the two shards of cluster `two`, the first also holding the
/// `Distributed` tables the sink inserts into; every table made with the sink's own DDL.
fn two_shards() -> (ClickHouse, ClickHouse) {
    let (tcp1, tcp2) = (free_port(), free_port());
    let replica = |port: u16| {
        format!("<shard><replica><host>127.0.0.1</host><port>{port}</port><user>default</user><password>{PASSWORD}</password></replica></shard>")
    };
    let cluster = format!(
        "\n  <remote_servers><two>{}{}</two></remote_servers>",
        replica(tcp1),
        replica(tcp2)
    );
    let first = ClickHouse::start_with(tcp1, &cluster);
    let second = ClickHouse::start_with(tcp2, "");
    let local: telemetryd::config::SinkConfig = toml::from_str(&format!(
        "name = \"local\"\nkind = \"clickhouse\"\ndatabase = \"{DATABASE}\"\ntable = \"events_local\"\npoints_table = \"points_local\""
    ))
    .unwrap();
    let ddl =
        telemetryd::sinks::clickhouse::ClickHouse::new(&local, &[], first.dir.path()).unwrap();
    for shard in [&first, &second] {
        shard.query(&format!("CREATE DATABASE {DATABASE}"));
        shard.query(&ddl.create_table_sql());
        shard.query(&ddl.create_points_table_sql());
    }
    first.query(&format!("CREATE TABLE {DATABASE}.events AS {DATABASE}.events_local ENGINE = Distributed(two, {DATABASE}, events_local, cityHash64(toString(id)))"));
    first.query(&format!("CREATE TABLE {DATABASE}.metric_points AS {DATABASE}.points_local ENGINE = Distributed(two, {DATABASE}, points_local, series_id)"));
    (first, second)
}

#[test]
fn on_two_shards_erasure_and_retention_reach_every_shard() {
    let (first, second) = two_shards();
    let sink = format!(
        "{}shards = [\"{}\", \"{}\"]\nshard_table = \"events_local\"\nshard_points_table = \"points_local\"\n",
        sink_toml(&first, 100),
        first.url(),
        second.url()
    );
    let server = TestServer::start(&otlp_config(&sink), &[]);
    let (_, body) = batch("inst", 40);
    assert_eq!(
        server.post_events("?product=dictation-app", &body).json()["accepted"],
        40
    );
    let target = "inst-erased";
    let erased: Vec<Value> = (0..6)
        .map(|_| json!({"id": uuid::Uuid::new_v4().to_string(), "eventName": "app_opened", "installId": target}))
        .collect();
    assert_eq!(
        server
            .post_events(
                "?product=dictation-app",
                &json!({"events": erased}).to_string()
            )
            .json()["accepted"],
        6
    );
    let now = telemetryd::model::now_ms() - 60_000;
    post_metrics(&server.url, json!([counter(target, now - 120_000, now, 5)]));
    // Distinct events or points (a point may be both copied and followed; duplicates go when
    // ClickHouse merges parts).
    let local = |shard: &ClickHouse, table: &str, filter: &str| {
        let key = if table.starts_with("events") {
            "id"
        } else {
            "series_id, time_ms"
        };
        shard.number(&format!(
            "SELECT uniqExact({key}) FROM {DATABASE}.{table} WHERE {filter}"
        ))
    };
    wait_for("both shards hold the events and the point", || {
        let events = local(&first, "events_local", "1") + local(&second, "events_local", "1");
        let points = local(&first, "points_local", "1") + local(&second, "points_local", "1");
        (events == 46 && points == 1).then_some(())
    });
    assert!(
        local(&first, "events_local", "1") > 0 && local(&second, "events_local", "1") > 0,
        "sharded by id"
    );

    let sinks = erase_install(&server.url, target);
    assert_eq!(sinks, json!([{"sink": "warehouse", "confirmed": true}]));
    for shard in [&first, &second] {
        assert_eq!(
            local(shard, "events_local", &format!("install_id = '{target}'")),
            0
        );
        assert_eq!(
            local(shard, "points_local", &format!("install_id = '{target}'")),
            0
        );
    }
    assert_eq!(
        local(&first, "events_local", "1") + local(&second, "events_local", "1"),
        40
    );

    // Retention: a day past dictation-app's 30 days on each shard goes from both.
    let old = telemetryd::model::now_ms() / 1000 - 120 * 86_400;
    for shard in [&first, &second] {
        shard.query(&format!(
            "INSERT INTO {DATABASE}.events_local (id, product, name, time, timestamp_ms, received_at_ms, level, sample_rate, source) VALUES ('{}', 'dictation-app', 'old', {old}, {}, {}, 'info', 1, 'native')",
            uuid::Uuid::new_v4(),
            old * 1000,
            old * 1000
        ));
    }
    let report = server.state.retention.sweep().expect("sweep");
    assert_eq!(report.sink_partitions_dropped, 2);
    for shard in [&first, &second] {
        assert_eq!(local(shard, "events_local", "name = 'old'"), 0);
    }
    assert_eq!(
        local(&first, "events_local", "1") + local(&second, "events_local", "1"),
        40
    );
}

#[test]
fn a_sharded_sink_waits_for_the_cluster_tables() {
    let (first, second) = (ClickHouse::start(), ClickHouse::start());
    let sink = format!(
        "{}shards = [\"{}\", \"{}\"]\nshard_table = \"events_local\"\n",
        sink_toml(&first, 100),
        first.url(),
        second.url()
    );
    let server = TestServer::start(&otlp_config(&sink), &[]);
    let status = wait_for("the sink says what is missing", || {
        let status = sink_status(&server.url);
        status["last_error"].as_str().is_some().then_some(status)
    });
    let error = status["last_error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "table {DATABASE}.events does not exist at {}",
            first.url()
        )),
        "{error}"
    );
    assert!(!first.table_exists(), "a sharded sink creates no table");
}

/// A config file for the real binary with the sink, on `port`, data under `dir`.
fn write_config(dir: &Path, port: u16, clickhouse: &ClickHouse) -> PathBuf {
    let listen = format!("127.0.0.1:{port}");
    let sink = sink_toml(clickhouse, 50);
    binary_config(
        &dir.join("telemetry.toml"),
        &listen,
        &dir.join("data"),
        &sink,
    )
}

/// The real binary, killed when dropped.
struct Server(Child);

impl Server {
    fn start(config: &Path, url: &str) -> Server {
        let child = Command::new(BIN)
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("telemetryd starts");
        let server = Server(child);
        let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
        wait_for("telemetryd answers", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            (request("GET", &format!("{url}/healthz"), &[], None).status == 200).then_some(())
        });
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigkill_mid_delivery_then_restart_leaves_one_row_per_event() {
    let clickhouse = ClickHouse::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let config = write_config(dir.path(), port, &clickhouse);
    let mut server = Server::start(&config, &url);
    let mut acknowledged = 0;
    let mut behind = false;
    // Posts until ClickHouse holds some but not all of what was acknowledged: the kill then
    // comes while the sink is behind. Five requests at a time, so ingest outpaces the sink
    // even when the sink is quick.
    for _ in 0..40 {
        for _ in 0..5 {
            let (_, body) = batch("inst-1", 100);
            let resp = request(
                "POST",
                &format!("{url}/api/v1/events?product=dictation-app"),
                &[("content-type", "application/json")],
                Some(body.into_bytes()),
            );
            assert_eq!(resp.status, 200, "{}", resp.text());
            acknowledged += resp.json()["accepted"].as_u64().unwrap();
        }
        if clickhouse.table_exists() {
            let delivered = clickhouse.number(&format!("SELECT count() FROM {DATABASE}.events"));
            if delivered > 0 && delivered < acknowledged {
                behind = true;
                break;
            }
        }
    }
    assert!(
        behind,
        "the sink was delivering, and behind, while events came in"
    );
    server.0.kill().unwrap(); // SIGKILL, in the middle of the stream
    let _ = server.0.wait();
    drop(server);
    // As if the kill had also come between a delivery and its position's write (it may have:
    // the file may not exist yet): the sink delivers everything again, and ClickHouse keeps
    // one row per event.
    let position_file = dir.path().join("data/sinks/warehouse.position");
    std::fs::write(&position_file, "0").unwrap();

    let _server = Server::start(&config, &url);
    wait_for("the sink catches up after the restart", || caught_up(&url));
    assert_eq!(clickhouse.events_final(), (acknowledged, acknowledged));
    let raw = clickhouse.number(&format!("SELECT count() FROM {DATABASE}.events"));
    assert!(raw >= acknowledged);

    // The operator's view from the command line.
    let out = Command::new(BIN)
        .args(["sink", "status", "--url", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("warehouse"))
        .unwrap_or_else(|| panic!("{text}"));
    let columns: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(columns[1], "clickhouse");
    assert_eq!(columns[2], acknowledged.to_string(), "position: {text}");
    assert_eq!(columns[3], "0", "lag: {text}");
    assert_eq!(columns[9], "0", "points lag: {text}");
    assert_eq!(columns[10], "-", "last error: {text}");
}
