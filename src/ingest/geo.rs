//! Offline geo lookup: client IP → country and ISO-style region code, from a MaxMind DB file in
//! either MaxMind's nested GeoIP2 layout (`country.iso_code`, `subdivisions[0].iso_code`) or the
//! flat layout of ip-location-db and others (`country_code`, `state1`). Flat city databases
//! (DB-IP, GeoLite2 as ip-location-db publishes them) name the region (`California`, `England`);
//! the name is turned into its ISO 3166-2 code with the subdivision names of `rust_iso3166`. The
//! IP is only looked up; it is never returned, stored or logged.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::LazyLock;

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
        let nested = record
            .subdivisions
            .as_ref()
            .and_then(|s| s.first())
            .and_then(|s| s.iso_code);
        let region = match (&country, nested, record.state1) {
            (Some(cc), Some(sub), _) if is_code(sub, 1, 3) => {
                Some(format!("{cc}-{}", sub.to_ascii_uppercase()))
            }
            (Some(cc), None, Some(state)) => region_code(cc, state),
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

/// The ISO 3166-2 code of a flat database's region (`state1`): found by its name within the
/// country (`US`, `California` → `US-CA`), or taken as it is when it already is a known code.
/// A name the ISO list spells otherwise (GeoLite2's `Bavaria` for `Bayern`) gives no region
/// rather than a wrong one.
fn region_code(country: &str, state: &str) -> Option<String> {
    if let Some(code) = SUBDIVISIONS_BY_NAME.get(&name_key(country, state)) {
        return code.map(str::to_string);
    }
    let code = format!("{country}-{}", state.to_ascii_uppercase());
    (is_code(state, 1, 3) && rust_iso3166::iso3166_2::from_code(&code).is_some()).then_some(code)
}

/// Every ISO 3166-2 subdivision by [`name_key`]; `None` where two subdivisions of one country
/// share a name, which then names neither.
static SUBDIVISIONS_BY_NAME: LazyLock<HashMap<String, Option<&'static str>>> =
    LazyLock::new(|| {
        let mut by_name = HashMap::new();
        for subdivision in rust_iso3166::iso3166_2::SUBDIVISION_MAP.values() {
            by_name
                .entry(name_key(subdivision.country_code, subdivision.name))
                .and_modify(|code: &mut Option<&'static str>| {
                    if *code != Some(subdivision.code) {
                        *code = None
                    }
                })
                .or_insert(Some(subdivision.code));
        }
        by_name
    });

/// Words that say what kind of subdivision a name is, which databases add or leave out.
const KIND_WORDS: &[&str] = &[
    "state",
    "province",
    "county",
    "region",
    "district",
    "prefecture",
    "oblast",
    "governorate",
    "department",
    "sheng",
    "lan",
    "of",
];

/// `country` and the name compared loosely: lower case, accents and punctuation dropped, the
/// subdivision kind words left out (`Östergötlands län` and `Ostergotlands` meet).
fn name_key(country: &str, name: &str) -> String {
    let mut folded = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        match fold_accent(c) {
            Some(ascii) => folded.push_str(ascii),
            None if c.is_alphanumeric() => folded.push(c),
            None => folded.push(' '),
        }
    }
    let words: Vec<&str> = folded
        .split_whitespace()
        .filter(|w| !KIND_WORDS.contains(w))
        .collect();
    format!("{country}|{}", words.join(" "))
}

