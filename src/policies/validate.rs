//! Validation of admin input: `PolicyDraft`s, settings layers (also the product defaults from
//! the config) and the query of the client config endpoint. Every error names the field
//! (`targeting.app_versions`, `settings.event_sample_rates.call_started`, `app_version`).

use std::collections::BTreeSet;

use serde::Serialize;

use super::model::{ClientContext, PolicyDraft, Settings, Targeting};
use super::version;
use crate::fields::EventField;
use crate::model::Field;
use crate::version::AppVersion;

/// One invalid field. The HTTP layer answers `400` with it (see the crate's wiring notes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    pub field: String,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> ValidationError {
        ValidationError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

type Result<T = ()> = std::result::Result<T, ValidationError>;

/// Limits of the client-facing numeric settings.
pub mod limits {
    pub const BATCH_SIZE: std::ops::RangeInclusive<u32> = 1..=10_000;
    pub const FLUSH_INTERVAL_MS: std::ops::RangeInclusive<u64> =
        100..=crate::timespan::DAY_MS as u64;
    pub const MAX_QUEUE_SIZE: std::ops::RangeInclusive<u32> = 1..=1_000_000;
    pub const NAME_LEN: usize = 200;
    pub const ID_LEN: usize = 128;
    pub const VALUE_LEN: usize = 128;
    pub const LIST_LEN: usize = 1_000;
}

/// Checks a draft (POST, PUT, preview). `known_products` are the configured product ids.
///
/// Rules: `id` (if given) 1–128 chars of `[A-Za-z0-9_.-]`; `name` non-blank, ≤ 200 chars;
/// `product` configured; `expires_at > starts_at`; targeting lists without blanks or
/// duplicates; countries two letters; regions `CC-XXX` (1–3 alphanumerics after the dash);
/// `app_versions` a SemVer requirement; `rollout_percent` in `0..=100`; settings as in
/// [`validate_settings`], and at least one setting present.
pub fn validate(draft: &PolicyDraft, known_products: &[&str]) -> Result {
    if let Some(id) = &draft.id {
        validate_id(id)?;
    }
    let name = draft.name.trim();
    if name.is_empty() {
        return Err(ValidationError::new("name", "must not be empty"));
    }
    if name.chars().count() > limits::NAME_LEN {
        return Err(ValidationError::new(
            "name",
            format!("must be at most {} characters", limits::NAME_LEN),
        ));
    }
    if !known_products.contains(&draft.product.as_str()) {
        return Err(ValidationError::new(
            "product",
            format!(
                "unknown product `{}`; configured products: {}",
                draft.product,
                known_products.join(", ")
            ),
        ));
    }
    if let (Some(starts), Some(expires)) = (draft.starts_at, draft.expires_at) {
        if expires <= starts {
            return Err(ValidationError::new(
                "expires_at",
                "must be later than starts_at",
            ));
        }
    }
    validate_targeting(&draft.targeting)?;
    if draft.settings.is_empty() {
        return Err(ValidationError::new(
            "settings",
            "a policy must set at least one setting",
        ));
    }
    validate_settings(&draft.settings, "settings")
}

/// A policy id as used in `/api/v1/policies/{id}`.
pub fn validate_id(id: &str) -> Result {
    if id.is_empty() || id.len() > limits::ID_LEN {
        return Err(ValidationError::new(
            "id",
            format!("must be 1 to {} characters", limits::ID_LEN),
        ));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(ValidationError::new(
            "id",
            "may contain only letters, digits, `_`, `-` and `.`",
        ));
    }
    Ok(())
}

