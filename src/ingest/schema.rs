//! A product's allowlist (DESIGN §6), compiled once: which event names are accepted and what
//! each dimension may hold. Strict mode drops unknown keys, turns off-list enum values into
//! `"other"`, drops values of the wrong type and values that miss their pattern; each drop or
//! change comes with its [`AdjustReason`]. Nested context objects are flattened into dotted
//! snake_case keys ([`flatten`]) and meet the schema under those keys.

use rustc_hash::{FxHashMap, FxHashSet};

use regex::Regex;

use crate::config::{SchemaConfig, SchemaMode};
use crate::error::AdjustReason;
use crate::ingest::decode::FieldValue;
use crate::model::{DimValue, Field};

/// Longest dimension value kept; longer ones are cut at a character boundary.
pub const MAX_DIM_CHARS: usize = 256;
/// Most dimensions plus metrics kept on one event in open mode.
pub const MAX_OPEN_KEYS: usize = 64;
/// Deepest context object flattened into dimensions (`a.b.c.d` is three objects deep).
pub const MAX_NESTING: usize = 3;

#[derive(Debug)]
enum Kind {
    Enum(FxHashSet<String>),
    Number,
    Bool,
    Text,
    Pattern(Regex),
}

#[derive(Debug)]
pub struct Schema {
    strict: bool,
    // Fx hashing: the keys come from the config, so what a client sends cannot make them
    // collide; every dimension of every event looks its key up here.
    events: FxHashSet<String>,
    kinds: FxHashMap<String, Kind>,
    pub required: Vec<Field>,
}

/// What the schema made of one dimension.
#[derive(Debug, PartialEq)]
pub enum Checked {
    Dim(DimValue),
    Metric(f64),
}

/// A value the schema keeps, and how it changed it, if it did.
#[derive(Debug, PartialEq)]
pub struct Kept<T> {
    pub value: T,
    pub changed: Option<AdjustReason>,
}

impl<T> Kept<T> {
    fn as_is(value: T) -> Self {
        Kept {
            value,
            changed: None,
        }
    }
}

