//! PII detection and scrubbing for strings in client telemetry events (error
//! messages, stack traces, ids, dimension values). Owns the detectors, their
//! validation rules (Luhn, ISO 13616 mod-97, SSN ranges, IPv6 parsing, context
//! checks that keep versions/hashes/timestamps clean) and overlap resolution.
//!
//! Every detector is one entry of `DETECTORS`, in priority order: its kind, config name,
//! placeholder, cheap pre-filter and candidate patterns (regex + validator). `PiiKind`'s names,
//! placeholders, `ALL` and the priority are read from that table. Adding a detector: a
//! `PiiKind` variant, its `DETECTORS` entry, and its regex and validator functions.

use std::net::Ipv6Addr;
use std::sync::LazyLock;

use regex::{Captures, Regex};

use Retry::{AfterMatch, NextChar};

/// A category of personally identifiable information (or secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PiiKind {
    Email,
    Phone,
    Card,
    Iban,
    Ssn,
    Ip,
    BearerToken,
    Jwt,
    ApiKey,
    PrivateKey,
    UrlCredentials,
}

impl PiiKind {
    /// Every kind, in declaration order.
    pub const ALL: [PiiKind; KINDS] = {
        let mut all = [PiiKind::Email; KINDS];
        let mut i = 0;
        while i < KINDS {
            all[i] = DETECTORS[RANK[i]].kind;
            i += 1;
        }
        all
    };

    fn detector(self) -> &'static Detector {
        &DETECTORS[self.rank()]
    }

    /// Stable snake_case name, used in config and metrics.
    pub fn as_str(self) -> &'static str {
        self.detector().name
    }

    /// Placeholder written in place of a match when scrubbing.
    pub fn placeholder(self) -> &'static str {
        self.detector().placeholder
    }

    /// Inverse of [`PiiKind::as_str`].
    pub fn from_name(name: &str) -> Option<PiiKind> {
        DETECTORS.iter().find(|d| d.name == name).map(|d| d.kind)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// Position in [`DETECTORS`]. Also the tie-break when two detectors report exactly the
    /// same range: the more specific detector (lower rank) wins.
    fn rank(self) -> usize {
        RANK[self as usize]
    }
}

// ---------------------------------------------------------------------------
// The detectors, most specific first: the order in which they run and the
// tie-break between equal matches.
// ---------------------------------------------------------------------------

/// One kind of PII: everything the detector needs, in one place.
struct Detector {
    kind: PiiKind,
    /// Name in config (`privacy.detectors`) and metrics.
    name: &'static str,
    /// Written in place of a match when scrubbing.
    placeholder: &'static str,
    /// Cheap pre-filter on one pass over the bytes: `false` means the text cannot hold this
    /// kind, and no regex runs.
    may_contain: fn(&Scan, &str) -> bool,
    /// Candidates of this kind, searched in this order.
    patterns: &'static [Pattern],
}

/// A regex proposing candidates and the validator deciding on each.
struct Pattern {
    regex: fn() -> &'static Regex,
    /// Decides on a candidate: `Some(span)` is PII at that span (the match or part of it).
    /// Arguments: the whole text, the candidate's captures.
    validate: fn(&str, &Captures<'_>) -> Option<(usize, usize)>,
    retry: Retry,
}

const DETECTORS: &[Detector] = &[
    Detector {
        kind: PiiKind::PrivateKey,
        name: "private_key",
        placeholder: "[private_key]",
        may_contain: |_, text| text.contains("-----BEGIN"),
        patterns: &[Pattern {
            regex: || &PRIVATE_KEY_RE,
            validate: |_, c| span(c, 0),
            retry: AfterMatch,
        }],
    },
    Detector {
        kind: PiiKind::UrlCredentials,
        name: "url_credentials",
        placeholder: "[credentials]",
        may_contain: |scan, text| scan.at && scan.colons > 0 && text.contains("://"),
        patterns: &[Pattern {
            regex: || &URL_CREDENTIALS_RE,
            validate: |_, c| span(c, 1),
            retry: AfterMatch,
        }],
    },
    Detector {
        kind: PiiKind::Jwt,
        name: "jwt",
        placeholder: "[jwt]",
        may_contain: |scan, text| scan.dots >= 2 && text.contains("eyJ"),
        patterns: &[Pattern {
            regex: || &JWT_RE,
            validate: validate_jwt,
            retry: NextChar,
        }],
    },
    Detector {
        kind: PiiKind::BearerToken,
        name: "bearer_token",
        placeholder: "[token]",
        may_contain: |_, text| {
            text.len() >= 14
                && (contains_ignore_case(text, "bearer")
                    || contains_ignore_case(text, "authorization"))
        },
        patterns: &[
            Pattern {
                regex: || &BEARER_RE,
                validate: validate_token,
                retry: AfterMatch,
            },
            Pattern {
                regex: || &AUTHORIZATION_RE,
                validate: validate_token,
                retry: AfterMatch,
            },
        ],
    },
    Detector {
        kind: PiiKind::ApiKey,
        name: "api_key",
        placeholder: "[api_key]",
        may_contain: |scan, text| {
            scan.eq
                || scan.colons > 0
                || (scan.dash_or_underscore && text.len() >= 20)
                || text.contains("AKIA")
                || text.contains("ASIA")
                || text.contains("AIza")
        },
        patterns: &[
            Pattern {
                regex: || &API_KEY_PREFIX_RE,
                validate: validate_key_prefix,
                retry: NextChar,
            },
            Pattern {
                regex: || &API_KEY_ASSIGN_RE,
                validate: validate_key_assignment,
                retry: NextChar,
            },
        ],
    },
    Detector {
        kind: PiiKind::Iban,
        name: "iban",
        placeholder: "[iban]",
        may_contain: |scan, text| scan.digits >= 2 && scan.upper >= 2 && text.len() >= 15,
        patterns: &[Pattern {
            regex: || &IBAN_RE,
            validate: validate_iban,
            retry: NextChar,
        }],
    },
    Detector {
        kind: PiiKind::Card,
        name: "card",
        placeholder: "[card]",
        // Without separators a card number is the whole text.
        may_contain: |scan, text| {
            if scan.word_only {
                scan.digits == text.len() && (13..=19).contains(&text.len())
            } else {
                scan.digits >= 13
            }
        },
        patterns: &[Pattern {
            regex: || &CARD_RE,
            validate: validate_card,
            retry: NextChar,
        }],
    },
    Detector {
        kind: PiiKind::Ssn,
        name: "ssn",
        placeholder: "[ssn]",
        may_contain: |scan, _| scan.digits >= 9 && !scan.word_only,
        patterns: &[Pattern {
            regex: || &SSN_RE,
            validate: validate_ssn,
            retry: NextChar,
        }],
    },
    Detector {
        kind: PiiKind::Email,
        name: "email",
        placeholder: "[email]",
        may_contain: |scan, text| (scan.at || text.contains("%40")) && scan.dots >= 1,
        patterns: &[Pattern {
            regex: || &EMAIL_RE,
            validate: validate_email,
            retry: AfterMatch,
        }],
    },
    Detector {
        kind: PiiKind::Phone,
        name: "phone",
        placeholder: "[phone]",
        // Every phone pattern needs a `+`, a separator or parentheses.
        may_contain: |scan, _| scan.digits >= 8 && !scan.word_only,
        patterns: &[
            Pattern {
                regex: || &PHONE_INTL_RE,
                validate: validate_phone_intl,
                retry: NextChar,
            },
            Pattern {
                regex: || &PHONE_NANP_RE,
                validate: validate_phone_nanp,
                retry: NextChar,
            },
            Pattern {
                regex: || &PHONE_TRUNK_RE,
                validate: validate_phone_trunk,
                retry: NextChar,
            },
            Pattern {
                regex: || &PHONE_PAIRS_RE,
                validate: validate_phone_pairs,
                retry: NextChar,
            },
        ],
    },
    Detector {
        kind: PiiKind::Ip,
        name: "ip",
        placeholder: "[ip]",
        may_contain: |scan, _| (scan.digits >= 4 && scan.dots >= 3) || scan.colons >= 2,
        patterns: &[
            Pattern {
                regex: || &IPV4_RE,
                validate: validate_ipv4,
                retry: NextChar,
            },
            Pattern {
                regex: || &IPV6_RE,
                validate: validate_ipv6,
                retry: NextChar,
            },
        ],
    },
];

/// Number of detectors (and of `PiiKind` variants).
const KINDS: usize = DETECTORS.len();

/// Each kind's position in [`DETECTORS`], by discriminant. Fails to compile when a kind has
/// two entries, when the table outgrows the `u16` set of enabled detectors, or when a variant
/// other than the last one has no entry (a last variant without one panics on first use).
const RANK: [usize; KINDS] = {
    assert!(KINDS <= 16, "PiiDetector keeps the enabled kinds in a u16");
    let mut rank = [usize::MAX; KINDS];
    let mut i = 0;
    while i < KINDS {
        let kind = DETECTORS[i].kind as usize;
        assert!(kind < KINDS, "a PiiKind has no DETECTORS entry");
        assert!(
            rank[kind] == usize::MAX,
            "a PiiKind has two DETECTORS entries"
        );
        rank[kind] = i;
        i += 1;
    }
    rank
};

/// The kinds in the order detectors run (most specific first); the tests check it.
#[cfg(test)]
const PRIORITY: [PiiKind; KINDS] = {
    let mut priority = [PiiKind::Email; KINDS];
    let mut i = 0;
    while i < KINDS {
        priority[i] = DETECTORS[i].kind;
        i += 1;
    }
    priority
};

/// Shortest string any detector can match (`a@b.co`).
const MIN_LEN: usize = 6;

/// A set of enabled detectors (config lets operators disable some); `Default` = all enabled.
#[derive(Debug, Clone)]
pub struct PiiDetector {
    enabled: u16,
}

impl Default for PiiDetector {
    fn default() -> Self {
        Self::all()
    }
}

impl PiiDetector {
    pub fn new(enabled: &[PiiKind]) -> Self {
        Self {
            enabled: enabled.iter().fold(0, |acc, k| acc | k.bit()),
        }
    }

