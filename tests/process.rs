//! The real binary: SIGKILL under load loses no acknowledged event, SIGTERM shuts down cleanly,
//! and the CLI's config and token commands behave.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_telemetryd");

/// A config file for the real binary: the shipped products, a temp data dir, a fixed port.
fn write_config(dir: &Path, port: u16) -> PathBuf {
    let listen = format!("127.0.0.1:{port}");
    binary_config(&dir.join("telemetry.toml"), &listen, &dir.join("data"), "")
}

/// A running server process, killed when dropped (so a failing test leaves none behind).
struct Server(Child);

impl std::ops::Deref for Server {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temp dir holding a config for a free port, and where the server's log goes.
struct Setup {
    dir: tempfile::TempDir,
    url: String,
    config: PathBuf,
    log: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port);
    let log = dir.path().join("server.log");
    Setup {
        dir,
        url: format!("http://127.0.0.1:{port}"),
        config,
        log,
    }
}

fn start(config: &Path, log: &Path) -> Server {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Server(
        Command::new(BIN)
            .args(["--config", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start telemetryd"),
    )
}

fn wait_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_millis(500)))
            .build()
            .into();
        if let Ok(resp) = agent.get(&format!("{url}/readyz")).call() {
            if resp.status() == 200 {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server at {url} not ready in 30 s");
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_event() {
    let Setup {
        dir,
        url,
        config,
        log,
    } = setup();
    let acks = dir.path().join("acks.txt");

    let mut server = start(&config, &log);
    wait_ready(&url);
    let mut bench = Command::new(BIN)
        .args([
            "bench",
            "--target",
            &url,
            "--connections",
            "8",
            "--batch-size",
            "20",
            "--duration",
            "14",
        ])
        .args([
            "--record-acks",
            acks.to_str().unwrap(),
            "--progress-every",
            "60",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(rng.u64(800..2200)));
        server.kill().unwrap(); // SIGKILL
        server.wait().unwrap();
        server = start(&config, &log);
        wait_ready(&url);
    }
    assert!(bench.wait().unwrap().success());
    // Store and index agree once the index has caught up after the last kill.
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        let ready = request("GET", &format!("{url}/readyz"), &[], None).json();
        if ready["index"]["lag_events"] == 0 || Instant::now() > deadline {
            break ready;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let found = request(
        "GET",
        &format!("{url}/api/v1/events?limit=1&exact_total=true"),
        &[("authorization", auth.as_str())],
        None,
    )
    .json();
    assert_eq!(
        found["total"], ready["store"]["events"],
        "search and store disagree: {ready}"
    );
    assert_eq!(ready["index"]["documents"], ready["store"]["events"]);
    server.kill().unwrap();
    server.wait().unwrap();

    let acknowledged: Vec<String> = std::fs::read_to_string(&acks)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        acknowledged.len() > 1000,
        "only {} events acknowledged",
        acknowledged.len()
    );

    // Look into the store itself, the source of truth.
    let store = telemetryd::store::Store::open(&dir.path().join("data")).unwrap();
    let mut copies: HashMap<String, usize> = HashMap::new();
    for (_, event) in store.events_from(0, usize::MAX).unwrap() {
        *copies.entry(event.id.to_string()).or_default() += 1;
    }
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|id| !copies.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(3)]
    );
    let doubled: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "events stored twice: {doubled:?}");
    assert_eq!(store.event_count().unwrap() as usize, copies.len());
}

