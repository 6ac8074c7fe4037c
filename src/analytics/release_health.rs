//! Release health per app version, from the `session` events the Sentry format stores (see
//! `ingest::formats::sentry`): sessions started and crashed, the crash-free share of sessions,
//! and the installs with a session and with a crashed one, the crash-free share of installs.
//! Each session event carries the metrics `sessions` (sessions it starts) and `crashed`
//! (sessions of it that crashed); figures are sums of those, not weighted (sessions are not
//! sampled by the SDKs that send them). Versions with fewer installs than the product's
//! `min_group_installs` are folded into `other` (k-anonymity), as every grouping is; at most
//! `limit` versions (by sessions) are shown, the rest in `other` too.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::groups::{select, Candidate, OTHER};
use super::{filter, group_limit, time_range, AnalyticsError, Context, Range};
use crate::search::NO_VALUE;

/// The events that carry release health.
pub const SESSION_EVENTS: &str = "name:session";

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseHealthSpec {
    #[serde(flatten)]
    pub range: Range,
    /// App versions shown (default 10), the rest in "other".
    pub limit: Option<usize>,
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
    /// parse, else by text), then `other` when versions were folded.
    pub releases: Vec<ReleaseFigures>,
    /// Versions folded into `other` for having fewer installs than `min_group_installs`.
    pub suppressed_groups: usize,
}

/// One version's sums before they are shown.
#[derive(Default)]
struct Sums {
    sessions: f64,
    crashed: f64,
    installs: HashSet<String>,
    crashed_installs: HashSet<String>,
}

impl Sums {
    fn add(&mut self, other: Sums) {
        self.sessions += other.sessions;
        self.crashed += other.crashed;
        self.installs.extend(other.installs);
        self.crashed_installs.extend(other.crashed_installs);
    }

    fn figures(self, app_version: String) -> ReleaseFigures {
        let share =
            |part: f64, whole: f64| (whole > 0.0).then(|| (1.0 - part / whole).clamp(0.0, 1.0));
        let crashed_installs = self.crashed_installs.intersection(&self.installs).count() as u64;
        let installs = self.installs.len() as u64;
        ReleaseFigures {
            crash_free_sessions: share(self.crashed, self.sessions),
            crash_free_installs: share(crashed_installs as f64, installs as f64),
            app_version,
            sessions: self.sessions,
            crashed: self.crashed,
            installs,
            crashed_installs,
        }
    }
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
    let limit = group_limit(spec.limit)?;
    let mut sums: BTreeMap<String, Sums> = BTreeMap::new();
    for (version, (sessions, installs)) in per_version(context, &spec.range, "sessions")? {
        let entry = sums.entry(version).or_default();
        entry.sessions = sessions;
        entry.installs = installs;
    }
    for (version, (crashed, installs)) in per_version(context, &spec.range, "crashed")? {
        let entry = sums.entry(version).or_default();
        entry.crashed = crashed;
        entry.crashed_installs = installs;
    }
    let candidates = sums
        .iter()
        .map(|(version, sums)| Candidate {
            key: version.clone(),
            weight: sums.sessions,
            installs: sums.installs.len(),
        })
        .collect();
    let selection = select(candidates, limit, context.min_group_installs);
    let mut other: Option<Sums> = None;
    let mut releases = Vec::new();
    for (version, version_sums) in sums {
        if selection.slot(&version) < selection.kept.len() {
            releases.push(version_sums.figures(version));
        } else {
            other.get_or_insert_with(Sums::default).add(version_sums);
        }
    }
    releases.sort_by(|a, b| newest_first(&a.app_version, &b.app_version));
    releases.extend(other.map(|sums| sums.figures(OTHER.to_string())));
    Ok(ReleaseHealthAnswer {
        releases,
        suppressed_groups: selection.suppressed,
    })
}

fn newest_first(a: &str, b: &str) -> std::cmp::Ordering {
    match (semver::Version::parse(a), semver::Version::parse(b)) {
        (Ok(a), Ok(b)) => b.cmp(&a),
        _ => b.cmp(a),
    }
}
