//! The background tasks, in one place: which run, in what order they stop, and the startup log
//! that lists them. `AppState::open` starts the store writer, the search indexer, the alert
//! dispatcher and the metric-history sampler (in that order, each needing the ones before);
//! `serve` adds the cron jobs (retention sweep, clustering pass). [`Tasks::stop`] ends them in
//! reverse: no new jobs, no more samples, the writer's last commit, the index's last commit, the
//! alerts already queued. The purge runs on demand on its own thread (see `privacy`).

use std::sync::Arc;

use tokio_cron_scheduler::{JobScheduler, JobSchedulerError};

use crate::clusters::service::Clusters;
use crate::history::Sampler;
use crate::jobs::{self, JobSet};
use crate::search::SearchIndex;
use crate::store::subscribers::Subscribers;
use crate::store::writer::Writer;
use crate::store::Store;

pub struct Tasks {
    writer: Arc<Writer>,
    search: Arc<SearchIndex>,
    clusters: Arc<Clusters>,
    sampler: Option<Sampler>,
    scheduler: tokio::sync::Mutex<Option<JobScheduler>>,
}

impl Tasks {
    /// Takes over the tasks `AppState::open` started.
    pub fn new(
        writer: Arc<Writer>,
        search: Arc<SearchIndex>,
        clusters: Arc<Clusters>,
        sampler: Option<Sampler>,
    ) -> Tasks {
        Tasks {
            writer,
            search,
            clusters,
            sampler,
            scheduler: tokio::sync::Mutex::new(None),
        }
    }

    /// Starts the cron jobs (needs the async runtime).
    pub async fn start_jobs(&self, jobs: JobSet) -> Result<(), JobSchedulerError> {
        let scheduler = jobs::start(jobs).await?;
        *self.scheduler.lock().await = Some(scheduler);
        Ok(())
    }

    /// The names of the tasks running now.
    pub fn running(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.writer.is_running() {
            names.push("store-writer");
        }
        names.push("search-indexer");
        names.push("alert-dispatcher");
        if self.sampler.is_some() {
            names.push("metric-history");
        }
        if self
            .scheduler
            .try_lock()
            .map(|s| s.is_some())
            .unwrap_or(true)
        {
            names.push("jobs");
        }
        names
    }

    /// Logs every background task and every commit subscriber with its position.
    pub fn log_running(&self, subscribers: &Subscribers, store: &Store) {
        tracing::info!(tasks = ?self.running(), "background tasks running");
        let next_seq = store.next_seq().unwrap_or(0);
        for lag in subscribers.lags(next_seq) {
            tracing::info!(
                subscriber = lag.name,
                position = lag.position,
                lag_events = lag.lag_events,
                "commit subscriber"
            );
        }
    }

    /// Stops every task, in reverse order of their start. Call once the HTTP server has stopped.
    pub async fn stop(&self) {
        if let Some(mut scheduler) = self.scheduler.lock().await.take() {
            let _ = scheduler.shutdown().await;
        }
        self.stop_threads();
    }

    /// Stops the thread-backed tasks (for callers without the async runtime, such as the demo).
    pub fn stop_threads(&self) {
        if let Some(sampler) = &self.sampler {
            sampler.stop();
        }
        self.writer.close();
        self.search.close();
        self.clusters.close();
    }
}
