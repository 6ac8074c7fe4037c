//! Server-side enforcement at ingest: the per-event `decide` (drop by policy, sample out, or
//! keep with the effective sample rate) and the counters of those decisions.

use std::collections::BTreeMap;

use serde::Serialize;

use super::model::ResolvedSettings;
use crate::model::Event;

/// What ingest does with one event.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    /// Store it, with `event.sample_rate` set to `sample_rate`.
    Keep { sample_rate: f64 },
    /// Disabled by the policy; counted as `dropped_by_policy`.
    Drop(DropReason),
    /// Removed by server-side sampling; counted as `sampled_out`.
    SampledOut,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    CollectionDisabled,
    BelowMinLevel,
    ModuleDenied,
    EventDenied,
}

impl DropReason {
    pub const ALL: [DropReason; 4] = [
        DropReason::CollectionDisabled,
        DropReason::BelowMinLevel,
        DropReason::ModuleDenied,
        DropReason::EventDenied,
    ];

    /// Stable snake_case name, for counters and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::CollectionDisabled => "collection_disabled",
            DropReason::BelowMinLevel => "below_min_level",
            DropReason::ModuleDenied => "module_denied",
            DropReason::EventDenied => "event_denied",
        }
    }
}

/// A deterministic, uniform value in `[0, 1)` for an event id: the 128 bits are mixed with the
/// murmur3 finaliser (so UUIDv7's time prefix and sequential client ids spread evenly). Same
/// id, same value — in every process — so a retried batch is sampled identically.
pub fn sample_point(id: &uuid::Uuid) -> f64 {
    fn fmix64(mut k: u64) -> u64 {
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^= k >> 33;
        k
    }
    let (hi, lo) = id.as_u64_pair();
    let mixed = fmix64(hi ^ fmix64(lo ^ 0x9e37_79b9_7f4a_7c15));
    (mixed >> 11) as f64 / (1u64 << 53) as f64
}

fn listed(sorted: &[String], value: &str) -> bool {
    sorted
        .binary_search_by(|item| item.as_str().cmp(value))
        .is_ok()
}

/// The client's own rate as the event reports it; anything outside `(0, 1]` counts as 1.
fn client_rate(event: &Event) -> f64 {
    let rate = event.sample_rate;
    if rate > 0.0 && rate <= 1.0 {
        rate
    } else {
        1.0
    }
}

/// Decides one event under its client's merged settings, in this order: collection disabled;
/// level below `min_level`; module denied (in `modules_deny`, or not in `modules_allow` —
/// events without a module are not subject to module lists); event name denied (same rule
/// with `events_*`); then sampling.
///
/// Sampling targets an effective rate `r` = `event_sample_rates[name]` or `sample_rate`. The
/// client may already have sampled at `c` = `event.sample_rate` (because it fetched the same
/// policy); the server then keeps with probability `min(1, r / c)`, so the effective rate is
/// `min(c, r)` — a client that honours the config is not sampled twice, one that never fetched
/// it (`c` = 1) is sampled at `r`. The draw is [`sample_point`] of the event id. A kept event's
/// `sample_rate` becomes that effective rate (analytics weight = 1 / rate). `r` = 0 samples
/// out everything.
pub fn decide(settings: &ResolvedSettings, event: &Event) -> Decision {
    if !settings.collection_enabled {
        return Decision::Drop(DropReason::CollectionDisabled);
    }
    if event.level < settings.min_level {
        return Decision::Drop(DropReason::BelowMinLevel);
    }
    if let Some(module) = event.module.as_deref() {
        if listed(&settings.modules_deny, module)
            || settings
                .modules_allow
                .as_deref()
                .is_some_and(|allow| !listed(allow, module))
        {
            return Decision::Drop(DropReason::ModuleDenied);
        }
    }
    let name = event.name.as_str();
    if listed(&settings.events_deny, name)
        || settings
            .events_allow
            .as_deref()
            .is_some_and(|allow| !listed(allow, name))
    {
        return Decision::Drop(DropReason::EventDenied);
    }
    let target = if settings.event_sample_rates.is_empty() {
        settings.sample_rate
    } else {
        settings
            .event_sample_rates
            .get(name)
            .copied()
            .unwrap_or(settings.sample_rate)
    };
    let client = client_rate(event);
    if target >= client {
        return Decision::Keep {
            sample_rate: client,
        };
    }
    if target.is_nan() || target <= 0.0 {
        return Decision::SampledOut;
    }
    if sample_point(&event.id) < target / client {
        Decision::Keep {
            sample_rate: target,
        }
    } else {
        Decision::SampledOut
    }
}

