//! OTLP/HTTP on the wire (opentelemetry.io/docs/specs/otlp): which encoding a request uses
//! (binary protobuf or the spec's JSON), decoding a request message and encoding its answer in
//! the same encoding, the `google.rpc.Status` body of an error answer, and reading resource and
//! record attributes (`AnyValue`) within limits. Traces and logs become events
//! (`ingest::formats::otlp`); metrics become time series (`series`).

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Code;
use crate::ingest::decode::{format_number, FieldValue};

/// How deep `AnyValue` arrays and key-value lists may nest inside one attribute.
pub const MAX_ATTRIBUTE_DEPTH: usize = 8;
/// Attributes one span, log record or data point (and its resource) may carry.
pub const MAX_ATTRIBUTES: usize = 128;

/// The two encodings of OTLP/HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// The encoding a content type names (its essence, lowercased); `None` for anything else.
    pub fn of(content_type: Option<&str>) -> Option<Encoding> {
        match content_type? {
            "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
            "application/json" => Some(Encoding::Json),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Decodes one request message. The error is a sentence for the client.
pub fn decode<T>(bytes: &[u8], encoding: Encoding) -> Result<T, String>
where
    T: prost::Message + DeserializeOwned + Default,
{
    match encoding {
        Encoding::Protobuf => T::decode(bytes).map_err(|e| format!("invalid protobuf: {e}")),
        // An empty JSON body is an empty request, like an empty protobuf message.
        Encoding::Json if bytes.iter().all(u8::is_ascii_whitespace) => Ok(T::default()),
        Encoding::Json => serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}")),
    }
}

/// Encodes an answer message.
pub fn encode<T: prost::Message + Serialize>(message: &T, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => message.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(message).unwrap_or_else(|_| b"{}".to_vec()),
    }
}

/// An `Export*ServiceResponse`; in JSON a full success is `{}` (the JSON mapping leaves an unset
/// `partial_success` out rather than writing `null`).
pub fn encode_export<T: prost::Message + Serialize>(
    response: &T,
    full_success: bool,
    encoding: Encoding,
) -> Vec<u8> {
    match encoding {
        Encoding::Json if full_success => b"{}".to_vec(),
        _ => encode(response, encoding),
    }
}

/// `google.rpc.Status`, the body of OTLP error answers (its `details` are never sent).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

impl Status {
    /// The status for an error answer: the gRPC code that goes with our code, and the sentence
    /// prefixed with our code so clients can match on it.
    pub fn of(code: Code, message: &str) -> Status {
        let grpc = match code.status() {
            400 | 413 | 415 => 3, // INVALID_ARGUMENT
            401 => 16,            // UNAUTHENTICATED
            403 => 7,             // PERMISSION_DENIED
            404 => 5,             // NOT_FOUND
            429 => 8,             // RESOURCE_EXHAUSTED
            503 => 14,            // UNAVAILABLE
            _ => 13,              // INTERNAL
        };
        Status {
            code: grpc,
            message: format!("{}: {message}", code.name()),
        }
    }
}

/// Why an item's attributes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributeError {
    #[error("{count} attributes; the limit is {MAX_ATTRIBUTES}")]
    TooMany { count: usize },
    #[error("attribute `{key}` nests deeper than {MAX_ATTRIBUTE_DEPTH} levels")]
    TooDeep { key: String },
}

/// Attributes as key → value, checked against the limits. Key-value lists become objects,
/// arrays keep only their length (the schema drops them), bytes become hex text. Takes the
/// list by value: keys and string values (nearly all of them) move instead of being copied.
pub fn attributes(list: Vec<KeyValue>) -> Result<Vec<(String, FieldValue)>, AttributeError> {
    if list.len() > MAX_ATTRIBUTES {
        return Err(AttributeError::TooMany { count: list.len() });
    }
    list.into_iter()
        .map(|kv| {
            let value = match kv.value.and_then(|v| v.value) {
                Some(any_value::Value::StringValue(s)) => Ok(FieldValue::Str(s)),
                other => value(&AnyValue { value: other }, 1),
            };
            let value = value.map_err(|()| AttributeError::TooDeep {
                key: kv.key.chars().take(100).collect(),
            })?;
            Ok((kv.key, value))
        })
        .collect()
}

