//! The canonical event every wire format is mapped onto (DESIGN §5), and the fields clients may
//! send (their names live in the field catalogue, [`crate::fields`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::fields::{FieldDef, FIELDS};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub id: Uuid,
    pub product: String,
    pub name: String,
    /// Milliseconds since the epoch, corrected for clock skew.
    pub timestamp: i64,
    pub received_at: i64,
    pub level: Level,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// W3C trace context (hex), for spans and logs (OTLP) and events that carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_code: Option<String>,
    /// Free text the event carries (a log record's body), scrubbed like error text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dims: BTreeMap<String, DimValue>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// The effective sample rate (client × server); the event stands for [`weight_of_rate`]
    /// events.
    pub sample_rate: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u32>,
    pub source: Source,
    /// What ingest changed about the event (`clock_drift_corrected`, `timestamp_in_future`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

/// An empty event: nil id, no product or name, time 0, `info`, sample rate 1, native.
impl Default for Event {
    fn default() -> Self {
        Event {
            id: Uuid::nil(),
            product: String::new(),
            name: String::new(),
            timestamp: 0,
            received_at: 0,
            level: Level::default(),
            platform: None,
            channel: None,
            module: None,
            app_version: None,
            release_channel: None,
            os_family: None,
            os_version: None,
            arch: None,
            runtime: None,
            device_model: None,
            install_id: None,
            user_id: None,
            session_id: None,
            trace_id: None,
            span_id: None,
            parent_span_id: None,
            country_code: None,
            region_code: None,
            message: None,
            error: None,
            fingerprint: None,
            dims: BTreeMap::new(),
            metrics: BTreeMap::new(),
            sample_rate: 1.0,
            schema_version: None,
            source: Source::default(),
            flags: Vec::new(),
        }
    }
}

/// How many events one event sampled at `rate` stands for: 1 / rate (1 for a rate that is not
/// in (0, 1]).
pub fn weight_of_rate(rate: f64) -> f64 {
    if rate > 0.0 && rate <= 1.0 {
        1.0 / rate
    } else {
        1.0
    }
}

impl Event {
    /// An event of `product` named `name` with a fresh (random) id; set what else matters with
    /// struct update: `Event { level: Level::Error, ..Event::new("app", "crash") }`.
    pub fn new(product: impl Into<String>, name: impl Into<String>) -> Event {
        Event {
            id: Uuid::new_v4(),
            product: product.into(),
            name: name.into(),
            ..Event::default()
        }
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
    Fatal,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
        Level::Fatal,
    ];

