//! The OpenAPI 3.1 document of the HTTP API, served at `GET /api/v1/openapi.json`. It is
//! generated (utoipa) from the `#[utoipa::path]` annotation next to each handler and the Rust
//! types the handlers take and give; what is not a Rust type comes from the table that defines
//! it: the error codes and their statuses from `crate::error` (`codes!`), the search filter
//! parameters and the native event's fields from the field catalogue (`crate::fields`). Built
//! once, on first use.
//!
//! A route cannot be registered undocumented: `http::resource`, through which every route is
//! built, checks (in debug builds, so in every test) that the document has its path; the
//! `openapi` integration test checks the methods.

use std::collections::{BTreeMap, HashSet};
use std::sync::LazyLock;

use actix_web::HttpResponse;
use serde_json::{json, Value};
use utoipa::openapi::path::{Operation, Parameter};
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, PartialSchema, ToSchema};

use crate::error::Code;
use crate::fields::{EventField, Kind, Use, FIELDS};
use crate::http::{
    admin, analytics, backup, clusters, compat, ops, otlp_metrics, policies, saved_queries, search,
    series, stats, subjects, traces,
};

/// Where the document is served.
pub const PATH: &str = "/api/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "telemetryd",
        description = "Client telemetry ingest, search, analytics, error clusters, collection \
            policies and operations. Every error answer is the JSON error body (`ErrorBody`) \
            with a stable `code` (`ErrorCode`); OTLP routes answer errors with a \
            `google.rpc.Status` in the request's encoding instead. Admin routes take a bearer \
            token of the `viewer` or `admin` role, scoped to all products or a list: an object \
            of a product outside the scope is `404`. The client routes (ingest, OTLP, client \
            config) also answer CORS preflights (`OPTIONS`) for the origins a product allows \
            (`403 cors_origin_not_allowed` otherwise)."
    ),
    paths(
        crate::http::ingest::native_events,
        compat::posthog_i_v0_e,
        compat::posthog_i_v0_e_slash,
        compat::posthog_e,
        compat::posthog_e_slash,
        compat::posthog_capture,
        compat::posthog_capture_slash,
        compat::posthog_batch,
        compat::posthog_batch_slash,
        compat::posthog_track,
        compat::posthog_track_slash,
        compat::posthog_engage,
        compat::posthog_engage_slash,
        compat::posthog_flags,
        compat::posthog_flags_slash,
        compat::posthog_decide,
        compat::posthog_decide_slash,
        compat::posthog_config,
        compat::posthog_config_slash,
        compat::aptabase_event,
        compat::aptabase_events,
        compat::sentry_envelope,
        compat::sentry_envelope_slash,
        compat::sentry_store,
        compat::sentry_store_slash,
        crate::http::ingest::otlp_traces,
        crate::http::ingest::otlp_traces_of_product,
        crate::http::ingest::otlp_logs,
        crate::http::ingest::otlp_logs_of_product,
        otlp_metrics::otlp_metrics,
        otlp_metrics::otlp_metrics_of_product,
        search::search_events,
        search::export_events,
        admin::get_event,
        traces::get_trace,
        search::geo,
        admin::stats,
        stats::overview,
        stats::timeseries,
        stats::breakdown,
        stats::history,
        stats::whoami,
        analytics::query,
        saved_queries::list,
        saved_queries::create,
        saved_queries::get,
        saved_queries::update,
        saved_queries::delete,
        series::names,
        series::query,
        subjects::export,
        subjects::erase,
        subjects::purge_status,
        subjects::start_purge,
        policies::client_config,
        policies::list,
        policies::create,
        policies::preview,
        policies::get,
        policies::replace,
        policies::delete,
        clusters::list,
        clusters::timeline,
        clusters::run,
        clusters::get,
        clusters::patch,
        clusters::cluster_timeline,
        clusters::alerts,
        subjects::audit,
        backup::post_backup,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        serve,
    ),
    components(schemas(ErrorBody, ErrorCode, NativeBatch)),
    modifiers(&SecuritySchemes, &InternalErrors, &OperationIds),
)]
struct ApiDoc;

/// The document as JSON, and the paths it describes.
static DOCUMENT: LazyLock<(String, HashSet<String>)> = LazyLock::new(|| {
    let doc = ApiDoc::openapi();
    let json = doc.to_json().expect("the OpenAPI document serializes");
    (json, doc.paths.paths.into_keys().collect())
});

/// The document as JSON.
pub fn document() -> &'static str {
    &DOCUMENT.0
}

/// Whether the document describes `path` (a route pattern such as `/api/v1/events/{id}`).
pub fn documents(path: &str) -> bool {
    DOCUMENT.1.contains(path)
}