    pub fn all() -> Self {
        Self::new(&PiiKind::ALL)
    }

    /// First PII found in `text` (by position), if any.
    pub fn detect(&self, text: &str) -> Option<PiiKind> {
        self.find(text, Context::Text).first().map(|f| f.kind)
    }

    /// [`PiiDetector::detect`] for the value of an identifier (an install, user, session, run,
    /// call or trace id). A random 16-hex-digit id is all decimal digits passing the Luhn check
    /// about once in 18,000, and two in five of those start like a card brand: a bare run of 16
    /// digits there is an id. A card number still shows in an id by its separators (`4111 1111 1111 1111`,
    /// `4111-1111-1111-1111`) or by a brand prefix with a length no such id has (American Express
    /// 15 digits, Visa 13 or 19, 17 to 19 for the networks that use them).
    pub fn detect_in_identifier(&self, text: &str) -> Option<PiiKind> {
        self.find(text, Context::Identifier).first().map(|f| f.kind)
    }

    /// Replace every PII occurrence with its placeholder. `None` when the text
    /// is clean (no allocation); otherwise the scrubbed text and each kind found
    /// once, in order of first appearance.
    pub fn scrub(&self, text: &str) -> Option<(String, Vec<PiiKind>)> {
        let found = self.find(text, Context::Text);
        if found.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        let mut kinds = Vec::new();
        let mut last = 0;
        for f in &found {
            out.push_str(&text[last..f.start]);
            out.push_str(f.kind.placeholder());
            last = f.end;
            if !kinds.contains(&f.kind) {
                kinds.push(f.kind);
            }
        }
        out.push_str(&text[last..]);
        Some((out, kinds))
    }

    fn is_enabled(&self, kind: PiiKind) -> bool {
        self.enabled & kind.bit() != 0
    }

    /// All matches, non-overlapping, sorted by position.
    fn find(&self, text: &str, context: Context) -> Vec<Found> {
        if self.enabled == 0 || text.len() < MIN_LEN || is_uuid(text) {
            return Vec::new();
        }
        let scan = Scan::new(text);
        let mut found = Vec::new();
        for detector in DETECTORS {
            if self.is_enabled(detector.kind) && (detector.may_contain)(&scan, text) {
                for pattern in detector.patterns {
                    each_candidate(text, detector.kind, pattern, &mut found);
                }
            }
        }
        if context == Context::Identifier {
            found.retain(|f| {
                !(f.kind == PiiKind::Card && is_id_sized_digits(&text[f.start..f.end]))
            });
        }
        resolve(found)
    }
}

/// Where a text comes from, which decides what counts as a card number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Text,
    Identifier,
}

/// Length of the common random id: 64 bits as hex digits.
const HEX_ID_DIGITS: usize = 16;

/// A bare run of digits as long as a random hex id.
fn is_id_sized_digits(candidate: &str) -> bool {
    candidate.len() == HEX_ID_DIGITS && candidate.bytes().all(|b| b.is_ascii_digit())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Found {
    kind: PiiKind,
    start: usize,
    end: usize,
}

/// Earliest start wins, then the longest, then the most specific detector.
fn resolve(mut found: Vec<Found>) -> Vec<Found> {
    if found.len() < 2 {
        return found;
    }
    found.sort_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then(b.end.cmp(&a.end))
            .then(a.kind.rank().cmp(&b.kind.rank()))
    });
    let mut out: Vec<Found> = Vec::with_capacity(found.len());
    let mut last_end = 0;
    for f in found {
        if f.start >= last_end {
            last_end = f.end;
            out.push(f);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Cheap pre-filter: one pass over the bytes decides which detectors can
// possibly match, so short clean strings never touch a regex.
// ---------------------------------------------------------------------------

/// A canonical UUID (`8-4-4-4-12` hex digits) is an identifier, never personal data, however
/// its digit groups happen to fall.
fn is_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[derive(Default)]
struct Scan {
    /// Only ASCII letters, digits and `_`: no separator, so no grouped number and no word
    /// boundary inside the text.
    word_only: bool,
    digits: usize,
    upper: usize,
    dots: usize,
    colons: usize,
    at: bool,
    eq: bool,
    dash_or_underscore: bool,
}

impl Scan {
    fn new(text: &str) -> Self {
        let mut s = Scan {
            word_only: true,
            ..Scan::default()
        };
        for b in text.bytes() {
            s.word_only &= b.is_ascii_alphanumeric() || b == b'_';
            match b {
                b'0'..=b'9' => s.digits += 1,
                b'A'..=b'Z' => s.upper += 1,
                b'.' => s.dots += 1,
                b':' => s.colons += 1,
                b'@' => s.at = true,
                b'=' => s.eq = true,
                b'-' | b'_' => s.dash_or_underscore = true,
                _ => {}
            }
        }
        s
    }
}

fn contains_ignore_case(text: &str, needle: &str) -> bool {
    let n = needle.as_bytes();
    text.as_bytes()
        .windows(n.len())
        .any(|w| w.eq_ignore_ascii_case(n))
}

// ---------------------------------------------------------------------------
// Regexes (compiled once). `[0-9]` rather than `\d` so non-ASCII digits never
// match and byte arithmetic on candidates stays valid.
// ---------------------------------------------------------------------------

fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).expect("pii: built-in regex must compile")
}

static EMAIL_RE: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"([A-Za-z0-9._%+\-]+)(?:@|%40)(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,63}",
    )
});

/// E.164 / international: `+` or the `00` international call prefix, country code and groups.
static PHONE_INTL_RE: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"(?:\+|\b00)[1-9][0-9]{0,3}(?:[ .\-]?\([0-9]{1,5}\))?(?:[ .\-]?[0-9]{1,12}){1,7}\b")
});

/// North American: `(415) 555-2671`, `415-555-2671`, `1-800-555-0199`.
static PHONE_NANP_RE: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?:1[ .\-])?(?:\(([0-9]{3})\)[ .\-]?|([0-9]{3})([ .\-]))([0-9]{3})([ .\-])([0-9]{4})\b",
    )
});

