//! OTLP metrics as time series: the [`Series`] service takes an `ExportMetricsServiceRequest`
//! (already gunzipped; the HTTP side lives in `http::otlp`), maps its data points onto series
//! (`mapping`), turns cumulative reports into increases (`cumulative`), stores them durably in
//! one store transaction (`store`), and answers the metric list and time-series queries
//! (`query`). Points follow their product's retention and their install's erasure (`store`).
//!
//! Files: `model` (kinds, identity, stored point), `mapping` (OTLP → samples), `cumulative`
//! (cumulative → increases), `store` (tables, writes, deletions), `query` (buckets, groups,
//! statistics, quantiles).

pub mod cumulative;
pub mod mapping;
pub mod model;
pub mod query;
pub mod store;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use serde::Serialize;

use crate::error::{Code, ErrorCode, StoreError};
use crate::ingest::limits::{RateKey, RateLimiter};
use crate::ingest::pii::PiiDetector;
use crate::metrics::Metrics;
use crate::model::now_ms;
use crate::otlp::{self, Encoding};
use crate::products::{ProductError, Products};
use crate::store::writer::{SubmitError, Writer};
use crate::store::Store;
use crate::timespan::{DAY_MS, HOUR_MS};
use model::{Kind, MetricDef};
use query::{Grid, GroupBuilder, Stat, MAX_CELLS};

/// Most data points one request may carry; a larger request is refused as a whole.
pub const MAX_POINTS: usize = 50_000;
/// How far in the future a point's time may be.
const MAX_FUTURE_MS: i64 = HOUR_MS;

/// What became of a request's data points.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MetricsOutcome {
    /// Points stored (or, for cumulative reports, taken in as the stream's baseline or a
    /// resend; and points flagged "no recorded value").
    pub accepted_points: u64,
    pub rejected_points: u64,
    /// Why points were rejected (empty when none were).
    pub error_message: String,
}

