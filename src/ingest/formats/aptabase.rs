//! Aptabase's ingestion API (`POST /api/v0/event`, one event; `/api/v0/events`, up to 25), as
//! the official SDKs (aptabase-python, @aptabase/web, ...) send to it with their host pointed at
//! telemetryd and a self-hosted app key (`A-SH-...`). The `App-Key` header selects the product
//! (`[products.compat] aptabase_app_keys`, compared in any case as Aptabase does).
//!
//! Mapping (also in the README): `eventName` → name, `timestamp` → timestamp, `sessionId` →
//! session id; `systemProps`: `osName`, `osVersion`, `appVersion`, `deviceModel` → their
//! fields, the SDK (`sdkVersion` `aptabase-python@0.1.0` → platform `python`), the engine
//! (`engineName`/`engineVersion`, else the SDK version) → runtime, `isDebug` → release channel
//! `debug` or `release`, `locale` and `appBuildNumber` → dimensions; `props` → dimensions and
//! metrics through the product's schema. Aptabase has no install id: events without one share
//! the rate limit of their client address.
//!
//! Answers: the native answer (a JSON object, as Aptabase's `{}`; the SDKs read only the
//! status) with each refused event's index and reason; errors are the JSON error body.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::native::is_json_like;
use super::{Body, DecodeLimits, Format, Key, ProductRequest, RawBatch, RawEvent};
use crate::config::CompatFormat;
use crate::error::{RejectCode, Rejection};
use crate::ingest::decode::FieldValue;
use crate::ingest::IngestError;
use crate::model::{Field, Source};
use crate::products::Products;

pub struct Aptabase;

/// `POST /api/v0/event` and `/api/v0/events`.
pub static APTABASE: Aptabase = Aptabase;

const SOURCE: Source = Source::named("aptabase");

/// The header with the app key.
pub const APP_KEY_HEADER: &str = "app-key";

/// Events one request may carry (Aptabase's own limit, which its SDKs batch by).
pub const MAX_EVENTS: usize = 25;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    #[serde(default)]
    event_name: Option<String>,
    #[serde(default)]
    timestamp: Option<FieldValue>,
    #[serde(default)]
    session_id: Option<Value>,
    #[serde(default)]
    system_props: SystemProps,
    #[serde(default)]
    props: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SystemProps {
    #[serde(default)]
    os_name: Option<String>,
    #[serde(default)]
    os_version: Option<String>,
    #[serde(default)]
    locale: Option<String>,
    #[serde(default)]
    app_version: Option<String>,
    #[serde(default)]
    app_build_number: Option<String>,
    #[serde(default)]
    engine_name: Option<String>,
    #[serde(default)]
    engine_version: Option<String>,
    #[serde(default)]
    sdk_version: Option<String>,
    #[serde(default)]
    device_model: Option<String>,
    #[serde(default)]
    is_debug: Option<bool>,
}

impl Format for Aptabase {
    fn name(&self) -> &'static str {
        "aptabase"
    }

    fn headers(&self) -> &'static [&'static str] {
        &[APP_KEY_HEADER]
    }

    fn check_content_type(&self, content_type: Option<&str>) -> Result<(), IngestError> {
        match content_type {
            Some(essence) if !is_json_like(essence) => Err(IngestError::UnsupportedMediaType {
                content_type: essence.chars().take(100).collect(),
                expected: "application/json",
            }),
            _ => Ok(()),
        }
    }

    fn decode(
        &self,
        body: Body<'_>,
        products: &Products,
        request: &ProductRequest,
        limits: &DecodeLimits,
    ) -> Result<RawBatch, IngestError> {
        let product = products.resolve_compat(
            CompatFormat::Aptabase,
            body.params.header(APP_KEY_HEADER),
            request.name.as_deref(),
            request.key.as_deref(),
        )?;
        let text = std::str::from_utf8(body.bytes)
            .map_err(|e| IngestError::InvalidEncoding(format!("the body is not UTF-8: {e}")))?;
        let invalid = |e: serde_json::Error| IngestError::InvalidJson(e.to_string());
        let events: Vec<&RawValue> = match text.trim_start().as_bytes().first() {
            Some(b'[') => serde_json::from_str(text).map_err(invalid)?,
            Some(b'{') => vec![serde_json::from_str(text).map_err(invalid)?],
            _ => return Err(IngestError::InvalidBody(
                "expected an event object (/api/v0/event) or an array of events (/api/v0/events)"
                    .into(),
            )),
        };
        let limit = MAX_EVENTS.min(limits.max_batch_events);
        if events.len() > limit {
            return Err(IngestError::BatchTooLarge {
                count: events.len(),
                limit,
            });
        }
        let items = events.iter().map(|raw| event(raw, limits)).collect();
        Ok(RawBatch {
            product: product.index,
            sent_at: None,
            items,
            positions: None,
            ..RawBatch::default()
        })
    }
}

