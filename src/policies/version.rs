//! App-version targeting: lenient parsing of the versions clients report, and matching them
//! against a SemVer requirement with explicit pre-release rules.
//!
//! The `semver` crate's `VersionReq::matches` only lets a pre-release through when a
//! comparator names the same `major.minor.patch` with a pre-release (Cargo's opt-in rule), so
//! `1.5.0-beta.1` would not match `>=1.4.0, <2`. Telemetry targeting wants the opposite: a beta
//! user of 1.5 is on the 1.x line. So we compare versions instead:
//!
//! - A **full** version in a comparator (`1.4.0`, `2.0.0-rc.1`) compares by SemVer
//!   precedence, pre-releases included: `1.5.0-beta.1` is in `>=1.4.0, <2`; `1.4.0-beta` is
//!   not in `>=1.4.0` (it precedes 1.4.0); `2.0.0-rc.1` is in `<2.0.0`.
//! - A **partial** version (`1`, `1.4`, `1.4.*`) stands for the whole series, its pre-releases
//!   included: `<2` excludes `2.0.0-beta` (it is of the 2 series), `>=1.4` and `~1.4` and
//!   `=1.4` include `1.4.0-beta`.
//! - Build metadata is ignored.
//!
//! Reported versions are parsed leniently: a leading `v`, one to three numeric parts padded
//! to `x.y.z` (`1.2` → `1.2.0`, `2024.10.1`), leading zeros (`2024.01.05`), and a fourth numeric
//! part kept as build metadata (`1.2.3.4` → `1.2.3+4`, i.e. compared as 1.2.3). Anything else
//! does not parse, and a version-targeted policy then does not match.

use semver::{BuildMetadata, Comparator, Op, Prerelease, Version, VersionReq};

