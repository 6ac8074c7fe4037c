//! Request body → batch: gzip (bounded), UTF-8, the native envelope `{"sent_at", "events"}` or a
//! bare array, and each event as an ordered list of typed key/value pairs. Events are split out
//! as raw JSON first so that one malformed event never fails its batch.

use std::io::Read;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::ApiError;

/// A JSON value as an event field can hold it, deserialized without `serde_json::Value`.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Object(Vec<(String, FieldValue)>),
    List(usize),
}

impl FieldValue {
    /// The value as a string field: strings as they are, integral numbers without `.0`.
    pub fn into_text(self) -> Option<String> {
        match self {
            FieldValue::Str(s) => Some(s),
            FieldValue::Num(n) => Some(format_number(n)),
            FieldValue::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            FieldValue::Null => "null",
            FieldValue::Bool(_) => "a bool",
            FieldValue::Num(_) => "a number",
            FieldValue::Str(_) => "a string",
            FieldValue::Object(_) => "an object",
            FieldValue::List(_) => "an array",
        }
    }
}

pub fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

impl<'de> Deserialize<'de> for FieldValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldValueVisitor)
    }
}

struct FieldValueVisitor;

impl<'de> Visitor<'de> for FieldValueVisitor {
    type Value = FieldValue;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<FieldValue, E> {
        Ok(FieldValue::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<FieldValue, E> {
        Ok(FieldValue::Num(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<FieldValue, E> {
        Ok(FieldValue::Num(v as f64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<FieldValue, E> {
        Ok(FieldValue::Num(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldValue, E> {
        Ok(FieldValue::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<FieldValue, E> {
        Ok(FieldValue::Str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<FieldValue, E> {
        Ok(FieldValue::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<FieldValue, E> {
        Ok(FieldValue::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FieldValue, A::Error> {
        let mut len = 0;
        while seq.next_element::<de::IgnoredAny>()?.is_some() {
            len += 1;
        }
        Ok(FieldValue::List(len))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FieldValue, A::Error> {
        let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some((key, value)) = map.next_entry::<String, FieldValue>()? {
            pairs.push((key, value));
        }
        Ok(FieldValue::Object(pairs))
    }
}

/// A decoded request: the client's send time, if given, and its events still as raw JSON.
pub struct Batch<'a> {
    pub sent_at: Option<FieldValue>,
    pub events: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, alias = "sentAt")]
    sent_at: Option<FieldValue>,
    #[serde(borrow)]
    events: Option<Vec<&'a RawValue>>,
}

/// Undoes `Content-Encoding`, never producing more than `max_decompressed` bytes.
pub fn decode_body(
    body: Vec<u8>,
    encoding: Option<&str>,
    max_decompressed: usize,
) -> Result<Vec<u8>, ApiError> {
    let encoding = encoding.map(|e| e.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("") | Some("identity") => Ok(body),
        Some("gzip") | Some("x-gzip") => gunzip(&body, max_decompressed),
        Some(other) => Err(ApiError::UnsupportedEncoding(other.to_string())),
    }
}

fn gunzip(body: &[u8], max_decompressed: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max_decompressed));
    let decoder = flate2::read::MultiGzDecoder::new(body);
    // Read one byte past the limit to tell "exactly at" from "over".
    decoder
        .take(max_decompressed as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::InvalidEncoding(format!("gzip: {e}")))?;
    if out.len() > max_decompressed {
        return Err(ApiError::PayloadTooLarge {
            limit: max_decompressed,
        });
    }
    Ok(out)
}

/// Splits a JSON body into its events.
pub fn parse_batch(text: &str) -> Result<Batch<'_>, ApiError> {
    match text.trim_start().as_bytes().first() {
        Some(b'[') => {
            let events: Vec<&RawValue> =
                serde_json::from_str(text).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
            Ok(Batch {
                sent_at: None,
                events,
            })
        }
        Some(b'{') => {
            let envelope: Envelope =
                serde_json::from_str(text).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
            let events = envelope.events.ok_or_else(|| {
                ApiError::InvalidBody(
                    "the object has no `events` array: send {\"events\": [...]} or a bare array"
                        .into(),
                )
            })?;
            Ok(Batch {
                sent_at: envelope.sent_at,
                events,
            })
        }
        Some(_) => Err(ApiError::InvalidBody(
            "expected a JSON object {\"sent_at\", \"events\": [...]} or an array of events".into(),
        )),
        None => Err(ApiError::InvalidBody("the body is empty".into())),
    }
}

/// One raw event as key/value pairs, or why it is not an object.
pub fn parse_event(raw: &RawValue) -> Result<Vec<(String, FieldValue)>, String> {
    match serde_json::from_str::<FieldValue>(raw.get()) {
        Ok(FieldValue::Object(pairs)) => Ok(pairs),
        Ok(other) => Err(format!(
            "an event must be a JSON object, not {}",
            other.kind()
        )),
        Err(e) => Err(format!("the event is not valid JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn envelope_and_array() {
        let batch = parse_batch(r#"{"sent_at": 5, "events": [{"name": "a"}, 3]}"#).unwrap();
        assert_eq!(batch.sent_at, Some(FieldValue::Num(5.0)));
        assert_eq!(batch.events.len(), 2);
        assert!(parse_event(batch.events[1])
            .unwrap_err()
            .contains("not a number"));
        let pairs = parse_event(batch.events[0]).unwrap();
        assert_eq!(
            pairs,
            vec![("name".to_string(), FieldValue::Str("a".into()))]
        );
        assert_eq!(parse_batch("[]").unwrap().events.len(), 0);
    }

    #[test]
    fn bad_bodies() {
        assert_eq!(
            parse_batch("{\"events\": [").err().unwrap().code(),
            "invalid_json"
        );
        assert_eq!(
            parse_batch("{\"x\": 1}").err().unwrap().code(),
            "invalid_body"
        );
        assert_eq!(parse_batch("42").err().unwrap().code(), "invalid_body");
        assert_eq!(parse_batch("  ").err().unwrap().code(), "invalid_body");
    }

    #[test]
    fn gzip_is_bounded() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&vec![b' '; 10_000]).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(
            decode_body(gz.clone(), Some("gzip"), 10_000).unwrap().len(),
            10_000
        );
        assert_eq!(
            decode_body(gz, Some("gzip"), 9_999).unwrap_err().code(),
            "payload_too_large"
        );
        assert_eq!(
            decode_body(b"nope".to_vec(), Some("gzip"), 100)
                .unwrap_err()
                .code(),
            "invalid_encoding"
        );
        assert_eq!(
            decode_body(vec![], Some("br"), 100).unwrap_err().code(),
            "unsupported_encoding"
        );
    }

    #[test]
    fn numbers_as_text() {
        assert_eq!(format_number(42.0), "42");
        assert_eq!(format_number(0.5), "0.5");
    }
}
