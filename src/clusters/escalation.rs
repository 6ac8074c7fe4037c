//! Severity and escalation rules: the configurable thresholds (`warn` → `error` → `fatal` by
//! events or affected installs in a window) and the hourly spike forecast.
//!
//! Forecast (Sentry's escalating-issues algorithm, "version A", on hourly counts): with the 168
//! hours before the hour being checked as history,
//! - no events in that history (a brand-new or long-quiet cluster): no forecast, not a spike
//!   (the new-cluster alert covers the first burst);
//! - fewer than 7 days of history (the cluster is younger): 10 × the highest hourly count;
//! - otherwise the larger of (a) max hourly × a burstiness multiplier `clamp(5·e^(−0.65·cv), 2,
//!   5)` (cv = stddev/mean) and (b) the weekday-weighted mean (hours on the same weekday count
//!   twice) + mean × `clamp((mean + 5·stddev)/mean, 5, 8)`.
//!
//! A spike also needs [`EscalationRules::spike_min_events`] events in the hour (default 10),
//! so one stray event after a quiet week is no "escalating" alert.

use serde::{Deserialize, Serialize};

use super::cluster::{ClusterError, Severity};
use super::installs::MAX_WINDOW_INSTALLS_THRESHOLD;
use crate::timespan::{DAY_MS, HOUR_MS};

/// Hours of hourly counts kept per cluster (7 days of forecast history + the current day).
pub const HOURLY_RETENTION_HOURS: i64 = 8 * 24;
/// Days of daily counts kept per cluster.
pub const DAILY_RETENTION_DAYS: i64 = 35;
/// Hours of history the forecast looks at.
pub const FORECAST_HISTORY_HOURS: i64 = 7 * 24;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EscalationRules {
    /// Window for the thresholds below, in hours (1..=168).
    pub window_hours: u32,
    pub error_events: u64,
    pub error_installs: u64,
    pub fatal_events: u64,
    pub fatal_installs: u64,
    /// Fewest events in an hour for it to count as a spike.
    pub spike_min_events: u64,
}

impl Default for EscalationRules {
    fn default() -> Self {
        EscalationRules {
            window_hours: 24,
            error_events: 100,
            error_installs: 10,
            fatal_events: 1000,
            fatal_installs: 100,
            spike_min_events: 10,
        }
    }
}

impl EscalationRules {
    /// Checks the rules; the error names the offending field. Call when loading the config.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let invalid = |field: &'static str, message: String| {
            Err(ClusterError::InvalidField { field, message })
        };
        if self.window_hours == 0 || i64::from(self.window_hours) > FORECAST_HISTORY_HOURS {
            return invalid(
                "window_hours",
                format!("must be between 1 and {FORECAST_HISTORY_HOURS}"),
            );
        }
        for (field, value) in [
            ("error_events", self.error_events),
            ("error_installs", self.error_installs),
            ("fatal_events", self.fatal_events),
            ("fatal_installs", self.fatal_installs),
        ] {
            if value == 0 {
                return invalid(field, "must be at least 1".into());
            }
        }
        for (field, value) in [
            ("error_installs", self.error_installs),
            ("fatal_installs", self.fatal_installs),
        ] {
            if value > MAX_WINDOW_INSTALLS_THRESHOLD {
                return invalid(
                    field,
                    format!("must be at most {MAX_WINDOW_INSTALLS_THRESHOLD}"),
                );
            }
        }
        if self.fatal_events < self.error_events {
            return invalid("fatal_events", "must not be below error_events".into());
        }
        if self.fatal_installs < self.error_installs {
            return invalid("fatal_installs", "must not be below error_installs".into());
        }
        Ok(())
    }

    /// The severity the window counts call for (`Warn` when below every threshold).
    pub fn severity_for(&self, window_events: u64, window_installs: u64) -> Severity {
        if window_events >= self.fatal_events || window_installs >= self.fatal_installs {
            Severity::Fatal
        } else if window_events >= self.error_events || window_installs >= self.error_installs {
            Severity::Error
        } else {
            Severity::Warn
        }
    }
}

/// Day of week of an hour start, 0..7 (only equality matters).
fn weekday(hour_start_ms: i64) -> i64 {
    hour_start_ms.div_euclid(DAY_MS).rem_euclid(7)
}

