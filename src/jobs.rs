//! Periodic jobs on tokio-cron-scheduler: the retention sweep and the clustering pass (which
//! also sends the alerts). Each job's blocking work runs on the blocking pool.

use std::sync::Arc;

use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

use crate::clusters::service::Clusters;
use crate::retention::Retention;

/// What the jobs run, and when (cron expressions with seconds).
pub struct JobSet {
    pub retention: Arc<Retention>,
    pub retention_schedule: String,
    pub clusters: Arc<Clusters>,
    pub clustering_schedule: String,
}

/// Starts the scheduler with every job; keep the returned scheduler alive while serving.
pub async fn start(jobs: JobSet) -> Result<JobScheduler, JobSchedulerError> {
    let scheduler = JobScheduler::new().await?;
    let retention = jobs.retention;
    scheduler
        .add(Job::new_async(
            jobs.retention_schedule.as_str(),
            move |_, _| {
                let retention = retention.clone();
                Box::pin(async move {
                    let result = tokio::task::spawn_blocking(move || retention.sweep()).await;
                    match result {
                        Ok(Err(e)) => tracing::error!(error = %e, "retention sweep failed"),
                        Err(e) => tracing::error!(error = %e, "retention sweep panicked"),
                        Ok(Ok(_)) => {}
                    }
                })
            },
        )?)
        .await?;
    let clusters = jobs.clusters;
    scheduler
        .add(Job::new_async(
            jobs.clustering_schedule.as_str(),
            move |_, _| {
                let clusters = clusters.clone();
                Box::pin(async move {
                    let result = tokio::task::spawn_blocking(move || clusters.pass()).await;
                    match result {
                        Ok(Ok(report)) if report.events > 0 => {
                            tracing::debug!(?report, "clustering pass")
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::error!(error = %e, "clustering pass failed"),
                        Err(e) => tracing::error!(error = %e, "clustering pass panicked"),
                    }
                })
            },
        )?)
        .await?;
    scheduler.start().await?;
    tracing::info!(
        retention = %jobs.retention_schedule,
        clustering = %jobs.clustering_schedule,
        "jobs scheduled"
    );
    Ok(scheduler)
}
