//! OTLP/HTTP traces and logs (`POST /v1/traces`, `/v1/logs`, in protobuf or JSON): each span
//! and each log record becomes one raw event, and from there goes through the same pipeline as
//! native events (schema, PII, geo, clock, policy, dedup, rate limit). The answer is the
//! `Export*ServiceResponse` in the request's encoding, with `partial_success` naming what was
//! refused; error answers are `google.rpc.Status`. Metrics are time series, not events: see
//! `series`.
//!
//! Mapping (also in the README):
//! - resource attributes → environment fields ([`RESOURCE_FIELDS`]); the product's
//!   `install_id_attribute` (record attributes first, then the resource's) → `install_id`;
//!   `session.id` → `session_id`, `enduser.id`/`user.id` → `user_id`;
//! - a span → `name` = span name, `timestamp` = start, `duration_ms` (a metric), its attributes
//!   as dimensions (strings, bools) and metrics (numbers) through the product's schema,
//!   `trace_id`/`span_id`/`parent_span_id`; error status → level `error` and an error whose
//!   message is the status message; an `exception` span event → the error's type, message and
//!   stack (`exception.type`, `exception.message`, `exception.stacktrace`);
//! - a log record → `name` from the `event.name` attribute (or the record's event name, or its
//!   scope's name, or `log`), level from its severity, `message` = its body (scrubbed),
//!   `exception.*` attributes → the error, trace context kept.

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, Span};

use super::{Answer, Body, DecodeLimits, Format, Key, Params, ProductRequest, RawBatch, RawEvent};
use crate::error::{Code, RejectCode, Rejection};
use crate::ingest::decode::FieldValue;
use crate::ingest::{IngestError, Outcome};
use crate::model::{Field, Source};
use crate::otlp::{self, Encoding};
use crate::products::{Product, ProductError, Products};

pub struct OtlpTraces;
pub struct OtlpLogs;

/// `POST /v1/traces`.
pub static OTLP_TRACES: OtlpTraces = OtlpTraces;
/// `POST /v1/logs`.
pub static OTLP_LOGS: OtlpLogs = OtlpLogs;

const SOURCE: Source = Source::named("otlp");

/// Resource attributes (semantic conventions) → the event field they fill, first match wins.
pub const RESOURCE_FIELDS: &[(&str, Field)] = &[
    ("service.version", Field::AppVersion),
    ("os.type", Field::OsFamily),
    ("os.version", Field::OsVersion),
    ("host.arch", Field::Arch),
    ("telemetry.sdk.language", Field::Runtime),
    ("device.model.identifier", Field::DeviceModel),
    ("device.model.name", Field::DeviceModel),
    ("deployment.environment.name", Field::ReleaseChannel),
    ("deployment.environment", Field::ReleaseChannel),
    ("service.namespace", Field::Channel),
    ("session.id", Field::SessionId),
    ("enduser.id", Field::UserId),
    ("user.id", Field::UserId),
];

/// Record attributes that fill event fields rather than dimensions.
const RECORD_FIELDS: &[(&str, Field)] = &[
    ("session.id", Field::SessionId),
    ("enduser.id", Field::UserId),
    ("user.id", Field::UserId),
];

/// The parts of an error report in OTel's exception attributes.
const EXCEPTION_FIELDS: &[(&str, Field)] = &[
    ("exception.type", Field::ErrorDomain),
    ("exception.message", Field::ErrorMessage),
    ("exception.stacktrace", Field::ErrorStack),
];

/// The OTLP encoding a content type names, or the `415` for any other.
pub fn encoding_of(content_type: Option<&str>) -> Result<Encoding, IngestError> {
    Encoding::of(content_type).ok_or_else(|| IngestError::UnsupportedMediaType {
        content_type: content_type.unwrap_or("").chars().take(100).collect(),
        expected: "application/x-protobuf or application/json",
    })
}

fn encoding(content_type: Option<&str>) -> Encoding {
    Encoding::of(content_type).unwrap_or(Encoding::Json)
}

