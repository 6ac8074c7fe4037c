//! Operator commands of the real binary: `--version`, `healthcheck` exit codes against a
//! running and a stopped server, `backup` under ingest load and `restore` (every event
//! acknowledged before the backup started is in the restored store), the admin backup
//! endpoint's rules, and the generated completions and man page.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_telemetryd");

fn telemetryd(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A config file naming `data_dir` and the address `url` (`http://HOST:PORT`) listens on, as
/// the CLI commands read it.
fn write_config(dir: &Path, name: &str, data_dir: &Path, url: &str) -> PathBuf {
    binary_config(
        &dir.join(name),
        url.trim_start_matches("http://"),
        data_dir,
        "",
    )
}

fn free_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn version_prints_the_version_and_the_git_commit() {
    let out = telemetryd(&["--version"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let line = text.trim();
    let prefix = format!("telemetryd {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&prefix), "{line}");
    let commit = line[prefix.len()..]
        .strip_suffix(')')
        .unwrap_or_else(|| panic!("no closing parenthesis: {line}"));
    assert_eq!(line, format!("telemetryd {}", telemetryd::VERSION));
    // Built from a git checkout: the commit is a real commit of this repository.
    let in_git = Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if in_git {
        assert_eq!(commit.len(), 12, "{line}");
        assert!(commit.bytes().all(|b| b.is_ascii_hexdigit()), "{line}");
        let known = Command::new("git")
            .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("git");
        assert!(
            known.success(),
            "{commit} is not a commit of this repository"
        );
    } else {
        assert!(!commit.is_empty(), "{line}");
    }
}

#[test]
fn healthcheck_exits_0_when_ready_and_1_when_stopped() {
    let server = TestServer::shipped(&[]);
    let work = tempfile::tempdir().expect("temp dir");
    let config = write_config(work.path(), "live.toml", server.dir.path(), &server.url);

    let by_config = telemetryd(&["healthcheck", "--config", path_str(&config)]);
    assert_eq!(by_config.status.code(), Some(0), "{}", stderr(&by_config));
    assert!(
        stdout(&by_config).contains(&format!("{}/readyz", server.url)),
        "{}",
        stdout(&by_config)
    );
    let by_url = telemetryd(&["healthcheck", "--url", &server.url]);
    assert_eq!(by_url.status.code(), Some(0), "{}", stderr(&by_url));
    // Any answer but 200 is unhealthy.
    let wrong_path = telemetryd(&["healthcheck", "--url", &format!("{}/nope", server.url)]);
    assert_eq!(wrong_path.status.code(), Some(1));
    assert!(
        stderr(&wrong_path).contains("404"),
        "{}",
        stderr(&wrong_path)
    );

    let _dir = server.stop();
    let started = Instant::now();
    let stopped = telemetryd(&[
        "healthcheck",
        "--config",
        path_str(&config),
        "--timeout",
        "2",
    ]);
    assert_eq!(stopped.status.code(), Some(1), "{}", stdout(&stopped));
    assert!(
        stderr(&stopped).contains("readyz"),
        "names the URL: {}",
        stderr(&stopped)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // A port nothing listens on, and a config that does not parse.
    let nothing = telemetryd(&["healthcheck", "--url", &free_url(), "--timeout", "1"]);
    assert_eq!(nothing.status.code(), Some(1));
    let missing = telemetryd(&["healthcheck", "--config", "/nonexistent/telemetry.toml"]);
    assert_eq!(missing.status.code(), Some(1));
}

/// Complete lines of the ack file written so far: every id in it was acknowledged.
fn acked_ids(path: &Path) -> Vec<Uuid> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .map(|l| Uuid::parse_str(l.trim()).unwrap_or_else(|e| panic!("ack line {l:?}: {e}")))
        .collect()
}

#[test]
fn backup_under_load_restores_every_acknowledged_event() {
    let work = tempfile::tempdir().expect("temp dir");
    let backups = work.path().join("backups");
    let server = TestServer::shipped(&[("TELEMETRYD_SERVER__BACKUP_DIR", path_str(&backups))]);
    let live_config = write_config(work.path(), "live.toml", server.dir.path(), &server.url);
    let token_file = work.path().join("admin-token");
    std::fs::write(&token_file, ADMIN_TOKEN).expect("token file");
    let acks = work.path().join("acks.txt");

    // Load: both shipped products, many installs so the per-install rate limit does not bite.
    let mut bench = Command::new(BIN)
        .args([
            "bench",
            "--target",
            &server.url,
            "--connections",
            "4",
            "--batch-size",
            "25",
            "--duration",
            "60",
            "--installs",
            "5000000",
            "--progress-every",
            "100",
            "--record-acks",
            path_str(&acks),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start bench");
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked_ids(&acks).len() < 10_000 {
        assert!(Instant::now() < deadline, "the bench got no acks");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Everything acknowledged before the backup starts must be in it.
    let acked_before = acked_ids(&acks);
    let backup_dir = backups.join("backup-1");
    let backup = telemetryd(&[
        "backup",
        "--config",
        path_str(&live_config),
        "--out",
        path_str(&backup_dir),
        "--token-file",
        path_str(&token_file),
    ]);
    assert!(
        backup.status.success(),
        "backup failed: {}",
        stderr(&backup)
    );
    assert!(
        stdout(&backup).contains("by the running server"),
        "{}",
        stdout(&backup)
    );
    // The load went on during and after the backup.
    let after = acked_ids(&acks).len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked_ids(&acks).len() < after + 500 {
        assert!(
            Instant::now() < deadline,
            "the load stopped during the backup"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let manifest: Value = serde_json::from_slice(
        &std::fs::read(backup_dir.join("manifest.json")).expect("manifest.json"),
    )
    .expect("manifest is JSON");
    let backed_up = manifest["events"].as_u64().expect("events");
    assert!(backed_up >= acked_before.len() as u64, "{manifest}");
    assert_eq!(manifest["format"], 1);
    assert_eq!(manifest["telemetryd_version"], telemetryd::VERSION);
    assert!(manifest["next_seq"].as_u64().expect("next_seq") >= backed_up);
    assert!(manifest["created_at"]
        .as_str()
        .expect("created_at")
        .ends_with('Z'));

    // A restore into the data dir of the running server is refused, even with --force.
    for force in [false, true] {
        let mut args = vec![
            "restore",
            "--config",
            path_str(&live_config),
            "--from",
            path_str(&backup_dir),
        ];
        if force {
            args.push("--force");
        }
        let refused = telemetryd(&args);
        assert_eq!(refused.status.code(), Some(1));
        assert!(
            stderr(&refused).contains("open by a running telemetryd"),
            "{}",
            stderr(&refused)
        );
    }

    eprintln!(
        "backup: {backed_up} events; {} acknowledged before it started, {} when it ended",
        acked_before.len(),
        after
    );
    let _ = bench.kill();
    let _ = bench.wait();
    let acked_total = acked_ids(&acks).len();
    let live_events = server.state.store.event_count().expect("count");
    drop(server);
    assert!(live_events as usize >= acked_total);
    assert!(
        live_events > backed_up,
        "the backup is a snapshot: later events are not in it"
    );

    // Restore into a new data dir, with a stale index dir that must not survive.
    let restored = tempfile::tempdir().expect("temp dir");
    let restore_config = write_config(work.path(), "restore.toml", restored.path(), &free_url());
    let restore = telemetryd(&[
        "restore",
        "--config",
        path_str(&restore_config),
        "--from",
        path_str(&backup_dir),
    ]);
    assert!(restore.status.success(), "{}", stderr(&restore));
    assert!(stdout(&restore).contains(&format!("{backed_up} events")));
    assert!(!restored.path().join("index").exists());

    let store = telemetryd::store::Store::open(restored.path()).expect("restored store opens");
    assert_eq!(store.event_count().expect("count"), backed_up);
    let found = store.known_ids(&acked_before).expect("lookup");
    let missing: Vec<&Uuid> = acked_before
        .iter()
        .zip(&found)
        .filter(|(_, f)| !**f)
        .map(|(id, _)| id)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events are missing from the restore, e.g. {:?}",
        missing.len(),
        acked_before.len(),
        &missing[..missing.len().min(3)]
    );
    let all: HashSet<Uuid> = store
        .events_from(0, usize::MAX)
        .expect("read")
        .into_iter()
        .map(|(_, e)| e.id)
        .collect();
    assert_eq!(all.len() as u64, backed_up);
    drop(store);

    // A server starts on the restored data dir and serves the events.
    let revived = TestServer::start_in(restored, &shipped_config_text(), &[]);
    assert_eq!(revived.get("/readyz").status, 200);
    let one = revived.event(&acked_before[0].to_string());
    assert_eq!(one["id"], acked_before[0].to_string());
}

#[test]
fn restore_refuses_a_non_empty_data_dir_unless_forced() {
    let work = tempfile::tempdir().expect("temp dir");
    let backups = work.path().join("backups");
    let server = TestServer::shipped(&[("TELEMETRYD_SERVER__BACKUP_DIR", path_str(&backups))]);
    let resp = server.post_events(
        "?product=dictation-app",
        &json!({"events": [{"id": "0b8f4f3e-5a52-4f0e-9c1a-3d5e6f7a8b9c", "eventName": "app_opened",
            "installId": "0f5c0f5c0f5c4f5c8f5c0f5c0f5c0f5c", "platform": "ios"}]})
        .to_string(),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let backup_dir = backups.join("b");
    let resp = request(
        "POST",
        &format!("{}/api/v1/admin/backup", server.url),
        &[
            ("authorization", &format!("Bearer {ADMIN_TOKEN}")),
            ("content-type", "application/json"),
        ],
        Some(json!({ "dir": backup_dir }).to_string().into_bytes()),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["manifest"]["events"], 1);
    let data = server.stop();

    // The stopped server's data dir holds a store (and here, a stale index).
    std::fs::create_dir_all(data.path().join("index")).expect("index dir");
    std::fs::write(data.path().join("index").join("stale"), b"x").expect("stale file");
    let config = write_config(work.path(), "c.toml", data.path(), &free_url());
    let from = path_str(&backup_dir);
    let refused = telemetryd(&["restore", "--config", path_str(&config), "--from", from]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("is not empty") && stderr(&refused).contains("--force"),
        "{}",
        stderr(&refused)
    );
    let forced = telemetryd(&[
        "restore",
        "--config",
        path_str(&config),
        "--from",
        from,
        "--force",
    ]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert!(!data.path().join("index").exists());

    // Not a backup: refused with the reason.
    let not_backup = telemetryd(&[
        "restore",
        "--config",
        path_str(&config),
        "--from",
        path_str(work.path()),
        "--force",
    ]);
    assert_eq!(not_backup.status.code(), Some(1));
    assert!(stderr(&not_backup).contains("manifest.json"));

    // With no server running, `backup` copies the store file directly.
    let offline_dir = work.path().join("offline");
    let offline = telemetryd(&[
        "backup",
        "--config",
        path_str(&config),
        "--out",
        path_str(&offline_dir),
    ]);
    assert!(offline.status.success(), "{}", stderr(&offline));
    assert!(stdout(&offline).contains("no server has it open"));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(offline_dir.join("manifest.json")).expect("read"))
            .expect("json");
    assert_eq!(manifest["events"], 1);
}

#[test]
fn backup_endpoint_needs_a_global_admin_and_a_directory_below_the_backup_dir() {
    let work = tempfile::tempdir().expect("temp dir");
    let backups = work.path().join("backups");
    let config = format!(
        "{}\n[[admin.tokens]]\nname = \"voice-admin\"\nrole = \"admin\"\nhash = \"{}\"\nproducts = [\"voice-sdk\"]\n",
        shipped_config_text(),
        telemetryd::hash::hash_token("voice-admin-token-0123456789")
    );
    let server = TestServer::start(
        &config,
        &[("TELEMETRYD_SERVER__BACKUP_DIR", path_str(&backups))],
    );
    let post = |token: Option<&str>, body: Value| {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth.as_str()));
        }
        request(
            "POST",
            &format!("{}/api/v1/admin/backup", server.url),
            &headers,
            Some(body.to_string().into_bytes()),
        )
    };
    let refused = |resp: &Resp, problem: &str| {
        assert_eq!(
            (resp.status, resp.error_code().as_str()),
            (400, "invalid_parameter"),
            "{}",
            resp.text()
        );
        let message = resp.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(message.contains(problem), "{message}");
    };
    let target = backups.join("b");
    let no_token = post(None, json!({ "dir": target }));
    assert_eq!(
        (no_token.status, no_token.error_code().as_str()),
        (401, "missing_token")
    );
    let viewer = post(Some(VIEWER_TOKEN), json!({ "dir": target }));
    assert_eq!(
        (viewer.status, viewer.error_code().as_str()),
        (403, "forbidden")
    );
    // An admin of some products only: a backup holds every product.
    let scoped = post(
        Some("voice-admin-token-0123456789"),
        json!({ "dir": target }),
    );
    assert_eq!(
        (scoped.status, scoped.error_code().as_str()),
        (403, "forbidden")
    );
    assert!(!target.exists());
    let wrong_shape = post(Some(ADMIN_TOKEN), json!({ "directory": "x" }));
    assert_eq!(
        (wrong_shape.status, wrong_shape.error_code().as_str()),
        (400, "invalid_body")
    );

    // Anywhere but below the backup directory is refused, with the problem named.
    let elsewhere = work.path().join("elsewhere");
    refused(
        &post(Some(ADMIN_TOKEN), json!({ "dir": elsewhere })),
        "is not below the backup directory",
    );
    refused(
        &post(
            Some(ADMIN_TOKEN),
            json!({ "dir": backups.join("../elsewhere") }),
        ),
        "must not contain `..`",
    );
    refused(
        &post(Some(ADMIN_TOKEN), json!({ "dir": "../elsewhere" })),
        "must not contain `..`",
    );
    refused(
        &post(Some(ADMIN_TOKEN), json!({ "dir": backups })),
        "is the backup directory itself",
    );
    std::fs::create_dir_all(&elsewhere).expect("dir");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&elsewhere, backups.join("link")).expect("symlink");
        refused(
            &post(Some(ADMIN_TOKEN), json!({ "dir": "link/nightly" })),
            "through a symbolic link",
        );
        refused(
            &post(Some(ADMIN_TOKEN), json!({ "dir": backups.join("link") })),
            "through a symbolic link",
        );
    }
    assert_eq!(std::fs::read_dir(&elsewhere).expect("read").count(), 0);

    // Absolute below it, or a name relative to it.
    let ok = post(Some(ADMIN_TOKEN), json!({ "dir": target }));
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["dir"], path_str(&target));
    assert!(target.join("telemetry.redb").is_file());
    let named = post(Some(ADMIN_TOKEN), json!({ "dir": "nightly/1" }));
    assert_eq!(named.status, 200, "{}", named.text());
    assert!(backups.join("nightly/1/telemetry.redb").is_file());
    // A directory that already holds something (here, the first backup) is refused.
    refused(
        &post(Some(ADMIN_TOKEN), json!({ "dir": target })),
        "not an empty directory",
    );
    let get = server.admin_get("/api/v1/admin/backup");
    assert_eq!(get.status, 405);

    // Each backup written is in the audit log, who and where, and nothing about the refusals.
    let audit = server.admin_get("/api/v1/audit?action=backup.").json();
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{audit}");
    assert_eq!(entries[0]["actor"], "ops");
    assert_eq!(entries[0]["action"], "backup.create");
    assert_eq!(
        entries[0]["target"],
        format!("backup:{}", backups.join("nightly/1").display())
    );
    assert!(entries[0]["time_ms"].as_i64().unwrap() > 0);
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    let checks = [
        ("bash", "complete -F _telemetryd"),
        ("zsh", "#compdef telemetryd"),
        ("fish", "complete -c telemetryd"),
    ];
    for (shell, marker) in checks {
        let out = telemetryd(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains(marker), "{shell} completions lack {marker:?}");
        for sub in ["healthcheck", "backup", "restore", "check-config"] {
            assert!(text.contains(sub), "{shell} completions lack {sub}");
        }
    }
    let unknown = telemetryd(&["completions", "tcsh"]);
    assert_eq!(unknown.status.code(), Some(2));
    let man = telemetryd(&["man"]);
    assert!(man.status.success(), "{}", stderr(&man));
    let page = stdout(&man);
    assert!(
        page.contains(".TH telemetryd 1"),
        "{}",
        &page[..page.len().min(300)]
    );
    assert!(page.contains("healthcheck") && page.contains("restore"));
    assert!(page.contains(telemetryd::VERSION));
}
