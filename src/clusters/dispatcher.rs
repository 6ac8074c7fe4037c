//! Webhook delivery: a worker thread fed by a bounded queue. `send` never blocks (a full queue
//! drops the alert, logged and counted); the worker applies the per-(target, cluster) throttle,
//! signs and POSTs the body with a per-attempt timeout, retries connection errors, timeouts,
//! 5xx and 429 with exponential backoff (never other statuses), and keeps the alert log and
//! counters. Targets are served one after another on the one thread: with the defaults a dead
//! target holds the queue for at most 4 × 5 s + 3.5 s of backoff per alert.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::alerts::{
    payload, signature, AlertLogEntry, AlertStats, Outcome, WebhookTarget, EVENT_HEADER,
    SIGNATURE_HEADER,
};
use super::cluster::{Change, Cluster};
use crate::model::now_ms;

#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    pub targets: Vec<WebhookTarget>,
    /// Base URL of the admin UI, for cluster links (`{ui_base_url}/clusters/{id}`).
    pub ui_base_url: String,
    /// At most one alert per (target, cluster) in this span (default 30 min).
    pub throttle: Duration,
    /// Wait before the first retry; doubles per retry (default 0.5 s).
    pub backoff_initial: Duration,
    /// Longest wait between attempts, also the cap for `Retry-After` (default 30 s).
    pub backoff_max: Duration,
    /// Alerts waiting for the worker (default 1024).
    pub queue_capacity: usize,
    /// Entries kept in the alert log (default 200).
    pub log_capacity: usize,
}

impl DispatcherConfig {
    pub fn new(targets: Vec<WebhookTarget>, ui_base_url: &str) -> DispatcherConfig {
        DispatcherConfig {
            targets,
            ui_base_url: ui_base_url.to_owned(),
            throttle: Duration::from_secs(30 * 60),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            queue_capacity: 1024,
            log_capacity: 200,
        }
    }
}

struct Job {
    cluster_id: String,
    event: &'static str,
    /// Indexes into the config's targets.
    targets: Vec<usize>,
    body: Vec<u8>,
}

