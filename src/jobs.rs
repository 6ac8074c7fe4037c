//! Periodic jobs on tokio-cron-scheduler: the retention sweep and the clustering pass (which
//! also sends the alerts). Each job's blocking work runs on the blocking pool.

use std::sync::Arc;

use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

use crate::AppState;

/// Starts the scheduler with every job; keep the returned scheduler alive while serving.
pub async fn start(state: Arc<AppState>) -> Result<JobScheduler, JobSchedulerError> {
    let scheduler = JobScheduler::new().await?;
    let schedule = state.config.retention.schedule.clone();
    let job_state = state.clone();
    scheduler
        .add(Job::new_async(schedule.as_str(), move |_, _| {
            let state = job_state.clone();
            Box::pin(async move {
                let result =
                    tokio::task::spawn_blocking(move || crate::retention::sweep(&state)).await;
                match result {
                    Ok(Err(e)) => tracing::error!(error = %e, "retention sweep failed"),
                    Err(e) => tracing::error!(error = %e, "retention sweep panicked"),
                    Ok(Ok(_)) => {}
                }
            })
        })?)
        .await?;
    let clustering = state.config.clusters.schedule.clone();
    let job_state = state.clone();
    scheduler
        .add(Job::new_async(clustering.as_str(), move |_, _| {
            let state = job_state.clone();
            Box::pin(async move {
                let result = tokio::task::spawn_blocking(move || state.clusters.pass(&state)).await;
                match result {
                    Ok(Ok(report)) if report.events > 0 => {
                        tracing::debug!(?report, "clustering pass")
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "clustering pass failed"),
                    Err(e) => tracing::error!(error = %e, "clustering pass panicked"),
                }
            })
        })?)
        .await?;
    scheduler.start().await?;
    tracing::info!(retention = %schedule, clustering = %clustering, "jobs scheduled");
    Ok(scheduler)
}
