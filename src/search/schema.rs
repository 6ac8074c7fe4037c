//! The tantivy schema of the event index and the mapping of a canonical [`Event`] onto one
//! index document.
//!
//! Nothing is STORED: the doc store stays empty and every hit is mapped back to the redb store
//! through the `seq` fast field. Field norms are off everywhere (results are ordered by time, not
//! by relevance), which saves one byte per document and indexed field.
//!
//! | field | kind | used for |
//! |---|---|---|
//! | `seq` | u64, fast | hit → store key, cursor tie-break, `delete(.., below_seq)` |
//! | `timestamp` | i64 ms, fast | exact time range ends (fast-field range), ordering, time series |
//! | `time_day`, `time_hour` | i64 (timestamp in whole days / hours), indexed | time ranges as posting lists ([`super::timerange`]) |
//! | `text` | text, default tokenizer, positions | bare words and phrases (catalogue [`Use::Text`] fields, string dimensions) |
//! | exact fields (catalogue [`Use::Exact`], named as in [`crate::fields`]) | raw string, indexed; fast with [`Use::Column`] | `field:value`, filters, breakdowns |
//! | `NAME_hex64` beside a [`Use::HexId`] field | u64, fast only: the canonical values ([`IndexFields::id_number`]), which the exact field then does not hold | `span_id:...` as a scan of the column |
//! | `dims` | JSON, raw strings, indexed + fast | `carrier:twilio`, breakdown by dimension |
//! | `metrics` | JSON numbers, fast only | `latency_ms:>500` (fast-field range) |
//! | `sample_rate` | f64, fast | the event's effective sample rate (client × server); weight = 1/rate |

use std::collections::{btree_map, BTreeMap};

use tantivy::schema::document::{ReferenceValue, ReferenceValueLeaf};
use tantivy::schema::{
    Field, IndexRecordOption, JsonObjectOptions, NumericOptions, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::TantivyDocument;

use crate::fields::{EventField, Use};
use crate::model::{DimValue, Event};
use crate::timespan::{DAY_MS, HOUR_MS};

/// Bump when the schema or the document mapping changes: an index written with another version
/// is discarded on open and rebuilt from the store.
/// 3: exact fields derived from the field catalogue, `country`/`region` renamed `country_code`/
/// `region_code`. 4: the trace context as exact fields and `message` in the free text.
/// 5: the `sample_rate` fast column (analytics weights) and `session_id` as a fast column.
/// 6: span ids in the canonical form as numbers ([`Use::HexId`]).
pub const SCHEMA_VERSION: u32 = 6;

pub const SEQ: &str = "seq";
pub const TIMESTAMP: &str = "timestamp";
pub const TIME_DAY: &str = "time_day";
pub const TIME_HOUR: &str = "time_hour";
pub const TEXT: &str = "text";
pub const DIMS: &str = "dims";
pub const METRICS: &str = "metrics";
pub const SAMPLE_RATE: &str = "sample_rate";

/// The index field of an exact-match catalogue field ([`Use::Exact`]), by its name or an alias:
/// raw, case-sensitive, whole values; a fast column too with [`Use::Column`].
pub fn exact_field(name: &str) -> Option<EventField> {
    EventField::lookup(name).filter(|f| f.has(Use::Exact))
}

/// The number a [`Use::HexId`] field's value is indexed as: the value must be exactly 16
/// lowercase hex digits (the form OTLP, W3C trace context and Sentry give span ids), so that
/// the number stands for that one text and no other.
fn hex_id(value: &str) -> Option<u64> {
    let canonical = value.len() == 16
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    canonical
        .then(|| u64::from_str_radix(value, 16).ok())
        .flatten()
}

/// Field handles of the schema.
#[derive(Clone)]
pub struct IndexFields {
    pub seq: Field,
    pub timestamp: Field,
    /// The timestamp in whole days and whole hours since the epoch.
    pub time_day: Field,
    pub time_hour: Field,
    pub text: Field,
    pub dims: Field,
    pub metrics: Field,
    /// The effective sample rate (0 < rate <= 1).
    pub sample_rate: Field,
    /// Indexed by [`EventField`]: the index field of each exact-match catalogue field.
    exact: Vec<Option<Field>>,
    /// Indexed by [`EventField`]: the number column of each [`Use::HexId`] field.
    hex_ids: Vec<Option<Field>>,
}

pub fn build_schema() -> (Schema, IndexFields) {
    let mut builder = Schema::builder();
    let seq = builder.add_u64_field(SEQ, NumericOptions::default().set_fast());
    let timestamp = builder.add_i64_field(TIMESTAMP, NumericOptions::default().set_fast());
    let time_day = builder.add_i64_field(TIME_DAY, NumericOptions::default().set_indexed());
    let time_hour = builder.add_i64_field(TIME_HOUR, NumericOptions::default().set_indexed());
    let text = builder.add_text_field(
        TEXT,
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("default")
                .set_fieldnorms(false)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        ),
    );
    let raw_indexing = TextFieldIndexing::default()
        .set_tokenizer("raw")
        .set_fieldnorms(false)
        .set_index_option(IndexRecordOption::Basic);
    let exact = EventField::ALL
        .iter()
        .map(|f| {
            f.has(Use::Exact).then(|| {
                let options = TextOptions::default().set_indexing_options(raw_indexing.clone());
                let options = if f.has(Use::Column) {
                    options.set_fast("raw")
                } else {
                    options
                };
                builder.add_text_field(f.name(), options)
            })
        })
        .collect();
    let hex_ids = EventField::ALL
        .iter()
        .map(|f| {
            f.has(Use::HexId).then(|| {
                builder.add_u64_field(
                    &format!("{}_hex64", f.name()),
                    NumericOptions::default().set_fast(),
                )
            })
        })
        .collect();
    let dims = builder.add_json_field(
        DIMS,
        JsonObjectOptions::default()
            .set_indexing_options(raw_indexing)
            .set_fast("raw"),
    );
    let metrics = builder.add_json_field(METRICS, JsonObjectOptions::default().set_fast("raw"));
    let sample_rate = builder.add_f64_field(SAMPLE_RATE, NumericOptions::default().set_fast());
    (
        builder.build(),
        IndexFields {
            seq,
            timestamp,
            time_day,
            time_hour,
            text,
            dims,
            metrics,
            sample_rate,
            exact,
            hex_ids,
        },
    )
}

