//! A product's allowlist (DESIGN §6), compiled once: which event names are accepted and what
//! each dimension may hold. Strict mode drops unknown keys, turns off-list enum values into
//! `"other"`, drops values of the wrong type and values that miss their pattern.

use std::collections::{HashMap, HashSet};

use regex::Regex;

use crate::config::{SchemaConfig, SchemaMode};
use crate::ingest::decode::FieldValue;
use crate::model::{DimValue, Field};

/// Longest dimension value kept; longer ones are cut at a character boundary.
pub const MAX_DIM_CHARS: usize = 256;
/// Most dimensions plus metrics kept on one event in open mode.
pub const MAX_OPEN_KEYS: usize = 64;

#[derive(Debug)]
enum Kind {
    Enum(HashSet<String>),
    Number,
    Bool,
    Text,
    Pattern(Regex),
}

#[derive(Debug)]
pub struct Schema {
    strict: bool,
    events: HashSet<String>,
    kinds: HashMap<String, Kind>,
    pub required: Vec<Field>,
}

/// What the schema made of one dimension.
#[derive(Debug, PartialEq)]
pub enum Checked {
    Dim(DimValue),
    Metric(f64),
}

impl Schema {
    pub fn compile(config: &SchemaConfig) -> Result<Schema, regex::Error> {
        let mut kinds = HashMap::new();
        for (name, values) in &config.enums {
            kinds.insert(name.clone(), Kind::Enum(values.iter().cloned().collect()));
        }
        for name in &config.numbers {
            kinds.insert(name.clone(), Kind::Number);
        }
        for name in &config.bools {
            kinds.insert(name.clone(), Kind::Bool);
        }
        for name in &config.strings {
            kinds.insert(name.clone(), Kind::Text);
        }
        for (name, pattern) in &config.patterns {
            kinds.insert(name.clone(), Kind::Pattern(Regex::new(pattern)?));
        }
        Ok(Schema {
            strict: config.mode == SchemaMode::Strict,
            events: config.events.iter().cloned().collect(),
            kinds,
            required: config
                .required
                .iter()
                .filter_map(|f| Field::from_name(f))
                .collect(),
        })
    }

    pub fn accepts_event(&self, name: &str) -> bool {
        !self.strict || self.events.contains(name)
    }

    /// Whether a dimension under this key can be kept at all.
    pub fn keeps(&self, key: &str) -> bool {
        self.kinds.contains_key(key) || (!self.strict && open_key_ok(key))
    }

    /// A dimension or metric as it may be stored, or `None` when it is dropped.
    pub fn check(&self, key: &str, value: FieldValue) -> Option<Checked> {
        match self.kinds.get(key) {
            Some(kind) => check_kind(kind, value),
            None if self.strict => None,
            None if !open_key_ok(key) => None,
            None => match value {
                FieldValue::Str(s) => Some(Checked::Dim(DimValue::Str(truncate(s)))),
                FieldValue::Bool(b) => Some(Checked::Dim(DimValue::Bool(b))),
                FieldValue::Num(n) => Some(Checked::Metric(n)),
                _ => None,
            },
        }
    }

    /// A canonical string field sent under `key`: checked against an enum or pattern the
    /// schema declares for that key; other keys pass unchanged.
    pub fn check_text(&self, key: &str, text: String) -> Option<String> {
        match self.kinds.get(key) {
            Some(kind @ (Kind::Enum(_) | Kind::Pattern(_))) => {
                match check_kind(kind, FieldValue::Str(text)) {
                    Some(Checked::Dim(DimValue::Str(s))) => Some(s),
                    _ => None,
                }
            }
            _ => Some(text),
        }
    }
}