/// The OpenAPI document of this API (no token: it holds no data).
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    summary = "This OpenAPI document",
    description = "This document. No token: it holds no data.",
    tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1).", content_type = "application/json", body = Object)),
)]
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document())
}

/// The security schemes, as `auth` and `ingest` check them.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.description = Some(description.to_string());
            SecurityScheme::Http(http)
        };
        components.add_security_scheme(
            "admin_token",
            bearer(
                "An admin API token (`[[admin.tokens]]`, or the bootstrap token in \
                 `DATA_DIR/admin-token`): role `viewer` (reads) or `admin` (writes), scoped to \
                 every product or a list of them.",
            ),
        );
        components.add_security_scheme(
            "metrics_token",
            bearer("The `/metrics` token, when `[metrics] token_hash` is set."),
        );
        components.add_security_scheme(
            "ingest_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Telemetry-Key",
                "A product's ingest key (`[[products]] ingest_keys`); it names the product. \
                 Optional for a product without keys.",
            ))),
        );
        components.add_security_scheme(
            "install_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Install-Token",
                "The ingest key, under the name some clients send it.",
            ))),
        );
        components.add_security_scheme(
            "sentry_auth",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Sentry-Auth",
                "`Sentry sentry_key=PUBLIC_KEY, sentry_version=7, ...`: the public key of a DSN \
                 in `[products.compat] sentry_dsns`, which with the path's project id names the \
                 product.",
            ))),
        );
        components.add_security_scheme(
            "aptabase_app_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "App-Key",
                "An Aptabase app key (`[products.compat] aptabase_app_keys`); it names the \
                 product.",
            ))),
        );
    }
}

/// Every operation can answer `500 internal`.
struct InternalErrors;

impl Modify for InternalErrors {
    fn modify(&self, doc: &mut Document) {
        let internal = error_response(&[Code::Internal])
            .remove("500")
            .expect("internal is a 500");
        for item in doc.paths.paths.values_mut() {
            for (_, operation) in operations(item) {
                operation
                    .responses
                    .responses
                    .entry("500".into())
                    .or_insert_with(|| internal.clone());
            }
        }
    }
}

/// Operation ids are the handler's name, which repeats across modules (`list`, `get`, `query`):
/// prefixed with the operation's tag they are unique (`policies.list`, `clusters.list`). A
/// handler that serves several methods of a path gets the method too (`compat.flags.get`).
struct OperationIds;

impl Modify for OperationIds {
    fn modify(&self, doc: &mut Document) {
        for item in doc.paths.paths.values_mut() {
            let ids: Vec<Option<String>> = operations(item)
                .map(|(_, operation)| operation.operation_id.clone())
                .collect();
            for ((method, operation), own) in operations(item).zip(&ids) {
                let shared = own.is_some() && ids.iter().filter(|id| *id == own).count() > 1;
                let tag = operation.tags.as_ref().and_then(|t| t.first()).cloned();
                if let (Some(tag), Some(id)) = (tag, operation.operation_id.as_mut()) {
                    *id = if shared {
                        format!("{tag}.{id}.{method}")
                    } else {
                        format!("{tag}.{id}")
                    };
                }
            }
        }
    }
}

/// A path's operations, with their methods.
fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| Some((method, operation.as_mut()?)))
}

fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("an ill-formed OpenAPI fragment ({e}): {value}"))
}

/// The JSON error body every error answer carries.
pub struct ErrorBody;

impl PartialSchema for ErrorBody {
    fn schema() -> RefOr<Schema> {
        from_json(json!({
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": { "$ref": "#/components/schemas/ErrorCode" },
                        "message": { "type": "string", "description": "A sentence for people." },
                        "details": {
                            "type": "object",
                            "description": "Structured details where the error has them \
                                (`parameter`, `field` and `reason`, `limit`, `position`, ...)."
                        }
                    }
                }
            }
        }))
    }
}

impl ToSchema for ErrorBody {}

/// Every error code, from the one table (`crate::error`).
pub struct ErrorCode;

impl PartialSchema for ErrorCode {
    fn schema() -> RefOr<Schema> {
        let table: Vec<String> = Code::ALL
            .iter()
            .map(|c| format!("`{}` ({})", c.name(), c.status()))
            .collect();
        from_json(json!({
            "type": "string",
            "enum": Code::ALL.iter().map(|c| c.name()).collect::<Vec<_>>(),
            "description": format!("A stable error code and its HTTP status: {}.", table.join(", ")),
        }))
    }
}

impl ToSchema for ErrorCode {}

