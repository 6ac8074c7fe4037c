//! The policy data model: the `Settings` layer, its fully `ResolvedSettings`, `Targeting`,
//! the stored `Policy`, the admin-facing `PolicyDraft` (with field-naming JSON parsing), the
//! `ClientContext` a policy is evaluated against, and the `MergedConfig` served to clients.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::validate::ValidationError;
use crate::fields::{self, EventField, Use};
use crate::model::{Event, Level};

/// One layer of collection settings. Every field is optional: `None` means "this layer leaves
/// the field to the layers below" (product defaults, then lower-priority policies).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection_enabled: Option<bool>,
    /// Accepts the level names SDKs use (`warning`, `critical`, ...) through [`Level::parse`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_level"
    )]
    pub min_level: Option<Level>,
    /// `Some(list)`: only events of these modules; events without a module are not filtered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules_allow: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules_deny: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_allow: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_deny: Option<Vec<String>>,
    /// In `[0, 1]`; `0` samples out everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<f64>,
    /// Per event name, overriding `sample_rate` for that name. A layer's map replaces the
    /// whole map of the layers below (field-by-field merge, like every other field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_sample_rates: Option<BTreeMap<String, f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_interval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue_size: Option<u32>,
}

impl Settings {
    /// True when the layer sets nothing.
    pub fn is_empty(&self) -> bool {
        *self == Settings::default()
    }
}

fn deserialize_level<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Level>, D::Error> {
    let text: Option<String> = Option::deserialize(de)?;
    match text {
        None => Ok(None),
        Some(text) => Level::parse(&text).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown level `{text}`, expected one of debug, info, warn, error, fatal"
            ))
        }),
    }
}

/// Built-in defaults, used for any field neither the product defaults nor a policy sets.
pub mod defaults {
    use crate::model::Level;
    pub const COLLECTION_ENABLED: bool = true;
    pub const MIN_LEVEL: Level = Level::Debug;
    pub const SAMPLE_RATE: f64 = 1.0;
    pub const BATCH_SIZE: u32 = 50;
    pub const FLUSH_INTERVAL_MS: u64 = 30_000;
    pub const MAX_QUEUE_SIZE: u32 = 1_000;
}

/// Settings with every field concrete: what a client receives and what ingest enforces.
///
/// Defaults: collection enabled, `min_level` debug, no allow lists (`null` = everything
/// allowed), empty deny lists, `sample_rate` 1.0, no per-event rates, batch 50,
/// flush 30 000 ms, queue 1 000. Lists are sorted and de-duplicated, so equal content
/// serialises (and hashes into an ETag) identically.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ResolvedSettings {
    pub collection_enabled: bool,
    pub min_level: Level,
    pub modules_allow: Option<Vec<String>>,
    pub modules_deny: Vec<String>,
    pub events_allow: Option<Vec<String>>,
    pub events_deny: Vec<String>,
    pub sample_rate: f64,
    pub event_sample_rates: BTreeMap<String, f64>,
    pub batch_size: u32,
    pub flush_interval_ms: u64,
    pub max_queue_size: u32,
}

impl Default for ResolvedSettings {
    fn default() -> Self {
        ResolvedSettings {
            collection_enabled: defaults::COLLECTION_ENABLED,
            min_level: defaults::MIN_LEVEL,
            modules_allow: None,
            modules_deny: Vec::new(),
            events_allow: None,
            events_deny: Vec::new(),
            sample_rate: defaults::SAMPLE_RATE,
            event_sample_rates: BTreeMap::new(),
            batch_size: defaults::BATCH_SIZE,
            flush_interval_ms: defaults::FLUSH_INTERVAL_MS,
            max_queue_size: defaults::MAX_QUEUE_SIZE,
        }
    }
}

fn sorted_unique(list: &[String]) -> Vec<String> {
    let mut list = list.to_vec();
    list.sort_unstable();
    list.dedup();
    list
}

