//! The per-event stages of the shared pipeline, the same for every wire format: map a raw
//! event's resolved keys onto the canonical event, apply the product's schema, check for PII,
//! place it (geo), correct its time, fingerprint it and give it an id. Each event passes or is
//! rejected alone, and says which of its fields were dropped or changed, and why. The batch-wide
//! stages that follow (policy, dedup, rate limit) are in [`super::stages`].

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::{Config, FieldAction, FreeTextAction, ProductConfig};
use crate::error::{AdjustReason, RejectCode, Rejection};
use crate::fields::{self, EventField};
use crate::ingest::decode::FieldValue;
use crate::ingest::formats::flat::FlatMapping;
use crate::ingest::formats::{Key, RawEvent};
use crate::ingest::geo::Location;
use crate::ingest::limits::{parse_time, BatchClock};
use crate::ingest::pii::{PiiDetector, PiiKind};
use crate::ingest::schema::{self, truncate, Checked, Schema, MAX_OPEN_KEYS};
use crate::metrics::Metrics;
use crate::model::{DimValue, ErrorInfo, Event, Field, Level, Source};
use crate::products::Product;

/// Longest event name, id or environment value kept.
const MAX_FIELD_CHARS: usize = 200;
/// Longest error message / stack kept.
const MAX_TEXT_CHARS: usize = 16 * 1024;

/// A product's ingest rules, compiled for the hot path.
#[derive(Debug)]
pub struct ProductRules {
    /// Its `[mapping]` for flat events.
    pub mapping: FlatMapping,
    schema: Schema,
    free_text: FreeTextAction,
    fields: FieldAction,
}

impl ProductRules {
    pub fn compile(product: &ProductConfig, config: &Config) -> Result<Self, regex::Error> {
        let privacy = product.privacy.clone().unwrap_or_default();
        Ok(ProductRules {
            mapping: FlatMapping::compile(&product.mapping),
            schema: Schema::compile(&product.schema)?,
            free_text: privacy.free_text.unwrap_or(config.privacy.free_text),
            fields: privacy.fields.unwrap_or(config.privacy.fields),
        })
    }
}

/// What one request shares among its events.
pub struct EventContext<'a> {
    pub product: &'a Product,
    pub clock: BatchClock,
    pub location: &'a Location,
    pub pii: &'a PiiDetector,
    pub metrics: &'a Metrics,
}

/// The canonical fields found so far in one event.
#[derive(Default)]
struct Draft {
    id: Option<String>,
    name: Option<String>,
    timestamp: Option<FieldValue>,
    level: Option<Level>,
    /// The other string fields, at most one entry per field (a handful: a list beats a hash).
    strings: Vec<(Field, String)>,
    error: ErrorInfo,
    message: Option<String>,
    sample_rate: Option<f64>,
    schema_version: Option<u32>,
    dims: std::collections::BTreeMap<String, DimValue>,
    metrics: std::collections::BTreeMap<String, f64>,
    /// Fields left out because their value carried PII: (field, what was found).
    pii: Vec<(String, PiiKind)>,
    /// Fields dropped or changed: (field, why).
    adjusted: Vec<(String, AdjustReason)>,
}

impl Draft {
    fn adjust(&mut self, field: String, reason: AdjustReason) {
        self.adjusted.push((field, reason));
    }
}

