//! The event field catalogue: one entry per field of [`Event`], with its canonical name, the
//! other names accepted for it, its kind, how to read it from an event and where it is used.
//!
//! Everything that lists event fields derives from [`FIELDS`]:
//! - the search index: one exact-match string field per [`Use::Exact`] entry (a fast column too
//!   with [`Use::Column`], a number column beside it with [`Use::HexId`]), and the free-text
//!   field fed by the [`Use::Text`] entries;
//! - the query language (`field:value` for every exact field, by name or alias), the search
//!   [`Filter`](crate::search::Filter) and the API's filter parameters ([`Use::Filter`]), and
//!   the breakdowns ([`Use::Breakdown`]);
//! - the install registry's last-seen context ([`Use::Install`],
//!   [`InstallRecord`](crate::store::InstallRecord));
//! - the policy targeting context ([`Use::Targeting`],
//!   [`ClientContext`](crate::policies::ClientContext));
//! - the names clients may send a field under in native events ([`FieldDef::wire`],
//!   [`FieldDef::camel`]; [`model::Field`](crate::model::Field) is built on them).
//!
//! Names are the stored [`Event`] member names everywhere (`country_code`, not `country`); the
//! [`FieldDef::aliases`] are older spellings still accepted on input (query parameters, the query
//! language, breakdowns, stored filters).
//!
//! Adding an event field: the `Event` member (and its value in `Event::default`), then one entry
//! below. A field clients may send also needs its [`model::Field`](crate::model::Field) variant
//! and its place in the ingest pipeline's event; a field policies may target also needs its
//! `Targeting` list. An index written before a change to the exact fields ([`Use::Exact`],
//! [`Use::Column`], [`Use::HexId`]) has another schema and is rebuilt from the store on the next
//! start; a change to what feeds the free text ([`Use::Text`]) does not show in the schema and
//! needs `search::schema::SCHEMA_VERSION` bumped for that.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::{Event, Field as Wire};

/// What a field holds, which decides how it can be matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A short word matched whole and case-sensitively: `platform:ios`.
    Keyword,
    /// An identifier, matched whole like a keyword; nearly one value per event, session, user or
    /// install.
    Id,
    /// Free text, found by its words.
    Text,
    Number,
    /// Milliseconds since the epoch.
    Time,
    /// Named values: the dimensions (keywords) and metrics (numbers) of an event.
    Map,
}

/// Where a field is used. The catalogue's tests check the combinations that must go together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// An exact-match (raw string) field of the search index: `field:value` in queries.
    Exact,
    /// Also a fast (columnar) index field, needed to group by it. Needs [`Use::Exact`].
    Column,
    /// A 64-bit id in hex, unique to nearly every event that has one (a span id): a value in
    /// the canonical form (16 lowercase hex digits) is kept as a number in a fast column and
    /// found by scanning it, not as a term of its own (a term per event made the index's term
    /// dictionary the costliest part of indexing spans); any other value is an exact term.
    /// Needs [`Use::Exact`], excludes [`Use::Column`].
    HexId,
    /// Part of the free text that bare words and phrases search.
    Text,
    /// A filter parameter of the search API (`?platform=ios`) and a member of a search filter.
    /// Needs [`Use::Exact`].
    Filter,
    /// A breakdown (group-by) field. Needs [`Use::Column`].
    Breakdown,
    /// Kept per install in the install registry (the install's latest value).
    Install,
    /// Part of the client context policies are evaluated against.
    Targeting,
    /// A column of the CSV export, in catalogue order.
    Export,
}

type SlotFn = fn(&mut Event) -> &mut Option<String>;

