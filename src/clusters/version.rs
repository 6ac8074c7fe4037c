//! App-version ordering for regressions: semver when both sides parse as semver, otherwise a
//! loose reading (`v` prefix, 1–8 numeric components such as `2024.10.1` or `1.2`, an optional
//! `-pre.release` compared by semver's rules, `+build` ignored).

use std::cmp::Ordering;

/// A pre-release identifier, ordered as in semver: numeric < alphanumeric.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ident<'a> {
    Numeric(u64),
    Alpha(&'a str),
}

#[derive(Debug)]
struct Loose<'a> {
    core: Vec<u64>,
    pre: Vec<Ident<'a>>,
}

fn parse_loose(text: &str) -> Option<Loose<'_>> {
    let text = text.trim();
    let text = text
        .strip_prefix('v')
        .or_else(|| text.strip_prefix('V'))
        .unwrap_or(text);
    let text = text.split('+').next().unwrap_or(text);
    let (core_text, pre_text) = match text.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (text, None),
    };
    let mut core = Vec::with_capacity(4);
    for part in core_text.split('.') {
        if part.is_empty() || part.len() > 19 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        core.push(part.parse().ok()?);
    }
    if core.len() > 8 {
        return None;
    }
    let mut pre = Vec::new();
    if let Some(pre_text) = pre_text {
        for part in pre_text.split(['.', '-']) {
            if part.is_empty() {
                return None;
            }
            pre.push(match part.parse::<u64>() {
                Ok(n) if part.bytes().all(|b| b.is_ascii_digit()) => Ident::Numeric(n),
                _ => Ident::Alpha(part),
            });
        }
    }
    Some(Loose { core, pre })
}

fn compare_loose(a: &Loose<'_>, b: &Loose<'_>) -> Ordering {
    let len = a.core.len().max(b.core.len());
    for i in 0..len {
        let x = a.core.get(i).copied().unwrap_or(0);
        let y = b.core.get(i).copied().unwrap_or(0);
        match x.cmp(&y) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    match (a.pre.is_empty(), b.pre.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.pre.cmp(&b.pre),
    }
}

/// Orders two versions; `None` when either cannot be read as a version.
pub fn compare_versions(a: &str, b: &str) -> Option<Ordering> {
    if let (Ok(x), Ok(y)) = (semver::Version::parse(a), semver::Version::parse(b)) {
        // Semver precedence ignores build metadata.
        return Some(x.cmp_precedence(&y));
    }
    Some(compare_loose(&parse_loose(a)?, &parse_loose(b)?))
}

/// Whether `candidate` is a strictly newer version than `than`. Versions that cannot be read
/// (`"nightly"`, `"abc"`) are never newer: a regression needs evidence.
pub fn is_newer(candidate: &str, than: &str) -> bool {
    compare_versions(candidate, than) == Some(Ordering::Greater)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_and_fallbacks() {
        let newer = [
            ("1.2.1", "1.2.0"),
            ("1.10.0", "1.9.9"),
            ("2.0.0", "2.0.0-rc.1"),
            ("3.4.0-beta.2", "3.4.0-beta.1"),
            ("3.4.0-beta.10", "3.4.0-beta.2"),
            ("3.4.0-rc.1", "3.4.0-beta.9"),
            ("2024.10.1", "2024.9.30"),
            ("2024.10.1", "2024.10"),
            ("1.3", "1.2.9"),
            ("v1.2.4", "1.2.3"),
            ("1.2.3.4", "1.2.3"),
            ("10", "9"),
            ("1.2-beta.2", "1.2-beta.1"),
        ];
        for (a, b) in newer {
            assert!(is_newer(a, b), "{a} > {b}");
            assert!(!is_newer(b, a), "not {b} > {a}");
        }
        for (a, b) in [
            ("1.2", "1.2.0"),
            ("1.2.0+build.5", "1.2.0+build.4"),
            ("v2.0", "2.0.0"),
        ] {
            assert_eq!(compare_versions(a, b), Some(Ordering::Equal), "{a} = {b}");
            assert!(!is_newer(a, b));
        }
        for (a, b) in [
            ("nightly", "1.0"),
            ("1.0", "nightly"),
            ("", "1"),
            ("1..2", "1"),
        ] {
            assert!(!is_newer(a, b), "{a} vs {b}");
        }
    }
}
