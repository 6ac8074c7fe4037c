//! Which address a request really came from: CIDR matching for `trusted_proxies` and reading
//! `X-Forwarded-For` / `Forwarded` only when the peer is a trusted proxy. The address is used
//! for the geo lookup and then dropped; nothing here stores or logs it.

use std::net::IpAddr;

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
}