fn validate_list(field: &str, list: &[String], check: impl Fn(&str) -> Option<String>) -> Result {
    if list.len() > limits::LIST_LEN {
        return Err(ValidationError::new(
            field,
            format!("at most {} entries", limits::LIST_LEN),
        ));
    }
    let mut seen = BTreeSet::new();
    for item in list {
        if item.trim().is_empty() {
            return Err(ValidationError::new(field, "entries must not be empty"));
        }
        if item.len() > limits::VALUE_LEN {
            return Err(ValidationError::new(
                field,
                format!("entry `{item}` is longer than {} bytes", limits::VALUE_LEN),
            ));
        }
        if let Some(reason) = check(item) {
            return Err(ValidationError::new(field, reason));
        }
        if !seen.insert(item.to_ascii_lowercase()) {
            return Err(ValidationError::new(
                field,
                format!("duplicate entry `{item}`"),
            ));
        }
    }
    Ok(())
}

fn is_country_code(code: &str) -> bool {
    code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic())
}

fn is_region_code(code: &str) -> bool {
    match code.split_once('-') {
        Some((country, sub)) => {
            is_country_code(country)
                && (1..=3).contains(&sub.len())
                && sub.bytes().all(|b| b.is_ascii_alphanumeric())
        }
        None => false,
    }
}

fn validate_targeting(t: &Targeting) -> Result {
    let no_check = |_: &str| None;
    validate_list("targeting.platforms", &t.platforms, no_check)?;
    validate_list("targeting.channels", &t.channels, no_check)?;
    validate_list("targeting.release_channels", &t.release_channels, no_check)?;
    validate_list("targeting.countries", &t.countries, |c| {
        (!is_country_code(c)).then(|| {
            format!("`{c}` is not an ISO 3166-1 alpha-2 country code (two letters, e.g. US)")
        })
    })?;
    validate_list("targeting.regions", &t.regions, |r| {
        (!is_region_code(r))
            .then(|| format!("`{r}` is not an ISO 3166-2 region code (CC-XXX, e.g. US-WA)"))
    })?;
    if let Some(req) = &t.app_versions {
        if req.trim().is_empty() {
            return Err(ValidationError::new(
                "targeting.app_versions",
                "must not be empty; omit it to target every version",
            ));
        }
        version::parse_req(req).map_err(|e| {
            ValidationError::new(
                "targeting.app_versions",
                format!("`{req}` is not a SemVer requirement such as `>=1.4.0, <2`: {e}"),
            )
        })?;
    }
    if let Some(p) = t.rollout_percent {
        if !(0.0..=100.0).contains(&p) {
            return Err(ValidationError::new(
                "targeting.rollout_percent",
                "must be between 0 and 100",
            ));
        }
    }
    Ok(())
}

fn validate_rate(field: &str, rate: f64) -> Result {
    if !(0.0..=1.0).contains(&rate) {
        return Err(ValidationError::new(
            field,
            "must be between 0 and 1 (0 samples out everything)",
        ));
    }
    Ok(())
}

fn validate_allow_deny(
    prefix: &str,
    what: &str,
    allow: &Option<Vec<String>>,
    deny: &Option<Vec<String>>,
) -> Result {
    let allow_field = format!("{prefix}.{what}_allow");
    let deny_field = format!("{prefix}.{what}_deny");
    if let Some(allow) = allow {
        if allow.is_empty() {
            return Err(ValidationError::new(
                allow_field,
                "an empty allow list would drop everything; set collection_enabled = false instead, or omit it to allow all",
            ));
        }
        validate_list(&allow_field, allow, |_| None)?;
    }
    if let Some(deny) = deny {
        validate_list(&deny_field, deny, |_| None)?;
        if let Some(allow) = allow {
            if let Some(both) = deny.iter().find(|d| allow.contains(d)) {
                return Err(ValidationError::new(
                    deny_field,
                    format!("`{both}` is also in {allow_field}"),
                ));
            }
        }
    }
    Ok(())
}