impl ResolvedSettings {
    /// Applies one layer on top: each `Some` field replaces the current value.
    pub fn apply(&mut self, layer: &Settings) {
        if let Some(v) = layer.collection_enabled {
            self.collection_enabled = v;
        }
        if let Some(v) = layer.min_level {
            self.min_level = v;
        }
        if let Some(v) = &layer.modules_allow {
            self.modules_allow = Some(sorted_unique(v));
        }
        if let Some(v) = &layer.modules_deny {
            self.modules_deny = sorted_unique(v);
        }
        if let Some(v) = &layer.events_allow {
            self.events_allow = Some(sorted_unique(v));
        }
        if let Some(v) = &layer.events_deny {
            self.events_deny = sorted_unique(v);
        }
        if let Some(v) = layer.sample_rate {
            self.sample_rate = v;
        }
        if let Some(v) = &layer.event_sample_rates {
            self.event_sample_rates = v.clone();
        }
        if let Some(v) = layer.batch_size {
            self.batch_size = v;
        }
        if let Some(v) = layer.flush_interval_ms {
            self.flush_interval_ms = v;
        }
        if let Some(v) = layer.max_queue_size {
            self.max_queue_size = v;
        }
    }

    /// Built-in defaults with `layer` applied.
    pub fn from_layer(layer: &Settings) -> Self {
        let mut resolved = ResolvedSettings::default();
        resolved.apply(layer);
        resolved
    }
}

/// Who a policy applies to. Every non-empty list must contain the client's value (compared
/// ASCII case-insensitively); a client that does not report a targeted dimension does not match.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Targeting {
    pub platforms: Vec<String>,
    pub channels: Vec<String>,
    pub release_channels: Vec<String>,
    /// A SemVer requirement such as `>=1.4.0, <2`; see `version.rs` for pre-release rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_versions: Option<String>,
    /// ISO 3166-1 alpha-2 (`US`).
    pub countries: Vec<String>,
    /// ISO 3166-2 (`US-WA`).
    pub regions: Vec<String>,
    /// `0..=100`, resolution 0.01; `None` = everyone who matches the rest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout_percent: Option<f64>,
}

impl Targeting {
    /// True when the rollout covers only part of the matching installs.
    pub fn is_partial_rollout(&self) -> bool {
        matches!(self.rollout_percent, Some(p) if p < 100.0)
    }
}

/// A stored collection policy (the redb value, as JSON).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Policy {
    pub id: String,
    pub name: String,
    pub product: String,
    pub enabled: bool,
    pub priority: i32,
    /// Ms since the epoch, inclusive.
    pub starts_at: Option<i64>,
    /// Ms since the epoch, exclusive.
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub targeting: Targeting,
    #[serde(default)]
    pub settings: Settings,
    pub created_at: i64,
    pub updated_at: i64,
}

fn default_true() -> bool {
    true
}

/// What admins POST (create, preview) and PUT (replace). `starts_at`/`expires_at` accept ms
/// since the epoch or an RFC 3339 string.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyDraft {
    /// Optional on POST (a UUIDv7 is generated); on PUT it must equal the path id if given.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    pub product: String,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default)]
    pub priority: i32,
    #[serde(default, deserialize_with = "deserialize_instant")]
    pub starts_at: Option<i64>,
    #[serde(default, deserialize_with = "deserialize_instant")]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub targeting: Targeting,
    #[serde(default)]
    pub settings: Settings,
}

fn deserialize_instant<'de, D: Deserializer<'de>>(de: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Instant {
        Ms(i64),
        Text(String),
    }
    match Option::<Instant>::deserialize(de)? {
        None => Ok(None),
        Some(Instant::Ms(ms)) => Ok(Some(ms)),
        Some(Instant::Text(text)) => {
            let at = parse_rfc3339(&text).map_err(serde::de::Error::custom)?;
            i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
                .map(Some)
                .map_err(|_| serde::de::Error::custom("time out of range"))
        }
    }
}

fn parse_rfc3339(text: &str) -> Result<time::OffsetDateTime, String> {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
        format!("expected milliseconds since the epoch or an RFC 3339 time, got `{text}` ({e})")
    })
}

/// Top-level draft keys; `name` and `product` are required.
const DRAFT_KEYS: [&str; 9] = [
    "id",
    "name",
    "product",
    "enabled",
    "priority",
    "starts_at",
    "expires_at",
    "targeting",
    "settings",
];

