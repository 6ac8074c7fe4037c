//! Collection policies: operators decide centrally what clients collect and how much; clients
//! fetch the merged decision (`GET /api/v1/config`), and ingest enforces the same decision for
//! every event. This module is the pure logic (no storage, no HTTP):
//!
//! - `model`: `Settings` layers, `ResolvedSettings`, `Targeting`, `Policy`, `PolicyDraft`,
//!   `ClientContext`, `MergedConfig`;
//! - `validate`: admin input and config-endpoint query validation, errors naming the field;
//! - `version`: SemVer requirements over `crate::version` app versions, with pre-release rules;
//! - `targeting`: schedule, dimensions, stable percentage rollout (`matches`, `in_rollout`);
//! - `merge`: defaults + matching policies in priority order, ETag, `If-None-Match`;
//! - `enforce`: the per-event `decide` and decision counters;
//! - `cache`: `PolicyCache`, the hot path for both the endpoint and ingest;
//! - `preview`: the admin preview (installs reached, dry run over recent events).

pub mod cache;
pub mod enforce;
pub mod merge;
pub mod model;
pub mod preview;
pub mod targeting;
pub mod validate;
pub mod version;

pub use cache::{CacheStats, Capacity, ClientConfig, PolicyCache};
pub use enforce::{decide, sample_point, Decision, DecisionCounts, DropReason};
pub use merge::{etag, if_none_match, merge};
pub use model::{
    new_policy_id, ClientContext, ContextRef, MergedConfig, Policy, PolicyDraft, ResolvedSettings,
    Settings, Targeting,
};
pub use preview::{preview, Breakdown, DryRun, InstallInfo, PreviewReport};
pub use targeting::{in_rollout, matches, rollout_bucket};
pub use validate::{validate, validate_settings, ConfigQuery, ValidationError};