struct Shared {
    log: Mutex<VecDeque<AlertLogEntry>>,
    log_capacity: usize,
    delivered: AtomicU64,
    failed: AtomicU64,
    throttled: AtomicU64,
    retries: AtomicU64,
    dropped: AtomicU64,
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, VecDeque<AlertLogEntry>> {
        // A panic while holding the lock cannot leave the deque invalid; keep using it.
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, entry: AlertLogEntry) {
        let counter = match entry.outcome {
            Outcome::Delivered => &self.delivered,
            Outcome::Failed => &self.failed,
            Outcome::Throttled => &self.throttled,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut log = self.log();
        log.push_front(entry);
        log.truncate(self.log_capacity);
    }
}

/// Sends cluster alerts to the configured webhooks from its own thread.
pub struct Dispatcher {
    targets: Arc<Vec<WebhookTarget>>,
    ui_base_url: String,
    sender: Option<SyncSender<Job>>,
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl Dispatcher {
    /// Starts the worker thread. Validate the targets beforehand ([`WebhookTarget::validate`]).
    pub fn start(config: DispatcherConfig) -> std::io::Result<Dispatcher> {
        let (sender, receiver) = sync_channel(config.queue_capacity.max(1));
        let shared = Arc::new(Shared {
            log: Mutex::new(VecDeque::with_capacity(config.log_capacity)),
            log_capacity: config.log_capacity,
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let targets = Arc::new(config.targets.clone());
        let worker = Worker {
            targets: Arc::clone(&targets),
            shared: Arc::clone(&shared),
            throttle: config.throttle,
            backoff_initial: config.backoff_initial,
            backoff_max: config.backoff_max,
            last_sent: HashMap::new(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .user_agent(concat!("telemetryd/", env!("CARGO_PKG_VERSION")))
                .build()
                .into(),
        };
        let handle = std::thread::Builder::new()
            .name("cluster-alerts".into())
            .spawn(move || worker.run(receiver))?;
        Ok(Dispatcher {
            targets,
            ui_base_url: config.ui_base_url,
            sender: Some(sender),
            shared,
            worker: Some(handle),
        })
    }

    /// Queues the alert for every target that wants it; never blocks. Returns how many targets
    /// it was queued for (0 when none wants it, or when the queue is full or closed — then it
    /// is logged as failed and counted in `dropped`).
    pub fn send(&self, cluster: &Cluster, change: &Change) -> usize {
        let targets: Vec<usize> = self
            .targets
            .iter()
            .enumerate()
            .filter(|(_, t)| t.wants(cluster))
            .map(|(i, _)| i)
            .collect();
        if targets.is_empty() {
            return 0;
        }
        let body = payload(cluster, change, &self.ui_base_url)
            .to_string()
            .into_bytes();
        let count = targets.len();
        let job = Job {
            cluster_id: cluster.id.clone(),
            event: change.event_name(),
            targets,
            body,
        };
        let error = match &self.sender {
            None => "dispatcher closed",
            Some(sender) => match sender.try_send(job) {
                Ok(()) => return count,
                Err(TrySendError::Full(_)) => "alert queue full",
                Err(TrySendError::Disconnected(_)) => "alert worker stopped",
            },
        };
        tracing::warn!(cluster = %cluster.id, error, "cluster alert dropped");
        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        self.shared.record(AlertLogEntry {
            time_ms: now_ms(),
            target: "*".into(),
            cluster_id: cluster.id.clone(),
            event: change.event_name().into(),
            attempts: 0,
            outcome: Outcome::Failed,
            status: None,
            error: Some(error.into()),
        });
        0
    }

    /// The alert log, newest first.
    pub fn log(&self) -> Vec<AlertLogEntry> {
        self.shared.log().iter().cloned().collect()
    }

    pub fn stats(&self) -> AlertStats {
        AlertStats {
            delivered: self.shared.delivered.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            throttled: self.shared.throttled.load(Ordering::Relaxed),
            retries: self.shared.retries.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting alerts, lets the worker deliver what is queued, and joins it.
    pub fn close(&mut self) {
        self.sender = None;
        if let Some(worker) = self.worker.take() {
            if worker.join().is_err() {
                tracing::error!("cluster alert worker panicked");
            }
        }
    }
}

impl Drop for Dispatcher {
    /// Closes the queue without waiting; the worker finishes what is queued on its own.
    fn drop(&mut self) {
        self.sender = None;
    }
}

struct Worker {
    targets: Arc<Vec<WebhookTarget>>,
    shared: Arc<Shared>,
    throttle: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
    last_sent: HashMap<(usize, String), Instant>,
    agent: ureq::Agent,
}

/// Result of one HTTP attempt.
enum Attempt {
    Status(u16, Option<Duration>),
    Transport { error: String, retryable: bool },
}

impl Worker {
    fn run(mut self, receiver: Receiver<Job>) {
        while let Ok(job) = receiver.recv() {
            for index in &job.targets {
                self.handle(*index, &job);
            }
        }
    }

    fn handle(&mut self, index: usize, job: &Job) {
        let Some(target) = self.targets.get(index).cloned() else {
            return;
        };
        let now = Instant::now();
        let key = (index, job.cluster_id.clone());
        let entry = |attempts, outcome, status, error| AlertLogEntry {
            time_ms: now_ms(),
            target: target.name.clone(),
            cluster_id: job.cluster_id.clone(),
            event: job.event.into(),
            attempts,
            outcome,
            status,
            error,
        };
        if let Some(last) = self.last_sent.get(&key) {
            if now.duration_since(*last) < self.throttle {
                self.shared.record(entry(0, Outcome::Throttled, None, None));
                return;
            }
        }
        if self.last_sent.len() > 10_000 {
            let throttle = self.throttle;
            self.last_sent
                .retain(|_, at| now.duration_since(*at) < throttle);
        }
        self.last_sent.insert(key, now);

        let sig = signature(&job.body, &target.secret);
        let timeout = Duration::from_millis(target.timeout_ms);
        let max_attempts = target.max_attempts.max(1);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let attempt = self.post(&target, job, &sig, timeout);
            let (retryable, status, error, retry_after) = match attempt {
                Attempt::Status(status, _) if (200..300).contains(&status) => {
                    self.shared
                        .record(entry(attempts, Outcome::Delivered, Some(status), None));
                    return;
                }
                Attempt::Status(status, retry_after) => (
                    status >= 500 || status == 429,
                    Some(status),
                    format!("HTTP {status}"),
                    retry_after,
                ),
                Attempt::Transport { error, retryable } => (retryable, None, error, None),
            };
            if !retryable || attempts >= max_attempts {
                tracing::warn!(
                    target = %target.name,
                    cluster = %job.cluster_id,
                    attempts,
                    error = %error,
                    "cluster alert not delivered"
                );
                self.shared
                    .record(entry(attempts, Outcome::Failed, status, Some(error)));
                return;
            }
            self.shared.retries.fetch_add(1, Ordering::Relaxed);
            let backoff = self
                .backoff_initial
                .saturating_mul(1 << (attempts - 1).min(16))
                .min(self.backoff_max);
            let wait = retry_after.map_or(backoff, |ra| ra.max(backoff).min(self.backoff_max));
            std::thread::sleep(wait);
        }
    }

    fn post(&self, target: &WebhookTarget, job: &Job, sig: &str, timeout: Duration) -> Attempt {
        let result = self
            .agent
            .post(&target.url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Content-Type", "application/json")
            .header(SIGNATURE_HEADER, sig)
            .header(EVENT_HEADER, job.event)
            .send(&job.body[..]);
        match result {
            Ok(response) => {
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                Attempt::Status(response.status().as_u16(), retry_after)
            }
            Err(error) => {
                let retryable = matches!(
                    error,
                    ureq::Error::Io(_)
                        | ureq::Error::Timeout(_)
                        | ureq::Error::HostNotFound
                        | ureq::Error::ConnectionFailed
                        | ureq::Error::Protocol(_)
                );
                Attempt::Transport {
                    error: error.to_string(),
                    retryable,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Delivery against a real HTTP/1.1 receiver on 127.0.0.1 (std `TcpListener`, hand-parsed).

    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::clusters::alerts::verify_signature;
    use crate::clusters::cluster::Severity;
    use crate::clusters::fingerprint::tests::event;
    use crate::model::Level;

    const SECRET: &str = "test-secret-0123456789";

    struct Received {
        path: String,
        headers: HashMap<String, String>,
        body: Vec<u8>,
    }

    /// Answers each request with the next scripted status (then 200), or holds the connection
    /// without answering for `hang`. Stops by itself after 20 s or when dropped.
    struct Receiver {
        url: String,
        requests: Arc<Mutex<Vec<Received>>>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Receiver {
        fn start(statuses: &[u16], hang: Option<Duration>) -> Receiver {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let url = format!("http://{}/hook", listener.local_addr().unwrap());
            let requests = Arc::new(Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let mut script: VecDeque<u16> = statuses.iter().copied().collect();
            let (requests2, stop2) = (Arc::clone(&requests), Arc::clone(&stop));
            let thread = std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if let Some(hang) = hang {
                                std::thread::sleep(hang);
                                drop(stream);
                                continue;
                            }
                            let status = script.pop_front().unwrap_or(200);
                            serve(stream, status, &requests2);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            });
            Receiver {
                url,
                requests,
                stop,
                thread: Some(thread),
            }
        }

        fn requests(&self) -> std::sync::MutexGuard<'_, Vec<Received>> {
            self.requests.lock().unwrap()
        }
    }

    impl Drop for Receiver {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// Reads one request, records it, then answers `status` (recorded first, so a test that
    /// saw the answer also sees the request).
    fn serve(stream: TcpStream, status: u16, requests: &Mutex<Vec<Received>>) -> Option<()> {
        stream.set_nonblocking(false).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let mut parts = line.split_whitespace();
        assert_eq!(parts.next(), Some("POST"));
        let path = parts.next()?.to_owned();
        let mut headers = HashMap::new();
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).ok()?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':')?;
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
        let length: usize = headers.get("content-length")?.parse().ok()?;
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        requests.lock().unwrap().push(Received {
            path,
            headers,
            body,
        });
        let response = format!(
            "HTTP/1.1 {status} Scripted\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        );
        reader.get_mut().write_all(response.as_bytes()).ok()
    }

    fn cluster(id: &str) -> Cluster {
        let e = event(
            "recognition_failed",
            Level::Error,
            Some("-1001"),
            "timed out",
        );
        let mut c = Cluster::new(&e, id);
        c.add(&e);
        c
    }

    fn dispatcher(targets: Vec<WebhookTarget>) -> Dispatcher {
        let mut config = DispatcherConfig::new(targets, "https://td.example.com");
        config.backoff_initial = Duration::from_millis(10);
        config.backoff_max = Duration::from_millis(50);
        Dispatcher::start(config).unwrap()
    }

    fn target(url: &str) -> WebhookTarget {
        let mut t = WebhookTarget::new("ops", url, SECRET);
        t.timeout_ms = 2000;
        t
    }

    #[test]
    fn delivers_a_signed_slack_compatible_body() {
        let receiver = Receiver::start(&[], None);
        let mut d = dispatcher(vec![target(&receiver.url)]);
        let c = cluster("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        assert_eq!(d.send(&c, &Change::New), 1);
        d.close();
        let requests = receiver.requests();
        assert_eq!(requests.len(), 1);
        let r = &requests[0];
        assert_eq!(r.path, "/hook");
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.headers["x-telemetryd-event"], "new");
        let sig = &r.headers["x-telemetryd-signature"];
        assert!(verify_signature(&r.body, SECRET, sig), "signature {sig}");
        assert!(!verify_signature(&r.body, "wrong-secret-0123456789", sig));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(body["text"].as_str().unwrap().contains("New error cluster"));
        assert_eq!(
            body["telemetryd"]["cluster_id"],
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        );
        assert_eq!(
            body["telemetryd"]["url"],
            "https://td.example.com/clusters/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        );
        let log = d.log();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].outcome, Outcome::Delivered);
        assert_eq!(log[0].attempts, 1);
        assert_eq!(log[0].status, Some(200));
        assert_eq!(log[0].target, "ops");
        assert_eq!(log[0].event, "new");
        assert_eq!(
            d.stats(),
            AlertStats {
                delivered: 1,
                ..AlertStats::default()
            }
        );
    }

    #[test]
    fn retries_a_500_then_delivers() {
        let receiver = Receiver::start(&[500, 503], None);
        let mut d = dispatcher(vec![target(&receiver.url)]);
        d.send(
            &cluster("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"),
            &Change::Regressed { version: None },
        );
        d.close();
        let requests = receiver.requests();
        assert_eq!(requests.len(), 3);
        assert!(
            requests.iter().all(|r| r.body == requests[0].body),
            "same body every attempt"
        );
        let log = d.log();
        assert_eq!(log[0].outcome, Outcome::Delivered);
        assert_eq!(log[0].attempts, 3);
        assert_eq!(log[0].event, "regressed");
        assert_eq!(d.stats().retries, 2);
        assert_eq!(d.stats().delivered, 1);
    }

    #[test]
    fn does_not_retry_a_400_and_gives_up_after_max_attempts() {
        let receiver = Receiver::start(&[400, 500, 500, 500], None);
        let mut t = target(&receiver.url);
        t.max_attempts = 3;
        let mut d = dispatcher(vec![t]);
        d.send(&cluster("cccccccccccccccccccccccccccccccc"), &Change::New);
        d.send(&cluster("dddddddddddddddddddddddddddddddd"), &Change::New);
        d.close();
        assert_eq!(receiver.requests().len(), 4);
        let log = d.log();
        // Newest first: the second cluster failed after 3 attempts of 500.
        assert_eq!(log[0].cluster_id, "dddddddddddddddddddddddddddddddd");
        assert_eq!(
            (log[0].outcome, log[0].attempts, log[0].status),
            (Outcome::Failed, 3, Some(500))
        );
        assert_eq!(log[1].cluster_id, "cccccccccccccccccccccccccccccccc");
        assert_eq!(
            (log[1].outcome, log[1].attempts, log[1].status),
            (Outcome::Failed, 1, Some(400))
        );
        assert_eq!(log[1].error.as_deref(), Some("HTTP 400"));
        assert_eq!(
            d.stats(),
            AlertStats {
                failed: 2,
                retries: 2,
                ..AlertStats::default()
            }
        );
    }

    #[test]
    fn throttles_per_target_and_cluster() {
        let receiver = Receiver::start(&[], None);
        let mut d = dispatcher(vec![target(&receiver.url)]);
        let a = cluster("eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee");
        let b = cluster("ffffffffffffffffffffffffffffffff");
        d.send(&a, &Change::New);
        d.send(
            &a,
            &Change::Escalated {
                from: Severity::Error,
                to: Severity::Fatal,
            },
        );
        d.send(&b, &Change::New);
        d.close();
        let requests = receiver.requests();
        assert_eq!(
            requests.len(),
            2,
            "the second alert for the same cluster is not sent"
        );
        assert_eq!(requests[0].headers["x-telemetryd-event"], "new");
        let log = d.log();
        let outcomes: Vec<(&str, Outcome)> =
            log.iter().map(|e| (e.event.as_str(), e.outcome)).collect();
        assert_eq!(
            outcomes,
            [
                ("new", Outcome::Delivered),
                ("escalated", Outcome::Throttled),
                ("new", Outcome::Delivered)
            ]
        );
        assert_eq!(log[1].attempts, 0);
        assert_eq!(d.stats().throttled, 1);
    }

    #[test]
    fn connection_errors_and_timeouts_are_retried_then_fail() {
        // A port with nothing listening.
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", closed.local_addr().unwrap());
        drop(closed);
        let mut refused = target(&url);
        refused.name = "refused".into();
        refused.max_attempts = 2;
        // A receiver that accepts and never answers.
        let hanging = Receiver::start(&[], Some(Duration::from_millis(1500)));
        let mut slow = target(&hanging.url);
        slow.name = "slow".into();
        slow.timeout_ms = 200;
        slow.max_attempts = 1;
        let mut d = dispatcher(vec![refused, slow]);
        let started = Instant::now();
        d.send(&cluster("11111111111111111111111111111111"), &Change::New);
        d.close();
        assert!(
            started.elapsed() < Duration::from_millis(1400),
            "{:?}",
            started.elapsed()
        );
        let log = d.log();
        let slow_entry = &log[0];
        assert_eq!(
            (slow_entry.target.as_str(), slow_entry.outcome),
            ("slow", Outcome::Failed)
        );
        assert!(
            slow_entry
                .error
                .as_deref()
                .unwrap()
                .to_lowercase()
                .contains("timeout"),
            "{slow_entry:?}"
        );
        let refused_entry = &log[1];
        assert_eq!(
            (refused_entry.target.as_str(), refused_entry.attempts),
            ("refused", 2)
        );
        assert_eq!(refused_entry.status, None);
        assert!(refused_entry.error.is_some());
        assert_eq!(d.stats().failed, 2);
        assert_eq!(d.stats().retries, 1);
    }

    #[test]
    fn filters_targets_and_reports_a_full_queue() {
        let receiver = Receiver::start(&[], None);
        let mut other_product = target(&receiver.url);
        other_product.products = vec!["other".into()];
        let mut d = dispatcher(vec![other_product]);
        assert_eq!(
            d.send(&cluster("22222222222222222222222222222222"), &Change::New),
            0
        );
        d.close();
        assert!(receiver.requests().is_empty());
        assert!(d.log().is_empty());
        // After close, sends are dropped, logged and counted.
        let mut d = dispatcher(vec![target(&receiver.url)]);
        d.close();
        assert_eq!(
            d.send(&cluster("33333333333333333333333333333333"), &Change::New),
            0
        );
        assert_eq!(d.log()[0].error.as_deref(), Some("dispatcher closed"));
        assert_eq!(d.stats().dropped, 1);
        assert_eq!(d.stats().failed, 1);
    }
}
