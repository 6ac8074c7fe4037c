//! Addresses: which address a request really came from (CIDR matching for `trusted_proxies`
//! and reading `X-Forwarded-For` / `Forwarded` only when the peer is a trusted proxy), and web
//! origins (`scheme://host[:port]`, as browsers send them in `Origin`) with the sets of them
//! that CORS allows. The client address is used for the geo lookup and then dropped; nothing
//! here stores or logs it.

use std::net::{IpAddr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `2001:db8::/32`, or a single address.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (
                addr.parse::<IpAddr>().ok()?,
                Some(prefix.parse::<u8>().ok()?),
            ),
            None => (text.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr {
            network: addr,
            prefix,
        })
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.network, canonical(addr)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8, bits: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(bits - prefix);
    (a >> shift) == (b >> shift)
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) compare as IPv4.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    }
}

/// The client address: the socket peer, or — when the peer is a trusted proxy — the nearest
/// untrusted address in `Forwarded` / `X-Forwarded-For`, read from the right.
pub fn client_ip(
    peer: Option<IpAddr>,
    forwarded: Option<&str>,
    x_forwarded_for: Option<&str>,
    trusted: &[Cidr],
) -> Option<IpAddr> {
    let peer = canonical(peer?);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let chain: Vec<IpAddr> = match (forwarded, x_forwarded_for) {
        (Some(f), _) => forwarded_for_addrs(f),
        (None, Some(x)) => x.split(',').filter_map(|s| parse_addr(s.trim())).collect(),
        (None, None) => Vec::new(),
    };
    chain
        .into_iter()
        .rev()
        .map(canonical)
        .find(|ip| !is_trusted(*ip))
        .or(Some(peer))
}

/// The `for=` addresses of an RFC 7239 `Forwarded` header, in order.
fn forwarded_for_addrs(header: &str) -> Vec<IpAddr> {
    header
        .split(',')
        .flat_map(|element| element.split(';'))
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case("for")
                .then(|| parse_addr(value.trim().trim_matches('"')))?
        })
        .collect()
}

/// Accepts `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]`, `[2001:db8::1]:443`, `2001:db8::1`.
fn parse_addr(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    text.rsplit_once(':')
        .and_then(|(host, _port)| host.parse().ok())
}

/// Why a configured origin is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("an origin cannot be empty")]
    Empty,
    #[error("`null` (the origin of sandboxed frames and local files) cannot be listed; `*` allows any origin")]
    Null,
    #[error("only `*` alone stands for any origin; patterns are not supported, list each origin")]
    Pattern,
    #[error("an origin starts with its scheme, as in `https://app.example.com`")]
    MissingScheme,
    #[error("`{0}` is not a URL scheme")]
    BadScheme(String),
    #[error("an origin has no user name or password")]
    UserInfo,
    #[error("an origin has no path, query or fragment (scheme://host[:port]); remove `{0}`")]
    Path(String),
    #[error("`{0}` is not a host name or IP address (an international name is written in its `xn--` form, as browsers send it)")]
    BadHost(String),
    #[error("`{0}` is not a port (1-65535)")]
    BadPort(String),
}

/// A web origin in the form browsers send in `Origin`: `scheme://host[:port]` with scheme and
/// host lowercased and the scheme's default port left out (`HTTPS://App.Example.com:443` is
/// `https://app.example.com`). Any scheme is an origin: `capacitor://localhost` and
/// `tauri://localhost` are the origins of hybrid mobile and desktop apps.
pub fn parse_origin(text: &str) -> Result<String, OriginError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(OriginError::Empty);
    }
    if text.eq_ignore_ascii_case("null") {
        return Err(OriginError::Null);
    }
    if text.contains('*') {
        return Err(OriginError::Pattern);
    }
    let (scheme, rest) = text.split_once("://").ok_or(OriginError::MissingScheme)?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err(OriginError::BadScheme(scheme.to_string()));
    }
    let scheme = scheme.to_ascii_lowercase();
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if !tail.is_empty() {
        return Err(OriginError::Path(tail.to_string()));
    }
    if authority.contains('@') {
        return Err(OriginError::UserInfo);
    }
    let (host, port) = split_host_port(authority)?;
    let host = host.to_ascii_lowercase();
    let port = match port {
        None => None,
        Some(text) => {
            let port = text
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0 && text.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| OriginError::BadPort(text.to_string()))?;
            let default = matches!((scheme.as_str(), port), ("http", 80) | ("https", 443));
            (!default).then_some(port)
        }
    };
    Ok(match port {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, with the host checked.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), OriginError> {
    let bad_host = || OriginError::BadHost(authority.to_string());
    if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or_else(bad_host)?;
        v6.parse::<Ipv6Addr>().map_err(|_| bad_host())?;
        let host = &authority[..v6.len() + 2];
        return match after {
            "" => Ok((host, None)),
            _ => after
                .strip_prefix(':')
                .map(|port| (host, Some(port)))
                .ok_or_else(bad_host),
        };
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !host_ok {
        return Err(OriginError::BadHost(host.to_string()));
    }
    Ok((host, port))
}

/// The web origins allowed to call an endpoint from a browser (CORS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// `*`: every origin (its `Origin` is echoed back).
    Any,
    /// Only these, in [`parse_origin`]'s form; empty allows none.
    Listed(Vec<String>),
}

