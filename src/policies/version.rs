//! App-version targeting: matching a client's version against a SemVer requirement with
//! explicit pre-release rules. Parsing and ordering of the versions themselves are
//! [`crate::version`]'s (`1.2` = `1.2.0`, `1.2.3.4` > `1.2.3`, pre-releases below their release).
//!
//! The `semver` crate's `VersionReq::matches` only lets a pre-release through when a
//! comparator names the same `major.minor.patch` with a pre-release (Cargo's opt-in rule), so
//! `1.5.0-beta.1` would not match `>=1.4.0, <2`. Telemetry targeting wants the opposite: a beta
//! user of 1.5 is on the 1.x line. So we compare versions instead:
//!
//! - A **full** version in a comparator (`1.4.0`, `2.0.0-rc.1`) compares by the shared
//!   ordering, pre-releases and further parts included: `1.5.0-beta.1` is in `>=1.4.0, <2`;
//!   `1.4.0-beta` is not in `>=1.4.0` (it precedes 1.4.0); `2.0.0-rc.1` is in `<2.0.0`;
//!   `1.2.3.4` is in `>1.2.3` and not in `=1.2.3`.
//! - A **partial** version (`1`, `1.4`, `1.4.*`) stands for the whole series, its pre-releases
//!   and further parts included: `<2` excludes `2.0.0-beta` (it is of the 2 series), `>=1.4`
//!   and `~1.4` and `=1.4` include `1.4.0-beta` and `1.4.2.7`.
//! - Build metadata is ignored.
//!
//! A reported version that does not parse does not match a version-targeted policy.

use std::cmp::Ordering;

use semver::{Comparator, Op, VersionReq};

use crate::version::AppVersion;

/// Parses a targeting requirement (`>=1.4.0, <2`), with the `semver` crate's syntax.
pub fn parse_req(text: &str) -> Result<VersionReq, semver::Error> {
    VersionReq::parse(text.trim())
}

/// True when `version` satisfies every comparator of `req` under the rules of this module.
pub fn req_matches(req: &VersionReq, version: &AppVersion) -> bool {
    req.comparators
        .iter()
        .all(|cmp| comparator_matches(cmp, version))
}

// The semantics follow the semver crate's `eval.rs` (MIT/Apache-2.0) with three changes: no
// pre-release opt-in gate, a partial comparator covers its series' pre-releases, and a full
// comparator compares by the shared ordering (so further parts count).

fn comparator_matches(cmp: &Comparator, ver: &AppVersion) -> bool {
    let bound = Bound::new(cmp);
    match cmp.op {
        Op::Exact | Op::Wildcard => bound.compare(ver) == Ordering::Equal,
        Op::Greater => bound.compare(ver) == Ordering::Greater,
        Op::GreaterEq => bound.compare(ver) != Ordering::Less,
        Op::Less => bound.compare(ver) == Ordering::Less,
        Op::LessEq => bound.compare(ver) != Ordering::Greater,
        // `~1.4.2`: >=1.4.2 inside 1.4; `~1.4`: the 1.4 series; `~1`: the 1 series.
        Op::Tilde => bound.same_series(ver, bound.len.min(2)) && bound.compare(ver).is_ge(),
        // `^1.2.3`: >=1.2.3 inside 1; `^0.2.3`: >=0.2.3 inside 0.2; `^0.0.3`: 0.0.3 and its
        // further parts; `^0.0`: the 0.0 series; `^0`: the 0 series.
        Op::Caret => {
            let series = if cmp.major > 0 || bound.len == 1 {
                1
            } else if cmp.minor.is_some_and(|m| m > 0) || bound.len == 2 {
                2
            } else {
                3
            };
            bound.same_series(ver, series) && bound.compare(ver).is_ge()
        }
        // `Op` is non-exhaustive; an operator we do not know matches nothing.
        _ => false,
    }
}

/// A comparator's version: its 1 to 3 given parts, and for a full version the whole version.
struct Bound {
    parts: [u64; 3],
    /// How many parts the comparator names.
    len: usize,
    /// Set when all three parts are given.
    full: Option<AppVersion>,
}

