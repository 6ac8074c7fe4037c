//! The cluster key of an event (computed once at ingest and stored in `Event.fingerprint`),
//! the title of a new cluster, and the stable 64-bit hash used for install ids.
//!
//! Fingerprint = first 128 bits of SHA-256 over a versioned, length-prefixed encoding of
//! product, platform, channel, module, event name, error domain, error code and — only when
//! there is no error code — the normalised error message. Each component is written as a
//! presence byte (`0` absent, `1` present) then, if present, its length as u32 LE and its bytes,
//! so no two different tuples encode alike (`("a|b", "")` ≠ `("a", "b|")`, `None` ≠ `""`). The
//! app version is deliberately not a component: one problem across versions is one cluster.

use sha2::{Digest, Sha256};

use crate::model::{Event, Level};

use super::normalize::normalize_message;

/// Bumped if the encoding or the components ever change (it would split every cluster).
const FINGERPRINT_DOMAIN: &[u8] = b"telemetryd.cluster.fingerprint.v1\0";

/// Longest title kept, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

/// Whether an event takes part in clustering: level `warn` or above, or a non-empty `error`.
pub fn is_clusterable(event: &Event) -> bool {
    event.level >= Level::Warn || event.error.as_ref().is_some_and(|e| !e.is_empty())
}

fn error_code(event: &Event) -> Option<&str> {
    event
        .error
        .as_ref()
        .and_then(|e| e.code.as_deref())
        .filter(|c| !c.trim().is_empty())
}

fn error_message(event: &Event) -> Option<&str> {
    event
        .error
        .as_ref()
        .and_then(|e| e.message.as_deref())
        .filter(|m| !m.trim().is_empty())
}

fn put(hasher: &mut Sha256, component: Option<&str>) {
    match component {
        None => hasher.update([0u8]),
        Some(text) => {
            hasher.update([1u8]);
            // Components are bounded by ingest limits; saturate rather than wrap regardless.
            let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
            hasher.update(len.to_le_bytes());
            hasher.update(text.as_bytes());
        }
    }
}

/// The cluster key: 32 lowercase hex chars (128 bits of SHA-256). `None` for events below
/// `warn` without an error object. Runs the message normaliser only when there is no code.
pub fn fingerprint(event: &Event) -> Option<String> {
    if !is_clusterable(event) {
        return None;
    }
    let mut hasher = Sha256::new();
    hasher.update(FINGERPRINT_DOMAIN);
    put(&mut hasher, Some(&event.product));
    put(&mut hasher, event.platform.as_deref());
    put(&mut hasher, event.channel.as_deref());
    put(&mut hasher, event.module.as_deref());
    put(&mut hasher, Some(&event.name));
    put(
        &mut hasher,
        event.error.as_ref().and_then(|e| e.domain.as_deref()),
    );
    let code = error_code(event);
    put(&mut hasher, code);
    let message = match (code, error_message(event)) {
        (None, Some(message)) => Some(normalize_message(message)),
        _ => None,
    };
    put(&mut hasher, message.as_deref());
    let digest = hasher.finalize();
    Some(crate::hash::hex(&digest[..16]))
}

/// Whether `text` looks like a fingerprint (32 lowercase hex chars).
pub fn is_fingerprint(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Title for a new cluster: `"event_name: domain/code"` when there is an error code,
/// otherwise `"event_name: normalised message"` (lines joined by a space), `"event_name:
/// domain"` or just `"event_name"`. At most [`MAX_TITLE_CHARS`] characters.
pub fn title(event: &Event) -> String {
    let domain = event
        .error
        .as_ref()
        .and_then(|e| e.domain.as_deref())
        .filter(|d| !d.trim().is_empty());
    let detail = match (error_code(event), error_message(event)) {
        (Some(code), _) => Some(match domain {
            Some(domain) => format!("{domain}/{code}"),
            None => code.to_owned(),
        }),
        (None, Some(message)) => Some(normalize_message(message).replace('\n', " ")),
        (None, None) => domain.map(str::to_owned),
    };
    let full = match detail {
        Some(detail) if !detail.is_empty() => format!("{}: {detail}", event.name),
        _ => event.name.clone(),
    };
    truncate_chars(full, MAX_TITLE_CHARS)
}

fn truncate_chars(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text,
        Some((cut, _)) => {
            let mut cut_text = text[..cut].to_owned();
            cut_text.pop();
            cut_text.push('…');
            cut_text
        }
    }
}