fn decode_request<T>(body: &Body<'_>) -> Result<T, IngestError>
where
    T: prost::Message + serde::de::DeserializeOwned + Default,
{
    otlp::decode(body.bytes, encoding(body.content_type)).map_err(IngestError::InvalidBody)
}

fn check_count(count: usize, limits: &DecodeLimits) -> Result<(), IngestError> {
    if count > limits.max_batch_events {
        return Err(IngestError::BatchTooLarge {
            count,
            limit: limits.max_batch_events,
        });
    }
    Ok(())
}

/// The product: named by the request, else by the first `service.name` the body carries. An
/// empty request needs none (it is a success), but a wrong key or product name still fails.
fn product<'p, 'r>(
    products: &'p Products,
    request: &ProductRequest,
    items: usize,
    mut resources: impl Iterator<Item = Option<&'r Resource>>,
) -> Result<&'p Product, IngestError> {
    let service = resources.find_map(|r| {
        r.and_then(|r| {
            otlp::string_attributes(&r.attributes)
                .get("service.name")
                .copied()
        })
    });
    match request.resolve(products, service) {
        Err(IngestError::Product(ProductError::Missing)) if items == 0 => products
            .all()
            .first()
            .ok_or(IngestError::Product(ProductError::Missing)),
        other => other,
    }
}

/// Why some items were refused, for `partial_success.error_message`: each reason once, with
/// how many items it refused.
fn rejection_summary(rejected: &[Rejection]) -> String {
    let mut reasons: Vec<(&str, usize)> = Vec::new();
    for r in rejected {
        match reasons
            .iter_mut()
            .find(|(code, _)| *code == r.code.as_str())
        {
            Some((_, n)) => *n += 1,
            None => reasons.push((r.code.as_str(), 1)),
        }
    }
    let first = rejected.first().map(|r| r.message.as_str()).unwrap_or("");
    let counts: Vec<String> = reasons.iter().map(|(c, n)| format!("{n} {c}")).collect();
    format!("{} (first: {first})", counts.join(", "))
}

/// What a resource contributes to each of its records' events.
struct ResourceContext {
    fields: Vec<(String, Key, FieldValue)>,
    /// The install id the resource carries in the product's install-id attribute.
    install_id: Option<String>,
    error: Option<String>,
}

impl ResourceContext {
    fn of(resource: Option<&Resource>, product: &Product) -> ResourceContext {
        let attributes = resource.map_or(&[][..], |r| r.attributes.as_slice());
        if attributes.len() > otlp::MAX_ATTRIBUTES {
            return ResourceContext {
                fields: Vec::new(),
                install_id: None,
                error: Some(format!(
                    "the resource has {} attributes; the limit is {}",
                    attributes.len(),
                    otlp::MAX_ATTRIBUTES
                )),
            };
        }
        let strings = otlp::string_attributes(attributes);
        let mut fields: Vec<(String, Key, FieldValue)> = Vec::new();
        for (attribute, field) in RESOURCE_FIELDS {
            let taken = fields.iter().any(|(_, k, _)| *k == Key::Field(*field));
            if let (false, Some(value)) = (taken, strings.get(attribute)) {
                fields.push((
                    field.name().to_string(),
                    Key::Field(*field),
                    FieldValue::Str(value.to_string()),
                ));
            }
        }
        if let Some(service) = strings.get("service.name") {
            fields.push((
                "service.name".into(),
                Key::Extra,
                FieldValue::Str(service.to_string()),
            ));
        }
        let install_id = product
            .otlp_install_id_attribute
            .as_deref()
            .and_then(|name| otlp::string_attribute(attributes, name))
            .map(str::to_string);
        ResourceContext {
            fields,
            install_id,
            error: None,
        }
    }
}

/// Builds one record's raw event: the resource's fields, then the record's own, then its
/// attributes (fields, exception parts, install id, dimensions and metrics).
struct EventBuilder<'a> {
    product: &'a Product,
    resource: &'a ResourceContext,
    fields: Vec<(String, Key, FieldValue)>,
}