/// Checks one settings layer; `prefix` names it in errors (`settings`, or e.g.
/// `products.voice.policy_defaults` for config defaults). Rates in `[0, 1]`; `batch_size`
/// 1–10 000; `flush_interval_ms` 100 ms–1 day; `max_queue_size` 1–1 000 000 and not below
/// `batch_size` when both are set; allow lists non-empty; no entry both allowed and denied.
pub fn validate_settings(s: &Settings, prefix: &str) -> Result {
    validate_allow_deny(prefix, "modules", &s.modules_allow, &s.modules_deny)?;
    validate_allow_deny(prefix, "events", &s.events_allow, &s.events_deny)?;
    if let Some(rate) = s.sample_rate {
        validate_rate(&format!("{prefix}.sample_rate"), rate)?;
    }
    if let Some(rates) = &s.event_sample_rates {
        for (name, rate) in rates {
            let field = format!("{prefix}.event_sample_rates.{name}");
            if name.trim().is_empty() {
                return Err(ValidationError::new(field, "event name must not be empty"));
            }
            validate_rate(&field, *rate)?;
        }
    }
    if let Some(v) = s.batch_size {
        if !limits::BATCH_SIZE.contains(&v) {
            return Err(ValidationError::new(
                format!("{prefix}.batch_size"),
                format!(
                    "must be between {} and {}",
                    limits::BATCH_SIZE.start(),
                    limits::BATCH_SIZE.end()
                ),
            ));
        }
    }
    if let Some(v) = s.flush_interval_ms {
        if !limits::FLUSH_INTERVAL_MS.contains(&v) {
            return Err(ValidationError::new(
                format!("{prefix}.flush_interval_ms"),
                format!(
                    "must be between {} and {}",
                    limits::FLUSH_INTERVAL_MS.start(),
                    limits::FLUSH_INTERVAL_MS.end()
                ),
            ));
        }
    }
    if let Some(v) = s.max_queue_size {
        if !limits::MAX_QUEUE_SIZE.contains(&v) {
            return Err(ValidationError::new(
                format!("{prefix}.max_queue_size"),
                format!(
                    "must be between {} and {}",
                    limits::MAX_QUEUE_SIZE.start(),
                    limits::MAX_QUEUE_SIZE.end()
                ),
            ));
        }
        if let Some(batch) = s.batch_size {
            if v < batch {
                return Err(ValidationError::new(
                    format!("{prefix}.max_queue_size"),
                    "must not be smaller than batch_size",
                ));
            }
        }
    }
    Ok(())
}

/// The query of `GET /api/v1/config`, as received. Unknown parameters are ignored (clients add
/// cache busters); every field is optional here so that a missing `product` is reported by
/// [`ConfigQuery::into_context`] with its name rather than by the query extractor. Fields are
/// named as clients name them in events (the field catalogue: `install_id`, `installId`,
/// `anonymousInstallId`, `appVersion`, ...); of two names for one field the first non-empty
/// value counts.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(from = "Vec<(String, String)>")]
pub struct ConfigQuery {
    pub product: Option<String>,
    pub install_id: Option<String>,
    pub platform: Option<String>,
    pub app_version: Option<String>,
    pub channel: Option<String>,
    pub release_channel: Option<String>,
}

impl From<Vec<(String, String)>> for ConfigQuery {
    fn from(pairs: Vec<(String, String)>) -> Self {
        let mut query = ConfigQuery::default();
        for (name, value) in pairs {
            let slot = match name.as_str() {
                "product" => &mut query.product,
                _ => match Field::from_wire_name(&name) {
                    Some(Field::InstallId) => &mut query.install_id,
                    Some(Field::Platform) => &mut query.platform,
                    Some(Field::AppVersion) => &mut query.app_version,
                    Some(Field::Channel) => &mut query.channel,
                    Some(Field::ReleaseChannel) => &mut query.release_channel,
                    _ => continue,
                },
            };
            if slot.as_deref().is_none_or(|v| v.trim().is_empty()) {
                *slot = Some(value);
            }
        }
        query
    }
}

