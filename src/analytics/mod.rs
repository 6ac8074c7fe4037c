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

mod distribution;
mod funnel;
mod groups;
mod installs;
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
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Query {
    Trend(trend::TrendSpec),
    Distribution(distribution::DistributionSpec),
    Funnel(funnel::FunnelSpec),
    ActiveInstalls(installs::ActiveSpec),
    Retention(installs::RetentionSpec),
}

/// The time range and filter every kind takes: `from`/`to` as in search (RFC 3339, a date, epoch
/// ms, `now`, `-7d`; default the 30 days before now), `q` in the query language.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Range {
    pub from: Option<Time>,
    pub to: Option<Time>,
    pub q: Option<String>,
}

/// A time member: epoch milliseconds, or text in the search time syntax.
#[derive(Debug, Clone, Deserialize)]
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
            AnalyticsError::Search(e) => e.error_code(),
        }
    }

    fn message(&self) -> String {
        match self {
            AnalyticsError::Invalid { .. } => self.to_string(),
            AnalyticsError::Search(e) => e.message(),
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            AnalyticsError::Invalid { member, .. } => {
                Some(serde_json::json!({ "parameter": member }))
            }
            AnalyticsError::Search(e) => e.details(),
        }
    }
}

/// An answer; `kind` names the variant.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Answer {
    Trend(trend::TrendAnswer),
    Distribution(distribution::DistributionAnswer),
    Funnel(funnel::FunnelAnswer),
    ActiveInstalls(installs::ActiveAnswer),
    Retention(installs::RetentionAnswer),
}

/// Runs one query (blocking: scans the index on this thread).
pub fn run(context: &Context, query: &Query) -> Result<Answer, AnalyticsError> {
    Ok(match query {
        Query::Trend(spec) => Answer::Trend(trend::run(context, spec)?),
        Query::Distribution(spec) => Answer::Distribution(distribution::run(context, spec)?),
        Query::Funnel(spec) => Answer::Funnel(funnel::run(context, spec)?),
        Query::ActiveInstalls(spec) => Answer::ActiveInstalls(installs::active(context, spec)?),
        Query::Retention(spec) => Answer::Retention(installs::retention(context, spec)?),
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

/// Whether any weight is not 1 (the figures are estimates).
fn estimated(weights: &[f64]) -> bool {
    weights.iter().any(|w| *w != 1.0)
}