    /// Accepts the names SDKs use, case-insensitively (`warning`, `critical`, ...).
    pub fn parse(text: &str) -> Option<Level> {
        match text.to_ascii_lowercase().as_str() {
            "debug" | "trace" | "verbose" => Some(Level::Debug),
            "info" | "information" | "log" | "notice" => Some(Level::Info),
            "warn" | "warning" => Some(Level::Warn),
            "error" | "err" => Some(Level::Error),
            "fatal" | "critical" | "crash" | "panic" => Some(Level::Fatal),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
}

impl ErrorInfo {
    pub fn is_empty(&self) -> bool {
        self.domain.is_none()
            && self.code.is_none()
            && self.message.is_none()
            && self.stack.is_none()
    }
}

/// An allowlisted dimension value.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum DimValue {
    Bool(bool),
    Str(String),
}

/// Read by type, not as serde's `untagged` does it (buffer the value, try `Bool`, build and
/// format the error, try `Str`): every stored event is decoded through here, and the untagged
/// way cost the store's readers (search catch-up, sinks, exports) several percent of their time.
impl<'de> Deserialize<'de> for DimValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DimValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a boolean")
            }
            fn visit_bool<E>(self, value: bool) -> Result<DimValue, E> {
                Ok(DimValue::Bool(value))
            }
            fn visit_str<E>(self, value: &str) -> Result<DimValue, E> {
                Ok(DimValue::Str(value.to_string()))
            }
            fn visit_string<E>(self, value: String) -> Result<DimValue, E> {
                Ok(DimValue::Str(value))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The wire format an event arrived in (`native`, `flat`, ...), named by the format that
/// decoded it (`ingest::formats`), so a new format needs no change here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct Source(std::borrow::Cow<'static, str>);

impl Source {
    pub const NATIVE: Source = Source::named("native");
    pub const FLAT: Source = Source::named("flat");

    pub const fn named(name: &'static str) -> Source {
        Source(std::borrow::Cow::Borrowed(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Source {
    fn default() -> Source {
        Source::NATIVE
    }
}

/// A canonical field a client may send, by wire name or through a product's `[mapping]`. Its
/// names are in the field catalogue ([`crate::fields::FIELDS`], the entries whose `wire` is the
/// variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Id,
    Name,
    Timestamp,
    Level,
    Platform,
    Channel,
    Module,
    AppVersion,
    ReleaseChannel,
    OsFamily,
    OsVersion,
    Arch,
    Runtime,
    DeviceModel,
    InstallId,
    UserId,
    SessionId,
    TraceId,
    SpanId,
    ParentSpanId,
    SampleRate,
    SchemaVersion,
    Message,
    ErrorDomain,
    ErrorCode,
    ErrorMessage,
    ErrorStack,
}

impl Field {
    /// The catalogue entries clients may set, in catalogue order.
    fn entries() -> impl Iterator<Item = (Field, &'static FieldDef)> {
        FIELDS.iter().filter_map(|d| d.wire.map(|f| (f, d)))
    }

    pub fn from_name(name: &str) -> Option<Field> {
        Self::entries()
            .find(|(_, d)| d.name == name)
            .map(|(f, _)| f)
    }

    /// Snake-case name, camelCase spelling or an SDK's name for it, as accepted in native events
    /// and client requests.
    pub fn from_wire_name(name: &str) -> Option<Field> {
        Self::entries()
            .find(|(_, d)| d.client_names().any(|n| n == name))
            .map(|(f, _)| f)
    }

    pub fn name(self) -> &'static str {
        Self::entries()
            .find(|(f, _)| *f == self)
            .map(|(_, d)| d.name)
            .unwrap_or("unknown")
    }

    /// Every accepted wire name: snake_case names, camelCase spellings and the names SDKs send
    /// it under ([`FieldDef::client_names`]).
    pub fn wire_names() -> impl Iterator<Item = (Field, &'static str)> {
        Self::entries().flat_map(|(f, d)| d.client_names().map(move |n| (f, n)))
    }

    /// An identifier (an event, install, user, session or trace id): its value is checked for
    /// personal data as an id is ([`crate::fields::Kind::Id`]).
    pub fn is_identifier(self) -> bool {
        Self::entries().any(|(f, d)| f == self && d.kind == crate::fields::Kind::Id)
    }

    pub fn names() -> Vec<&'static str> {
        Self::entries().map(|(_, d)| d.name).collect()
    }

    /// Parts of the error report, scrubbed as free text rather than checked as fields.
    pub fn is_free_text(self) -> bool {
        matches!(
            self,
            Field::Message
                | Field::ErrorDomain
                | Field::ErrorCode
                | Field::ErrorMessage
                | Field::ErrorStack
        )
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VARIANTS: [Field; 27] = [
        Field::Id,
        Field::Name,
        Field::Timestamp,
        Field::Level,
        Field::Platform,
        Field::Channel,
        Field::Module,
        Field::AppVersion,
        Field::ReleaseChannel,
        Field::OsFamily,
        Field::OsVersion,
        Field::Arch,
        Field::Runtime,
        Field::DeviceModel,
        Field::InstallId,
        Field::UserId,
        Field::SessionId,
        Field::TraceId,
        Field::SpanId,
        Field::ParentSpanId,
        Field::SampleRate,
        Field::SchemaVersion,
        Field::Message,
        Field::ErrorDomain,
        Field::ErrorCode,
        Field::ErrorMessage,
        Field::ErrorStack,
    ];

    #[test]
    fn every_wire_field_has_one_catalogue_entry() {
        for field in VARIANTS {
            let entries = FIELDS.iter().filter(|d| d.wire == Some(field)).count();
            assert_eq!(entries, 1, "{field:?}");
            assert_eq!(Field::from_name(field.name()), Some(field));
            assert_eq!(Field::from_wire_name(field.name()), Some(field));
        }
        assert_eq!(Field::names().len(), VARIANTS.len());
        for (field, name) in Field::wire_names() {
            assert_eq!(Field::from_wire_name(name), Some(field), "{name}");
        }
        assert_eq!(
            Field::from_wire_name("anonymousInstallId"),
            Some(Field::InstallId)
        );
        assert!(Field::InstallId.is_identifier() && Field::SessionId.is_identifier());
        assert!(!Field::Platform.is_identifier());
    }

    #[test]
    fn wire_names_are_snake_case_or_camel_case() {
        for (name, field) in [
            ("eventId", Field::Id),
            ("eventName", Field::Name),
            ("ts", Field::Timestamp),
            ("severity", Field::Level),
            ("appVersion", Field::AppVersion),
            ("release_channel", Field::ReleaseChannel),
            ("errorStack", Field::ErrorStack),
        ] {
            assert_eq!(Field::from_wire_name(name), Some(field), "{name}");
        }
        // Only the snake_case name is a mapping target; fields clients cannot set are neither.
        assert_eq!(Field::from_name("appVersion"), None);
        for name in [
            "product",
            "country_code",
            "country",
            "fingerprint",
            "received_at",
        ] {
            assert_eq!(Field::from_wire_name(name), None, "{name}");
        }
    }

    #[test]
    fn default_event() {
        let event = Event::default();
        assert!(event.id.is_nil());
        assert_eq!(event.sample_rate, 1.0);
        assert_eq!((event.level, event.source), (Level::Info, Source::NATIVE));
        let a = Event::new("app", "started");
        assert_eq!((a.product.as_str(), a.name.as_str()), ("app", "started"));
        assert_ne!(a.id, Event::new("app", "started").id);
    }

    #[test]
    fn dimension_values_read_back_as_written() {
        let dims: BTreeMap<String, DimValue> = [
            ("carrier".to_string(), DimValue::Str("twilio".into())),
            (
                "escaped".to_string(),
                DimValue::Str("a \"quoted\" \u{e9}".into()),
            ),
            ("recorded".to_string(), DimValue::Bool(false)),
            ("streaming".to_string(), DimValue::Bool(true)),
        ]
        .into();
        let json = serde_json::to_string(&dims).unwrap();
        let back: BTreeMap<String, DimValue> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, dims);
        assert_eq!(serde_json::to_value(&dims["recorded"]).unwrap(), false);
        let err = serde_json::from_str::<DimValue>("12")
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected a string or a boolean"), "{err}");
    }
}
