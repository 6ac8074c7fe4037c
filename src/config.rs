//! The configuration: TOML types with defaults, `TELEMETRYD_*` environment overrides, and
//! validation whose messages name the key and what is wrong with it.
//!
//! Precedence, lowest first: built-in defaults, the TOML file, environment variables
//! (`TELEMETRYD_SECTION__KEY=value`, e.g. `TELEMETRYD_SERVER__LISTEN=0.0.0.0:8080`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ingest::pii::PiiKind;
use crate::model::Field;
use crate::net::{AllowedOrigins, Cidr};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub geo: GeoConfig,
    pub privacy: PrivacyConfig,
    pub limits: LimitsConfig,
    pub search: SearchConfig,
    pub retention: RetentionConfig,
    pub clusters: ClustersConfig,
    pub alerts: AlertsConfig,
    pub metrics: MetricsConfig,
    pub products: Vec<ProductConfig>,
    /// `[[sinks]]`: destinations every stored event is streamed to (`crate::sinks`).
    pub sinks: Vec<SinkConfig>,
}

/// The kinds of export sink there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    Clickhouse,
}

/// One `[[sinks]]` entry: a destination with its own position in the event sequence.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Names its position file, its log lines and its metrics (`[a-z0-9_-]`, unique).
    pub name: String,
    pub kind: SinkKind,
    /// ClickHouse's HTTP interface.
    #[serde(default = "default_sink_url")]
    pub url: String,
    #[serde(default = "default_sink_database")]
    pub database: String,
    /// The events table (the `Distributed` table when `shards` is set).
    #[serde(default = "default_sink_table")]
    pub table: String,
    /// The OTLP metric points table (the `Distributed` table when `shards` is set).
    #[serde(default = "default_sink_points_table")]
    pub points_table: String,
    /// A sharded cluster: each shard's HTTP interface (one replica each). Inserts still go to
    /// `url`'s `table` and `points_table`; erasure and retention run on every shard's
    /// `shard_table` and `shard_points_table`, and count as confirmed when every shard did.
    #[serde(default)]
    pub shards: Vec<String>,
    /// Each shard's local events table (default: `table`).
    #[serde(default)]
    pub shard_table: Option<String>,
    /// Each shard's local metric points table (default: `points_table`).
    #[serde(default)]
    pub shard_points_table: Option<String>,
    #[serde(default = "default_sink_user")]
    pub user: String,
    /// The environment variable holding the password (never logged).
    #[serde(default)]
    pub password_env: Option<String>,
    /// A file holding the password (its first line; never logged).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Events per delivery at most.
    #[serde(default = "default_sink_batch_size")]
    pub batch_size: usize,
    /// After a delivery smaller than `batch_size`, wait this long before the next one.
    #[serde(default = "default_sink_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// One request to the destination, at most.
    #[serde(default = "default_sink_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_sink_url() -> String {
    "http://127.0.0.1:8123".into()
}
fn default_sink_database() -> String {
    "telemetry".into()
}
fn default_sink_table() -> String {
    "events".into()
}
fn default_sink_points_table() -> String {
    "metric_points".into()
}
fn default_sink_user() -> String {
    "default".into()
}
fn default_sink_batch_size() -> usize {
    50_000
}
fn default_sink_flush_interval_ms() -> u64 {
    1_000
}
fn default_sink_timeout_ms() -> u64 {
    10_000
}

impl SinkConfig {
    /// The password from `password_env` or `password_file`, if one is configured.
    pub fn password(&self) -> Result<Option<String>, ConfigError> {
        let key = |k: &str| format!("sinks.{}.{k}", self.name);
        if let Some(var) = &self.password_env {
            return match std::env::var(var) {
                Ok(value) => Ok(Some(value)),
                Err(_) => Err(invalid(
                    key("password_env"),
                    format!("the environment variable `{var}` is not set"),
                )),
            };
        }
        if let Some(path) = &self.password_file {
            return match std::fs::read_to_string(path) {
                Ok(text) => Ok(Some(text.lines().next().unwrap_or("").to_string())),
                Err(e) => Err(invalid(
                    key("password_file"),
                    format!("cannot read {}: {e}", path.display()),
                )),
            };
        }
        Ok(None)
    }

    fn validate(&self, i: usize) -> Result<(), ConfigError> {
        let key = |k: &str| format!("sinks[{i}].{k}");
        let word = |s: &str, extra: &[char]| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || extra.contains(&c))
        };
        if !word(&self.name, &['-']) || self.name.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid(
                key("name"),
                "must be lowercase letters, digits, _ or -",
            ));
        }
        let http = |url: &str| url.starts_with("http://") || url.starts_with("https://");
        if !http(&self.url) {
            return Err(invalid(key("url"), "must start with http:// or https://"));
        }
        if let Some(bad) = self.shards.iter().find(|u| !http(u)) {
            return Err(invalid(
                key("shards"),
                format!("`{bad}` must start with http:// or https://"),
            ));
        }
        for (k, value) in [
            ("database", Some(&self.database)),
            ("table", Some(&self.table)),
            ("points_table", Some(&self.points_table)),
            ("shard_table", self.shard_table.as_ref()),
            ("shard_points_table", self.shard_points_table.as_ref()),
        ] {
            if value.is_some_and(|v| !word(v, &[])) {
                return Err(invalid(key(k), "must be letters, digits or _"));
            }
        }
        if self.table == self.points_table {
            return Err(invalid(
                key("points_table"),
                "must differ from `table`: metric points have their own table",
            ));
        }
        if self.password_env.is_some() && self.password_file.is_some() {
            return Err(invalid(
                key("password_env"),
                "set password_env or password_file, not both",
            ));
        }
        for (k, value) in [
            ("batch_size", self.batch_size as u64),
            ("flush_interval_ms", self.flush_interval_ms),
            ("timeout_ms", self.timeout_ms),
        ] {
            if value == 0 {
                return Err(invalid(key(k), "must be greater than 0"));
            }
        }
        Ok(())
    }
}