/// One entry of the catalogue.
#[derive(Clone, Copy, Debug)]
pub struct FieldDef {
    pub field: EventField,
    /// The canonical name: the `Event` member (for the error parts, `error_` and the member of
    /// `ErrorInfo`), the index field, the query-language field and the API parameter.
    pub name: &'static str,
    /// Older spellings still accepted wherever a field is named on input.
    pub aliases: &'static [&'static str],
    pub kind: Kind,
    /// The field a client may set in an event, if it may (ingest's names for it are `name` and
    /// `camel`).
    pub wire: Option<Wire>,
    /// The camelCase spelling native events may use, where it differs from `name`.
    pub camel: Option<&'static str>,
    /// Other names SDKs send it under (`anonymousInstallId`, `tags`), accepted in events and
    /// client requests (`GET /api/v1/config`) like `name` and `camel`.
    pub client: &'static [&'static str],
    /// The value as text, for fields held as text (`None` when absent or not text).
    pub text: fn(&Event) -> Option<&str>,
    /// Where ingest puts the text a client sent, for the plain optional text fields.
    pub slot: Option<SlotFn>,
    pub uses: &'static [Use],
}

impl FieldDef {
    /// Every name a client may send the field under: `name`, `camel` and `client`.
    pub fn client_names(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.name)
            .chain(self.camel)
            .chain(self.client.iter().copied())
    }

    /// Defaults for the members an entry does not set.
    const BLANK: FieldDef = FieldDef {
        field: EventField::Id,
        name: "",
        aliases: &[],
        kind: Kind::Keyword,
        wire: None,
        camel: None,
        client: &[],
        text: |_| None,
        slot: None,
        uses: &[],
    };
}