impl EventContext<'_> {
    /// Turns one raw event into a stored event, or says why not; `adjusted` gets the fields
    /// of an event that passes that were dropped or changed (left empty when none were).
    pub fn build(
        &self,
        raw: RawEvent,
        adjusted: &mut Vec<(String, AdjustReason)>,
    ) -> Result<Event, Rejection> {
        let mut draft = Draft::default();
        for (name, key, value) in raw.fields {
            self.take(&mut draft, name, key, value);
        }
        let fields = std::mem::take(&mut draft.adjusted);
        let event = self.finish(draft, raw.source)?;
        *adjusted = fields;
        Ok(event)
    }

    fn take(&self, draft: &mut Draft, name: String, key: Key, value: FieldValue) {
        let schema = &self.product.rules.schema;
        match (key, value) {
            (Key::Extras, FieldValue::Object(inner)) => {
                for (k, v) in inner {
                    self.take_extra(draft, k, v);
                }
            }
            (Key::Error, FieldValue::Object(inner)) => {
                for (k, v) in inner {
                    let Some(text) = v.into_text() else {
                        draft.adjust(format!("error.{k}"), AdjustReason::WrongType);
                        continue;
                    };
                    match k.as_str() {
                        "domain" | "type" => draft.error.domain = Some(truncate(text)),
                        "code" => draft.error.code = Some(truncate(text)),
                        "message" | "msg" => draft.error.message = Some(cut(text, MAX_TEXT_CHARS)),
                        "stack" | "stacktrace" | "stack_trace" | "stackTrace" => {
                            draft.error.stack = Some(cut(text, MAX_TEXT_CHARS))
                        }
                        _ => draft.adjust(format!("error.{k}"), AdjustReason::UnknownKey),
                    }
                }
            }
            (Key::Field(field), value) => {
                let exempt = field.is_free_text() || is_trace_context_id(field, &value);
                let identifier = || field.is_identifier();
                if exempt || !self.carries_pii(draft, field.name(), &value, identifier) {
                    set_field(draft, schema, field, &name, value);
                } else {
                    draft.adjust(field.name().to_string(), AdjustReason::PiiDropped);
                }
            }
            (_, value) => self.take_extra(draft, name, value),
        }
    }

    /// Checks a field's value as sent — before the schema coerces or drops it, so a phone number
    /// in an id field is caught even when the id pattern would have dropped it — and notes it.
    /// A card number found in an `identifier`'s value is checked again as in an id (a random id
    /// is not taken for a card number); `identifier` is only asked then.
    fn carries_pii(
        &self,
        draft: &mut Draft,
        key: &str,
        value: &FieldValue,
        identifier: impl FnOnce() -> bool,
    ) -> bool {
        let FieldValue::Str(text) = value else {
            return false;
        };
        if self.product.rules.fields == FieldAction::Keep {
            return false;
        }
        let found = match self.pii.detect(text) {
            Some(PiiKind::Card) if identifier() => self.pii.detect_in_identifier(text),
            found => found,
        };
        match found {
            Some(kind) => {
                draft.pii.push((key.to_string(), kind));
                true
            }
            None => false,
        }
    }

    /// A key that is not a canonical field: a dimension or metric, or a context object
    /// flattened into them.
    fn take_extra(&self, draft: &mut Draft, key: String, value: FieldValue) {
        let FieldValue::Object(inner) = value else {
            return self.take_dim(draft, key, value);
        };
        schema::flatten(
            &schema::snake_case(&key),
            inner,
            &mut |key, leaf| match leaf {
                Some(value) => self.take_dim(draft, key, value),
                None => draft.adjust(extra_field(&key, false), AdjustReason::TooDeep),
            },
        );
    }

    fn take_dim(&self, draft: &mut Draft, key: String, value: FieldValue) {
        let schema = &self.product.rules.schema;
        let number = matches!(value, FieldValue::Num(_));
        // How the answer names this key, should it be dropped or changed.
        let field = |key: &str| extra_field(key, number || schema.expects_number(key));
        if draft.dims.len() + draft.metrics.len() >= MAX_OPEN_KEYS {
            return draft.adjust(field(&key), AdjustReason::TooMany);
        }
        let identifier = || fields::is_identifier_key(&key);
        if schema.keeps(&key) && self.carries_pii(draft, &key, &value, identifier) {
            return draft.adjust(field(&key), AdjustReason::PiiDropped);
        }
        match schema.check(&key, value) {
            Ok(kept) => {
                if let Some(reason) = kept.changed {
                    draft.adjust(field(&key), reason);
                }
                match kept.value {
                    Checked::Dim(dim) => {
                        draft.dims.insert(key, dim);
                    }
                    Checked::Metric(n) => {
                        draft.metrics.insert(key, n);
                    }
                }
            }
            Err(reason) => draft.adjust(field(&key), reason),
        }
    }

    fn finish(&self, mut draft: Draft, source: Source) -> Result<Event, Rejection> {
        let product = self.product;
        self.check_fields_for_pii(&draft)?;
        let name = draft
            .name
            .take()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| Rejection::new(RejectCode::MissingName, "the event has no name"))?;
        if !product.rules.schema.accepts_event(&name) {
            return Err(Rejection::new(
                RejectCode::UnknownEvent,
                format!(
                    "event `{}` is not in the allowlist of product `{}`",
                    cut(name, 64),
                    product.id
                ),
            ));
        }
        for field in &product.rules.schema.required {
            if !draft.strings.iter().any(|(f, _)| f == field) {
                return Err(Rejection::new(
                    RejectCode::MissingField,
                    format!(
                        "field `{}` is required by product `{}`",
                        field.name(),
                        product.id
                    ),
                ));
            }
        }
        let (error, message) = self.scrub_free_text(draft.error, draft.message.take())?;
        let mut flags = Vec::new();
        let timestamp = self
            .clock
            .correct(draft.timestamp.as_ref().and_then(parse_time), &mut flags);
        let level = draft.level.unwrap_or(if error.is_some() {
            Level::Error
        } else {
            Level::Info
        });
        let id = event_id(&product.id, draft.id.as_deref());
        let mut event = Event {
            id,
            product: product.id.clone(),
            name,
            timestamp,
            received_at: self.clock.received_at,
            level,
            country_code: self.location.country_code.clone(),
            region_code: self.location.region_code.clone(),
            message,
            error,
            dims: draft.dims,
            metrics: draft.metrics,
            sample_rate: draft.sample_rate.unwrap_or(1.0),
            schema_version: draft.schema_version,
            source,
            flags,
            ..Event::default()
        };
        for (field, text) in draft.strings {
            if let Some(slot) = EventField::slot_for(field) {
                *slot(&mut event) = Some(text);
            }
        }
        // After the scrub, so the normalised message holds no PII.
        event.fingerprint = crate::clusters::fingerprint(&event);
        Ok(event)
    }

    /// PII found in the name, ids, environment or dimensions: reject the event, or — with the
    /// `drop` action — leave those fields out (they were never taken). Messages name the field,
    /// never the value.
    fn check_fields_for_pii(&self, draft: &Draft) -> Result<(), Rejection> {
        let Some((field, kind)) = draft.pii.first() else {
            return Ok(());
        };
        if self.product.rules.fields == FieldAction::Reject
            || draft.pii.iter().any(|(f, _)| f == "name")
        {
            self.metrics.pii_rejected.inc();
            return Err(Rejection::new(
                RejectCode::PiiDetected,
                format!(
                    "field `{field}` looks like it contains personal data ({})",
                    kind.as_str()
                ),
            ));
        }
        self.metrics.pii_fields_dropped.add(draft.pii.len() as u64);
        Ok(())
    }

    /// Scrubs (or, with the `reject` action, refuses) PII in the free text: the error report
    /// and the message.
    fn scrub_free_text(
        &self,
        mut error: ErrorInfo,
        mut message: Option<String>,
    ) -> Result<(Option<ErrorInfo>, Option<String>), Rejection> {
        if self.product.rules.free_text == FreeTextAction::Keep {
            return Ok(((!error.is_empty()).then_some(error), message));
        }
        let mut scrubbed = false;
        for text in [
            &mut message,
            &mut error.message,
            &mut error.stack,
            &mut error.code,
            &mut error.domain,
        ]
        .into_iter()
        .flatten()
        {
            if let Some((clean, kinds)) = self.pii.scrub(text) {
                if self.product.rules.free_text == FreeTextAction::Reject {
                    self.metrics.pii_rejected.inc();
                    return Err(Rejection::new(
                        RejectCode::PiiDetected,
                        format!(
                            "the event's free text contains personal data ({})",
                            kinds[0].as_str()
                        ),
                    ));
                }
                *text = clean;
                scrubbed = true;
            }
        }
        if scrubbed {
            self.metrics.pii_scrubbed.inc();
        }
        Ok(((!error.is_empty()).then_some(error), message))
    }
}

