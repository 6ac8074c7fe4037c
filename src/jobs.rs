//! Periodic jobs on tokio-cron-scheduler: the retention sweep and the clustering pass (which
//! also sends the alerts). Each job's blocking work runs on the blocking pool.

use std::fmt::{Debug, Display};
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
    add_blocking(
        &scheduler,
        &jobs.retention_schedule,
        "retention sweep",
        move || retention.sweep(),
    )
    .await?;
    let clusters = jobs.clusters;
    add_blocking(
        &scheduler,
        &jobs.clustering_schedule,
        "clustering pass",
        move || clusters.pass(),
    )
    .await?;
    scheduler.start().await?;
    tracing::info!(
        retention = %jobs.retention_schedule,
        clustering = %jobs.clustering_schedule,
        "jobs scheduled"
    );
    Ok(scheduler)
}

/// Adds a job that runs `work` on the blocking pool on `schedule` and logs how it went.
async fn add_blocking<T, E>(
    scheduler: &JobScheduler,
    schedule: &str,
    what: &'static str,
    work: impl Fn() -> Result<T, E> + Send + Sync + 'static,
) -> Result<(), JobSchedulerError>
where
    T: Debug + Send + 'static,
    E: Display + Send + 'static,
{
    let work = Arc::new(work);
    let job = Job::new_async(schedule, move |_, _| {
        let work = work.clone();
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || work()).await {
                Ok(Ok(report)) => tracing::debug!(?report, "{what} finished"),
                Ok(Err(e)) => tracing::error!(error = %e, "{what} failed"),
                Err(e) => tracing::error!(error = %e, "{what} panicked"),
            }
        })
    })?;
    scheduler.add(job).await?;
    Ok(())
}
