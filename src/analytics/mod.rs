//! Analytics: the typed query spec of `POST /api/v1/analytics/query` and its answers — trends,
//! distributions, funnels, active installs and retention — computed from the search index's
//! columnar scan ([`SearchIndex::scan`]), never from the store.
//!
//! - Weighting: every event stands for 1 / its effective sample rate (client × server, see
//!   [`crate::policies::decide`]) events. Counts, sums, means and percentiles are weighted and an
//!   answer says `estimated: true` when any weight is not 1; raw stored counts come alongside.
//!   Distinct installs, sessions and users are the distinct values seen (not weighted).
//! - k-anonymity: a group with fewer distinct installs than the product's
//!   `min_group_installs` is folded into "other"; answers count them in `suppressed_groups`.
//!
//! - [`stats`]: weighted percentiles, summaries, histograms. [`groups`]: top N and folding.
//! - [`trend`], [`distribution`], [`funnel`], [`installs`] (active installs and retention).
//! - [`release_health`]: crash-free sessions and installs per app version (Sentry sessions).
//! - [`saved`]: saved queries (a named spec of one product, pinned to its dashboard or not).

mod cube;
mod distinct;
mod distribution;
mod funnel;
mod groups;
mod installs;
mod release_health;
pub mod saved;
mod stats;
mod trend;

use serde::{Deserialize, Serialize};

use crate::error::{Code, ErrorCode};
use crate::fields::EventField;
use crate::scope::Scope;
use crate::search::{parse_time_param, Filter, SearchError, SearchIndex};
use crate::timespan::{parse_duration_ms, DAY_MS};

/// The most groups one grouping keeps besides "other".
pub const MAX_GROUPS: usize = 100;
/// The most buckets (days, periods) one answer holds.
pub const MAX_BUCKETS: i64 = 2_000;

/// One analytics query; `kind` selects the variant.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Query {
    Trend(trend::TrendSpec),
    Distribution(distribution::DistributionSpec),
    Funnel(funnel::FunnelSpec),
    ActiveInstalls(installs::ActiveSpec),
    Retention(installs::RetentionSpec),
    ReleaseHealth(release_health::ReleaseHealthSpec),
}

/// The time range and filter every kind takes: `from`/`to` as in search (RFC 3339, a date, epoch
/// ms, `now`, `-7d`; default the 30 days before now), `q` in the query language.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct Range {
    pub from: Option<Time>,
    pub to: Option<Time>,
    pub q: Option<String>,
}

/// A time member: epoch milliseconds, or text in the search time syntax.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Time {
    Ms(i64),
    Text(String),
}

/// Who asks, about which product.
pub struct Context<'a> {
    pub index: &'a SearchIndex,
    pub product: String,
    pub scope: Scope,
    /// The product's k-anonymity threshold (0 = off).
    pub min_group_installs: u32,
    pub now_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// A member of the spec is missing or wrong.
    #[error("{member}: {reason}")]
    Invalid { member: String, reason: String },
    /// The spec's JSON has the wrong shape: an unknown member (named in `member`), a missing or
    /// mistyped one, an unknown kind.
    #[error("expected an analytics query (see the README): {message}")]
    Shape {
        message: String,
        member: Option<String>,
    },
    #[error(transparent)]
    Search(#[from] SearchError),
}

impl AnalyticsError {
    pub fn invalid(member: impl Into<String>, reason: impl Into<String>) -> AnalyticsError {
        AnalyticsError::Invalid {
            member: member.into(),
            reason: reason.into(),
        }
    }
}

impl ErrorCode for AnalyticsError {
    fn error_code(&self) -> Code {
        match self {
            AnalyticsError::Invalid { .. } => Code::InvalidParameter,
            AnalyticsError::Shape { .. } => Code::InvalidBody,
            AnalyticsError::Search(e) => e.error_code(),
        }
    }

    fn message(&self) -> String {
        match self {
            AnalyticsError::Invalid { .. } | AnalyticsError::Shape { .. } => self.to_string(),
            AnalyticsError::Search(e) => e.message(),
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            AnalyticsError::Invalid { member, .. } => {
                Some(serde_json::json!({ "parameter": member }))
            }
            AnalyticsError::Shape {
                member: Some(member),
                ..
            } => Some(serde_json::json!({ "member": member })),
            AnalyticsError::Shape { member: None, .. } => None,
            AnalyticsError::Search(e) => e.details(),
        }
    }
}

impl Query {
    /// The query of a JSON spec (its members without `product`). Every spec refuses members it
    /// does not know, so a misspelt member is an error naming it, never silently ignored.
    pub fn from_json(spec: serde_json::Value) -> Result<Query, AnalyticsError> {
        serde_json::from_value(spec).map_err(|e| {
            let message = e.to_string();
            AnalyticsError::Shape {
                member: unknown_member(&message).map(str::to_string),
                message,
            }
        })
    }
}

/// The member serde names in its "unknown field `x`, expected ..." error.
fn unknown_member(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(member, _)| member)
}

