//! The event explorer API: search with the query language and filters (newest first, cursor
//! pages), streaming export as NDJSON or CSV, and the geo distribution. The index finds
//! positions; the store, the source of truth, supplies the events.

use actix_web::{web, HttpResponse};
use futures_util::stream;
use serde::Deserialize;
use serde_json::json;

use crate::http::auth::Caller;
use crate::http::blocking;
use crate::http::error::ApiError;
use crate::model::{now_ms, Event};
use crate::search::{parse_time_param, Filter, SearchRequest};
use crate::AppState;

pub const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 50;

/// Query parameters shared by search, export and the aggregations.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterParams {
    pub q: Option<String>,
    pub product: Option<String>,
    pub platform: Option<String>,
    pub channel: Option<String>,
    pub module: Option<String>,
    pub name: Option<String>,
    pub level: Option<String>,
    pub app_version: Option<String>,
    pub release_channel: Option<String>,
    pub country: Option<String>,
    pub region: Option<String>,
    pub install_id: Option<String>,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub fingerprint: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
    /// Search only: count every match (`true`) instead of stopping at
    /// [`EXACT_TOTAL_UP_TO`](crate::search::EXACT_TOTAL_UP_TO).
    pub exact_total: Option<bool>,
    /// Export only: `ndjson` or `csv`.
    pub format: Option<String>,
    /// Time series only: bucket width such as `1h`.
    pub bucket: Option<String>,
    /// Breakdown only: the field to group by.
    pub field: Option<String>,
}

impl FilterParams {
    /// The index filter these parameters describe; times are RFC 3339 or relative (`-24h`).
    pub fn to_filter(&self) -> Result<Filter, ApiError> {
        let now = now_ms();
        let time = |name: &str, value: &Option<String>| {
            value
                .as_deref()
                .filter(|v| !v.trim().is_empty())
                .map(|v| {
                    parse_time_param(v, now)
                        .map_err(|reason| ApiError::invalid_parameter(name, reason))
                })
                .transpose()
        };
        let text = |value: &Option<String>| value.clone().filter(|v| !v.trim().is_empty());
        Ok(Filter {
            product: text(&self.product),
            platform: text(&self.platform),
            channel: text(&self.channel),
            module: text(&self.module),
            name: text(&self.name),
            app_version: text(&self.app_version),
            release_channel: text(&self.release_channel),
            country: text(&self.country),
            region: text(&self.region),
            install_id: text(&self.install_id),
            user_id: text(&self.user_id),
            session_id: text(&self.session_id),
            fingerprint: text(&self.fingerprint),
            level: text(&self.level),
            from_ms: time("from", &self.from)?,
            to_ms: time("to", &self.to)?,
            q: text(&self.q),
        })
    }

    fn limit(&self) -> Result<usize, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(_) => Err(ApiError::invalid_parameter(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            )),
        }
    }
}

/// `GET /api/v1/events`
pub async fn search_events(
    _caller: Caller,
    params: web::Query<FilterParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let request = SearchRequest {
        filter: params.to_filter()?,
        limit: params.limit()?,
        cursor: params.cursor.clone(),
        exact_total: params.exact_total.unwrap_or(false),
    };
    let st = state.clone();
    let (events, page) = blocking(move || {
        let page = st.search.search(&request)?;
        let seqs: Vec<u64> = page.hits.iter().map(|h| h.seq).collect();
        let events: Vec<Event> = st
            .store
            .events_at(&seqs)?
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        Ok((events, page))
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({
        "events": events,
        "total": page.total,
        "total_exact": page.total_exact,
        "next_cursor": page.next_cursor,
    })))
}

/// `GET /api/v1/events/export?format=ndjson|csv` streams every match, newest first.
pub async fn export_events(
    _caller: Caller,
    params: web::Query<FilterParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let format = match params.format.as_deref().unwrap_or("ndjson") {
        "ndjson" | "jsonl" => ExportFormat::Ndjson,
        "csv" => ExportFormat::Csv,
        other => {
            return Err(ApiError::invalid_parameter(
                "format",
                format!("`{other}` is not ndjson or csv"),
            ))
        }
    };
    let filter = params.to_filter()?;
    // Fail fast on a bad query before the 200 goes out.
    let st = state.clone();
    let probe = filter.clone();
    blocking(move || Ok(st.search.count(&probe)?)).await?;
    let (content_type, extension) = match format {
        ExportFormat::Ndjson => ("application/x-ndjson", "ndjson"),
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    let body = page_stream(state.into_inner(), filter, format);
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            "content-disposition",
            format!("attachment; filename=\"events.{extension}\""),
        ))
        .streaming(body))
}

