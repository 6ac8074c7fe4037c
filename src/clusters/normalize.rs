//! Message normalisation ("parameterisation") for fingerprints and titles: keeps the first two
//! non-blank lines and replaces variable parts (emails, URLs, IPs, UUIDs, hashes, dates and
//! times, durations, hex, floats, ints, quoted values after `=`) with placeholders.
//!
//! The passes run in the order of Sentry's message parameterisation (email, url, ip, uuid,
//! sha1, md5, date, duration, hex, float, int, quoted_str, bool). Sentry joins its patterns
//! into one alternation; here each pass is its own compiled regex applied in order, so an
//! earlier pass wins over any overlapping later one. Rust's `regex` has no look-around, so the
//! few patterns that need it (IPv6 boundaries, `(?<!\d)` before clock times, `(?<==)` before
//! quoted values, `-` as a minus sign only after a non-word character) are a plain regex plus an
//! `accept` check on the match. Deliberate differences from Sentry, all towards fewer false
//! positives: an email needs a dotted domain (so Java's `Object@1b6d3586` is `<hex>`, not
//! `<email>`), a URL ends before a quote or `)`, IPv6 candidates must parse as `Ipv6Addr`, durations
//! also accept `ns`/`us`/`µs`/`m`/`min`/`h`, IPv6 needs a digit, and no `<hostname>` pass (it would rewrite file
//! names such as `main.rs` or `foo.cc`).
//!
//! Cost: runs once per warn+/error event at ingest. Each pass is skipped unless the input can
//! contain it (a digit, `@`, `://`, two colons, `=`, enough length — a replacement never adds
//! such characters, so the features of the input bound every later string), and a pass that
//! matches nothing allocates nothing.

use std::borrow::Cow;
use std::net::Ipv6Addr;
use std::sync::LazyLock;

use regex::Regex;

/// Longest input (in bytes, cut at a char boundary) that is normalised; the rest is dropped.
pub const MAX_INPUT_BYTES: usize = 1024;

/// What a message may contain; computed once on the (trimmed) input.
#[derive(Clone, Copy)]
struct Features {
    digit: bool,
    at: bool,
    scheme: bool,
    colons: usize,
    eq: bool,
    dash: bool,
    len: usize,
}

impl Features {
    fn of(text: &str) -> Features {
        let mut f = Features {
            digit: false,
            at: false,
            scheme: text.contains("://"),
            colons: 0,
            eq: false,
            dash: false,
            len: text.len(),
        };
        for b in text.bytes() {
            match b {
                b'0'..=b'9' => f.digit = true,
                b'@' => f.at = true,
                b':' => f.colons += 1,
                b'=' => f.eq = true,
                b'-' => f.dash = true,
                _ => {}
            }
        }
        f
    }
}

/// Decides on a regex match: `Some(span)` replaces that span (the match or a part of it),
/// `None` keeps the text. Arguments: the whole haystack, match start, match end.
type Accept = fn(&str, usize, usize) -> Option<(usize, usize)>;

struct Pass {
    name: &'static str,
    placeholder: &'static str,
    regex: Regex,
    guard: fn(&Features) -> bool,
    accept: Option<Accept>,
}

const MONTH: &str = "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)";
const WEEKDAY: &str = "(?:Sun|Mon|Tue|Wed|Thu|Fri|Sat)";
const ZONE: &str = "(?:[-+][0-9]{2}[0-5][0-9]|UT|GMT|[ECMP][SD]T|[A-IK-Z])";

fn compile(name: &str, pattern: &str) -> Regex {
    match Regex::new(pattern) {
        Ok(regex) => regex,
        // The patterns are literals of this file; a test compiles every one of them.
        Err(err) => panic!("normalisation pattern {name} does not compile: {err}"),
    }
}