impl PolicyDraft {
    /// Parses a request body. Unlike a bare `serde_json::from_slice`, a failure names the
    /// offending field (`settings.min_level`, `targeting.rollout_percent`, `body`, ...).
    pub fn from_json(body: &[u8]) -> Result<PolicyDraft, ValidationError> {
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| ValidationError::new("body", format!("not valid JSON: {e}")))?;
        Self::from_value(value)
    }

    /// As [`PolicyDraft::from_json`], from an already parsed value.
    pub fn from_value(value: serde_json::Value) -> Result<PolicyDraft, ValidationError> {
        let serde_json::Value::Object(object) = &value else {
            return Err(ValidationError::new("body", "expected a JSON object"));
        };
        for required in ["name", "product"] {
            if !object.contains_key(required) {
                return Err(ValidationError::new(required, "is required"));
            }
        }
        match serde_json::from_value::<PolicyDraft>(value.clone()) {
            Ok(draft) => Ok(draft),
            Err(whole) => Err(locate_draft_error(object)
                .unwrap_or_else(|| ValidationError::new("body", whole.to_string()))),
        }
    }

    /// The policy created from this draft (POST). `id` is used when the draft has none.
    pub fn into_policy(self, id: String, now_ms: i64) -> Policy {
        Policy {
            id: self.id.unwrap_or(id),
            name: self.name.trim().to_string(),
            product: self.product,
            enabled: self.enabled,
            priority: self.priority,
            starts_at: self.starts_at,
            expires_at: self.expires_at,
            targeting: normalize_targeting(self.targeting),
            settings: self.settings,
            created_at: now_ms,
            updated_at: now_ms,
        }
    }

    /// The replacement of `existing` by this draft (PUT): keeps id and `created_at`.
    pub fn into_update(self, existing: &Policy, now_ms: i64) -> Result<Policy, ValidationError> {
        if let Some(id) = &self.id {
            if *id != existing.id {
                return Err(ValidationError::new(
                    "id",
                    format!(
                        "does not match the policy being updated (`{}`)",
                        existing.id
                    ),
                ));
            }
        }
        let mut policy = self.into_policy(existing.id.clone(), now_ms);
        policy.created_at = existing.created_at;
        Ok(policy)
    }
}

/// A fresh policy id (UUIDv7: sortable by creation).
pub fn new_policy_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn normalize_targeting(mut targeting: Targeting) -> Targeting {
    for code in targeting
        .countries
        .iter_mut()
        .chain(targeting.regions.iter_mut())
    {
        code.make_ascii_uppercase();
    }
    targeting
}

/// Finds which field made the whole-draft deserialisation fail, by deserialising each key on
/// its own (inside a minimal valid draft, or into the all-optional nested struct).
fn locate_draft_error(
    object: &serde_json::Map<String, serde_json::Value>,
) -> Option<ValidationError> {
    for (key, value) in object {
        if !DRAFT_KEYS.contains(&key.as_str()) {
            return Some(ValidationError::new(
                key.as_str(),
                format!("unknown field, expected one of {}", DRAFT_KEYS.join(", ")),
            ));
        }
        let mut probe = serde_json::Map::new();
        probe.insert("name".into(), serde_json::Value::String("probe".into()));
        probe.insert("product".into(), serde_json::Value::String("probe".into()));
        probe.insert(key.clone(), value.clone());
        if let Err(e) = serde_json::from_value::<PolicyDraft>(serde_json::Value::Object(probe)) {
            let nested = match (key.as_str(), value) {
                ("targeting", serde_json::Value::Object(inner)) => {
                    locate_nested::<Targeting>("targeting", inner)
                }
                ("settings", serde_json::Value::Object(inner)) => {
                    locate_nested::<Settings>("settings", inner)
                }
                _ => None,
            };
            return Some(
                nested.unwrap_or_else(|| ValidationError::new(key.as_str(), strip_position(&e))),
            );
        }
    }
    None
}

fn locate_nested<T: serde::de::DeserializeOwned>(
    prefix: &str,
    object: &serde_json::Map<String, serde_json::Value>,
) -> Option<ValidationError> {
    for (key, value) in object {
        let mut probe = serde_json::Map::new();
        probe.insert(key.clone(), value.clone());
        if let Err(e) = serde_json::from_value::<T>(serde_json::Value::Object(probe)) {
            let field = format!("{prefix}.{key}");
            if let serde_json::Value::Object(rates) = value {
                if key == "event_sample_rates" {
                    for (name, rate) in rates {
                        if !rate.is_number() {
                            return Some(ValidationError::new(
                                format!("{field}.{name}"),
                                "expected a number between 0 and 1",
                            ));
                        }
                    }
                }
            }
            let reason = strip_position(&e);
            if reason.starts_with("unknown field") {
                return Some(ValidationError::new(field, "unknown field"));
            }
            return Some(ValidationError::new(field, reason));
        }
    }
    None
}

