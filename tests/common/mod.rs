//! Test harness: a real telemetryd server on 127.0.0.1:0 with a temporary data dir, in its own
//! thread and actix system, plus a small blocking HTTP client.

#![allow(dead_code)]

pub mod sdks;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use serde_json::Value;
use telemetryd::config::Config;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const VIEWER_TOKEN: &str = "test-viewer-token-0123456789";

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub fn testdata(name: &str) -> PathBuf {
    repo_path("../shared/testdata").join(name)
}

/// The shipped config's text with admin tokens for both roles appended.
pub fn shipped_config_text() -> String {
    let shipped =
        std::fs::read_to_string(repo_path("config/telemetry.toml")).expect("shipped config");
    let shipped = shipped.replace("\ntokens = []\n", "\n");
    format!("{shipped}\n{}", tokens_toml())
}

/// Writes a config file for the real binary at `path`: the shipped config (with both tokens)
/// listening on `listen` (`HOST:PORT`), keeping its data in `data_dir`, with `extra` appended.
pub fn binary_config(path: &Path, listen: &str, data_dir: &Path, extra: &str) -> PathBuf {
    let text = shipped_config_text()
        .replace(
            "listen = \"127.0.0.1:8080\"",
            &format!("listen = \"{listen}\""),
        )
        .replace(
            "data_dir = \"./data\"",
            &format!("data_dir = \"{}\"", data_dir.display()),
        );
    std::fs::write(path, format!("{text}{extra}")).expect("write config");
    path.to_path_buf()
}

