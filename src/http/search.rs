//! The event explorer API: search with the query language and filters (newest first, cursor
//! pages), streaming export as NDJSON or CSV, and the geo distribution. The index finds
//! positions; the store, the source of truth, supplies the events.

use actix_web::{web, HttpResponse};
use std::collections::BTreeMap;
use std::sync::LazyLock;

use futures_util::stream;
use serde::de::{self, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::json;

use crate::fields::{EventField, Use};
use crate::http::auth::Caller;
use crate::http::blocking;
use crate::http::error::ApiError;
use crate::http::openapi;
use crate::model::{now_ms, Event};
use crate::search::{parse_time_param, Filter, SearchRequest};
use crate::store::audit::{self, AuditEntry};
use crate::AppState;

pub const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 50;

/// Query parameters shared by search, export and the aggregations. Any other parameter is
/// refused (`invalid_parameter`).
#[derive(Debug, Default)]
pub struct FilterParams {
    /// Field filters: one parameter per catalogue field with [`Use::Filter`], by its name or an
    /// older spelling (`country_code=US`, `country=US`).
    pub fields: BTreeMap<EventField, String>,
    pub q: Option<String>,
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

/// The parameters of [`FilterParams`] besides the field filters.
const OTHER_PARAMS: [&str; 9] = [
    "q",
    "from",
    "to",
    "limit",
    "cursor",
    "exact_total",
    "format",
    "bucket",
    "field",
];

/// Every parameter name [`FilterParams`] accepts, for the "unknown parameter" message.
static PARAM_NAMES: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let fields = EventField::with_use(Use::Filter).map(EventField::name);
    OTHER_PARAMS.iter().copied().chain(fields).collect()
});

impl<'de> Deserialize<'de> for FilterParams {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ParamsVisitor;
        impl<'de> Visitor<'de> for ParamsVisitor {
            type Value = FilterParams;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("query parameters")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FilterParams, A::Error> {
                fn once<T, E: de::Error>(
                    slot: &mut Option<T>,
                    name: &'static str,
                    value: T,
                ) -> Result<(), E> {
                    match slot.replace(value) {
                        Some(_) => Err(E::duplicate_field(name)),
                        None => Ok(()),
                    }
                }
                let mut p = FilterParams::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "q" => once(&mut p.q, "q", map.next_value()?)?,
                        "from" => once(&mut p.from, "from", map.next_value()?)?,
                        "to" => once(&mut p.to, "to", map.next_value()?)?,
                        "limit" => once(&mut p.limit, "limit", map.next_value()?)?,
                        "cursor" => once(&mut p.cursor, "cursor", map.next_value()?)?,
                        "exact_total" => {
                            once(&mut p.exact_total, "exact_total", map.next_value()?)?
                        }
                        "format" => once(&mut p.format, "format", map.next_value()?)?,
                        "bucket" => once(&mut p.bucket, "bucket", map.next_value()?)?,
                        "field" => once(&mut p.field, "field", map.next_value()?)?,
                        name => match EventField::lookup(name).filter(|f| f.has(Use::Filter)) {
                            Some(field) => {
                                if p.fields.insert(field, map.next_value()?).is_some() {
                                    return Err(de::Error::duplicate_field(field.name()));
                                }
                            }
                            None => return Err(de::Error::unknown_field(name, &PARAM_NAMES)),
                        },
                    }
                }
                Ok(p)
            }
        }
        deserializer.deserialize_map(ParamsVisitor)
    }
}