#[derive(Clone, Copy)]
pub enum ExportFormat {
    Ndjson,
    Csv,
}

/// Streams the matches page by page (the search cursor keeps pages stable while ingest runs).
pub fn page_stream(
    state: std::sync::Arc<AppState>,
    filter: Filter,
    format: ExportFormat,
) -> impl futures_util::Stream<Item = Result<web::Bytes, ApiError>> {
    let first = matches!(format, ExportFormat::Csv).then(|| web::Bytes::from(csv_header()));
    let initial = (Some(None::<String>), first);
    stream::unfold(initial, move |(cursor, header)| {
        let state = state.clone();
        let filter = filter.clone();
        async move {
            if let Some(header) = header {
                return Some((Ok(header), (cursor, None)));
            }
            let cursor = cursor?;
            let request = SearchRequest {
                filter,
                limit: MAX_LIMIT,
                cursor,
                exact_total: false,
            };
            let page = blocking(move || {
                let page = state.search.search(&request)?;
                let seqs: Vec<u64> = page.hits.iter().map(|h| h.seq).collect();
                let events = state.store.events_at(&seqs)?;
                Ok((events, page.next_cursor))
            })
            .await;
            match page {
                Err(e) => Some((Err(e), (None, None))),
                Ok((events, _)) if events.is_empty() => None,
                Ok((events, next)) => {
                    let mut chunk = Vec::with_capacity(events.len() * 512);
                    for (_, event) in &events {
                        write_record(&mut chunk, event, format);
                    }
                    Some((Ok(web::Bytes::from(chunk)), (next.map(Some), None)))
                }
            }
        }
    })
}

fn write_record(out: &mut Vec<u8>, event: &Event, format: ExportFormat) {
    match format {
        ExportFormat::Ndjson => {
            if serde_json::to_writer(&mut *out, event).is_ok() {
                out.push(b'\n');
            }
        }
        ExportFormat::Csv => {
            let row = csv_row(event);
            out.extend_from_slice(row.as_bytes());
        }
    }
}

const CSV_COLUMNS: [&str; 26] = [
    "id",
    "timestamp",
    "received_at",
    "product",
    "name",
    "level",
    "platform",
    "channel",
    "module",
    "app_version",
    "release_channel",
    "os_family",
    "os_version",
    "arch",
    "runtime",
    "device_model",
    "install_id",
    "user_id",
    "session_id",
    "country_code",
    "region_code",
    "error_domain",
    "error_code",
    "error_message",
    "dims",
    "metrics",
];

fn csv_header() -> String {
    format!("{}\n", CSV_COLUMNS.join(","))
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn csv_row(e: &Event) -> String {
    let error = e.error.clone().unwrap_or_default();
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let fields = [
        e.id.to_string(),
        rfc3339(e.timestamp),
        rfc3339(e.received_at),
        e.product.clone(),
        e.name.clone(),
        e.level.as_str().to_string(),
        opt(&e.platform),
        opt(&e.channel),
        opt(&e.module),
        opt(&e.app_version),
        opt(&e.release_channel),
        opt(&e.os_family),
        opt(&e.os_version),
        opt(&e.arch),
        opt(&e.runtime),
        opt(&e.device_model),
        opt(&e.install_id),
        opt(&e.user_id),
        opt(&e.session_id),
        opt(&e.country_code),
        opt(&e.region_code),
        opt(&error.domain),
        opt(&error.code),
        opt(&error.message),
        serde_json::to_string(&e.dims).unwrap_or_default(),
        serde_json::to_string(&e.metrics).unwrap_or_default(),
    ];
    let escaped: Vec<String> = fields.iter().map(|f| csv_escape(f)).collect();
    format!("{}\n", escaped.join(","))
}

/// RFC 4180 quoting; a leading `=`, `+`, `-` or `@` is prefixed with `'` so spreadsheets do not
/// run client-supplied text as a formula.
fn csv_escape(field: &str) -> String {
    let guarded = if field.starts_with(['=', '+', '-', '@']) && field.parse::<f64>().is_err() {
        format!("'{field}")
    } else {
        field.to_string()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// `GET /api/v1/geo`: events and distinct installs by country and region.
pub async fn geo(
    _caller: Caller,
    params: web::Query<FilterParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let filter = params.to_filter()?;
    let st = state.clone();
    let countries = blocking(move || Ok(st.search.geo(&filter)?)).await?;
    Ok(HttpResponse::Ok().json(json!({ "countries": countries })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_escape("plain"), "plain");
        assert_eq!(csv_escape("a,b"), "\"a,b\"");
        assert_eq!(csv_escape("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_escape("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(csv_escape("-5"), "-5");
        assert_eq!(csv_header().split(',').count(), CSV_COLUMNS.len());
    }
}
