//! App versions as clients report them: the one parse and the one ordering, used by cluster
//! regressions (`is_newer`) and by policy targeting (`policies::version` matches requirements
//! on top of it).
//!
//! The rule:
//! - an optional leading `v`/`V`, then 1 to [`MAX_PARTS`] numeric parts separated by `.`,
//!   compared numerically (`1.10` > `1.9`; leading zeros allowed: `2024.01.05` = `2024.1.5`);
//! - missing parts count as 0 (`1.2` = `1.2.0`), and a fourth or further part is significant
//!   (`1.2.3.4` > `1.2.3`, Android/Windows style four-part versions);
//! - an optional `-pre.release` orders below its release, identifiers compared by SemVer's rules
//!   (numeric ones numerically and below alphanumeric ones: `1.0.0-beta.2` < `1.0.0-beta.10` <
//!   `1.0.0`);
//! - an optional `+build` is checked (SemVer build syntax) and ignored (`1.0.0+abc` = `1.0.0`);
//! - surrounding whitespace is ignored; anything else does not parse. Callers decide what an
//!   unparsable version means (no regression, no targeting match, a validation error).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use semver::{BuildMetadata, Prerelease};

/// Most numeric parts a version may have.
pub const MAX_PARTS: usize = 8;

/// A parsed app version. Missing parts are stored as 0, so equality and ordering follow the
/// rule in the module docs (`1.2` == `1.2.0`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppVersion {
    // Field order is the comparison order: parts first, then the pre-release.
    parts: [u64; MAX_PARTS],
    pre: Prerelease,
}

/// Why a text is not a version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("empty version")]
    Empty,
    #[error("version part `{0}` is not a number")]
    Part(String),
    #[error("more than {MAX_PARTS} version parts")]
    TooManyParts,
    #[error("invalid pre-release `{0}`")]
    Prerelease(String),
    #[error("invalid build metadata `{0}`")]
    Build(String),
}

impl AppVersion {
    /// A version from its numeric parts (at most [`MAX_PARTS`], checked at compile time) and
    /// pre-release (`Prerelease::EMPTY` for a release).
    pub fn from_parts<const N: usize>(parts: [u64; N], pre: Prerelease) -> AppVersion {
        const { assert!(N <= MAX_PARTS, "more version parts than MAX_PARTS") };
        let mut all = [0; MAX_PARTS];
        all[..N].copy_from_slice(&parts);
        AppVersion { parts: all, pre }
    }

    /// Parses `text` by the rule in the module docs.
    pub fn parse(text: &str) -> Result<AppVersion, VersionError> {
        let text = text.trim();
        let text = text
            .strip_prefix('v')
            .or_else(|| text.strip_prefix('V'))
            .unwrap_or(text);
        if text.is_empty() {
            return Err(VersionError::Empty);
        }
        let (rest, build) = match text.split_once('+') {
            Some((rest, build)) => (rest, Some(build)),
            None => (text, None),
        };
        // The `semver` constructors accept an empty text; a separator needs something after it.
        if let Some(build) = build {
            if build.is_empty() || BuildMetadata::new(build).is_err() {
                return Err(VersionError::Build(build.into()));
            }
        }
        let (core, pre) = match rest.split_once('-') {
            Some((_, pre)) if pre.is_empty() => return Err(VersionError::Prerelease(pre.into())),
            Some((core, pre)) => (
                core,
                Prerelease::new(pre).map_err(|_| VersionError::Prerelease(pre.into()))?,
            ),
            None => (rest, Prerelease::EMPTY),
        };
        let mut parts = [0; MAX_PARTS];
        for (i, part) in core.split('.').enumerate() {
            if i == MAX_PARTS {
                return Err(VersionError::TooManyParts);
            }
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(VersionError::Part(part.into()));
            }
            parts[i] = part.parse().map_err(|_| VersionError::Part(part.into()))?;
        }
        Ok(AppVersion { parts, pre })
    }

    /// All parts, missing ones as 0: `parts()[0]` is the major version.
    pub fn parts(&self) -> &[u64; MAX_PARTS] {
        &self.parts
    }

    pub fn pre(&self) -> &Prerelease {
        &self.pre
    }
}

impl FromStr for AppVersion {
    type Err = VersionError;

    fn from_str(text: &str) -> Result<AppVersion, VersionError> {
        AppVersion::parse(text)
    }
}

/// `major.minor.patch`, then any further parts up to the last non-zero one, then `-pre`.
impl fmt::Display for AppVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self
            .parts
            .iter()
            .rposition(|p| *p != 0)
            .map_or(0, |i| i + 1);
        for (i, part) in self.parts[..len.max(3)].iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{part}")?;
        }
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre)?;
        }
        Ok(())
    }
}

/// Orders two versions; `None` when either does not parse.
pub fn compare_versions(a: &str, b: &str) -> Option<Ordering> {
    Some(AppVersion::parse(a).ok()?.cmp(&AppVersion::parse(b).ok()?))
}

