//! The native format of `POST /api/v1/events`: a JSON envelope `{"sent_at", "events": [...]}` or
//! a bare array of events, each an object with the canonical snake_case names, their camelCase
//! spellings or the names SDKs use for them (all from the field catalogue: DESIGN §5),
//! `dims`/`metrics` objects (or `tags`, `properties`) and an `error` object. Keys a
//! product maps in its `[mapping]` are read as flat events (see [`super::flat`]). JSON is read
//! as any `application/json` or `+json` type, or `text/plain` (what `navigator.sendBeacon`
//! sends), or no content type at all. Events are split out as raw JSON first, so one malformed
//! event never fails its batch.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Body, DecodeLimits, Format, Key, ProductRequest, RawBatch, RawEvent};
use crate::error::{RejectCode, Rejection};
use crate::fields::EventField;
use crate::ingest::decode::FieldValue;
use crate::ingest::limits::parse_time;
use crate::ingest::IngestError;
use crate::model::{Field, Source};
use crate::products::{Product, Products};

pub struct Native;

/// The native format (and, through a product's mapping, flat events).
pub static NATIVE: Native = Native;

/// Every name a client may send a field under (canonical, camelCase, an SDK's) → its key: the
/// field, or for the dimension and metric objects (`dims`, `tags`, `metrics`, ...) [`Key::Extras`].
static WIRE_NAMES: LazyLock<HashMap<&'static str, Key>> = LazyLock::new(|| {
    let extras = [EventField::Dims, EventField::Metrics]
        .into_iter()
        .flat_map(|f| f.def().client_names())
        .map(|n| (n, Key::Extras));
    Field::wire_names()
        .map(|(f, n)| (n, Key::Field(f)))
        .chain(extras)
        .collect()
});

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, alias = "sentAt")]
    sent_at: Option<FieldValue>,
    #[serde(borrow)]
    events: Option<Vec<&'a RawValue>>,
}

impl Format for Native {
    fn name(&self) -> &'static str {
        "native"
    }

    fn check_content_type(&self, content_type: Option<&str>) -> Result<(), IngestError> {
        match content_type {
            None => Ok(()),
            Some(essence) if is_json_like(essence) => Ok(()),
            Some(other) => Err(IngestError::UnsupportedMediaType {
                content_type: other.chars().take(100).collect(),
                expected: "application/json",
            }),
        }
    }

    fn decode(
        &self,
        body: Body<'_>,
        products: &Products,
        product: &ProductRequest,
        limits: &DecodeLimits,
    ) -> Result<RawBatch, IngestError> {
        let product = product.resolve(products, None)?;
        let text = std::str::from_utf8(body.bytes)
            .map_err(|e| IngestError::InvalidEncoding(format!("the body is not UTF-8: {e}")))?;
        let (sent_at, events) = split_batch(text)?;
        if events.len() > limits.max_batch_events {
            return Err(IngestError::BatchTooLarge {
                count: events.len(),
                limit: limits.max_batch_events,
            });
        }
        let items = events
            .into_iter()
            .map(|raw| {
                limits.check_event_size(raw.get())?;
                parse_event(raw)
                    .map(|pairs| resolve(pairs, product))
                    .map_err(|m| Rejection::new(RejectCode::InvalidEvent, m))
            })
            .collect();
        Ok(RawBatch {
            product: product.index,
            sent_at: sent_at.as_ref().and_then(parse_time),
            items,
            positions: None,
            ..RawBatch::default()
        })
    }
}

/// JSON in any of its spellings, or `text/plain` for `navigator.sendBeacon`.
pub(super) fn is_json_like(essence: &str) -> bool {
    essence == "application/json"
        || essence == "text/plain"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Splits a JSON body into its send time and its events, still as raw JSON.
fn split_batch(text: &str) -> Result<(Option<FieldValue>, Vec<&RawValue>), IngestError> {
    match text.trim_start().as_bytes().first() {
        Some(b'[') => {
            let events: Vec<&RawValue> =
                serde_json::from_str(text).map_err(|e| IngestError::InvalidJson(e.to_string()))?;
            Ok((None, events))
        }
        Some(b'{') => {
            let envelope: Envelope =
                serde_json::from_str(text).map_err(|e| IngestError::InvalidJson(e.to_string()))?;
            let events = envelope.events.ok_or_else(|| {
                IngestError::InvalidBody(
                    "the object has no `events` array: send {\"events\": [...]} or a bare array"
                        .into(),
                )
            })?;
            Ok((envelope.sent_at, events))
        }
        Some(_) => Err(IngestError::InvalidBody(
            "expected a JSON object {\"sent_at\", \"events\": [...]} or an array of events".into(),
        )),
        None => Err(IngestError::InvalidBody("the body is empty".into())),
    }
}

/// One raw event as key/value pairs, or why it is not an object.
fn parse_event(raw: &RawValue) -> Result<Vec<(String, FieldValue)>, String> {
    match serde_json::from_str::<FieldValue>(raw.get()) {
        Ok(FieldValue::Object(pairs)) => Ok(pairs),
        Ok(other) => Err(format!(
            "an event must be a JSON object, not {}",
            other.kind()
        )),
        Err(e) => Err(format!("the event is not valid JSON: {e}")),
    }
}

/// Resolves each key: the product's flat mapping first, then the native names and aliases.
fn resolve(pairs: Vec<(String, FieldValue)>, product: &Product) -> RawEvent {
    let mut source = Source::NATIVE;
    let fields = pairs
        .into_iter()
        .map(|(name, value)| {
            let wire = WIRE_NAMES.get(name.as_str());
            let key = match (wire, name.as_str(), &value) {
                (Some(Key::Extras), _, FieldValue::Object(_)) => Key::Extras,
                (_, "error", FieldValue::Object(_)) => Key::Error,
                _ => match product.rules.mapping.field(&name) {
                    Some(field) => {
                        source = Source::FLAT;
                        Key::Field(field)
                    }
                    None => match wire {
                        Some(Key::Field(field)) => Key::Field(*field),
                        _ => Key::Extra,
                    },
                },
            };
            (name, key, value)
        })
        .collect();
    RawEvent { fields, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Code, ErrorCode};

    #[test]
    fn envelope_and_array() {
        let (sent_at, events) =
            split_batch(r#"{"sent_at": 5, "events": [{"name": "a"}, 3]}"#).unwrap();
        assert_eq!(sent_at, Some(FieldValue::Num(5.0)));
        assert_eq!(events.len(), 2);
        assert!(parse_event(events[1]).unwrap_err().contains("not a number"));
        let pairs = parse_event(events[0]).unwrap();
        assert_eq!(
            pairs,
            vec![("name".to_string(), FieldValue::Str("a".into()))]
        );
        assert_eq!(split_batch("[]").unwrap().1.len(), 0);
    }

    #[test]
    fn bad_bodies() {
        let code = |text: &str| split_batch(text).err().unwrap().error_code();
        assert_eq!(code("{\"events\": ["), Code::InvalidJson);
        assert_eq!(code("{\"x\": 1}"), Code::InvalidBody);
        assert_eq!(code("42"), Code::InvalidBody);
        assert_eq!(code("  "), Code::InvalidBody);
    }

    #[test]
    fn content_types() {
        for ok in [
            None,
            Some("application/json"),
            Some("text/plain"),
            Some("application/vnd.api+json"),
        ] {
            assert!(NATIVE.check_content_type(ok).is_ok(), "{ok:?}");
        }
        let err = NATIVE.check_content_type(Some("text/xml")).unwrap_err();
        assert_eq!(err.error_code(), Code::UnsupportedMediaType);
    }
}
