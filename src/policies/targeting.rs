//! Whether a policy applies to a client: enabled flag, schedule window, targeting dimensions,
//! app-version range and the stable percentage rollout. `CompiledPolicy` holds a policy with
//! its version requirement parsed once, so the cache and the merge evaluate it cheaply.

use semver::VersionReq;
use sha2::{Digest, Sha256};

use super::model::{ClientContext, ContextRef, Policy};
use super::version;
use crate::fields::EventField;
use crate::version::AppVersion;

/// Rollout resolution: 10 000 buckets, i.e. percentages to two decimals.
pub const ROLLOUT_BUCKETS: u32 = 10_000;

/// The install's stable bucket for a policy, in `0..10_000`: the first 8 bytes (big-endian) of
/// SHA-256(`policy_id` `\0` `install_id`) modulo 10 000. Keyed by policy id, so two policies
/// at 10% reach independent 10% slices; stable across processes and releases.
pub fn rollout_bucket(policy_id: &str, install_id: &str) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(policy_id.as_bytes());
    hasher.update([0u8]);
    hasher.update(install_id.as_bytes());
    let digest = hasher.finalize();
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(head) % u64::from(ROLLOUT_BUCKETS)) as u32
}

/// Number of buckets (of 10 000) a percentage covers; out-of-range values are clamped.
pub fn rollout_threshold(percent: f64) -> u32 {
    if percent.is_nan() {
        return 0;
    }
    (percent.clamp(0.0, 100.0) * 100.0).round() as u32
}

/// True when the install falls inside the policy's rollout percentage. Raising the percentage
/// only adds installs (bucket < threshold), so nobody flips out when a rollout widens.
pub fn in_rollout(policy_id: &str, install_id: &str, percent: f64) -> bool {
    let threshold = rollout_threshold(percent);
    if threshold >= ROLLOUT_BUCKETS {
        return true;
    }
    if threshold == 0 {
        return false;
    }
    rollout_bucket(policy_id, install_id) < threshold
}

/// True when `policy` applies to `ctx` at `now_ms`: enabled; `starts_at <= now < expires_at`;
/// same product; every non-empty targeting list contains the client's value (ASCII
/// case-insensitive; a missing value does not match); the app version (parsed by
/// [`crate::version`]) satisfies `app_versions` (see `policies/version.rs`); and the install is
/// inside the rollout (a client without `install_id` is outside any partial rollout).
pub fn matches(policy: &Policy, ctx: &ClientContext, now_ms: i64) -> bool {
    let compiled = CompiledPolicy::new(policy.clone());
    let ctx = ctx.as_ref();
    let version = ctx.app_version();
    compiled.is_active(now_ms)
        && compiled.targets(&ctx, version.as_ref())
        && compiled.rollout_includes(ctx.install_id)
}

/// How a compiled policy's version requirement turned out.
#[derive(Clone, Debug)]
enum VersionTarget {
    Any,
    Req(VersionReq),
    /// A stored requirement that no longer parses (validation prevents it): matches nothing.
    Invalid,
}

/// A policy prepared for repeated evaluation.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    pub policy: Policy,
    version: VersionTarget,
    /// Buckets covered; `None` when the rollout is not partial.
    rollout_threshold: Option<u32>,
}

fn list_allows(list: &[String], value: Option<&str>) -> bool {
    if list.is_empty() {
        return true;
    }
    match value {
        Some(value) => list.iter().any(|item| item.eq_ignore_ascii_case(value)),
        None => false,
    }
}

impl CompiledPolicy {
    pub fn new(policy: Policy) -> CompiledPolicy {
        let version = match policy.targeting.app_versions.as_deref() {
            None => VersionTarget::Any,
            Some(text) => match version::parse_req(text) {
                Ok(req) => VersionTarget::Req(req),
                Err(e) => {
                    tracing::warn!(policy = %policy.id, error = %e, "stored policy has an invalid app_versions requirement; it matches nothing");
                    VersionTarget::Invalid
                }
            },
        };
        let rollout_threshold = policy
            .targeting
            .rollout_percent
            .map(rollout_threshold)
            .filter(|t| *t < ROLLOUT_BUCKETS);
        CompiledPolicy {
            policy,
            version,
            rollout_threshold,
        }
    }