impl<'a> EventBuilder<'a> {
    fn new(product: &'a Product, resource: &'a ResourceContext) -> Result<Self, Rejection> {
        if let Some(error) = &resource.error {
            return Err(Rejection::new(RejectCode::InvalidEvent, error.clone()));
        }
        Ok(EventBuilder {
            product,
            resource,
            fields: resource.fields.clone(),
        })
    }

    fn field(&mut self, field: Field, value: FieldValue) {
        self.fields
            .push((field.name().to_string(), Key::Field(field), value));
    }

    fn text(&mut self, field: Field, value: Option<String>) {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            self.field(field, FieldValue::Str(value));
        }
    }

    fn extra(&mut self, key: String, value: FieldValue) {
        self.fields.push((key, Key::Extra, value));
    }

    /// The record's attributes: fields where the conventions say so, the rest as extras.
    fn attributes(&mut self, list: Vec<KeyValue>) -> Result<(), Rejection> {
        let install_attribute = self.product.otlp_install_id_attribute.as_deref();
        let install = install_attribute
            .and_then(|name| otlp::string_attribute(&list, name))
            .map(str::to_string)
            .or_else(|| self.resource.install_id.clone());
        let attributes = otlp::attributes(list)
            .map_err(|e| Rejection::new(RejectCode::InvalidEvent, e.to_string()))?;
        self.text(Field::InstallId, install);
        for (key, value) in attributes {
            if Some(key.as_str()) == install_attribute {
                continue;
            }
            let field = RECORD_FIELDS
                .iter()
                .chain(EXCEPTION_FIELDS)
                .find(|(name, _)| *name == key)
                .map(|(_, f)| *f);
            match field {
                Some(field) => self.field(field, value),
                None => self.extra(key, value),
            }
        }
        Ok(())
    }

    fn finish(self) -> RawEvent {
        RawEvent {
            fields: self.fields,
            source: SOURCE,
        }
    }
}

impl OtlpTraces {
    fn span(
        &self,
        product: &Product,
        resource: &ResourceContext,
        span: Span,
    ) -> Result<RawEvent, Rejection> {
        let mut event = EventBuilder::new(product, resource)?;
        event.field(Field::Name, FieldValue::Str(span.name));
        if let Some(start) = otlp::millis(span.start_time_unix_nano) {
            event.field(Field::Timestamp, FieldValue::Num(start as f64));
        }
        let (trace_id, span_id) = (otlp::id(&span.trace_id), otlp::id(&span.span_id));
        // A span is identified by its trace and span ids, so an exporter's retry deduplicates.
        if let (Some(trace), Some(id)) = (&trace_id, &span_id) {
            event.text(
                Field::Id,
                Some(span_event_id(&product.id, trace, id).to_string()),
            );
        }
        event.text(Field::TraceId, trace_id);
        event.text(Field::SpanId, span_id);
        event.text(Field::ParentSpanId, otlp::id(&span.parent_span_id));
        if span.end_time_unix_nano >= span.start_time_unix_nano && span.start_time_unix_nano > 0 {
            let nanos = span.end_time_unix_nano - span.start_time_unix_nano;
            event.extra("duration_ms".into(), FieldValue::Num(nanos as f64 / 1e6));
        }
        event.attributes(span.attributes)?;
        let failed = span
            .status
            .as_ref()
            .is_some_and(|s| s.code == StatusCode::Error as i32);
        let exception = span.events.into_iter().find(|e| e.name == "exception");
        let has_exception = exception.is_some();
        if let Some(exception) = exception {
            let attributes = otlp::attributes(exception.attributes)
                .map_err(|e| Rejection::new(RejectCode::InvalidEvent, e.to_string()))?;
            for (key, value) in attributes {
                if let Some((_, field)) = EXCEPTION_FIELDS.iter().find(|(name, _)| *name == key) {
                    event.field(*field, value);
                }
            }
        }
        if failed || has_exception {
            event.field(Field::Level, FieldValue::Str("error".into()));
        }
        if let Some(status) = span.status.as_ref().filter(|_| failed) {
            if !has_exception {
                let message = Some(status.message.clone()).filter(|m| !m.is_empty());
                event.text(
                    Field::ErrorMessage,
                    message.or_else(|| Some("span status: error".into())),
                );
            }
            event.text(Field::ErrorCode, Some("STATUS_CODE_ERROR".into()));
        }
        Ok(event.finish())
    }
}