fn check_param(name: &str, value: Option<String>) -> Result<Option<String>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.len() > limits::VALUE_LEN {
        return Err(ValidationError::new(
            name,
            format!("must be at most {} bytes", limits::VALUE_LEN),
        ));
    }
    if !trimmed
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+' | b':'))
    {
        return Err(ValidationError::new(
            name,
            "may contain only letters, digits, `_`, `-`, `.`, `+` and `:`",
        ));
    }
    Ok(Some(trimmed.to_string()))
}

impl ConfigQuery {
    /// Validates the query into a context. `product` is required and must be configured;
    /// `app_version`, when given, must parse (leniently); empty parameters count as absent.
    /// `country_code`/`region_code` come from the geo lookup of the request's IP.
    pub fn into_context(
        self,
        known_products: &[&str],
        country_code: Option<String>,
        region_code: Option<String>,
    ) -> Result<ClientContext> {
        let product = check_param("product", self.product)?
            .ok_or_else(|| ValidationError::new("product", "is required"))?;
        if !known_products.contains(&product.as_str()) {
            return Err(ValidationError::new(
                "product",
                format!("unknown product `{product}`"),
            ));
        }
        let app_version = check_param("app_version", self.app_version)?;
        if let Some(v) = &app_version {
            if AppVersion::parse(v).is_err() {
                return Err(ValidationError::new(
                    "app_version",
                    format!("`{v}` is not a version such as 1.4.2"),
                ));
            }
        }
        let mut context = ClientContext {
            install_id: check_param("install_id", self.install_id)?,
            ..ClientContext::new(product)
        };
        for (field, value) in [
            (
                EventField::Platform,
                check_param("platform", self.platform)?,
            ),
            (EventField::AppVersion, app_version),
            (EventField::Channel, check_param("channel", self.channel)?),
            (
                EventField::ReleaseChannel,
                check_param("release_channel", self.release_channel)?,
            ),
            (EventField::CountryCode, country_code),
            (EventField::RegionCode, region_code),
        ] {
            context.set(field, value.as_deref());
        }
        Ok(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft_json(value: serde_json::Value) -> std::result::Result<PolicyDraft, ValidationError> {
        PolicyDraft::from_json(value.to_string().as_bytes())
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "name": "sample betas",
            "product": "voice",
            "targeting": {"release_channels": ["beta"]},
            "settings": {"sample_rate": 0.5}
        })
    }

    fn with(path: &[&str], value: serde_json::Value) -> serde_json::Value {
        let mut root = base();
        let mut at = &mut root;
        for key in &path[..path.len() - 1] {
            at = at
                .as_object_mut()
                .unwrap()
                .entry(key.to_string())
                .or_insert_with(|| serde_json::json!({}));
        }
        at.as_object_mut()
            .unwrap()
            .insert(path[path.len() - 1].to_string(), value);
        root
    }

    #[test]
    fn valid_draft_passes() {
        let draft = draft_json(base()).unwrap();
        assert_eq!(validate(&draft, &["voice"]), Ok(()));
        assert!(draft.enabled);
    }