/// `[metrics]`: who may read the Prometheus metrics, and where.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// A separate address for `/metrics`; when set, the main listener no longer serves it.
    pub listen: Option<String>,
    /// `sha256:HEX` of a bearer token `/metrics` requires (on whichever listener serves it).
    pub token_hash: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClustersConfig {
    /// When the clustering pass runs (cron with seconds).
    pub schedule: String,
    /// Severity thresholds and the spike rule.
    pub escalation: crate::clusters::EscalationRules,
}

impl Default for ClustersConfig {
    fn default() -> Self {
        ClustersConfig {
            schedule: "0 * * * * *".into(),
            escalation: crate::clusters::EscalationRules::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Base URL of the admin UI, for links in alerts.
    pub ui_base_url: String,
    /// At most one alert per cluster and target in this many minutes.
    pub throttle_minutes: u64,
    pub webhooks: Vec<crate::clusters::WebhookTarget>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            ui_base_url: "http://127.0.0.1:8080".into(),
            throttle_minutes: 30,
            webhooks: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// The index commits at least this often, so an acknowledged event is searchable within it.
    pub commit_interval_ms: u64,
    /// Memory the index writer may buffer before it flushes a segment.
    pub writer_memory_mb: usize,
    /// Committed events waiting in memory for the indexer; beyond it the indexer reads them
    /// back from the store instead (bounds the queue's memory).
    pub queue_events: usize,
    /// Memory analytics scans keep decoded columns in (MiB; 0 = none).
    pub scan_cache_mb: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            commit_interval_ms: 1000,
            writer_memory_mb: 96,
            queue_events: 50_000,
            scan_cache_mb: 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// When the retention sweep runs (cron with seconds: `sec min hour day month weekday`).
    pub schedule: String,
    /// After a sweep, the store file is rewritten (freeing disk and physically dropping deleted
    /// events) when at least this share of it is free space. Writes pause while it runs.
    pub compact_free_ratio: f64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            schedule: "0 17 * * * *".into(),
            compact_free_ratio: 0.3,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// Directory for the store, the index and generated files.
    pub data_dir: PathBuf,
    /// Peers whose `X-Forwarded-For` / `Forwarded` headers are believed (IPs or CIDRs).
    pub trusted_proxies: Vec<String>,
    /// Largest request body as sent (compressed or not).
    pub max_body_bytes: usize,
    /// Largest body after gzip decompression.
    pub max_decompressed_bytes: usize,
    /// Most events in one batch.
    pub max_batch_events: usize,
    /// Largest single event (its JSON text).
    pub max_event_bytes: usize,
    /// Batches waiting for the store writer before ingest answers 503.
    pub writer_queue: usize,
    /// Events in those batches before ingest answers 503 (bounds the queue's memory).
    pub writer_queue_events: usize,
    /// HTTP worker threads; 0 = one per CPU core.
    pub workers: usize,
    /// Open connections the main listener holds at most (spread over the workers); beyond it
    /// new connections wait in the kernel's accept queue. Bounds the memory of requests in
    /// flight.
    pub max_connections: usize,
    /// The only directory the backup endpoint writes below; default `DATA_DIR/backups`.
    pub backup_dir: Option<PathBuf>,
    /// Ingest answers `503 disk_full` once the data dir's file system has less free space than
    /// this (MiB), before the store runs into a full disk; 0 = no check.
    pub min_free_disk_mb: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            trusted_proxies: Vec::new(),
            max_body_bytes: 1024 * 1024,
            max_decompressed_bytes: 10 * 1024 * 1024,
            max_batch_events: 1000,
            max_event_bytes: 64 * 1024,
            writer_queue: 1024,
            writer_queue_events: 100_000,
            workers: 0,
            max_connections: 1024,
            backup_dir: None,
            min_free_disk_mb: 256,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub tokens: Vec<AdminToken>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminToken {
    pub name: String,
    pub role: Role,
    /// `sha256:HEX` as printed by `telemetryd hash-token`.
    pub hash: String,
    /// The products the token sees and changes; empty (or absent) = every product.
    #[serde(default)]
    pub products: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeoConfig {
    /// Path to a MaxMind DB file (GeoIP2/GeoLite2 nested layout or flat `country_code` layout).
    pub database: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// What to do with PII found in free text (error message, stack).
    pub free_text: FreeTextAction,
    /// What to do with PII found in ids and dimensions.
    pub fields: FieldAction,
    /// Which detectors run; default all.
    pub detectors: Vec<String>,
    /// Longest an erasure with `?wait_purge=true` waits for the purge before answering (the
    /// purge continues after it).
    pub wait_purge_timeout_secs: u64,
    /// Least time between the starts of two purges an erasure asks for (each merges the index
    /// and rewrites the store file while ingest waits); erasures in between share the next one.
    pub purge_interval_secs: u64,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            free_text: FreeTextAction::Scrub,
            fields: FieldAction::Reject,
            detectors: PiiKind::ALL
                .iter()
                .map(|k| k.as_str().to_string())
                .collect(),
            wait_purge_timeout_secs: 60,
            purge_interval_secs: 600,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FreeTextAction {
    /// Replace each finding with a placeholder such as `[email]`.
    Scrub,
    /// Reject the whole event.
    Reject,
    /// Keep the text as sent.
    Keep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldAction {
    /// Reject the whole event.
    Reject,
    /// Drop the offending field and keep the event.
    Drop,
    /// Keep the value as sent.
    Keep,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Default events per install per minute (sliding window); a product may override it.
    pub rate_limit_per_minute: u32,
    /// Events dated further ahead than this are clamped to the receive time.
    pub max_future_secs: u64,
    /// Events dated further back than this are clamped to the receive time.
    pub max_past_days: u64,
    /// A client clock off by more than this (from `sent_at`) has its timestamps corrected.
    pub clock_drift_tolerance_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            rate_limit_per_minute: 100,
            max_future_secs: 60,
            max_past_days: 30,
            clock_drift_tolerance_secs: 55 * 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Keys a client must send in `X-Telemetry-Key`; empty = anonymous ingest.
    #[serde(default)]
    pub ingest_keys: Vec<String>,
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    #[serde(default)]
    pub rate_limit_per_minute: Option<u32>,
    /// Events per second the product takes in all, over every client; `0` = no cap.
    #[serde(default)]
    pub max_events_per_second: u32,
    /// k-anonymity of analytics answers: a group (breakdown, funnel breakdown, retention cohort,
    /// version) with fewer distinct installs is folded into "other". 0 turns it off.
    #[serde(default = "default_min_group_installs")]
    pub min_group_installs: u32,
    /// Flat-key → canonical-field names for flat events.
    #[serde(default)]
    pub mapping: BTreeMap<String, String>,
    #[serde(default)]
    pub schema: SchemaConfig,
    /// Per-product override of the `[privacy]` actions.
    #[serde(default)]
    pub privacy: Option<ProductPrivacy>,
    /// Default collection settings served to clients and enforced at ingest; policies refine
    /// them per client.
    #[serde(default)]
    pub collection: crate::policies::Settings,
    /// Web origins whose pages may call the client endpoints from a browser (CORS), `"*"` for
    /// any. Absent: any origin for anonymous products, none for products with ingest keys.
    #[serde(default)]
    pub cors_origins: Option<Vec<String>>,
    /// How OpenTelemetry (OTLP) clients reach this product.
    #[serde(default)]
    pub otlp: OtlpProductConfig,
    /// The keys other services' SDKs carry (a PostHog project token, an Aptabase app key), each
    /// selecting this product for that service's wire format.
    #[serde(default)]
    pub compat: CompatKeys,
}

/// A wire format of another service's SDKs whose requests name their product by a key of
/// their own (`[products.compat]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompatFormat {
    /// A PostHog project token (`phc_...`), in the body or the flags request.
    PostHog,
    /// An Aptabase app key (`A-SH-...`), in the `App-Key` header.
    Aptabase,
    /// A Sentry DSN (`https://PUBLIC_KEY@host/PROJECT_ID`): the project id in the path and the
    /// public key in `X-Sentry-Auth`, `?sentry_key=` or the envelope's `dsn`.
    Sentry,
}

impl CompatFormat {
    /// The config key under `[products.compat]` that lists this format's keys.
    pub fn config_key(self) -> &'static str {
        match self {
            CompatFormat::PostHog => "posthog_tokens",
            CompatFormat::Aptabase => "aptabase_app_keys",
            CompatFormat::Sentry => "sentry_dsns",
        }
    }

    /// Where this format's SDKs send their key, for an error that names what is missing.
    pub fn key_source(self) -> &'static str {
        match self {
            CompatFormat::PostHog => "a PostHog project token (`api_key` or `token`)",
            CompatFormat::Aptabase => "an Aptabase app key in the App-Key header",
            CompatFormat::Sentry => {
                "a Sentry DSN's public key (X-Sentry-Auth, ?sentry_key= or the envelope's dsn)"
            }
        }
    }

    /// A key as it is compared: Aptabase upper-cases app keys, so they match in any case; a
    /// Sentry DSN is compared as `PROJECT_ID:PUBLIC_KEY` (its host and scheme do not matter:
    /// the SDK reaches telemetryd under whatever name it is given).
    pub fn normalize(self, key: &str) -> String {
        match self {
            CompatFormat::PostHog => key.trim().to_string(),
            CompatFormat::Aptabase => key.trim().to_ascii_uppercase(),
            CompatFormat::Sentry => match sentry_dsn_parts(key) {
                Some((project, public_key)) => sentry_key(project, public_key),
                None => key.trim().to_string(),
            },
        }
    }

    /// Why `key` cannot be one of this format's keys (the SDKs check its form before sending).
    fn check(self, key: &str) -> Result<(), String> {
        if key.is_empty() || key.len() > 200 {
            return Err("each key must be 1-200 characters".into());
        }
        if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("a key must not contain spaces or control characters".into());
        }
        let parts: Vec<&str> = key.split('-').collect();
        let aptabase_form = parts.len() == 3
            && parts[0].eq_ignore_ascii_case("A")
            && ["EU", "US", "SH", "DEV"]
                .iter()
                .any(|r| parts[1].eq_ignore_ascii_case(r))
            && !parts[2].is_empty();
        if self == CompatFormat::Sentry && sentry_dsn_parts(key).is_none() {
            return Err(format!(
                "`{key}` is not a Sentry DSN: write it as the SDKs take it, `https://PUBLIC_KEY@HOST/PROJECT_ID` (a numeric project id; no secret key)"
            ));
        }
        if self == CompatFormat::Aptabase && !aptabase_form {
            return Err(format!(
                "`{key}` is not an Aptabase app key: the SDKs accept A-{{EU|US|SH|DEV}}-{{ID}} only (use A-SH-... with the SDK's host option for a self-hosted server)"
            ));
        }
        Ok(())
    }
}

/// The project id and public key of a Sentry DSN (`https://PUBLIC_KEY@HOST[/PATH]/PROJECT_ID`),
/// `None` when `dsn` is not one (a secret key, `PUBLIC:SECRET@`, is refused: it would be
/// sent in every request and is deprecated by Sentry).
pub fn sentry_dsn_parts(dsn: &str) -> Option<(&str, &str)> {
    let rest = dsn.trim();
    let rest = rest
        .strip_prefix("https://")
        .or_else(|| rest.strip_prefix("http://"))?;
    let (public_key, rest) = rest.split_once('@')?;
    let project = rest.trim_end_matches('/').rsplit('/').next()?;
    let (host, _) = rest.split_once('/')?;
    let key_ok = !public_key.is_empty()
        && public_key.len() <= 100
        && public_key.bytes().all(|b| b.is_ascii_alphanumeric());
    let project_ok =
        !project.is_empty() && project.len() <= 20 && project.bytes().all(|b| b.is_ascii_digit());
    (key_ok && project_ok && !host.is_empty()).then_some((project, public_key))
}

/// The form a Sentry product is looked up by: `PROJECT_ID:PUBLIC_KEY`.
pub fn sentry_key(project_id: &str, public_key: &str) -> String {
    format!("{}:{}", project_id.trim(), public_key.trim())
}

/// `[products.compat]`: the keys other services' SDKs send, each selecting this product when
/// such an SDK sends to telemetryd (and standing in for its ingest key).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompatKeys {
    /// PostHog project tokens (`phc_...`): what posthog-js, posthog-python, posthog-node send
    /// as `api_key`/`token`.
    pub posthog_tokens: Vec<String>,
    /// Aptabase app keys (`A-SH-...`), sent in the `App-Key` header.
    pub aptabase_app_keys: Vec<String>,
    /// Sentry DSNs (`https://PUBLIC_KEY@HOST/PROJECT_ID`) as given to sentry-python,
    /// @sentry/node, @sentry/browser, ...: the project id and public key select the product.
    pub sentry_dsns: Vec<String>,
}

impl CompatKeys {
    /// Each format with its keys as configured.
    pub fn by_format(&self) -> [(CompatFormat, &[String]); 3] {
        [
            (CompatFormat::PostHog, &self.posthog_tokens),
            (CompatFormat::Aptabase, &self.aptabase_app_keys),
            (CompatFormat::Sentry, &self.sentry_dsns),
        ]
    }
}

/// `[products.otlp]`: which OTLP senders belong to a product, and where their install id is.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpProductConfig {
    /// `service.name` resource values that select this product when a request names no
    /// product (no `/otlp/{product}/` path prefix and no ingest key).
    pub service_names: Vec<String>,
    /// The resource or record attribute that carries the install id (none by default).
    pub install_id_attribute: Option<String>,
}

