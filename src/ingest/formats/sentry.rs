//! Sentry's ingestion API (`POST /api/{project_id}/envelope/` and the older
//! `/api/{project_id}/store/`), as the official SDKs (sentry-python, @sentry/node,
//! @sentry/browser, ...) send to it with their DSN pointed at telemetryd. The project id of the
//! path and the DSN's public key (from `X-Sentry-Auth`, `Authorization: Sentry ...`,
//! `?sentry_key=` or the envelope header's `dsn`) select the product (`[products.compat]
//! sentry_dsns`).
//!
//! Envelopes: a JSON header line, then items, each a JSON header line (`type`, optional
//! `length`) and its payload. Items taken in: `event` (an error or message event; also the
//! store endpoint's body), `transaction` (the transaction and each of its spans as events),
//! `span` (streamed spans, as @sentry/node 10+ sends them: each an event as a transaction's),
//! `session` and `sessions` (release health, stored as `session` events), `client_report`
//! (counted in the metrics). Other item types (attachments, profiles, replays, check-ins,
//! logs, ...) are set aside without error, as a Relay without that feature does.
//!
//! Mapping (also in the README): `event_id` → id, `timestamp` → timestamp, `level` → level,
//! `release` (`package@version`: the version) → app version, `environment` → release channel,
//! `platform` → platform, `contexts.runtime` (else the SDK) → runtime, `contexts.os`,
//! `contexts.device` → OS, device model and architecture, `contexts.device.id` else `user.id`
//! → install id, `user.id` → user id, `logger` → module, `contexts.trace` → trace and span
//! ids, `tags` → dimensions through the schema. Exceptions (`exception.values`, the last the one
//! raised) → the error: its type, its value, every exception with its frames as the stack text,
//! and as error code the functions of its in-app frames (all frames when none is marked), so
//! the cluster key is the exception type plus where it happened, independent of line numbers,
//! messages and versions. Message events: `logentry`/`message` → the message. Transactions:
//! name `transaction`, each span named by its `op`; `duration_ms` from the start and end
//! timestamps, `op`, `status` and `description` as dimensions, as OTLP spans are. Sessions:
//! name `session`, `sid` → session id, `did` → install id, the status, and the metrics
//! `sessions` (1 on a session's first update, each started session of an aggregate), `crashed`,
//! `errored` and `abnormal`: crash-free sessions of a release are 1 − crashed / sessions.
//!
//! Answers: `{"id": event_id}` with the native answer's counts and rejections beside it (each
//! rejection's index is its item's position in the envelope); errors as Relay's,
//! `{"detail": ...}` with the code beside it.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::posthog::{exception_text, field_value, text};
use super::{
    Answer, Body, ClientDiscarded, DecodeLimits, Format, Key, Params, ProductRequest, RawBatch,
    RawEvent,
};
use crate::config::{sentry_dsn_parts, sentry_key, CompatFormat};
use crate::error::{Code, RejectCode, Rejection};
use crate::ingest::decode::FieldValue;
use crate::ingest::{IngestError, Outcome};
use crate::model::{Field, Source};

/// Which of Sentry's endpoints a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// `/api/{project_id}/envelope/`: an envelope of items.
    Envelope,
    /// `/api/{project_id}/store/`: one event.
    Store,
}

pub struct Sentry {
    endpoint: Endpoint,
}

/// `POST /api/{project_id}/envelope/`.
pub static SENTRY_ENVELOPE: Sentry = Sentry {
    endpoint: Endpoint::Envelope,
};

/// `POST /api/{project_id}/store/`.
pub static SENTRY_STORE: Sentry = Sentry {
    endpoint: Endpoint::Store,
};

const SOURCE: Source = Source::named("sentry");

/// The header sentry-python and most SDKs authenticate with.
pub const AUTH_HEADER: &str = "x-sentry-auth";
/// Relay also reads the auth from `Authorization: Sentry sentry_key=...`.
const AUTHORIZATION: &str = "authorization";

/// The path parameter with the project id.
pub const PROJECT_ID: &str = "project_id";

/// At most this many functions of in-app frames make an exception's error code.
const MAX_GROUPING_FRAMES: usize = 10;

/// Client report reasons and categories counted under their own name (Sentry's lists); others
/// are counted as `other`, so a client cannot grow the metrics without bound.
const DISCARD_REASONS: &[&str] = &[
    "queue_overflow",
    "cache_overflow",
    "buffer_overflow",
    "ratelimit_backoff",
    "network_error",
    "sample_rate",
    "before_send",
    "event_processor",
    "send_error",
    "internal_sdk_error",
    "insufficient_data",
    "backpressure",
];
const DISCARD_CATEGORIES: &[&str] = &[
    "default",
    "error",
    "transaction",
    "span",
    "security",
    "attachment",
    "session",
    "profile",
    "profile_chunk",
    "replay",
    "monitor",
    "feedback",
    "log_item",
    "log_byte",
];

