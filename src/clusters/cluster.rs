//! The error cluster: its persisted state, the cheap per-event fold (`add`), the once-per-pass
//! evaluation of severity, spike, regression and ignore conditions (`evaluate`), admin status
//! changes (`set_status`), and helpers that fold a batch of events into a map of clusters.
//!
//! Time: counts are bucketed by the event's `timestamp` (skew-corrected at ingest), so late
//! batches from offline clients land in the hours they happened; regressions look at
//! `received_at`, so only events stored after a resolution can reopen it.
//!
//! Weighting: a sampled event stands for [`weight_of_rate`] events (its effective sample rate,
//! client × server). The cluster keeps the weighted count beside the stored one, per day and
//! per hour too; the escalation thresholds, the spike check and "ignore until N more events"
//! use the weighted counts, rounded to whole events.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{weight_of_rate, Event, Level};

use super::escalation::{
    forecast, EscalationRules, DAILY_RETENTION_DAYS, FORECAST_HISTORY_HOURS, HOURLY_RETENTION_HOURS,
};
use super::fingerprint::{fingerprint, stable_hash64, title};
use super::installs::{InstallCounter, RecentInstalls};
use crate::timespan::{day_start, hour_start, DAY_MS, HOUR_MS};
use crate::version::is_newer;

/// Key used in `app_versions` / `platforms` when the event has none.
pub const UNKNOWN_KEY: &str = "unknown";
/// Key the smallest entries are merged into when `app_versions` grows past [`MAX_VERSIONS`].
pub const OTHER_KEY: &str = "(other)";
/// Distinct app versions kept per cluster (the rest are summed into [`OTHER_KEY`]).
pub const MAX_VERSIONS: usize = 100;
/// Longest `in_version` accepted by [`Cluster::set_status`].
pub const MAX_VERSION_LEN: usize = 128;

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Warn,
    Error,
    Fatal,
}

impl Severity {
    /// The severity an event level implies on its own (below `warn` counts as `warn`).
    pub fn from_level(level: Level) -> Severity {
        match level {
            Level::Fatal => Severity::Fatal,
            Level::Error => Severity::Error,
            _ => Severity::Warn,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warn => "warn",
            Severity::Error => "error",
            Severity::Fatal => "fatal",
        }
    }
}

/// Serialised flattened into the cluster: `{"status": "resolved", "in_version": "1.2.0"}`,
/// `{"status": "ignored", "until": {"kind": "more_events", "count": 50, "baseline": 1200}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    #[default]
    Open,
    Resolved {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_version: Option<String>,
    },
    Ignored {
        until: IgnoreUntil,
    },
    Regressed,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Resolved { .. } => "resolved",
            Status::Ignored { .. } => "ignored",
            Status::Regressed => "regressed",
        }
    }

    /// Open or regressed: escalations and spikes alert. Resolved and ignored clusters stay
    /// quiet until they regress or their ignore condition is met.
    pub fn is_active(&self) -> bool {
        matches!(self, Status::Open | Status::Regressed)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IgnoreUntil {
    Forever,
    Time {
        until_ms: i64,
    },
    /// Until `count` more (weighted) events than the `baseline` weighted count at the time of
    /// ignoring.
    MoreEvents {
        count: u64,
        baseline: u64,
    },
    /// Until `count` more affected installs than `baseline` (estimates past the exact bound).
    MoreInstalls {
        count: u64,
        baseline: u64,
    },
}

/// What [`Cluster::evaluate`] reports, for alerting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    New,
    Escalated { from: Severity, to: Severity },
    Spike { hourly: u64, forecast: f64 },
    Regressed { version: Option<String> },
    Unignored,
}