fn default_retention_days() -> u32 {
    90
}

fn default_min_group_installs() -> u32 {
    5
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductPrivacy {
    pub free_text: Option<FreeTextAction>,
    pub fields: Option<FieldAction>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaConfig {
    pub mode: SchemaMode,
    /// Event names accepted in strict mode.
    pub events: Vec<String>,
    /// Dimensions with a closed set of values; others become `"other"`.
    pub enums: BTreeMap<String, Vec<String>>,
    /// Numeric measurements.
    pub numbers: Vec<String>,
    /// Boolean dimensions.
    pub bools: Vec<String>,
    /// Free string dimensions (still PII-checked).
    pub strings: Vec<String>,
    /// String dimensions that must match a regex, or are dropped.
    pub patterns: BTreeMap<String, String>,
    /// Canonical fields an event must carry (e.g. `install_id`).
    pub required: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaMode {
    Strict,
    #[default]
    Open,
}

impl Config {
    /// Reads, applies environment overrides, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_with_env(&text, path, std::env::vars())
    }

    /// Parses TOML text with overrides from `env` (name, value) pairs, then validates.
    pub fn from_toml_with_env(
        text: &str,
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let parse_error = |message: String| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        };
        // Parsed from the text first, so that errors point at a line of the file.
        let mut config: Config = toml::from_str(text).map_err(|e| parse_error(e.to_string()))?;
        // Only `TELEMETRYD_SECTION__KEY` names are overrides; other TELEMETRYD_ variables (a
        // token for `telemetryd bench`, build settings) are not the config's business.
        let overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with("TELEMETRYD_") && name.contains("__"))
            .collect();
        if !overrides.is_empty() {
            let mut table: toml::Table =
                toml::from_str(text).map_err(|e| parse_error(e.to_string()))?;
            for (name, value) in &overrides {
                apply_override(&mut table, &name["TELEMETRYD_".len()..], value)?;
            }
            config = table
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    key: "environment override".into(),
                    reason: e.to_string(),
                })?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text without environment overrides (tests, embedded defaults).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::from_toml_with_env(text, Path::new("<inline>"), std::iter::empty())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|e| {
            invalid(
                "server.listen",
                format!("`{}` is not an address: {e}", self.server.listen),
            )
        })
    }

    /// The separate `/metrics` address, when `[metrics] listen` names one.
    pub fn metrics_listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        self.metrics
            .listen
            .as_deref()
            .map(|listen| {
                listen.parse().map_err(|e| {
                    invalid(
                        "metrics.listen",
                        format!("`{listen}` is not an address: {e}"),
                    )
                })
            })
            .transpose()
    }

    /// Where backups written by the server go: `server.backup_dir`, or `DATA_DIR/backups`.
    pub fn backup_dir(&self) -> PathBuf {
        self.server
            .backup_dir
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("backups"))
    }

    pub fn trusted_proxies(&self) -> Result<Vec<Cidr>, ConfigError> {
        self.server
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Cidr::parse(s).ok_or_else(|| {
                    invalid(
                        format!("server.trusted_proxies[{i}]"),
                        format!("`{s}` is not an IP address or CIDR"),
                    )
                })
            })
            .collect()
    }

    pub fn pii_detectors(&self) -> Result<Vec<PiiKind>, ConfigError> {
        self.privacy
            .detectors
            .iter()
            .enumerate()
            .map(|(i, name)| {
                PiiKind::from_name(name).ok_or_else(|| {
                    let known: Vec<_> = PiiKind::ALL.iter().map(|k| k.as_str()).collect();
                    invalid(
                        format!("privacy.detectors[{i}]"),
                        format!("unknown detector `{name}`; known: {}", known.join(", ")),
                    )
                })
            })
            .collect()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        self.trusted_proxies()?;
        self.pii_detectors()?;
        let server = &self.server;
        for (key, value) in [
            ("server.max_body_bytes", server.max_body_bytes),
            (
                "server.max_decompressed_bytes",
                server.max_decompressed_bytes,
            ),
            ("server.max_batch_events", server.max_batch_events),
            ("server.max_event_bytes", server.max_event_bytes),
            ("server.writer_queue", server.writer_queue),
            ("server.writer_queue_events", server.writer_queue_events),
            ("server.max_connections", server.max_connections),
            ("search.queue_events", self.search.queue_events),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if server.data_dir.as_os_str().is_empty() {
            return Err(invalid("server.data_dir", "must not be empty"));
        }
        if server
            .backup_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(invalid(
                "server.backup_dir",
                "must name a directory, or be left out (DATA_DIR/backups)",
            ));
        }
        self.metrics_listen_addr()?;
        if self
            .metrics
            .token_hash
            .as_deref()
            .is_some_and(|h| crate::hash::parse_token_hash(h).is_none())
        {
            return Err(invalid(
                "metrics.token_hash",
                "must be `sha256:` followed by 64 hex digits, as printed by `telemetryd hash-token`",
            ));
        }
        self.validate_admin()?;
        let mut sink_names = std::collections::HashSet::new();
        for (i, sink) in self.sinks.iter().enumerate() {
            sink.validate(i)?;
            if !sink_names.insert(sink.name.as_str()) {
                return Err(invalid(
                    format!("sinks[{i}].name"),
                    format!("sink name `{}` is used twice", sink.name),
                ));
            }
        }
        if let Some(path) = &self.geo.database {
            if !path.is_file() {
                return Err(invalid(
                    "geo.database",
                    format!("file {} does not exist", path.display()),
                ));
            }
        }
        if self.search.commit_interval_ms == 0
            || self.search.commit_interval_ms > crate::timespan::MINUTE_MS as u64
        {
            return Err(invalid(
                "search.commit_interval_ms",
                "must be between 1 and 60000",
            ));
        }
        if !(16..=4096).contains(&self.search.writer_memory_mb) {
            return Err(invalid(
                "search.writer_memory_mb",
                "must be between 16 and 4096",
            ));
        }
        if self.search.scan_cache_mb > 1 << 20 {
            return Err(invalid(
                "search.scan_cache_mb",
                "must be at most 1048576 (1 TiB)",
            ));
        }
        check_schedule("retention.schedule", &self.retention.schedule)?;
        check_schedule("clusters.schedule", &self.clusters.schedule)?;
        self.clusters
            .escalation
            .validate()
            .map_err(|e| invalid(format!("clusters.escalation.{}", e.field()), e.to_string()))?;
        for (i, target) in self.alerts.webhooks.iter().enumerate() {
            target.validate().map_err(|e| {
                invalid(format!("alerts.webhooks[{i}].{}", e.field()), e.to_string())
            })?;
        }
        if !(0.0..=1.0).contains(&self.retention.compact_free_ratio) {
            return Err(invalid(
                "retention.compact_free_ratio",
                "must be between 0 and 1",
            ));
        }
        if self.privacy.purge_interval_secs > 7 * 24 * 3600 {
            return Err(invalid(
                "privacy.purge_interval_secs",
                "must be at most 604800 (a week)",
            ));
        }
        if !(1..=3600).contains(&self.privacy.wait_purge_timeout_secs) {
            return Err(invalid(
                "privacy.wait_purge_timeout_secs",
                "must be between 1 and 3600",
            ));
        }
        if self.limits.rate_limit_per_minute == 0 {
            return Err(invalid(
                "limits.rate_limit_per_minute",
                "must be greater than 0",
            ));
        }
        if self.products.is_empty() {
            return Err(invalid(
                "products",
                "no product configured: add at least one [[products]] table with an `id`",
            ));
        }
        let mut seen_ids = std::collections::HashSet::new();
        let mut seen_keys = std::collections::HashSet::new();
        let mut seen_services = std::collections::HashSet::new();
        let mut seen_compat = std::collections::HashSet::new();
        for (i, product) in self.products.iter().enumerate() {
            let key = |k: &str| format!("products[{i}].{k}");
            product.validate(&key)?;
            if !seen_ids.insert(product.id.as_str()) {
                return Err(invalid(
                    key("id"),
                    format!("product id `{}` is used twice", product.id),
                ));
            }
            for ingest_key in &product.ingest_keys {
                if !seen_keys.insert(ingest_key.as_str()) {
                    return Err(invalid(
                        key("ingest_keys"),
                        "an ingest key is used by two products",
                    ));
                }
            }
            for (format, keys) in product.compat.by_format() {
                for (j, compat_key) in keys.iter().enumerate() {
                    let key = key(&format!("compat.{}[{j}]", format.config_key()));
                    format
                        .check(compat_key)
                        .map_err(|e| invalid(key.clone(), e))?;
                    if !seen_compat.insert((format, format.normalize(compat_key))) {
                        return Err(invalid(key, "the key is listed twice or by two products"));
                    }
                }
            }
            for (j, service) in product.otlp.service_names.iter().enumerate() {
                let key = key(&format!("otlp.service_names[{j}]"));
                if service.trim().is_empty() {
                    return Err(invalid(key, "must not be empty"));
                }
                if !seen_services.insert(service.as_str()) {
                    return Err(invalid(
                        key,
                        format!("service.name `{service}` selects two products"),
                    ));
                }
            }
            if product
                .otlp
                .install_id_attribute
                .as_ref()
                .is_some_and(|a| a.trim().is_empty())
            {
                return Err(invalid(
                    key("otlp.install_id_attribute"),
                    "must name an attribute, or be left out",
                ));
            }
        }
        Ok(())
    }

    fn validate_admin(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for (i, token) in self.admin.tokens.iter().enumerate() {
            let key = format!("admin.tokens[{i}]");
            if token.name.trim().is_empty() {
                return Err(invalid(format!("{key}.name"), "must not be empty"));
            }
            if !names.insert(token.name.as_str()) {
                return Err(invalid(
                    format!("{key}.name"),
                    format!("token name `{}` is used twice", token.name),
                ));
            }
            if crate::hash::parse_token_hash(&token.hash).is_none() {
                return Err(invalid(
                    format!("{key}.hash"),
                    "must be `sha256:` followed by 64 hex digits, as printed by `telemetryd hash-token`",
                ));
            }
            for (j, product) in token.products.iter().enumerate() {
                if !self.products.iter().any(|p| &p.id == product) {
                    return Err(invalid(
                        format!("{key}.products[{j}]"),
                        format!("`{product}` is not a configured product id"),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl ProductConfig {
    fn validate(&self, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !id_ok {
            return Err(invalid(
                key("id"),
                format!("`{}` must be 1-64 letters, digits, `-` or `_`", self.id),
            ));
        }
        if self.retention_days == 0 {
            return Err(invalid(key("retention_days"), "must be at least 1"));
        }
        if self.rate_limit_per_minute == Some(0) {
            return Err(invalid(
                key("rate_limit_per_minute"),
                "must be greater than 0",
            ));
        }
        if self.ingest_keys.iter().any(|k| k.len() < 8) {
            return Err(invalid(
                key("ingest_keys"),
                "each ingest key must be at least 8 characters",
            ));
        }
        for (flat_key, field) in &self.mapping {
            if Field::from_name(field).is_none() {
                return Err(invalid(
                    key(&format!("mapping.{flat_key}")),
                    format!(
                        "`{field}` is not an event field; known: {}",
                        Field::names().join(", ")
                    ),
                ));
            }
        }
        self.allowed_origins(key)?;
        crate::policies::validate_settings(&self.collection, &key("collection"))
            .map_err(|e| invalid(e.field.clone(), e.reason.clone()))?;
        let schema = &self.schema;
        if schema.mode == SchemaMode::Strict && schema.events.is_empty() {
            return Err(invalid(
                key("schema.events"),
                "strict mode needs the list of accepted event names",
            ));
        }
        for (name, pattern) in &schema.patterns {
            if let Err(e) = regex::Regex::new(pattern) {
                return Err(invalid(
                    key(&format!("schema.patterns.{name}")),
                    format!("invalid regex: {e}"),
                ));
            }
        }
        for (name, values) in &schema.enums {
            if values.is_empty() {
                return Err(invalid(
                    key(&format!("schema.enums.{name}")),
                    "must list at least one value",
                ));
            }
        }
        for field in &schema.required {
            if Field::from_name(field).is_none() {
                return Err(invalid(
                    key("schema.required"),
                    format!(
                        "`{field}` is not an event field; known: {}",
                        Field::names().join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The origins `cors_origins` allows, with its default when absent; a bad entry is an
    /// error naming `cors_origins[M]`.
    pub fn allowed_origins(
        &self,
        key: &dyn Fn(&str) -> String,
    ) -> Result<AllowedOrigins, ConfigError> {
        match &self.cors_origins {
            None if self.ingest_keys.is_empty() => Ok(AllowedOrigins::Any),
            None => Ok(AllowedOrigins::Listed(Vec::new())),
            Some(list) => {
                AllowedOrigins::parse(list.iter().map(String::as_str)).map_err(|(i, e)| {
                    invalid(
                        key(&format!("cors_origins[{i}]")),
                        format!("`{}` is not an origin: {e}", list[i]),
                    )
                })
            }
        }
    }

    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

fn check_schedule(key: &str, schedule: &str) -> Result<(), ConfigError> {
    tokio_cron_scheduler::Job::new_async(schedule, |_, _| Box::pin(async {}))
        .map(|_| ())
        .map_err(|e| {
            invalid(
                key,
                format!(
                    "`{schedule}` is not a cron schedule (sec min hour day month weekday): {e}"
                ),
            )
        })
}

/// Applies one `TELEMETRYD_SECTION__KEY=value` override to the parsed table.
fn apply_override(table: &mut toml::Table, key: &str, raw: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = key.split("__").map(|p| p.to_ascii_lowercase()).collect();
    let env_name = format!("TELEMETRYD_{key}");
    if path.len() < 2 || path.iter().any(|p| p.is_empty()) {
        return Err(invalid(
            env_name,
            "environment overrides are named TELEMETRYD_SECTION__KEY, e.g. TELEMETRYD_SERVER__LISTEN",
        ));
    }
    let value = parse_env_value(raw);
    let (last, sections) = path.split_last().expect("path has at least two parts");
    let mut current = table;
    for section in sections {
        let entry = current
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(invalid(
                    env_name,
                    format!("`{section}` is not a table in the config"),
                ))
            }
        };
    }
    current.insert(last.clone(), value);
    Ok(())
}

/// An override value is read as a TOML value when it is one (number, bool, array), else as a string.
fn parse_env_value(raw: &str) -> toml::Value {
    let parsed: Result<toml::Table, _> = toml::from_str(&format!("v = {raw}"));
    match parsed.ok().and_then(|mut t| t.remove("v")) {
        Some(value) => value,
        None => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[[products]]\nid = \"app\"\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let config = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:8080");
        assert_eq!(config.limits.rate_limit_per_minute, 100);
        assert_eq!(config.products[0].retention_days, 90);
        assert_eq!(config.backup_dir(), PathBuf::from("./data/backups"));
        assert_eq!(config.metrics_listen_addr().unwrap(), None);
        assert_eq!(config.metrics.token_hash, None);
    }

    #[test]
    fn sinks_get_defaults_and_invalid_ones_name_the_key() {
        let config = Config::from_toml(&format!(
            "{MINIMAL}[[sinks]]\nname = \"wh\"\nkind = \"clickhouse\"\n"
        ))
        .unwrap();
        let sink = &config.sinks[0];
        assert_eq!(sink.url, "http://127.0.0.1:8123");
        assert_eq!(
            (sink.database.as_str(), sink.table.as_str()),
            ("telemetry", "events")
        );
        assert_eq!(
            (sink.batch_size, sink.flush_interval_ms, sink.timeout_ms),
            (50_000, 1_000, 10_000)
        );
        assert_eq!(sink.password().unwrap(), None);
        for (extra, key) in [
            ("name = \"Bad Name\"\nkind = \"clickhouse\"", "sinks[0].name"),
            ("name = \"a\"\nkind = \"clickhouse\"\ntable = \"x;drop\"", "sinks[0].table"),
            ("name = \"a\"\nkind = \"clickhouse\"\nshard_table = \"a b\"", "sinks[0].shard_table"),
            ("name = \"a\"\nkind = \"clickhouse\"\npoints_table = \"events\"", "sinks[0].points_table"),
            ("name = \"a\"\nkind = \"clickhouse\"\nshards = [\"ch-2:8123\"]", "sinks[0].shards"),
            ("name = \"a\"\nkind = \"clickhouse\"\nurl = \"ftp://x\"", "sinks[0].url"),
            ("name = \"a\"\nkind = \"clickhouse\"\nbatch_size = 0", "sinks[0].batch_size"),
            (
                "name = \"a\"\nkind = \"clickhouse\"\npassword_env = \"X\"\npassword_file = \"/y\"",
                "sinks[0].password_env",
            ),
            ("name = \"a\"\nkind = \"clickhouse\"\n[[sinks]]\nname = \"a\"\nkind = \"clickhouse\"", "sinks[1].name"),
        ] {
            let err = Config::from_toml(&format!("{MINIMAL}[[sinks]]\n{extra}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
    }

    #[test]
    fn sink_passwords_come_from_a_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let config = Config::from_toml(&format!(
            "{MINIMAL}[[sinks]]\nname = \"wh\"\nkind = \"clickhouse\"\npassword_file = \"{}\"\n[[sinks]]\nname = \"env\"\nkind = \"clickhouse\"\npassword_env = \"TELEMETRYD_TEST_UNSET_PASSWORD\"\n",
            file.display()
        ))
        .unwrap();
        assert_eq!(
            config.sinks[0].password().unwrap().as_deref(),
            Some("s3cret")
        );
        let err = config.sinks[1].password().unwrap_err().to_string();
        assert!(err.contains("sinks.env.password_env"), "{err}");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[server]\nlisten_adress = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_adress"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn missing_products_says_what_to_add() {
        let err = Config::from_toml("").unwrap_err().to_string();
        assert!(err.contains("[[products]]"), "{err}");
    }

    #[test]
    fn env_overrides_single_keys() {
        let env = vec![
            (
                "TELEMETRYD_TOKEN".to_string(),
                "not an override".to_string(),
            ),
            (
                "TELEMETRYD_SERVER__LISTEN".to_string(),
                "0.0.0.0:9000".to_string(),
            ),
            (
                "TELEMETRYD_LIMITS__RATE_LIMIT_PER_MINUTE".to_string(),
                "7".to_string(),
            ),
            ("OTHER".to_string(), "ignored".to_string()),
        ];
        let config = Config::from_toml_with_env(MINIMAL, Path::new("x"), env).unwrap();
        assert_eq!(config.server.listen, "0.0.0.0:9000");
        assert_eq!(config.limits.rate_limit_per_minute, 7);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("[server]\nlisten = \"nope\"\n", "server.listen"),
            (
                "[server]\ntrusted_proxies = [\"10.0.0.0/99\"]\n",
                "server.trusted_proxies[0]",
            ),
            (
                "[privacy]\ndetectors = [\"email\", \"dna\"]\n",
                "privacy.detectors[1]",
            ),
            (
                "[[admin.tokens]]\nname = \"ops\"\nrole = \"admin\"\nhash = \"plain\"\n",
                "admin.tokens[0].hash",
            ),
            ("[geo]\ndatabase = \"/nonexistent.mmdb\"\n", "geo.database"),
            ("[server]\nbackup_dir = \"\"\n", "server.backup_dir"),
            ("[metrics]\nlisten = \"9464\"\n", "metrics.listen"),
            ("[metrics]\ntoken_hash = \"secret\"\n", "metrics.token_hash"),
        ];
        for (text, key) in cases {
            let err = Config::from_toml(&format!("{text}{MINIMAL}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
        let product_cases = [
            ("id = \"bad id\"", "products[0].id"),
            (
                "id = \"a\"\nretention_days = 0",
                "products[0].retention_days",
            ),
            (
                "id = \"a\"\n[products.schema]\nmode = \"strict\"",
                "products[0].schema.events",
            ),
            (
                "id = \"a\"\n[products.schema.patterns]\nx = \"(\"",
                "products[0].schema.patterns.x",
            ),
            (
                "id = \"a\"\n[products.mapping]\nsdk = \"nonsense\"",
                "products[0].mapping.sdk",
            ),
            (
                "id = \"a\"\ncors_origins = [\"*\", \"https://app.example.com/\"]",
                "products[0].cors_origins[1]",
            ),
            (
                "id = \"a\"\n[products.compat]\naptabase_app_keys = [\"A-SH-1\", \"my-key\"]",
                "products[0].compat.aptabase_app_keys[1]",
            ),
            (
                "id = \"a\"\n[products.compat]\nposthog_tokens = [\"phc_a b\"]",
                "products[0].compat.posthog_tokens[0]",
            ),
            (
                "id = \"a\"\n[products.compat]\naptabase_app_keys = [\"A-SH-1\", \"a-sh-1\"]",
                "products[0].compat.aptabase_app_keys[1]",
            ),
            (
                "id = \"a\"\n[products.compat]\nsentry_dsns = [\"https://abc@h.example/x\"]",
                "products[0].compat.sentry_dsns[0]",
            ),
            (
                "id = \"a\"\n[products.compat]\nsentry_dsns = [\"https://abc:secret@h.example/4\"]",
                "products[0].compat.sentry_dsns[0]",
            ),
            (
                "id = \"a\"\n[products.compat]\nsentry_dsns = [\"https://abc@a.example/4\", \"http://abc@b.example/4\"]",
                "products[0].compat.sentry_dsns[1]",
            ),
        ];
        for (text, key) in product_cases {
            let err = Config::from_toml(&format!("[[products]]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn cors_origins_default_by_ingest_keys_and_bad_entries_say_why() {
        let config = Config::from_toml(
            "[[products]]\nid = \"open\"\n\n[[products]]\nid = \"keyed\"\ningest_keys = [\"key-0123456\"]\n\n[[products]]\nid = \"web\"\ningest_keys = [\"key-abcdefg\"]\ncors_origins = [\"HTTPS://App.Example.com:443\", \"http://localhost:5173\"]\n",
        )
        .unwrap();
        let origins: Vec<AllowedOrigins> = config
            .products
            .iter()
            .map(|p| p.allowed_origins(&|k| k.to_string()).unwrap())
            .collect();
        assert_eq!(
            origins,
            vec![
                AllowedOrigins::Any,
                AllowedOrigins::Listed(vec![]),
                AllowedOrigins::Listed(vec![
                    "https://app.example.com".into(),
                    "http://localhost:5173".into()
                ]),
            ]
        );
        let err = Config::from_toml(
            "[[products]]\nid = \"a\"\n\n[[products]]\nid = \"b\"\ncors_origins = [\"https://ok.example\", \"app.example.com\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "config key `products[1].cors_origins[1]`: `app.example.com` is not an origin: an origin starts with its scheme, as in `https://app.example.com`"
        );
    }
}