fn value(v: &AnyValue, depth: usize) -> Result<FieldValue, ()> {
    if depth > MAX_ATTRIBUTE_DEPTH {
        return Err(());
    }
    Ok(match &v.value {
        // A string-table index only profiles use; nothing to read it against here.
        None | Some(any_value::Value::StringValueStrindex(_)) => FieldValue::Null,
        Some(any_value::Value::StringValue(s)) => FieldValue::Str(s.clone()),
        Some(any_value::Value::BoolValue(b)) => FieldValue::Bool(*b),
        Some(any_value::Value::IntValue(i)) => FieldValue::Num(*i as f64),
        Some(any_value::Value::DoubleValue(d)) => FieldValue::Num(*d),
        Some(any_value::Value::BytesValue(b)) => FieldValue::Str(crate::hash::hex(b)),
        Some(any_value::Value::ArrayValue(a)) => {
            for item in &a.values {
                value(item, depth + 1)?;
            }
            FieldValue::List(a.values.len())
        }
        Some(any_value::Value::KvlistValue(kv)) => FieldValue::Object(
            kv.values
                .iter()
                .map(|kv| {
                    let inner = kv.value.as_ref().map(|v| value(v, depth + 1)).transpose()?;
                    Ok((kv.key.clone(), inner.unwrap_or(FieldValue::Null)))
                })
                .collect::<Result<_, ()>>()?,
        ),
    })
}

/// A value as plain text (a log body, an exception message): strings as they are, other
/// scalars printed, lists and maps as compact JSON.
pub fn text(v: &AnyValue) -> Option<String> {
    match value(v, 1).ok()? {
        FieldValue::Null => None,
        FieldValue::Str(s) => Some(s),
        FieldValue::Num(n) => Some(format_number(n)),
        FieldValue::Bool(b) => Some(b.to_string()),
        FieldValue::List(_) | FieldValue::Object(_) => serde_json::to_string(&json(v)).ok(),
    }
}

fn json(v: &AnyValue) -> serde_json::Value {
    use serde_json::Value;
    match &v.value {
        None | Some(any_value::Value::StringValueStrindex(_)) => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => Value::from(*d),
        Some(any_value::Value::BytesValue(b)) => Value::String(crate::hash::hex(b)),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(json).collect()),
        Some(any_value::Value::KvlistValue(kv)) => Value::Object(
            kv.values
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, json)))
                .collect::<serde_json::Map<_, _>>(),
        ),
    }
}

/// A trace or span id as hex, or `None` when absent (empty or all zero, which the spec calls
/// invalid).
pub fn id(bytes: &[u8]) -> Option<String> {
    (!bytes.is_empty() && bytes.iter().any(|b| *b != 0)).then(|| crate::hash::hex(bytes))
}

/// Nanoseconds since the epoch → milliseconds (`None` for 0, "unknown" in OTLP).
pub fn millis(nanos: u64) -> Option<i64> {
    (nanos > 0).then(|| (nanos / 1_000_000).min(i64::MAX as u64) as i64)
}

/// The string value of attribute `key`, if it has one.
pub fn string_attribute<'a>(list: &'a [KeyValue], key: &str) -> Option<&'a str> {
    list.iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