#[test]
fn sigterm_finishes_and_exits_cleanly() {
    let Setup {
        dir,
        url,
        config,
        log,
    } = setup();
    let mut server = start(&config, &log);
    wait_ready(&url);
    let body = std::fs::read(testdata("flat-sdk-batch.json")).unwrap();
    let resp = request(
        "POST",
        &format!("{url}/api/v1/events?product=voice-sdk"),
        &[("content-type", "application/json")],
        Some(body),
    );
    assert_eq!(resp.json()["accepted"], 7);
    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = server.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "no exit within 20 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit status {exit}");
    let log = std::fs::read_to_string(&log).unwrap();
    for expected in [
        "telemetryd starting",
        "data dir",
        "product=voice-sdk",
        "product=dictation-app",
        "geo: off",
        "listening",
        "shutting down",
        "background tasks running tasks=[\"store-writer\", \"search-indexer\", \"alert-dispatcher\", \"metric-history\", \"jobs\"]",
        "commit subscriber subscriber=\"search-index\"",
        "commit subscriber subscriber=\"clusters\"",
        "background tasks stopped",
    ] {
        assert!(log.contains(expected), "log lacks `{expected}`:\n{log}");
    }
    assert!(
        log.contains(&config.display().to_string()),
        "the log names the config path"
    );
    let store = telemetryd::store::Store::open(&dir.path().join("data")).unwrap();
    assert_eq!(store.event_count().unwrap(), 7);
}

#[test]
fn shipped_config_parses_and_check_config_reports_it() {
    let shipped = repo_path("config/telemetry.toml");
    let config = telemetryd::config::Config::load(&shipped).expect("the shipped config is valid");
    assert_eq!(config.products.len(), 2);
    assert_eq!(config.server.data_dir, PathBuf::from("./data"));
    let out = Command::new(BIN)
        .args(["check-config", shipped.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("voice-sdk")
            && text.contains("dictation-app")
            && text.contains("127.0.0.1:8080"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisten = \"127.0.0.1:8080\"\nmax_body_bytez = 5\n[[products]]\nid = \"a\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("max_body_bytez") && err.contains("line 3"),
        "{err}"
    );

    std::fs::write(&bad, "[[products]]\nid = \"a\"\nretention_days = -1\n").unwrap();
    let out = Command::new(BIN)
        .args(["check-config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("retention_days"));
}

#[test]
fn hash_token_prints_the_config_hash() {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .arg("hash-token")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"my-token\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        telemetryd::hash::hash_token("my-token")
    );

    let out = Command::new(BIN)
        .args(["hash-token", "--generate"])
        .output()
        .unwrap();
    let token = String::from_utf8_lossy(&out.stderr)
        .trim()
        .trim_start_matches("token: ")
        .to_string();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        telemetryd::hash::hash_token(&token)
    );
}

#[test]
fn demo_fills_a_data_dir_and_reindex_rebuilds_the_index() {
    // The temp dir lives until the end of the test.
    let Setup {
        dir: _dir,
        url,
        config,
        log,
    } = setup();
    let out = Command::new(BIN)
        .args([
            "demo",
            "--config",
            config.to_str().unwrap(),
            "--events",
            "8000",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("error clusters") && text.contains("2 collection policies"),
        "{text}"
    );

    let out = Command::new(BIN)
        .args(["reindex", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("(100%)"),
        "progress is shown"
    );

    let mut server = start(&config, &log);
    wait_ready(&url);
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let get = |path: &str| {
        request(
            "GET",
            &format!("{url}{path}"),
            &[("authorization", auth.as_str())],
            None,
        )
        .json()
    };
    let ready = get("/readyz");
    assert_eq!(
        get("/api/v1/events?limit=1&exact_total=true")["total"],
        ready["store"]["events"]
    );
    let clusters = get("/api/v1/clusters?limit=100");
    let statuses: Vec<&str> = clusters["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert!(statuses.contains(&"regressed"), "{statuses:?}");
    assert!(clusters["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["escalating"] == true));
    assert_eq!(
        get("/api/v1/policies")["policies"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(get("/api/v1/geo")["countries"].as_array().unwrap().len() >= 5);
    // Reindex refuses while the server holds the store.
    let out = Command::new(BIN)
        .args(["reindex", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    server.kill().unwrap();
    server.wait().unwrap();
}