/// The text a dimension value is indexed (and matched) as.
pub fn dim_text(value: &DimValue) -> &str {
    match value {
        DimValue::Str(s) => s.as_str(),
        DimValue::Bool(true) => "true",
        DimValue::Bool(false) => "false",
    }
}

/// Largest magnitude below which an integral f64 is stored as i64 (exactly representable).
const MAX_EXACT_INT: f64 = 9_007_199_254_740_992.0; // 2^53

/// A metric value as indexed: integral values as i64 (they compress far better in the columnar
/// store), others as f64; not at all when not finite. Range queries cover both column types.
fn metric_value(value: f64) -> Option<JsonView<'static>> {
    if !value.is_finite() {
        return None;
    }
    if value.fract() == 0.0 && value.abs() < MAX_EXACT_INT {
        Some(JsonView::I64(value as i64))
    } else {
        Some(JsonView::F64(value))
    }
}

/// An event's dimensions or metrics as the value of a tantivy JSON field, borrowed: the document
/// is built from the event's maps directly, without copying every key and value into tantivy's
/// owned values first (that copy was a tenth of the indexer's time).
#[derive(Debug, Clone, Copy)]
enum JsonView<'a> {
    Dims(&'a BTreeMap<String, DimValue>),
    Metrics(&'a BTreeMap<String, f64>),
    Str(&'a str),
    I64(i64),
    F64(f64),
}

impl<'a> Value<'a> for JsonView<'a> {
    type ArrayIter = std::iter::Empty<JsonView<'a>>;
    type ObjectIter = JsonEntries<'a>;

    fn as_value(&self) -> ReferenceValue<'a, Self> {
        match *self {
            JsonView::Dims(dims) => ReferenceValue::Object(JsonEntries::Dims(dims.iter())),
            JsonView::Metrics(metrics) => {
                ReferenceValue::Object(JsonEntries::Metrics(metrics.iter()))
            }
            JsonView::Str(text) => ReferenceValueLeaf::Str(text).into(),
            JsonView::I64(value) => ReferenceValueLeaf::I64(value).into(),
            JsonView::F64(value) => ReferenceValueLeaf::F64(value).into(),
        }
    }
}

/// The entries of a [`JsonView`] object: dimensions as their text, finite metrics as numbers.
enum JsonEntries<'a> {
    Dims(btree_map::Iter<'a, String, DimValue>),
    Metrics(btree_map::Iter<'a, String, f64>),
}

impl<'a> Iterator for JsonEntries<'a> {
    type Item = (&'a str, JsonView<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            JsonEntries::Dims(entries) => entries
                .next()
                .map(|(key, value)| (key.as_str(), JsonView::Str(dim_text(value)))),
            JsonEntries::Metrics(entries) => entries
                .find_map(|(key, value)| metric_value(*value).map(|value| (key.as_str(), value))),
        }
    }
}