static PASSES: LazyLock<Vec<Pass>> = LazyLock::new(|| {
    let date_formats = format!(
        r"(?x)
        # RFC 822 / 1123: Mon, 02 Jan 2006 15:04:05 -0700
        {WEEKDAY},\s[0-9]{{1,2}}\s{MONTH}\s[0-9]{{2,4}}\s[0-9]{{1,2}}:[0-9]{{1,2}}(?::[0-9]{{1,2}})?\s{ZONE}
        # JavaScript Date#toString: Mon Jan 02 2006 15:04:05 GMT+0100 (Central European Time)
        | {WEEKDAY}\s{MONTH}\s[0-9]{{2}}\s[0-9]{{4}}\s[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}\sGMT[+-][0-9]{{4}}(?:\s\([^)]+\))?
        # Mon Jan 02, 1999 / Jan 02, 1999
        | (?:{WEEKDAY}\s)?{MONTH}\s[0-3][0-9],\s[0-9]{{2,4}}
        # RFC 850: Monday, 02-Jan-06 15:04:05 GMT
        | (?:Sun|Mon|Tue|Wed|Thu|Fri|Sat)[a-z]{{0,6}},\s[0-9]{{2}}-{MONTH}-[0-9]{{2}}\s[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}\s(?:UT|GMT|[ECMP][SD]T|[A-IK-Z])
        # RFC 3339 and ISO 8601 date-times, with or without separators, fraction and offset
        | [0-9]{{4}}-?[01][0-9]-?[0-3][0-9][\sT][0-2][0-9]:?[0-5][0-9](?::?[0-5][0-9](?:[.,][0-9]+)?)?(?:Z|[+-][0-2][0-9]:?[0-5][0-9])?
        # ctime: Mon Jan  2 15:04:05 2006
        | (?:{WEEKDAY}\s+)?{MONTH}\s+[0-9]{{1,2}}\s+[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}\s+[0-9]{{4}}
        # RFC 2822 without weekday: 2 Jan 2006 15:04 +0000
        | (?:0[1-9]|[12]?[0-9]|3[01])\s+{MONTH}\s+(?:19[0-9]{{2}}|[2-9][0-9]{{3}})\s+(?:2[0-3]|[01][0-9]):[0-5][0-9](?::(?:60|[0-5][0-9]))?\s+{ZONE}
        # Python repr
        | datetime\.datetime\([^)]*\)
        # plain dates
        | [0-9]{{4}}-[01][0-9]-[0-3][0-9]
        "
    );
    vec![
        Pass {
            name: "email",
            placeholder: "<email>",
            regex: compile(
                "email",
                r"[a-zA-Z0-9.!#$%&*+/?^_`{|}~-]+@[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+",
            ),
            guard: |f| f.at,
            accept: None,
        },
        Pass {
            name: "url",
            placeholder: "<url>",
            regex: compile(
                "url",
                r#"(?-u:\b)(?:wss?|https?|ftp)://[^\s/$.?#"'`<>)][^\s"'`<>)]*"#,
            ),
            guard: |f| f.scheme,
            accept: None,
        },
        Pass {
            name: "ipv6",
            placeholder: "<ip>",
            regex: compile(
                "ipv6",
                r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.[0-9]{1,3}){0,3}(?:%[0-9A-Za-z]+)?",
            ),
            guard: |f| f.colons >= 2,
            accept: Some(accept_ipv6),
        },
        Pass {
            name: "ipv4",
            placeholder: "<ip>",
            regex: compile(
                "ipv4",
                r"(?-u:\b)(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?-u:\b)",
            ),
            guard: |f| f.digit,
            accept: None,
        },
        Pass {
            name: "uuid",
            placeholder: "<uuid>",
            regex: compile(
                "uuid",
                r"(?-u:\b)[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?-u:\b)",
            ),
            guard: |f| f.dash && f.len >= 36,
            accept: None,
        },
        Pass {
            name: "sha1",
            placeholder: "<sha1>",
            regex: compile("sha1", r"(?-u:\b)[0-9a-fA-F]{40}(?-u:\b)"),
            guard: |f| f.len >= 40,
            accept: None,
        },
        Pass {
            name: "md5",
            placeholder: "<md5>",
            regex: compile("md5", r"(?-u:\b)[0-9a-fA-F]{32}(?-u:\b)"),
            guard: |f| f.len >= 32,
            accept: None,
        },
        Pass {
            name: "date",
            placeholder: "<date>",
            regex: compile("date", &date_formats),
            guard: |f| f.digit,
            accept: None,
        },
        Pass {
            name: "clock",
            placeholder: "<date>",
            regex: compile(
                "clock",
                r"[0-9]{1,2}:[0-5][0-9](?::[0-5][0-9])?(?:\s?[aApP][mM](?-u:\b))?",
            ),
            guard: |f| f.digit && f.colons >= 1,
            accept: Some(accept_clock),
        },
        Pass {
            name: "time",
            placeholder: "<date>",
            regex: compile("time", r"[0-2][0-9]:[0-5][0-9]:[0-5][0-9]"),
            guard: |f| f.digit && f.colons >= 2,
            accept: None,
        },
        Pass {
            name: "duration",
            placeholder: "<duration>",
            regex: compile(
                "duration",
                r"(?-u:\b)[0-9]+(?:\.[0-9]+)?(?:ns|us|µs|ms|s|min|m|h)(?-u:\b)",
            ),
            guard: |f| f.digit,
            accept: None,
        },
        Pass {
            name: "hex",
            placeholder: "<hex>",
            regex: compile(
                "hex",
                r"(?-u:\b)(?:0[xX][0-9a-fA-F]+|[0-9a-f]{8,128}|[0-9A-F]{8,128})(?-u:\b)",
            ),
            guard: |f| f.digit,
            accept: Some(accept_hex),
        },
        Pass {
            name: "float",
            placeholder: "<float>",
            regex: compile("float", r"(?:-|(?-u:\b))[0-9]+\.[0-9]+(?-u:\b)"),
            guard: |f| f.digit,
            accept: None,
        },
        Pass {
            name: "int",
            placeholder: "<int>",
            regex: compile("int", r"(?:-|(?-u:\b))[0-9]{1,7}(?-u:\b)"),
            guard: |f| f.digit,
            accept: Some(accept_int),
        },
        Pass {
            name: "quoted_str",
            placeholder: "<quoted_str>",
            regex: compile("quoted_str", r#"=(?:'[^']+'|"[^"]+")"#),
            guard: |f| f.eq,
            accept: Some(skip_equals_sign),
        },
        Pass {
            name: "bool",
            placeholder: "<bool>",
            regex: compile("bool", r"=(?:[Tt]rue|[Ff]alse)(?-u:\b)"),
            guard: |f| f.eq,
            accept: Some(skip_equals_sign),
        },
    ]
});