fn check_kind(kind: &Kind, value: FieldValue) -> Option<Checked> {
    match (kind, value) {
        (Kind::Number, FieldValue::Num(n)) => Some(Checked::Metric(n)),
        (Kind::Bool, FieldValue::Bool(b)) => Some(Checked::Dim(DimValue::Bool(b))),
        (Kind::Text, FieldValue::Str(s)) => Some(Checked::Dim(DimValue::Str(truncate(s)))),
        (
            Kind::Enum(values),
            value @ (FieldValue::Str(_) | FieldValue::Num(_) | FieldValue::Bool(_)),
        ) => {
            let text = value.into_text()?;
            let kept = if values.contains(&text) {
                text
            } else {
                "other".to_string()
            };
            Some(Checked::Dim(DimValue::Str(kept)))
        }
        (Kind::Pattern(re), FieldValue::Str(s)) if re.is_match(&s) => {
            Some(Checked::Dim(DimValue::Str(s)))
        }
        _ => None,
    }
}

/// Keys that open mode keeps: short identifiers, so the index's field list stays sane.
fn open_key_ok(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

pub fn truncate(mut s: String) -> String {
    if s.chars().count() > MAX_DIM_CHARS {
        let cut = s
            .char_indices()
            .nth(MAX_DIM_CHARS)
            .map(|(i, _)| i)
            .unwrap_or(s.len());
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> Schema {
        let config: SchemaConfig = toml::from_str(
            r#"
            mode = "strict"
            events = ["call_completed"]
            numbers = ["latency_ms"]
            bools = ["container"]
            strings = ["note"]
            [enums]
            carrier = ["twilio", "none"]
            [patterns]
            llm_model = "^[a-z0-9][a-z0-9.-]{0,40}$"
            "#,
        )
        .unwrap();
        Schema::compile(&config).unwrap()
    }

    fn s(v: &str) -> FieldValue {
        FieldValue::Str(v.into())
    }

    #[test]
    fn strict_coercions() {
        let schema = strict();
        assert!(schema.accepts_event("call_completed"));
        assert!(!schema.accepts_event("other_event"));
        assert_eq!(
            schema.check("carrier", s("twilio")),
            Some(Checked::Dim(DimValue::Str("twilio".into())))
        );
        assert_eq!(
            schema.check("carrier", s("acme")),
            Some(Checked::Dim(DimValue::Str("other".into())))
        );
        assert_eq!(
            schema.check("latency_ms", FieldValue::Num(812.0)),
            Some(Checked::Metric(812.0))
        );
        assert_eq!(schema.check("latency_ms", s("812ms")), None);
        assert_eq!(schema.check("container", s("yes")), None);
        assert_eq!(
            schema.check("container", FieldValue::Bool(true)),
            Some(Checked::Dim(DimValue::Bool(true)))
        );
        assert_eq!(schema.check("llm_model", s("ft:gpt-4o:acme:x")), None);
        assert_eq!(
            schema.check("llm_model", s("gpt-4o")),
            Some(Checked::Dim(DimValue::Str("gpt-4o".into())))
        );
        assert_eq!(schema.check("unknown", s("x")), None);
        assert_eq!(
            schema.check_text("carrier", "zzz".into()),
            Some("other".into())
        );
        assert_eq!(schema.check_text("llm_model", "BAD MODEL".into()), None);
        assert_eq!(
            schema.check_text("free", "anything".into()),
            Some("anything".into())
        );
    }

    #[test]
    fn open_mode_keeps_by_type() {
        let schema = Schema::compile(&SchemaConfig::default()).unwrap();
        assert!(schema.accepts_event("anything"));
        assert_eq!(
            schema.check("k", s("v")),
            Some(Checked::Dim(DimValue::Str("v".into())))
        );
        assert_eq!(
            schema.check("n", FieldValue::Num(1.5)),
            Some(Checked::Metric(1.5))
        );
        assert_eq!(schema.check("bad key!", s("v")), None);
        assert_eq!(schema.check("o", FieldValue::Object(vec![])), None);
        let long = "é".repeat(300);
        assert_eq!(
            schema.check("k", FieldValue::Str(long)),
            Some(Checked::Dim(DimValue::Str("é".repeat(MAX_DIM_CHARS))))
        );
    }
}