/// The plain letters of the accented Latin letters region names use.
fn fold_accent(c: char) -> Option<&'static str> {
    Some(match c {
        'a'..='z' | '0'..='9' => return None,
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'ç' | 'ć' | 'č' => "c",
        'ď' | 'đ' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
        'ğ' => "g",
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'ı' => "i",
        'ł' | 'ľ' => "l",
        'ñ' | 'ń' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => "o",
        'ř' => "r",
        'ś' | 'š' | 'ş' | 'ș' => "s",
        'ß' => "ss",
        'ť' | 'ţ' | 'ț' => "t",
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' => "u",
        'ý' | 'ÿ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        '\'' | '’' | 'ʻ' => "",
        _ => return None,
    })
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

    /// A flat city database as ip-location-db publishes DB-IP's and GeoLite2's: `country_code`,
    /// `state1` (a region *name*), `city`, in an IPv6 tree with IPv4 below `::/96`.
    fn flat_city_db(rows: &[(&str, &str, &str, &str)]) -> tempfile::NamedTempFile {
        use maxminddb_writer::paths::IpAddrWithMask;
        #[derive(serde::Serialize)]
        struct Row<'a> {
            country_code: &'a str,
            state1: &'a str,
            city: &'a str,
        }
        let mut db = maxminddb_writer::Database::default();
        db.metadata.ip_version = maxminddb_writer::metadata::IpVersion::V6;
        db.metadata.database_type = "dbip-city-lite".into();
        db.metadata.binary_format_major_version = 2;
        for (network, country_code, state1, city) in rows {
            let (addr, len) = network.split_once('/').unwrap();
            let (addr, len): (IpAddr, u8) = (addr.parse().unwrap(), len.parse().unwrap());
            let (addr, len) = match addr {
                IpAddr::V4(v4) => (IpAddr::V6(v4.to_ipv6_compatible()), len + 96),
                v6 => (v6, len),
            };
            let data = db
                .insert_value(Row {
                    country_code,
                    state1,
                    city,
                })
                .unwrap();
            db.insert_node(IpAddrWithMask::new(addr, len), data);
        }
        let mut file = tempfile::NamedTempFile::new().unwrap();
        db.write_to(file.as_file_mut()).unwrap();
        file
    }

    #[test]
    fn flat_city_layout_names_become_iso_codes() {
        let file = flat_city_db(&[
            ("81.2.69.0/24", "GB", "England", "London"),
            ("2.24.0.0/16", "GB", "Scotland", "Edinburgh"),
            ("2.25.0.0/16", "GB", "Wales", "Cardiff"),
            ("8.8.8.0/24", "US", "California", "Mountain View"),
            ("216.160.83.56/29", "US", "Washington", "Milton"),
            ("89.160.20.112/28", "SE", "Östergötlands län", "Linköping"),
            ("175.16.199.0/24", "CN", "Jilin Sheng", "Changchun"),
            ("1.1.1.0/24", "AU", "New South Wales", "Sydney"),
            ("185.66.84.0/22", "DE", "Bavaria", "Munich"),
            ("202.196.224.0/20", "PH", "", ""),
            ("2a02:d300::/29", "DE", "HE", "Frankfurt am Main"),
        ]);
        let db = GeoDb::open(file.path()).unwrap();
        let at = |ip: &str| db.locate(ip.parse().unwrap());
        let region = |ip: &str| at(ip).region_code;
        assert_eq!(
            at("81.2.69.142"),
            Location {
                country_code: Some("GB".into()),
                region_code: Some("GB-ENG".into())
            }
        );
        assert_eq!(region("2.24.1.1").as_deref(), Some("GB-SCT"));
        assert_eq!(region("2.25.1.1").as_deref(), Some("GB-WLS"));
        assert_eq!(region("8.8.8.8").as_deref(), Some("US-CA"));
        assert_eq!(region("216.160.83.58").as_deref(), Some("US-WA"));
        assert_eq!(region("89.160.20.113").as_deref(), Some("SE-E"));
        assert_eq!(region("175.16.199.1").as_deref(), Some("CN-JL"));
        assert_eq!(region("1.1.1.1").as_deref(), Some("AU-NSW"));
        // A code already: kept when ISO knows it.
        assert_eq!(region("2a02:d300::1").as_deref(), Some("DE-HE"));
        // An English name ISO spells otherwise, or no name: the country only, never a guess.
        assert_eq!(
            at("185.66.84.1"),
            Location {
                country_code: Some("DE".into()),
                region_code: None
            }
        );
        assert_eq!(region("202.196.224.5"), None);
        assert_eq!(at("10.1.2.3"), Location::default());
    }

    #[test]
    fn region_names_meet_loosely_but_not_across_countries() {
        assert_eq!(region_code("US", "california").as_deref(), Some("US-CA"));
        assert_eq!(
            region_code("US", "State of New York").as_deref(),
            Some("US-NY")
        );
        assert_eq!(
            region_code("SE", "OSTERGOTLANDS LAN").as_deref(),
            Some("SE-E")
        );
        assert_eq!(region_code("GB", "California"), None);
        assert_eq!(region_code("US", "Atlantis"), None);
        assert_eq!(region_code("US", "ZZ"), None);
        assert_eq!(region_code("US", "TX").as_deref(), Some("US-TX"));
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