impl AllowedOrigins {
    /// The set a list of configured entries stands for; an error names the entry's position.
    pub fn parse<'a>(
        entries: impl IntoIterator<Item = &'a str>,
    ) -> Result<AllowedOrigins, (usize, OriginError)> {
        let mut listed = Vec::new();
        let mut any = false;
        for (i, entry) in entries.into_iter().enumerate() {
            if entry.trim() == "*" {
                any = true;
                continue;
            }
            listed.push(parse_origin(entry).map_err(|e| (i, e))?);
        }
        Ok(if any {
            AllowedOrigins::Any
        } else {
            AllowedOrigins::Listed(listed)
        })
    }

    /// Whether a request's `Origin` header value is allowed. Scheme and host compare
    /// case-insensitively; a value that is no origin (such as `null`) only `Any` allows.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            AllowedOrigins::Any => true,
            AllowedOrigins::Listed(list) => {
                parse_origin(origin).is_ok_and(|origin| list.contains(&origin))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_matching() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.200.1.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.1.2.3")));
        assert!(Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains(ip("2001:db8:1::5")));
        assert!(Cidr::parse("127.0.0.1").unwrap().contains(ip("127.0.0.1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nope").is_none());
    }

    #[test]
    fn headers_only_from_trusted_peers() {
        let trusted = vec![Cidr::parse("127.0.0.1").unwrap()];
        let xff = Some("81.2.69.142, 127.0.0.1");
        assert_eq!(
            client_ip(Some(ip("127.0.0.1")), None, xff, &trusted),
            Some(ip("81.2.69.142"))
        );
        assert_eq!(
            client_ip(Some(ip("9.9.9.9")), None, xff, &trusted),
            Some(ip("9.9.9.9"))
        );
        let fwd = Some("for=\"[2001:218::1]:4711\";proto=https, for=127.0.0.1");
        assert_eq!(
            client_ip(Some(ip("127.0.0.1")), fwd, None, &trusted),
            Some(ip("2001:218::1"))
        );
        assert_eq!(
            client_ip(Some(ip("127.0.0.1")), None, Some("garbage"), &trusted),
            Some(ip("127.0.0.1"))
        );
    }

    #[test]
    fn origins_take_the_form_browsers_send() {
        let cases = [
            ("https://app.example.com", "https://app.example.com"),
            ("HTTPS://App.Example.COM", "https://app.example.com"),
            ("https://app.example.com:443", "https://app.example.com"),
            ("http://localhost:80", "http://localhost"),
            ("http://127.0.0.1:5173", "http://127.0.0.1:5173"),
            ("https://app.example.com:80", "https://app.example.com:80"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("http://[2001:DB8::1]", "http://[2001:db8::1]"),
            ("capacitor://localhost", "capacitor://localhost"),
            (
                " https://xn--bcher-kva.example ",
                "https://xn--bcher-kva.example",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_origin(text).as_deref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn what_is_not_an_origin_says_why() {
        let cases = [
            ("", OriginError::Empty),
            ("null", OriginError::Null),
            ("https://*.example.com", OriginError::Pattern),
            ("app.example.com", OriginError::MissingScheme),
            ("1http://a.example", OriginError::BadScheme("1http".into())),
            ("https://app.example.com/", OriginError::Path("/".into())),
            (
                "https://a.example/app?x=1",
                OriginError::Path("/app?x=1".into()),
            ),
            ("https://user:pw@a.example", OriginError::UserInfo),
            (
                "https://bücher.example",
                OriginError::BadHost("bücher.example".into()),
            ),
            (
                "https://a..example",
                OriginError::BadHost("a..example".into()),
            ),
            ("https://", OriginError::BadHost("".into())),
            ("https://a.example:0", OriginError::BadPort("0".into())),
            (
                "https://a.example:99999",
                OriginError::BadPort("99999".into()),
            ),
            ("https://a.example:+80", OriginError::BadPort("+80".into())),
            ("http://[::1", OriginError::BadHost("[::1".into())),
            ("http://[nope]:80", OriginError::BadHost("[nope]:80".into())),
        ];
        for (text, want) in cases {
            assert_eq!(parse_origin(text), Err(want), "{text}");
        }
    }

    #[test]
    fn allowed_origins_match_case_insensitively_and_star_allows_any() {
        let listed =
            AllowedOrigins::parse(["https://App.example.com", "http://localhost:3000"]).unwrap();
        assert!(listed.allows("https://app.example.com"));
        assert!(listed.allows("HTTPS://APP.EXAMPLE.COM"));
        assert!(listed.allows("https://app.example.com:443"));
        assert!(listed.allows("http://localhost:3000"));
        assert!(!listed.allows("http://localhost:3001"));
        assert!(!listed.allows("http://app.example.com"));
        assert!(!listed.allows("https://app.example.com.evil.example"));
        assert!(!listed.allows("null"));
        assert_eq!(
            AllowedOrigins::parse(["https://a.example", "*"]).unwrap(),
            AllowedOrigins::Any
        );
        assert!(AllowedOrigins::Any.allows("null"));
        let none = AllowedOrigins::parse([]).unwrap();
        assert_eq!(none, AllowedOrigins::Listed(vec![]));
        assert!(!none.allows("https://app.example.com"));
        assert_eq!(
            AllowedOrigins::parse(["*", "https://a.example/x"]),
            Err((1, OriginError::Path("/x".into())))
        );
    }
}