/// An answer; `kind` names the variant.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Answer {
    Trend(trend::TrendAnswer),
    Distribution(distribution::DistributionAnswer),
    Funnel(funnel::FunnelAnswer),
    ActiveInstalls(installs::ActiveAnswer),
    Retention(installs::RetentionAnswer),
    ReleaseHealth(release_health::ReleaseHealthAnswer),
}

/// Runs one query (blocking: scans the index on this thread).
pub fn run(context: &Context, query: &Query) -> Result<Answer, AnalyticsError> {
    Ok(match query {
        Query::Trend(spec) => Answer::Trend(trend::run(context, spec)?),
        Query::Distribution(spec) => Answer::Distribution(distribution::run(context, spec)?),
        Query::Funnel(spec) => Answer::Funnel(funnel::run(context, spec)?),
        Query::ActiveInstalls(spec) => Answer::ActiveInstalls(installs::active(context, spec)?),
        Query::Retention(spec) => Answer::Retention(installs::retention(context, spec)?),
        Query::ReleaseHealth(spec) => Answer::ReleaseHealth(release_health::run(context, spec)?),
    })
}

/// `[from, to)` of a range in ms.
fn time_range(context: &Context, range: &Range) -> Result<(i64, i64), AnalyticsError> {
    let parse = |member: &str, value: Option<&Time>, default: i64| match value {
        Some(Time::Ms(ms)) => Ok(*ms),
        Some(Time::Text(text)) if !text.trim().is_empty() => {
            parse_time_param(text.trim(), context.now_ms)
                .map_err(|r| AnalyticsError::invalid(member, r))
        }
        _ => Ok(default),
    };
    let to = parse("to", range.to.as_ref(), context.now_ms)?;
    let from = parse("from", range.from.as_ref(), to.saturating_sub(30 * DAY_MS))?;
    if from >= to {
        return Err(AnalyticsError::invalid("from", "must be before `to`"));
    }
    Ok((from, to))
}

/// The filter of the product's events in `[from, to)` matching `q` and also `extra` (a query).
fn filter(
    context: &Context,
    from: Option<i64>,
    to: i64,
    q: Option<&str>,
    extra: Option<&str>,
) -> Filter {
    let parts: Vec<String> = [q, extra]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| format!("({p})"))
        .collect();
    Filter {
        from_ms: from,
        to_ms: Some(to),
        q: (!parts.is_empty()).then(|| parts.join(" AND ")),
        ..Filter::default()
    }
    .with(EventField::Product, context.product.clone())
    .within(context.scope.clone())
}

/// A duration member (`1d`, `6h`) in ms.
fn duration(member: &str, text: Option<&str>, default: i64) -> Result<i64, AnalyticsError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(default),
        Some(text) => match parse_duration_ms(text) {
            Ok(ms) if ms > 0 => Ok(ms),
            _ => Err(AnalyticsError::invalid(
                member,
                format!("`{text}` is not a duration such as 1h, 1d or 7d"),
            )),
        },
    }
}

/// At most two group-by fields.
fn group_fields(group_by: &[String]) -> Result<Vec<&str>, AnalyticsError> {
    if group_by.len() > 2 {
        return Err(AnalyticsError::invalid("group_by", "at most two fields"));
    }
    Ok(group_by.iter().map(String::as_str).collect())
}

/// The `limit` member: default 10, 1..=[`MAX_GROUPS`].
fn group_limit(limit: Option<usize>) -> Result<usize, AnalyticsError> {
    match limit.unwrap_or(10) {
        n @ 1..=MAX_GROUPS => Ok(n),
        _ => Err(AnalyticsError::invalid(
            "limit",
            format!("must be 1 to {MAX_GROUPS}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn member_of(spec: serde_json::Value) -> Option<String> {
        match Query::from_json(spec) {
            Err(AnalyticsError::Shape { member, .. }) => member,
            other => panic!("expected a shape error, got {other:?}"),
        }
    }

    #[test]
    fn every_kind_knows_its_members_and_refuses_others() {
        let known = [
            json!({"kind": "trend", "measure": "events", "from": "-7d", "to": "now", "q": "x:y",
                   "bucket": "1h", "group_by": ["platform"], "limit": 5}),
            json!({"kind": "distribution", "metric": "m", "group_by": [], "limit": 5, "bins": 3}),
            json!({"kind": "funnel", "steps": [{"name": "a", "q": "x:y"}, {"name": "b"}],
                   "window": "1h", "per": "session", "breakdown": "platform", "limit": 3}),
            json!({"kind": "active_installs", "limit": 3}),
            json!({"kind": "retention", "period": "day", "periods": 4}),
        ];
        for spec in known {
            Query::from_json(spec.clone()).unwrap_or_else(|e| panic!("{spec}: {e}"));
            let mut typo = spec.clone();
            typo["colour"] = json!("blue");
            assert_eq!(member_of(typo).as_deref(), Some("colour"), "{spec}");
        }
        let step_typo =
            json!({"kind": "funnel", "steps": [{"name": "a"}, {"name": "b", "filter": "x"}]});
        assert_eq!(member_of(step_typo).as_deref(), Some("filter"));
        assert_eq!(member_of(json!({"kind": "nonsense"})), None);
    }
}
