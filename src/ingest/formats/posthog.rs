//! PostHog's capture API, as the official SDKs (posthog-js, posthog-python, posthog-node, ...)
//! send to it, so they work unmodified with their host pointed at telemetryd; and the answer
//! to their feature-flag requests, built from the collection policy of the client.
//!
//! Bodies: an array of events, `{"api_key", "batch": [...], "sent_at"}` or one event; JSON as
//! sent, gzip (by `Content-Encoding`, the gzip magic bytes or `?compression=gzip-js`), base64
//! (`?compression=base64` or a body that is not JSON), or a form with the JSON in `data=`. The
//! legacy `lz64` is refused as an unsupported encoding: lz-string decompression (the `lz-str`
//! crate) has no bound on its output, which grows with the square of a hostile input. The project token (`api_key`, `token`,
//! or the event's `$token` or `properties.token`) selects the product (`[products.compat]
//! posthog_tokens`).
//!
//! Mapping (also in the README): `event` → name, `uuid` → id, `timestamp` (or now − `offset`)
//! → timestamp; `$device_id`, else `distinct_id` → install id; the `distinct_id` of an identified
//! person → user id; `$session_id` → session id; `$lib` → platform (`posthog-python` →
//! `python`), `$lib`/`$lib_version` → runtime, `$os`, `$os_version`, `$app_version`,
//! `$device_model` → their fields; `$exception_list` (or the older `$exception_type` and
//! `$exception_message`) → the error (type, value, stack frames as text) with
//! `$exception_level` as level; other properties → dimensions and metrics through the schema;
//! PostHog's own `$` properties are left out but for those in [`KEPT_PROPERTIES`]. Person and
//! group updates (`$identify`, `$set`, `$create_alias`, `$groupidentify`, `/engage`) are
//! answered as taken and not stored: telemetryd keeps no person profiles.
//!
//! Answers: `{"status": 1}` with the native answer's counts and rejections beside it, nothing
//! (`204`) for `?beacon=1`; errors as PostHog's API errors, `{"type", "code", "detail",
//! "attr"}` (the SDKs read `detail`).

use std::borrow::Cow;

use base64::Engine;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::{Answer, Body, DecodeLimits, Format, Key, Params, ProductRequest, RawBatch, RawEvent};
use crate::config::CompatFormat;
use crate::error::{Code, RejectCode, Rejection};
use crate::ingest::decode::{gunzip, FieldValue};
use crate::ingest::limits::parse_time;
use crate::ingest::{IngestError, Outcome};
use crate::model::{Field, Source};
use crate::policies::{MergedConfig, Policy};
use crate::products::{Product, Products};

pub struct PostHog;

/// The PostHog capture endpoints (`/i/v0/e`, `/e`, `/batch`, `/capture`, `/track`, `/engage`).
pub static POSTHOG: PostHog = PostHog;

const SOURCE: Source = Source::named("posthog");

/// Event names that update a person or group rather than record something: answered, not
/// stored.
const PERSON_EVENTS: &[&str] = &[
    "$identify",
    "$create_alias",
    "$merge_dangerously",
    "$groupidentify",
    "$set",
];

/// The keys of a person update as `/engage` (and older SDKs) send it, without an event name.
const PERSON_UPDATE_KEYS: &[&str] = &[
    "$set",
    "$set_once",
    "$unset",
    "$add",
    "$append",
    "$union",
    "$remove",
    "$delete",
];

/// Properties that fill event fields.
const FIELD_PROPERTIES: &[(&str, Field)] = &[
    ("$session_id", Field::SessionId),
    ("$os", Field::OsFamily),
    ("$os_version", Field::OsVersion),
    ("$app_version", Field::AppVersion),
    ("$device_model", Field::DeviceModel),
];

/// PostHog's own properties kept as dimensions (under their name without `$`); the others
/// (person updates, feature-flag bookkeeping, URLs with their query strings, ...) are left out.
pub const KEPT_PROPERTIES: &[&str] = &[
    "$app_build",
    "$app_name",
    "$browser",
    "$browser_version",
    "$device_type",
    "$host",
    "$pathname",
    "$referring_domain",
    "$screen_height",
    "$screen_width",
    "$viewport_height",
    "$viewport_width",
    "$feature_flag",
    "$feature_flag_response",
];

/// At most this many frames of one exception are kept in the stack text.
const MAX_FRAMES: usize = 200;