/// How an adjusted dimension or metric is named in the ingest answer: `metrics.KEY` for a number
/// sent or expected, else `dims.KEY`.
fn extra_field(key: &str, number: bool) -> String {
    let map = if number { "metrics" } else { "dims" };
    format!("{map}.{key}")
}

fn set_field(draft: &mut Draft, schema: &Schema, field: Field, key: &str, value: FieldValue) {
    let wrong_type =
        |draft: &mut Draft| draft.adjust(field.name().to_string(), AdjustReason::WrongType);
    match field {
        Field::Timestamp => draft.timestamp = Some(value),
        Field::SampleRate => {
            draft.sample_rate = match value {
                FieldValue::Num(rate) if rate > 0.0 && rate <= 1.0 => Some(rate),
                _ => None,
            };
            if draft.sample_rate.is_none() {
                wrong_type(draft);
            }
        }
        Field::SchemaVersion => {
            let number = match &value {
                FieldValue::Num(n) => Some(*n),
                FieldValue::Str(s) => s.trim().parse().ok(),
                _ => None,
            };
            draft.schema_version = number
                .filter(|n| n.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(n))
                .map(|n| n as u32);
            if draft.schema_version.is_none() {
                wrong_type(draft);
            }
        }
        Field::Level => {
            draft.level = value.into_text().and_then(|t| Level::parse(&t));
            if draft.level.is_none() {
                wrong_type(draft);
            }
        }
        Field::Message => {
            draft.message = value
                .into_text()
                .filter(|t| !t.is_empty())
                .map(|t| cut(t, MAX_TEXT_CHARS))
        }
        _ => {
            let Some(text) = value.into_text() else {
                return wrong_type(draft);
            };
            let text = match schema.check_text(key, text) {
                Ok(kept) => {
                    if let Some(reason) = kept.changed {
                        draft.adjust(field.name().to_string(), reason);
                    }
                    kept.value
                }
                Err(reason) => return draft.adjust(field.name().to_string(), reason),
            };
            // An error's message and stack are free text and keep their length, however they
            // arrive (the `error` object, `error_stack`, OTLP's `exception.*`).
            let limit = match field {
                Field::ErrorMessage | Field::ErrorStack => MAX_TEXT_CHARS,
                _ => MAX_FIELD_CHARS,
            };
            if text.len() > limit && text.chars().count() > limit {
                draft.adjust(field.name().to_string(), AdjustReason::Truncated);
            }
            let text = cut(text, limit);
            match field {
                Field::Id => draft.id = Some(text),
                Field::Name => draft.name = Some(text),
                Field::ErrorDomain => draft.error.domain = Some(text),
                Field::ErrorCode => draft.error.code = Some(text),
                Field::ErrorMessage => draft.error.message = Some(text),
                Field::ErrorStack => draft.error.stack = Some(text),
                _ if text.is_empty() => {}
                _ => match draft.strings.iter_mut().find(|(f, _)| *f == field) {
                    Some((_, slot)) => *slot = text,
                    None => draft.strings.push((field, text)),
                },
            }
        }
    }
}