/// The error answers for `codes`, one per status (from the table), each with the JSON error body
/// whose `code` is one of the codes of that status.
fn error_response(codes: &[Code]) -> BTreeMap<String, RefOr<Response>> {
    let mut by_status: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
    for code in codes {
        by_status
            .entry(code.status())
            .or_default()
            .push(code.name());
    }
    by_status
        .into_iter()
        .map(|(status, names)| {
            let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            let mut response = json!({
                "description": format!("Error: {}.", quoted.join(", ")),
                "content": { "application/json": { "schema": {
                    "allOf": [
                        { "$ref": "#/components/schemas/ErrorBody" },
                        { "type": "object", "properties": { "error": {
                            "type": "object",
                            "properties": { "code": { "type": "string", "enum": names } }
                        } } }
                    ]
                } } }
            });
            if names.contains(&Code::MissingToken.name()) {
                response["headers"] = json!({ "WWW-Authenticate": {
                    "description": "`Bearer`.", "schema": { "type": "string" }
                } });
            }
            if status == 429 || status == 503 {
                response["headers"] = json!({ "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "schema": { "type": "integer", "minimum": 0 }
                } });
            }
            (status.to_string(), from_json(response))
        })
        .collect()
}

/// Declares the error answers a handler lists in its `responses(...)`: one type per set of
/// codes; the statuses come from the table. A handler lists at most one set per status.
macro_rules! error_answers {
    ($($(#[doc = $doc:literal])* $name:ident = [$($code:ident),+];)*) => {
        $(
            $(#[doc = $doc])*
            pub struct $name;

            impl IntoResponses for $name {
                fn responses() -> BTreeMap<String, RefOr<Response>> {
                    error_response(&[$(Code::$code),+])
                }
            }
        )*

        #[cfg(test)]
        const ERROR_ANSWERS: &[(&str, &[Code])] = &[$((stringify!($name), &[$(Code::$code),+]),)*];
    };
}

error_answers! {
    /// A query or path parameter is wrong.
    BadParameter = [InvalidParameter];
    /// A parameter or the search query (`q`) is wrong.
    BadSearch = [InvalidParameter, InvalidQuery];
    /// The JSON body cannot be read or has the wrong shape.
    BadBody = [InvalidJson, InvalidBody, InvalidParameter];
    /// A policy body cannot be read or is not a valid policy.
    BadPolicy = [InvalidJson, InvalidBody, InvalidPolicy, InvalidParameter];
    /// An analytics spec cannot be read or is wrong.
    BadAnalytics = [InvalidJson, InvalidBody, InvalidQuery, InvalidParameter];
    /// The body, its encoding or the product it names cannot be read.
    BadIngest = [InvalidJson, InvalidBody, InvalidEncoding, MissingProduct, UnknownProduct, InvalidParameter];
    /// The client request names no product, or one that does not exist.
    BadProduct = [MissingProduct, UnknownProduct, InvalidParameter];
    /// No admin token, or not a valid one.
    TokenRequired = [MissingToken, InvalidToken];
    /// No ingest key where the product requires one, or not one of its keys.
    IngestKeyRequired = [MissingIngestKey, InvalidIngestKey];
    /// The token's role (`viewer` where `admin` is needed) or product scope does not allow it.
    Forbidden = [Forbidden];
    /// No such object in the caller's products.
    NotFound = [NotFound];
    /// The object exists already.
    Conflict = [Conflict];
    /// The body or the batch is over its limit (`server.max_body_bytes`, `max_batch_events`).
    TooLarge = [PayloadTooLarge, BatchTooLarge];
    /// A content type or content encoding the route does not read.
    UnsupportedMedia = [UnsupportedMediaType, UnsupportedEncoding];
    /// Over the rate limit.
    RateLimited = [RateLimited];
    /// The server cannot take the request now: overloaded, not ready, or the disk is full.
    Unavailable = [Overloaded, NotReady, DiskFull];
    /// The store writer has stopped.
    NotReady = [NotReady];
}

/// Every error an ingest route of a foreign format can give.
const INGEST_ERRORS: &[Code] = &[
    Code::InvalidJson,
    Code::InvalidBody,
    Code::InvalidEncoding,
    Code::MissingProduct,
    Code::UnknownProduct,
    Code::MissingIngestKey,
    Code::InvalidIngestKey,
    Code::PayloadTooLarge,
    Code::BatchTooLarge,
    Code::UnsupportedMediaType,
    Code::UnsupportedEncoding,
    Code::RateLimited,
    Code::Overloaded,
    Code::NotReady,
    Code::DiskFull,
];

/// The ingest error answers of a format that answers errors in its own body: the statuses,
/// codes and headers as for every route, the body `content`.
fn foreign_errors(content: serde_json::Value) -> BTreeMap<String, RefOr<Response>> {
    error_response(INGEST_ERRORS)
        .into_iter()
        .map(|(status_code, response)| {
            let RefOr::T(mut response) = response else {
                return (status_code, response);
            };
            response.content = from_json(content.clone());
            (status_code, RefOr::T(response))
        })
        .collect()
}

/// The error answers of the OTLP routes: the status and code as for every route, the body a
/// `google.rpc.Status` in the request's encoding (`code` is the gRPC status, `message` the
/// sentence).
pub struct OtlpErrors;

impl IntoResponses for OtlpErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let status = json!({
            "type": "object",
            "description": "google.rpc.Status",
            "properties": {
                "code": { "type": "integer" },
                "message": { "type": "string" },
                "details": { "type": "array", "items": { "type": "object" } }
            }
        });
        foreign_errors(json!({
            "application/x-protobuf": {
                "schema": { "type": "string", "contentMediaType": "application/x-protobuf",
                            "description": "google.rpc.Status, protobuf-encoded" }
            },
            "application/json": { "schema": status }
        }))
    }
}

/// The error answers of the PostHog routes, in PostHog's shape: `type`
/// (`validation_error`, `authentication_error`, `throttled_error`, `server_error`), `code` (the
/// error code), `detail` (the sentence), `attr`.
pub struct PostHogErrors;

impl IntoResponses for PostHogErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        foreign_errors(json!({ "application/json": { "schema": {
            "type": "object",
            "description": "PostHog's error body",
            "properties": {
                "type": { "type": "string" },
                "code": { "type": "string" },
                "detail": { "type": "string" },
                "attr": { "type": ["string", "null"] }
            }
        } } }))
    }
}