    /// Enabled and inside `[starts_at, expires_at)`.
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.policy.enabled
            && self.policy.starts_at.is_none_or(|s| now_ms >= s)
            && self.policy.expires_at.is_none_or(|e| now_ms < e)
    }

    /// Product and every targeting dimension except the rollout. `version` is the context's
    /// app version, parsed once by the caller.
    pub fn targets(&self, ctx: &ContextRef<'_>, version: Option<&AppVersion>) -> bool {
        let t = &self.policy.targeting;
        self.policy.product == ctx.product
            && list_allows(&t.platforms, ctx.get(EventField::Platform))
            && list_allows(&t.channels, ctx.get(EventField::Channel))
            && list_allows(&t.release_channels, ctx.get(EventField::ReleaseChannel))
            && list_allows(&t.countries, ctx.get(EventField::CountryCode))
            && list_allows(&t.regions, ctx.get(EventField::RegionCode))
            && match &self.version {
                VersionTarget::Any => true,
                VersionTarget::Req(req) => version.is_some_and(|v| version::req_matches(req, v)),
                VersionTarget::Invalid => false,
            }
    }

    /// True when the policy has a rollout below 100%.
    pub fn is_partial_rollout(&self) -> bool {
        self.rollout_threshold.is_some()
    }

    pub fn rollout_includes(&self, install_id: Option<&str>) -> bool {
        match self.rollout_threshold {
            None => true,
            Some(0) => false,
            Some(threshold) => {
                install_id.is_some_and(|id| rollout_bucket(&self.policy.id, id) < threshold)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::model::{Settings, Targeting};

    pub(crate) fn policy(id: &str) -> Policy {
        Policy {
            id: id.into(),
            name: id.into(),
            product: "app".into(),
            enabled: true,
            priority: 0,
            starts_at: None,
            expires_at: None,
            targeting: Targeting::default(),
            settings: Settings {
                sample_rate: Some(0.5),
                ..Settings::default()
            },
            created_at: 0,
            updated_at: 0,
        }
    }

    fn full_ctx() -> ClientContext {
        ClientContext {
            install_id: Some("install-1".into()),
            ..ClientContext::new("app")
        }
        .with(EventField::Platform, "ios")
        .with(EventField::AppVersion, "1.5.0")
        .with(EventField::Channel, "keyboard")
        .with(EventField::ReleaseChannel, "beta")
        .with(EventField::CountryCode, "US")
        .with(EventField::RegionCode, "US-WA")
    }

    #[test]
    fn targeting_by_each_dimension() {
        type Edit = fn(&mut Targeting);
        type CtxEdit = fn(&mut ClientContext);
        let none: CtxEdit = |_| {};
        // (what, targeting, context change, expected)
        let cases: Vec<(&str, Edit, CtxEdit, bool)> = vec![
            ("no targeting", |_| {}, none, true),
            (
                "platform hit",
                |t| t.platforms = vec!["android".into(), "ios".into()],
                none,
                true,
            ),
            (
                "platform case-insensitive",
                |t| t.platforms = vec!["iOS".into()],
                none,
                true,
            ),
            (
                "platform miss",
                |t| t.platforms = vec!["android".into()],
                none,
                false,
            ),
            (
                "platform missing in ctx",
                |t| t.platforms = vec!["ios".into()],
                |c| c.set(EventField::Platform, None),
                false,
            ),
            (
                "channel hit",
                |t| t.channels = vec!["keyboard".into()],
                none,
                true,
            ),
            (
                "channel miss",
                |t| t.channels = vec!["dictation".into()],
                none,
                false,
            ),
            (
                "channel missing",
                |t| t.channels = vec!["keyboard".into()],
                |c| c.set(EventField::Channel, None),
                false,
            ),
            (
                "release channel hit",
                |t| t.release_channels = vec!["beta".into(), "dev".into()],
                none,
                true,
            ),
            (
                "release channel miss",
                |t| t.release_channels = vec!["stable".into()],
                none,
                false,
            ),
            (
                "release channel missing",
                |t| t.release_channels = vec!["beta".into()],
                |c| c.set(EventField::ReleaseChannel, None),
                false,
            ),
            (
                "version hit",
                |t| t.app_versions = Some(">=1.4.0, <2".into()),
                none,
                true,
            ),
            (
                "version miss",
                |t| t.app_versions = Some(">=2".into()),
                none,
                false,
            ),
            (
                "version pre-release",
                |t| t.app_versions = Some(">=1.4.0, <2".into()),
                |c| c.set(EventField::AppVersion, Some("1.5.0-beta.1")),
                true,
            ),
            (
                "version lenient",
                |t| t.app_versions = Some(">=1.4.0, <2".into()),
                |c| c.set(EventField::AppVersion, Some("1.5")),
                true,
            ),
            (
                "version unparseable",
                |t| t.app_versions = Some(">=1.4.0".into()),
                |c| c.set(EventField::AppVersion, Some("banana")),
                false,
            ),
            (
                "version missing",
                |t| t.app_versions = Some(">=1.4.0".into()),
                |c| c.set(EventField::AppVersion, None),
                false,
            ),
            (
                "country hit",
                |t| t.countries = vec!["DE".into(), "US".into()],
                none,
                true,
            ),
            (
                "country lower-case ctx",
                |t| t.countries = vec!["US".into()],
                |c| c.set(EventField::CountryCode, Some("us")),
                true,
            ),
            (
                "country miss",
                |t| t.countries = vec!["FR".into()],
                none,
                false,
            ),
            (
                "country missing",
                |t| t.countries = vec!["US".into()],
                |c| c.set(EventField::CountryCode, None),
                false,
            ),
            (
                "region hit",
                |t| t.regions = vec!["US-WA".into()],
                none,
                true,
            ),
            (
                "region miss",
                |t| t.regions = vec!["US-CA".into()],
                none,
                false,
            ),
            (
                "region missing",
                |t| t.regions = vec!["US-WA".into()],
                |c| c.set(EventField::RegionCode, None),
                false,
            ),
            (
                "rollout 100",
                |t| t.rollout_percent = Some(100.0),
                |c| c.install_id = None,
                true,
            ),
            ("rollout 0", |t| t.rollout_percent = Some(0.0), none, false),
            (
                "rollout partial without install",
                |t| t.rollout_percent = Some(99.99),
                |c| c.install_id = None,
                false,
            ),
            (
                "all dimensions",
                |t| {
                    t.platforms = vec!["ios".into()];
                    t.channels = vec!["keyboard".into()];
                    t.release_channels = vec!["beta".into()];
                    t.app_versions = Some("^1.5".into());
                    t.countries = vec!["US".into()];
                    t.regions = vec!["US-WA".into()];
                },
                none,
                true,
            ),
            (
                "other product",
                |_| {},
                |c| c.product = "other".into(),
                false,
            ),
        ];
        for (what, edit, ctx_edit, expected) in cases {
            let mut p = policy("p1");
            edit(&mut p.targeting);
            let mut ctx = full_ctx();
            ctx_edit(&mut ctx);
            assert_eq!(matches(&p, &ctx, 0), expected, "{what}");
        }
    }

    #[test]
    fn disabled_policy_never_matches() {
        let mut p = policy("p1");
        p.enabled = false;
        assert!(!matches(&p, &full_ctx(), 0));
    }

    #[test]
    fn schedule_boundaries() {
        let mut p = policy("p1");
        p.starts_at = Some(1_000);
        p.expires_at = Some(2_000);
        let ctx = full_ctx();
        for (now, expected) in [
            (999, false),
            (1_000, true),
            (1_001, true),
            (1_999, true),
            (2_000, false),
            (2_001, false),
        ] {
            assert_eq!(matches(&p, &ctx, now), expected, "now = {now}");
        }
        p.starts_at = None;
        assert!(matches(&p, &ctx, i64::MIN));
        p.expires_at = None;
        p.starts_at = Some(5);
        assert!(matches(&p, &ctx, i64::MAX));
        assert!(!matches(&p, &ctx, 4));
    }

    #[test]
    fn rollout_buckets_are_fixed() {
        // Pinned values: a change here moves installs in or out of every running rollout.
        let pinned = [
            (
                "policy-a",
                "install-1",
                rollout_bucket("policy-a", "install-1"),
            ),
            (
                "policy-a",
                "install-2",
                rollout_bucket("policy-a", "install-2"),
            ),
            (
                "policy-b",
                "install-1",
                rollout_bucket("policy-b", "install-1"),
            ),
        ];
        let expected = [PINNED_A1, PINNED_A2, PINNED_B1];
        for ((policy_id, install_id, bucket), want) in pinned.iter().zip(expected) {
            assert_eq!(*bucket, want, "bucket({policy_id}, {install_id})");
        }
        // The definition, spelled out.
        let digest = Sha256::digest(b"policy-a\0install-1");
        let head = u64::from_be_bytes(digest[..8].try_into().unwrap());
        assert_eq!((head % 10_000) as u32, PINNED_A1);
    }

    // Computed independently (Python hashlib) from the definition.
    const PINNED_A1: u32 = 1330;
    const PINNED_A2: u32 = 3929;
    const PINNED_B1: u32 = 1659;

    #[test]
    fn rollout_is_stable_and_proportional() {
        for percent in [10.0, 50.0] {
            let mut inside = 0;
            for i in 0..10_000u32 {
                let install = uuid::Uuid::new_v4().to_string();
                let first = in_rollout("rollout-policy", &install, percent);
                assert_eq!(first, in_rollout("rollout-policy", &install, percent));
                if first {
                    inside += 1;
                }
                // Widening never drops an install that was in.
                if first {
                    assert!(in_rollout("rollout-policy", &install, percent + 5.0), "{i}");
                }
            }
            let share = f64::from(inside) / 100.0;
            assert!(
                (share - percent).abs() <= 2.0,
                "{percent}%: got {share}% of 10,000 installs"
            );
        }
        assert!(in_rollout("p", "i", 100.0));
        assert!(!in_rollout("p", "i", 0.0));
        assert!(!in_rollout("p", "i", f64::NAN));
    }
}