/// A port nothing listens on right now, for a server that binds it itself (the real binary,
/// ClickHouse). No two calls in one test process give the same port, and the ports lie below
/// the kernel's ephemeral range, so no `bind(0)` or outgoing connection of a parallel test
/// takes one while the server that was given it is down (a test that stops and restarts a
/// server relies on that). Each process starts at its own place in the range.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    // The upper half of the ports below the ephemeral range, and this process's start in it.
    static RANGE: std::sync::OnceLock<(u32, u32, u32)> = std::sync::OnceLock::new();
    let (low, span, start) = *RANGE.get_or_init(|| {
        let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
            .unwrap_or(32_768);
        let (low, span) = (ephemeral_low / 2, ephemeral_low - ephemeral_low / 2);
        (low, span, std::process::id().wrapping_mul(7_919) % span)
    });
    for _ in 0..span {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = (low + (start + n) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range");
}

pub fn tokens_toml() -> String {
    format!(
        "[[admin.tokens]]\nname = \"ops\"\nrole = \"admin\"\nhash = \"{}\"\n\n[[admin.tokens]]\nname = \"dash\"\nrole = \"viewer\"\nhash = \"{}\"\n",
        telemetryd::hash::hash_token(ADMIN_TOKEN),
        telemetryd::hash::hash_token(VIEWER_TOKEN)
    )
}

pub struct TestServer {
    pub url: String,
    /// The running appliance's state, for looking into the store directly.
    pub state: actix_web::web::Data<telemetryd::AppState>,
    pub dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Waits until everything stored so far is searchable (the index caught up with the store).
    pub fn settle(&self) {
        let position = self.state.store.next_seq().unwrap();
        assert!(
            self.state
                .search
                .wait_indexed(position, std::time::Duration::from_secs(20)),
            "index did not catch up"
        );
    }

    /// The shipped config, with `overrides` as `(TELEMETRYD_ env name, value)` pairs.
    pub fn shipped(overrides: &[(&str, &str)]) -> TestServer {
        Self::start(&shipped_config_text(), overrides)
    }

    pub fn start(config_text: &str, overrides: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, config_text, overrides)
    }

    /// Starts on an existing data dir (for restart tests).
    pub fn start_in(
        dir: tempfile::TempDir,
        config_text: &str,
        overrides: &[(&str, &str)],
    ) -> TestServer {
        let mut env: Vec<(String, String)> = vec![
            (
                "TELEMETRYD_SERVER__DATA_DIR".into(),
                dir.path().display().to_string(),
            ),
            ("TELEMETRYD_SERVER__LISTEN".into(), "127.0.0.1:0".into()),
            ("TELEMETRYD_SERVER__WORKERS".into(), "2".into()),
        ];
        env.extend(
            overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let config = Config::from_toml_with_env(config_text, Path::new("test.toml"), env)
            .expect("test config is valid");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let state = match open_when_released(config) {
                    Ok(state) => state,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(state.clone()));
                let shutdown = async move {
                    let _ = rx.await;
                };
                telemetryd::serve(state, listener, shutdown)
                    .await
                    .expect("server runs");
            })
        });
        let state = ready_rx
            .recv()
            .expect("server thread")
            .expect("server starts");
        TestServer {
            url,
            state,
            dir,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// Stops the server gracefully and hands back its data dir.
    pub fn stop(mut self) -> tempfile::TempDir {
        self.shutdown_now();
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, dir)
    }

    fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    pub fn post_events(&self, query: &str, body: &str) -> Resp {
        request(
            "POST",
            &format!("{}/api/v1/events{query}", self.url),
            &[("content-type", "application/json")],
            Some(body.as_bytes().to_vec()),
        )
    }

    pub fn post_events_with(&self, query: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Resp {
        request(
            "POST",
            &format!("{}/api/v1/events{query}", self.url),
            headers,
            Some(body),
        )
    }

    pub fn admin_get(&self, path: &str) -> Resp {
        self.get_as(path, ADMIN_TOKEN)
    }

    /// `method` on `path` with the admin token and, if given, a JSON body.
    pub fn admin_request(&self, method: &str, path: &str, body: Option<&Value>) -> Resp {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        let mut headers = vec![("authorization", auth.as_str())];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        request(
            method,
            &format!("{}{path}", self.url),
            &headers,
            body.map(|b| b.to_string().into_bytes()),
        )
    }

    pub fn get_as(&self, path: &str, token: &str) -> Resp {
        let auth = format!("Bearer {token}");
        request(
            "GET",
            &format!("{}{path}", self.url),
            &[("authorization", auth.as_str())],
            None,
        )
    }

    pub fn get(&self, path: &str) -> Resp {
        request("GET", &format!("{}{path}", self.url), &[], None)
    }

    pub fn event(&self, id: &str) -> Value {
        let resp = self.admin_get(&format!("/api/v1/events/{id}"));
        assert_eq!(resp.status, 200, "event {id}: {}", resp.text());
        resp.json()
    }

    /// Every stored event, in store order.
    pub fn stored(&self) -> Vec<telemetryd::model::Event> {
        self.state
            .store
            .events_from(0, usize::MAX)
            .expect("store read")
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    }

    pub fn stats(&self) -> Value {
        self.admin_get("/api/v1/stats").json()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}

/// Opens the appliance; a restart in the same process may find the previous instance's last
/// background thread still releasing the store for a moment, so that case is retried briefly.
fn open_when_released(
    config: Config,
) -> Result<actix_web::web::Data<telemetryd::AppState>, telemetryd::StartError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match telemetryd::AppState::open(config.clone()) {
            Err(e)
                if e.to_string().contains("already open")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The stable error code of a JSON error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Resp {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let response = match body {
        Some(body) => agent.run(builder.body(body).expect("request")),
        None => agent.run(builder.body(()).expect("request")),
    };
    let mut response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .expect("body");
    Resp {
        status,
        headers,
        body,
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// How often `needle` occurs in the raw bytes of the files under `dir`.
pub fn occurrences_in_dir(dir: &Path, needle: &[u8]) -> usize {
    files_under(dir)
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .map(|bytes| bytes.windows(needle.len()).filter(|w| *w == needle).count())
        .sum()
}

/// Sends `request` as raw bytes to `address` (`host:port`) and reads the whole answer: (status,
/// headers and body text).
pub fn raw_http(address: &str, request: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    // Only a guard against a hung test; no assertion depends on time.
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    // The server may answer and close before reading everything (a head over its limit).
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
}