/// Counts of decisions, for ingest statistics (`dropped_by_policy`, `sampled_out`) and the
/// preview's dry run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DecisionCounts {
    pub events: u64,
    pub kept: u64,
    pub dropped_by_policy: u64,
    pub sampled_out: u64,
    /// `collection_disabled`, `below_min_level`, `module_denied`, `event_denied` → count;
    /// reasons that did not occur are absent.
    pub dropped_by_reason: BTreeMap<&'static str, u64>,
}

impl DecisionCounts {
    pub fn record(&mut self, decision: &Decision) {
        self.events += 1;
        match decision {
            Decision::Keep { .. } => self.kept += 1,
            Decision::SampledOut => self.sampled_out += 1,
            Decision::Drop(reason) => {
                self.dropped_by_policy += 1;
                *self.dropped_by_reason.entry(reason.as_str()).or_insert(0) += 1;
            }
        }
    }

    pub fn add(&mut self, other: &DecisionCounts) {
        self.events += other.events;
        self.kept += other.kept;
        self.dropped_by_policy += other.dropped_by_policy;
        self.sampled_out += other.sampled_out;
        for (reason, n) in &other.dropped_by_reason {
            *self.dropped_by_reason.entry(reason).or_insert(0) += n;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::Level;
    use crate::policies::model::Settings;

    pub(crate) fn event(name: &str) -> Event {
        Event::new("app", name)
    }

    fn resolved(layer: Settings) -> ResolvedSettings {
        ResolvedSettings::from_layer(&layer)
    }

    #[test]
    fn each_drop_reason() {
        let strs = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let with_module = |name: &str, module: Option<&str>, level: Level| {
            let mut e = event(name);
            e.module = module.map(str::to_string);
            e.level = level;
            e
        };
        let cases: Vec<(&str, Settings, Event, Decision)> = vec![
            (
                "defaults keep",
                Settings::default(),
                event("a"),
                Decision::Keep { sample_rate: 1.0 },
            ),
            (
                "collection off",
                Settings {
                    collection_enabled: Some(false),
                    ..Default::default()
                },
                event("a"),
                Decision::Drop(DropReason::CollectionDisabled),
            ),
            (
                "below min level",
                Settings {
                    min_level: Some(Level::Warn),
                    ..Default::default()
                },
                with_module("a", None, Level::Info),
                Decision::Drop(DropReason::BelowMinLevel),
            ),
            (
                "at min level",
                Settings {
                    min_level: Some(Level::Warn),
                    ..Default::default()
                },
                with_module("a", None, Level::Warn),
                Decision::Keep { sample_rate: 1.0 },
            ),
            (
                "module denied",
                Settings {
                    modules_deny: strs(&["dictation"]),
                    ..Default::default()
                },
                with_module("a", Some("dictation"), Level::Info),
                Decision::Drop(DropReason::ModuleDenied),
            ),
            (
                "module not allowed",
                Settings {
                    modules_allow: strs(&["keyboard"]),
                    ..Default::default()
                },
                with_module("a", Some("dictation"), Level::Info),
                Decision::Drop(DropReason::ModuleDenied),
            ),
            (
                "module allowed",
                Settings {
                    modules_allow: strs(&["keyboard", "dictation"]),
                    ..Default::default()
                },
                with_module("a", Some("dictation"), Level::Info),
                Decision::Keep { sample_rate: 1.0 },
            ),
            (
                "no module passes module lists",
                Settings {
                    modules_allow: strs(&["keyboard"]),
                    ..Default::default()
                },
                event("a"),
                Decision::Keep { sample_rate: 1.0 },
            ),
            (
                "event denied",
                Settings {
                    events_deny: strs(&["b", "a"]),
                    ..Default::default()
                },
                event("a"),
                Decision::Drop(DropReason::EventDenied),
            ),
            (
                "event not allowed",
                Settings {
                    events_allow: strs(&["b"]),
                    ..Default::default()
                },
                event("a"),
                Decision::Drop(DropReason::EventDenied),
            ),
            (
                "event allowed",
                Settings {
                    events_allow: strs(&["a"]),
                    ..Default::default()
                },
                event("a"),
                Decision::Keep { sample_rate: 1.0 },
            ),
            (
                "rate zero",
                Settings {
                    sample_rate: Some(0.0),
                    ..Default::default()
                },
                event("a"),
                Decision::SampledOut,
            ),
            (
                "per-event rate zero",
                Settings {
                    event_sample_rates: Some([("a".to_string(), 0.0)].into()),
                    ..Default::default()
                },
                event("a"),
                Decision::SampledOut,
            ),
            (
                "per-event rate for another name",
                Settings {
                    sample_rate: Some(1.0),
                    event_sample_rates: Some([("b".to_string(), 0.0)].into()),
                    ..Default::default()
                },
                event("a"),
                Decision::Keep { sample_rate: 1.0 },
            ),
            (
                "disabled beats everything",
                Settings {
                    collection_enabled: Some(false),
                    events_deny: strs(&["a"]),
                    ..Default::default()
                },
                event("a"),
                Decision::Drop(DropReason::CollectionDisabled),
            ),
        ];
        for (what, settings, event, expected) in cases {
            assert_eq!(decide(&resolved(settings), &event), expected, "{what}");
        }
    }

    #[test]
    fn sampling_proportions_and_effective_rate() {
        // (server rate, client rate, expected kept share, effective rate of kept events)
        for (server, client, share, effective) in [
            (0.1, 1.0, 0.1, 0.1),
            (0.5, 1.0, 0.5, 0.5),
            (0.25, 0.5, 0.5, 0.25),
            (0.5, 0.5, 1.0, 0.5),
            (0.5, 0.2, 1.0, 0.2),
        ] {
            let settings = resolved(Settings {
                sample_rate: Some(server),
                ..Settings::default()
            });
            let mut kept = 0;
            for _ in 0..10_000 {
                let mut e = event("a");
                e.sample_rate = client;
                let d = decide(&settings, &e);
                assert_eq!(d, decide(&settings, &e), "deterministic per id");
                match d {
                    Decision::Keep { sample_rate } => {
                        kept += 1;
                        assert_eq!(sample_rate, effective);
                    }
                    Decision::SampledOut => {}
                    Decision::Drop(r) => panic!("unexpected drop {r:?}"),
                }
            }
            let got = f64::from(kept) / 10_000.0;
            assert!(
                (got - share).abs() <= 0.02,
                "server {server} client {client}: kept {got}"
            );
        }
        // Per-event rate overrides the overall one.
        let settings = resolved(Settings {
            sample_rate: Some(1.0),
            event_sample_rates: Some([("noisy".to_string(), 0.2)].into()),
            ..Settings::default()
        });
        let kept = (0..10_000)
            .filter(|_| matches!(decide(&settings, &event("noisy")), Decision::Keep { .. }))
            .count();
        assert!((kept as f64 / 10_000.0 - 0.2).abs() <= 0.02, "{kept}");
    }

    #[test]
    fn sampling_is_uniform_for_sequential_and_v7_ids() {
        let settings = resolved(Settings {
            sample_rate: Some(0.3),
            ..Settings::default()
        });
        let mut e = event("a");
        let mut kept_seq = 0;
        let mut kept_v7 = 0;
        for i in 0..10_000u128 {
            e.id = uuid::Uuid::from_u128(i);
            if matches!(decide(&settings, &e), Decision::Keep { .. }) {
                kept_seq += 1;
            }
            e.id = uuid::Uuid::now_v7();
            if matches!(decide(&settings, &e), Decision::Keep { .. }) {
                kept_v7 += 1;
            }
        }
        for kept in [kept_seq, kept_v7] {
            assert!((f64::from(kept) / 10_000.0 - 0.3).abs() <= 0.02, "{kept}");
        }
        // Pinned: the same id samples the same way in every process.
        let id = uuid::Uuid::from_u128(0x0192_3456_789a_7bcd_8ef0_1234_5678_9abc);
        assert_eq!(sample_point(&id), sample_point(&id));
        assert!((0.0..1.0).contains(&sample_point(&id)));
    }

    #[test]
    fn counters() {
        let settings = resolved(Settings {
            min_level: Some(Level::Info),
            events_deny: Some(vec!["spam".into()]),
            event_sample_rates: Some([("sampled".to_string(), 0.0)].into()),
            ..Settings::default()
        });
        let mut debug = event("ok");
        debug.level = Level::Debug;
        let events = [
            event("ok"),
            event("ok"),
            debug,
            event("spam"),
            event("sampled"),
        ];
        let mut counts = DecisionCounts::default();
        for e in &events {
            counts.record(&decide(&settings, e));
        }
        assert_eq!(counts.events, 5);
        assert_eq!(counts.kept, 2);
        assert_eq!(counts.dropped_by_policy, 2);
        assert_eq!(counts.sampled_out, 1);
        assert_eq!(counts.dropped_by_reason.get("below_min_level"), Some(&1));
        assert_eq!(counts.dropped_by_reason.get("event_denied"), Some(&1));
        let mut total = DecisionCounts::default();
        total.add(&counts);
        total.add(&counts);
        assert_eq!(
            (total.events, total.dropped_by_reason["event_denied"]),
            (10, 2)
        );
    }
}