impl Change {
    /// The alert event name: `new`, `escalated`, `spike`, `regressed`, `unignored`.
    pub fn event_name(&self) -> &'static str {
        match self {
            Change::New => "new",
            Change::Escalated { .. } => "escalated",
            Change::Spike { .. } => "spike",
            Change::Regressed { .. } => "regressed",
            Change::Unignored => "unignored",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClusterError {
    #[error("{field}: {message}")]
    InvalidField {
        field: &'static str,
        message: String,
    },
}

impl ClusterError {
    /// Stable snake_case code for the API's error table.
    pub fn code(&self) -> &'static str {
        match self {
            ClusterError::InvalidField { .. } => "invalid_field",
        }
    }

    /// The request field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            ClusterError::InvalidField { field, .. } => field,
        }
    }

    fn invalid(field: &'static str, message: impl Into<String>) -> ClusterError {
        ClusterError::InvalidField {
            field,
            message: message.into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusKind {
    Open,
    Resolved,
    Ignored,
}

/// An admin status change, as the `PATCH /api/v1/clusters/{id}` body:
/// `{"status": "open"}`, `{"status": "resolved", "in_version": "1.2.0"}`,
/// `{"status": "ignored"}` (forever), or ignored with one of `"until": "2025-01-31T00:00:00Z"`
/// (RFC 3339), `"until_ms": 1738281600000`, `"more_events": 100`, `"more_installs": 10`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    pub status: StatusKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more_events: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more_installs: Option<u64>,
}

impl StatusRequest {
    pub fn new(status: StatusKind) -> StatusRequest {
        StatusRequest {
            status,
            in_version: None,
            until: None,
            until_ms: None,
            more_events: None,
            more_installs: None,
        }
    }
}

/// Evidence for a regression, gathered by `add` while resolved and acted on by `evaluate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRegression {
    /// Newest qualifying app version seen (None: the event had none and none was required).
    pub version: Option<String>,
    pub received_at: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cluster {
    /// The fingerprint.
    pub id: String,
    pub product: String,
    pub title: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Event timestamps (ms).
    pub first_seen: i64,
    pub last_seen: i64,
    /// Events stored.
    pub count: u64,
    /// Events they stand for (each weighted by 1 / its sample rate). NaN only while a cluster
    /// stored before weighting is loaded, until [`Cluster::fill_missing_weights`].
    #[serde(default = "missing_weight")]
    pub weighted_count: f64,
    /// The event with the latest timestamp, for "latest event" links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_id: Option<Uuid>,
    pub installs: InstallCounter,
    /// Last hour each recent install was seen: the window install thresholds.
    #[serde(default)]
    pub recent_installs: RecentInstalls,
    pub app_versions: BTreeMap<String, u64>,
    pub platforms: BTreeMap<String, u64>,
    /// Events per UTC day (key: day start ms), last [`DAILY_RETENTION_DAYS`] days.
    pub daily: BTreeMap<i64, u64>,
    /// Events per hour (key: hour start ms), last [`HOURLY_RETENTION_HOURS`] hours.
    pub hourly: BTreeMap<i64, u64>,
    /// `daily` weighted.
    #[serde(default)]
    pub weighted_daily: BTreeMap<i64, f64>,
    /// `hourly` weighted.
    #[serde(default)]
    pub weighted_hourly: BTreeMap<i64, f64>,
    pub level_seen: Level,
    pub severity: Severity,
    pub escalating: bool,
    #[serde(flatten)]
    pub status: Status,
    pub status_changed_at: i64,
    /// When `evaluate` last ran; `None` until the first pass (which reports [`Change::New`]).
    #[serde(default)]
    pub evaluated_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_regression: Option<PendingRegression>,
    /// Folded into since the last `evaluate` (not persisted).
    #[serde(skip)]
    touched: bool,
    /// Last `(event version, is newer than in_version)` while resolved (not persisted).
    #[serde(skip)]
    version_check: Option<(String, bool)>,
}

fn missing_weight() -> f64 {
    f64::NAN
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(count) => *count += 1,
        None => {
            map.insert(key.to_owned(), 1);
        }
    }
}

/// Hours since the epoch of `ms`, clamped into `u32`.
fn hour_index(ms: i64) -> u32 {
    u32::try_from(ms.div_euclid(HOUR_MS).max(0)).unwrap_or(u32::MAX)
}

