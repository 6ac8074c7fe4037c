//! Merging: product defaults plus every matching policy, in a deterministic order, into the
//! `MergedConfig` a client receives; its content-derived `ETag` and `If-None-Match` check.

use sha2::{Digest, Sha256};

use super::model::{ClientContext, MergedConfig, Policy, ResolvedSettings, Settings};
use super::targeting::CompiledPolicy;

/// The order policies are applied in: ascending priority, ties by id (so a higher priority is
/// applied later and wins).
pub fn application_order(a: &Policy, b: &Policy) -> std::cmp::Ordering {
    a.priority.cmp(&b.priority).then_with(|| a.id.cmp(&b.id))
}

/// Built-in defaults, then `defaults` (the product's, from the config), then each policy that
/// [`matches`](super::targeting::matches) `ctx` at `now_ms`, in ascending priority order
/// (higher priority applied later wins; ties broken by id), field by field: a policy's
/// `Some(value)` overrides. Policies of other products are ignored.
pub fn merge(
    defaults: &Settings,
    policies: &[Policy],
    ctx: &ClientContext,
    now_ms: i64,
) -> MergedConfig {
    let ctx_ref = ctx.as_ref();
    let version = ctx_ref.app_version();
    let mut applied: Vec<&Policy> = policies
        .iter()
        .filter(|p| {
            let compiled = CompiledPolicy::new((*p).clone());
            compiled.is_active(now_ms)
                && compiled.targets(&ctx_ref, version.as_ref())
                && compiled.rollout_includes(ctx_ref.install_id)
        })
        .collect();
    applied.sort_by(|a, b| application_order(a, b));
    merge_applied(&ctx.product, defaults, applied)
}

/// Applies already selected policies, in the order given.
pub(crate) fn merge_applied<'a>(
    product: &str,
    defaults: &Settings,
    applied: impl IntoIterator<Item = &'a Policy>,
) -> MergedConfig {
    let mut settings = ResolvedSettings::from_layer(defaults);
    let mut ids = Vec::new();
    for policy in applied {
        settings.apply(&policy.settings);
        ids.push(policy.id.clone());
    }
    MergedConfig {
        product: product.to_string(),
        settings,
        applied_policies: ids,
    }
}

/// The canonical JSON of a merged config: what the config endpoint sends and the ETag hashes.
/// Struct fields serialise in declaration order and maps are `BTreeMap`s, so equal content
/// gives equal bytes.
pub fn canonical_json(config: &MergedConfig) -> String {
    // Serialising these plain structs cannot fail (string keys, finite floats from validation;
    // a non-finite float becomes `null`).
    serde_json::to_string(config).unwrap_or_default()
}

/// Strong ETag, quoted: `"<64 hex digits of SHA-256(canonical JSON)>"`.
pub fn etag(config: &MergedConfig) -> String {
    etag_of(canonical_json(config).as_bytes())
}

pub(crate) fn etag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut out = String::with_capacity(66);
    out.push('"');
    for byte in digest {
        use std::fmt::Write;
        let _ = write!(out, "{byte:02x}");
    }
    out.push('"');
    out
}