/// serde_json's "at line 1 column 7" refers to the probe, not the request: drop it.
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// The values of the targeting context: one slot per catalogue field with `Use::Targeting`
/// ([`fields::TARGETING`]: platform, channel, app_version, release_channel, country_code,
/// region_code).
pub type TargetingValues<T> = [Option<T>; fields::TARGETING.len()];

/// The client a policy is evaluated for: its product, install and targeting values.
/// `country_code`/`region_code` come from geo (`US`, `US-WA`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ClientContext {
    pub product: String,
    pub install_id: Option<String>,
    /// By slot of [`fields::TARGETING`]; read and set them with `get` and `set`.
    pub values: TargetingValues<String>,
}

impl ClientContext {
    /// A client of `product` with no install and no targeting values.
    pub fn new(product: impl Into<String>) -> ClientContext {
        ClientContext {
            product: product.into(),
            ..ClientContext::default()
        }
    }

    /// The context with each targeting field's value from `value`.
    pub fn from_fields<'a>(
        product: impl Into<String>,
        install_id: Option<String>,
        value: impl Fn(EventField) -> Option<&'a str>,
    ) -> ClientContext {
        ClientContext {
            product: product.into(),
            install_id,
            values: fields::TARGETING.map(|f| value(f).map(str::to_string)),
        }
    }

    pub fn get(&self, field: EventField) -> Option<&str> {
        field
            .targeting_slot()
            .and_then(|slot| self.values[slot].as_deref())
    }

    /// Sets a targeting field's value (a field policies cannot target is ignored).
    pub fn set(&mut self, field: EventField, value: Option<&str>) {
        debug_assert!(
            field.has(Use::Targeting),
            "{field} is not a targeting field"
        );
        if let Some(slot) = field.targeting_slot() {
            self.values[slot] = value.map(str::to_string);
        }
    }

    /// This context with `field` set to `value`.
    pub fn with(mut self, field: EventField, value: &str) -> ClientContext {
        self.set(field, Some(value));
        self
    }

    pub fn as_ref(&self) -> ContextRef<'_> {
        ContextRef {
            product: &self.product,
            install_id: self.install_id.as_deref(),
            values: self.values.each_ref().map(|v| v.as_deref()),
        }
    }

    /// The context of the client that sent `event`.
    pub fn from_event(event: &Event) -> ClientContext {
        ContextRef::from_event(event).to_owned()
    }
}

/// A borrowed [`ClientContext`]: lets ingest evaluate an event without allocating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ContextRef<'a> {
    pub product: &'a str,
    pub install_id: Option<&'a str>,
    /// By slot of [`fields::TARGETING`].
    pub values: TargetingValues<&'a str>,
}

impl<'a> ContextRef<'a> {
    pub fn from_event(event: &'a Event) -> ContextRef<'a> {
        ContextRef {
            product: &event.product,
            install_id: event.install_id.as_deref(),
            values: fields::TARGETING.map(|f| f.text(event)),
        }
    }

    pub fn get(&self, field: EventField) -> Option<&'a str> {
        field.targeting_slot().and_then(|slot| self.values[slot])
    }

    /// The client's app version, parsed (`None` when absent or not a version).
    pub fn app_version(&self) -> Option<crate::version::AppVersion> {
        self.get(EventField::AppVersion)
            .and_then(|v| crate::version::AppVersion::parse(v).ok())
    }

    pub fn to_owned(&self) -> ClientContext {
        ClientContext {
            product: self.product.to_string(),
            install_id: self.install_id.map(str::to_string),
            values: self.values.map(|v| v.map(str::to_string)),
        }
    }
}

/// The merged policy for one client, as served by `GET /api/v1/config`.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct MergedConfig {
    pub product: String,
    pub settings: ResolvedSettings,
    /// Ids of the policies applied, in application order (ascending priority, then id).
    pub applied_policies: Vec<String>,
}
