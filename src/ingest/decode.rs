//! What every format shares below its own syntax: undoing `Content-Encoding` (gzip, deflate,
//! brotli, zstd; bounded, so a small bomb can't grow past the decompressed-size limit), and [`FieldValue`], a JSON value
//! as an event field can hold it, deserialized without `serde_json::Value`.

use std::io::Read;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::ingest::IngestError;

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

/// Undoes `Content-Encoding`, never producing more than `max_decompressed` bytes.
pub fn decode_body(
    body: Vec<u8>,
    encoding: Option<&str>,
    max_decompressed: usize,
) -> Result<Vec<u8>, IngestError> {
    let encoding = encoding.map(|e| e.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("") | Some("identity") => Ok(body),
        Some("gzip") | Some("x-gzip") => gunzip(&body, max_decompressed),
        Some("deflate") => bounded(
            flate2::read::ZlibDecoder::new(body.as_slice()),
            "deflate",
            max_decompressed,
        ),
        Some("br") => bounded(
            brotli_decompressor::Decompressor::new(body.as_slice(), 4096),
            "brotli",
            max_decompressed,
        ),
        Some("zstd") => {
            let decoder = zstd::stream::read::Decoder::new(body.as_slice())
                .map_err(|e| IngestError::InvalidEncoding(format!("zstd: {e}")))?;
            bounded(decoder, "zstd", max_decompressed)
        }
        Some(other) => Err(IngestError::UnsupportedEncoding(
            other.chars().take(100).collect(),
        )),
    }
}

/// Gunzips `body` into at most `max_decompressed` bytes (`413` past it).
pub fn gunzip(body: &[u8], max_decompressed: usize) -> Result<Vec<u8>, IngestError> {
    bounded(
        flate2::read::MultiGzDecoder::new(body),
        "gzip",
        max_decompressed,
    )
}

/// Reads `decoder` (of encoding `name`) into at most `max_decompressed` bytes (`413` past it).
fn bounded(
    decoder: impl Read,
    name: &str,
    max_decompressed: usize,
) -> Result<Vec<u8>, IngestError> {
    let mut out = Vec::with_capacity(8192.min(max_decompressed));
    // Read one byte past the limit to tell "exactly at" from "over".
    decoder
        .take(max_decompressed as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| IngestError::InvalidEncoding(format!("{name}: {e}")))?;
    if out.len() > max_decompressed {
        return Err(IngestError::PayloadTooLarge {
            limit: max_decompressed,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Code, ErrorCode};
    use std::io::Write;

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
            decode_body(gz, Some("gzip"), 9_999)
                .unwrap_err()
                .error_code(),
            Code::PayloadTooLarge
        );
        assert_eq!(
            decode_body(b"nope".to_vec(), Some("gzip"), 100)
                .unwrap_err()
                .error_code(),
            Code::InvalidEncoding
        );
        assert_eq!(
            decode_body(vec![], Some("compress"), 100)
                .unwrap_err()
                .error_code(),
            Code::UnsupportedEncoding
        );
    }

    #[test]
    fn numbers_as_text() {
        assert_eq!(format_number(42.0), "42");
        assert_eq!(format_number(0.5), "0.5");
    }
}