impl Schema {
    pub fn compile(config: &SchemaConfig) -> Result<Schema, regex::Error> {
        let mut kinds = FxHashMap::default();
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

    /// Whether the schema holds numbers (metrics) under this key.
    pub fn expects_number(&self, key: &str) -> bool {
        matches!(self.kinds.get(key), Some(Kind::Number))
    }

    /// Whether a dimension under this key can be kept at all.
    pub fn keeps(&self, key: &str) -> bool {
        self.kinds.contains_key(key) || (!self.strict && open_key_ok(key))
    }

    /// A dimension or metric as it may be stored, or why it is dropped.
    pub fn check(&self, key: &str, value: FieldValue) -> Result<Kept<Checked>, AdjustReason> {
        match self.kinds.get(key) {
            Some(kind) => check_kind(kind, value),
            None if self.strict => Err(AdjustReason::UnknownKey),
            None if !open_key_ok(key) => Err(AdjustReason::InvalidKey),
            None => match value {
                FieldValue::Str(s) => Ok(cut_dim(s)),
                FieldValue::Bool(b) => Ok(Kept::as_is(Checked::Dim(DimValue::Bool(b)))),
                FieldValue::Num(n) => Ok(Kept::as_is(Checked::Metric(n))),
                _ => Err(AdjustReason::WrongType),
            },
        }
    }

    /// A canonical string field sent under `key`: checked against an enum or pattern the
    /// schema declares for that key; other keys pass unchanged.
    pub fn check_text(&self, key: &str, text: String) -> Result<Kept<String>, AdjustReason> {
        match self.kinds.get(key) {
            Some(kind @ (Kind::Enum(_) | Kind::Pattern(_))) => {
                let kept = check_kind(kind, FieldValue::Str(text))?;
                match kept.value {
                    Checked::Dim(DimValue::Str(s)) => Ok(Kept {
                        value: s,
                        changed: kept.changed,
                    }),
                    _ => Err(AdjustReason::WrongType),
                }
            }
            _ => Ok(Kept::as_is(text)),
        }
    }
}

fn check_kind(kind: &Kind, value: FieldValue) -> Result<Kept<Checked>, AdjustReason> {
    let dim = |v| Ok(Kept::as_is(Checked::Dim(v)));
    match (kind, value) {
        (Kind::Number, FieldValue::Num(n)) => Ok(Kept::as_is(Checked::Metric(n))),
        (Kind::Bool, FieldValue::Bool(b)) => dim(DimValue::Bool(b)),
        (Kind::Text, FieldValue::Str(s)) => Ok(cut_dim(s)),
        (
            Kind::Enum(values),
            value @ (FieldValue::Str(_) | FieldValue::Num(_) | FieldValue::Bool(_)),
        ) => {
            let text = value.into_text().ok_or(AdjustReason::WrongType)?;
            if values.contains(&text) {
                dim(DimValue::Str(text))
            } else {
                Ok(Kept {
                    value: Checked::Dim(DimValue::Str("other".to_string())),
                    changed: Some(AdjustReason::OffList),
                })
            }
        }
        (Kind::Pattern(re), FieldValue::Str(s)) if re.is_match(&s) => dim(DimValue::Str(s)),
        (Kind::Pattern(_), FieldValue::Str(_)) => Err(AdjustReason::Pattern),
        _ => Err(AdjustReason::WrongType),
    }
}

/// A string dimension, cut to [`MAX_DIM_CHARS`] (noted when it was).
fn cut_dim(text: String) -> Kept<Checked> {
    let long = text.len() > MAX_DIM_CHARS && text.chars().count() > MAX_DIM_CHARS;
    Kept {
        value: Checked::Dim(DimValue::Str(truncate(text))),
        changed: long.then_some(AdjustReason::Truncated),
    }
}

/// Flattens a nested context object sent under `prefix` (already snake_case) into dotted
/// snake_case keys: `{"dictationContext": {"model": {"name": "x"}}}` gives
/// `dictation_context.model.name`. Each leaf goes to `leaf(key, Some(value))`; an object deeper
/// than [`MAX_NESTING`] to `leaf(key, None)`, and goes no further.
pub fn flatten(
    prefix: &str,
    inner: Vec<(String, FieldValue)>,
    leaf: &mut dyn FnMut(String, Option<FieldValue>),
) {
    flatten_at(prefix, inner, 1, leaf)
}

fn flatten_at(
    prefix: &str,
    inner: Vec<(String, FieldValue)>,
    depth: usize,
    leaf: &mut dyn FnMut(String, Option<FieldValue>),
) {
    for (key, value) in inner {
        let key = format!("{prefix}.{}", snake_case(&key));
        match value {
            FieldValue::Object(deeper) if depth < MAX_NESTING => {
                flatten_at(&key, deeper, depth + 1, leaf)
            }
            FieldValue::Object(_) => leaf(key, None),
            value => leaf(key, Some(value)),
        }
    }
}

/// `dictationContext` → `dictation_context`, `HTTPStatus` → `http_status`, `a-b` → `a_b`.
pub fn snake_case(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let mut out = String::with_capacity(key.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1);
            let boundary = prev.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit())
                || (prev.is_some_and(char::is_uppercase) && next.is_some_and(|n| n.is_lowercase()));
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else if c == '-' || c == ' ' {
            out.push('_');
        } else {
            out.push(c);
        }
    }
    out
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
        let kept = |v| Ok(Kept::as_is(Checked::Dim(v)));
        assert_eq!(
            schema.check("carrier", s("twilio")),
            kept(DimValue::Str("twilio".into()))
        );
        assert_eq!(
            schema.check("carrier", s("acme")),
            Ok(Kept {
                value: Checked::Dim(DimValue::Str("other".into())),
                changed: Some(AdjustReason::OffList)
            })
        );
        assert_eq!(
            schema.check("latency_ms", FieldValue::Num(812.0)),
            Ok(Kept::as_is(Checked::Metric(812.0)))
        );
        assert_eq!(
            schema.check("latency_ms", s("812ms")),
            Err(AdjustReason::WrongType)
        );
        assert_eq!(
            schema.check("container", s("yes")),
            Err(AdjustReason::WrongType)
        );
        assert_eq!(
            schema.check("container", FieldValue::Bool(true)),
            kept(DimValue::Bool(true))
        );
        assert_eq!(
            schema.check("llm_model", s("ft:gpt-4o:acme:x")),
            Err(AdjustReason::Pattern)
        );
        assert_eq!(
            schema.check("llm_model", s("gpt-4o")),
            kept(DimValue::Str("gpt-4o".into()))
        );
        assert_eq!(
            schema.check("unknown", s("x")),
            Err(AdjustReason::UnknownKey)
        );
        assert_eq!(
            schema.check_text("carrier", "zzz".into()),
            Ok(Kept {
                value: "other".into(),
                changed: Some(AdjustReason::OffList)
            })
        );
        assert_eq!(
            schema.check_text("llm_model", "BAD MODEL".into()),
            Err(AdjustReason::Pattern)
        );
        assert_eq!(
            schema.check_text("free", "anything".into()),
            Ok(Kept::as_is("anything".into()))
        );
    }

    #[test]
    fn open_mode_keeps_by_type() {
        let schema = Schema::compile(&SchemaConfig::default()).unwrap();
        assert!(schema.accepts_event("anything"));
        assert_eq!(
            schema.check("k", s("v")),
            Ok(Kept::as_is(Checked::Dim(DimValue::Str("v".into()))))
        );
        assert_eq!(
            schema.check("n", FieldValue::Num(1.5)),
            Ok(Kept::as_is(Checked::Metric(1.5)))
        );
        assert_eq!(
            schema.check("bad key!", s("v")),
            Err(AdjustReason::InvalidKey)
        );
        assert_eq!(
            schema.check("o", FieldValue::Object(vec![])),
            Err(AdjustReason::WrongType)
        );
        let long = "é".repeat(300);
        assert_eq!(
            schema.check("k", FieldValue::Str(long)),
            Ok(Kept {
                value: Checked::Dim(DimValue::Str("é".repeat(MAX_DIM_CHARS))),
                changed: Some(AdjustReason::Truncated)
            })
        );
        let exact = "é".repeat(MAX_DIM_CHARS);
        assert_eq!(
            schema.check("k", FieldValue::Str(exact)).unwrap().changed,
            None
        );
    }

    #[test]
    fn nested_objects_flatten_to_dotted_snake_case_keys_to_a_depth() {
        let object = |pairs: Vec<(&str, FieldValue)>| {
            FieldValue::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        };
        let context = vec![
            ("backend".to_string(), s("cloud")),
            (
                "model".to_string(),
                object(vec![
                    ("name", s("x")),
                    ("sizeMB", FieldValue::Num(40.0)),
                    (
                        "deep",
                        object(vec![("deeper", object(vec![("z", s("1"))]))]),
                    ),
                ]),
            ),
        ];
        let mut leaves = Vec::new();
        flatten(&snake_case("dictationContext"), context, &mut |k, v| {
            leaves.push((k, v))
        });
        assert_eq!(
            leaves,
            vec![
                ("dictation_context.backend".to_string(), Some(s("cloud"))),
                ("dictation_context.model.name".to_string(), Some(s("x"))),
                (
                    "dictation_context.model.size_mb".to_string(),
                    Some(FieldValue::Num(40.0))
                ),
                ("dictation_context.model.deep.deeper".to_string(), None),
            ]
        );
        assert_eq!(snake_case("HTTPStatus"), "http_status");
        assert_eq!(snake_case("userID2"), "user_id2");
        assert_eq!(snake_case("already_snake"), "already_snake");
        assert_eq!(snake_case("kebab-case"), "kebab_case");
    }
}