/// Defines [`EventField`] (one variant per entry, with the entry's doc) and [`FIELDS`] (the
/// entries, in the same order) from one list.
macro_rules! catalogue {
    ($( $(#[doc = $doc:literal])* $variant:ident { $($def:tt)* } )*) => {
        /// An event field: a handle on its [`FieldDef`] in [`FIELDS`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum EventField {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl EventField {
            /// Every field, in catalogue order.
            pub const ALL: &'static [EventField] = &[$(EventField::$variant,)*];
        }

        /// The catalogue, in [`EventField`] order.
        pub const FIELDS: &[FieldDef] = &[$(
            FieldDef { field: EventField::$variant, $($def)* },
        )*];
    };
}

catalogue! {
    /// The event id: the client's UUID, or one derived from the client's id.
    Id {
        name: "id",
        kind: Kind::Id,
        wire: Some(Wire::Id),
        camel: Some("eventId"),
        uses: &[Use::Export],
        ..FieldDef::BLANK
    }
    /// When it happened, corrected for clock skew.
    Timestamp {
        name: "timestamp",
        kind: Kind::Time,
        wire: Some(Wire::Timestamp),
        camel: Some("ts"),
        uses: &[Use::Export],
        ..FieldDef::BLANK
    }
    /// When the server received it.
    ReceivedAt {
        name: "received_at",
        kind: Kind::Time,
        uses: &[Use::Export],
        ..FieldDef::BLANK
    }
    /// The product the event belongs to (from the ingest key or the request).
    Product {
        name: "product",
        text: |e| Some(e.product.as_str()),
        uses: &[Use::Exact, Use::Column, Use::Filter, Use::Breakdown, Use::Export],
        ..FieldDef::BLANK
    }
    /// The event name: `call_started`, `recognition_failed`.
    Name {
        name: "name",
        wire: Some(Wire::Name),
        camel: Some("eventName"),
        text: |e| Some(e.name.as_str()),
        uses: &[Use::Exact, Use::Column, Use::Text, Use::Filter, Use::Breakdown, Use::Export],
        ..FieldDef::BLANK
    }
    /// `debug`, `info`, `warn`, `error` or `fatal`. As a filter: one level or a comma list.
    Level {
        name: "level",
        wire: Some(Wire::Level),
        camel: Some("severity"),
        text: |e| Some(e.level.as_str()),
        uses: &[Use::Exact, Use::Column, Use::Filter, Use::Breakdown, Use::Export],
        ..FieldDef::BLANK
    }
    Platform {
        name: "platform",
        wire: Some(Wire::Platform),
        text: |e| e.platform.as_deref(),
        slot: Some(|e| &mut e.platform),
        uses: &[
            Use::Exact,
            Use::Column,
            Use::Filter,
            Use::Breakdown,
            Use::Install,
            Use::Targeting,
            Use::Export,
        ],
        ..FieldDef::BLANK
    }
    /// Where in the product the event comes from (`keyboard`, `app`).
    Channel {
        name: "channel",
        wire: Some(Wire::Channel),
        text: |e| e.channel.as_deref(),
        slot: Some(|e| &mut e.channel),
        uses: &[
            Use::Exact,
            Use::Column,
            Use::Filter,
            Use::Breakdown,
            Use::Install,
            Use::Targeting,
            Use::Export,
        ],
        ..FieldDef::BLANK
    }
    Module {
        name: "module",
        wire: Some(Wire::Module),
        text: |e| e.module.as_deref(),
        slot: Some(|e| &mut e.module),
        uses: &[Use::Exact, Use::Column, Use::Text, Use::Filter, Use::Breakdown, Use::Export],
        ..FieldDef::BLANK
    }
    AppVersion {
        name: "app_version",
        wire: Some(Wire::AppVersion),
        camel: Some("appVersion"),
        text: |e| e.app_version.as_deref(),
        slot: Some(|e| &mut e.app_version),
        uses: &[
            Use::Exact,
            Use::Column,
            Use::Filter,
            Use::Breakdown,
            Use::Install,
            Use::Targeting,
            Use::Export,
        ],
        ..FieldDef::BLANK
    }
    /// `stable`, `beta`, ...
    ReleaseChannel {
        name: "release_channel",
        wire: Some(Wire::ReleaseChannel),
        camel: Some("releaseChannel"),
        text: |e| e.release_channel.as_deref(),
        slot: Some(|e| &mut e.release_channel),
        uses: &[
            Use::Exact,
            Use::Column,
            Use::Filter,
            Use::Breakdown,
            Use::Install,
            Use::Targeting,
            Use::Export,
        ],
        ..FieldDef::BLANK
    }
    OsFamily {
        name: "os_family",
        wire: Some(Wire::OsFamily),
        camel: Some("osFamily"),
        text: |e| e.os_family.as_deref(),
        slot: Some(|e| &mut e.os_family),
        uses: &[Use::Exact, Use::Column, Use::Breakdown, Use::Export],
        ..FieldDef::BLANK
    }
    OsVersion {
        name: "os_version",
        wire: Some(Wire::OsVersion),
        camel: Some("osVersion"),
        text: |e| e.os_version.as_deref(),
        slot: Some(|e| &mut e.os_version),
        uses: &[Use::Export],
        ..FieldDef::BLANK
    }
    Arch {
        name: "arch",
        wire: Some(Wire::Arch),
        text: |e| e.arch.as_deref(),
        slot: Some(|e| &mut e.arch),
        uses: &[Use::Export],
        ..FieldDef::BLANK
    }
    Runtime {
        name: "runtime",
        wire: Some(Wire::Runtime),
        text: |e| e.runtime.as_deref(),
        slot: Some(|e| &mut e.runtime),
        uses: &[Use::Export],
        ..FieldDef::BLANK
    }
    DeviceModel {
        name: "device_model",
        wire: Some(Wire::DeviceModel),
        camel: Some("deviceModel"),
        text: |e| e.device_model.as_deref(),
        slot: Some(|e| &mut e.device_model),
        uses: &[Use::Export],
        ..FieldDef::BLANK
    }
    InstallId {
        name: "install_id",
        kind: Kind::Id,
        wire: Some(Wire::InstallId),
        camel: Some("installId"),
        // The dictation app's clients.
        client: &["anonymousInstallId"],
        text: |e| e.install_id.as_deref(),
        slot: Some(|e| &mut e.install_id),
        uses: &[Use::Exact, Use::Column, Use::Filter, Use::Breakdown, Use::Export],
        ..FieldDef::BLANK
    }
    UserId {
        name: "user_id",
        kind: Kind::Id,
        wire: Some(Wire::UserId),
        camel: Some("userId"),
        text: |e| e.user_id.as_deref(),
        slot: Some(|e| &mut e.user_id),
        uses: &[Use::Exact, Use::Column, Use::Filter, Use::Breakdown, Use::Export],
        ..FieldDef::BLANK
    }
    /// Indexed but not a column: one new value every few events would make its column the
    /// largest in the index, and nobody breaks down by session.
    SessionId {
        name: "session_id",
        kind: Kind::Id,
        wire: Some(Wire::SessionId),
        camel: Some("sessionId"),
        text: |e| e.session_id.as_deref(),
        slot: Some(|e| &mut e.session_id),
        uses: &[Use::Exact, Use::Column, Use::Filter, Use::Export],
        ..FieldDef::BLANK
    }
    /// The trace a span or log belongs to (32 hex digits), from OTLP or the client.
    TraceId {
        name: "trace_id",
        kind: Kind::Id,
        wire: Some(Wire::TraceId),
        camel: Some("traceId"),
        text: |e| e.trace_id.as_deref(),
        slot: Some(|e| &mut e.trace_id),
        uses: &[Use::Exact, Use::Filter, Use::Export],
        ..FieldDef::BLANK
    }
    /// The span itself (16 hex digits).
    SpanId {
        name: "span_id",
        kind: Kind::Id,
        wire: Some(Wire::SpanId),
        camel: Some("spanId"),
        text: |e| e.span_id.as_deref(),
        slot: Some(|e| &mut e.span_id),
        uses: &[Use::Exact, Use::HexId, Use::Filter, Use::Export],
        ..FieldDef::BLANK
    }
    /// The span's parent in its trace, if it has one.
    ParentSpanId {
        name: "parent_span_id",
        kind: Kind::Id,
        wire: Some(Wire::ParentSpanId),
        camel: Some("parentSpanId"),
        text: |e| e.parent_span_id.as_deref(),
        slot: Some(|e| &mut e.parent_span_id),
        uses: &[Use::Exact, Use::HexId, Use::Filter, Use::Export],
        ..FieldDef::BLANK
    }
    /// ISO 3166-1 alpha-2 (`US`), from the geo lookup of the sender's IP.
    CountryCode {
        name: "country_code",
        aliases: &["country"],
        text: |e| e.country_code.as_deref(),
        uses: &[
            Use::Exact,
            Use::Column,
            Use::Filter,
            Use::Breakdown,
            Use::Install,
            Use::Targeting,
            Use::Export,
        ],
        ..FieldDef::BLANK
    }
    /// ISO 3166-2 (`US-WA`), from the geo lookup of the sender's IP.
    RegionCode {
        name: "region_code",
        aliases: &["region"],
        text: |e| e.region_code.as_deref(),
        uses: &[
            Use::Exact,
            Use::Column,
            Use::Filter,
            Use::Breakdown,
            Use::Install,
            Use::Targeting,
            Use::Export,
        ],
        ..FieldDef::BLANK
    }
    /// Free text the event carries (a log record's body), scrubbed; searched by its words.
    Message {
        name: "message",
        kind: Kind::Text,
        wire: Some(Wire::Message),
        text: |e| e.message.as_deref(),
        uses: &[Use::Text, Use::Export],
        ..FieldDef::BLANK
    }
    /// `error.domain`.
    ErrorDomain {
        name: "error_domain",
        wire: Some(Wire::ErrorDomain),
        camel: Some("errorDomain"),
        text: |e| e.error.as_ref().and_then(|x| x.domain.as_deref()),
        uses: &[Use::Exact, Use::Column, Use::Text, Use::Breakdown, Use::Export],
        ..FieldDef::BLANK
    }
    /// `error.code`.
    ErrorCode {
        name: "error_code",
        wire: Some(Wire::ErrorCode),
        camel: Some("errorCode"),
        text: |e| e.error.as_ref().and_then(|x| x.code.as_deref()),
        uses: &[Use::Exact, Use::Column, Use::Text, Use::Breakdown, Use::Export],
        ..FieldDef::BLANK
    }
    /// `error.message` (scrubbed).
    ErrorMessage {
        name: "error_message",
        kind: Kind::Text,
        wire: Some(Wire::ErrorMessage),
        camel: Some("errorMessage"),
        text: |e| e.error.as_ref().and_then(|x| x.message.as_deref()),
        uses: &[Use::Text, Use::Export],
        ..FieldDef::BLANK
    }
    /// `error.stack` (scrubbed); stored, not searched.
    ErrorStack {
        name: "error_stack",
        kind: Kind::Text,
        wire: Some(Wire::ErrorStack),
        camel: Some("errorStack"),
        text: |e| e.error.as_ref().and_then(|x| x.stack.as_deref()),
        ..FieldDef::BLANK
    }
    /// The error cluster the event belongs to (set at ingest).
    Fingerprint {
        name: "fingerprint",
        kind: Kind::Id,
        text: |e| e.fingerprint.as_deref(),
        uses: &[Use::Exact, Use::Column, Use::Filter, Use::Breakdown],
        ..FieldDef::BLANK
    }
    /// Allowlisted dimensions: `carrier:twilio` in queries, breakdowns by `dims.NAME`.
    Dims {
        name: "dims",
        kind: Kind::Map,
        client: &["properties", "props", "tags"],
        uses: &[Use::Export],
        ..FieldDef::BLANK
    }
    /// Numeric measurements: `latency_ms:>500` in queries.
    Metrics {
        name: "metrics",
        kind: Kind::Map,
        uses: &[Use::Export],
        ..FieldDef::BLANK
    }
    /// The client's sampling rate (0 < rate <= 1), then the effective rate after policy.
    SampleRate {
        name: "sample_rate",
        kind: Kind::Number,
        wire: Some(Wire::SampleRate),
        camel: Some("sampleRate"),
        ..FieldDef::BLANK
    }
    SchemaVersion {
        name: "schema_version",
        kind: Kind::Number,
        wire: Some(Wire::SchemaVersion),
        camel: Some("schemaVersion"),
        ..FieldDef::BLANK
    }
    /// The wire format the event arrived in: `native` or `flat`.
    Source {
        name: "source",
        ..FieldDef::BLANK
    }
    /// What ingest changed about the event (`clock_drift_corrected`, ...).
    Flags {
        name: "flags",
        ..FieldDef::BLANK
    }
}

const fn uses_contain(uses: &[Use], wanted: Use) -> bool {
    let mut i = 0;
    while i < uses.len() {
        if uses[i] as u8 == wanted as u8 {
            return true;
        }
        i += 1;
    }
    false
}

const fn count_with(wanted: Use) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < FIELDS.len() {
        if uses_contain(FIELDS[i].uses, wanted) {
            n += 1;
        }
        i += 1;
    }
    n
}