/// What differs between the OTLP signals that become events: the request type, how its items
/// map onto raw events, and the answer's partial-success message.
trait Signal: Sync {
    type Request: prost::Message + serde::de::DeserializeOwned + Default;
    const NAME: &'static str;

    /// The resources of the request, in order.
    fn resources(request: &Self::Request) -> impl Iterator<Item = Option<&Resource>>;

    /// How many items (spans, log records) the request carries.
    fn count(request: &Self::Request) -> usize;

    /// Each item as a raw event, or why not.
    fn events(&self, request: Self::Request, product: &Product)
        -> Vec<Result<RawEvent, Rejection>>;

    /// The `Export*ServiceResponse` (with `partial_success` when `rejected` is not empty).
    fn answer(rejected: &[Rejection], content_type: Option<&str>) -> Answer;
}

impl<S: Signal> Format for S {
    fn name(&self) -> &'static str {
        S::NAME
    }

    fn check_content_type(&self, content_type: Option<&str>) -> Result<(), IngestError> {
        encoding_of(content_type).map(|_| ())
    }

    fn decode(
        &self,
        body: Body<'_>,
        products: &Products,
        request: &ProductRequest,
        limits: &DecodeLimits,
    ) -> Result<RawBatch, IngestError> {
        let export: S::Request = decode_request(&body)?;
        let count = S::count(&export);
        check_count(count, limits)?;
        let product = product(products, request, count, S::resources(&export))?;
        Ok(RawBatch {
            product: product.index,
            sent_at: None,
            items: self.events(export, product),
            positions: None,
            ..RawBatch::default()
        })
    }

    fn answer(&self, outcome: &Outcome, content_type: Option<&str>, _params: &Params) -> Answer {
        S::answer(&outcome.rejected, content_type)
    }

    fn error_answer(
        &self,
        code: Code,
        message: &str,
        content_type: Option<&str>,
    ) -> Option<Answer> {
        Some(status_answer(code, message, content_type))
    }
}

impl Signal for OtlpTraces {
    type Request = ExportTraceServiceRequest;
    const NAME: &'static str = "otlp-traces";

    fn resources(request: &Self::Request) -> impl Iterator<Item = Option<&Resource>> {
        request.resource_spans.iter().map(|r| r.resource.as_ref())
    }

    fn count(request: &Self::Request) -> usize {
        let scopes = request.resource_spans.iter().flat_map(|r| &r.scope_spans);
        scopes.map(|s| s.spans.len()).sum()
    }

    fn events(
        &self,
        request: Self::Request,
        product: &Product,
    ) -> Vec<Result<RawEvent, Rejection>> {
        let mut items = Vec::with_capacity(Self::count(&request));
        for resource_spans in request.resource_spans {
            let resource = ResourceContext::of(resource_spans.resource.as_ref(), product);
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                items.push(self.span(product, &resource, span));
            }
        }
        items
    }

    fn answer(rejected: &[Rejection], content_type: Option<&str>) -> Answer {
        let response = ExportTraceServiceResponse {
            partial_success: (!rejected.is_empty()).then(|| ExportTracePartialSuccess {
                rejected_spans: rejected.len() as i64,
                error_message: rejection_summary(rejected),
            }),
        };
        export_answer(&response, response.partial_success.is_none(), content_type)
    }
}

impl Signal for OtlpLogs {
    type Request = ExportLogsServiceRequest;
    const NAME: &'static str = "otlp-logs";

    fn resources(request: &Self::Request) -> impl Iterator<Item = Option<&Resource>> {
        request.resource_logs.iter().map(|r| r.resource.as_ref())
    }

    fn count(request: &Self::Request) -> usize {
        let scopes = request.resource_logs.iter().flat_map(|r| &r.scope_logs);
        scopes.map(|s| s.log_records.len()).sum()
    }