impl Format for Sentry {
    fn name(&self) -> &'static str {
        match self.endpoint {
            Endpoint::Envelope => "sentry-envelope",
            Endpoint::Store => "sentry-store",
        }
    }

    fn headers(&self) -> &'static [&'static str] {
        &[AUTH_HEADER, AUTHORIZATION]
    }

    /// The SDKs send `application/x-sentry-envelope`, `application/json` or `text/plain`
    /// (browsers, to avoid a preflight); the body tells what it is.
    fn check_content_type(&self, _content_type: Option<&str>) -> Result<(), IngestError> {
        Ok(())
    }

    fn decode(
        &self,
        body: Body<'_>,
        products: &crate::products::Products,
        request: &ProductRequest,
        limits: &DecodeLimits,
    ) -> Result<RawBatch, IngestError> {
        let project = body.params.path(PROJECT_ID).unwrap_or_default().to_string();
        let (header, items) = match self.endpoint {
            Endpoint::Envelope => parse_envelope(body.bytes)?,
            Endpoint::Store => (EnvelopeHeader::default(), vec![store_item(body.bytes)?]),
        };
        let public_key = auth_key(body.params, header.dsn.as_deref(), &project)?;
        let product = products.resolve_compat(
            CompatFormat::Sentry,
            public_key.map(|key| sentry_key(&project, &key)).as_deref(),
            request.name.as_deref(),
            request.key.as_deref(),
        )?;
        let mut batch = RawBatch {
            product: product.index,
            sent_at: header
                .sent_at
                .as_ref()
                .and_then(crate::ingest::limits::parse_time),
            reply_id: header.event_id.clone().filter(|id| !id.is_empty()),
            ..RawBatch::default()
        };
        // Each event's item in the envelope (a transaction gives several events).
        let mut positions = Vec::new();
        for (position, item) in items.into_iter().enumerate() {
            let events = match item.kind.as_str() {
                "event" => vec![event_item(&item, limits).map(|(id, event)| {
                    if let Some(id) = id {
                        batch.reply_id.get_or_insert(id);
                    }
                    event
                })],
                "transaction" => transaction_item(&item, limits, &mut batch.reply_id),
                "span" => span_item(&item, limits),
                "session" => vec![session_item(&item, limits)],
                "sessions" => sessions_item(&item, limits),
                "client_report" => {
                    batch.client_discarded.extend(client_report(item.payload));
                    continue;
                }
                _ => continue,
            };
            for event in events {
                batch.items.push(event);
                positions.push(position);
            }
        }
        batch.positions = Some(positions);
        if batch.items.len() > limits.max_batch_events {
            return Err(IngestError::BatchTooLarge {
                count: batch.items.len(),
                limit: limits.max_batch_events,
            });
        }
        Ok(batch)
    }

    fn answer(&self, outcome: &Outcome, _content_type: Option<&str>, _params: &Params) -> Answer {
        Answer::extended(json!({ "id": outcome.reply_id }), outcome)
    }

    fn error_answer(
        &self,
        code: Code,
        message: &str,
        _content_type: Option<&str>,
    ) -> Option<Answer> {
        Some(error_answer(code, message))
    }
}

/// Relay's error body, `{"detail": ...}` (what the SDKs log), with the error code beside it.
pub fn error_answer(code: Code, message: &str) -> Answer {
    Answer::json(&json!({ "detail": message, "code": code.name() }))
}

/// The envelope's first line.
#[derive(Debug, Default, Deserialize)]
struct EnvelopeHeader {
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    dsn: Option<String>,
    #[serde(default)]
    sent_at: Option<FieldValue>,
}

/// An item's header line.
#[derive(Debug, Deserialize)]
struct ItemHeader {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    length: Option<u64>,
}

/// One item of an envelope: its type and payload, still raw.
struct Item<'a> {
    kind: String,
    payload: &'a [u8],
}

/// The header and the items of an envelope body. A body that cannot be split into items is an
/// error as a whole (nothing in it can be trusted); an item whose payload is malformed is
/// refused on its own later.
fn parse_envelope(bytes: &[u8]) -> Result<(EnvelopeHeader, Vec<Item<'_>>), IngestError> {
    let invalid = |what: String| IngestError::InvalidBody(format!("not a Sentry envelope: {what}"));
    let (line, mut rest) = split_line(bytes);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid("the body is empty".into()));
    }
    let header: EnvelopeHeader = serde_json::from_slice(line)
        .map_err(|e| invalid(format!("the envelope header is not a JSON object: {e}")))?;
    let mut items = Vec::new();
    loop {
        while let Some(tail) = rest.strip_prefix(b"\n") {
            rest = tail;
        }
        if rest.is_empty() {
            break;
        }
        let (line, tail) = split_line(rest);
        let position = items.len();
        let item: ItemHeader = serde_json::from_slice(line).map_err(|e| {
            invalid(format!(
                "the header of item {position} is not an item header: {e}"
            ))
        })?;
        let payload;
        (payload, rest) = match item.length {
            Some(length) => {
                let length = usize::try_from(length).unwrap_or(usize::MAX);
                if length > tail.len() {
                    return Err(invalid(format!(
                        "item {position} declares {length} bytes; {} follow",
                        tail.len()
                    )));
                }
                tail.split_at(length)
            }
            None => split_line(tail),
        };
        items.push(Item {
            kind: item.kind,
            payload,
        });
    }
    Ok((header, items))
}

/// The line up to the first `\n` (without it) and what follows it.
fn split_line(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|b| *b == b'\n') {
        Some(end) => (&bytes[..end], &bytes[end + 1..]),
        None => (bytes, &[]),
    }
}

/// The store endpoint's body: one event (a transaction when its `type` says so).
fn store_item(bytes: &[u8]) -> Result<Item<'_>, IngestError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(IngestError::InvalidBody(
            "the store endpoint takes one event, a JSON object".into(),
        ));
    }
    #[derive(Deserialize)]
    struct Kind {
        #[serde(default, rename = "type")]
        kind: Option<String>,
    }
    let kind: Kind =
        serde_json::from_slice(bytes).map_err(|e| IngestError::InvalidJson(e.to_string()))?;
    let kind = match kind.kind.as_deref() {
        Some("transaction") => "transaction",
        _ => "event",
    };
    Ok(Item {
        kind: kind.into(),
        payload: bytes,
    })
}

/// The DSN's public key the request authenticates with: `X-Sentry-Auth` or `Authorization:
/// Sentry ...` (`sentry_key=...`), `?sentry_key=`, or the envelope header's DSN. A DSN naming
/// another project than the path is refused.
fn auth_key(
    params: &Params,
    envelope_dsn: Option<&str>,
    project: &str,
) -> Result<Option<String>, IngestError> {
    let from_header = [AUTH_HEADER, AUTHORIZATION]
        .into_iter()
        .filter_map(|name| params.header(name))
        .find_map(|value| {
            let value = value.trim();
            let fields = value
                .strip_prefix("Sentry ")
                .or_else(|| value.strip_prefix("sentry "))?;
            fields.split(',').find_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                (key.trim() == "sentry_key").then(|| value.trim().to_string())
            })
        });
    if let Some(key) = from_header.or_else(|| params.query("sentry_key").map(str::to_string)) {
        return Ok(Some(key));
    }
    match envelope_dsn {
        None => Ok(None),
        Some(dsn) => match sentry_dsn_parts(dsn) {
            Some((dsn_project, key)) if dsn_project == project => Ok(Some(key.to_string())),
            Some((dsn_project, _)) => Err(IngestError::InvalidBody(format!(
                "the envelope's DSN is for project {dsn_project}, the URL's for project {project}"
            ))),
            None => Err(IngestError::InvalidBody(
                "the envelope header's `dsn` is not a DSN (https://PUBLIC_KEY@HOST/PROJECT_ID)"
                    .into(),
            )),
        },
    }
}

