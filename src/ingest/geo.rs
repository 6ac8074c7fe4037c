//! Offline geo lookup: client IP → country and ISO-style region code, from a MaxMind DB file in
//! either MaxMind's nested GeoIP2 layout (`country.iso_code`, `subdivisions[0].iso_code`) or the
//! flat layout of ip-location-db and others (`country_code`, `state1`). The IP is only looked up;
//! it is never returned, stored or logged.

use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    pub country_code: Option<String>,
    pub region_code: Option<String>,
}

pub struct GeoDb {
    reader: maxminddb::Reader<Vec<u8>>,
    pub database_type: String,
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    country: Option<Named<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<Named<'a>>,
    #[serde(borrow, default)]
    subdivisions: Option<Vec<Named<'a>>>,
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
    #[serde(borrow, default)]
    state1: Option<&'a str>,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

impl GeoDb {
    pub fn open(path: &Path) -> Result<GeoDb, maxminddb::MaxMindDbError> {
        let reader = maxminddb::Reader::open_readfile(path)?;
        let database_type = reader.metadata().database_type.clone();
        Ok(GeoDb {
            reader,
            database_type,
        })
    }

    /// Where the address is, as far as the database knows; empty for private or unknown ones.
    pub fn locate(&self, ip: IpAddr) -> Location {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if !is_public(ip) {
            return Location::default();
        }
        let record = match self.reader.lookup(ip).and_then(|r| r.decode::<Record>()) {
            Ok(Some(record)) => record,
            _ => return Location::default(),
        };
        let country = record
            .country
            .as_ref()
            .and_then(|c| c.iso_code)
            .or(record.country_code)
            .or(record.registered_country.as_ref().and_then(|c| c.iso_code))
            .filter(|c| is_code(c, 2, 2))
            .map(str::to_ascii_uppercase);
        let subdivision = record
            .subdivisions
            .as_ref()
            .and_then(|s| s.first())
            .and_then(|s| s.iso_code)
            .or(record.state1);
        let region = match (&country, subdivision) {
            (Some(cc), Some(sub)) if is_code(sub, 1, 3) => {
                Some(format!("{cc}-{}", sub.to_ascii_uppercase()))
            }
            _ => None,
        };
        Location {
            country_code: country,
            region_code: region,
        }
    }
}

/// Private, loopback, link-local, shared and documentation ranges have no place on a map, even
/// where a database lists them.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            let shared = a == 100 && (64..128).contains(&b);
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || shared
                || a == 0)
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                let unique_local = first & 0xfe00 == 0xfc00;
                let link_local = first & 0xffc0 == 0xfe80;
                let documentation = first == 0x2001 && v6.segments()[1] == 0x0db8;
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || unique_local
                    || link_local
                    || documentation)
            }
        },
    }
}

/// ISO 3166 codes are short runs of letters and digits; flat databases sometimes put a region
/// *name* in `state1`, which is not a code and is left out.
fn is_code(text: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/testdata")
            .join(name)
    }

    #[test]
    fn nested_layout() {
        let db = GeoDb::open(&testdata("geoip2-city-test.mmdb")).unwrap();
        let at = |ip: &str| db.locate(ip.parse().unwrap());
        assert_eq!(
            at("81.2.69.142"),
            Location {
                country_code: Some("GB".into()),
                region_code: Some("GB-ENG".into())
            }
        );
        assert_eq!(at("216.160.83.58").region_code.as_deref(), Some("US-WA"));
        assert_eq!(at("175.16.199.1").region_code.as_deref(), Some("CN-22"));
        assert_eq!(
            at("202.196.224.5"),
            Location {
                country_code: Some("PH".into()),
                region_code: None
            }
        );
        assert_eq!(at("2a02:d300::1").region_code.as_deref(), Some("DE-HE"));
        assert_eq!(at("127.0.0.1"), Location::default());
        assert_eq!(at("10.1.2.3"), Location::default());
    }

    #[test]
    fn flat_layout() {
        let db = GeoDb::open(&testdata("country-cc-by.mmdb")).unwrap();
        assert_eq!(
            db.locate("81.2.69.142".parse().unwrap())
                .country_code
                .as_deref(),
            Some("GB")
        );
        assert_eq!(
            db.locate("8.8.8.8".parse().unwrap())
                .country_code
                .as_deref(),
            Some("US")
        );
        assert_eq!(
            db.locate("192.168.1.1".parse().unwrap()),
            Location::default()
        );
        assert_eq!(
            db.locate("100.64.0.1".parse().unwrap()),
            Location::default()
        );
        assert_eq!(
            db.locate("::ffff:81.2.69.142".parse().unwrap())
                .country_code
                .as_deref(),
            Some("GB")
        );
    }
}