fn event(raw: &RawValue, limits: &DecodeLimits) -> Result<RawEvent, Rejection> {
    limits.check_event_size(raw.get())?;
    let invalid = |message: String| Rejection::new(RejectCode::InvalidEvent, message);
    if !raw.get().trim_start().starts_with('{') {
        return Err(invalid("an event must be a JSON object".into()));
    }
    let event: Event = serde_json::from_str(raw.get())
        .map_err(|e| invalid(format!("the event is not an Aptabase event: {e}")))?;
    let props = match event.props {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(props)) => props,
        Some(_) => return Err(invalid("`props` must be an object".into())),
    };
    let mut fields: Vec<(String, Key, FieldValue)> = Vec::new();
    let mut field = |field: Field, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.trim().is_empty()) {
            fields.push((
                field.name().to_string(),
                Key::Field(field),
                FieldValue::Str(value),
            ));
        }
    };
    let system = event.system_props;
    field(Field::Name, event.event_name);
    field(
        Field::SessionId,
        event.session_id.and_then(|id| match id {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }),
    );
    field(Field::OsFamily, system.os_name);
    field(Field::OsVersion, system.os_version);
    field(Field::AppVersion, system.app_version);
    field(Field::DeviceModel, system.device_model);
    let sdk = system.sdk_version.as_deref().map(sdk_name);
    field(Field::Platform, sdk.map(str::to_string));
    let engine = match (system.engine_name, system.engine_version) {
        (Some(name), Some(version)) if !version.is_empty() => Some(format!("{name}/{version}")),
        (Some(name), _) => Some(name),
        (None, _) => system.sdk_version.clone(),
    };
    field(Field::Runtime, engine);
    let channel = system
        .is_debug
        .map(|debug| if debug { "debug" } else { "release" });
    field(Field::ReleaseChannel, channel.map(str::to_string));
    if let Some(timestamp) = event.timestamp {
        fields.push(("timestamp".into(), Key::Field(Field::Timestamp), timestamp));
    }
    for (key, value) in [
        ("locale", system.locale),
        ("app_build_number", system.app_build_number),
    ] {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            fields.push((key.into(), Key::Extra, FieldValue::Str(value)));
        }
    }
    for (key, value) in props {
        let value = serde_json::from_value::<FieldValue>(value).unwrap_or(FieldValue::Null);
        fields.push((key, Key::Extra, value));
    }
    Ok(RawEvent {
        fields,
        source: SOURCE,
    })
}

/// The SDK's name from its `sdkVersion` (`aptabase-python@0.1.0` → `python`,
/// `aptabase-web@0.5.0` → `web`).
fn sdk_name(sdk_version: &str) -> &str {
    let name = sdk_version.split('@').next().unwrap_or(sdk_version);
    name.strip_prefix("aptabase-").unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DecodeLimits = DecodeLimits {
        max_batch_events: 100,
        max_event_bytes: 2_000,
        max_decompressed_bytes: 100_000,
    };

    fn mapped(json: &str) -> Vec<(String, FieldValue)> {
        let raw: &RawValue = serde_json::from_str(json).unwrap();
        event(raw, &LIMITS)
            .unwrap()
            .fields
            .into_iter()
            .map(|(k, _, v)| (k, v))
            .collect()
    }

    #[test]
    fn system_props_become_the_environment() {
        let fields = mapped(
            r#"{"timestamp":"2026-01-01T00:00:00Z","sessionId":"171","eventName":"app_started",
                "systemProps":{"isDebug":true,"locale":"en-US","osName":"Linux","osVersion":"6.1",
                "appVersion":"1.2.0","sdkVersion":"aptabase-python@0.1.0","deviceModel":"x86_64"},
                "props":{"plan":"pro","count":3}}"#,
        );
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let s = |t: &str| Some(FieldValue::Str(t.into()));
        assert_eq!(get("name"), s("app_started"));
        assert_eq!(get("session_id"), s("171"));
        assert_eq!(get("os_family"), s("Linux"));
        assert_eq!(get("app_version"), s("1.2.0"));
        assert_eq!(get("platform"), s("python"));
        assert_eq!(get("runtime"), s("aptabase-python@0.1.0"));
        assert_eq!(get("release_channel"), s("debug"));
        assert_eq!(get("device_model"), s("x86_64"));
        assert_eq!(get("locale"), s("en-US"));
        assert_eq!(get("plan"), s("pro"));
        assert_eq!(get("count"), Some(FieldValue::Num(3.0)));
    }

    #[test]
    fn malformed_events_are_refused_alone() {
        let refused = |json: &str| {
            let raw: &RawValue = serde_json::from_str(json).unwrap();
            event(raw, &LIMITS).unwrap_err().message
        };
        assert!(refused("3").contains("JSON object"));
        assert!(refused(r#"{"eventName":"a","props":[1]}"#).contains("props"));
        assert!(refused(r#"{"eventName":5}"#).contains("not an Aptabase event"));
        let big = format!(
            r#"{{"eventName":"a","props":{{"x":"{}"}}}}"#,
            "y".repeat(3000)
        );
        assert!(refused(&big).contains("limit"));
    }
}