/// An item's payload as a JSON object, or why it is refused.
fn payload_object(item: &Item<'_>, limits: &DecodeLimits) -> Result<Map<String, Value>, Rejection> {
    let size = item.payload.len();
    if size > limits.max_event_bytes {
        return Err(Rejection::new(
            RejectCode::EventTooLarge,
            format!(
                "the {} item is {size} bytes; the limit is {}",
                item.kind, limits.max_event_bytes
            ),
        ));
    }
    payload_json(item)
}

fn payload_json(item: &Item<'_>) -> Result<Map<String, Value>, Rejection> {
    match serde_json::from_slice::<Value>(item.payload) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Rejection::new(
            RejectCode::InvalidEvent,
            format!("the {} item must be a JSON object", item.kind),
        )),
        Err(e) => Err(Rejection::new(
            RejectCode::InvalidEvent,
            format!("the {} item is not JSON: {e}", item.kind),
        )),
    }
}

/// Collects an event's fields.
#[derive(Default)]
struct Builder {
    fields: Vec<(String, Key, FieldValue)>,
}

impl Builder {
    fn field(&mut self, field: Field, value: FieldValue) {
        self.fields
            .push((field.name().to_string(), Key::Field(field), value));
    }

    /// `value` without surrounding white space, unless that leaves nothing.
    fn text(&mut self, field: Field, value: Option<String>) {
        if let Some(value) = value
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
        {
            self.field(field, FieldValue::Str(value));
        }
    }

    /// Sets `field`, in place of a value set before.
    fn replace(&mut self, field: Field, value: FieldValue) {
        self.fields.retain(|(_, key, _)| *key != Key::Field(field));
        self.field(field, value);
    }

    fn extra(&mut self, key: &str, value: FieldValue) {
        if !matches!(value, FieldValue::Null) {
            self.fields.push((key.to_string(), Key::Extra, value));
        }
    }

    fn finish(self) -> RawEvent {
        RawEvent {
            fields: self.fields,
            source: SOURCE,
        }
    }
}

/// `object.a.b` as text.
fn path(object: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    let (first, rest) = keys.split_first()?;
    let mut value = object.get(*first)?;
    for key in rest {
        value = value.get(*key)?;
    }
    text(value.clone())
}

/// The version part of a release (`my-app@1.2.0` → `1.2.0`; `@scope/pkg@2.0.0` → `2.0.0`).
fn release_version(release: &str) -> &str {
    match release.rfind('@') {
        Some(at) if at > 0 && at + 1 < release.len() => &release[at + 1..],
        _ => release,
    }
}

/// What every event, transaction and span of a Sentry event payload shares: when, which
/// release and environment, which platform, runtime, OS and device, whose install and user,
/// which trace, and the tags.
fn context(event: &mut Builder, payload: &Map<String, Value>) {
    if let Some(time) = payload.get("timestamp") {
        event.field(Field::Timestamp, field_value(time.clone()));
    }
    let release =
        path(payload, &["release"]).or_else(|| path(payload, &["contexts", "app", "app_version"]));
    event.text(
        Field::AppVersion,
        release.as_deref().map(release_version).map(str::to_string),
    );
    event.text(Field::ReleaseChannel, path(payload, &["environment"]));
    event.text(Field::Platform, path(payload, &["platform"]));
    let runtime = match (
        path(payload, &["contexts", "runtime", "name"]),
        path(payload, &["contexts", "runtime", "version"]),
    ) {
        (Some(name), Some(version)) => Some(format!("{name}/{version}")),
        (Some(name), None) => Some(name),
        _ => match (
            path(payload, &["sdk", "name"]),
            path(payload, &["sdk", "version"]),
        ) {
            (Some(name), Some(version)) => Some(format!("{name}/{version}")),
            (name, _) => name,
        },
    };
    event.text(Field::Runtime, runtime);
    event.text(Field::OsFamily, path(payload, &["contexts", "os", "name"]));
    event.text(
        Field::OsVersion,
        path(payload, &["contexts", "os", "version"]),
    );
    event.text(
        Field::DeviceModel,
        path(payload, &["contexts", "device", "model"]),
    );
    event.text(Field::Arch, path(payload, &["contexts", "device", "arch"]));
    let user = path(payload, &["user", "id"]);
    let install = path(payload, &["contexts", "device", "id"]).or_else(|| user.clone());
    event.text(Field::InstallId, install);
    event.text(Field::UserId, user);
    event.text(Field::Module, path(payload, &["logger"]));
    event.text(
        Field::TraceId,
        path(payload, &["contexts", "trace", "trace_id"]),
    );
    match payload.get("tags") {
        Some(Value::Object(tags)) => {
            for (key, value) in tags {
                event.extra(key, field_value(value.clone()));
            }
        }
        Some(Value::Array(pairs)) => {
            for pair in pairs {
                if let Some([Value::String(key), value]) = pair.as_array().map(Vec::as_slice) {
                    event.extra(key, field_value(value.clone()));
                }
            }
        }
        _ => {}
    }
}