impl Cluster {
    /// A cluster for `event`'s identity, with nothing counted yet: follow with `add(event)`.
    /// Computes the title (runs the normaliser) — once per new cluster, not per event.
    pub fn new(event: &Event, fingerprint: &str) -> Cluster {
        let error = event.error.as_ref();
        Cluster {
            id: fingerprint.to_owned(),
            product: event.product.clone(),
            title: title(event),
            name: event.name.clone(),
            platform: event.platform.clone(),
            channel: event.channel.clone(),
            module: event.module.clone(),
            error_domain: error.and_then(|e| e.domain.clone()),
            error_code: error.and_then(|e| e.code.clone()),
            first_seen: event.timestamp,
            last_seen: event.timestamp,
            count: 0,
            last_event_id: None,
            installs: InstallCounter::default(),
            recent_installs: RecentInstalls::default(),
            app_versions: BTreeMap::new(),
            platforms: BTreeMap::new(),
            daily: BTreeMap::new(),
            hourly: BTreeMap::new(),
            weighted_count: 0.0,
            weighted_daily: BTreeMap::new(),
            weighted_hourly: BTreeMap::new(),
            level_seen: event.level,
            severity: Severity::from_level(event.level),
            escalating: false,
            status: Status::Open,
            status_changed_at: event.received_at,
            evaluated_at: None,
            pending_regression: None,
            touched: true,
            version_check: None,
        }
    }

    /// Folds one event in: counters, seen times, installs, versions, platforms, daily and
    /// hourly buckets, and — while resolved — regression evidence. No regex, no hashing beyond
    /// the install id, allocations only for a new version/platform/bucket key. State changes
    /// are decided by [`Cluster::evaluate`] once per pass.
    pub fn add(&mut self, event: &Event) {
        let ts = event.timestamp;
        let weight = weight_of_rate(event.sample_rate);
        self.count += 1;
        self.weighted_count += weight;
        if ts < self.first_seen {
            self.first_seen = ts;
        }
        if ts >= self.last_seen {
            self.last_seen = ts;
            self.last_event_id = Some(event.id);
        }
        if event.level > self.level_seen {
            self.level_seen = event.level;
        }
        if let Some(install) = event.install_id.as_deref() {
            let hash = stable_hash64(install);
            self.installs.insert(hash);
            self.recent_installs.touch(hash, hour_index(ts));
        }
        bump(
            &mut self.app_versions,
            event.app_version.as_deref().unwrap_or(UNKNOWN_KEY),
        );
        bump(
            &mut self.platforms,
            event.platform.as_deref().unwrap_or(UNKNOWN_KEY),
        );
        *self.daily.entry(day_start(ts)).or_insert(0) += 1;
        *self.hourly.entry(hour_start(ts)).or_insert(0) += 1;
        *self.weighted_daily.entry(day_start(ts)).or_insert(0.0) += weight;
        *self.weighted_hourly.entry(hour_start(ts)).or_insert(0.0) += weight;
        if matches!(self.status, Status::Resolved { .. })
            && event.received_at >= self.status_changed_at
        {
            self.note_event_while_resolved(event);
        }
        self.touched = true;
    }

    fn note_event_while_resolved(&mut self, event: &Event) {
        let Status::Resolved { in_version } = &self.status else {
            return;
        };
        let version = event.app_version.as_deref();
        let regresses = match (in_version.as_deref(), version) {
            (None, _) => true,
            // Without a version the event cannot show the fix failed.
            (Some(_), None) => false,
            (Some(fixed), Some(v)) => match &self.version_check {
                Some((checked, newer)) if checked == v => *newer,
                _ => {
                    let newer = is_newer(v, fixed);
                    self.version_check = Some((v.to_owned(), newer));
                    newer
                }
            },
        };
        if !regresses {
            return;
        }
        let newest = match &self.pending_regression {
            None => true,
            Some(pending) => match (pending.version.as_deref(), version) {
                (Some(seen), Some(v)) => seen != v && is_newer(v, seen),
                (None, Some(_)) => true,
                _ => false,
            },
        };
        if newest {
            self.pending_regression = Some(PendingRegression {
                version: version.map(str::to_owned),
                received_at: event.received_at,
            });
        }
    }