/// A request body as the SDKs send it: a batch envelope, or one event (whose own keys are read
/// as the event), with the token and send time either may carry.
#[derive(Debug, Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    batch: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    sent_at: Option<FieldValue>,
}

/// One event (or person update) of a capture request.
#[derive(Debug, Deserialize)]
struct Capture {
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    distinct_id: Option<Value>,
    #[serde(default, rename = "$distinct_id")]
    engage_distinct_id: Option<Value>,
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default)]
    timestamp: Option<FieldValue>,
    /// Milliseconds between the event and its sending (posthog-js without `timestamp`).
    #[serde(default)]
    offset: Option<f64>,
    #[serde(default)]
    properties: Map<String, Value>,
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "$token")]
    engage_token: Option<String>,
    /// Every other key, to tell a person update (`$set`, ...) from an event.
    #[serde(flatten)]
    rest: Map<String, Value>,
}

impl Capture {
    fn token(&self) -> Option<&str> {
        self.api_key
            .as_deref()
            .or(self.token.as_deref())
            .or(self.engage_token.as_deref())
            .or_else(|| self.properties.get("token").and_then(Value::as_str))
    }

    /// `$identify`, `$set`, an `/engage` update, ...: nothing to store.
    fn is_person_update(&self) -> bool {
        match &self.event {
            Some(name) => PERSON_EVENTS.contains(&name.as_str()),
            None => PERSON_UPDATE_KEYS
                .iter()
                .any(|k| self.rest.contains_key(*k)),
        }
    }
}

impl Format for PostHog {
    fn name(&self) -> &'static str {
        "posthog"
    }

    /// The SDKs send JSON, `text/plain` (posthog-js's compressed bodies), forms and
    /// octet-streams; the body tells what it is.
    fn check_content_type(&self, _content_type: Option<&str>) -> Result<(), IngestError> {
        Ok(())
    }

    fn decode(
        &self,
        body: Body<'_>,
        products: &Products,
        request: &ProductRequest,
        limits: &DecodeLimits,
    ) -> Result<RawBatch, IngestError> {
        let json = unpack(body.bytes, body.content_type, body.params, limits)?;
        let text = std::str::from_utf8(&json)
            .map_err(|e| IngestError::InvalidEncoding(format!("the body is not UTF-8: {e}")))?;
        let (envelope, events) = split(text)?;
        if events.len() > limits.max_batch_events {
            return Err(IngestError::BatchTooLarge {
                count: events.len(),
                limit: limits.max_batch_events,
            });
        }
        let captures: Vec<Result<Capture, Rejection>> = events
            .iter()
            .map(|raw| parse_capture(raw, limits))
            .collect();
        let token = envelope
            .api_key
            .as_deref()
            .or(envelope.token.as_deref())
            .or_else(|| captures.iter().flatten().find_map(Capture::token))
            .map(str::to_string);
        let token = token.as_deref();
        let product = resolve(products, request, token)?;
        let mut items = Vec::with_capacity(captures.len());
        let mut positions = Vec::with_capacity(captures.len());
        for (position, capture) in captures.into_iter().enumerate() {
            let item = match capture {
                Ok(capture) if capture.is_person_update() => continue,
                Ok(capture) => check_token(&capture, token).map(|_| map(capture)),
                Err(rejection) => Err(rejection),
            };
            items.push(item);
            positions.push(position);
        }
        Ok(RawBatch {
            product: product.index,
            sent_at: envelope.sent_at.as_ref().and_then(parse_time),
            items,
            positions: Some(positions),
            ..RawBatch::default()
        })
    }

    fn answer(&self, outcome: &Outcome, _content_type: Option<&str>, params: &Params) -> Answer {
        if params.query("beacon") == Some("1") {
            return Answer::none();
        }
        Answer::extended(json!({ "status": 1 }), outcome)
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

/// The product the token selects (`[products.compat] posthog_tokens`), else the one the request
/// names (`?product=`, `X-Telemetry-Key`, the only product).
fn resolve<'p>(
    products: &'p Products,
    request: &ProductRequest,
    token: Option<&str>,
) -> Result<&'p Product, IngestError> {
    Ok(products.resolve_compat(
        CompatFormat::PostHog,
        token,
        request.name.as_deref(),
        request.key.as_deref(),
    )?)
}

/// An event carrying another project's token than its batch is refused on its own.
fn check_token(capture: &Capture, batch_token: Option<&str>) -> Result<(), Rejection> {
    match (capture.token(), batch_token) {
        (Some(own), Some(batch)) if own != batch => Err(Rejection::new(
            RejectCode::InvalidEvent,
            "the event carries another project token than its batch",
        )),
        _ => Ok(()),
    }
}