fn byte_before(hay: &str, at: usize) -> Option<u8> {
    at.checked_sub(1).map(|i| hay.as_bytes()[i])
}

fn byte_at(hay: &str, at: usize) -> Option<u8> {
    hay.as_bytes().get(at).copied()
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// A real IPv6 address with a digit, not inside a longer word (`Foo::bar`, `10:30:00`).
fn accept_ipv6(hay: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    if byte_before(hay, start).is_some_and(|b| is_word(b) || b == b':') {
        return None;
    }
    if byte_at(hay, end).is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    let text = &hay[start..end];
    // `ab::cd`, `Face::Add` are valid addresses but far likelier scope paths.
    if !text.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    let address = text.split('%').next().unwrap_or(text);
    address.parse::<Ipv6Addr>().ok().map(|_| (start, end))
}

/// A clock time `H:MM[:SS][ am|pm]`: no digit before it, no digit or `:` right after the
/// minutes/seconds, hour 0–23 (1–12 with am/pm).
fn accept_clock(hay: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    if byte_before(hay, start).is_some_and(|b| b.is_ascii_digit()) {
        return None;
    }
    let text = &hay.as_bytes()[start..end];
    let digits_end = text
        .iter()
        .position(|b| !(b.is_ascii_digit() || *b == b':'))
        .unwrap_or(text.len());
    let meridiem = digits_end < text.len();
    if !meridiem && byte_at(hay, end).is_some_and(|b| b.is_ascii_digit() || b == b':') {
        return None;
    }
    let hour_len = text.iter().position(|b| *b == b':').unwrap_or(0);
    let hour = text[..hour_len]
        .iter()
        .fold(0u32, |h, b| h * 10 + u32::from(b - b'0'));
    let hour_ok = if meridiem {
        (1..=12).contains(&hour) && !(hour_len == 2 && text[0] == b'0')
    } else {
        hour <= 23
    };
    hour_ok.then_some((start, end))
}

/// `0x…` always; bare hex only with at least one digit (all-letter words stay words).
fn accept_hex(hay: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let text = &hay.as_bytes()[start..end];
    let prefixed = text.len() > 2 && text[0] == b'0' && (text[1] | 0x20) == b'x';
    (prefixed || text.iter().any(u8::is_ascii_digit)).then_some((start, end))
}

/// A leading `-` is a minus sign only after a non-word character (`x -5` but `abc-123`).
fn accept_int(hay: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    if hay.as_bytes()[start] == b'-' && byte_before(hay, start).is_some_and(is_word) {
        // `abc-123`: the dash joins words; the number alone is still an int.
        return Some((start + 1, end));
    }
    Some((start, end))
}

/// The value half of `key=value`: keep the `=`.
fn skip_equals_sign(_hay: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    Some((start + 1, end))
}

/// Runs one pass; `None` when nothing was replaced (no allocation then).
fn apply(pass: &Pass, input: &str) -> Option<String> {
    let mut out: Option<String> = None;
    let mut copied_to = 0;
    for m in pass.regex.find_iter(input) {
        let (start, end) = match pass.accept {
            None => (m.start(), m.end()),
            Some(accept) => match accept(input, m.start(), m.end()) {
                Some(span) => span,
                None => continue,
            },
        };
        let buffer = out.get_or_insert_with(|| String::with_capacity(input.len() + 16));
        buffer.push_str(&input[copied_to..start]);
        buffer.push_str(pass.placeholder);
        copied_to = end;
    }
    out.map(|mut buffer| {
        buffer.push_str(&input[copied_to..]);
        buffer
    })
}

/// The first two non-blank lines, each without trailing whitespace, joined by `\n`, cut to
/// [`MAX_INPUT_BYTES`] at a char boundary. Borrows when the message is one clean line.
fn first_two_lines(message: &str) -> Cow<'_, str> {
    let mut lines = message
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.trim_start().is_empty());
    let first = lines.next().unwrap_or("").trim_start();
    let kept = match lines.next() {
        None => Cow::Borrowed(first),
        Some(second) => Cow::Owned(format!("{first}\n{second}")),
    };
    if kept.len() <= MAX_INPUT_BYTES {
        return kept;
    }
    let mut cut = MAX_INPUT_BYTES;
    while !kept.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(kept[..cut].trim_end().to_owned())
}