    /// Takes one folded event back out, for erasure by install or user id: decrements the
    /// count, version, platform, daily and hourly counters, and forgets the install (exactly
    /// while the install set is exact; a HyperLogLog cannot forget, its estimate stays).
    /// `first_seen`/`last_seen`, severity and status are kept.
    pub fn remove(&mut self, event: &Event) {
        fn decrement<K: Ord>(map: &mut BTreeMap<K, u64>, key: &K) -> bool {
            match map.get_mut(key) {
                Some(count) if *count > 1 => *count -= 1,
                Some(_) => {
                    map.remove(key);
                }
                None => return false,
            }
            true
        }
        self.count = self.count.saturating_sub(1);
        let weight = weight_of_rate(event.sample_rate);
        self.weighted_count = if self.count == 0 {
            0.0
        } else {
            (self.weighted_count - weight).max(self.count as f64)
        };
        let version = event
            .app_version
            .as_deref()
            .unwrap_or(UNKNOWN_KEY)
            .to_owned();
        if !decrement(&mut self.app_versions, &version) {
            decrement(&mut self.app_versions, &OTHER_KEY.to_owned());
        }
        let platform = event.platform.as_deref().unwrap_or(UNKNOWN_KEY).to_owned();
        decrement(&mut self.platforms, &platform);
        let (day, hour) = (day_start(event.timestamp), hour_start(event.timestamp));
        decrement(&mut self.daily, &day);
        decrement(&mut self.hourly, &hour);
        take_weight(&mut self.weighted_daily, &self.daily, day, weight);
        take_weight(&mut self.weighted_hourly, &self.hourly, hour, weight);
        if let Some(install) = event.install_id.as_deref() {
            let hash = stable_hash64(install);
            self.installs.remove(hash);
            self.recent_installs.remove(hash);
        }
        self.touched = true;
    }

    /// Whether events were folded in since the last `evaluate`.
    pub fn is_touched(&self) -> bool {
        self.touched
    }

    /// Whether `evaluate` at `now` could change anything for a cluster that received no
    /// events: never evaluated, folded into, spike flag to clear, ignore-until-time reached.
    pub fn needs_evaluation(&self, now_ms: i64) -> bool {
        self.touched
            || self.evaluated_at.is_none()
            || self.escalating
            || self.pending_regression.is_some()
            || matches!(
                self.status,
                Status::Ignored { until: IgnoreUntil::Time { until_ms } } if now_ms >= until_ms
            )
    }

    /// `(weighted events, installs, installs_exact)` in the `window_hours` before `now` (every hour
    /// bucket overlapping the window, so between `window_hours` and `window_hours + 1` hours).
    pub fn window_counts(&self, window_hours: u32, now_ms: i64) -> (u64, u64, bool) {
        let start = hour_start(now_ms - i64::from(window_hours) * HOUR_MS);
        let events = self
            .weighted_hourly
            .range(start..)
            .map(|(_, w)| w)
            .sum::<f64>()
            .round() as u64;
        let (installs, exact) = self.recent_installs.count_since(hour_index(start));
        (events, installs, exact)
    }

    /// The weighted events of the hour starting at `hour`, rounded.
    fn weighted_hour(&self, hour: i64) -> u64 {
        self.weighted_hourly
            .get(&hour)
            .map_or(0, |w| w.round() as u64)
    }

    /// A cluster stored before weighting has no weighted counts: each stored event stands for
    /// one (what the counts meant then). Call on every cluster read from the store.
    pub fn fill_missing_weights(&mut self) {
        if self.weighted_count.is_nan() {
            self.weighted_count = self.count as f64;
            self.weighted_daily = self.daily.iter().map(|(k, c)| (*k, *c as f64)).collect();
            self.weighted_hourly = self.hourly.iter().map(|(k, c)| (*k, *c as f64)).collect();
        }
    }

    /// Whether the weighted counts differ from the stored ones (some events were sampled).
    pub fn is_estimated(&self) -> bool {
        self.weighted_count != self.count as f64
    }