const fn select<const N: usize>(wanted: Use) -> [EventField; N] {
    let mut out = [EventField::Id; N];
    let mut n = 0;
    let mut i = 0;
    while i < FIELDS.len() {
        if uses_contain(FIELDS[i].uses, wanted) {
            out[n] = FIELDS[i].field;
            n += 1;
        }
        i += 1;
    }
    out
}

/// The fields of the policy targeting context, in catalogue order.
pub const TARGETING: [EventField; count_with(Use::Targeting)] = select(Use::Targeting);

/// The fields kept per install in the install registry, in catalogue order (read per event).
pub const INSTALL: [EventField; count_with(Use::Install)] = select(Use::Install);

/// The fields that feed the free text, in catalogue order (read per indexed document).
pub const TEXT: [EventField; count_with(Use::Text)] = select(Use::Text);

/// Whether a dimension's key names an identifier (`call_uid`, `request_id`, `callId`): its value
/// is checked for personal data as an id's is.
pub fn is_identifier_key(key: &str) -> bool {
    key.ends_with("_id") || key.ends_with("_uid") || key.ends_with("Id") || key.ends_with("Uid")
}

impl EventField {
    pub fn def(self) -> &'static FieldDef {
        &FIELDS[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.def().name
    }

    pub fn kind(self) -> Kind {
        self.def().kind
    }