/// PostHog's API error body: `{"type", "code", "detail", "attr"}`.
pub fn error_answer(code: Code, message: &str) -> Answer {
    let kind = match code.status() {
        401 | 403 => "authentication_error",
        429 => "throttled_error",
        500.. => "server_error",
        _ => "validation_error",
    };
    Answer::json(&json!({
        "type": kind,
        "code": code.name(),
        "detail": message,
        "attr": null,
    }))
}

/// The body's JSON: undone from the compression and transfer encodings PostHog's SDKs use.
fn unpack<'b>(
    bytes: &'b [u8],
    content_type: Option<&str>,
    params: &Params,
    limits: &DecodeLimits,
) -> Result<Cow<'b, [u8]>, IngestError> {
    let mut compression = params.query("compression").map(str::to_ascii_lowercase);
    let mut body: Cow<[u8]> = Cow::Borrowed(bytes);
    let form =
        content_type == Some("application/x-www-form-urlencoded") || bytes.starts_with(b"data=");
    if form {
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(bytes).map_err(|e| {
            IngestError::InvalidEncoding(format!("the form body cannot be read: {e}"))
        })?;
        let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let data = field("data").ok_or_else(|| {
            IngestError::InvalidBody("the form body has no `data` field with the events".into())
        })?;
        if let Some(c) = field("compression") {
            compression = Some(c.to_ascii_lowercase());
        }
        body = Cow::Owned(data.clone().into_bytes());
    }
    match compression.as_deref() {
        Some("gzip-js") | Some("gzip") => {
            body = Cow::Owned(gunzip(&body, limits.max_decompressed_bytes)?);
        }
        Some("base64") => body = Cow::Owned(base64_decode(&body)?),
        Some("lz64") => {
            return Err(IngestError::UnsupportedEncoding(
                "lz64 (set the SDK's compression to gzip-js or base64)".into(),
            ))
        }
        _ => {}
    }
    if body.starts_with(&[0x1f, 0x8b]) {
        body = Cow::Owned(gunzip(&body, limits.max_decompressed_bytes)?);
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    match first {
        None => Err(IngestError::InvalidBody("the body is empty".into())),
        Some(b'{') | Some(b'[') => Ok(body),
        // Another JSON value (`42`, `"x"`): JSON of the wrong shape, said so by `split`.
        Some(_) if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok() => Ok(body),
        Some(_) => {
            let decoded = base64_decode(&body)?;
            match decoded.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'{') | Some(b'[') => Ok(Cow::Owned(decoded)),
                _ => Err(IngestError::InvalidEncoding(
                    "the body is neither JSON nor base64-encoded JSON".into(),
                )),
            }
        }
    }
}

/// Base64 as the SDKs send it: standard or URL-safe, padded or not, a form's `+` turned into
/// a space put back.
fn base64_decode(bytes: &[u8]) -> Result<Vec<u8>, IngestError> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let lenient =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let text: Vec<u8> = bytes
        .iter()
        .filter(|b| !matches!(b, b'\n' | b'\r'))
        .map(|b| if *b == b' ' { b'+' } else { *b })
        .collect();
    let text = text.trim_ascii();
    GeneralPurpose::new(&base64::alphabet::STANDARD, lenient)
        .decode(text)
        .or_else(|_| GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient).decode(text))
        .or_else(|_| STANDARD.decode(text))
        .or_else(|_| URL_SAFE.decode(text))
        .map_err(|e| IngestError::InvalidEncoding(format!("base64: {e}")))
}

/// The envelope (token, send time) and the events of a JSON body, still raw.
fn split(text: &str) -> Result<(Envelope<'_>, Vec<&RawValue>), IngestError> {
    let invalid = |e: serde_json::Error| IngestError::InvalidJson(e.to_string());
    match text.trim_start().as_bytes().first() {
        Some(b'[') => {
            let events: Vec<&RawValue> = serde_json::from_str(text).map_err(invalid)?;
            let envelope = Envelope {
                batch: None,
                api_key: None,
                token: None,
                sent_at: None,
            };
            Ok((envelope, events))
        }
        Some(b'{') => {
            let mut envelope: Envelope = serde_json::from_str(text).map_err(invalid)?;
            let events = match envelope.batch.take() {
                Some(batch) => batch,
                None => vec![serde_json::from_str::<&RawValue>(text).map_err(invalid)?],
            };
            Ok((envelope, events))
        }
        _ => Err(IngestError::InvalidBody(
            "expected a JSON array of events, {\"api_key\", \"batch\": [...]} or one event".into(),
        )),
    }
}