/// The error answers of the Sentry routes, in Relay's shape: `detail` (the sentence, which the
/// SDKs log) and `code` (the error code); a `429` also carries `X-Sentry-Rate-Limits`.
pub struct SentryErrors;

impl IntoResponses for SentryErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut responses = foreign_errors(json!({ "application/json": { "schema": {
            "type": "object",
            "description": "Relay's error body",
            "properties": {
                "detail": { "type": "string" },
                "code": { "type": "string" }
            }
        } } }));
        if let Some(RefOr::T(limited)) = responses.get_mut("429") {
            let header = from_json(json!({
                "description": "`RETRY_AFTER::key`: every category is limited for this DSN.",
                "schema": { "type": "string" }
            }));
            limited
                .headers
                .insert("X-Sentry-Rate-Limits".to_string(), header);
        }
        responses
    }
}

/// The body of a native ingest request (`POST /api/v1/events`): a batch envelope or a bare
/// array of events. The event's members are the field catalogue's client names.
pub struct NativeBatch;

impl PartialSchema for NativeBatch {
    fn schema() -> RefOr<Schema> {
        let mut properties = serde_json::Map::new();
        for def in FIELDS {
            let is_extras = matches!(def.field, EventField::Dims | EventField::Metrics);
            if def.wire.is_none() && !is_extras {
                continue;
            }
            let schema = match (def.field, def.kind) {
                (EventField::Dims, _) => json!({
                    "type": "object",
                    "description": "Dimensions: strings, booleans and numbers (numbers are \
                        kept as text); nested objects are flattened into dotted keys through \
                        the product's schema.",
                    "additionalProperties": true
                }),
                (EventField::Metrics, _) => json!({
                    "type": "object",
                    "description": "Numeric measurements.",
                    "additionalProperties": { "type": "number" }
                }),
                (EventField::Level, _) => json!({
                    "type": "string",
                    "description": "`debug`, `info`, `warn`, `error`, `fatal`, or an SDK's \
                        spelling of one (`warning`, `critical`)."
                }),
                (_, Kind::Time) => json!({
                    "type": ["string", "integer"],
                    "description": "RFC 3339, or milliseconds since the epoch."
                }),
                (_, Kind::Number) => json!({ "type": ["number", "string"] }),
                // Text: a number or a bool is taken as its text.
                _ => json!({ "type": ["string", "number", "boolean"] }),
            };
            for name in def.client_names() {
                properties.insert(name.to_string(), schema.clone());
            }
        }
        properties.insert(
            "error".into(),
            json!({
                "type": "object",
                "properties": {
                    "domain": { "type": "string" },
                    "code": { "type": ["string", "integer"] },
                    "message": { "type": "string" },
                    "stack": { "type": "string" }
                }
            }),
        );
        let event = json!({
            "type": "object",
            "description": "One event. Members by their catalogue names, camelCase spellings or \
                the names SDKs use; `name` is required. Keys a product maps in its `[mapping]` \
                are read as flat events. A malformed event is rejected alone, never its batch.",
            "properties": properties,
        });
        from_json(json!({
            "oneOf": [
                {
                    "type": "object",
                    "required": ["events"],
                    "properties": {
                        "sent_at": {
                            "type": ["string", "integer"],
                            "description": "When the client sent the batch (clock skew \
                                correction); `sentAt` is accepted too."
                        },
                        "events": { "type": "array", "items": event.clone() }
                    }
                },
                { "type": "array", "items": event }
            ]
        }))
    }
}

