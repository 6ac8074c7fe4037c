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
//! | `dims` | JSON, raw strings, indexed + fast | `carrier:twilio`, breakdown by dimension |
//! | `metrics` | JSON numbers, fast only | `latency_ms:>500` (fast-field range) |
//! | `sample_rate` | f64, fast | the event's effective sample rate (client × server); weight = 1/rate |

use std::collections::BTreeMap;

use tantivy::schema::{
    Field, IndexRecordOption, JsonObjectOptions, NumericOptions, Schema, TextFieldIndexing,
    TextOptions,
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
pub const SCHEMA_VERSION: u32 = 5;

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
/// store), others as f64. Range queries cover both column types.
fn metric_value(value: f64) -> Option<tantivy::schema::OwnedValue> {
    use tantivy::schema::OwnedValue;
    if !value.is_finite() {
        return None;
    }
    if value.fract() == 0.0 && value.abs() < MAX_EXACT_INT {
        Some(OwnedValue::I64(value as i64))
    } else {
        Some(OwnedValue::F64(value))
    }
}

impl IndexFields {
    /// The index field of `field`, if it is an exact-match field.
    pub fn exact(&self, field: EventField) -> Option<Field> {
        self.exact[field as usize]
    }

    /// Maps one stored event (at position `seq`) onto an index document.
    pub fn document(&self, seq: u64, event: &Event) -> TantivyDocument {
        use tantivy::schema::OwnedValue;
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
            if !value.is_empty() {
                doc.add_text(*field, value);
            }
        }

        if !event.dims.is_empty() {
            let object: BTreeMap<String, OwnedValue> = event
                .dims
                .iter()
                .map(|(k, v)| (k.clone(), OwnedValue::Str(dim_text(v).to_string())))
                .collect();
            doc.add_object(self.dims, object);
        }
        let metrics: BTreeMap<String, OwnedValue> = event
            .metrics
            .iter()
            .filter_map(|(k, v)| metric_value(*v).map(|v| (k.clone(), v)))
            .collect();
        if !metrics.is_empty() {
            doc.add_object(self.metrics, metrics);
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