    pub fn has(self, wanted: Use) -> bool {
        uses_contain(self.def().uses, wanted)
    }

    /// The event's value of this field, for fields held as text.
    pub fn text(self, event: &Event) -> Option<&str> {
        (self.def().text)(event)
    }

    /// The field with this canonical name or alias (not the camelCase wire names).
    pub fn lookup(name: &str) -> Option<EventField> {
        FIELDS
            .iter()
            .find(|d| d.name == name || d.aliases.contains(&name))
            .map(|d| d.field)
    }

    /// The fields with this use, in catalogue order.
    pub fn with_use(wanted: Use) -> impl Iterator<Item = EventField> {
        Self::ALL.iter().copied().filter(move |f| f.has(wanted))
    }

    /// Where ingest puts the text a client sent for `wire`, if it is a plain text field.
    pub fn slot_for(wire: Wire) -> Option<SlotFn> {
        static SLOTS: std::sync::LazyLock<std::collections::HashMap<Wire, SlotFn>> =
            std::sync::LazyLock::new(|| {
                FIELDS
                    .iter()
                    .filter_map(|d| Some((d.wire?, d.slot?)))
                    .collect()
            });
        SLOTS.get(&wire).copied()
    }

    /// Position in [`TARGETING`] (the targeting context's slots), if targeted.
    pub fn targeting_slot(self) -> Option<usize> {
        TARGETING.iter().position(|f| *f == self)
    }
}