/// National with trunk prefix 0: `020 7946 0958`, `030-1234567`, `07700 900123`.
static PHONE_TRUNK_RE: LazyLock<Regex> =
    LazyLock::new(|| compile(r"\b0[1-9][0-9]{1,3}([ \-])[0-9]{3,4}(?:([ \-]?)[0-9]{3,4})?\b"));

/// French-style pairs: `01 23 45 67 89`, `01.23.45.67.89`.
static PHONE_PAIRS_RE: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"\b0[1-9]([ .\-])[0-9]{2}([ .\-])[0-9]{2}([ .\-])[0-9]{2}([ .\-])[0-9]{2}\b")
});

static CARD_RE: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"\b(?:[0-9]{4}[ \-][0-9]{4}[ \-][0-9]{4}[ \-][0-9]{1,4}(?:[ \-][0-9]{1,3})?|[0-9]{4}[ \-][0-9]{6}[ \-][0-9]{4,5}|[0-9]{13,19})\b",
    )
});

static IBAN_RE: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"[A-Z]{2}[0-9]{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?)")
});

static SSN_RE: LazyLock<Regex> =
    LazyLock::new(|| compile(r"\b([0-9]{3})([ \-])([0-9]{2})([ \-])([0-9]{4})\b"));

static IPV4_RE: LazyLock<Regex> =
    LazyLock::new(|| compile(r"\b[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\b"));

static IPV6_RE: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?:[0-9A-Fa-f]{1,4}|:)(?::[0-9A-Fa-f]{0,4}){1,7}(?:\.[0-9]{1,3}){0,3}(?:%[0-9A-Za-z_.\-]{1,16})?",
    )
});

static BEARER_RE: LazyLock<Regex> =
    LazyLock::new(|| compile(r"(?i)\bbearer[ \t]+([A-Za-z0-9\-._~+/]+=*)"));

static AUTHORIZATION_RE: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r#"(?i)\b(?:proxy-)?authorization["']?[ \t]*[:=][ \t]*["']?(?:(?:bearer|basic|token|bot|negotiate|ntlm|apikey|sso-key)[ \t]+)?([A-Za-z0-9\-._~+/]+=*)"#,
    )
});

static JWT_RE: LazyLock<Regex> =
    LazyLock::new(|| compile(r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]*"));

/// Well-known vendor key formats.
static API_KEY_PREFIX_RE: LazyLock<Regex> = LazyLock::new(|| {
    compile(concat!(
        r"sk-[A-Za-z0-9_\-]{20,}",
        r"|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}",
        r"|whsec_[A-Za-z0-9]{20,}",
        r"|gh[pousr]_[A-Za-z0-9]{30,}",
        r"|github_pat_[A-Za-z0-9_]{22,}",
        r"|xox[abpre]-[A-Za-z0-9\-]{10,}",
        r"|(?:AKIA|ASIA)[0-9A-Z]{16}",
        r"|AIza[0-9A-Za-z_\-]{35}",
        r"|glpat-[A-Za-z0-9_\-]{20,}",
    ))
});

/// Generic `key=value` / `key: value` assignments; group 2 is the separator,
/// 3 the opening quote (possibly empty), 4 the value.
static API_KEY_ASSIGN_RE: LazyLock<Regex> = LazyLock::new(|| {
    compile(concat!(
        r"(?i)(api[_\-]?key|api[_\-]?secret|api[_\-]?token|access[_\-]?key|secret[_\-]?key",
        r"|client[_\-]?secret|access[_\-]?token|auth[_\-]?token|refresh[_\-]?token",
        r"|private[_\-]?key|secret|passphrase|password|passwd|token)",
        r#"["']?[ \t]*([:=])[ \t]*(["']?)([^\s"'`,;&<>(){}\[\]]{8,})"#,
    ))
});

static PRIVATE_KEY_RE: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?s)-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\z)",
    )
});

/// `scheme://user:password@host`; group 1 is `user:password`.
static URL_CREDENTIALS_RE: LazyLock<Regex> = LazyLock::new(|| {
    compile(r#"[A-Za-z][A-Za-z0-9+.\-]*://([^\s/?#:"'<>`]*:[^\s/?#"'<>`]+)@[^\s/?#@]"#)
});

// ---------------------------------------------------------------------------
// Candidate iteration and context helpers.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// After a rejected candidate, search again one character further on
    /// (a shorter or shifted candidate may be valid).
    NextChar,
    /// After a rejected candidate, resume after it (a shifted candidate can
    /// only fail the same way; avoids quadratic rescans).
    AfterMatch,
}

/// Runs `pattern` over `text` and pushes each validated candidate as a `kind` match.
fn each_candidate(text: &str, kind: PiiKind, pattern: &Pattern, out: &mut Vec<Found>) {
    let re = (pattern.regex)();
    let mut pos = 0;
    while pos < text.len() {
        let Some(caps) = re.captures_at(text, pos) else {
            break;
        };
        let Some(whole) = caps.get(0) else { break };
        let step = next_boundary(text, whole.start());
        match (pattern.validate)(text, &caps) {
            Some((start, end)) if start < end => {
                out.push(Found { kind, start, end });
                pos = whole.end().max(end).max(step);
            }
            _ => {
                pos = match pattern.retry {
                    NextChar => step,
                    AfterMatch => whole.end().max(step),
                }
            }
        }
    }
}

fn next_boundary(text: &str, i: usize) -> usize {
    text[i..]
        .chars()
        .next()
        .map_or(text.len(), |c| i + c.len_utf8())
}

fn char_before(text: &str, i: usize) -> Option<char> {
    text[..i].chars().next_back()
}

fn char_after(text: &str, i: usize) -> Option<char> {
    text[i..].chars().next()
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// True when `start..end` is a token of its own: no word character directly
/// adjacent, and no `joiner` (e.g. `.` or `-`) continuing into another
/// alphanumeric run (which would make it part of a version, UUID, etc.).
fn standalone(text: &str, start: usize, end: usize, joiners: &[char]) -> bool {
    let mut before = text[..start].chars().rev();
    let glued_before = match before.next() {
        Some(c) if is_word(c) => true,
        Some(c) if joiners.contains(&c) => before.next().is_some_and(char::is_alphanumeric),
        _ => false,
    };
    if glued_before {
        return false;
    }
    let mut after = text[end..].chars();
    match after.next() {
        Some(c) if is_word(c) => false,
        Some(c) if joiners.contains(&c) => !after.next().is_some_and(char::is_alphanumeric),
        _ => true,
    }
}

fn span(caps: &Captures<'_>, group: usize) -> Option<(usize, usize)> {
    caps.get(group).map(|m| (m.start(), m.end()))
}

fn group_str<'h>(caps: &Captures<'h>, group: usize) -> &'h str {
    caps.get(group).map_or("", |m| m.as_str())
}

// ---------------------------------------------------------------------------
// Email
// ---------------------------------------------------------------------------

/// "TLDs" that are really file extensions (`icon@2x.png`, `react@18.2.0.min.js`).
const FILE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "avif", "ico", "bmp", "js", "mjs", "cjs", "jsx",
    "ts", "tsx", "json", "css", "scss", "map", "html", "htm", "wasm", "txt", "log", "lock", "yaml",
    "yml", "toml", "xml", "java", "class", "kt", "swift", "rb", "php", "dll", "exe", "dylib", "gz",
    "tgz", "zip", "tar",
];

fn validate_email(text: &str, caps: &Captures<'_>) -> Option<(usize, usize)> {
    let whole = caps.get(0)?;
    let cand = whole.as_str();
    // Group 1 is the local part; `%40` is a URL-encoded `@`.
    let raw_local = caps.get(1)?.as_str();
    let local = raw_local.trim_start_matches('.');
    if local.is_empty() || local.ends_with('.') || !local.bytes().any(|b| b.is_ascii_alphanumeric())
    {
        return None;
    }
    let tld = cand.rsplit('.').next()?;
    if FILE_EXTENSIONS
        .iter()
        .any(|ext| tld.eq_ignore_ascii_case(ext))
    {
        return None;
    }
    let mut after = text[whole.end()..].chars();
    match after.next() {
        Some(c) if is_word(c) || c == '-' || c == '@' => return None,
        Some('.') if after.next().is_some_and(char::is_alphanumeric) => return None,
        _ => {}
    }
    Some((whole.start() + (raw_local.len() - local.len()), whole.end()))
}