/// Whether `candidate` is a strictly newer version than `than`. Versions that do not parse
/// (`"nightly"`, `"abc"`) are never newer: a regression needs evidence.
pub fn is_newer(candidate: &str, than: &str) -> bool {
    compare_versions(candidate, than) == Some(Ordering::Greater)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    #[test]
    fn ordering_table() {
        // (a, b, a compared with b); `None` when either side does not parse.
        let cases: &[(&str, &str, Option<Ordering>)] = &[
            ("1.2", "1.2.0", Some(Equal)),
            ("1", "1.0.0.0", Some(Equal)),
            ("1.2.3.4", "1.2.3", Some(Greater)),
            ("1.2.3.0", "1.2.3", Some(Equal)),
            ("1.2.3.4", "1.2.4", Some(Less)),
            ("1.2.3.4.5", "1.2.3.4", Some(Greater)),
            ("1.10", "1.9", Some(Greater)),
            ("1.10.0", "1.9.9", Some(Greater)),
            ("1.3", "1.2.9", Some(Greater)),
            ("10", "9", Some(Greater)),
            ("v1.2.4", "1.2.3", Some(Greater)),
            ("2024.10.1", "2024.10", Some(Greater)),
            ("2.0.0", "2.0.0-rc.1", Some(Greater)),
            ("3.4.0-rc.1", "3.4.0-beta.9", Some(Greater)),
            ("2024.01.05", "2024.1.5", Some(Equal)),
            ("2024.10.1", "2024.9.30", Some(Greater)),
            ("v1.2", "1.2", Some(Equal)),
            ("V2.0", "2.0.0", Some(Equal)),
            (" 1.2.3 ", "1.2.3", Some(Equal)),
            ("1.0.0-beta.2", "1.0.0-beta.10", Some(Less)),
            ("1.0.0-beta.10", "1.0.0-rc.1", Some(Less)),
            ("1.0.0-alpha", "1.0.0", Some(Less)),
            ("1.0.0-alpha", "1.0.0-alpha.1", Some(Less)),
            ("1.0.0-1", "1.0.0-alpha", Some(Less)),
            ("1.2-beta.2", "1.2.0-beta.1", Some(Greater)),
            ("1.2.3.4-beta", "1.2.3", Some(Greater)),
            ("1.0.0+abc", "1.0.0", Some(Equal)),
            ("1.2.0+build.5", "1.2.0+build.4", Some(Equal)),
            ("1.0.0-rc.1+abc", "1.0.0-rc.1", Some(Equal)),
            ("nightly", "1.0", None),
            ("1.0", "", None),
            ("1..2", "1", None),
            ("1.x", "1", None),
            ("-1.2", "1", None),
            ("1.2-", "1.2", None),
            ("1.2+", "1.2", None),
            ("1.0-beta..1", "1.0", None),
            ("1.2.3.4.5.6.7.8.9", "1", None),
            ("v", "1", None),
            ("99999999999999999999", "1", None),
        ];
        for (a, b, expected) in cases {
            assert_eq!(compare_versions(a, b), *expected, "{a} vs {b}");
            let reverse = expected.map(Ordering::reverse);
            assert_eq!(compare_versions(b, a), reverse, "{b} vs {a}");
            assert_eq!(
                is_newer(a, b),
                *expected == Some(Greater),
                "is_newer({a}, {b})"
            );
        }
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let cases: &[(&str, VersionError)] = &[
            ("", VersionError::Empty),
            ("v", VersionError::Empty),
            ("1.x", VersionError::Part("x".into())),
            ("1..2", VersionError::Part(String::new())),
            ("1.2.3.4.5.6.7.8.9", VersionError::TooManyParts),
            ("1.0-beta..1", VersionError::Prerelease("beta..1".into())),
            ("1.0+a+b", VersionError::Build("a+b".into())),
            ("1.2+", VersionError::Build(String::new())),
            ("1.2-", VersionError::Prerelease(String::new())),
        ];
        for (text, expected) in cases {
            assert_eq!(AppVersion::parse(text).as_ref(), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn display_is_canonical() {
        for (text, shown) in [
            ("1.2.3", "1.2.3"),
            ("1", "1.0.0"),
            ("v1.2", "1.2.0"),
            ("V2.0.1", "2.0.1"),
            ("2024.01.05", "2024.1.5"),
            ("1.5-beta.1", "1.5.0-beta.1"),
            ("1.2.3.4", "1.2.3.4"),
            ("1.2.3.4.5", "1.2.3.4.5"),
            ("1.2.3.0", "1.2.3"),
            ("1.2.3+build.7", "1.2.3"),
            ("1.5-beta.1+b7", "1.5.0-beta.1"),
        ] {
            assert_eq!(
                AppVersion::parse(text).unwrap().to_string(),
                shown,
                "{text}"
            );
        }
    }
}