/// The ceiling for the hourly count of the hour starting at `hour_ms`, from `history`: the
/// counts of the [`FORECAST_HISTORY_HOURS`] hours before it, oldest first, with `observed`
/// of them since the cluster's first event (`observed < 168`: the cluster is younger than the
/// history). `None` when the history has no events.
pub fn forecast(history: &[u64], observed: usize, hour_ms: i64) -> Option<f64> {
    let max = history.iter().copied().max().unwrap_or(0);
    if max == 0 {
        return None;
    }
    if observed < FORECAST_HISTORY_HOURS as usize || history.len() < observed {
        return Some(10.0 * max as f64);
    }
    let n = history.len() as f64;
    let mean = history.iter().sum::<u64>() as f64 / n;
    let variance = history
        .iter()
        .map(|c| (*c as f64 - mean).powi(2))
        .sum::<f64>()
        / (n - 1.0).max(1.0);
    let stddev = variance.sqrt();
    let cv = stddev / mean;
    let bursty_multiplier = (5.0 * (-0.65 * cv).exp()).clamp(2.0, 5.0);
    let limit_bursty = max as f64 * bursty_multiplier;
    let spike_multiplier = ((mean + 5.0 * stddev) / mean).clamp(5.0, 8.0);
    let baseline = spike_multiplier * mean;
    let target_weekday = weekday(hour_ms);
    let first_hour = hour_ms - HOUR_MS * history.len() as i64;
    let (mut weighted, mut weights) = (0.0, 0.0);
    for (i, count) in history.iter().enumerate() {
        let w = if weekday(first_hour + HOUR_MS * i as i64) == target_weekday {
            2.0
        } else {
            1.0
        };
        weighted += *count as f64 * w;
        weights += w;
    }
    let limit_weighted = weighted / weights + baseline;
    Some(limit_bursty.max(limit_weighted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        let r = EscalationRules::default();
        r.validate().unwrap();
        assert_eq!(r.severity_for(99, 9), Severity::Warn);
        assert_eq!(r.severity_for(100, 0), Severity::Error);
        assert_eq!(r.severity_for(0, 10), Severity::Error);
        assert_eq!(r.severity_for(999, 99), Severity::Error);
        assert_eq!(r.severity_for(1000, 0), Severity::Fatal);
        assert_eq!(r.severity_for(5, 100), Severity::Fatal);
    }

    #[test]
    fn validation_names_the_field() {
        let cases = [
            (
                EscalationRules {
                    window_hours: 0,
                    ..Default::default()
                },
                "window_hours",
            ),
            (
                EscalationRules {
                    window_hours: 500,
                    ..Default::default()
                },
                "window_hours",
            ),
            (
                EscalationRules {
                    error_events: 0,
                    ..Default::default()
                },
                "error_events",
            ),
            (
                EscalationRules {
                    fatal_installs: 5,
                    ..Default::default()
                },
                "fatal_installs",
            ),
            (
                EscalationRules {
                    fatal_installs: 1_000_000,
                    ..Default::default()
                },
                "fatal_installs",
            ),
            (
                EscalationRules {
                    fatal_events: 50,
                    ..Default::default()
                },
                "fatal_events",
            ),
        ];
        for (rules, field) in cases {
            match rules.validate() {
                Err(ClusterError::InvalidField { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let parsed: EscalationRules = serde_json::from_str(r#"{"error_events": 5}"#).unwrap();
        assert_eq!(parsed.error_events, 5);
        assert_eq!(parsed.window_hours, 24);
        assert!(serde_json::from_str::<EscalationRules>(r#"{"eror_events": 5}"#).is_err());
    }

    #[test]
    fn forecast_young_and_old() {
        let now = crate::timespan::hour_start(1_700_000_000_000);
        assert_eq!(forecast(&[0; 168], 168, now), None);
        // Younger than a week: 10 x the max.
        let mut young = vec![0u64; 168];
        young[160] = 3;
        young[165] = 7;
        assert_eq!(forecast(&young, 30, now), Some(70.0));
        // A steady week of ~20/h.
        let steady: Vec<u64> = (0..168).map(|i| 18 + (i % 5) as u64).collect();
        let f = forecast(&steady, 168, now).unwrap();
        // mean 20, low cv: bursty limit 22*~4.8, weighted ~20 + 5*20.
        assert!(f > 100.0 && f < 130.0, "{f}");
    }
}
