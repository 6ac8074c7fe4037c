//! Release health per app version, from the `session` events the Sentry format stores (see
//! `ingest::formats::sentry`): sessions started and crashed, the crash-free share of sessions,
//! and the installs with a session and with a crashed one, the crash-free share of installs.
//! Each session event carries the metrics `sessions` (sessions it starts) and `crashed`
//! (sessions of it that crashed); figures are sums of those, not weighted (sessions are not
//! sampled by the SDKs that send them).

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{filter, time_range, AnalyticsError, Context, Range};
use crate::search::NO_VALUE;

/// The events that carry release health.
pub const SESSION_EVENTS: &str = "name:session";

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseHealthSpec {
    #[serde(flatten)]
    pub range: Range,
}

/// One app version's release health.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct ReleaseFigures {
    pub app_version: String,
    /// Sessions started.
    pub sessions: f64,
    /// Sessions that crashed.
    pub crashed: f64,
    /// 1 − crashed / sessions (`null` without sessions).
    pub crash_free_sessions: Option<f64>,
    /// Installs with a session.
    pub installs: u64,
    /// Installs with a crashed session.
    pub crashed_installs: u64,
    /// 1 − crashed installs / installs (`null` without installs).
    pub crash_free_installs: Option<f64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReleaseHealthAnswer {
    /// Per app version with sessions, newest version first (by semantic version where both
    /// parse, else by text).
    pub releases: Vec<ReleaseFigures>,
}

/// Per app version: the sum of `metric` and the installs whose events have it above 0.
fn per_version(
    context: &Context,
    range: &Range,
    metric: &str,
) -> Result<BTreeMap<String, (f64, HashSet<String>)>, AnalyticsError> {
    let (from, to) = time_range(context, range)?;
    let filter = filter(
        context,
        Some(from),
        to,
        range.q.as_deref(),
        Some(SESSION_EVENTS),
    );
    let scanned = context
        .index
        .scan(&filter, &["app_version", "install_id"], Some(metric))?;
    let (versions, installs) = (&scanned.columns[0], &scanned.columns[1]);
    let mut figures: BTreeMap<String, (f64, HashSet<String>)> = BTreeMap::new();
    for (row, value) in scanned.metric.iter().enumerate() {
        let Some(version) = versions.value(versions.ids[row]) else {
            continue;
        };
        if !value.is_finite() || *value <= 0.0 {
            continue;
        }
        let entry = figures.entry(version.to_string()).or_default();
        entry.0 += value;
        let install = installs.ids[row];
        if install != NO_VALUE {
            if let Some(install) = installs.value(install) {
                entry.1.insert(install.to_string());
            }
        }
    }
    Ok(figures)
}

pub fn run(
    context: &Context,
    spec: &ReleaseHealthSpec,
) -> Result<ReleaseHealthAnswer, AnalyticsError> {
    let started = per_version(context, &spec.range, "sessions")?;
    let mut crashed = per_version(context, &spec.range, "crashed")?;
    let share = |part: f64, whole: f64| (whole > 0.0).then(|| (1.0 - part / whole).clamp(0.0, 1.0));
    let mut releases: Vec<ReleaseFigures> = started
        .into_iter()
        .map(|(app_version, (sessions, installs))| {
            let (crashed, crashed_installs) = crashed.remove(&app_version).unwrap_or_default();
            let crashed_installs = crashed_installs.intersection(&installs).count() as u64;
            let installs = installs.len() as u64;
            ReleaseFigures {
                crash_free_sessions: share(crashed, sessions),
                crash_free_installs: share(crashed_installs as f64, installs as f64),
                app_version,
                sessions,
                crashed,
                installs,
                crashed_installs,
            }
        })
        .collect();
    releases.sort_by(|a, b| newest_first(&a.app_version, &b.app_version));
    Ok(ReleaseHealthAnswer { releases })
}

fn newest_first(a: &str, b: &str) -> std::cmp::Ordering {
    match (semver::Version::parse(a), semver::Version::parse(b)) {
        (Ok(a), Ok(b)) => b.cmp(&a),
        _ => b.cmp(a),
    }
}
