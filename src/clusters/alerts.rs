//! Alert content and configuration: webhook targets, the Slack-compatible JSON payload with a
//! structured `telemetryd` object, the `X-Telemetryd-Signature` HMAC, and the alert log and
//! counters types that [`super::dispatcher::Dispatcher`] fills.
//!
//! Verifying a signature (receiver side): take the raw request body bytes exactly as received
//! (before any JSON parsing), compute HMAC-SHA256 with the target's shared secret as the key,
//! hex-encode it in lowercase, prefix `sha256=`, and compare with the `X-Telemetryd-Signature`
//! header in constant time ([`verify_signature`] does exactly that). Example in Python:
//! `hmac.compare_digest("sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest(), header)`.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;

use super::cluster::{Change, Cluster, ClusterError, Severity};
use crate::hash::hex;
use crate::timespan::MINUTE_MS;

/// Header carrying the body's HMAC.
pub const SIGNATURE_HEADER: &str = "X-Telemetryd-Signature";
/// Header carrying the alert event name (`new`, `escalated`, ...).
pub const EVENT_HEADER: &str = "X-Telemetryd-Event";

fn default_min_severity() -> Severity {
    Severity::Error
}
fn default_timeout_ms() -> u64 {
    5000
}
fn default_max_attempts() -> u32 {
    4
}

/// A webhook from the config (`[[clusters.webhooks]]` or similar). `Debug` hides the secret.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    pub name: String,
    pub url: String,
    #[serde(skip_serializing)]
    pub secret: String,
    /// Products this target wants; empty = all.
    #[serde(default)]
    pub products: Vec<String>,
    /// Alerts for clusters below this severity are not sent to this target.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// Per attempt, connect to last byte.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts in all (1 = no retry).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("products", &self.products)
            .field("min_severity", &self.min_severity)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl WebhookTarget {
    pub fn new(name: &str, url: &str, secret: &str) -> WebhookTarget {
        WebhookTarget {
            name: name.to_owned(),
            url: url.to_owned(),
            secret: secret.to_owned(),
            products: Vec::new(),
            min_severity: default_min_severity(),
            timeout_ms: default_timeout_ms(),
            max_attempts: default_max_attempts(),
        }
    }

    /// Config validation; the error names the field.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let invalid = |field: &'static str, message: &str| {
            Err(ClusterError::InvalidField {
                field,
                message: message.to_owned(),
            })
        };
        if self.name.trim().is_empty() {
            return invalid("name", "must not be empty");
        }
        let url = self.url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
            return invalid("url", "must be an http:// or https:// URL");
        }
        if self.secret.len() < 16 {
            return invalid("secret", "must be at least 16 characters");
        }
        if !(100..=MINUTE_MS as u64).contains(&self.timeout_ms) {
            return invalid("timeout_ms", "must be between 100 and 60000");
        }
        if !(1..=10).contains(&self.max_attempts) {
            return invalid("max_attempts", "must be between 1 and 10");
        }
        Ok(())
    }

    /// Whether this target wants alerts about `cluster` (product filter, minimum severity).
    pub fn wants(&self, cluster: &Cluster) -> bool {
        (self.products.is_empty() || self.products.contains(&cluster.product))
            && cluster.severity >= self.min_severity
    }
}