/// Why a metrics request, or a query, could not be done.
#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    #[error("{0}")]
    InvalidBody(String),
    #[error("the request has {count} data points; the limit is {limit}")]
    BatchTooLarge { count: usize, limit: usize },
    #[error(transparent)]
    Product(#[from] ProductError),
    #[error("the server is busy; retry after 1 s")]
    Overloaded,
    #[error("{reason}; retry after {retry_after} s")]
    RateLimited { reason: String, retry_after: u64 },
    #[error("the server is not ready: the store writer has stopped")]
    WriterStopped,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter { name: &'static str, reason: String },
    #[error("product `{product}` has no metric `{name}`")]
    UnknownMetric { product: String, name: String },
}

impl ErrorCode for SeriesError {
    fn error_code(&self) -> Code {
        match self {
            SeriesError::InvalidBody(_) => Code::InvalidBody,
            SeriesError::BatchTooLarge { .. } => Code::BatchTooLarge,
            SeriesError::Product(e) => e.error_code(),
            SeriesError::Overloaded => Code::Overloaded,
            SeriesError::RateLimited { .. } => Code::RateLimited,
            SeriesError::WriterStopped => Code::NotReady,
            SeriesError::Store(e) => e.error_code(),
            SeriesError::InvalidParameter { .. } => Code::InvalidParameter,
            SeriesError::UnknownMetric { .. } => Code::NotFound,
        }
    }

    fn message(&self) -> String {
        match self {
            SeriesError::Store(e) => e.message(),
            other => other.to_string(),
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            SeriesError::InvalidParameter { name, .. } => {
                Some(serde_json::json!({ "parameter": name }))
            }
            SeriesError::BatchTooLarge { limit, .. } => Some(serde_json::json!({ "limit": limit })),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            SeriesError::Overloaded | SeriesError::WriterStopped => Some(1),
            SeriesError::RateLimited { retry_after, .. } => Some(*retry_after),
            SeriesError::Store(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// The answer to an export: an `ExportMetricsServiceResponse` in the request's encoding, with
/// `partial_success` only when points were rejected.
pub fn answer(outcome: &MetricsOutcome, encoding: Encoding) -> Vec<u8> {
    let response = ExportMetricsServiceResponse {
        partial_success: (outcome.rejected_points > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: i64::try_from(outcome.rejected_points).unwrap_or(i64::MAX),
            error_message: outcome.error_message.clone(),
        }),
    };
    otlp::encode_export(&response, response.partial_success.is_none(), encoding)
}

/// One metric in the list (`GET /api/v1/metrics/names`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MetricSummary {
    pub product: String,
    pub name: String,
    pub kind: Kind,
    pub unit: String,
    pub description: String,
    pub series: u64,
    /// Attribute keys its series carry (to group by).
    pub attributes: Vec<String>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// The statistics a query may ask, the default first.
    pub stats: Vec<&'static str>,
}

impl From<MetricDef> for MetricSummary {
    fn from(def: MetricDef) -> Self {
        MetricSummary {
            stats: def.kind.stats().to_vec(),
            product: def.product,
            name: def.name,
            kind: def.kind,
            unit: def.unit,
            description: def.description,
            series: def.series,
            attributes: def.attribute_keys.into_iter().collect(),
            first_seen_ms: def.first_ms,
            last_seen_ms: def.last_ms,
        }
    }
}

/// A time-series query (`GET /api/v1/metrics/query`), its times already resolved.
#[derive(Debug, Clone)]
pub struct SeriesQuery {
    pub product: String,
    pub name: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub bucket_ms: i64,
    pub group_by: Vec<String>,
    /// `None`: the kind's default statistic.
    pub stat: Option<String>,
}

/// The answer to a [`SeriesQuery`].
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct QueryResult {
    pub product: String,
    pub name: String,
    pub kind: Kind,
    pub unit: String,
    pub description: String,
    pub stat: String,
    pub bucket_ms: i64,
    /// The first bucket's start (`from` rounded down to a multiple of the bucket).
    pub from_ms: i64,
    pub to_ms: i64,
    pub group_by: Vec<String>,
    pub groups: Vec<query::Group>,
}

/// The series service: the handles it works with.
pub struct Series {
    store: Store,
    writer: Arc<Writer>,
    products: Arc<Products>,
    metrics: Arc<Metrics>,
    pii: PiiDetector,
    /// The ingest rate limiter: exports per client address, and the product's per-second cap
    /// shared with its events.
    limiter: Arc<RateLimiter>,
    /// Note every point write in the outbox (export sinks are configured).
    outbox: bool,
}

impl Series {
    pub fn new(
        store: Store,
        writer: Arc<Writer>,
        products: Arc<Products>,
        metrics: Arc<Metrics>,
        pii: PiiDetector,
        limiter: Arc<RateLimiter>,
        outbox: bool,
    ) -> Series {
        Series {
            store,
            writer,
            products,
            metrics,
            pii,
            limiter,
            outbox,
        }
    }

    /// Takes one OTLP metrics export (`body` already gunzipped): decodes it, resolves the
    /// product (`?product=`/path, ingest key, or the first `service.name`), admits it within the
    /// rate limits, maps every data point, and writes the accepted ones durably in one store
    /// transaction before answering. `client_address` is used for the rate limit lookup only.
    /// Blocking: call it on the blocking pool.
    pub fn accept(
        &self,
        product_param: Option<&str>,
        key: Option<&str>,
        client_address: Option<IpAddr>,
        body: &[u8],
        encoding: Encoding,
    ) -> Result<MetricsOutcome, SeriesError> {
        let request: ExportMetricsServiceRequest =
            otlp::decode(body, encoding).map_err(SeriesError::InvalidBody)?;
        let count = mapping::count_points(&request);
        if count > MAX_POINTS {
            return Err(SeriesError::BatchTooLarge {
                count,
                limit: MAX_POINTS,
            });
        }
        let product =
            self.products
                .resolve_or_service(product_param, key, mapping::service_name(&request));
        // An empty export is a success even when it names no product; a wrong key or product
        // name still fails.
        let product = match product {
            Err(ProductError::Missing) if count == 0 => return Ok(MetricsOutcome::default()),
            other => other?,
        };
        if count == 0 {
            return Ok(MetricsOutcome::default());
        }
        let now = now_ms();
        if let Some(address) = client_address {
            let per_minute = product.rate_limit_per_minute;
            let key = self.limiter.exports_key(address);
            let admission = self.limiter.admit(product.index, &key, per_minute, 1, now);
            if admission.allowed == 0 {
                self.metrics.series_points_rejected.add(count as u64);
                return Err(SeriesError::RateLimited {
                    reason: format!(
                        "this client address sent more than {per_minute} metrics exports in a minute"
                    ),
                    retry_after: admission.retry_after_secs,
                });
            }
        }
        let rules = mapping::Rules {
            install_attribute: product.otlp_install_id_attribute.as_deref(),
            oldest_ms: now - i64::from(product.retention_days) * DAY_MS,
            retention_days: product.retention_days,
            newest_ms: now + MAX_FUTURE_MS,
            pii: &self.pii,
        };
        let mapped = mapping::map_request(&request, &rules);
        drop(request);
        let mut rejected = mapped.rejected;
        let mut accepted = mapped.empty;
        let mut samples = mapped.samples;
        let cap = product.max_events_per_second;
        if cap > 0 && !samples.is_empty() {
            let wanted = u32::try_from(samples.len()).unwrap_or(u32::MAX);
            let admission = self
                .limiter
                .admit(product.index, &RateKey::Product, cap, wanted, now);
            let reason = format!(
                "product `{}` takes at most {cap} events and data points per second",
                product.id
            );
            if admission.allowed == 0 {
                self.metrics.series_points_rejected.add(count as u64);
                return Err(SeriesError::RateLimited {
                    reason,
                    retry_after: admission.retry_after_secs,
                });
            }
            let reason = format!(
                "rate limited: {reason}; retry after {} s",
                admission.retry_after_secs
            );
            for sample in samples.split_off(admission.allowed as usize) {
                rejected.add(&mapped.metrics[sample.metric].name, reason.as_str(), 1);
            }
        }
        if !samples.is_empty() {
            let product_id = product.id.clone();
            let metrics = mapped.metrics;
            let outbox = self.outbox;
            let applied = self
                .writer
                .try_ingest_blocking(move |store| {
                    store.write(|txn| store::apply(txn, &product_id, &metrics, samples, outbox))
                })
                .map_err(|e| match e {
                    SubmitError::Full => SeriesError::Overloaded,
                    SubmitError::Closed => SeriesError::WriterStopped,
                })??;
            accepted += applied.accepted;
            rejected.extend(applied.rejected);
            self.metrics
                .series_points_stored
                .add(applied.points_written);
        }
        self.metrics.series_points_accepted.add(accepted);
        self.metrics.series_points_rejected.add(rejected.count());
        Ok(MetricsOutcome {
            accepted_points: accepted,
            rejected_points: rejected.count(),
            error_message: rejected.message(),
        })
    }

    /// The metrics of one product, or of every product, by product and name.
    pub fn names(&self, product: Option<&str>) -> Result<Vec<MetricSummary>, SeriesError> {
        if let Some(id) = product {
            self.known_product(id)?;
        }
        Ok(store::metric_defs(&self.store, product)?
            .into_iter()
            .map(MetricSummary::from)
            .collect())
    }

    fn known_product(&self, id: &str) -> Result<(), SeriesError> {
        match self.products.get(id) {
            Some(_) => Ok(()),
            None => Err(ProductError::Unknown(id.chars().take(64).collect()).into()),
        }
    }

    /// One metric's statistic per bucket and group.
    pub fn query(&self, q: &SeriesQuery) -> Result<QueryResult, SeriesError> {
        self.known_product(&q.product)?;
        let invalid =
            |name: &'static str, reason: String| SeriesError::InvalidParameter { name, reason };
        let grid = Grid::new(q.from_ms, q.to_ms, q.bucket_ms)
            .ok_or_else(|| invalid("from", "`from` must not be after `to`".into()))?;
        if grid.count > MAX_CELLS {
            return Err(invalid(
                "bucket",
                format!(
                    "{} buckets; at most {MAX_CELLS}: use a longer bucket or a shorter range",
                    grid.count
                ),
            ));
        }
        let txn = self.store.begin_read()?;
        let (def, series) =
            store::metric_with_series(&txn, &q.product, &q.name)?.ok_or_else(|| {
                SeriesError::UnknownMetric {
                    product: q.product.clone(),
                    name: q.name.chars().take(255).collect(),
                }
            })?;
        let stat_name = q.stat.as_deref().unwrap_or(def.kind.default_stat());
        let stat = Stat::parse(stat_name, def.kind).map_err(|reason| invalid("stat", reason))?;
        let groups = query::group_series(&series, &q.group_by);
        let cells = groups.len() as u64 * grid.count;
        if cells > MAX_CELLS {
            return Err(invalid(
                "group_by",
                format!(
                    "{} groups × {} buckets is more than {MAX_CELLS}: group by fewer attributes, or use a longer bucket",
                    groups.len(),
                    grid.count
                ),
            ));
        }
        let mut out = Vec::with_capacity(groups.len());
        for (values, members) in groups {
            let mut builder = GroupBuilder::new(grid, stat);
            for s in &members {
                store::for_each_point(&txn, s.id, grid.start_ms, grid.to_ms, |time, point| {
                    builder.add(time, &point, &s.identity.bounds)
                })?;
            }
            let attributes: BTreeMap<String, String> =
                q.group_by.iter().cloned().zip(values).collect();
            out.push(builder.finish(attributes, members.len() as u64));
        }
        // Largest first, so the top groups lead; groups without a figure last.
        out.sort_by(|a, b| {
            b.overall
                .unwrap_or(f64::NEG_INFINITY)
                .total_cmp(&a.overall.unwrap_or(f64::NEG_INFINITY))
                .then_with(|| a.attributes.cmp(&b.attributes))
        });
        Ok(QueryResult {
            product: def.product,
            name: def.name,
            kind: def.kind,
            unit: def.unit,
            description: def.description,
            stat: stat_name.to_string(),
            bucket_ms: grid.bucket_ms,
            from_ms: grid.start_ms,
            to_ms: grid.to_ms,
            group_by: q.group_by.clone(),
            groups: out,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_carry_partial_success_only_when_points_were_rejected() {
        let all = MetricsOutcome {
            accepted_points: 3,
            ..MetricsOutcome::default()
        };
        assert_eq!(answer(&all, Encoding::Json), b"{}".to_vec());
        assert!(answer(&all, Encoding::Protobuf).is_empty());
        let some = MetricsOutcome {
            accepted_points: 3,
            rejected_points: 2,
            error_message: "2 data points rejected: metric `m`: value is NaN (2)".into(),
        };
        let json: serde_json::Value =
            serde_json::from_slice(&answer(&some, Encoding::Json)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"partialSuccess": {"rejectedDataPoints": 2,
                "errorMessage": "2 data points rejected: metric `m`: value is NaN (2)"}})
        );
        let decoded: ExportMetricsServiceResponse =
            otlp::decode(&answer(&some, Encoding::Protobuf), Encoding::Protobuf).unwrap();
        let partial = decoded.partial_success.unwrap();
        assert_eq!(partial.rejected_data_points, 2);
        assert_eq!(partial.error_message, some.error_message);
    }

    #[test]
    fn errors_have_their_codes() {
        let e = SeriesError::BatchTooLarge {
            count: 50_001,
            limit: MAX_POINTS,
        };
        assert_eq!(
            (e.error_code(), e.details().unwrap()["limit"].as_u64()),
            (Code::BatchTooLarge, Some(50_000))
        );
        assert_eq!(SeriesError::Overloaded.retry_after(), Some(1));
        assert_eq!(SeriesError::Overloaded.error_code().status(), 503);
        assert_eq!(
            SeriesError::Product(ProductError::Missing).error_code(),
            Code::MissingProduct
        );
        let e = SeriesError::InvalidParameter {
            name: "stat",
            reason: "no".into(),
        };
        assert_eq!(
            (e.error_code(), e.to_string()),
            (
                Code::InvalidParameter,
                "invalid parameter `stat`: no".to_string()
            )
        );
    }
}