impl FilterParams {
    /// The index filter these parameters describe, limited to the caller's products (a
    /// `product` outside them is `not_found`); times are RFC 3339 or relative (`-24h`).
    pub fn to_filter(&self, caller: &Caller) -> Result<Filter, ApiError> {
        let scope = caller.scope_for(self.fields.get(&EventField::Product).map(String::as_str))?;
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
        Ok(Filter {
            fields: self
                .fields
                .iter()
                .filter(|(_, v)| !v.trim().is_empty())
                .map(|(f, v)| (*f, v.clone()))
                .collect(),
            from_ms: time("from", &self.from)?,
            to_ms: time("to", &self.to)?,
            q: self.q.clone().filter(|v| !v.trim().is_empty()),
            scope,
            present: Vec::new(),
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

/// One page of search matches.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct EventPage {
    /// Newest first.
    events: Vec<Event>,
    /// Every match, or with `total_exact: false` a lower bound.
    total: u64,
    total_exact: bool,
    /// The `cursor` of the next page (none on the last).
    next_cursor: Option<String>,
}

/// `GET /api/v1/events`
#[utoipa::path(
    get,
    path = "/api/v1/events",
    summary = "Search events",
    tag = "events",
    description = "Searches the events of the token's products (either role), newest first, \
        in pages. Any parameter not listed is refused.",
    params(FilterParams),
    responses(
        (status = 200, description = "One page.", body = EventPage),
        openapi::BadSearch, openapi::TokenRequired, openapi::NotFound, openapi::NotReady,
    ),
    security(("admin_token" = [])),
)]
pub async fn search_events(
    caller: Caller,
    params: web::Query<FilterParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let request = SearchRequest {
        filter: params.to_filter(&caller)?,
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
    Ok(HttpResponse::Ok().json(EventPage {
        events,
        total: page.total,
        total_exact: page.total_exact,
        next_cursor: page.next_cursor,
    }))
}

/// `GET /api/v1/events/export?format=ndjson|csv` (admin) streams every match in the caller's
/// products, newest first; audited as `events.export` (with the filter, which names no subject
/// unless the operator typed one into it).
#[utoipa::path(
    get,
    path = "/api/v1/events/export",
    summary = "Export matching events",
    description = "Streams every match in the token's products, newest first, as NDJSON or CSV (admin role); audited.",
    tag = "events",
    params(FilterParams),
    responses(
        (status = 200, description = "Every match, streamed (`Content-Disposition: attachment`).", content(
            (String = "application/x-ndjson"),
            (String = "text/csv"),
        )),
        openapi::BadSearch, openapi::TokenRequired, openapi::Forbidden, openapi::NotFound, openapi::NotReady,
    ),
    security(("admin_token" = [])),
)]
pub async fn export_events(
    caller: Caller,
    params: web::Query<FilterParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
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
    let filter = params.to_filter(&caller)?;
    // Fail fast on a bad query before the 200 goes out.
    let st = state.clone();
    let probe = filter.clone();
    let matches = blocking(move || Ok(st.search.count(&probe)?)).await?;
    let entry = AuditEntry::now(
        &caller.name,
        "events.export",
        "events".into(),
        audit::scope_products(&filter.scope),
        json!({ "format": extension_of(format), "matches": matches }),
    );
    state.writer.audit(entry).await?;
    let content_type = match format {
        ExportFormat::Ndjson => "application/x-ndjson",
        ExportFormat::Csv => "text/csv; charset=utf-8",
    };
    let extension = extension_of(format);
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

fn extension_of(format: ExportFormat) -> &'static str {
    match format {
        ExportFormat::Ndjson => "ndjson",
        ExportFormat::Csv => "csv",
    }
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

/// The CSV columns: the catalogue fields with [`Use::Export`], in catalogue order.
fn csv_columns() -> impl Iterator<Item = EventField> {
    EventField::with_use(Use::Export)
}

fn csv_header() -> String {
    let names: Vec<&str> = csv_columns().map(EventField::name).collect();
    format!("{}\n", names.join(","))
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

/// One cell: text fields as they are, times as RFC 3339, dimensions and metrics as JSON.
fn csv_value(field: EventField, e: &Event) -> String {
    match field {
        EventField::Id => e.id.to_string(),
        EventField::Timestamp => rfc3339(e.timestamp),
        EventField::ReceivedAt => rfc3339(e.received_at),
        EventField::Dims => serde_json::to_string(&e.dims).unwrap_or_default(),
        EventField::Metrics => serde_json::to_string(&e.metrics).unwrap_or_default(),
        other => other.text(e).unwrap_or_default().to_string(),
    }
}

fn csv_row(e: &Event) -> String {
    let escaped: Vec<String> = csv_columns()
        .map(|f| csv_escape(&csv_value(f, e)))
        .collect();
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

/// The answer of [`geo`].
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct GeoAnswer {
    countries: Vec<crate::search::CountryCount>,
    /// Groups under the products' `min_group_installs`, folded away.
    suppressed_groups: usize,
}

/// `GET /api/v1/geo`: events and distinct installs by country and region.
#[utoipa::path(
    get,
    path = "/api/v1/geo",
    summary = "Events by country and region",
    description = "Events (weighted by sampling) and distinct installs by country and region; groups under `min_group_installs` are folded away (either role).",
    tag = "events",
    params(FilterParams),
    responses(
        (status = 200, description = "By country, then region.", body = GeoAnswer),
        openapi::BadSearch, openapi::TokenRequired, openapi::NotFound, openapi::NotReady,
    ),
    security(("admin_token" = [])),
)]
pub async fn geo(
    caller: Caller,
    params: web::Query<FilterParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let filter = params.to_filter(&caller)?;
    let min_installs = state.products.min_group_installs(&filter.scope);
    let st = state.clone();
    let geo = blocking(move || Ok(st.search.geo(&filter, min_installs)?)).await?;
    Ok(HttpResponse::Ok().json(GeoAnswer {
        countries: geo.rows,
        suppressed_groups: geo.suppressed_groups,
    }))
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
    }

    fn params(query: &str) -> Result<FilterParams, String> {
        web::Query::<FilterParams>::from_query(query)
            .map(web::Query::into_inner)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn filter_parameters_by_name_or_older_spelling() {
        let p = params("country_code=US&region=US-WA&level=error&q=timeout&limit=5").unwrap();
        assert_eq!(p.fields.get(&EventField::CountryCode).unwrap(), "US");
        assert_eq!(p.fields.get(&EventField::RegionCode).unwrap(), "US-WA");
        assert_eq!((p.q.as_deref(), p.limit), (Some("timeout"), Some(5)));
        let filter = params("country=US&platform=&from=-1h")
            .unwrap()
            .to_filter(&Caller {
                name: "ops".into(),
                role: crate::config::Role::Admin,
                scope: crate::scope::Scope::all(),
            })
            .unwrap();
        assert_eq!(
            filter.fields,
            [(EventField::CountryCode, "US".to_string())].into()
        );
        assert!(filter.from_ms.is_some());

        let unknown = params("country=US&nonsense=1").unwrap_err();
        assert!(unknown.contains("unknown field `nonsense`"), "{unknown}");
        assert!(unknown.contains("`country_code`"), "{unknown}");
        // Indexed, but not a filter parameter.
        assert!(params("os_family=ios").is_err());
        assert!(params("country=US&country_code=DE").is_err());
        assert!(params("limit=many").is_err());
        assert!(params("q=a&q=b").is_err());
    }

    #[test]
    fn csv_columns_in_catalogue_order() {
        // New columns only ever come from new catalogue entries (the trace context, the message).
        assert_eq!(
            csv_header(),
            "id,timestamp,received_at,product,name,level,platform,channel,module,app_version,\
             release_channel,os_family,os_version,arch,runtime,device_model,install_id,user_id,\
             session_id,trace_id,span_id,parent_span_id,country_code,region_code,message,\
             error_domain,error_code,error_message,dims,metrics\n"
        );
        let event = Event {
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            country_code: Some("US".into()),
            error: Some(crate::model::ErrorInfo {
                message: Some("no audio".into()),
                ..Default::default()
            }),
            ..Event::new("app", "started")
        };
        let row = csv_row(&event);
        let cells: Vec<&str> = row.trim_end().split(',').collect();
        assert_eq!(cells.len(), csv_columns().count());
        let header = csv_header();
        let cell = |name: &str| {
            let at = header
                .trim_end()
                .split(',')
                .position(|c| c == name)
                .unwrap();
            cells[at]
        };
        assert_eq!(cell("id"), event.id.to_string());
        assert_eq!(cell("timestamp"), "1970-01-01T00:00:00Z");
        let named = (cell("product"), cell("name"), cell("level"));
        assert_eq!(named, ("app", "started", "info"));
        assert_eq!(
            (cell("country_code"), cell("error_message")),
            ("US", "no audio")
        );
        assert_eq!(
            (cell("dims"), cell("metrics"), cell("trace_id")),
            ("{}", "{}", event.trace_id.as_deref().unwrap_or(""))
        );
    }
}