fn parse_capture(raw: &RawValue, limits: &DecodeLimits) -> Result<Capture, Rejection> {
    limits.check_event_size(raw.get())?;
    if !raw.get().trim_start().starts_with('{') {
        return Err(Rejection::new(
            RejectCode::InvalidEvent,
            "an event must be a JSON object",
        ));
    }
    serde_json::from_str(raw.get()).map_err(|e| {
        Rejection::new(
            RejectCode::InvalidEvent,
            format!("the event is not a PostHog event: {e}"),
        )
    })
}

/// One capture as a raw event (see the module comment for the mapping).
fn map(capture: Capture) -> RawEvent {
    let mut event = Builder::default();
    let Capture {
        event: name,
        distinct_id,
        engage_distinct_id,
        uuid,
        timestamp,
        offset,
        mut properties,
        ..
    } = capture;
    if let Some(name) = name {
        event.field(Field::Name, FieldValue::Str(name));
    }
    if let Some(uuid) = uuid {
        event.field(Field::Id, FieldValue::Str(uuid));
    }
    let time = timestamp.or_else(|| {
        offset.map(|offset| FieldValue::Num((crate::model::now_ms() as f64 - offset).max(0.0)))
    });
    if let Some(time) = time {
        event.field(Field::Timestamp, time);
    }
    let distinct_id = distinct_id
        .or(engage_distinct_id)
        .or_else(|| properties.remove("distinct_id"))
        .and_then(text);
    let device_id = properties.remove("$device_id").and_then(text);
    let identified = match (
        properties.get("$process_person_profile"),
        properties.get("$is_identified"),
    ) {
        (Some(Value::Bool(false)), _) => false,
        (_, Some(Value::Bool(identified))) => *identified,
        _ => device_id.is_none() || device_id != distinct_id,
    };
    if let Some(install) = device_id.clone().or_else(|| distinct_id.clone()) {
        event.field(Field::InstallId, FieldValue::Str(install));
    }
    if let Some(user) = distinct_id.filter(|_| identified) {
        event.field(Field::UserId, FieldValue::Str(user));
    }
    let lib = properties.get("$lib").and_then(Value::as_str);
    if let Some(lib) = lib {
        let platform = lib.strip_prefix("posthog-").unwrap_or(lib);
        event.field(Field::Platform, FieldValue::Str(platform.to_string()));
        let version = properties.get("$lib_version").and_then(Value::as_str);
        let runtime = match version {
            Some(version) => format!("{lib}/{version}"),
            None => lib.to_string(),
        };
        event.field(Field::Runtime, FieldValue::Str(runtime));
    }
    if let Some(exceptions) = properties.get("$exception_list").and_then(Value::as_array) {
        event.exceptions(exceptions);
    } else {
        for (property, field) in [
            ("$exception_type", Field::ErrorDomain),
            ("$exception_message", Field::ErrorMessage),
        ] {
            if let Some(value) = properties.get(property).and_then(|v| text(v.clone())) {
                event.field(field, FieldValue::Str(value));
            }
        }
    }
    if let Some(level) = properties
        .get("$exception_level")
        .and_then(|v| text(v.clone()))
    {
        event.field(Field::Level, FieldValue::Str(level));
    }
    for (key, value) in properties {
        if let Some((_, field)) = FIELD_PROPERTIES.iter().find(|(name, _)| *name == key) {
            if let Some(value) = text(value) {
                event.field(*field, FieldValue::Str(value));
            }
        } else if let Some(kept) = key.strip_prefix('$') {
            if KEPT_PROPERTIES.contains(&key.as_str()) {
                event.extra(kept.to_string(), field_value(value));
            }
        } else if key != "token" {
            event.extra(key, field_value(value));
        }
    }
    RawEvent {
        fields: event.fields,
        source: SOURCE,
    }
}

#[derive(Default)]
struct Builder {
    fields: Vec<(String, Key, FieldValue)>,
}

impl Builder {
    fn field(&mut self, field: Field, value: FieldValue) {
        self.fields
            .push((field.name().to_string(), Key::Field(field), value));
    }

    fn extra(&mut self, key: String, value: FieldValue) {
        self.fields.push((key, Key::Extra, value));
    }