/// A W3C trace or span id (32 or 16 hex digits) in a trace-context field: random by the spec,
/// so never taken for PII when it happens to be all digits that pass a card check.
fn is_trace_context_id(field: Field, value: &FieldValue) -> bool {
    let FieldValue::Str(text) = value else {
        return false;
    };
    matches!(field, Field::TraceId | Field::SpanId | Field::ParentSpanId)
        && matches!(text.len(), 16 | 32)
        && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The client's UUID, a stable UUID derived from a non-UUID client id (so it still dedups), or
/// a new time-ordered UUIDv7 (also for the nil UUID, which identifies nothing).
fn event_id(product: &str, client_id: Option<&str>) -> Uuid {
    let Some(text) = client_id else {
        return Uuid::now_v7();
    };
    match Uuid::parse_str(text) {
        Ok(id) if id.is_nil() => Uuid::now_v7(),
        Ok(id) => id,
        Err(_) => {
            let digest = Sha256::digest(format!("{product}\u{0}{text}").as_bytes());
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            Uuid::new_v8(bytes)
        }
    }
}

fn cut(mut text: String, max_chars: usize) -> String {
    if text.len() > max_chars {
        let end = text
            .char_indices()
            .nth(max_chars)
            .map(|(i, _)| i)
            .unwrap_or(text.len());
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_that_look_like_card_numbers_are_ids() {
        // All digits, Luhn-valid, a Visa prefix: a card number anywhere else.
        let digits = "4111111111111111";
        assert!(PiiDetector::all().detect(digits).is_some());
        let span = FieldValue::Str(digits.into());
        assert!(is_trace_context_id(Field::SpanId, &span));
        assert!(is_trace_context_id(Field::ParentSpanId, &span));
        let trace = FieldValue::Str(digits.repeat(2));
        assert!(is_trace_context_id(Field::TraceId, &trace));
        // Elsewhere, or not of a trace id's shape, the usual checks apply.
        assert!(!is_trace_context_id(Field::InstallId, &span));
        let email = FieldValue::Str("alice@example.com".into());
        assert!(!is_trace_context_id(Field::TraceId, &email));
        assert!(!is_trace_context_id(Field::SpanId, &FieldValue::Num(1.0)));
    }
}