    fn events(
        &self,
        request: Self::Request,
        product: &Product,
    ) -> Vec<Result<RawEvent, Rejection>> {
        let mut items = Vec::with_capacity(Self::count(&request));
        for resource_logs in request.resource_logs {
            let resource = ResourceContext::of(resource_logs.resource.as_ref(), product);
            for scope_logs in resource_logs.scope_logs {
                let scope = scope_logs.scope.as_ref().map(|s| s.name.as_str());
                for record in scope_logs.log_records {
                    items.push(self.record(product, &resource, scope, record));
                }
            }
        }
        items
    }

    fn answer(rejected: &[Rejection], content_type: Option<&str>) -> Answer {
        let response = ExportLogsServiceResponse {
            partial_success: (!rejected.is_empty()).then(|| ExportLogsPartialSuccess {
                rejected_log_records: rejected.len() as i64,
                error_message: rejection_summary(rejected),
            }),
        };
        export_answer(&response, response.partial_success.is_none(), content_type)
    }
}

/// An `Export*ServiceResponse` in the request's encoding.
fn export_answer<T>(response: &T, full_success: bool, content_type: Option<&str>) -> Answer
where
    T: prost::Message + serde::Serialize,
{
    let encoding = encoding(content_type);
    Answer {
        content_type: encoding.content_type(),
        body: otlp::encode_export(response, full_success, encoding),
    }
}

/// A `google.rpc.Status` error body in the request's encoding (JSON when it has none of OTLP's).
pub fn status_answer(code: Code, message: &str, content_type: Option<&str>) -> Answer {
    let encoding = encoding(content_type);
    Answer {
        content_type: encoding.content_type(),
        body: otlp::encode(&otlp::Status::of(code, message), encoding),
    }
}

/// The event id of a span: a UUID (v8) from its product, trace and span ids.
fn span_event_id(product: &str, trace_id: &str, span_id: &str) -> uuid::Uuid {
    use sha2::{Digest, Sha256};
    let key = format!("otlp-span\u{0}{product}\u{0}{trace_id}\u{0}{span_id}");
    let digest = Sha256::digest(key.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::new_v8(bytes)
}

/// OTel severity numbers (1–24, in steps of four per level) → level; 0 is unspecified.
fn severity_level(number: i32, text: &str) -> Option<&'static str> {
    match number {
        1..=8 => Some("debug"),
        9..=12 => Some("info"),
        13..=16 => Some("warn"),
        17..=20 => Some("error"),
        21..=24 => Some("fatal"),
        _ => crate::model::Level::parse(text).map(|l| l.as_str()),
    }
}

impl OtlpLogs {
    fn record(
        &self,
        product: &Product,
        resource: &ResourceContext,
        scope: Option<&str>,
        record: LogRecord,
    ) -> Result<RawEvent, Rejection> {
        let mut event = EventBuilder::new(product, resource)?;
        let event_name = otlp::string_attribute(&record.attributes, "event.name")
            .map(str::to_string)
            .or_else(|| Some(record.event_name.clone()).filter(|n| !n.is_empty()))
            .or_else(|| scope.filter(|s| !s.is_empty()).map(str::to_string))
            .unwrap_or_else(|| "log".into());
        event.field(Field::Name, FieldValue::Str(event_name));
        let time = otlp::millis(record.time_unix_nano)
            .or_else(|| otlp::millis(record.observed_time_unix_nano));
        if let Some(time) = time {
            event.field(Field::Timestamp, FieldValue::Num(time as f64));
        }
        if let Some(level) = severity_level(record.severity_number, &record.severity_text) {
            event.field(Field::Level, FieldValue::Str(level.into()));
        }
        event.text(Field::Message, record.body.as_ref().and_then(otlp::text));
        event.text(Field::TraceId, otlp::id(&record.trace_id));
        event.text(Field::SpanId, otlp::id(&record.span_id));
        let mut attributes = record.attributes;
        attributes.retain(|kv| kv.key != "event.name");
        event.attributes(attributes)?;
        Ok(event.finish())
    }
}