/// Parses a client-reported version leniently (see the module docs).
pub fn parse_lenient(text: &str) -> Option<Version> {
    let text = text.trim();
    if let Ok(version) = Version::parse(text) {
        return Some(version);
    }
    let text = text
        .strip_prefix('v')
        .or_else(|| text.strip_prefix('V'))
        .unwrap_or(text);
    let (rest, build) = match text.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (text, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let mut parts = [0u64; 3];
    let mut fourth: Option<&str> = None;
    let mut count = 0;
    for part in core.split('.') {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        match count {
            0..=2 => parts[count] = part.parse().ok()?,
            3 => fourth = Some(part),
            _ => return None,
        }
        count += 1;
    }
    if count == 0 {
        return None;
    }
    let mut version = Version::new(parts[0], parts[1], parts[2]);
    if let Some(pre) = pre {
        version.pre = Prerelease::new(pre).ok()?;
    }
    let build = match (fourth, build) {
        (Some(f), Some(b)) => Some(format!("{f}.{b}")),
        (Some(f), None) => Some(f.to_string()),
        (None, Some(b)) => Some(b.to_string()),
        (None, None) => None,
    };
    if let Some(build) = build {
        version.build = BuildMetadata::new(&build).ok()?;
    }
    Some(version)
}

/// Parses a targeting requirement (`>=1.4.0, <2`), with the `semver` crate's syntax.
pub fn parse_req(text: &str) -> Result<VersionReq, semver::Error> {
    VersionReq::parse(text.trim())
}

/// True when `version` satisfies every comparator of `req` under the rules of this module.
pub fn req_matches(req: &VersionReq, version: &Version) -> bool {
    req.comparators
        .iter()
        .all(|cmp| comparator_matches(cmp, version))
}

fn comparator_matches(cmp: &Comparator, ver: &Version) -> bool {
    match cmp.op {
        Op::Exact | Op::Wildcard => matches_exact(cmp, ver),
        Op::Greater => matches_greater(cmp, ver),
        Op::GreaterEq => matches_exact(cmp, ver) || matches_greater(cmp, ver),
        Op::Less => matches_less(cmp, ver),
        Op::LessEq => matches_exact(cmp, ver) || matches_less(cmp, ver),
        Op::Tilde => matches_tilde(cmp, ver),
        Op::Caret => matches_caret(cmp, ver),
        // `Op` is non-exhaustive; an operator we do not know matches nothing.
        _ => false,
    }
}

// The functions below follow the semver crate's `eval.rs` (MIT/Apache-2.0) with two changes:
// no pre-release opt-in gate, and a partial comparator covers its series' pre-releases.

fn matches_exact(cmp: &Comparator, ver: &Version) -> bool {
    if ver.major != cmp.major {
        return false;
    }
    if let Some(minor) = cmp.minor {
        if ver.minor != minor {
            return false;
        }
    }
    match cmp.patch {
        None => true,
        Some(patch) => ver.patch == patch && ver.pre == cmp.pre,
    }
}

fn matches_greater(cmp: &Comparator, ver: &Version) -> bool {
    if ver.major != cmp.major {
        return ver.major > cmp.major;
    }
    let Some(minor) = cmp.minor else {
        return false;
    };
    if ver.minor != minor {
        return ver.minor > minor;
    }
    let Some(patch) = cmp.patch else {
        return false;
    };
    if ver.patch != patch {
        return ver.patch > patch;
    }
    ver.pre > cmp.pre
}

fn matches_less(cmp: &Comparator, ver: &Version) -> bool {
    if ver.major != cmp.major {
        return ver.major < cmp.major;
    }
    let Some(minor) = cmp.minor else {
        return false;
    };
    if ver.minor != minor {
        return ver.minor < minor;
    }
    let Some(patch) = cmp.patch else {
        return false;
    };
    if ver.patch != patch {
        return ver.patch < patch;
    }
    ver.pre < cmp.pre
}

fn matches_tilde(cmp: &Comparator, ver: &Version) -> bool {
    if ver.major != cmp.major {
        return false;
    }
    if let Some(minor) = cmp.minor {
        if ver.minor != minor {
            return false;
        }
    }
    match cmp.patch {
        None => true,
        Some(patch) if ver.patch != patch => ver.patch > patch,
        Some(_) => ver.pre >= cmp.pre,
    }
}

fn matches_caret(cmp: &Comparator, ver: &Version) -> bool {
    if ver.major != cmp.major {
        return false;
    }
    let Some(minor) = cmp.minor else {
        return true;
    };
    let Some(patch) = cmp.patch else {
        return if cmp.major > 0 {
            ver.minor >= minor
        } else {
            ver.minor == minor
        };
    };
    if cmp.major > 0 {
        if ver.minor != minor {
            return ver.minor > minor;
        } else if ver.patch != patch {
            return ver.patch > patch;
        }
    } else if minor > 0 {
        if ver.minor != minor {
            return false;
        } else if ver.patch != patch {
            return ver.patch > patch;
        }
    } else if ver.minor != minor || ver.patch != patch {
        return false;
    }
    ver.pre >= cmp.pre
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_parsing() {
        let cases: &[(&str, Option<&str>)] = &[
            ("1.2.3", Some("1.2.3")),
            ("1.2", Some("1.2.0")),
            ("1", Some("1.0.0")),
            ("v2.0", Some("2.0.0")),
            ("V2.0.1", Some("2.0.1")),
            ("2024.10.1", Some("2024.10.1")),
            ("2024.01.05", Some("2024.1.5")),
            ("1.5-beta.1", Some("1.5.0-beta.1")),
            ("1.5.0-beta.1", Some("1.5.0-beta.1")),
            ("1.2.3.4", Some("1.2.3+4")),
            ("1.2.3+build.7", Some("1.2.3+build.7")),
            (" 1.2.3 ", Some("1.2.3")),
            ("", None),
            ("abc", None),
            ("1..2", None),
            ("1.2.3.4.5", None),
            ("1.x", None),
            ("-1.2", None),
        ];
        for (text, expected) in cases {
            let got = parse_lenient(text).map(|v| v.to_string());
            assert_eq!(got.as_deref(), *expected, "parse_lenient({text:?})");
        }
    }

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
        ];
        for (req, version, expected) in cases {
            let req_parsed = parse_req(req).unwrap();
            let ver = parse_lenient(version).unwrap();
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
        let beta = Version::parse("1.5.0-beta.1").unwrap();
        assert!(!req.matches(&beta));
        assert!(req_matches(&req, &beta));
    }
}