/// `"sha256=" + lowercase hex(HMAC-SHA256(key = secret, message = body))`.
pub fn signature(body: &[u8], secret: &str) -> String {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

/// Checks a `sha256=<hex>` header against `body` in constant time.
pub fn verify_signature(body: &[u8], secret: &str, header: &str) -> bool {
    let Some(hex_tag) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Some(tag) = decode_hex(hex_tag) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks_exact(2)
        .map(|pair| {
            let high = (pair[0] as char).to_digit(16)?;
            let low = (pair[1] as char).to_digit(16)?;
            u8::try_from(high << 4 | low).ok()
        })
        .collect()
}

/// Escapes the three characters Slack's message format reserves.
pub fn slack_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// `{ui_base_url}/clusters/{id}` (one slash between).
pub fn cluster_url(ui_base_url: &str, cluster_id: &str) -> String {
    format!(
        "{}/clusters/{cluster_id}",
        ui_base_url.trim_end_matches('/')
    )
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// The five most frequent app versions, most frequent first (ties by version string).
pub fn top_versions(cluster: &Cluster, n: usize) -> Vec<(&str, u64)> {
    let mut versions: Vec<(&str, u64)> = cluster
        .app_versions
        .iter()
        .map(|(v, c)| (v.as_str(), *c))
        .collect();
    versions.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    versions.truncate(n);
    versions
}

fn headline(cluster: &Cluster, change: &Change) -> String {
    match change {
        Change::New => format!("New {} cluster", cluster.severity.as_str()),
        Change::Escalated { from, to } => {
            format!(
                "Cluster escalated from {} to {}",
                from.as_str(),
                to.as_str()
            )
        }
        Change::Spike { hourly, forecast } => {
            format!("Cluster is escalating: {hourly} events in an hour (forecast {forecast:.0})")
        }
        Change::Regressed { version: Some(v) } => format!("Regression in version {v}"),
        Change::Regressed { version: None } => "Regression of a resolved cluster".to_owned(),
        Change::Unignored => "Ignored cluster is back".to_owned(),
    }
}

fn color(severity: Severity) -> &'static str {
    match severity {
        Severity::Warn => "#e9a820",
        Severity::Error => "#d4351c",
        Severity::Fatal => "#7a0019",
    }
}

/// The alert body: Slack-compatible (`text` plus an `attachments` entry with fields) and a
/// `telemetryd` object with the structured data for other receivers.
pub fn payload(cluster: &Cluster, change: &Change, ui_base_url: &str) -> Value {
    let url = cluster_url(ui_base_url, &cluster.id);
    let (installs, exact) = cluster.installs.estimate();
    let installs_text = if exact {
        installs.to_string()
    } else {
        format!("~{installs}")
    };
    let versions = top_versions(cluster, 5);
    let versions_text = versions
        .iter()
        .map(|(v, c)| format!("{v} ({c})"))
        .collect::<Vec<_>>()
        .join(", ");
    let platforms_text = cluster
        .platforms
        .iter()
        .map(|(p, c)| format!("{p} ({c})"))
        .collect::<Vec<_>>()
        .join(", ");
    let count_text = format!(
        "{}{}",
        if cluster.is_estimated() { "~" } else { "" },
        cluster.weighted_count.round()
    );
    let headline = headline(cluster, change);
    let text = format!(
        "[{product}] {headline}: <{url}|{title}> ({severity}, {count_text} events, {installs_text} installs)",
        product = slack_escape(&cluster.product),
        headline = slack_escape(&headline),
        title = slack_escape(&cluster.title),
        severity = cluster.severity.as_str(),
    );
    let field = |title: &str, value: String, short: bool| json!({ "title": title, "value": slack_escape(&value), "short": short });
    let details = match change {
        Change::New | Change::Unignored => json!({}),
        Change::Escalated { from, to } => json!({ "from": from, "to": to }),
        Change::Spike { hourly, forecast } => json!({ "hourly": hourly, "forecast": forecast }),
        Change::Regressed { version } => json!({ "version": version }),
    };
    json!({
        "text": text,
        "attachments": [{
            "fallback": slack_escape(&format!("[{}] {headline}: {}", cluster.product, cluster.title)),
            "color": color(cluster.severity),
            "title": slack_escape(&cluster.title),
            "title_link": url,
            "fields": [
                field("Product", cluster.product.clone(), true),
                field("Severity", cluster.severity.as_str().to_owned(), true),
                field("Status", cluster.status.as_str().to_owned(), true),
                field("Events", count_text.clone(), true),
                field("Installs", installs_text.clone(), true),
                field("Platforms", platforms_text, true),
                field("Versions", versions_text, false),
                field("First seen", rfc3339(cluster.first_seen), true),
                field("Last seen", rfc3339(cluster.last_seen), true),
            ],
            "footer": "telemetryd",
            "ts": cluster.last_seen.div_euclid(1000),
        }],
        "telemetryd": {
            "event": change.event_name(),
            "product": cluster.product,
            "cluster_id": cluster.id,
            "title": cluster.title,
            "severity": cluster.severity,
            "status": cluster.status.as_str(),
            "escalating": cluster.escalating,
            "count": cluster.weighted_count,
            "raw_count": cluster.count,
            "count_estimated": cluster.is_estimated(),
            "installs": installs,
            "installs_estimated": !exact,
            "app_versions": versions
                .iter()
                .map(|(v, c)| json!({ "version": v, "count": c }))
                .collect::<Vec<_>>(),
            "platforms": cluster.platforms,
            "first_seen": cluster.first_seen,
            "last_seen": cluster.last_seen,
            "url": url,
            "details": details,
        }
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Delivered,
    Failed,
    Throttled,
}

/// One line of the alert log (the API shows the newest first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertLogEntry {
    pub time_ms: i64,
    pub target: String,
    pub cluster_id: String,
    pub event: String,
    /// HTTP attempts made (0 when throttled or dropped).
    pub attempts: u32,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Delivery counters since start, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertStats {
    pub delivered: u64,
    pub failed: u64,
    pub throttled: u64,
    /// Attempts after the first.
    pub retries: u64,
    /// Alerts not queued because the queue was full (also counted in `failed`).
    pub dropped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clusters::cluster::Cluster;
    use crate::clusters::fingerprint::tests::event;
    use crate::model::Level;

    fn cluster() -> Cluster {
        let mut e = event(
            "recognition_failed",
            Level::Error,
            None,
            "Timeout after 3021 ms & <retry>",
        );
        let mut c = Cluster::new(&e, "0123456789abcdef0123456789abcdef");
        for (i, v) in [
            "1.0.0", "1.1.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.4.0", "1.4.0",
        ]
        .iter()
        .enumerate()
        {
            e.app_version = Some((*v).into());
            e.install_id = Some(format!("i{i}"));
            c.add(&e);
        }
        c
    }

    #[test]
    fn hmac_known_vector_and_verification() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"what do ya want for nothing?", "Jefe"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let body = br#"{"text":"hi"}"#;
        let sig = signature(body, "s3cret-s3cret-s3cret");
        assert!(verify_signature(body, "s3cret-s3cret-s3cret", &sig));
        assert!(!verify_signature(body, "other-secret-xxxxxx", &sig));
        assert!(!verify_signature(
            b"{\"text\":\"ho\"}",
            "s3cret-s3cret-s3cret",
            &sig
        ));
        assert!(!verify_signature(body, "s3cret-s3cret-s3cret", "sha256=zz"));
        assert!(!verify_signature(body, "s3cret-s3cret-s3cret", &sig[7..]));
    }

    #[test]
    fn payload_is_slack_compatible_and_structured() {
        let c = cluster();
        let p = payload(&c, &Change::New, "https://td.example.com/ui/");
        let text = p["text"].as_str().unwrap();
        assert!(text.starts_with("[voice-sdk] New error cluster: <https://td.example.com/ui/clusters/0123456789abcdef0123456789abcdef|"), "{text}");
        // The title's placeholders and `&` are escaped for Slack, raw in the structured part.
        assert!(
            text.contains("Timeout after &lt;int&gt; ms &amp; &lt;retry&gt;"),
            "{text}"
        );
        assert!(text.ends_with("(error, 8 events, 8 installs)"), "{text}");
        let t = &p["telemetryd"];
        assert_eq!(t["event"], "new");
        assert_eq!(
            t["title"],
            "recognition_failed: Timeout after <int> ms & <retry>"
        );
        assert_eq!(t["product"], "voice-sdk");
        assert_eq!(t["cluster_id"], c.id);
        assert_eq!(t["severity"], "error");
        assert_eq!(t["status"], "open");
        assert_eq!(t["count"], 8.0);
        assert_eq!(t["raw_count"], 8);
        assert_eq!(t["installs"], 8);
        assert_eq!(t["installs_estimated"], false);
        assert_eq!(
            t["url"],
            "https://td.example.com/ui/clusters/0123456789abcdef0123456789abcdef"
        );
        let versions: Vec<&str> = t["app_versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_str().unwrap())
            .collect();
        assert_eq!(versions, ["1.4.0", "1.1.0", "1.0.0", "1.2.0", "1.3.0"]);
        assert_eq!(t["app_versions"][0]["count"], 3);
        assert_eq!(t["platforms"]["ios"], 8);
        assert_eq!(t["first_seen"], c.first_seen);
        let attachment = &p["attachments"][0];
        assert_eq!(attachment["title_link"], t["url"]);
        assert!(attachment["fields"].as_array().unwrap().len() >= 8);
        assert_eq!(attachment["fields"][8]["value"], "2023-11-14T22:13:20Z");

        let p = payload(
            &c,
            &Change::Escalated {
                from: Severity::Warn,
                to: Severity::Error,
            },
            "http://x",
        );
        assert_eq!(p["telemetryd"]["event"], "escalated");
        assert_eq!(p["telemetryd"]["details"]["from"], "warn");
        let p = payload(
            &c,
            &Change::Regressed {
                version: Some("1.5.0".into()),
            },
            "http://x",
        );
        assert_eq!(p["telemetryd"]["event"], "regressed");
        assert!(p["text"]
            .as_str()
            .unwrap()
            .contains("Regression in version 1.5.0"));
        let p = payload(
            &c,
            &Change::Spike {
                hourly: 500,
                forecast: 40.0,
            },
            "http://x",
        );
        assert_eq!(p["telemetryd"]["event"], "spike");
        assert_eq!(p["telemetryd"]["details"]["hourly"], 500);
    }

    #[test]
    fn targets_parse_validate_and_filter() {
        let t: WebhookTarget = serde_json::from_str(
            r#"{"name":"ops","url":"https://hooks.example.com/x","secret":"0123456789abcdef"}"#,
        )
        .unwrap();
        assert_eq!(t.min_severity, Severity::Error);
        assert_eq!(t.timeout_ms, 5000);
        assert_eq!(t.max_attempts, 4);
        t.validate().unwrap();
        assert!(!format!("{t:?}").contains("0123456789abcdef"));
        assert!(serde_json::from_str::<WebhookTarget>(
            r#"{"name":"x","url":"u","secret":"s","typo":1}"#
        )
        .is_err());
        let mut bad = t.clone();
        bad.url = "ftp://x".into();
        assert_eq!(bad.validate().unwrap_err().field(), "url");
        let mut bad = t.clone();
        bad.secret = "short".into();
        assert_eq!(bad.validate().unwrap_err().field(), "secret");

        let mut c = cluster();
        assert!(t.wants(&c));
        c.severity = Severity::Warn;
        assert!(!t.wants(&c));
        let mut only_other = t.clone();
        only_other.min_severity = Severity::Warn;
        assert!(only_other.wants(&c));
        only_other.products = vec!["other".into()];
        assert!(!only_other.wants(&c));
    }
}