/// `If-None-Match` evaluation (RFC 9110 §13.1.2, weak comparison): true when the header lists
/// `etag` (with or without `W/`) or is `*`, i.e. the server should answer `304`.
pub fn if_none_match(header: &str, etag: &str) -> bool {
    let bare = etag.strip_prefix("W/").unwrap_or(etag);
    header.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == bare
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::EventField;
    use crate::model::Level;
    use crate::policies::model::Targeting;

    fn policy(id: &str, priority: i32, settings: Settings) -> Policy {
        Policy {
            id: id.into(),
            name: id.into(),
            product: "app".into(),
            enabled: true,
            priority,
            starts_at: None,
            expires_at: None,
            targeting: Targeting::default(),
            settings,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn ctx() -> ClientContext {
        ClientContext {
            install_id: Some("i1".into()),
            ..ClientContext::new("app")
        }
        .with(EventField::Platform, "ios")
    }

    #[test]
    fn defaults_only() {
        let merged = merge(&Settings::default(), &[], &ctx(), 0);
        assert_eq!(merged.settings, ResolvedSettings::default());
        assert!(merged.applied_policies.is_empty());
        let rs = &merged.settings;
        assert!(rs.collection_enabled);
        assert_eq!(rs.min_level, Level::Debug);
        assert_eq!(rs.modules_allow, None);
        assert_eq!(rs.sample_rate, 1.0);
        assert_eq!(
            (rs.batch_size, rs.flush_interval_ms, rs.max_queue_size),
            (50, 30_000, 1_000)
        );
        let product_defaults = Settings {
            batch_size: Some(20),
            ..Settings::default()
        };
        assert_eq!(
            merge(&product_defaults, &[], &ctx(), 0).settings.batch_size,
            20
        );
    }

    #[test]
    fn merge_order_with_overlapping_policies() {
        // c (priority 10) wins sample_rate; a and b tie at 5: b applied after a by id.
        let a = policy(
            "a",
            5,
            Settings {
                sample_rate: Some(0.5),
                batch_size: Some(10),
                min_level: Some(Level::Info),
                ..Settings::default()
            },
        );
        let b = policy(
            "b",
            5,
            Settings {
                batch_size: Some(20),
                events_deny: Some(vec!["z".into(), "y".into(), "z".into()]),
                ..Settings::default()
            },
        );
        let c = policy(
            "c",
            10,
            Settings {
                sample_rate: Some(0.1),
                ..Settings::default()
            },
        );
        let defaults = Settings {
            flush_interval_ms: Some(5_000),
            sample_rate: Some(0.9),
            ..Settings::default()
        };
        let mut other_product = policy(
            "0",
            100,
            Settings {
                sample_rate: Some(0.0),
                ..Settings::default()
            },
        );
        other_product.product = "other".into();
        let mut not_matching = policy(
            "x",
            100,
            Settings {
                sample_rate: Some(0.0),
                ..Settings::default()
            },
        );
        not_matching.targeting.platforms = vec!["android".into()];
        let orders = [
            vec![
                a.clone(),
                b.clone(),
                c.clone(),
                other_product.clone(),
                not_matching.clone(),
            ],
            vec![
                c.clone(),
                not_matching.clone(),
                b.clone(),
                a.clone(),
                other_product.clone(),
            ],
            vec![b.clone(), other_product, c.clone(), not_matching, a.clone()],
        ];
        for policies in orders {
            let merged = merge(&defaults, &policies, &ctx(), 0);
            assert_eq!(merged.applied_policies, vec!["a", "b", "c"]);
            let s = &merged.settings;
            assert_eq!(s.sample_rate, 0.1, "c (highest priority) wins");
            assert_eq!(s.batch_size, 20, "b beats a on the id tie-break");
            assert_eq!(s.min_level, Level::Info, "only a sets it");
            assert_eq!(s.flush_interval_ms, 5_000, "product default kept");
            assert_eq!(s.events_deny, vec!["y", "z"], "sorted, de-duplicated");
        }
    }

    #[test]
    fn etag_follows_content() {
        let a = merge(&Settings::default(), &[], &ctx(), 0);
        let b = merge(&Settings::default(), &[], &ctx(), 0);
        let tag = etag(&a);
        assert_eq!(tag, etag(&b));
        assert_eq!(tag.len(), 66);
        assert!(tag.starts_with('"') && tag.ends_with('"'));
        let p = policy(
            "p",
            0,
            Settings {
                batch_size: Some(50), // same value as the default, but the applied list differs
                ..Settings::default()
            },
        );
        let c = merge(&Settings::default(), &[p], &ctx(), 0);
        assert_eq!(c.settings, a.settings);
        assert_ne!(etag(&c), tag);
        let mut d = a.clone();
        d.settings.sample_rate = 0.5;
        assert_ne!(etag(&d), tag);
        // Equal lists in another order give the same tag.
        let deny = |list: &[&str]| {
            let p = policy(
                "p",
                0,
                Settings {
                    events_deny: Some(list.iter().map(|s| s.to_string()).collect()),
                    ..Settings::default()
                },
            );
            etag(&merge(&Settings::default(), &[p], &ctx(), 0))
        };
        assert_eq!(deny(&["a", "b"]), deny(&["b", "a", "a"]));
    }

    #[test]
    fn if_none_match_forms() {
        let tag = "\"abc\"";
        for (header, expected) in [
            ("\"abc\"", true),
            ("W/\"abc\"", true),
            ("\"x\", \"abc\"", true),
            ("*", true),
            ("\"abd\"", false),
            ("abc", false),
            ("", false),
        ] {
            assert_eq!(if_none_match(header, tag), expected, "{header}");
        }
    }
}