    /// The spike check: the current hour, then the previous (complete) one, against the
    /// forecast from the 168 hours before it, on weighted counts. Returns `(hourly count,
    /// forecast)`.
    pub fn spike(&self, rules: &EscalationRules, now_ms: i64) -> Option<(u64, f64)> {
        let current = hour_start(now_ms);
        let first_hour = hour_start(self.first_seen);
        for hour in [current, current - HOUR_MS] {
            let count = self.weighted_hour(hour);
            if count == 0 || count < rules.spike_min_events {
                continue;
            }
            let history_start = hour - FORECAST_HISTORY_HOURS * HOUR_MS;
            let mut history = [0u64; FORECAST_HISTORY_HOURS as usize];
            for (start, w) in self.weighted_hourly.range(history_start..hour) {
                history[((start - history_start) / HOUR_MS) as usize] = w.round() as u64;
            }
            let observed = if first_hour <= history_start {
                FORECAST_HISTORY_HOURS as usize
            } else {
                ((hour - first_hour).max(0) / HOUR_MS) as usize
            };
            if let Some(limit) = forecast(&history, observed, hour) {
                if count as f64 > limit {
                    return Some((count, limit));
                }
            }
        }
        None
    }

    fn prune(&mut self, now_ms: i64) {
        let hourly_cutoff = hour_start(now_ms) - HOURLY_RETENTION_HOURS * HOUR_MS;
        if self
            .hourly
            .first_key_value()
            .is_some_and(|(k, _)| *k < hourly_cutoff)
        {
            self.hourly = self.hourly.split_off(&hourly_cutoff);
            self.weighted_hourly = self.weighted_hourly.split_off(&hourly_cutoff);
        }
        let daily_cutoff = day_start(now_ms) - DAILY_RETENTION_DAYS * DAY_MS;
        if self
            .daily
            .first_key_value()
            .is_some_and(|(k, _)| *k < daily_cutoff)
        {
            self.daily = self.daily.split_off(&daily_cutoff);
            self.weighted_daily = self.weighted_daily.split_off(&daily_cutoff);
        }
        self.recent_installs.prune(hour_index(hourly_cutoff));
        cap_versions(&mut self.app_versions);
    }

    /// After a pass: prunes old buckets, then re-evaluates ignore conditions, regression,
    /// severity and the spike flag at `now_ms`, and returns what to alert on. Deterministic and
    /// idempotent: a second call with no new events returns nothing. While resolved or ignored,
    /// severity and the spike flag still update but are not reported.
    pub fn evaluate(&mut self, rules: &EscalationRules, now_ms: i64) -> Vec<Change> {
        let mut changes = Vec::new();
        let first = self.evaluated_at.is_none();
        self.touched = false;
        self.prune(now_ms);

        if let Status::Ignored { until } = &self.status {
            let met = match until {
                IgnoreUntil::Forever => false,
                IgnoreUntil::Time { until_ms } => now_ms >= *until_ms,
                IgnoreUntil::MoreEvents { count, baseline } => {
                    self.weighted_count - *baseline as f64 >= *count as f64
                }
                IgnoreUntil::MoreInstalls { count, baseline } => {
                    self.installs.estimate().0.saturating_sub(*baseline) >= *count
                }
            };
            if met {
                self.status = Status::Open;
                self.status_changed_at = now_ms;
                changes.push(Change::Unignored);
            }
        }

        let pending = self.pending_regression.take();
        let resolved = matches!(self.status, Status::Resolved { .. });
        if let (true, Some(pending)) = (resolved, pending) {
            self.status = Status::Regressed;
            self.status_changed_at = now_ms;
            self.version_check = None;
            changes.push(Change::Regressed {
                version: pending.version,
            });
        }

        self.recent_installs
            .set_capacity(rules.error_installs.max(rules.fatal_installs));
        let report = !first && self.status.is_active();
        let (events, installs, _) = self.window_counts(rules.window_hours, now_ms);
        let target = self
            .severity
            .max(Severity::from_level(self.level_seen))
            .max(rules.severity_for(events, installs));
        if target > self.severity {
            if report {
                changes.push(Change::Escalated {
                    from: self.severity,
                    to: target,
                });
            }
            self.severity = target;
        }

        match self.spike(rules, now_ms) {
            Some((hourly, forecast)) => {
                if !self.escalating && report {
                    changes.push(Change::Spike { hourly, forecast });
                }
                self.escalating = true;
            }
            None => self.escalating = false,
        }

        if first {
            changes.insert(0, Change::New);
        }
        self.evaluated_at = Some(now_ms);
        changes
    }