impl std::fmt::Display for EventField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// As its canonical name.
impl Serialize for EventField {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// From its canonical name or an alias.
impl<'de> Deserialize<'de> for EventField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(deserializer)?;
        EventField::lookup(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown event field `{name}`")))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::model::{DimValue, ErrorInfo};

    /// An event with every member set (other modules' tests use it too).
    pub(crate) fn full_event() -> Event {
        Event {
            platform: Some("ios".into()),
            channel: Some("keyboard".into()),
            module: Some("dictation".into()),
            app_version: Some("1.2.0".into()),
            release_channel: Some("beta".into()),
            os_family: Some("ios".into()),
            os_version: Some("17.1".into()),
            arch: Some("arm64".into()),
            runtime: Some("swift".into()),
            device_model: Some("iPhone15,2".into()),
            install_id: Some("install-1".into()),
            user_id: Some("user-1".into()),
            session_id: Some("session-1".into()),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            span_id: Some("00f067aa0ba902b7".into()),
            parent_span_id: Some("00f067aa0ba902b6".into()),
            country_code: Some("US".into()),
            region_code: Some("US-WA".into()),
            message: Some("the log body".into()),
            error: Some(ErrorInfo {
                domain: Some("audio".into()),
                code: Some("E_NO_AUDIO".into()),
                message: Some("no audio".into()),
                stack: Some("at main".into()),
            }),
            fingerprint: Some("fp".into()),
            dims: BTreeMap::from([("carrier".to_string(), DimValue::Str("twilio".into()))]),
            metrics: BTreeMap::from([("latency_ms".to_string(), 12.0)]),
            schema_version: Some(2),
            flags: vec!["clock_drift_corrected".into()],
            ..Event::new("app", "call_started")
        }
    }

    /// Every use but the export reads the field as text.
    fn needs_text(def: &FieldDef) -> bool {
        def.uses.iter().any(|u| *u != Use::Export)
    }

    #[test]
    fn entries_are_in_variant_order_with_unique_names() {
        let mut names = BTreeSet::new();
        for (i, def) in FIELDS.iter().enumerate() {
            assert_eq!(def.field as usize, i);
            assert_eq!(EventField::ALL[i], def.field);
            for name in std::iter::once(def.name).chain(def.aliases.iter().copied()) {
                assert!(names.insert(name), "{name} names two fields");
                assert_eq!(EventField::lookup(name), Some(def.field));
            }
        }
        assert_eq!(EventField::lookup("countryCode"), None);
        let mut client_names = BTreeSet::new();
        for def in FIELDS {
            for name in def.client_names().skip(1) {
                assert!(client_names.insert(name), "{name} names two fields");
                assert!(!names.contains(name) || name == def.name, "{name}");
            }
        }
        assert_eq!(
            Wire::from_wire_name("anonymousInstallId"),
            Some(Wire::InstallId)
        );
    }

    /// Every member of a serialized event is a catalogue entry, and every entry is a member (the
    /// error parts under `error`): a new `Event` member without its entry fails here.
    #[test]
    fn the_catalogue_covers_every_event_member() {
        let value = serde_json::to_value(full_event()).unwrap();
        let mut members: BTreeSet<String> = value
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "error")
            .cloned()
            .collect();
        for part in value["error"].as_object().unwrap().keys() {
            members.insert(format!("error_{part}"));
        }
        let names: BTreeSet<String> = FIELDS.iter().map(|d| d.name.to_string()).collect();
        assert_eq!(members, names);
    }

