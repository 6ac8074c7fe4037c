//! `POST /api/v1/policies/preview`: how many recently seen installs a draft policy targets
//! (N of M, by platform and by app version), and a dry run of the draft over recent stored
//! events (kept / dropped by policy / sampled out), next to the same events under the
//! current policies alone.

use std::collections::HashMap;

use serde::Serialize;

use super::cache::PolicyCache;
use super::enforce::{decide, Decision, DecisionCounts};
use super::model::{ClientContext, ContextRef, Policy, Settings};
use super::targeting::CompiledPolicy;
use crate::fields::EventField;
use crate::model::Event;
use crate::timespan::DAY_MS;

/// Installs seen within this window count (30 days).
pub const INSTALL_WINDOW_MS: i64 = 30 * DAY_MS;
/// Events within this window are dry-run (7 days).
pub const EVENT_WINDOW_MS: i64 = 7 * DAY_MS;
/// Breakdown rows kept (largest totals first); the rest are summed into `(other)`.
pub const BREAKDOWN_ROWS: usize = 25;
/// Breakdown label of installs that did not report the dimension.
pub const UNKNOWN: &str = "(unknown)";
pub const OTHER: &str = "(other)";

/// One row of the install registry (the store keeps it): the install's last context.
#[derive(Clone, Debug, PartialEq)]
pub struct InstallInfo {
    /// Product, install id and the install's latest targeting values.
    pub context: ClientContext,
    /// Ms since the epoch.
    pub last_seen: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Breakdown {
    pub value: String,
    pub matching: u64,
    pub total: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DryRun {
    /// Window evaluated: `[from, to]`, ms since the epoch.
    pub from: i64,
    pub to: i64,
    /// With the draft added to the current policies: `events`, `kept`, `dropped_by_policy`,
    /// `sampled_out`, `dropped_by_reason`.
    #[serde(flatten)]
    pub counts: DecisionCounts,
    /// The same events under the current policies alone, for comparison.
    pub baseline: DecisionCounts,
    /// The counts weighted by sampling: each stored event stands for 1 / its sample rate
    /// events of the clients' traffic.
    pub estimated: WeightedCounts,
    pub baseline_estimated: WeightedCounts,
}

/// Decision counts where each event counts with a weight (1 / its sample rate).
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct WeightedCounts {
    pub events: f64,
    pub kept: f64,
    pub dropped_by_policy: f64,
    pub sampled_out: f64,
}

impl WeightedCounts {
    fn record(&mut self, decision: &Decision, weight: f64) {
        self.events += weight;
        match decision {
            Decision::Keep { .. } => self.kept += weight,
            Decision::SampledOut => self.sampled_out += weight,
            Decision::Drop(_) => self.dropped_by_policy += weight,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PreviewReport {
    pub matching_installs: u64,
    pub total_installs: u64,
    pub by_platform: Vec<Breakdown>,
    pub by_app_version: Vec<Breakdown>,
    pub dry_run: DryRun,
}

fn breakdown(rows: HashMap<String, (u64, u64)>) -> Vec<Breakdown> {
    let mut rows: Vec<Breakdown> = rows
        .into_iter()
        .map(|(value, (matching, total))| Breakdown {
            value,
            matching,
            total,
        })
        .collect();
    rows.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.value.cmp(&b.value)));
    if rows.len() > BREAKDOWN_ROWS {
        let rest = rows.split_off(BREAKDOWN_ROWS - 1);
        rows.push(Breakdown {
            value: OTHER.to_string(),
            matching: rest.iter().map(|r| r.matching).sum(),
            total: rest.iter().map(|r| r.total).sum(),
        });
    }
    rows
}

/// Previews `draft` (already validated and turned into a `Policy`; give it its id when it
/// edits an existing policy, which it then replaces in the dry run).
///
/// - Installs: those of the draft's product with `last_seen` in the last 30 days; one
///   matches when the draft's targeting, app-version range and rollout select it. The draft's
///   `enabled` flag and schedule are ignored: the preview answers "whom would it reach".
/// - Dry run: events of the product with `timestamp` in the last 7 days, each evaluated with
///   its own context under `defaults` + the active `existing` policies + the draft (taken as
///   enabled and in schedule), all evaluated at `now_ms`; `baseline` is the same without the
///   draft. Stored events carry the effective rate they were kept at as their client rate.
pub fn preview(
    draft: &Policy,
    defaults: &Settings,
    existing: &[Policy],
    installs: &[InstallInfo],
    events: impl Iterator<Item = Event>,
    now_ms: i64,
) -> PreviewReport {
    let mut active_draft = draft.clone();
    active_draft.enabled = true;
    active_draft.starts_at = None;
    active_draft.expires_at = None;

    // Installs.
    let compiled = CompiledPolicy::new(active_draft.clone());
    let install_since = now_ms.saturating_sub(INSTALL_WINDOW_MS);
    let mut matching_installs = 0;
    let mut total_installs = 0;
    let mut by_platform: HashMap<String, (u64, u64)> = HashMap::new();
    let mut by_version: HashMap<String, (u64, u64)> = HashMap::new();
    for install in installs
        .iter()
        .filter(|i| i.context.product == draft.product && i.last_seen >= install_since)
    {
        let ctx = install.context.as_ref();
        let parsed = ctx.app_version();
        let hit =
            compiled.targets(&ctx, parsed.as_ref()) && compiled.rollout_includes(ctx.install_id);
        total_installs += 1;
        let label = |v: Option<&str>| v.unwrap_or(UNKNOWN).to_string();
        for (map, key) in [
            (&mut by_platform, label(ctx.get(EventField::Platform))),
            (&mut by_version, label(ctx.get(EventField::AppVersion))),
        ] {
            let row = map.entry(key).or_insert((0, 0));
            row.1 += 1;
            if hit {
                row.0 += 1;
            }
        }
        if hit {
            matching_installs += 1;
        }
    }

    // Dry run: two caches, with and without the draft.
    let product_defaults: HashMap<String, Settings> =
        [(draft.product.clone(), defaults.clone())].into();
    let current: Vec<Policy> = existing
        .iter()
        .filter(|p| p.product == draft.product && p.id != draft.id)
        .cloned()
        .collect();
    let baseline_cache = PolicyCache::new(product_defaults.clone());
    baseline_cache.replace(current.clone());
    let mut with_draft = current;
    with_draft.push(active_draft);
    let draft_cache = PolicyCache::new(product_defaults);
    draft_cache.replace(with_draft);

    let event_since = now_ms.saturating_sub(EVENT_WINDOW_MS);
    let mut counts = DecisionCounts::default();
    let mut baseline = DecisionCounts::default();
    let mut estimated = WeightedCounts::default();
    let mut baseline_estimated = WeightedCounts::default();
    for event in events.filter(|e| {
        e.product == draft.product && e.timestamp >= event_since && e.timestamp <= now_ms
    }) {
        let ctx = ContextRef::from_event(&event);
        let weight = crate::model::weight_of_rate(event.sample_rate);
        let with_draft = decide(
            &draft_cache.client_config_ref(&ctx, now_ms).config.settings,
            &event,
        );
        let without = decide(
            &baseline_cache
                .client_config_ref(&ctx, now_ms)
                .config
                .settings,
            &event,
        );
        counts.record(&with_draft);
        estimated.record(&with_draft, weight);
        baseline.record(&without);
        baseline_estimated.record(&without, weight);
    }

    PreviewReport {
        matching_installs,
        total_installs,
        by_platform: breakdown(by_platform),
        by_app_version: breakdown(by_version),
        dry_run: DryRun {
            from: event_since,
            to: now_ms,
            counts,
            baseline,
            estimated,
            baseline_estimated,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Level;
    use crate::policies::enforce::tests::event;
    use crate::policies::model::Targeting;

    const NOW: i64 = 100 * DAY_MS;

    fn install(
        id: &str,
        platform: Option<&str>,
        version: Option<&str>,
        last_seen: i64,
    ) -> InstallInfo {
        let mut context = ClientContext {
            install_id: Some(id.into()),
            ..ClientContext::new("app")
        }
        .with(EventField::ReleaseChannel, "stable")
        .with(EventField::CountryCode, "US");
        context.set(EventField::Platform, platform);
        context.set(EventField::AppVersion, version);
        InstallInfo { context, last_seen }
    }

    /// 10 installs: 4 ios (3 on 1.x, one on 2.0), 3 android 1.x, 1 web unknown version,
    /// 1 ios seen 40 days ago (out of window), 1 of another product.
    fn registry() -> Vec<InstallInfo> {
        let mut other = install("o1", Some("ios"), Some("1.5.0"), NOW);
        other.context.product = "other".into();
        vec![
            install("i1", Some("ios"), Some("1.4.0"), NOW),
            install("i2", Some("ios"), Some("1.5.0-beta.1"), NOW - DAY_MS),
            install("i3", Some("ios"), Some("1.9.0"), NOW - 29 * DAY_MS),
            install("i4", Some("ios"), Some("2.0.0"), NOW),
            install("a1", Some("android"), Some("1.4.0"), NOW),
            install("a2", Some("android"), Some("1.4.0"), NOW),
            install("a3", Some("android"), Some("1.9.0"), NOW),
            install("w1", Some("web"), None, NOW),
            install("old", Some("ios"), Some("1.4.0"), NOW - 40 * DAY_MS),
            other,
        ]
    }

    fn draft(targeting: Targeting, settings: Settings) -> Policy {
        Policy {
            id: "draft".into(),
            name: "draft".into(),
            product: "app".into(),
            enabled: false, // ignored by preview
            priority: 10,
            starts_at: Some(NOW + DAY_MS), // ignored by preview
            expires_at: None,
            targeting,
            settings,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn row(value: &str, matching: u64, total: u64) -> Breakdown {
        Breakdown {
            value: value.into(),
            matching,
            total,
        }
    }

    #[test]
    fn install_counts_against_a_seeded_registry() {
        let d = draft(
            Targeting {
                platforms: vec!["ios".into()],
                app_versions: Some(">=1.4.0, <2".into()),
                ..Targeting::default()
            },
            Settings {
                sample_rate: Some(0.5),
                ..Settings::default()
            },
        );
        let report = preview(
            &d,
            &Settings::default(),
            &[],
            &registry(),
            std::iter::empty(),
            NOW,
        );
        assert_eq!((report.matching_installs, report.total_installs), (3, 8));
        assert_eq!(
            report.by_platform,
            vec![row("ios", 3, 4), row("android", 0, 3), row("web", 0, 1)]
        );
        assert_eq!(
            report.by_app_version,
            vec![
                row("1.4.0", 1, 3),
                row("1.9.0", 1, 2),
                row("(unknown)", 0, 1),
                row("1.5.0-beta.1", 1, 1),
                row("2.0.0", 0, 1),
            ]
        );
        // A partial rollout reaches exactly the installs whose bucket is in.
        let half = draft(
            Targeting {
                rollout_percent: Some(50.0),
                ..Targeting::default()
            },
            Settings {
                batch_size: Some(5),
                ..Settings::default()
            },
        );
        let report = preview(
            &half,
            &Settings::default(),
            &[],
            &registry(),
            std::iter::empty(),
            NOW,
        );
        let expected = registry()
            .iter()
            .filter(|i| i.context.product == "app" && i.last_seen >= NOW - 30 * DAY_MS)
            .filter(|i| {
                let id = i.context.install_id.as_deref().unwrap();
                crate::policies::targeting::in_rollout("draft", id, 50.0)
            })
            .count() as u64;
        assert_eq!(report.matching_installs, expected);
    }

    #[test]
    fn dry_run_counts() {
        // Existing: debug events of ios dropped. Draft: deny `noisy`, sample `chatty` to 0.
        let existing = Policy {
            targeting: Targeting {
                platforms: vec!["ios".into()],
                ..Targeting::default()
            },
            settings: Settings {
                min_level: Some(Level::Info),
                ..Settings::default()
            },
            id: "existing".into(),
            enabled: true,
            starts_at: None,
            priority: 0,
            ..draft(Targeting::default(), Settings::default())
        };
        let d = draft(
            Targeting::default(),
            Settings {
                events_deny: Some(vec!["noisy".into()]),
                event_sample_rates: Some([("chatty".to_string(), 0.0)].into()),
                ..Settings::default()
            },
        );
        let make = |name: &str, platform: &str, level: Level, age: i64| {
            let mut e = event(name);
            // Sampled by the client at a half: each stands for two events.
            e.sample_rate = 0.5;
            e.platform = Some(platform.into());
            e.level = level;
            e.timestamp = NOW - age;
            e
        };
        let events = vec![
            make("ok", "ios", Level::Info, DAY_MS),
            make("ok", "web", Level::Debug, DAY_MS),
            make("ok", "ios", Level::Debug, DAY_MS), // dropped by existing (below level)
            make("noisy", "web", Level::Info, 2 * DAY_MS), // dropped by draft
            make("noisy", "ios", Level::Info, 6 * DAY_MS), // dropped by draft
            make("chatty", "web", Level::Info, DAY_MS), // sampled out by draft
            make("noisy", "web", Level::Info, 8 * DAY_MS), // outside the 7-day window
        ];
        let report = preview(
            &d,
            &Settings::default(),
            &[existing.clone(), d.clone()],
            &[],
            events.into_iter(),
            NOW,
        );
        let run = &report.dry_run;
        assert_eq!((run.from, run.to), (NOW - 7 * DAY_MS, NOW));
        assert_eq!(run.counts.events, 6);
        assert_eq!(run.counts.kept, 2);
        assert_eq!(run.counts.dropped_by_policy, 3);
        assert_eq!(run.counts.sampled_out, 1);
        assert_eq!(run.counts.dropped_by_reason.get("event_denied"), Some(&2));
        assert_eq!(
            run.counts.dropped_by_reason.get("below_min_level"),
            Some(&1)
        );
        assert_eq!(run.baseline.kept, 5);
        assert_eq!(run.baseline.dropped_by_policy, 1);
        assert_eq!(
            run.estimated,
            WeightedCounts {
                events: 12.0,
                kept: 4.0,
                dropped_by_policy: 6.0,
                sampled_out: 2.0
            }
        );
        assert_eq!(run.baseline_estimated.kept, 10.0);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["dry_run"]["dropped_by_policy"], 3);
        assert_eq!(json["by_platform"], serde_json::json!([]));
    }

    #[test]
    fn breakdown_folds_the_tail() {
        let rows: HashMap<String, (u64, u64)> = (0..30u64)
            .map(|i| (format!("v{i:02}"), (1, i + 1)))
            .collect();
        let out = breakdown(rows);
        assert_eq!(out.len(), BREAKDOWN_ROWS);
        assert_eq!(out[0], row("v29", 1, 30));
        let other = out.last().unwrap();
        assert_eq!(other.value, OTHER);
        assert_eq!(other.total, (1..=6).sum::<u64>());
        assert_eq!(other.matching, 6);
    }
}