    /// `$exception_list`: the first (outermost) exception's type and value are the error's
    /// domain and message; the stack lists each exception with its frames.
    fn exceptions(&mut self, list: &[Value]) {
        let Some(first) = list.first() else {
            return;
        };
        for (key, field) in [("type", Field::ErrorDomain), ("value", Field::ErrorMessage)] {
            if let Some(value) = first.get(key).and_then(|v| text(v.clone())) {
                self.field(field, FieldValue::Str(value));
            }
        }
        let stack: Vec<String> = list.iter().map(exception_text).collect();
        let stack = stack.join("\n");
        if !stack.trim().is_empty() {
            self.field(Field::ErrorStack, FieldValue::Str(stack));
        }
    }
}

/// One exception of `$exception_list` as stack text: `Type: value`, then a line per frame,
/// innermost last (the order the SDKs send).
pub(super) fn exception_text(exception: &Value) -> String {
    let get = |v: &Value, key: &str| v.get(key).and_then(|v| text(v.clone()));
    let mut out = match (get(exception, "type"), get(exception, "value")) {
        (Some(kind), Some(value)) => format!("{kind}: {value}"),
        (Some(kind), None) => kind,
        (None, Some(value)) => value,
        (None, None) => String::new(),
    };
    let frames = exception
        .get("stacktrace")
        .and_then(|s| s.get("frames"))
        .and_then(Value::as_array);
    for frame in frames.into_iter().flatten().take(MAX_FRAMES) {
        let function = get(frame, "function").unwrap_or_else(|| "?".into());
        let file = get(frame, "filename")
            .or_else(|| get(frame, "abs_path"))
            .or_else(|| get(frame, "module"))
            .unwrap_or_else(|| "?".into());
        let position = match (get(frame, "lineno"), get(frame, "colno")) {
            (Some(line), Some(column)) => format!(":{line}:{column}"),
            (Some(line), None) => format!(":{line}"),
            _ => String::new(),
        };
        out.push_str(&format!("\n  at {function} ({file}{position})"));
    }
    out
}

/// A scalar as text (ids may be numbers).
pub(super) fn text(value: Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(super) fn field_value(value: Value) -> FieldValue {
    match value {
        Value::Null => FieldValue::Null,
        Value::Bool(b) => FieldValue::Bool(b),
        Value::Number(n) => n.as_f64().map_or(FieldValue::Null, FieldValue::Num),
        Value::String(s) => FieldValue::Str(s),
        Value::Array(list) => FieldValue::List(list.len()),
        Value::Object(map) => {
            FieldValue::Object(map.into_iter().map(|(k, v)| (k, field_value(v))).collect())
        }
    }
}

/// What a feature-flag request (`/flags`, `/decide`) says: the project token and who asks.
#[derive(Debug, Default)]
pub struct FlagsRequest {
    pub token: Option<String>,
    /// `$device_id`, else `distinct_id`: the install the policy is decided for.
    pub install_id: Option<String>,
    /// `person_properties.$app_version`, for policies targeting versions.
    pub app_version: Option<String>,
}

#[derive(Deserialize)]
struct FlagsBody {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    distinct_id: Option<Value>,
    #[serde(default, rename = "$device_id")]
    device_id: Option<Value>,
    #[serde(default)]
    person_properties: Map<String, Value>,
}

impl FlagsRequest {
    /// Reads a flags request body in any of the encodings capture takes (an empty body asks as
    /// nobody in particular).
    pub fn decode(
        bytes: &[u8],
        content_type: Option<&str>,
        params: &Params,
        limits: &DecodeLimits,
    ) -> Result<FlagsRequest, IngestError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(FlagsRequest {
                token: params.query("token").map(str::to_string),
                ..FlagsRequest::default()
            });
        }
        let json = unpack(bytes, content_type, params, limits)?;
        let body: FlagsBody =
            serde_json::from_slice(&json).map_err(|e| IngestError::InvalidJson(e.to_string()))?;
        let install_id = body
            .device_id
            .and_then(text)
            .or_else(|| body.distinct_id.and_then(text));
        let app_version = body
            .person_properties
            .get("$app_version")
            .and_then(|v| text(v.clone()));
        Ok(FlagsRequest {
            token: body
                .token
                .or(body.api_key)
                .or_else(|| params.query("token").map(str::to_string)),
            install_id,
            app_version,
        })
    }

    /// The product the token selects, as for capture.
    pub fn product<'p>(
        &self,
        products: &'p Products,
        request: &ProductRequest,
    ) -> Result<&'p Product, IngestError> {
        resolve(products, request, self.token.as_deref())
    }
}