/// Normalises an error message for grouping: first two non-blank lines, variable parts replaced
/// by `<email>`, `<url>`, `<ip>`, `<uuid>`, `<sha1>`, `<md5>`, `<date>`, `<duration>`, `<hex>`,
/// `<float>`, `<int>`, `<quoted_str>`, `<bool>`.
pub fn normalize_message(message: &str) -> String {
    let kept = first_two_lines(message);
    let text: &str = &kept;
    let features = Features::of(text);
    let mut current: Option<String> = None;
    for pass in PASSES.iter() {
        if !(pass.guard)(&features) {
            continue;
        }
        let input = current.as_deref().unwrap_or(text);
        if let Some(replaced) = apply(pass, input) {
            current = Some(replaced);
        }
    }
    current.unwrap_or_else(|| kept.into_owned())
}

/// The names of the passes, in the order they run (for documentation and tests).
pub fn pass_names() -> Vec<&'static str> {
    PASSES.iter().map(|p| p.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_compile_in_sentry_order() {
        assert_eq!(
            pass_names(),
            [
                "email",
                "url",
                "ipv6",
                "ipv4",
                "uuid",
                "sha1",
                "md5",
                "date",
                "clock",
                "time",
                "duration",
                "hex",
                "float",
                "int",
                "quoted_str",
                "bool"
            ]
        );
    }

    #[test]
    fn issue_example() {
        assert_eq!(
            normalize_message("Timeout after 3021 ms contacting 10.0.0.7"),
            "Timeout after <int> ms contacting <ip>"
        );
    }

    /// (runtime, raw message, normalised)
    const TABLE: &[(&str, &str, &str)] = &[
        // Python
        (
            "python",
            "ConnectionRefusedError: [Errno 111] Connection refused",
            "ConnectionRefusedError: [Errno <int>] Connection refused",
        ),
        (
            "python",
            "KeyError: 'user_4f3a9b2c'",
            "KeyError: 'user_4f3a9b2c'",
        ),
        (
            "python",
            "HTTPSConnectionPool(host='api.example.com', port=443): Max retries exceeded with url: /v1/audio?id=123 (Caused by ReadTimeoutError(\"Read timed out. (read timeout=30.5)\"))",
            "HTTPSConnectionPool(host=<quoted_str>, port=<int>): Max retries exceeded with url: /v1/audio?id=<int> (Caused by ReadTimeoutError(\"Read timed out. (read timeout=<float>)\"))",
        ),
        (
            "python",
            "ValueError: invalid literal for int() with base 10: 'abc'",
            "ValueError: invalid literal for int() with base <int>: 'abc'",
        ),
        (
            "python",
            "Traceback (most recent call last):\n  File \"/app/main.py\", line 42, in <module>\n    run()",
            "Traceback (most recent call last):\n  File \"/app/main.py\", line <int>, in <module>",
        ),
        (
            "python",
            "<__main__.Session object at 0x7f3b2c1d4e90> is not JSON serializable",
            "<__main__.Session object at <hex>> is not JSON serializable",
        ),
        (
            "python",
            "token expired at datetime.datetime(2024, 3, 1, 12, 0, tzinfo=datetime.timezone.utc)",
            "token expired at <date>",
        ),
        // JavaScript / Node
        (
            "node",
            "Error: connect ECONNREFUSED 127.0.0.1:5432",
            "Error: connect ECONNREFUSED <ip>:<int>",
        ),
        (
            "node",
            "TypeError: Cannot read properties of undefined (reading 'length')",
            "TypeError: Cannot read properties of undefined (reading 'length')",
        ),
        (
            "node",
            "FetchError: request to https://api.example.com/v2/users/991?x=1 failed, reason: socket hang up",
            "FetchError: request to <url> failed, reason: socket hang up",
        ),
        (
            "browser",
            "Uncaught RangeError: Maximum call stack size exceeded at line 1337:12",
            "Uncaught RangeError: Maximum call stack size exceeded at line <int>:<int>",
        ),
        (
            "node",
            "Error: ETIMEDOUT after 3021ms (attempt 3 of 5)",
            "Error: ETIMEDOUT after <duration> (attempt <int> of <int>)",
        ),
        (
            "browser",
            "Session expired on Mon Jan 02 2006 15:04:05 GMT+0100 (Central European Standard Time)",
            "Session expired on <date>",
        ),
        // Java / Kotlin
        (
            "java",
            "java.lang.IllegalStateException: Expected BEGIN_OBJECT but was STRING at line 1 column 17 path $.data",
            "java.lang.IllegalStateException: Expected BEGIN_OBJECT but was STRING at line <int> column <int> path $.data",
        ),
        (
            "java",
            "java.lang.ArrayIndexOutOfBoundsException: Index 10 out of bounds for length 3",
            "java.lang.ArrayIndexOutOfBoundsException: Index <int> out of bounds for length <int>",
        ),
        (
            "java",
            "java.net.SocketTimeoutException: failed to connect to /10.0.2.2 (port 8080) from /10.0.2.16 (port 41234) after 10000ms",
            "java.net.SocketTimeoutException: failed to connect to /<ip> (port <int>) from /<ip> (port <int>) after <duration>",
        ),
        (
            "kotlin",
            "kotlinx.coroutines.JobCancellationException: Job was cancelled; job=StandaloneCoroutine{Cancelling}@1b6d3586",
            "kotlinx.coroutines.JobCancellationException: Job was cancelled; job=StandaloneCoroutine{Cancelling}@<hex>",
        ),
        (
            "android",
            "android.database.sqlite.SQLiteException: no such table: events (code 1 SQLITE_ERROR): , while compiling: SELECT * FROM events WHERE id='42'",
            "android.database.sqlite.SQLiteException: no such table: events (code <int> SQLITE_ERROR): , while compiling: SELECT * FROM events WHERE id=<quoted_str>",
        ),
        // Swift / Objective-C
        (
            "swift",
            "The operation couldn’t be completed. (NSURLErrorDomain error -1001.)",
            "The operation couldn’t be completed. (NSURLErrorDomain error <int>.)",
        ),
        (
            "swift",
            "Fatal error: Index out of range: file Keyboard/Suggestions.swift, line 214",
            "Fatal error: Index out of range: file Keyboard/Suggestions.swift, line <int>",
        ),
        (
            "objc",
            "-[__NSCFString objectForKey:]: unrecognized selector sent to instance 0x600003b2c4e0",
            "-[__NSCFString objectForKey:]: unrecognized selector sent to instance <hex>",
        ),
        (
            "swift",
            "Error Domain=kAFAssistantErrorDomain Code=1110 \"No speech detected\" UserInfo={NSLocalizedDescription=No speech detected}",
            "Error Domain=kAFAssistantErrorDomain Code=<int> \"No speech detected\" UserInfo={NSLocalizedDescription=No speech detected}",
        ),
        // Go
        (
            "go",
            "dial tcp [2001:db8::1]:443: i/o timeout",
            "dial tcp [<ip>]:<int>: i/o timeout",
        ),
        (
            "go",
            "context deadline exceeded (Client.Timeout exceeded while awaiting headers) after 30.5s",
            "context deadline exceeded (Client.Timeout exceeded while awaiting headers) after <duration>",
        ),
        (
            "go",
            "panic: runtime error: index out of range [5] with length 3\n\ngoroutine 1 [running]:\nmain.main()",
            "panic: runtime error: index out of range [<int>] with length <int>\ngoroutine <int> [running]:",
        ),
        // Rust
        (
            "rust",
            "called `Result::unwrap()` on an `Err` value: Os { code: 2, kind: NotFound, message: \"No such file or directory\" }",
            "called `Result::unwrap()` on an `Err` value: Os { code: <int>, kind: NotFound, message: \"No such file or directory\" }",
        ),
        (
            "rust",
            "thread 'tokio-runtime-worker' panicked at src/audio/decoder.rs:118:9:\nattempt to subtract with overflow",
            "thread 'tokio-runtime-worker' panicked at src/audio/decoder.rs:<int>:<int>:\nattempt to subtract with overflow",
        ),
        (
            "rust",
            "error sending request for url (https://api.example.com/v1/stream): operation timed out",
            "error sending request for url (<url>): operation timed out",
        ),
        // .NET
        (
            ".net",
            "System.Net.Http.HttpRequestException: Response status code does not indicate success: 503 (Service Unavailable).",
            "System.Net.Http.HttpRequestException: Response status code does not indicate success: <int> (Service Unavailable).",
        ),
        (
            ".net",
            "System.Collections.Generic.KeyNotFoundException: The given key '7d444840-9dc0-11d1-b245-5ffdce74fad2' was not present in the dictionary.",
            "System.Collections.Generic.KeyNotFoundException: The given key '<uuid>' was not present in the dictionary.",
        ),
        (
            ".net",
            "System.TimeoutException: The operation has timed out at 2024-05-01T13:45:10.1234567+02:00",
            "System.TimeoutException: The operation has timed out at <date>",
        ),
        // Ruby
        (
            "ruby",
            "undefined method `name' for nil:NilClass (NoMethodError)",
            "undefined method `name' for nil:NilClass (NoMethodError)",
        ),
        (
            "ruby",
            "ActiveRecord::RecordNotFound: Couldn't find User with 'id'=4711",
            "ActiveRecord::RecordNotFound: Couldn't find User with 'id'=<int>",
        ),
        (
            "ruby",
            "Net::ReadTimeout with #<TCPSocket:(closed)> at 10:42:07 PM",
            "Net::ReadTimeout with #<TCPSocket:(closed)> at <date>",
        ),
        // PHP, C/C++, SQL, shells, misc
        (
            "php",
            "PDOException: SQLSTATE[HY000] [2002] Connection refused for user bob@example.org",
            "PDOException: SQLSTATE[HY000] [<int>] Connection refused for user <email>",
        ),
        (
            "c++",
            "std::bad_alloc: failed to allocate 1073741824 bytes in cache::grow",
            "std::bad_alloc: failed to allocate <hex> bytes in cache::grow",
        ),
        (
            "postgres",
            "duplicate key value violates unique constraint \"users_email_key\" DETAIL: Key (id)=(-42) already exists.",
            "duplicate key value violates unique constraint \"users_email_key\" DETAIL: Key (id)=(<int>) already exists.",
        ),
        (
            "git",
            "fatal: bad object 3f786850e387550fdab836ed7e6dc881de23001b",
            "fatal: bad object <sha1>",
        ),
        (
            "cdn",
            "checksum mismatch: expected d41d8cd98f00b204e9800998ecf8427e got 0cc175b9c0f1b6a831c399e269772661",
            "checksum mismatch: expected <md5> got <md5>",
        ),
        (
            "http",
            "Rate limited until Tue, 15 Nov 1994 08:12:31 GMT, retry=true",
            "Rate limited until <date>, retry=<bool>",
        ),
        (
            "cli",
            "model load failed: temperature=0.7 top_p=-1.5 cache=\"/home/u/.cache/whisper-12\"",
            "model load failed: temperature=<float> top_p=<float> cache=<quoted_str>",
        ),
        (
            "cli",
            "retrying in 250ms (took 1.25s, budget 2m)",
            "retrying in <duration> (took <duration>, budget <duration>)",
        ),
        (
            "ipv6",
            "connect to fe80::1%eth0 and ::1 failed; mapped ::ffff:192.0.2.128",
            "connect to <ip> and <ip> failed; mapped <ip>",
        ),
        (
            "node",
            "Error: ENOENT: no such file or directory, open '/tmp/upload-2024-11-03/part-0007.bin'",
            "Error: ENOENT: no such file or directory, open '/tmp/upload-<date>/part-<int>.bin'",
        ),
    ];

    #[test]
    fn normalisation_table() {
        assert!(TABLE.len() >= 30);
        let mut failures = Vec::new();
        for (runtime, raw, expected) in TABLE {
            let got = normalize_message(raw);
            if got != *expected {
                failures.push(format!(
                    "[{runtime}]\n   raw: {raw}\n   got: {got}\n  want: {expected}"
                ));
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn normalisation_is_idempotent() {
        for (_, raw, _) in TABLE {
            let once = normalize_message(raw);
            assert_eq!(normalize_message(&once), once, "{raw}");
        }
    }

    #[test]
    fn words_that_look_like_values_stay() {
        for text in [
            "std::io::Error in Foo::bar",
            "deadbeef cafe facade",
            "utf8 base64 i18n v2 user_123",
            "Expected 'a' got 'b'",
            "ab::cd",
        ] {
            let got = normalize_message(text);
            assert!(
                !got.contains("<ip>") && !got.contains("<hex>") && !got.contains("<int>"),
                "{text} -> {got}"
            );
        }
        assert_eq!(normalize_message("abc-123 x -5"), "abc-<int> x <int>");
        assert_eq!(
            normalize_message("at 10:30 and 25:99"),
            "at <date> and <int>:<int>"
        );
        assert_eq!(
            normalize_message("1.2.3.4.5 and v1.2.3"),
            "<ip>.<int> and v1.<float>"
        );
    }

    #[test]
    fn lines_and_limits() {
        assert_eq!(normalize_message(""), "");
        assert_eq!(normalize_message("   \n\n  "), "");
        assert_eq!(
            normalize_message("\n\nfirst\n\n\nsecond\nthird"),
            "first\nsecond"
        );
        assert_eq!(normalize_message("a  \r\nb\r\nc"), "a\nb");
        let long = "é".repeat(2000);
        let got = normalize_message(&long);
        assert!(got.len() <= MAX_INPUT_BYTES);
        assert!(got.chars().all(|c| c == 'é'));
    }

    #[test]
    fn arbitrary_input_does_not_panic() {
        let pieces = [
            "é", "0x", "::", ":", "=", "'", "\"", "-", "1", "12:", "ff", "@", "a.b", "://", "\n",
            " ", "ms", "9", "Jan", ".", "%", "⏎", "日本",
        ];
        let mut seed = 0x9e3779b97f4a7c15u64;
        for _ in 0..3000 {
            let mut text = String::new();
            for _ in 0..12 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            }
            let _ = normalize_message(&text);
        }
    }
}