/// The event id of an item's payload, as sent (32 hex digits, or a UUID).
fn event_id(payload: &Map<String, Value>) -> Option<String> {
    payload
        .get("event_id")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// An `event` item (or the store endpoint's body): an error or message event. Gives its event
/// id too, for the answer.
fn event_item(
    item: &Item<'_>,
    limits: &DecodeLimits,
) -> Result<(Option<String>, RawEvent), Rejection> {
    let payload = payload_object(item, limits)?;
    Ok((event_id(&payload), map_event(&payload)?))
}

fn map_event(payload: &Map<String, Value>) -> Result<RawEvent, Rejection> {
    let mut event = Builder::default();
    let exceptions = match payload.get("exception") {
        Some(Value::Object(exception)) => exception.get("values").and_then(Value::as_array),
        Some(Value::Array(values)) => Some(values),
        _ => None,
    };
    let exceptions: Vec<&Value> = exceptions
        .map(|values| values.iter().filter(|v| v.is_object()).collect())
        .unwrap_or_default();
    // A stack trace the SDK attached to a message (`attachStacktrace`) is no exception.
    let exceptions = if exceptions.iter().all(|e| is_synthetic(e)) {
        Vec::new()
    } else {
        exceptions
    };
    let name = if exceptions.is_empty() {
        "message"
    } else {
        "exception"
    };
    event.field(Field::Name, FieldValue::Str(name.into()));
    if let Some(id) = event_id(payload) {
        event.field(Field::Id, FieldValue::Str(id));
    }
    context(&mut event, payload);
    event.text(
        Field::SpanId,
        path(payload, &["contexts", "trace", "span_id"]),
    );
    let level = path(payload, &["level"]).unwrap_or_else(|| "error".into());
    event.field(Field::Level, FieldValue::Str(level));
    let message = path(payload, &["logentry", "formatted"])
        .or_else(|| path(payload, &["logentry", "message"]))
        .or_else(|| path(payload, &["message", "formatted"]))
        .or_else(|| path(payload, &["message", "message"]))
        .or_else(|| path(payload, &["message"]));
    event.text(Field::Message, message);
    if let Some(transaction) = path(payload, &["transaction"]) {
        event.extra("transaction", FieldValue::Str(transaction));
    }
    // The last exception is the one raised; the ones before it its causes.
    if let Some(raised) = exceptions.last() {
        event.text(
            Field::ErrorDomain,
            raised.get("type").cloned().and_then(text),
        );
        event.text(
            Field::ErrorMessage,
            raised.get("value").cloned().and_then(text),
        );
        event.text(Field::ErrorCode, grouping_code(raised));
        let stack: Vec<String> = exceptions.iter().rev().map(|e| exception_text(e)).collect();
        event.text(Field::ErrorStack, Some(stack.join("\n")));
    }
    Ok(event.finish())
}

/// An exception value that only carries a stack for a message: marked `synthetic`, or without
/// a type.
fn is_synthetic(exception: &Value) -> bool {
    let marked = exception
        .get("mechanism")
        .and_then(|m| m.get("synthetic"))
        .and_then(Value::as_bool)
        == Some(true);
    marked || exception.get("type").and_then(Value::as_str).is_none()
}

/// Where an exception happened, as Sentry groups it: the functions of its in-app frames (of all
/// frames when the SDK marked none), innermost first, without file names, line numbers or
/// anything else that changes between versions. `None` without frames.
fn grouping_code(exception: &Value) -> Option<String> {
    let frames = exception
        .get("stacktrace")
        .and_then(|s| s.get("frames"))
        .and_then(Value::as_array)?;
    let in_app = |frame: &&Value| frame.get("in_app").and_then(Value::as_bool) == Some(true);
    let any_in_app = frames.iter().any(|f| in_app(&f));
    let functions: Vec<&str> = frames
        .iter()
        .rev()
        .filter(|frame| !any_in_app || in_app(frame))
        .filter_map(|frame| frame.get("function").and_then(Value::as_str))
        .filter(|function| !function.is_empty() && *function != "?")
        .take(MAX_GROUPING_FRAMES)
        .collect();
    (!functions.is_empty()).then(|| functions.join(" < "))
}

/// A `transaction` item: the transaction as an event and each of its spans as one, each with
/// its duration (refused whole when it carries more spans than a request may give events).
fn transaction_item(
    item: &Item<'_>,
    limits: &DecodeLimits,
    reply_id: &mut Option<String>,
) -> Vec<Result<RawEvent, Rejection>> {
    let payload = match payload_json(item) {
        Ok(payload) => payload,
        Err(rejection) => return vec![Err(rejection)],
    };
    if let Some(id) = event_id(&payload) {
        reply_id.get_or_insert(id);
    }
    let spans: Vec<&Map<String, Value>> = payload
        .get("spans")
        .and_then(Value::as_array)
        .map(|spans| spans.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default();
    if spans.len() >= limits.max_batch_events {
        return vec![Err(Rejection::new(
            RejectCode::InvalidEvent,
            format!(
                "the transaction has {} spans; a request may give at most {} events",
                spans.len(),
                limits.max_batch_events
            ),
        ))];
    }
    let trace = payload
        .get("contexts")
        .and_then(|c| c.get("trace"))
        .and_then(Value::as_object);
    let mut events = Vec::with_capacity(spans.len() + 1);
    let mut transaction = Builder::default();
    let name = path(&payload, &["transaction"]).unwrap_or_else(|| "transaction".into());
    transaction.field(Field::Name, FieldValue::Str(name));
    if let Some(id) = event_id(&payload) {
        transaction.field(Field::Id, FieldValue::Str(id));
    }
    context(&mut transaction, &payload);
    if let Some(trace) = trace {
        span_fields(&mut transaction, trace, &payload);
    }
    events.push(Ok(transaction.finish()));
    for span in spans {
        let size = serde_json::to_string(span).map(|s| s.len()).unwrap_or(0);
        if size > limits.max_event_bytes {
            events.push(Err(Rejection::new(
                RejectCode::EventTooLarge,
                format!(
                    "a span of the transaction is {size} bytes; the limit is {}",
                    limits.max_event_bytes
                ),
            )));
            continue;
        }
        let mut event = Builder::default();
        let op = path(span, &["op"]).unwrap_or_else(|| "span".into());
        event.field(Field::Name, FieldValue::Str(op));
        // A span is identified by its trace and span ids, so a resend deduplicates.
        if let (Some(trace_id), Some(span_id)) = (
            path(span, &["trace_id"])
                .or_else(|| trace.and_then(|t| text(t.get("trace_id")?.clone()))),
            path(span, &["span_id"]),
        ) {
            event.field(
                Field::Id,
                FieldValue::Str(derived_id(&["span", &trace_id, &span_id])),
            );
        }
        context(&mut event, &payload);
        span_fields(&mut event, span, span);
        events.push(Ok(event.finish()));
    }
    events
}

/// A `span` item: spans sent one by one rather than in a transaction (@sentry/node 10+ streams
/// them by default): version 2, `{"items": [...]}` with typed attributes, or one span. Each
/// becomes an event as a transaction's span does; a segment span (`is_segment`), the root of its
/// trace's segment, is named as its transaction.
fn span_item(item: &Item<'_>, limits: &DecodeLimits) -> Vec<Result<RawEvent, Rejection>> {
    let payload = match payload_json(item) {
        Ok(payload) => payload,
        Err(rejection) => return vec![Err(rejection)],
    };
    let spans: Vec<&Map<String, Value>> = match payload.get("items") {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_object).collect(),
        _ => vec![&payload],
    };
    if spans.len() >= limits.max_batch_events {
        return vec![Err(Rejection::new(
            RejectCode::InvalidEvent,
            format!(
                "the item has {} spans; a request may give at most {} events",
                spans.len(),
                limits.max_batch_events
            ),
        ))];
    }
    spans
        .into_iter()
        .map(|span| {
            let size = serde_json::to_string(span).map(|s| s.len()).unwrap_or(0);
            if size > limits.max_event_bytes {
                return Err(Rejection::new(
                    RejectCode::EventTooLarge,
                    format!(
                        "a span is {size} bytes; the limit is {}",
                        limits.max_event_bytes
                    ),
                ));
            }
            Ok(streamed_span(span))
        })
        .collect()
}

/// One streamed span: its attributes (`{"type", "value"}` or plain) read as a transaction's
/// payload and the span as a transaction's span, so both map alike.
fn streamed_span(span: &Map<String, Value>) -> RawEvent {
    let attribute = |key: &str| {
        let value = span.get("attributes")?.get(key)?;
        text(value.get("value").unwrap_or(value).clone())
    };
    let segment = span.get("is_segment").and_then(Value::as_bool) == Some(true);
    let name = path(span, &["name"]).or_else(|| path(span, &["description"]));
    let op = attribute("sentry.op").or_else(|| path(span, &["op"]));
    let sdk = attribute("sentry.sdk.name");
    // `sentry.javascript.node` → `node`, `sentry.python` → `python`.
    let platform = sdk
        .as_deref()
        .and_then(|sdk| sdk.rsplit('.').next())
        .map(str::to_string);
    let context_payload = json!({
        "release": attribute("sentry.release"),
        "environment": attribute("sentry.environment"),
        "platform": platform,
        "user": {"id": attribute("user.id")},
        "sdk": {"name": sdk, "version": attribute("sentry.sdk.version")},
    });
    let as_span = json!({
        "trace_id": span.get("trace_id"),
        "span_id": span.get("span_id"),
        "parent_span_id": span.get("parent_span_id"),
        "op": op,
        "status": span.get("status"),
        "description": if segment { None } else { name.clone() },
        "start_timestamp": span.get("start_timestamp"),
        "timestamp": span.get("end_timestamp").or_else(|| span.get("timestamp")),
    });
    let (Value::Object(context_payload), Value::Object(as_span)) = (context_payload, as_span)
    else {
        unreachable!("json! of an object is an object")
    };
    let mut event = Builder::default();
    let event_name = if segment { name.or(op) } else { op.or(name) };
    event.field(
        Field::Name,
        FieldValue::Str(event_name.unwrap_or_else(|| "span".into())),
    );
    if let (Some(trace_id), Some(span_id)) =
        (path(&as_span, &["trace_id"]), path(&as_span, &["span_id"]))
    {
        event.field(
            Field::Id,
            FieldValue::Str(derived_id(&["span", &trace_id, &span_id])),
        );
    }
    context(&mut event, &context_payload);
    span_fields(&mut event, &as_span, &as_span);
    event.finish()
}

/// The trace ids, `op`, `status`, `description`, start and duration of a transaction or span
/// (`times`: where its `start_timestamp` and `timestamp` are).
fn span_fields(event: &mut Builder, span: &Map<String, Value>, times: &Map<String, Value>) {
    if let Some(start) = times.get("start_timestamp") {
        // Its start, as an OTLP span's, rather than the end `context` took.
        event.replace(Field::Timestamp, field_value(start.clone()));
    }
    if let Some(trace_id) = path(span, &["trace_id"]) {
        event.replace(Field::TraceId, FieldValue::Str(trace_id));
    }
    event.text(Field::SpanId, path(span, &["span_id"]));
    event.text(Field::ParentSpanId, path(span, &["parent_span_id"]));
    for key in ["op", "status", "description"] {
        if let Some(value) = path(span, &[key]) {
            event.extra(key, FieldValue::Str(value));
        }
    }
    let time = |key: &str| {
        times
            .get(key)
            .map(|v| field_value(v.clone()))
            .as_ref()
            .and_then(seconds)
    };
    if let (Some(start), Some(end)) = (time("start_timestamp"), time("timestamp")) {
        if end >= start {
            event.extra("duration_ms", FieldValue::Num((end - start) * 1000.0));
        }
    }
    if path(span, &["status"]).is_some_and(|s| s != "ok") {
        event.field(Field::Level, FieldValue::Str("error".into()));
    }
}

/// A Sentry time (seconds since the epoch, or RFC 3339) as fractional seconds.
fn seconds(value: &FieldValue) -> Option<f64> {
    match value {
        FieldValue::Num(n) if n.is_finite() => Some(*n),
        FieldValue::Str(s) => {
            let time =
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                    .ok()?;
            Some(time.unix_timestamp_nanos() as f64 / 1e9)
        }
        _ => None,
    }
}

/// The event id of something Sentry gives no event id of its own (a span: its trace and span
/// ids; a session update: its session, sequence number and status), so a resend deduplicates:
/// a UUID (v8) from `parts`.
fn derived_id(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"sentry");
    for part in parts {
        hasher.update([0u8]);
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::new_v8(bytes).to_string()
}

/// The release, environment and client of a session update or aggregate (`attrs`).
fn session_attrs(event: &mut Builder, payload: &Map<String, Value>) {
    event.field(Field::Name, FieldValue::Str("session".into()));
    let release = path(payload, &["attrs", "release"]);
    event.text(
        Field::AppVersion,
        release.as_deref().map(release_version).map(str::to_string),
    );
    event.text(
        Field::ReleaseChannel,
        path(payload, &["attrs", "environment"]),
    );
}

/// A `session` item: one update of one session. Its first update (`init`) counts the session;
/// a `crashed` or `abnormal` status counts it as such; `errors` > 0 marks it errored.
fn session_item(item: &Item<'_>, limits: &DecodeLimits) -> Result<RawEvent, Rejection> {
    let payload = payload_object(item, limits)?;
    let invalid = |message: &str| Rejection::new(RejectCode::InvalidEvent, message.to_string());
    let sid = path(&payload, &["sid"]).ok_or_else(|| invalid("the session has no `sid`"))?;
    if path(&payload, &["attrs", "release"]).is_none() {
        return Err(invalid(
            "the session has no `attrs.release`: release health is per release",
        ));
    }
    let mut event = Builder::default();
    session_attrs(&mut event, &payload);
    let sequence = path(&payload, &["seq"]).unwrap_or_default();
    let status = path(&payload, &["status"]).unwrap_or_else(|| "ok".into());
    // One event per update: the session id and its update's sequence number.
    event.field(
        Field::Id,
        FieldValue::Str(derived_id(&["session", &sid, &sequence, &status])),
    );
    event.field(Field::SessionId, FieldValue::Str(sid));
    event.text(Field::InstallId, path(&payload, &["did"]));
    let time = payload
        .get("timestamp")
        .or_else(|| payload.get("started"))
        .cloned();
    if let Some(time) = time {
        event.field(Field::Timestamp, field_value(time));
    }
    let init = payload.get("init").and_then(Value::as_bool) == Some(true);
    let errors = payload.get("errors").and_then(Value::as_f64).unwrap_or(0.0);
    let count = |yes: bool| FieldValue::Num(if yes { 1.0 } else { 0.0 });
    event.extra("status", FieldValue::Str(status.clone()));
    event.extra("sessions", count(init));
    event.extra("crashed", count(status == "crashed"));
    event.extra("abnormal", count(status == "abnormal"));
    event.extra("errored", count(errors > 0.0 || status == "errored"));
    if let Some(duration) = payload.get("duration").and_then(Value::as_f64) {
        event.extra("duration_ms", FieldValue::Num(duration * 1000.0));
    }
    event.field(Field::Level, FieldValue::Str(session_level(&status).into()));
    Ok(event.finish())
}

fn session_level(status: &str) -> &'static str {
    match status {
        "crashed" => "fatal",
        "abnormal" => "error",
        _ => "info",
    }
}