/// The flag that carries the collection settings (its payload) and says whether collection is
/// on for the client.
pub const COLLECTION_FLAG: &str = "telemetryd-collection";

/// The flag of one policy: on when the policy applies to the client.
pub fn policy_flag(policy: &Policy) -> String {
    format!("telemetryd-policy-{}", policy.id)
}

/// Which flags answer a client: [`COLLECTION_FLAG`] (on when collection is enabled, the merged
/// settings as its payload) and one per policy of the product (on when it applies).
fn flags(config: &MergedConfig, policies: &[Policy]) -> Vec<(String, bool, Option<String>)> {
    let settings = serde_json::to_string(&json!({
        "product": config.product,
        "applied_policies": config.applied_policies,
        "settings": config.settings,
    }))
    .unwrap_or_default();
    let mut flags = vec![(
        COLLECTION_FLAG.to_string(),
        config.settings.collection_enabled,
        Some(settings),
    )];
    for policy in policies {
        let applied = config.applied_policies.contains(&policy.id);
        flags.push((policy_flag(policy), applied, None));
    }
    flags
}

/// The answer to `/flags` (`v=2` and later: each flag with its reason and metadata) or, with
/// `legacy`, to `/decide` (`featureFlags` and `featureFlagPayloads`), built from the client's
/// merged collection policy and the product's policies. Either carries the settings under
/// `telemetryd` and a `config` part, so SDKs stop retrying and can read the policy.
pub fn flags_answer(config: &MergedConfig, policies: &[Policy], legacy: bool) -> Value {
    let flags = flags(config, policies);
    let settings = &config.settings;
    let mut answer = json!({
        "errorsWhileComputingFlags": false,
        "requestId": uuid::Uuid::now_v7().to_string(),
        "config": {"enable_collect_everything": settings.collection_enabled},
        "telemetryd": {
            "product": config.product,
            "applied_policies": config.applied_policies,
            "settings": settings,
        },
        "supportedCompression": ["gzip", "gzip-js"],
        "sessionRecording": false,
        "autocapture_opt_out": true,
        "capturePerformance": false,
        "heatmaps": false,
        "surveys": false,
        "toolbarParams": {},
        "isAuthenticated": false,
        "hasFeatureFlags": true,
    });
    if legacy {
        let enabled: Map<String, Value> = flags
            .iter()
            .map(|(key, on, _)| (key.clone(), Value::Bool(*on)))
            .collect();
        let payloads: Map<String, Value> = flags
            .iter()
            .filter(|(_, on, _)| *on)
            .filter_map(|(key, _, payload)| Some((key.clone(), Value::String(payload.clone()?))))
            .collect();
        answer["featureFlags"] = Value::Object(enabled);
        answer["featureFlagPayloads"] = Value::Object(payloads);
        return answer;
    }
    let records: Map<String, Value> = flags
        .into_iter()
        .enumerate()
        .map(|(i, (key, on, payload))| {
            let record = json!({
                "key": key,
                "enabled": on,
                "variant": null,
                "reason": {
                    "code": if on { "condition_match" } else { "no_condition_match" },
                    "condition_index": if on { Some(0) } else { None },
                    "description": if on { "the collection policy applies" } else { "the collection policy does not apply" },
                },
                "metadata": {
                    "id": i + 1,
                    "version": 1,
                    "payload": if on { payload } else { None },
                    "description": null,
                },
            });
            (key, record)
        })
        .collect();
    answer["flags"] = Value::Object(records);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use std::io::Write;

    const LIMITS: DecodeLimits = super::super::TEST_LIMITS;

    fn params(query: &[(&str, &str)]) -> Params {
        Params {
            path: Vec::new(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            headers: Vec::new(),
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn unpacked(bytes: &[u8], content_type: Option<&str>, query: &[(&str, &str)]) -> String {
        let json = unpack(bytes, content_type, &params(query), &LIMITS).unwrap();
        String::from_utf8(json.into_owned()).unwrap()
    }

    #[test]
    fn every_encoding_the_sdks_use() {
        let json = r#"[{"event":"a"}]"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(json);
        assert_eq!(unpacked(json.as_bytes(), None, &[]), json);
        // gzip by query, and by magic bytes whatever the query says.
        assert_eq!(
            unpacked(&gzip(json.as_bytes()), None, &[("compression", "gzip-js")]),
            json
        );
        assert_eq!(
            unpacked(&gzip(json.as_bytes()), Some("text/plain"), &[]),
            json
        );
        // base64 by query, or because the body is not JSON; a form's `data=`.
        assert_eq!(
            unpacked(b64.as_bytes(), None, &[("compression", "base64")]),
            json
        );
        assert_eq!(unpacked(b64.as_bytes(), None, &[]), json);
        let form = format!("data={}&compression=base64", b64.replace('+', "%2B"));
        assert_eq!(
            unpacked(
                form.as_bytes(),
                Some("application/x-www-form-urlencoded"),
                &[]
            ),
            json
        );
    }

    #[test]
    fn bad_encodings_say_what_is_wrong() {
        let code = |bytes: &[u8], query: &[(&str, &str)]| {
            unpack(bytes, None, &params(query), &LIMITS)
                .unwrap_err()
                .error_code()
        };
        assert_eq!(code(b"\x1f\x8bnot gzip", &[]), Code::InvalidEncoding);
        assert_eq!(
            code(b"{}", &[("compression", "gzip-js")]),
            Code::InvalidEncoding
        );
        assert_eq!(code(b"!!not base64!!", &[]), Code::InvalidEncoding);
        assert_eq!(
            code(b"abc", &[("compression", "lz64")]),
            Code::UnsupportedEncoding
        );
        assert_eq!(code(b"data=", &[]), Code::InvalidBody);
        assert_eq!(code(b"   ", &[]), Code::InvalidBody);
        let bomb = gzip(&vec![b' '; 200_000]);
        assert_eq!(code(&bomb, &[]), Code::PayloadTooLarge);
    }

    #[test]
    fn body_shapes() {
        let (envelope, events) =
            split(r#"{"api_key":"phc_x","batch":[{"event":"a"},{"event":"b"}],"sent_at":"2026-01-01T00:00:00Z"}"#)
                .unwrap();
        assert_eq!(envelope.api_key.as_deref(), Some("phc_x"));
        assert_eq!(events.len(), 2);
        let (envelope, events) = split(r#"{"event":"a","api_key":"phc_y"}"#).unwrap();
        assert_eq!(envelope.api_key.as_deref(), Some("phc_y"));
        assert_eq!(events.len(), 1);
        assert_eq!(split("[1, {}]").unwrap().1.len(), 2);
        assert!(parse_capture(split("[1]").unwrap().1[0], &LIMITS).is_err());
        assert_eq!(split("42").unwrap_err().error_code(), Code::InvalidBody);
        assert_eq!(
            split("{\"batch\": 3}").unwrap_err().error_code(),
            Code::InvalidJson
        );
    }

    fn mapped(json: &str) -> Vec<(String, FieldValue)> {
        let capture: Capture = serde_json::from_str(json).unwrap();
        map(capture)
            .fields
            .into_iter()
            .map(|(name, _, value)| (name, value))
            .collect()
    }

    fn get<'a>(fields: &'a [(String, FieldValue)], name: &str) -> Option<&'a FieldValue> {
        fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn s(text: &str) -> FieldValue {
        FieldValue::Str(text.into())
    }

    #[test]
    fn ids_fields_and_properties() {
        let anonymous = mapped(
            r#"{"event":"$pageview","distinct_id":"d1","properties":{"$device_id":"d1","$lib":"web","$lib_version":"1.2.3","$os":"Mac OS X","$session_id":"s1","$current_url":"https://x.example/?email=a@b.c","$browser":"Chrome","plan":"pro","token":"phc_x","$set":{"a":1}}}"#,
        );
        assert_eq!(get(&anonymous, "install_id"), Some(&s("d1")));
        assert_eq!(get(&anonymous, "user_id"), None);
        assert_eq!(get(&anonymous, "platform"), Some(&s("web")));
        assert_eq!(get(&anonymous, "runtime"), Some(&s("web/1.2.3")));
        assert_eq!(get(&anonymous, "os_family"), Some(&s("Mac OS X")));
        assert_eq!(get(&anonymous, "session_id"), Some(&s("s1")));
        assert_eq!(get(&anonymous, "browser"), Some(&s("Chrome")));
        assert_eq!(get(&anonymous, "plan"), Some(&s("pro")));
        for left_out in ["current_url", "$current_url", "token", "$set", "set"] {
            assert_eq!(get(&anonymous, left_out), None, "{left_out}");
        }
        let identified = mapped(
            r#"{"event":"signed_up","distinct_id":"user-7","properties":{"$device_id":"d1","$lib":"posthog-python"}}"#,
        );
        assert_eq!(get(&identified, "install_id"), Some(&s("d1")));
        assert_eq!(get(&identified, "user_id"), Some(&s("user-7")));
        assert_eq!(get(&identified, "platform"), Some(&s("python")));
        let personless = mapped(
            r#"{"event":"x","distinct_id":"u9","properties":{"$process_person_profile":false}}"#,
        );
        assert_eq!(get(&personless, "install_id"), Some(&s("u9")));
        assert_eq!(get(&personless, "user_id"), None);
    }

    #[test]
    fn exceptions_become_the_error() {
        let fields = mapped(
            r#"{"event":"$exception","distinct_id":"d","properties":{"$exception_level":"fatal","$exception_list":[
                {"type":"ValueError","value":"bad input","stacktrace":{"frames":[
                    {"function":"main","filename":"app.py","lineno":3},
                    {"function":"parse","filename":"parse.py","lineno":10,"colno":2}]}},
                {"type":"KeyError","value":"'k'"}]}}"#,
        );
        assert_eq!(get(&fields, "error_domain"), Some(&s("ValueError")));
        assert_eq!(get(&fields, "error_message"), Some(&s("bad input")));
        assert_eq!(get(&fields, "level"), Some(&s("fatal")));
        assert_eq!(
            get(&fields, "error_stack"),
            Some(&s("ValueError: bad input\n  at main (app.py:3)\n  at parse (parse.py:10:2)\nKeyError: 'k'"))
        );
        assert_eq!(get(&fields, "exception_list"), None);
    }

    #[test]
    fn person_updates_are_recognised() {
        let update = |json: &str| {
            serde_json::from_str::<Capture>(json)
                .unwrap()
                .is_person_update()
        };
        assert!(update(r#"{"event":"$identify","distinct_id":"u"}"#));
        assert!(update(
            r#"{"$set":{"plan":"pro"},"$token":"t","$distinct_id":"u"}"#
        ));
        assert!(!update(r#"{"event":"$pageview"}"#));
        assert!(!update(r#"{"distinct_id":"u"}"#));
        let engage: Capture = serde_json::from_str(r#"{"$set":{},"$token":"phc_t"}"#).unwrap();
        assert_eq!(engage.token(), Some("phc_t"));
    }

    #[test]
    fn flags_follow_the_policy() {
        let policy = |id: &str| Policy {
            id: id.into(),
            name: id.into(),
            product: "web".into(),
            enabled: true,
            priority: 0,
            starts_at: None,
            expires_at: None,
            targeting: Default::default(),
            settings: Default::default(),
            created_at: 0,
            updated_at: 0,
        };
        let settings = crate::policies::ResolvedSettings {
            sample_rate: 0.25,
            ..Default::default()
        };
        let config = MergedConfig {
            product: "web".into(),
            settings,
            applied_policies: vec!["half".into()],
        };
        let policies = [policy("half"), policy("other")];
        let answer = flags_answer(&config, &policies, false);
        let collection = &answer["flags"][COLLECTION_FLAG];
        assert_eq!(collection["enabled"], true);
        let payload: Value =
            serde_json::from_str(collection["metadata"]["payload"].as_str().unwrap()).unwrap();
        assert_eq!(payload["settings"]["sample_rate"], 0.25);
        assert_eq!(answer["flags"]["telemetryd-policy-half"]["enabled"], true);
        assert_eq!(answer["flags"]["telemetryd-policy-other"]["enabled"], false);
        assert_eq!(answer["telemetryd"]["applied_policies"][0], "half");
        let legacy = flags_answer(&config, &policies, true);
        assert_eq!(legacy["featureFlags"]["telemetryd-policy-half"], true);
        assert_eq!(legacy["featureFlags"]["telemetryd-policy-other"], false);
        assert!(legacy["featureFlagPayloads"][COLLECTION_FLAG].is_string());
        assert!(legacy.get("flags").is_none());
    }

    #[test]
    fn errors_in_posthog_shape() {
        let answer = error_answer(Code::InvalidIngestKey, "no product lists this key");
        let body: Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(body["type"], "authentication_error");
        assert_eq!(body["code"], "invalid_ingest_key");
        assert_eq!(body["detail"], "no product lists this key");
    }
}
