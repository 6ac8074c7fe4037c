//! A full disk: the data dir on a small tmpfs (needs root to mount it; skipped with a message
//! otherwise). Ingest answers 503 with Retry-After while the disk is full, nothing acknowledged
//! is lost, and once space is freed ingest works again without a restart.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{json, Value};

/// A tmpfs of `size` mounted at a new directory, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let path = std::env::temp_dir().join(format!("telemetryd-full-{}", std::process::id()));
        std::fs::create_dir_all(&path).ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            let _ = std::fs::remove_dir(&path);
            return None;
        }
        Some(Tmpfs { path })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
        let _ = std::fs::remove_dir(&self.path);
    }
}

fn post(server: &TestServer, events: &Value) -> Resp {
    request(
        "POST",
        &format!("{}/api/v1/events?product=app", server.url),
        &[("content-type", "application/json")],
        Some(events.to_string().into_bytes()),
    )
}

/// A batch of 200 events with incompressible text, so the store grows quickly.
fn batch(round: usize) -> Value {
    let now = telemetryd::model::now_ms();
    let events: Vec<Value> = (0..200)
        .map(|i| {
            let n = round * 200 + i;
            let text: String = (0..8)
                .map(|k| format!("{:016x}", (n as u64 * 8 + k).wrapping_mul(0x9e37_79b9_7f4a_7c15)))
                .collect();
            json!({"id": uuid_for(n), "name": "dictation_completed", "install_id": format!("i-{}", n % 50),
                   "timestamp": now - n as i64, "dims": {"note": text}})
        })
        .collect();
    Value::Array(events)
}

fn uuid_for(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

fn fill(dir: &Path, bytes: usize) -> std::io::Result<PathBuf> {
    let path = dir.join("ballast");
    std::fs::write(&path, vec![0u8; bytes])?;
    Ok(path)
}

#[test]
fn a_full_disk_answers_503_loses_nothing_and_recovers_without_a_restart() {
    let Some(tmpfs) = Tmpfs::mount("24m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let dir = tempfile::tempdir_in(&tmpfs.path).unwrap();
    let ballast_dir = tmpfs.path.clone();
    let config = format!(
        "[[products]]\nid = \"app\"\nrate_limit_per_minute = 1000000\n[search]\ncommit_interval_ms = 200\n{}",
        tokens_toml()
    );
    let room = [("TELEMETRYD_SERVER__MIN_FREE_DISK_MB", "4")];
    let server = TestServer::start_in(dir, &config, &room);

    // Fill most of the disk with a ballast file, then ingest until the disk is full.
    let ballast = fill(&ballast_dir, 12 * 1024 * 1024).unwrap();
    let mut acked: Vec<usize> = Vec::new();
    let mut refused = None;
    for round in 0..400 {
        let resp = post(&server, &batch(round));
        match resp.status {
            200 => acked.extend(round * 200..round * 200 + 200),
            _ => {
                refused = Some(resp);
                break;
            }
        }
    }
    let refused = refused.expect("the disk never filled up");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.error_code(), "disk_full", "{}", refused.text());
    assert!(refused.header("retry-after").is_some());
    // OTLP metric points are refused the same way: they add data too.
    let now_ns = (telemetryd::model::now_ms() as u64 * 1_000_000).to_string();
    let export = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "queue_depth",
        "gauge": {"dataPoints": [{"timeUnixNano": now_ns, "asDouble": 3.0}]}}]}]}]});
    let metrics = request(
        "POST",
        &format!("{}/otlp/app/v1/metrics", server.url),
        &[("content-type", "application/json")],
        Some(export.to_string().into_bytes()),
    );
    assert_eq!(metrics.status, 503, "{}", metrics.text());
    assert!(metrics.text().contains("disk_full"), "{}", metrics.text());
    assert!(metrics.header("retry-after").is_some());

    // Space comes back: ingest works again, without a restart, and nothing acknowledged is lost.
    std::fs::remove_file(&ballast).unwrap();
    let mut recovered = false;
    for attempt in 0..50 {
        let resp = post(&server, &batch(10_000 + attempt));
        if resp.status == 200 {
            acked.extend((10_000 + attempt) * 200..(10_000 + attempt) * 200 + 200);
            recovered = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(recovered, "ingest did not recover after space was freed");
    server.settle();
    for n in acked.iter().step_by(97).chain(acked.last()) {
        let id = uuid_for(*n);
        assert!(
            server
                .state
                .store
                .event_by_id(id.parse().unwrap())
                .unwrap()
                .is_some(),
            "acknowledged event {id} is missing"
        );
    }
    assert_eq!(
        server.state.store.event_count().unwrap(),
        acked.len() as u64
    );
    let dir = server.stop();
    // The store opens cleanly after a restart, with every acknowledged event.
    let again = TestServer::start_in(dir, &config, &room);
    assert_eq!(again.state.store.event_count().unwrap(), acked.len() as u64);
    drop(again);
    drop(tmpfs);
}