/// A stable, well-mixed 64-bit hash of an id (FNV-1a, then the murmur3 64-bit finaliser). Its
/// values are persisted (exact install sets, HyperLogLog registers), so it must never change;
/// `std`'s `DefaultHasher` makes no such promise across Rust releases.
pub fn stable_hash64(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::ErrorInfo;

    pub(crate) fn event(name: &str, level: Level, code: Option<&str>, message: &str) -> Event {
        Event {
            id: uuid::Uuid::nil(),
            timestamp: 1_700_000_000_000,
            received_at: 1_700_000_000_000,
            level,
            platform: Some("ios".into()),
            channel: Some("keyboard".into()),
            module: Some("dictation".into()),
            app_version: Some("1.0.0".into()),
            install_id: Some("install-1".into()),
            error: Some(ErrorInfo {
                domain: Some("NSURLErrorDomain".into()),
                code: code.map(str::to_owned),
                message: Some(message.into()),
                stack: None,
            }),
            ..Event::new("voice-sdk", name)
        }
    }

    #[test]
    fn stable_across_versions_and_variable_message_parts() {
        let mut a = event(
            "recognition_failed",
            Level::Error,
            None,
            "Timeout after 3021 ms contacting 10.0.0.7",
        );
        let mut b = a.clone();
        b.app_version = Some("2.4.0-beta.1".into());
        b.install_id = Some("another".into());
        b.timestamp += crate::timespan::DAY_MS;
        b.error.as_mut().unwrap().message =
            Some("Timeout after 15 ms contacting 192.168.1.20".into());
        b.error.as_mut().unwrap().stack = Some("frame 1\nframe 2".into());
        let fa = fingerprint(&a).unwrap();
        assert_eq!(fa.len(), 32);
        assert!(is_fingerprint(&fa));
        assert_eq!(fingerprint(&b).unwrap(), fa);
        // Level is not a component either: the cluster's severity tracks it.
        a.level = Level::Fatal;
        assert_eq!(fingerprint(&a).unwrap(), fa);
        // Pinned value: a change here splits every stored cluster (bump the domain instead).
        assert_eq!(
            fa,
            fingerprint(&event(
                "recognition_failed",
                Level::Warn,
                None,
                "Timeout after 1 ms contacting 10.0.0.8"
            ))
            .unwrap()
        );
        assert_eq!(fa, "04008e45b27f0f2f5185d17b8e628c97");
    }

    #[test]
    fn codes_and_components_differ() {
        let base = event(
            "recognition_failed",
            Level::Error,
            Some("-1001"),
            "timed out",
        );
        let fp = fingerprint(&base).unwrap();
        let other_code = event(
            "recognition_failed",
            Level::Error,
            Some("-1009"),
            "timed out",
        );
        assert_ne!(fingerprint(&other_code).unwrap(), fp);
        // With a code, the message is not part of the key.
        let other_message = event("recognition_failed", Level::Error, Some("-1001"), "offline");
        assert_eq!(fingerprint(&other_message).unwrap(), fp);
        // Without a code, different normalised messages differ.
        let m1 = event("recognition_failed", Level::Error, None, "timed out");
        let m2 = event("recognition_failed", Level::Error, None, "offline");
        assert_ne!(fingerprint(&m1), fingerprint(&m2));
        for change in 0..6 {
            let mut e = base.clone();
            match change {
                0 => e.product = "other".into(),
                1 => e.platform = Some("android".into()),
                2 => e.channel = None,
                3 => e.module = Some("keyboard".into()),
                4 => e.name = "call_failed".into(),
                _ => e.error.as_mut().unwrap().domain = Some("kCFErrorDomainCFNetwork".into()),
            }
            assert_ne!(fingerprint(&e).unwrap(), fp, "component {change}");
        }
    }

    #[test]
    fn separators_are_unambiguous() {
        let mut a = event("x", Level::Error, Some("c"), "");
        let mut b = a.clone();
        a.channel = Some("a|b".into());
        a.module = Some("".into());
        b.channel = Some("a".into());
        b.module = Some("|b".into());
        assert_ne!(fingerprint(&a), fingerprint(&b));
        let mut c = a.clone();
        c.module = None;
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }

    #[test]
    fn only_warn_and_above_or_with_error() {
        let mut e = event("x", Level::Info, None, "boom");
        assert!(fingerprint(&e).is_some(), "info with an error object");
        e.error = None;
        assert!(fingerprint(&e).is_none());
        e.error = Some(ErrorInfo::default());
        assert!(
            fingerprint(&e).is_none(),
            "an empty error object is no error"
        );
        e.level = Level::Warn;
        assert!(fingerprint(&e).is_some());
    }

    #[test]
    fn titles() {
        let e = event(
            "recognition_failed",
            Level::Error,
            Some("-1001"),
            "timed out",
        );
        assert_eq!(title(&e), "recognition_failed: NSURLErrorDomain/-1001");
        let mut e = event(
            "recognition_failed",
            Level::Error,
            None,
            "Timeout after 3021 ms\ncontacting 10.0.0.7\nmore",
        );
        assert_eq!(
            title(&e),
            "recognition_failed: Timeout after <int> ms contacting <ip>"
        );
        e.error.as_mut().unwrap().message = None;
        assert_eq!(title(&e), "recognition_failed: NSURLErrorDomain");
        e.error = None;
        assert_eq!(title(&e), "recognition_failed");
        let long = event("n", Level::Error, None, &"word ".repeat(100));
        let t = title(&long);
        assert_eq!(t.chars().count(), MAX_TITLE_CHARS);
        assert!(t.ends_with('…'));
    }

    #[test]
    fn stable_hash_is_pinned() {
        // Persisted in install sets and HLL registers: these values must never change.
        assert_eq!(stable_hash64("install-1"), 18_027_792_428_874_494_904);
        assert_ne!(stable_hash64("a"), stable_hash64("b"));
    }
}