    #[test]
    fn validation_errors_name_the_field() {
        use serde_json::json;
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (with(&["name"], json!("  ")), "name"),
            (with(&["product"], json!("nope")), "product"),
            (with(&["id"], json!("has space")), "id"),
            (
                with(&["targeting", "app_versions"], json!(">= banana")),
                "targeting.app_versions",
            ),
            (
                with(&["targeting", "app_versions"], json!("")),
                "targeting.app_versions",
            ),
            (
                with(&["targeting", "rollout_percent"], json!(100.5)),
                "targeting.rollout_percent",
            ),
            (
                with(&["targeting", "rollout_percent"], json!(-1)),
                "targeting.rollout_percent",
            ),
            (
                with(&["targeting", "countries"], json!(["USA"])),
                "targeting.countries",
            ),
            (
                with(&["targeting", "regions"], json!(["WA"])),
                "targeting.regions",
            ),
            (
                with(&["targeting", "regions"], json!(["US-ABCD"])),
                "targeting.regions",
            ),
            (
                with(&["targeting", "platforms"], json!(["ios", "iOS"])),
                "targeting.platforms",
            ),
            (
                with(&["targeting", "platforms"], json!([""])),
                "targeting.platforms",
            ),
            (
                with(&["settings", "sample_rate"], json!(1.5)),
                "settings.sample_rate",
            ),
            (
                with(&["settings", "sample_rate"], json!(-0.1)),
                "settings.sample_rate",
            ),
            (
                with(
                    &["settings", "event_sample_rates"],
                    json!({"call_started": 2.0}),
                ),
                "settings.event_sample_rates.call_started",
            ),
            (
                with(
                    &["settings", "event_sample_rates"],
                    json!({"call_started": "half"}),
                ),
                "settings.event_sample_rates.call_started",
            ),
            (
                with(&["settings", "batch_size"], json!(0)),
                "settings.batch_size",
            ),
            (
                with(&["settings", "batch_size"], json!(-5)),
                "settings.batch_size",
            ),
            (
                with(&["settings", "flush_interval_ms"], json!(10)),
                "settings.flush_interval_ms",
            ),
            (
                with(&["settings", "max_queue_size"], json!(0)),
                "settings.max_queue_size",
            ),
            (
                with(
                    &["settings"],
                    json!({"batch_size": 100, "max_queue_size": 10}),
                ),
                "settings.max_queue_size",
            ),
            (
                with(&["settings", "min_level"], json!("loud")),
                "settings.min_level",
            ),
            (
                with(
                    &["settings"],
                    json!({"events_allow": ["a"], "events_deny": ["a"]}),
                ),
                "settings.events_deny",
            ),
            (
                with(
                    &["settings"],
                    json!({"modules_allow": ["m"], "modules_deny": ["m"]}),
                ),
                "settings.modules_deny",
            ),
            (
                with(&["settings", "modules_allow"], json!([])),
                "settings.modules_allow",
            ),
            (
                with(&["settings", "events_deny"], json!(["x", "x"])),
                "settings.events_deny",
            ),
            (with(&["settings"], json!({})), "settings"),
            (
                with(&["settings", "sampel_rate"], json!(0.5)),
                "settings.sampel_rate",
            ),
            (
                with(&["targeting", "country"], json!(["US"])),
                "targeting.country",
            ),
            (with(&["colour"], json!("red")), "colour"),
            (with(&["enabled"], json!("yes")), "enabled"),
            (with(&["starts_at"], json!("tomorrow")), "starts_at"),
            (with(&["priority"], json!(1.5)), "priority"),
            (
                json!({"name": "x", "product": "voice", "starts_at": 2000, "expires_at": 2000, "settings": {"batch_size": 10}}),
                "expires_at",
            ),
            (json!({"product": "voice"}), "name"),
            (json!({"name": "x"}), "product"),
            (json!([1, 2]), "body"),
        ];
        for (body, field) in cases {
            let result = draft_json(body.clone()).and_then(|d| validate(&d, &["voice"]));
            match result {
                Err(e) => assert_eq!(e.field, field, "{body}: {e}"),
                Ok(()) => panic!("{body} should fail on {field}"),
            }
        }
        let e = PolicyDraft::from_json(b"{not json").unwrap_err();
        assert_eq!(e.field, "body");
    }

    #[test]
    fn lenient_inputs_are_accepted() {
        use serde_json::json;
        let body = json!({
            "name": "x", "product": "voice",
            "starts_at": "2025-01-01T00:00:00Z", "expires_at": 1735776000000i64,
            "targeting": {"countries": ["us"], "regions": ["us-wa"]},
            "settings": {"min_level": "warning", "sample_rate": 0}
        });
        let draft = draft_json(body).unwrap();
        assert_eq!(validate(&draft, &["voice"]), Ok(()));
        assert_eq!(draft.starts_at, Some(1_735_689_600_000));
        assert_eq!(draft.settings.min_level, Some(crate::model::Level::Warn));
        let policy = draft.into_policy("p".into(), 7);
        assert_eq!(policy.targeting.countries, vec!["US"]);
        assert_eq!(policy.targeting.regions, vec!["US-WA"]);
        assert_eq!((policy.created_at, policy.updated_at), (7, 7));
    }

    #[test]
    fn update_keeps_identity_and_rejects_other_id() {
        let existing = draft_json(base()).unwrap().into_policy("p1".into(), 1);
        let updated = draft_json(base())
            .unwrap()
            .into_update(&existing, 9)
            .unwrap();
        assert_eq!(
            (updated.id.as_str(), updated.created_at, updated.updated_at),
            ("p1", 1, 9)
        );
        let other = draft_json(with(&["id"], serde_json::json!("p2"))).unwrap();
        assert_eq!(other.into_update(&existing, 9).unwrap_err().field, "id");
    }

    #[test]
    fn config_query_errors_name_the_parameter() {
        let known = ["voice"];
        let ok = ConfigQuery {
            product: Some("voice".into()),
            install_id: Some("abc-123".into()),
            app_version: Some("1.2".into()),
            platform: Some("".into()),
            ..ConfigQuery::default()
        }
        .into_context(&known, Some("US".into()), None)
        .unwrap();
        assert_eq!(ok.get(EventField::Platform), None);
        assert_eq!(ok.get(EventField::CountryCode), Some("US"));
        assert_eq!(ok.get(EventField::AppVersion), Some("1.2"));
        let cases: Vec<(ConfigQuery, &str)> = vec![
            (ConfigQuery::default(), "product"),
            (
                ConfigQuery {
                    product: Some("other".into()),
                    ..Default::default()
                },
                "product",
            ),
            (
                ConfigQuery {
                    product: Some("voice".into()),
                    app_version: Some("banana".into()),
                    ..Default::default()
                },
                "app_version",
            ),
            (
                ConfigQuery {
                    product: Some("voice".into()),
                    install_id: Some("a b".into()),
                    ..Default::default()
                },
                "install_id",
            ),
            (
                ConfigQuery {
                    product: Some("voice".into()),
                    platform: Some("x".repeat(200)),
                    ..Default::default()
                },
                "platform",
            ),
            (
                ConfigQuery {
                    product: Some("voice".into()),
                    release_channel: Some("<script>".into()),
                    ..Default::default()
                },
                "release_channel",
            ),
        ];
        for (query, field) in cases {
            let e = query.clone().into_context(&known, None, None).unwrap_err();
            assert_eq!(e.field, field, "{query:?}");
        }
    }

    #[test]
    fn config_query_reads_the_names_clients_send() {
        let pairs = |list: &[(&str, &str)]| {
            ConfigQuery::from(
                list.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<Vec<_>>(),
            )
        };
        let query = pairs(&[
            ("product", "dictation-app"),
            ("install_id", ""),
            ("anonymousInstallId", "anon-1"),
            ("userId", "u-1"),
            ("appVersion", "3.3.1"),
            ("releaseChannel", "beta"),
            ("cb", "123"),
        ]);
        assert_eq!(query.product.as_deref(), Some("dictation-app"));
        assert_eq!(query.install_id.as_deref(), Some("anon-1"));
        assert_eq!(query.app_version.as_deref(), Some("3.3.1"));
        assert_eq!(query.release_channel.as_deref(), Some("beta"));
        assert_eq!(query.platform, None);
        let first = pairs(&[("installId", "a"), ("anonymousInstallId", "b")]);
        assert_eq!(first.install_id.as_deref(), Some("a"));
        let parsed: ConfigQuery =
            serde_json::from_value(serde_json::json!([["product", "p"], ["installId", "i"]]))
                .unwrap();
        assert_eq!(parsed.install_id.as_deref(), Some("i"));
    }
}