impl Bound {
    fn new(cmp: &Comparator) -> Bound {
        let parts = [cmp.major, cmp.minor.unwrap_or(0), cmp.patch.unwrap_or(0)];
        let len = 1 + usize::from(cmp.minor.is_some()) + usize::from(cmp.patch.is_some());
        let full = (len == 3).then(|| AppVersion::from_parts(parts, cmp.pre.clone()));
        Bound { parts, len, full }
    }

    /// `ver` against the comparator: by the shared ordering for a full version, else by the
    /// parts the comparator names (a partial version is its whole series).
    fn compare(&self, ver: &AppVersion) -> Ordering {
        match &self.full {
            Some(full) => ver.cmp(full),
            None => ver.parts()[..self.len].cmp(&self.parts[..self.len]),
        }
    }

    /// Whether `ver`'s first `len` parts are the comparator's.
    fn same_series(&self, ver: &AppVersion, len: usize) -> bool {
        ver.parts()[..len] == self.parts[..len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_including_prereleases() {
        let cases: &[(&str, &str, bool)] = &[
            (">=1.4.0, <2", "1.4.0", true),
            (">=1.4.0, <2", "1.9.99", true),
            (">=1.4.0, <2", "1.5.0-beta.1", true),
            (">=1.4.0, <2", "1.4.0-beta", false),
            (">=1.4.0, <2", "1.3.9", false),
            (">=1.4.0, <2", "2.0.0", false),
            (">=1.4.0, <2", "2.0.0-beta.1", false),
            (">=1.4.0, <2", "1.4", true),
            (">=1.4.0, <2", "1.10.0.7", true),
            ("<2.0.0", "2.0.0-rc.1", true),
            ("<2.0.0", "2.0.0", false),
            (">=1.5.0-beta.2", "1.5.0-beta.3", true),
            (">=1.5.0-beta.2", "1.5.0-beta.1", false),
            (">=1.5.0-beta.2", "1.5.0", true),
            ("=1.5.0-beta.1", "1.5.0-beta.1", true),
            ("=1.5.0-beta.1", "1.5.0", false),
            ("=1.5", "1.5.7-rc.1", true),
            ("=1.5", "1.6.0", false),
            ("1.5.*", "1.5.3", true),
            ("~1.4", "1.4.3-beta", true),
            ("~1.4.2", "1.4.2-beta", false),
            ("~1.4.2", "1.4.9", true),
            ("^0.3", "0.3.5-alpha", true),
            ("^0.3", "0.4.0", false),
            ("^1.2.3", "1.9.0-beta", true),
            ("^1.2.3", "2.0.0", false),
            (">1.5", "1.6.0-beta", true),
            (">1.5", "1.5.9", false),
            ("<=1.5", "1.5.9-beta", true),
            ("*", "0.0.1-alpha", true),
            (">=2024.1.0", "2024.10.1", true),
            (">=2024.1.0", "2023.12.31", false),
            (">1.2.3", "1.2.3.4", true),
            (">=1.2.3", "1.2.3.4-beta", true),
            ("=1.2.3", "1.2.3.4", false),
            ("=1.2.3", "1.2.3.0", true),
            ("<=1.2.3", "1.2.3.4", false),
            ("<1.2.4", "1.2.3.4", true),
            ("=1.2", "1.2.3.4", true),
            (">1.2", "1.2.3.4", false),
            ("~1.2.3", "1.2.3.4", true),
            ("^0.0.3", "0.0.3.1", true),
            ("^0.0.3", "0.0.4", false),
        ];
        for (req, version, expected) in cases {
            let req_parsed = parse_req(req).unwrap();
            let ver = AppVersion::parse(version).unwrap();
            assert_eq!(
                req_matches(&req_parsed, &ver),
                *expected,
                "{version} in {req}"
            );
        }
    }

    #[test]
    fn crate_default_rule_differs_for_prereleases() {
        // Documents why we do not call VersionReq::matches.
        let req = parse_req(">=1.4.0, <2").unwrap();
        let beta = semver::Version::parse("1.5.0-beta.1").unwrap();
        assert!(!req.matches(&beta));
        assert!(req_matches(
            &req,
            &AppVersion::parse("1.5.0-beta.1").unwrap()
        ));
    }
}