/// A `sessions` item: sessions counted per minute (`aggregates`, server SDKs in request mode),
/// one event per bucket with its counts.
fn sessions_item(item: &Item<'_>, limits: &DecodeLimits) -> Vec<Result<RawEvent, Rejection>> {
    let payload = match payload_object(item, limits) {
        Ok(payload) => payload,
        Err(rejection) => return vec![Err(rejection)],
    };
    let invalid = |message: &str| {
        vec![Err(Rejection::new(
            RejectCode::InvalidEvent,
            message.to_string(),
        ))]
    };
    if path(&payload, &["attrs", "release"]).is_none() {
        return invalid("the sessions have no `attrs.release`: release health is per release");
    }
    let Some(buckets) = payload.get("aggregates").and_then(Value::as_array) else {
        return invalid("the sessions item has no `aggregates` array");
    };
    buckets
        .iter()
        .map(|bucket| {
            let bucket = bucket.as_object().ok_or_else(|| {
                Rejection::new(RejectCode::InvalidEvent, "an aggregate must be an object")
            })?;
            let mut event = Builder::default();
            session_attrs(&mut event, &payload);
            if let Some(started) = bucket.get("started") {
                event.field(Field::Timestamp, field_value(started.clone()));
            }
            event.text(Field::InstallId, path(bucket, &["did"]));
            let get = |key: &str| {
                bucket
                    .get(key)
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
                    .max(0.0)
            };
            let (exited, errored, abnormal, crashed) = (
                get("exited"),
                get("errored"),
                get("abnormal"),
                get("crashed"),
            );
            event.extra("status", FieldValue::Str("aggregate".into()));
            event.extra(
                "sessions",
                FieldValue::Num(exited + errored + abnormal + crashed),
            );
            event.extra("crashed", FieldValue::Num(crashed));
            event.extra("abnormal", FieldValue::Num(abnormal));
            event.extra("errored", FieldValue::Num(errored + abnormal + crashed));
            let level = if crashed > 0.0 { "fatal" } else { "info" };
            event.field(Field::Level, FieldValue::Str(level.into()));
            Ok(event.finish())
        })
        .collect()
}