// ---------------------------------------------------------------------------
// Phone
// ---------------------------------------------------------------------------

const PHONE_JOINERS: &[char] = &['.', '-'];

fn validate_phone_intl(text: &str, caps: &Captures<'_>) -> Option<(usize, usize)> {
    let (s, e) = span(caps, 0)?;
    let cand = &text[s..e];
    // `0044 20 7946 0958`: the `00` prefix stands for the `+`. Without a `+` a run of digits is
    // any number, so this form needs its groups apart, by spaces, hyphens or a parenthesis
    // (never dots: `0012.3.4` is a version).
    let (prefix, separated) = match cand.strip_prefix("00") {
        Some(rest) => {
            if rest.contains('.') || rest.split([' ', '-', '(', ')']).count() < 3 {
                return None;
            }
            (2, true)
        }
        None => (1, cand.contains([' ', '.', '-', '('])),
    };
    let digits = cand[prefix..].bytes().filter(u8::is_ascii_digit).count();
    let range = if separated { 8..=15 } else { 10..=15 };
    if !range.contains(&digits) || !standalone(text, s, e, PHONE_JOINERS) {
        return None;
    }
    // `+2024-10-01` / `+002024-10-01` (ISO 8601 expanded year) is a date.
    let groups: Vec<usize> = cand[prefix..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .map(str::len)
        .collect();
    if cand.contains('-') && groups.len() >= 3 && groups[0] >= 4 && groups[1] == 2 && groups[2] == 2
    {
        return None;
    }
    Some((s, e))
}

fn validate_phone_nanp(text: &str, caps: &Captures<'_>) -> Option<(usize, usize)> {
    let (s, e) = span(caps, 0)?;
    let area = caps.get(1).or_else(|| caps.get(2))?.as_str();
    let exchange = group_str(caps, 4);
    let plausible = |g: &str| {
        g.as_bytes()
            .first()
            .is_some_and(|b| (b'2'..=b'9').contains(b))
    };
    if !plausible(area) || !plausible(exchange) {
        return None;
    }
    // Without parentheses both separators must agree (`415-555-2671`), and
    // must not be spaces: `512 768 1024` is a list of numbers.
    let sep = group_str(caps, 3);
    if caps.get(2).is_some() && (sep != group_str(caps, 5) || sep == " ") {
        return None;
    }
    standalone(text, s, e, PHONE_JOINERS).then_some((s, e))
}

fn validate_phone_trunk(text: &str, caps: &Captures<'_>) -> Option<(usize, usize)> {
    let (s, e) = span(caps, 0)?;
    let digits = text[s..e].bytes().filter(u8::is_ascii_digit).count();
    let second = group_str(caps, 2);
    if !(9..=12).contains(&digits) || (!second.is_empty() && second != group_str(caps, 1)) {
        return None;
    }
    standalone(text, s, e, PHONE_JOINERS).then_some((s, e))
}

fn validate_phone_pairs(text: &str, caps: &Captures<'_>) -> Option<(usize, usize)> {
    let (s, e) = span(caps, 0)?;
    let sep = group_str(caps, 1);
    if (2..=4).any(|g| group_str(caps, g) != sep) {
        return None;
    }
    // `01 02 03 04 05`, `01.02.03.04.05` are sequences, not numbers.
    let zero_led = text[s + 2..e]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| p.starts_with('0'))
        .count();
    if zero_led > 2 {
        return None;
    }
    standalone(text, s, e, PHONE_JOINERS).then_some((s, e))
}

// ---------------------------------------------------------------------------
// Payment card
// ---------------------------------------------------------------------------

fn validate_card(text: &str, caps: &Captures<'_>) -> Option<(usize, usize)> {
    let (s, e) = span(caps, 0)?;
    // Grouped candidates may have swallowed a trailing unrelated group; also
    // try ending at each earlier separator (longest first).
    let separators = text[s..e]
        .char_indices()
        .rev()
        .filter(|&(_, c)| c == ' ' || c == '-')
        .map(|(i, _)| s + i);
    std::iter::once(e)
        .chain(separators)
        .find(|&end| standalone(text, s, end, &['.', '-']) && card_ok(&text[s..end]))
        .map(|end| (s, end))
}

fn card_ok(cand: &str) -> bool {
    let mut digits = Vec::with_capacity(19);
    let mut sep = None;
    for b in cand.bytes() {
        if b.is_ascii_digit() {
            digits.push(b - b'0');
        } else {
            match sep {
                None => sep = Some(b),
                Some(x) if x != b => return false,
                Some(_) => {}
            }
        }
    }
    (13..=19).contains(&digits.len()) && iin_ok(&digits) && luhn_ok(&digits)
}

/// Plausible issuer prefix and length for the major networks.
fn iin_ok(d: &[u8]) -> bool {
    let prefix = |k: usize| d[..k].iter().fold(0u32, |acc, &x| acc * 10 + u32::from(x));
    let len = d.len();
    match d[0] {
        // Visa
        4 => matches!(len, 13 | 16 | 19),
        // Mastercard 51–55; Maestro 50, 56–59
        5 => {
            let p2 = prefix(2);
            ((51..=55).contains(&p2) && len == 16) || p2 == 50 || (56..=59).contains(&p2)
        }
        // Mastercard 2-series
        2 => (2221..=2720).contains(&prefix(4)) && len == 16,
        // Amex, JCB, Diners
        3 => {
            let p2 = prefix(2);
            ((p2 == 34 || p2 == 37) && len == 15)
                || ((3528..=3589).contains(&prefix(4)) && len >= 16)
                || (((300..=305).contains(&prefix(3)) || p2 == 36 || p2 == 38 || p2 == 39)
                    && len >= 14)
        }
        // Discover, UnionPay, Maestro 6x
        6 => true,
        _ => false,
    }
}