    /// Admin status change. Validates the request (errors name the field), records baselines
    /// for "ignore until N more", and clears pending regression evidence.
    pub fn set_status(&mut self, request: StatusRequest, now_ms: i64) -> Result<(), ClusterError> {
        let StatusRequest {
            status,
            in_version,
            until,
            until_ms,
            more_events,
            more_installs,
        } = request;
        let ignore_fields = [
            ("until", until.is_some()),
            ("until_ms", until_ms.is_some()),
            ("more_events", more_events.is_some()),
            ("more_installs", more_installs.is_some()),
        ];
        let only_with = |field: &'static str, status: &str| {
            ClusterError::invalid(field, format!("is only allowed with status \"{status}\""))
        };
        if status != StatusKind::Resolved && in_version.is_some() {
            return Err(only_with("in_version", "resolved"));
        }
        if status != StatusKind::Ignored {
            if let Some((field, _)) = ignore_fields.iter().find(|(_, set)| *set) {
                return Err(only_with(field, "ignored"));
            }
        }
        let new_status = match status {
            StatusKind::Open => Status::Open,
            StatusKind::Resolved => Status::Resolved {
                in_version: match in_version {
                    None => None,
                    Some(version) => Some(validate_version(&version)?),
                },
            },
            StatusKind::Ignored => {
                let mut set = ignore_fields.iter().filter(|(_, set)| *set);
                if let (Some(_), Some((second, _))) = (set.next(), set.next()) {
                    return Err(ClusterError::invalid(
                        second,
                        "give only one of until, until_ms, more_events, more_installs",
                    ));
                }
                let until = if let Some(text) = until {
                    let at = time::OffsetDateTime::parse(
                        text.trim(),
                        &time::format_description::well_known::Rfc3339,
                    )
                    .map_err(|e| {
                        ClusterError::invalid("until", format!("is not an RFC 3339 time: {e}"))
                    })?;
                    let ms = at.unix_timestamp_nanos() / 1_000_000;
                    IgnoreUntil::Time {
                        until_ms: future_ms("until", ms, now_ms)?,
                    }
                } else if let Some(ms) = until_ms {
                    IgnoreUntil::Time {
                        until_ms: future_ms("until_ms", i128::from(ms), now_ms)?,
                    }
                } else if let Some(count) = more_events {
                    IgnoreUntil::MoreEvents {
                        count: positive("more_events", count)?,
                        baseline: self.weighted_count.round() as u64,
                    }
                } else if let Some(count) = more_installs {
                    IgnoreUntil::MoreInstalls {
                        count: positive("more_installs", count)?,
                        baseline: self.installs.estimate().0,
                    }
                } else {
                    IgnoreUntil::Forever
                };
                Status::Ignored { until }
            }
        };
        if new_status != self.status {
            self.status = new_status;
            self.status_changed_at = now_ms;
        }
        self.pending_regression = None;
        self.version_check = None;
        Ok(())
    }
}

fn validate_version(version: &str) -> Result<String, ClusterError> {
    let version = version.trim();
    if version.is_empty() {
        return Err(ClusterError::invalid("in_version", "must not be empty"));
    }
    if version.chars().count() > MAX_VERSION_LEN {
        return Err(ClusterError::invalid(
            "in_version",
            format!("must be at most {MAX_VERSION_LEN} characters"),
        ));
    }
    if version.chars().any(char::is_control) {
        return Err(ClusterError::invalid(
            "in_version",
            "must not contain control characters",
        ));
    }
    Ok(version.to_owned())
}

fn future_ms(field: &'static str, ms: i128, now_ms: i64) -> Result<i64, ClusterError> {
    let ms = i64::try_from(ms).map_err(|_| ClusterError::invalid(field, "is out of range"))?;
    if ms <= now_ms {
        return Err(ClusterError::invalid(field, "must be in the future"));
    }
    Ok(ms)
}