/// A `client_report` item: what the SDK dropped before sending, by reason and category
/// (unknown names counted as `other`; a malformed report counts nothing).
fn client_report(payload: &[u8]) -> Vec<ClientDiscarded> {
    #[derive(Deserialize)]
    struct Report {
        #[serde(default)]
        discarded_events: Vec<Discarded>,
    }
    #[derive(Deserialize)]
    struct Discarded {
        reason: String,
        category: String,
        quantity: u64,
    }
    let known = |list: &[&str], name: &str| {
        if list.contains(&name) {
            name.to_string()
        } else {
            "other".to_string()
        }
    };
    serde_json::from_slice::<Report>(payload)
        .map(|report| {
            report
                .discarded_events
                .into_iter()
                .map(|d| ClientDiscarded {
                    reason: known(DISCARD_REASONS, &d.reason),
                    category: known(DISCARD_CATEGORIES, &d.category),
                    quantity: d.quantity,
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DecodeLimits = super::super::TEST_LIMITS;

    fn get<'a>(event: &'a RawEvent, name: &str) -> Option<&'a FieldValue> {
        event
            .fields
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, v)| v)
    }

    fn s(text: &str) -> FieldValue {
        FieldValue::Str(text.into())
    }

    fn exception_event(version: &str, line: u32) -> Map<String, Value> {
        let value = json!({
            "event_id": "fc6d8c0c43fc4630ad850ee518f1b9d0",
            "timestamp": 1795219200.5,
            "level": "error",
            "platform": "python",
            "release": format!("shop@{version}"),
            "environment": "production",
            "sdk": {"name": "sentry.python", "version": "2.75.0"},
            "contexts": {"runtime": {"name": "CPython", "version": "3.12.3"},
                         "os": {"name": "Linux", "version": "6.1"},
                         "trace": {"trace_id": "5b8efff798038103d269b633813fc60c", "span_id": "eee19b7ec3c1b174"}},
            "user": {"id": "user-7"},
            "tags": {"plan": "pro"},
            "exception": {"values": [
                {"type": "KeyError", "value": "'k'"},
                {"type": "ValueError", "value": format!("bad input {line}"), "stacktrace": {"frames": [
                    {"function": "main", "filename": "app.py", "lineno": 3, "in_app": true},
                    {"function": "load", "filename": "lib.py", "lineno": 90, "in_app": false},
                    {"function": "parse", "filename": "app.py", "lineno": line, "in_app": true}]}}]}
        });
        value.as_object().unwrap().clone()
    }

    #[test]
    fn exceptions_become_the_error_grouped_by_type_and_in_app_functions() {
        let event = map_event(&exception_event("1.0.0", 10)).unwrap();
        assert_eq!(get(&event, "name"), Some(&s("exception")));
        assert_eq!(get(&event, "error_domain"), Some(&s("ValueError")));
        assert_eq!(get(&event, "error_message"), Some(&s("bad input 10")));
        assert_eq!(get(&event, "error_code"), Some(&s("parse < main")));
        assert_eq!(get(&event, "app_version"), Some(&s("1.0.0")));
        assert_eq!(get(&event, "release_channel"), Some(&s("production")));
        assert_eq!(get(&event, "runtime"), Some(&s("CPython/3.12.3")));
        assert_eq!(get(&event, "install_id"), Some(&s("user-7")));
        assert_eq!(get(&event, "plan"), Some(&s("pro")));
        let stack = get(&event, "error_stack")
            .unwrap()
            .clone()
            .into_text()
            .unwrap();
        assert!(
            stack.starts_with("ValueError: bad input 10\n  at main (app.py:3)"),
            "{stack}"
        );
        assert!(stack.ends_with("KeyError: 'k'"), "{stack}");
        // Another version, another line, another message: the same code.
        let other = map_event(&exception_event("1.1.0", 12)).unwrap();
        assert_eq!(get(&other, "error_code"), get(&event, "error_code"));
    }

    #[test]
    fn message_events_carry_their_level() {
        // With the stack @sentry/node attaches to messages: still a message.
        let payload = json!({"message": {"formatted": "disk almost full"}, "level": "warning",
            "exception": {"values": [{"value": "disk almost full", "stacktrace": {"frames": [
                {"function": "release", "in_app": true}]}}]}});
        let event = map_event(payload.as_object().unwrap()).unwrap();
        assert_eq!(get(&event, "name"), Some(&s("message")));
        assert_eq!(get(&event, "error_stack"), None);
        assert_eq!(get(&event, "message"), Some(&s("disk almost full")));
        assert_eq!(get(&event, "level"), Some(&s("warning")));
        assert_eq!(get(&event, "error_code"), None);
    }

    fn envelope(items: &[(&str, &str)]) -> Vec<u8> {
        let mut body =
            br#"{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc","dsn":"https://abc@h.example/42"}"#
                .to_vec();
        for (kind, payload) in items {
            body.extend_from_slice(
                format!("\n{{\"type\":\"{kind}\",\"length\":{}}}\n", payload.len()).as_bytes(),
            );
            body.extend_from_slice(payload.as_bytes());
        }
        body.push(b'\n');
        body
    }

    #[test]
    fn envelopes_split_into_items() {
        let body = envelope(&[("event", "{\"a\":\n1}"), ("attachment", "\n\nbinary")]);
        let (header, items) = parse_envelope(&body).unwrap();
        assert_eq!(header.dsn.as_deref(), Some("https://abc@h.example/42"));
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].payload, b"{\"a\":\n1}");
        assert_eq!(items[1].payload, b"\n\nbinary");
        // Without lengths: up to the end of the line.
        let (_, items) =
            parse_envelope(b"{}\n{\"type\":\"session\"}\n{\"sid\":\"x\"}\n{\"type\":\"x\"}\n{}")
                .unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].payload, b"{\"sid\":\"x\"}");
        for bad in [
            &b""[..],
            b"[1]",
            b"{}\nnot a header",
            b"{}\n{\"type\":\"event\",\"length\":50}\n{}",
        ] {
            let error = parse_envelope(bad).err().unwrap();
            assert!(matches!(error, IngestError::InvalidBody(_)), "{error}");
        }
    }

    #[test]
    fn auth_from_header_query_or_dsn() {
        let params = |headers: Vec<(&'static str, String)>, query: Vec<(String, String)>| Params {
            query,
            path: Vec::new(),
            headers,
        };
        let auth = "Sentry sentry_key=abc, sentry_version=7, sentry_client=sentry.python/2.75.0";
        let key = auth_key(
            &params(vec![(AUTH_HEADER, auth.into())], vec![]),
            None,
            "42",
        );
        assert_eq!(key.unwrap().as_deref(), Some("abc"));
        let query = vec![("sentry_key".to_string(), "def".to_string())];
        assert_eq!(
            auth_key(&params(vec![], query), None, "42")
                .unwrap()
                .as_deref(),
            Some("def")
        );
        let dsn = Some("https://ghi@telemetry.example/42");
        assert_eq!(
            auth_key(&params(vec![], vec![]), dsn, "42")
                .unwrap()
                .as_deref(),
            Some("ghi")
        );
        assert!(auth_key(&params(vec![], vec![]), dsn, "7").is_err());
        assert_eq!(auth_key(&params(vec![], vec![]), None, "42").unwrap(), None);
    }

    #[test]
    fn transactions_give_spans_with_durations() {
        let payload = r#"{"type":"transaction","event_id":"0a1b2c3d4e5f40718293a4b5c6d7e8f9",
            "transaction":"checkout","start_timestamp":1795219200.0,"timestamp":1795219200.25,
            "release":"shop@2.0.0","contexts":{"trace":{"trace_id":"5b8efff798038103d269b633813fc60c",
            "span_id":"aaaaaaaaaaaaaaaa","op":"task","status":"ok"}},
            "spans":[{"span_id":"bbbbbbbbbbbbbbbb","parent_span_id":"aaaaaaaaaaaaaaaa",
              "op":"db.query","description":"load cart","start_timestamp":1795219200.05,
              "timestamp":"2026-11-21T00:00:00.15Z","status":"internal_error"}]}"#;
        let item = Item {
            kind: "transaction".into(),
            payload: payload.as_bytes(),
        };
        let mut reply = None;
        let events: Vec<RawEvent> = transaction_item(&item, &LIMITS, &mut reply)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(reply.as_deref(), Some("0a1b2c3d4e5f40718293a4b5c6d7e8f9"));
        assert_eq!(events.len(), 2);
        assert_eq!(get(&events[0], "name"), Some(&s("checkout")));
        assert_eq!(
            get(&events[0], "duration_ms"),
            Some(&FieldValue::Num(250.0))
        );
        assert_eq!(get(&events[0], "span_id"), Some(&s("aaaaaaaaaaaaaaaa")));
        let span = &events[1];
        assert_eq!(get(span, "name"), Some(&s("db.query")));
        assert_eq!(get(span, "description"), Some(&s("load cart")));
        assert_eq!(get(span, "parent_span_id"), Some(&s("aaaaaaaaaaaaaaaa")));
        assert_eq!(
            get(span, "trace_id"),
            Some(&s("5b8efff798038103d269b633813fc60c"))
        );
        assert_eq!(get(span, "level"), Some(&s("error")));
        assert_eq!(
            get(span, "timestamp"),
            Some(&FieldValue::Num(1795219200.05))
        );
        let FieldValue::Num(ms) = get(span, "duration_ms").unwrap() else {
            panic!("a duration")
        };
        assert!((ms - 100.0).abs() < 0.01, "{ms}");
    }

    #[test]
    fn streamed_spans_map_as_a_transactions_spans() {
        let payload = r#"{"version":2,"items":[
            {"trace_id":"5b8efff798038103d269b633813fc60c","span_id":"aaaaaaaaaaaaaaaa","name":"checkout",
             "start_timestamp":1795219200.0,"end_timestamp":1795219200.25,"is_segment":true,"status":"ok",
             "attributes":{"sentry.op":{"type":"string","value":"task"},
               "sentry.release":{"type":"string","value":"shop@1.0.0"},
               "sentry.sdk.name":{"type":"string","value":"sentry.javascript.node"},
               "user.id":{"type":"string","value":"u-1"}}},
            {"trace_id":"5b8efff798038103d269b633813fc60c","span_id":"bbbbbbbbbbbbbbbb",
             "parent_span_id":"aaaaaaaaaaaaaaaa","name":"load cart","start_timestamp":1795219200.0,
             "end_timestamp":1795219200.1,"is_segment":false,"status":"error",
             "attributes":{"sentry.op":{"type":"string","value":"db.query"}}}]}"#;
        let item = Item {
            kind: "span".into(),
            payload: payload.as_bytes(),
        };
        let events: Vec<RawEvent> = span_item(&item, &LIMITS)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let (segment, child) = (&events[0], &events[1]);
        assert_eq!(get(segment, "name"), Some(&s("checkout")));
        assert_eq!(get(segment, "app_version"), Some(&s("1.0.0")));
        assert_eq!(get(segment, "platform"), Some(&s("node")));
        assert_eq!(get(segment, "user_id"), Some(&s("u-1")));
        assert_eq!(get(segment, "duration_ms"), Some(&FieldValue::Num(250.0)));
        assert_eq!(get(child, "name"), Some(&s("db.query")));
        assert_eq!(get(child, "description"), Some(&s("load cart")));
        assert_eq!(get(child, "parent_span_id"), Some(&s("aaaaaaaaaaaaaaaa")));
        assert_eq!(get(child, "level"), Some(&s("error")));
    }

    #[test]
    fn sessions_count_for_release_health() {
        let item = |kind: &str, payload: &'static str| Item {
            kind: kind.into(),
            payload: payload.as_bytes(),
        };
        let update = session_item(
            &item(
                "session",
                r#"{"sid":"s1","did":"u1","init":true,"status":"crashed","errors":1,"seq":0,
                    "started":"2026-11-20T10:00:00Z","attrs":{"release":"shop@1.0.0"}}"#,
            ),
            &LIMITS,
        )
        .unwrap();
        assert_eq!(get(&update, "app_version"), Some(&s("1.0.0")));
        assert_eq!(get(&update, "sessions"), Some(&FieldValue::Num(1.0)));
        assert_eq!(get(&update, "crashed"), Some(&FieldValue::Num(1.0)));
        assert_eq!(get(&update, "install_id"), Some(&s("u1")));
        let buckets = sessions_item(
            &item(
                "sessions",
                r#"{"attrs":{"release":"2.0"},"aggregates":[{"started":"2026-11-20T10:00:00Z","exited":3,"crashed":1}, 5]}"#,
            ),
            &LIMITS,
        );
        let bucket = buckets[0].as_ref().unwrap();
        assert_eq!(get(bucket, "sessions"), Some(&FieldValue::Num(4.0)));
        assert_eq!(get(bucket, "crashed"), Some(&FieldValue::Num(1.0)));
        assert!(buckets[1].is_err());
        let refused = session_item(&item("session", r#"{"sid":"s"}"#), &LIMITS).unwrap_err();
        assert!(refused.message.contains("release"), "{}", refused.message);
    }

    #[test]
    fn deep_json_is_refused_per_item() {
        let deep = format!("{{\"tags\":{}1{}}}", "[".repeat(500), "]".repeat(500));
        let item = Item {
            kind: "event".into(),
            payload: deep.as_bytes(),
        };
        let refused = event_item(&item, &LIMITS).unwrap_err();
        assert!(refused.message.contains("recursion"), "{}", refused.message);
        let header = format!("{{\"sent_at\":{}1{}}}", "[".repeat(500), "]".repeat(500));
        // The header's values are read as field values, whose arrays are skipped, not recursed.
        let (header, _) = parse_envelope(header.as_bytes()).unwrap();
        assert_eq!(header.sent_at, Some(FieldValue::List(1)));
    }

    #[test]
    fn client_reports_are_bounded_to_known_names() {
        let reports = client_report(
            br#"{"timestamp":1,"discarded_events":[{"reason":"queue_overflow","category":"error","quantity":3},
                {"reason":"made_up","category":"x","quantity":1}]}"#,
        );
        assert_eq!(reports[0].reason, "queue_overflow");
        assert_eq!(reports[0].quantity, 3);
        assert_eq!(
            (reports[1].reason.as_str(), reports[1].category.as_str()),
            ("other", "other")
        );
        assert!(client_report(b"nope").is_empty());
    }
}