impl ToSchema for NativeBatch {}

/// The query parameters of search, export and the aggregations (`search::FilterParams`): the
/// catalogue's filter fields (by name or an older spelling) and the common ones.
impl IntoParams for search::FilterParams {
    fn into_params(_: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>) -> Vec<Parameter> {
        let common = [
            (
                "q",
                json!({ "type": "string" }),
                "A query in the query language.",
            ),
            (
                "from",
                json!({ "type": "string" }),
                "Start: RFC 3339, a date, epoch ms, `now` or relative (`-24h`).",
            ),
            ("to", json!({ "type": "string" }), "End, as `from`."),
            (
                "limit",
                json!({ "type": "integer", "minimum": 1, "maximum": search::MAX_LIMIT }),
                "Page size (search, default 50) or rows (breakdown, default 10).",
            ),
            (
                "cursor",
                json!({ "type": "string" }),
                "Search: the `next_cursor` of the previous page.",
            ),
            (
                "exact_total",
                json!({ "type": "boolean" }),
                "Search: count every match instead of stopping early.",
            ),
            (
                "format",
                json!({ "type": "string", "enum": ["ndjson", "jsonl", "csv"] }),
                "Export: the format (default ndjson).",
            ),
            (
                "bucket",
                json!({ "type": "string" }),
                "Time series: the bucket width, a duration such as `5m`, `1h`, `1d` (default 1h).",
            ),
            (
                "field",
                json!({ "type": "string" }),
                "Breakdown: the field to group by (required there).",
            ),
        ];
        let common = common.into_iter().map(|(name, schema, description)| {
            query_parameter(name, schema, description.to_string())
        });
        let fields = EventField::with_use(Use::Filter).map(|field| {
            let def = field.def();
            let mut description = "Filter: the field's value".to_string();
            if field == EventField::Level {
                description.push_str(" (one level or a comma list)");
            }
            if !def.aliases.is_empty() {
                description.push_str(&format!("; also spelt `{}`", def.aliases.join("`, `")));
            }
            query_parameter(def.name, json!({ "type": "string" }), description + ".")
        });
        common.chain(fields).collect()
    }
}

/// The client config's parameters: `product`, and every name clients send a targeting field
/// under that `ConfigQuery` reads (asked of `ConfigQuery` itself, name by name).
impl IntoParams for crate::policies::ConfigQuery {
    fn into_params(_: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>) -> Vec<Parameter> {
        let product = query_parameter(
            "product",
            json!({ "type": "string" }),
            "The product (needed without an ingest key when more than one product is configured)."
                .to_string(),
        );
        let reads = |name: &str| {
            let query = crate::policies::ConfigQuery::from(vec![(name.to_string(), "x".into())]);
            [
                query.install_id,
                query.platform,
                query.app_version,
                query.channel,
                query.release_channel,
            ]
            .iter()
            .any(Option::is_some)
        };
        let fields = FIELDS.iter().flat_map(|def| {
            def.client_names()
                .filter(|name| reads(name))
                .map(move |name| {
                    query_parameter(
                        name,
                        json!({ "type": "string" }),
                        format!("The client's `{}`, for policy targeting.", def.name),
                    )
                })
        });
        std::iter::once(product).chain(fields).collect()
    }
}

fn query_parameter(name: &str, schema: Value, description: String) -> Parameter {
    from_json(json!({
        "name": name,
        "in": "query",
        "required": false,
        "description": description,
        "schema": schema,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_answer_set_lists_codes_of_one_status() {
        for (name, codes) in ERROR_ANSWERS {
            let statuses: HashSet<u16> = codes.iter().map(|c| c.status()).collect();
            assert_eq!(statuses.len(), 1, "{name} spans statuses {statuses:?}");
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_with_the_code_table() {
        let doc: Value = serde_json::from_str(document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let codes = doc["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .unwrap();
        assert_eq!(codes.len(), Code::ALL.len());
        assert!(documents("/api/v1/events/{id}") && documents(PATH));
        assert!(!documents("/api/v1/nothing"));
    }
}