fn luhn_ok(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

// ---------------------------------------------------------------------------
// IBAN
// ---------------------------------------------------------------------------

/// IBAN length per country (SWIFT IBAN registry).
fn iban_length(country: &str) -> Option<usize> {
    let len = match country {
        "NO" => 15,
        "BE" => 16,
        "DK" | "FI" | "FK" | "FO" | "GL" | "NL" | "SD" => 18,
        "MK" | "SI" => 19,
        "AT" | "BA" | "EE" | "KZ" | "LT" | "LU" | "MN" | "XK" => 20,
        "CH" | "HR" | "LI" | "LV" => 21,
        "BG" | "BH" | "CR" | "DE" | "GB" | "GE" | "IE" | "ME" | "RS" | "VA" => 22,
        "AE" | "GI" | "IL" | "IQ" | "OM" | "SO" | "TL" => 23,
        "AD" | "CZ" | "ES" | "MD" | "PK" | "RO" | "SA" | "SE" | "SK" | "TN" | "VG" => 24,
        "LY" | "PT" | "ST" => 25,
        "IS" | "TR" => 26,
        "BI" | "DJ" | "FR" | "GR" | "IT" | "MC" | "MR" | "SM" => 27,
        "AL" | "AZ" | "BY" | "CY" | "DO" | "GT" | "HN" | "HU" | "LB" | "NI" | "PL" | "SV" => 28,
        "BR" | "EG" | "PS" | "QA" | "UA" => 29,
        "JO" | "KW" | "MU" | "YE" => 30,
        "MT" | "SC" => 31,
        "LC" => 32,
        "RU" => 33,
        _ => return None,
    };
    Some(len)
}

fn validate_iban(text: &str, caps: &Captures<'_>) -> Option<(usize, usize)> {
    let (s, e) = span(caps, 0)?;
    let cand = &text[s..e];
    let expected = iban_length(cand.get(..2)?)?;
    let mut compact = String::with_capacity(expected);
    let mut end = None;
    for (i, c) in cand.char_indices() {
        if c == ' ' {
            continue;
        }
        compact.push(c);
        if compact.len() == expected {
            end = Some(s + i + c.len_utf8());
            break;
        }
    }
    let end = end?;
    (standalone(text, s, end, &[]) && iban_checksum_ok(&compact)).then_some((s, end))
}

/// ISO 13616 / ISO 7064 mod-97-10.
fn iban_checksum_ok(iban: &str) -> bool {
    let b = iban.as_bytes();
    if b.len() < 5 {
        return false;
    }
    let mut rem: u32 = 0;
    for &c in b[4..].iter().chain(&b[..4]) {
        rem = match c {
            b'0'..=b'9' => (rem * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => (rem * 100 + u32::from(c - b'A') + 10) % 97,
            _ => return false,
        };
    }
    rem == 1
}

// ---------------------------------------------------------------------------
// SSN
// ---------------------------------------------------------------------------

fn validate_ssn(text: &str, caps: &Captures<'_>) -> Option<(usize, usize)> {
    let (s, e) = span(caps, 0)?;
    if group_str(caps, 2) != group_str(caps, 4) {
        return None;
    }
    let area: u32 = group_str(caps, 1).parse().ok()?;
    let group = group_str(caps, 3);
    let serial = group_str(caps, 5);
    if area == 0 || area == 666 || area >= 900 || group == "00" || serial == "0000" {
        return None;
    }
    standalone(text, s, e, &['.', '-']).then_some((s, e))
}

// ---------------------------------------------------------------------------
// IP addresses
// ---------------------------------------------------------------------------

fn validate_ipv4(text: &str, caps: &Captures<'_>) -> Option<(usize, usize)> {
    let (s, e) = span(caps, 0)?;
    let mut octets = [0u16; 4];
    for (slot, part) in octets.iter_mut().zip(text[s..e].split('.')) {
        if part.len() > 1 && part.starts_with('0') {
            return None;
        }
        *slot = part.parse().ok()?;
        if *slot > 255 {
            return None;
        }
    }
    // Part of a longer dotted sequence (`1.2.3.4.5`, OIDs) or a word.
    if char_before(text, s).is_some_and(|c| is_word(c) || c == '.') {
        return None;
    }
    let mut after = text[e..].chars();
    match after.next() {
        Some(c) if is_word(c) || c == '+' => return None,
        Some('.') if after.next().is_some_and(|c| c.is_ascii_digit()) => return None,
        // `1.2.3.4-beta`
        Some('-') if after.next().is_some_and(char::is_alphabetic) => return None,
        _ => {}
    }
    if version_context(&text[..s]) {
        return None;
    }
    // Loopback, unspecified and broadcast never identify anybody.
    if octets[0] == 127 || octets == [0; 4] || octets == [255; 4] {
        return None;
    }
    Some((s, e))
}

/// `Version=4.0.0.0`, `version 1.2.3.4`, `Chrome/120.0.0.0` (product token).
fn version_context(before: &str) -> bool {
    if let Some(product) = before.strip_suffix('/') {
        let token: String = product
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .collect();
        if token.chars().last().is_some_and(|c| c.is_ascii_uppercase()) {
            return true;
        }
    }
    let trimmed = before.trim_end_matches([' ', '=', ':']);
    let word: String = trimmed
        .chars()
        .rev()
        .take_while(char::is_ascii_alphabetic)
        .collect::<String>()
        .to_ascii_lowercase();
    // `word` is reversed.
    matches!(
        word.as_str(),
        "noisrev" | "rev" | "esaeler" | "dliub" | "erawmrif"
    )
}

fn validate_ipv6(text: &str, caps: &Captures<'_>) -> Option<(usize, usize)> {
    let (s, e) = span(caps, 0)?;
    let cand = &text[s..e];
    let (addr, end) = match cand.find('%') {
        Some(i) => {
            let zone = cand[i..].trim_end_matches(['.', '-']);
            (&cand[..i], s + i + zone.len())
        }
        None => {
            let mut addr = cand.trim_end_matches('.');
            if addr.ends_with(':') && !addr.ends_with("::") {
                addr = &addr[..addr.len() - 1];
            }
            (addr, s + addr.len())
        }
    };
    if char_before(text, s).is_some_and(|c| is_word(c) || c == ':' || c == '.')
        || char_after(text, end).is_some_and(is_word)
    {
        return None;
    }
    if addr.matches(':').count() < 2 || !addr.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    let ip: Ipv6Addr = addr.parse().ok()?;
    if ip.is_unspecified()
        || ip.is_loopback()
        || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
    {
        return None;
    }
    // Real addresses have a full 4-digit group (`2001:`, `fe80:`) or an
    // embedded IPv4; rejects slices like `a[1::2]` and `a:b:c:d:e:f:1:2`.
    if !addr.contains('.') && !addr.split(':').any(|g| g.len() == 4) {
        return None;
    }
    Some((s, end))
}

// ---------------------------------------------------------------------------
// Tokens and keys
// ---------------------------------------------------------------------------

/// Random-looking: letters mixed with digits, or heavy mixed case (base64).
fn looks_like_secret(value: &str) -> bool {
    let v = value.trim_end_matches('=');
    if v.len() < 8 {
        return false;
    }
    let digit = v.bytes().any(|b| b.is_ascii_digit());
    let alpha = v.bytes().any(|b| b.is_ascii_alphabetic());
    let upper = v.bytes().skip(1).filter(u8::is_ascii_uppercase).count();
    let lower = v.bytes().filter(u8::is_ascii_lowercase).count();
    (digit && alpha) || (upper >= 3 && lower >= 3)
}

fn validate_token(_text: &str, caps: &Captures<'_>) -> Option<(usize, usize)> {
    let m = caps.get(1)?;
    let token = m.as_str().trim_end_matches('.');
    looks_like_secret(token).then_some((m.start(), m.start() + token.len()))
}

/// A JWT not glued to a preceding token character.
fn validate_jwt(text: &str, caps: &Captures<'_>) -> Option<(usize, usize)> {
    let (s, e) = span(caps, 0)?;
    let glued =
        char_before(text, s).is_some_and(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-');
    (!glued).then_some((s, e))
}

fn validate_key_prefix(text: &str, caps: &Captures<'_>) -> Option<(usize, usize)> {
    let (s, e) = span(caps, 0)?;
    let key = &text[s..e];
    if char_before(text, s).is_some_and(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let next = char_after(text, e);
    let ok = if let Some(body) = key.strip_prefix("sk-") {
        body.bytes().any(|b| b.is_ascii_digit())
    } else if key.starts_with("AKIA") || key.starts_with("ASIA") {
        !next.is_some_and(|c| c.is_ascii_alphanumeric())
    } else if key.starts_with("AIza") {
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    } else {
        true
    };
    ok.then_some((s, e))
}

/// Values that are obviously not secrets.
const NON_SECRET_VALUES: &[&str] = &[
    "undefined",
    "redacted",
    "filtered",
    "placeholder",
    "not_set",
];

fn validate_key_assignment(text: &str, caps: &Captures<'_>) -> Option<(usize, usize)> {
    let keyword = caps.get(1)?;
    if char_before(text, keyword.start()).is_some_and(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let value = caps.get(4)?;
    let v = value.as_str();
    let first = v.chars().next()?;
    if v.chars().all(|c| c == first)
        || v.starts_with(['$', '%', '*'])
        || NON_SECRET_VALUES.iter().any(|w| v.eq_ignore_ascii_case(w))
        || !v.chars().any(char::is_alphanumeric)
    {
        return None;
    }
    let unquoted = group_str(caps, 3).is_empty();
    // `Invalid token: expected 3 segments` — an unquoted colon is prose
    // unless the value looks random.
    if unquoted && group_str(caps, 2) == ":" && !looks_like_secret(v) {
        return None;
    }
    // Source code in stack traces: `Client(api_key=settings.api_key)`.
    if unquoted && looks_like_code_reference(v, keyword.as_str()) {
        return None;
    }
    Some((value.start(), value.end()))
}

/// A digit-free identifier path (`self.password`, `os.environ`) or a value
/// naming the key itself (`api_key_value`).
fn looks_like_code_reference(value: &str, keyword: &str) -> bool {
    if value.bytes().any(|b| b.is_ascii_digit()) {
        return false;
    }
    let dotted_path = value.contains('.')
        && value
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_'));
    let names_key = value
        .to_ascii_lowercase()
        .contains(&keyword.to_ascii_lowercase());
    dotted_path || names_key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det() -> PiiDetector {
        PiiDetector::all()
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in PiiKind::ALL {
            assert_eq!(PiiKind::from_name(kind.as_str()), Some(kind));
            assert!(kind.placeholder().starts_with('[') && kind.placeholder().ends_with(']'));
        }
        assert_eq!(PiiKind::from_name("nope"), None);
        for kind in PiiKind::ALL {
            assert!(PRIORITY.contains(&kind), "{kind:?} missing from PRIORITY");
        }
        assert_eq!(PiiKind::from_name("Email"), None);
        let mut names: Vec<_> = PiiKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PiiKind::ALL.len());
        assert_eq!(PiiKind::BearerToken.placeholder(), "[token]");
        assert_eq!(PiiKind::UrlCredentials.placeholder(), "[credentials]");
    }

    #[test]
    fn positives_are_detected() {
        let long_sk = format!("sk-{}", "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5hJ7kL9mN1pQ3");
        let ghp = format!("ghp_{}", "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8");
        let cases: Vec<(&str, PiiKind)> = vec![
            // email
            ("contact a.b+c@sub.example.co.uk now", PiiKind::Email),
            ("user john.doe@example.com failed", PiiKind::Email),
            ("<JANE_DOE@EXAMPLE.ORG>", PiiKind::Email),
            ("git@github.com:org/repo.git", PiiKind::Email),
            ("mailto:x_y-z%1@mail.example.io.", PiiKind::Email),
            ("GET /invite?email=jane%40example.com&x=1", PiiKind::Email),
            // phone
            ("+14155552671", PiiKind::Phone),
            ("call +44 20 7946 0958", PiiKind::Phone),
            ("+49-30-1234567", PiiKind::Phone),
            ("tel:+1 (415) 555-2671", PiiKind::Phone),
            ("(415) 555-2671", PiiKind::Phone),
            ("415-555-2671", PiiKind::Phone),
            ("415.555.2671", PiiKind::Phone),
            ("(415) 555 2671", PiiKind::Phone),
            ("1-800-555-0199", PiiKind::Phone),
            ("020 7946 0958", PiiKind::Phone),
            ("030-1234567", PiiKind::Phone),
            ("mobile 07700 900123", PiiKind::Phone),
            ("01 23 45 67 89", PiiKind::Phone),
            ("+44 (0)20 7946 0958", PiiKind::Phone),
            // card
            ("4111111111111111", PiiKind::Card),
            ("card 4111 1111 1111 1111, exp 12/27", PiiKind::Card),
            ("4111-1111-1111-1111", PiiKind::Card),
            ("5555555555554444", PiiKind::Card),
            ("2223003122003222", PiiKind::Card),
            ("378282246310005", PiiKind::Card),
            ("3782 822463 10005", PiiKind::Card),
            ("6011111111111117", PiiKind::Card),
            ("3530111333300000", PiiKind::Card),
            ("30569309025904", PiiKind::Card),
            ("6200000000000005", PiiKind::Card),
            ("4222222222222", PiiKind::Card),
            ("pan=4000056655665556;", PiiKind::Card),
            // iban
            ("GB82 WEST 1234 5698 7654 32", PiiKind::Iban),
            ("DE89370400440532013000", PiiKind::Iban),
            ("DE89 3704 0044 0532 0130 00", PiiKind::Iban),
            ("iban=FR1420041010050500013M02606", PiiKind::Iban),
            ("NL91ABNA0417164300", PiiKind::Iban),
            ("BE68 5390 0754 7034 received", PiiKind::Iban),
            ("CH9300762011623852957", PiiKind::Iban),
            // ssn
            ("123-45-6789", PiiKind::Ssn),
            ("ssn: 078 05 1120", PiiKind::Ssn),
            // ip
            ("10.0.0.7", PiiKind::Ip),
            ("connect to 192.168.1.20:5432 failed", PiiKind::Ip),
            ("GET /hosts/10.0.0.7/status", PiiKind::Ip),
            ("ssh root@10.0.0.7", PiiKind::Ip),
            ("2001:db8::1", PiiKind::Ip),
            ("::ffff:10.0.0.1", PiiKind::Ip),
            ("fe80::1%eth0", PiiKind::Ip),
            ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", PiiKind::Ip),
            ("http://[2001:db8::42]:8080/", PiiKind::Ip),
            ("peer fe80::1ff:fe23:4567:890a.", PiiKind::Ip),
            // bearer
            (
                "Authorization: Bearer abcDEF123456ghiJKL",
                PiiKind::BearerToken,
            ),
            ("bearer 0123456789abcdef", PiiKind::BearerToken),
            (
                "Authorization: Basic dXNlcjpwYXNzd29yZA==",
                PiiKind::BearerToken,
            ),
            ("authorization=Token 9f8e7d6c5b4a", PiiKind::BearerToken),
            (
                r#"{"Authorization": "Bearer t0k3n.v4lu3_x"}"#,
                PiiKind::BearerToken,
            ),
            // jwt
            (
                "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
                PiiKind::Jwt,
            ),
            (
                "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
                PiiKind::Jwt,
            ),
            // api keys
            (&long_sk, PiiKind::ApiKey),
            ("key sk-proj-abc123DEF456ghi789JKL012", PiiKind::ApiKey),
            ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", PiiKind::ApiKey),
            ("sk_test_4eC39HqLyjWDarjtT1zdp7dc", PiiKind::ApiKey),
            ("rk_live_51H8abcdEFGH1234", PiiKind::ApiKey),
            (&ghp, PiiKind::ApiKey),
            (
                "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
                PiiKind::ApiKey,
            ),
            ("xoxb-1234567890-abcdefghij", PiiKind::ApiKey),
            ("AKIAIOSFODNN7EXAMPLE", PiiKind::ApiKey),
            ("AIzaSyA1234567890abcdefghijklmnopqrstuv", PiiKind::ApiKey),
            ("glpat-xxxxxxxxxxxxxxxxxxxx", PiiKind::ApiKey),
            ("api_key=abcd1234efgh", PiiKind::ApiKey),
            (r#"apikey: "zyxwvut9876""#, PiiKind::ApiKey),
            ("secret=hunter2hunter2", PiiKind::ApiKey),
            ("DB_PASSWORD=correcthorse", PiiKind::ApiKey),
            ("GET /cb?token=abc123def456&x=1", PiiKind::ApiKey),
            (r#"{"password": "p4ssw0rd!"}"#, PiiKind::ApiKey),
            ("X-Api-Key: 8f14e45fceea167a", PiiKind::ApiKey),
            // private key
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
                PiiKind::PrivateKey,
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqh",
                PiiKind::PrivateKey,
            ),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXk\\n-----END OPENSSH PRIVATE KEY-----",
                PiiKind::PrivateKey,
            ),
            // url credentials
            (
                "postgres://admin:s3cret@db.internal:5432/app",
                PiiKind::UrlCredentials,
            ),
            (
                "https://user:pa55@example.com/path",
                PiiKind::UrlCredentials,
            ),
            ("redis://:hunter2@cache:6379", PiiKind::UrlCredentials),
        ];
        let d = det();
        for (text, kind) in cases {
            assert_eq!(d.detect(text), Some(kind), "expected {kind:?} in {text:?}");
            let (scrubbed, kinds) = d.scrub(text).expect("scrub finds it");
            assert!(kinds.contains(&kind), "{text:?} -> {kinds:?}");
            assert!(
                scrubbed.contains(kind.placeholder()),
                "{text:?} -> {scrubbed:?}"
            );
        }
    }

    #[test]
    fn negatives_stay_clean() {
        let cases = [
            // versions
            "1.2.3",
            "v10.4.2",
            "2.0.0-rc.1",
            "2024.10.1-beta.2",
            "1.2.3.4.5",
            "v1.2.3.4",
            "1.2.3.4-beta",
            "192.168.1",
            "999.1.1.1",
            "build 10.0.19045.2965",
            "System.Runtime, Version=4.0.0.0, Culture=neutral",
            "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0.0.0 Safari/537.36",
            // ids and hashes
            "550e8400-e29b-41d4-a716-446655440000",
            "12345678-1234-1234-1234-123456789012",
            "d41d8cd98f00b204e9800998ecf8427e",
            "da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "a3f9c2e1b7d44e0fa1c2b3d4e5f60718",
            "java.lang.Object@1b6d3586",
            "0x7ffee3b1c2a0",
            "Order #12345678",
            "ISBN 978-3-16-148410-0",
            // times and numbers
            "1700000000000",
            "1700000000",
            "1700000000000000000",
            "2024-10-01T12:30:45Z",
            "2024-10-01T12:30:45.123+02:00",
            "2024-10-01",
            "10/01/2024",
            "20241001",
            "12:30:45",
            "elapsed 00:01:23.456",
            "Timeout after 3021 ms",
            "duration=1.5s",
            "port 8080",
            "localhost:8080",
            "Error code 404",
            "ratio 0.75",
            "price 19.99 USD",
            "x=1.0e+10",
            "lat 37.7749 lon -122.4194",
            "pid 12345 tid 67890",
            "bytes 1234567890",
            "count: 123456789012",
            "user_id=42",
            "max_tokens=4096",
            "token_count=12345678",
            // stack frames and paths
            r#"File "/usr/lib/python3.11/site-packages/x.py", line 42, in run"#,
            "at Object.<anonymous> (/app/index.js:10:15)",
            "at com.example.Foo.bar(Foo.java:123)",
            "std::vector<int>::push_back",
            "arr[1::2]",
            "00:1a:2b:3c:4d:5e",
            // model ids, packages
            "gpt-4o-mini-2024-07-18",
            "claude-3-5-sonnet-20241022",
            "eleven_turbo_v2_5",
            "npm:@scope/pkg@1.2.3",
            "@decorator",
            "user@localhost",
            "icon@2x.png",
            "react-dom@18.2.0.production.min.js",
            "task-runner-queue-depth-threshold",
            // non-PII network addresses
            "connect ECONNREFUSED 127.0.0.1:5432",
            "listening on 0.0.0.0:8080",
            "bind [::1]:9000",
            // invalid checksums / ranges
            "4111111111111112",
            "4111 1111 1111 1112",
            "1234567812345678",
            "GB82 WEST 1234 5698 7654 33",
            "DE89370400440532013001",
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "123-00-4567",
            "123-45-0000",
            "123-45 6789",
            // prose that mentions secrets
            "Invalid token: expected 3 segments",
            "password: must be at least 8 chars",
            "token=undefined",
            "password=********",
            "the bearer tokens expired",
            "Authorization: required",
            "ssh://git@github",
            // misc telemetry noise
            "frame 01.02.03.04.05",
            "test 01 02 03 04 05",
            "a:b:c:d:e:f:1:2",
            "1:2:3:4:5:6:7:8",
            "arn:aws:iam::123456789012:role/Admin",
            "Foo::Bar::Baz",
            "crate::module::fn_123",
            "at <anonymous>:1:23",
            "10:00:00-05:00",
            "macOS 14.4.1 (23E224)",
            "1920x1080",
            "dims 512 768 1024",
            "commit 4b825dc642cb6eb9a060e54bf8d69288fbee4904",
            "sentry trace 4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "E0101 12:30:45.123456   12345 server.go:123] error",
            "uint64 max 18446744073709551615",
            "int64 min -9223372036854775808",
            "kafka offset 123456789012345",
            "ts=1718000000.123456",
            "SELECT * FROM t WHERE id IN (123456, 234567, 345678)",
            "Linux 6.5.0-1015-azure #15-Ubuntu SMP x86_64",
            "nvidia driver 535.104.05",
            "Dalvik/2.1.0 (Linux; U; Android 13; SM-S911B Build/TP1A.220624.014)",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0.6367.91 Edg/124.0.2478.67",
            "cpu: Intel(R) Core(TM) i7-10750H CPU @ 2.60GHz",
            "docker pull ghcr.io/org/image@sha256:abcdef0123456789abcdef0123456789abcdef01",
            "AuthenticationError: Incorrect API key provided: sk-proj-****abcd",
            "Authorization: Bearer ${TOKEN}",
            "api_key: ${API_KEY}",
            "secret_key_base is missing",
            "password_reset_token_sent",
            "    client = OpenAI(api_key=settings.OPENAI_API_KEY)",
            "connect(password=self.db_password)",
            "token=refresh_token_value",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
        ];
        let d = det();
        for text in cases {
            assert_eq!(d.detect(text), None, "false positive in {text:?}");
            assert_eq!(d.scrub(text), None, "false positive in {text:?}");
        }
    }

    #[test]
    fn validated_kinds_reject_single_digit_changes() {
        let d = det();
        let pairs = [
            ("4111111111111111", "4111111111111121"),
            ("378282246310005", "378282246310006"),
            ("GB82WEST12345698765432", "GB82WEST12345698765433"),
            ("DE89370400440532013000", "DE89370400440532013010"),
            ("NL91ABNA0417164300", "NL91ABNA0417164301"),
        ];
        for (valid, invalid) in pairs {
            assert!(d.detect(valid).is_some(), "{valid}");
            assert_eq!(d.detect(invalid), None, "{invalid}");
        }
    }

    #[test]
    fn exact_scrub_outputs() {
        let cases = [
            (
                "https://user:p4ss@api.example.com/v1?q=1",
                "https://[credentials]@api.example.com/v1?q=1",
            ),
            (
                "https://john.doe@example.com:secret@host.example.net/x",
                "https://[credentials]@host.example.net/x",
            ),
            (
                "mail jane@example.com, jane@example.com",
                "mail [email], [email]",
            ),
            (
                "Authorization: Bearer abcDEF123456ghiJKL.",
                "Authorization: Bearer [token].",
            ),
            (
                "password=hunter2hunter2&user=bob",
                "password=[api_key]&user=bob",
            ),
            ("card 1234 4111 1111 1111 1111 end", "card 1234 [card] end"),
            ("call +1 415 555 2671 now", "call [phone] now"),
            ("addr [2001:db8::42]:8080", "addr [[ip]]:8080"),
            ("from 10.0.0.7:443.", "from [ip]:443."),
            (
                "key:\n-----BEGIN EC PRIVATE KEY-----\nABC\n-----END EC PRIVATE KEY-----\ndone",
                "key:\n[private_key]\ndone",
            ),
            (
                "trunc -----BEGIN PRIVATE KEY-----\nMIIE",
                "trunc [private_key]",
            ),
            (
                "Ünïcødé 😀 jane@example.com 😀 +44 20 7946 0958",
                "Ünïcødé 😀 [email] 😀 [phone]",
            ),
        ];
        let d = det();
        for (input, expected) in cases {
            let (out, _) = d.scrub(input).expect("has pii");
            assert_eq!(out, expected, "input {input:?}");
        }
    }

    #[test]
    fn scrubs_realistic_message() {
        let input = concat!(
            "POST https://admin:s3cr3t@api.example.com/v1/users failed for jane.doe@example.org ",
            "from 10.0.0.7 (Authorization: Bearer abcDEF123456ghiJKL) card 4111 1111 1111 1111, ",
            "call +1 415 555 2671, ssn 123-45-6789, iban DE89370400440532013000\n",
            "Traceback (most recent call last):\n",
            "  File \"/usr/lib/python3.11/site-packages/x.py\", line 42, in run\n",
            "    client = Client(api_key=sk_live_4eC39HqLyjWDarjtT1zdp7dc)\n",
            "RuntimeError: upstream 2001:db8::1 timeout after 3021 ms (v1.2.3, gpt-4o-mini-2024-07-18)"
        );
        let expected = concat!(
            "POST https://[credentials]@api.example.com/v1/users failed for [email] ",
            "from [ip] (Authorization: Bearer [token]) card [card], ",
            "call [phone], ssn [ssn], iban [iban]\n",
            "Traceback (most recent call last):\n",
            "  File \"/usr/lib/python3.11/site-packages/x.py\", line 42, in run\n",
            "    client = Client(api_key=[api_key])\n",
            "RuntimeError: upstream [ip] timeout after 3021 ms (v1.2.3, gpt-4o-mini-2024-07-18)"
        );
        let d = det();
        let (out, kinds) = d.scrub(input).expect("has pii");
        assert_eq!(out, expected);
        assert_eq!(
            kinds,
            vec![
                PiiKind::UrlCredentials,
                PiiKind::Email,
                PiiKind::Ip,
                PiiKind::BearerToken,
                PiiKind::Card,
                PiiKind::Phone,
                PiiKind::Ssn,
                PiiKind::Iban,
                PiiKind::ApiKey,
            ]
        );
        assert_eq!(d.detect(input), Some(PiiKind::UrlCredentials));
        // Scrubbed output is stable: placeholders are never re-detected.
        assert_eq!(d.scrub(&out), None);
    }

    #[test]
    fn placeholders_are_clean() {
        let d = det();
        for kind in PiiKind::ALL {
            let text = format!(
                "value {} and password={}",
                kind.placeholder(),
                kind.placeholder()
            );
            assert_eq!(d.scrub(&text), None, "{text}");
        }
    }

    #[test]
    fn disabled_detectors_are_skipped() {
        let text = "jane@example.com +44 20 7946 0958";
        let only_email = PiiDetector::new(&[PiiKind::Email]);
        let (out, kinds) = only_email.scrub(text).expect("email");
        assert_eq!(out, "[email] +44 20 7946 0958");
        assert_eq!(kinds, vec![PiiKind::Email]);
        let only_phone = PiiDetector::new(&[PiiKind::Phone]);
        assert_eq!(only_phone.detect(text), Some(PiiKind::Phone));
        let none = PiiDetector::new(&[]);
        assert_eq!(none.detect(text), None);
        assert_eq!(none.scrub(text), None);
        assert_eq!(PiiDetector::default().detect(text), Some(PiiKind::Email));
    }

    #[test]
    fn overlap_prefers_earliest_then_longest() {
        let found = resolve(vec![
            Found {
                kind: PiiKind::Ip,
                start: 5,
                end: 9,
            },
            Found {
                kind: PiiKind::Phone,
                start: 0,
                end: 6,
            },
            Found {
                kind: PiiKind::Card,
                start: 0,
                end: 8,
            },
            Found {
                kind: PiiKind::Email,
                start: 7,
                end: 12,
            },
            Found {
                kind: PiiKind::Ssn,
                start: 12,
                end: 14,
            },
        ]);
        let kinds: Vec<_> = found.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, vec![PiiKind::Card, PiiKind::Ssn]);
        // Same range: the more specific detector wins.
        let tie = resolve(vec![
            Found {
                kind: PiiKind::BearerToken,
                start: 0,
                end: 10,
            },
            Found {
                kind: PiiKind::Jwt,
                start: 0,
                end: 10,
            },
        ]);
        assert_eq!(tie[0].kind, PiiKind::Jwt);
    }

    #[test]
    fn uuids_are_identifiers_whatever_their_digit_groups() {
        let d = det();
        for id in [
            "abcdef01-0123-4567-8901-23456789abcd",
            "41111111-1111-1111-1111-111111111111",
            "00000000-0000-0000-0000-000000000000",
        ] {
            assert_eq!(d.detect(id), None, "{id}");
        }
        // Not a UUID: the same digits as a phone number are still one.
        assert_eq!(d.detect("call 0123-4567-8901"), Some(PiiKind::Phone));
    }

    #[test]
    fn separator_free_text_holds_a_card_only_as_a_whole() {
        let d = det();
        assert_eq!(d.detect("4111111111111111"), Some(PiiKind::Card));
        assert_eq!(d.detect("00000000000000000005eed00000a1b2"), None);
        assert_eq!(d.detect("run_4111111111111111"), None);
    }

    #[test]
    fn international_prefix_00_is_a_phone_number() {
        let d = det();
        for phone in [
            "0044 20 7946 0958",
            "call 0044 20 7946 0958 now",
            "0049 30 1234567",
            "0049-30-1234-5678",
            "0033 1 23 45 67 89",
            "001 415 555 2671",
            "0044 (0)20 7946 0958",
        ] {
            assert_eq!(d.detect(phone), Some(PiiKind::Phone), "{phone}");
        }
        let (out, _) = d.scrub("from 0044 20 7946 0958.").unwrap();
        assert_eq!(out, "from [phone].");
    }

    #[test]
    fn numeric_look_alikes_of_00_numbers_are_not_phones() {
        let d = det();
        for text in [
            "00:12:34",
            "00:00:01.250",
            "elapsed 00:01:23",
            "T00:15:30Z",
            "2024-10-01T00:15:30.123Z",
            "2024-10-01 00:15:30",
            "v0.0.12",
            "0012.3.4",
            "00123.45.67.89",
            "build 0042",
            "00001234567890",
            "0044207946095",
            "duration 00 12 34",
            "took 00 h 12 m 34 s",
            "offset 0012 ms",
            "1700000000000",
            "version 10.0.19045",
        ] {
            assert_eq!(d.detect(text), None, "{text}");
        }
    }

    /// A seeded million random 16-hex ids, as SDKs make session and run ids: none is a card in
    /// an identifier, although as free text some are.
    #[test]
    fn random_hex_ids_are_never_cards_in_identifiers() {
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let d = det();
        let mut card_shaped = 0;
        for _ in 0..1_000_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let id = format!("{state:016x}");
            assert_eq!(d.detect_in_identifier(&id), None, "{id}");
            if id.bytes().all(|b| b.is_ascii_digit()) && d.detect(&id).is_some() {
                card_shaped += 1;
            }
        }
        // The generator does make the look-alikes that were lost before.
        assert!(card_shaped >= 5, "{card_shaped} card-shaped ids");
    }

    #[test]
    fn cards_in_identifiers_still_show_by_their_shape() {
        let d = det();
        for card in [
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "5555-5555-5555-4444",
            "3782 822463 10005",
            "378282246310005",
            "4222222222222",
            "4111111111111111110",
            "6011 0009 9013 9424",
            "card 4111 1111 1111 1111",
        ] {
            assert_eq!(d.detect_in_identifier(card), Some(PiiKind::Card), "{card}");
        }
        // Bare 16 digits: an id here, a card in free text.
        for bare in ["4111111111111111", "5555555555554444", "6011000990139424"] {
            assert_eq!(d.detect_in_identifier(bare), None, "{bare}");
            assert_eq!(d.detect(bare), Some(PiiKind::Card), "{bare}");
        }
        // Other PII in an id is found as anywhere else.
        assert_eq!(
            d.detect_in_identifier("jane@example.com"),
            Some(PiiKind::Email)
        );
        assert_eq!(
            d.detect_in_identifier("+44 20 7946 0958"),
            Some(PiiKind::Phone)
        );
    }

    #[test]
    fn detect_on_many_clean_short_strings() {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let d = det();
        for i in 0..1000u64 {
            let r = next();
            let text = match i % 12 {
                0 => format!("checkout_step_{i}"),
                1 => format!("v{}.{}.{}", r % 20, (r >> 8) % 50, (r >> 16) % 100),
                2 => format!("Timeout after {} ms", r % 100_000),
                3 => format!("{:016x}{:016x}", r, next()),
                4 => {
                    let h = format!("{:016x}{:016x}", r, next());
                    format!(
                        "{}-{}-{}-{}-{}",
                        &h[..8],
                        &h[8..12],
                        &h[12..16],
                        &h[16..20],
                        &h[20..]
                    )
                }
                5 => format!("{}", 1_700_000_000_000 + r % 10_000_000_000),
                6 => format!("at handler (/app/src/mod{i}.js:{}:{})", r % 500, r % 80),
                7 => format!("ratio {:.3}", (r % 1000) as f64 / 1000.0),
                8 => format!("port {}", r % 65536),
                9 => format!("gpt-4o-mini-2024-07-{:02}", r % 28 + 1),
                10 => format!(
                    "2024-10-{:02}T12:{:02}:{:02}Z",
                    r % 28 + 1,
                    r % 60,
                    (r >> 8) % 60
                ),
                _ => format!("user_id={}", r % 1_000_000),
            };
            assert_eq!(d.detect(&text), None, "false positive in {text:?}");
        }
    }
}