impl IndexFields {
    /// The index field of `field`, if it is an exact-match field.
    pub fn exact(&self, field: EventField) -> Option<Field> {
        self.exact[field as usize]
    }

    /// Where `value` of `field` is indexed as a number, and the number: for a [`Use::HexId`]
    /// field's canonical values. Every other value is a term of the exact field.
    pub fn id_number(&self, field: EventField, value: &str) -> Option<(Field, u64)> {
        Some((self.hex_ids[field as usize]?, hex_id(value)?))
    }

    /// Maps one stored event (at position `seq`) onto an index document.
    pub fn document(&self, seq: u64, event: &Event) -> TantivyDocument {
        let mut doc = TantivyDocument::new();
        doc.add_u64(self.seq, seq);
        doc.add_i64(self.timestamp, event.timestamp);
        doc.add_i64(self.time_day, event.timestamp.div_euclid(DAY_MS));
        doc.add_i64(self.time_hour, event.timestamp.div_euclid(HOUR_MS));
        doc.add_f64(self.sample_rate, event.sample_rate);

        // Full text: the catalogue's text fields (name, module, error domain/code/message), then
        // the string dimensions.
        for field in crate::fields::TEXT {
            if let Some(value) = field.text(event) {
                doc.add_text(self.text, value);
            }
        }
        for value in event.dims.values() {
            if let DimValue::Str(s) = value {
                doc.add_text(self.text, s);
            }
        }

        for (spec, field) in EventField::ALL.iter().zip(&self.exact) {
            let (Some(field), Some(value)) = (field, spec.text(event)) else {
                continue;
            };
            match self.id_number(*spec, value) {
                Some((column, number)) => doc.add_u64(column, number),
                None if !value.is_empty() => doc.add_text(*field, value),
                None => {}
            }
        }

        if !event.dims.is_empty() {
            doc.add_field_value(self.dims, JsonView::Dims(&event.dims));
        }
        if event.metrics.values().any(|v| metric_value(*v).is_some()) {
            doc.add_field_value(self.metrics, JsonView::Metrics(&event.metrics));
        }
        doc
    }
}

/// Escapes a JSON key for tantivy's json-path syntax (dots and backslashes are literal in keys).
pub fn escape_json_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        if c == '.' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use tantivy::schema::{Document, OwnedValue};

    use super::*;

    fn json(schema: &Schema, doc: &TantivyDocument) -> serde_json::Value {
        serde_json::from_str(&doc.to_json(schema)).unwrap()
    }

    /// The borrowed dimension and metric objects index exactly what owned tantivy values would:
    /// dimensions as text, integral metrics as i64, others as f64, non-finite ones left out.
    #[test]
    fn dims_and_metrics_are_the_json_objects_they_describe() {
        let (schema, fields) = build_schema();
        let mut event = Event::new("app", "call_completed");
        event
            .dims
            .insert("carrier".into(), DimValue::Str("twilio".into()));
        event.dims.insert("recorded".into(), DimValue::Bool(true));
        event.metrics.insert("duration_ms".into(), 1250.0);
        event.metrics.insert("cost_usd".into(), 0.0125);
        event.metrics.insert("broken".into(), f64::NAN);
        let built = json(&schema, &fields.document(7, &event));

        let mut owned = TantivyDocument::new();
        owned.add_object(
            fields.dims,
            [
                ("carrier".to_string(), OwnedValue::Str("twilio".into())),
                ("recorded".to_string(), OwnedValue::Str("true".into())),
            ]
            .into(),
        );
        owned.add_object(
            fields.metrics,
            [
                ("cost_usd".to_string(), OwnedValue::F64(0.0125)),
                ("duration_ms".to_string(), OwnedValue::I64(1250)),
            ]
            .into(),
        );
        let owned = json(&schema, &owned);
        assert_eq!(built[DIMS], owned[DIMS]);
        assert_eq!(built[METRICS], owned[METRICS]);
        assert_eq!(built[METRICS][0]["duration_ms"], 1250);

        let mut only_broken = Event::new("app", "x");
        only_broken.metrics.insert("broken".into(), f64::INFINITY);
        let built = json(&schema, &fields.document(0, &only_broken));
        assert!(built.get(METRICS).is_none(), "{built}");
        assert!(built.get(DIMS).is_none(), "{built}");
    }
}