fn positive(field: &'static str, count: u64) -> Result<u64, ClusterError> {
    if count == 0 {
        return Err(ClusterError::invalid(field, "must be at least 1"));
    }
    Ok(count)
}

/// Takes `weight` out of the weighted bucket `key`, dropping it with its stored bucket.
fn take_weight(
    weighted: &mut BTreeMap<i64, f64>,
    stored: &BTreeMap<i64, u64>,
    key: i64,
    weight: f64,
) {
    match stored.get(&key) {
        None => {
            weighted.remove(&key);
        }
        Some(count) => {
            if let Some(w) = weighted.get_mut(&key) {
                *w = (*w - weight).max(*count as f64);
            }
        }
    }
}

/// Keeps the [`MAX_VERSIONS`] most frequent versions; the rest are summed into [`OTHER_KEY`].
fn cap_versions(versions: &mut BTreeMap<String, u64>) {
    if versions.len() <= MAX_VERSIONS {
        return;
    }
    let mut other = versions.remove(OTHER_KEY).unwrap_or(0);
    let mut by_count: Vec<(String, u64)> = std::mem::take(versions).into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (_, count) in by_count.drain(MAX_VERSIONS - 1..) {
        other += count;
    }
    versions.extend(by_count);
    versions.insert(OTHER_KEY.to_owned(), other);
}

/// What [`fold`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FoldSummary {
    pub events: u64,
    /// Events folded into a cluster.
    pub clustered: u64,
    /// Events that do not cluster (below `warn`, no error object).
    pub skipped: u64,
    /// Clusterable events stored without a fingerprint (from before the feature), hashed now.
    pub fingerprinted_now: u64,
    /// Ids of the clusters created, in order.
    pub new_clusters: Vec<String>,
}

/// Folds events into `clusters` (keyed by fingerprint), creating clusters as needed. Uses the
/// stored `Event.fingerprint`; computes it only for clusterable events stored without one.
pub fn fold<'a, I>(clusters: &mut HashMap<String, Cluster>, events: I) -> FoldSummary
where
    I: IntoIterator<Item = &'a Event>,
{
    let mut summary = FoldSummary::default();
    for event in events {
        summary.events += 1;
        let computed;
        let key = match event.fingerprint.as_deref() {
            Some(key) => key,
            None => match fingerprint(event) {
                Some(key) => {
                    summary.fingerprinted_now += 1;
                    computed = key;
                    computed.as_str()
                }
                None => {
                    summary.skipped += 1;
                    continue;
                }
            },
        };
        summary.clustered += 1;
        match clusters.get_mut(key) {
            Some(cluster) => cluster.add(event),
            None => {
                let mut cluster = Cluster::new(event, key);
                cluster.add(event);
                clusters.insert(key.to_owned(), cluster);
                summary.new_clusters.push(key.to_owned());
            }
        }
    }
    summary
}

/// What [`evaluate_pending`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evaluation {
    /// Ids of the clusters evaluated (their state may have changed: persist them), sorted.
    pub evaluated: Vec<String>,
    /// `(cluster id, change)` to alert on, by cluster id.
    pub changes: Vec<(String, Change)>,
}

/// Evaluates every cluster that [`Cluster::needs_evaluation`] at `now_ms`, in id order.
pub fn evaluate_pending(
    clusters: &mut HashMap<String, Cluster>,
    rules: &EscalationRules,
    now_ms: i64,
) -> Evaluation {
    let mut ids: Vec<&String> = clusters
        .iter()
        .filter(|(_, c)| c.needs_evaluation(now_ms))
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    let ids: Vec<String> = ids.into_iter().cloned().collect();
    let mut evaluation = Evaluation::default();
    for id in ids {
        if let Some(cluster) = clusters.get_mut(&id) {
            for change in cluster.evaluate(rules, now_ms) {
                evaluation.changes.push((id.clone(), change));
            }
            evaluation.evaluated.push(id);
        }
    }
    evaluation
}