/// String attributes by key, for looking up many (`service.name`, `os.type`, ...).
pub fn string_attributes(list: &[KeyValue]) -> BTreeMap<&str, &str> {
    list.iter()
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some((kv.key.as_str(), s.as_str())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..KeyValue::default()
        }
    }

    fn nested(depth: usize) -> AnyValue {
        let mut v = AnyValue {
            value: Some(any_value::Value::StringValue("leaf".into())),
        };
        for _ in 0..depth {
            v = AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![v] })),
            };
        }
        v
    }

    #[test]
    fn encodings_by_content_type() {
        assert_eq!(
            Encoding::of(Some("application/x-protobuf")),
            Some(Encoding::Protobuf)
        );
        assert_eq!(Encoding::of(Some("application/json")), Some(Encoding::Json));
        assert_eq!(Encoding::of(Some("text/plain")), None);
        assert_eq!(Encoding::of(None), None);
    }

    #[test]
    fn json_follows_the_spec_and_ignores_unknown_fields() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
            "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "name":"getpatter.llm","kind":3,"startTimeUnixNano":"1544712660000000000",
            "endTimeUnixNano":1544712661000000000,"someFutureField":{"x":1},
            "attributes":[{"key":"n","value":{"intValue":"42"}}]}]}]}]}"#;
        let request: ExportTraceServiceRequest = decode(body, Encoding::Json).unwrap();
        let span = &request.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(
            id(&span.trace_id).unwrap(),
            "5b8efff798038103d269b633813fc60c"
        );
        assert_eq!(span.kind, 3);
        assert_eq!(
            span.end_time_unix_nano - span.start_time_unix_nano,
            1_000_000_000
        );
        assert_eq!(
            attributes(span.attributes.clone()).unwrap(),
            vec![("n".to_string(), FieldValue::Num(42.0))]
        );
        let empty: ExportTraceServiceRequest = decode(b"", Encoding::Json).unwrap();
        assert!(empty.resource_spans.is_empty());
        assert!(decode::<ExportTraceServiceRequest>(b"{", Encoding::Json).is_err());
        assert!(decode::<ExportTraceServiceRequest>(b"\xff\x00", Encoding::Protobuf).is_err());
    }

    #[test]
    fn protobuf_round_trip() {
        let request = ExportTraceServiceRequest::default();
        let bytes = encode(&request, Encoding::Protobuf);
        let back: ExportTraceServiceRequest = decode(&bytes, Encoding::Protobuf).unwrap();
        assert_eq!(back, request);
    }

    #[test]
    fn attribute_limits() {
        let many: Vec<KeyValue> = (0..=MAX_ATTRIBUTES)
            .map(|i| kv(&format!("k{i}"), any_value::Value::BoolValue(true)))
            .collect();
        assert_eq!(
            attributes(many).unwrap_err(),
            AttributeError::TooMany {
                count: MAX_ATTRIBUTES + 1
            }
        );
        let ok = KeyValue {
            key: "deep".into(),
            value: Some(nested(MAX_ATTRIBUTE_DEPTH - 1)),
            ..KeyValue::default()
        };
        assert_eq!(attributes(vec![ok]).unwrap()[0].1, FieldValue::List(1));
        let deep = KeyValue {
            key: "deep".into(),
            value: Some(nested(MAX_ATTRIBUTE_DEPTH)),
            ..KeyValue::default()
        };
        assert!(matches!(
            attributes(vec![deep]),
            Err(AttributeError::TooDeep { .. })
        ));
    }

    /// An `ExportTraceServiceRequest` whose one resource attribute is an `AnyValue` array nested
    /// `depth` times, as raw protobuf bytes (built back to front: no message tree, no recursion).
    fn nested_attribute_request(depth: usize) -> Vec<u8> {
        /// Wraps everything so far in a length-delimited field `number`.
        fn wrap(reversed: &mut Vec<u8>, number: u8) {
            let mut varint = Vec::new();
            prost::encoding::encode_varint(reversed.len() as u64, &mut varint);
            reversed.extend(varint.iter().rev());
            reversed.push((number << 3) | 2); // wire type 2: length-delimited
        }
        let mut reversed: Vec<u8> = Vec::new();
        for _ in 0..depth {
            wrap(&mut reversed, 1); // ArrayValue.values around the AnyValue so far
            wrap(&mut reversed, 5); // AnyValue.array_value
        }
        wrap(&mut reversed, 2); // KeyValue.value
        reversed.extend([b'k', 1, (1 << 3) | 2]); // KeyValue.key = "k"
                                                  // Resource.attributes, ResourceSpans.resource, ExportTraceServiceRequest.resource_spans.
        for _ in 0..3 {
            wrap(&mut reversed, 1);
        }
        reversed.reverse();
        reversed
    }

    #[test]
    fn deeply_nested_values_are_refused_by_both_decoders() {
        // Shallow enough: decoded, then refused by the attribute depth limit.
        let shallow = nested_attribute_request(MAX_ATTRIBUTE_DEPTH + 1);
        let request: ExportTraceServiceRequest = decode(&shallow, Encoding::Protobuf).unwrap();
        let resource = request.resource_spans[0].resource.as_ref().unwrap();
        assert_eq!(resource.attributes[0].key, "k");
        assert!(matches!(
            attributes(resource.attributes.clone()),
            Err(AttributeError::TooDeep { .. })
        ));
        // Far deeper than any stack: prost's recursion limit refuses it while decoding.
        for depth in [200, 100_000] {
            let error = decode::<ExportTraceServiceRequest>(
                &nested_attribute_request(depth),
                Encoding::Protobuf,
            )
            .unwrap_err();
            assert!(error.contains("recursion limit"), "{error}");
        }
        // The JSON mapping: serde_json's recursion limit (128) does the same.
        let json = format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"k","value":{}"x"{}}}]}}}}]}}"#,
            r#"{"arrayValue":{"values":["#.repeat(100_000),
            "]}}".repeat(100_000)
        );
        let error =
            decode::<ExportTraceServiceRequest>(json.as_bytes(), Encoding::Json).unwrap_err();
        assert!(error.contains("recursion limit"), "{error}");
    }

    #[test]
    fn values_as_text() {
        let map = AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![kv("a", any_value::Value::IntValue(1))],
            })),
        };
        assert_eq!(text(&map).unwrap(), r#"{"a":1}"#);
        assert_eq!(
            text(&AnyValue {
                value: Some(any_value::Value::DoubleValue(2.5))
            })
            .unwrap(),
            "2.5"
        );
        assert_eq!(id(&[0; 16]), None);
        assert_eq!(millis(1_544_712_660_123_456_789), Some(1_544_712_660_123));
        assert_eq!(millis(0), None);
    }

    #[test]
    fn status_names_the_code() {
        let status = Status::of(Code::InvalidBody, "bad");
        assert_eq!(
            (status.code, status.message.as_str()),
            (3, "invalid_body: bad")
        );
        let bytes = encode(&status, Encoding::Protobuf);
        assert_eq!(
            <Status as prost::Message>::decode(bytes.as_slice()).unwrap(),
            status
        );
        assert_eq!(
            String::from_utf8(encode(&status, Encoding::Json)).unwrap(),
            r#"{"code":3,"message":"invalid_body: bad"}"#
        );
    }
}