    #[test]
    fn text_accessors_read_their_own_member() {
        let event = full_event();
        let value = serde_json::to_value(&event).unwrap();
        for def in FIELDS {
            let stored = match def.name.strip_prefix("error_") {
                Some(part) => &value["error"][part],
                None => &value[def.name],
            };
            match (def.field.text(&event), stored) {
                (Some(text), serde_json::Value::String(s)) => assert_eq!(text, s, "{}", def.name),
                (None, serde_json::Value::String(_)) => {
                    assert!(!needs_text(def), "{} is used but has no accessor", def.name)
                }
                (Some(_), other) => panic!("{}: accessor for a non-string {other}", def.name),
                (None, _) => {}
            }
        }
    }

    #[test]
    fn ingest_slots_write_what_text_reads() {
        let mut slotted = 0;
        for def in FIELDS {
            let Some(slot) = def.slot else { continue };
            let wire = def.wire.expect("a slot is for a field clients send");
            let mut event = Event::default();
            *slot(&mut event) = Some(format!("value of {}", def.name));
            assert_eq!(
                (def.text)(&event),
                Some(format!("value of {}", def.name).as_str())
            );
            let by_wire = EventField::slot_for(wire).expect("found by its wire field");
            assert_eq!(by_wire as usize, slot as usize, "{}", def.name);
            slotted += 1;
        }
        assert_eq!(slotted, 16);
    }

    #[test]
    fn uses_that_need_each_other() {
        for def in FIELDS {
            let f = def.field;
            if f.has(Use::Column) || f.has(Use::Filter) {
                assert!(
                    f.has(Use::Exact),
                    "{}: a column or filter is exact",
                    def.name
                );
            }
            if f.has(Use::Breakdown) {
                assert!(
                    f.has(Use::Column),
                    "{}: a breakdown needs a column",
                    def.name
                );
            }
            if f.has(Use::HexId) {
                assert!(
                    f.has(Use::Exact) && !f.has(Use::Column),
                    "{}: a hex id is exact, and its number column is not a string column",
                    def.name
                );
            }
            if needs_text(def) {
                let event = full_event();
                assert!(f.text(&event).is_some(), "{}: used, so readable", def.name);
            }
        }
        // A column for analytics (distinct sessions, funnels per session), not a breakdown.
        assert!(EventField::SessionId.has(Use::Column));
        assert!(!EventField::SessionId.has(Use::Breakdown));
        assert_eq!(
            TARGETING.map(EventField::name),
            [
                "platform",
                "channel",
                "app_version",
                "release_channel",
                "country_code",
                "region_code"
            ]
        );
        assert_eq!(EventField::CountryCode.targeting_slot(), Some(4));
        assert_eq!(EventField::Product.targeting_slot(), None);
    }

    #[test]
    fn serde_by_name_accepting_aliases() {
        assert_eq!(
            serde_json::to_string(&EventField::CountryCode).unwrap(),
            "\"country_code\""
        );
        let f: EventField = serde_json::from_str("\"region\"").unwrap();
        assert_eq!(f, EventField::RegionCode);
        assert!(serde_json::from_str::<EventField>("\"nope\"").is_err());
    }
}
