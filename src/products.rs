//! The product registry: every configured `[[products]]` entry compiled once at start (its
//! keys, retention, rate limit, ingest rules and the web origins it allows), and which product
//! a client request is for. Ingest, retention, privacy, the policy endpoint and CORS all read
//! it; nothing changes it at run time.

use std::collections::HashMap;

use crate::config::{CompatFormat, Config, ConfigError};
use crate::error::{Code, ErrorCode};
use crate::ingest::ProductRules;
use crate::net::AllowedOrigins;

/// One configured product.
#[derive(Debug)]
pub struct Product {
    /// Position in the config (and in [`Products::all`]).
    pub index: usize,
    pub id: String,
    pub ingest_keys: Vec<String>,
    pub retention_days: u32,
    pub rate_limit_per_minute: u32,
    /// Events per second the product takes in all (`0`: no cap).
    pub max_events_per_second: u32,
    /// Analytics groups with fewer distinct installs are folded into "other" (0 = off).
    pub min_group_installs: u32,
    /// The OTLP resource or record attribute that carries the install id.
    pub otlp_install_id_attribute: Option<String>,
    /// Its schema, flat mapping and privacy actions, compiled for the ingest hot path.
    pub rules: ProductRules,
    /// Web origins whose pages may call the client endpoints for it (CORS).
    pub cors_origins: AllowedOrigins,
}

impl Product {
    pub fn requires_key(&self) -> bool {
        !self.ingest_keys.is_empty()
    }
}

/// Why a request's product could not be told.
#[derive(Debug, thiserror::Error)]
pub enum ProductError {
    #[error(
        "no product given: send the product's ingest key in X-Telemetry-Key or add ?product=ID"
    )]
    Missing,
    #[error("unknown product `{0}`")]
    Unknown(String),
    #[error("product `{0}` requires an ingest key in the X-Telemetry-Key header")]
    MissingKey(String),
    #[error("the ingest key is not valid for this product")]
    InvalidKey,
    /// A request of another service's SDK with neither its key nor a product.
    #[error("no product given: send {sent_as}, listed in `[products.compat] {config_key}`; or the product's ingest key in X-Telemetry-Key, or ?product=ID")]
    MissingCompatKey {
        sent_as: &'static str,
        config_key: &'static str,
    },
    /// A key of another service's SDK (a PostHog token, an Aptabase app key) no product lists.
    #[error("no product lists this key in `[products.compat] {config_key}`")]
    UnknownCompatKey { config_key: &'static str },
}

impl ErrorCode for ProductError {
    fn error_code(&self) -> Code {
        match self {
            ProductError::Missing | ProductError::MissingCompatKey { .. } => Code::MissingProduct,
            ProductError::Unknown(_) => Code::UnknownProduct,
            ProductError::MissingKey(_) => Code::MissingIngestKey,
            ProductError::InvalidKey | ProductError::UnknownCompatKey { .. } => {
                Code::InvalidIngestKey
            }
        }
    }
}

#[derive(Debug)]
pub struct Products {
    list: Vec<Product>,
    by_key: HashMap<String, usize>,
    /// OTLP `service.name` → product.
    by_service: HashMap<String, usize>,
    /// Another service's SDK key (normalized) → product.
    by_compat: HashMap<(CompatFormat, String), usize>,
}

impl Products {
    pub fn compile(config: &Config) -> Result<Products, ConfigError> {
        let mut list = Vec::with_capacity(config.products.len());
        let mut by_key = HashMap::new();
        let mut by_service = HashMap::new();
        let mut by_compat = HashMap::new();
        for (index, product) in config.products.iter().enumerate() {
            let rules =
                ProductRules::compile(product, config).map_err(|e| ConfigError::Invalid {
                    key: format!("products[{index}].schema.patterns"),
                    reason: e.to_string(),
                })?;
            let cors_origins = product.allowed_origins(&|k| format!("products[{index}].{k}"))?;
            for key in &product.ingest_keys {
                by_key.insert(key.clone(), index);
            }
            for service in &product.otlp.service_names {
                by_service.insert(service.clone(), index);
            }
            for (format, keys) in product.compat.by_format() {
                for key in keys {
                    by_compat.insert((format, format.normalize(key)), index);
                }
            }
            list.push(Product {
                index,
                id: product.id.clone(),
                ingest_keys: product.ingest_keys.clone(),
                retention_days: product.retention_days,
                rate_limit_per_minute: product
                    .rate_limit_per_minute
                    .unwrap_or(config.limits.rate_limit_per_minute),
                max_events_per_second: product.max_events_per_second,
                min_group_installs: product.min_group_installs,
                otlp_install_id_attribute: product.otlp.install_id_attribute.clone(),
                rules,
                cors_origins,
            });
        }
        Ok(Products {
            list,
            by_key,
            by_service,
            by_compat,
        })
    }

    pub fn all(&self) -> &[Product] {
        &self.list
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|p| p.id.as_str())
    }

    /// The k-anonymity bound of an answer over the products of `scope`: the strictest
    /// `min_group_installs` among them.
    pub fn min_group_installs(&self, scope: &crate::scope::Scope) -> u32 {
        self.list
            .iter()
            .filter(|p| scope.allows(&p.id))
            .map(|p| p.min_group_installs)
            .max()
            .unwrap_or(0)
    }

    pub fn get(&self, id: &str) -> Option<&Product> {
        self.list.iter().find(|p| p.id == id)
    }

    pub fn at(&self, index: usize) -> Option<&Product> {
        self.list.get(index)
    }

    /// [`Products::resolve`], and when the request names no product, the one an OTLP sender's
    /// `service.name` selects (`[products.otlp] service_names`). The product's key rule holds
    /// either way.
    pub fn resolve_or_service(
        &self,
        param: Option<&str>,
        key: Option<&str>,
        service_name: Option<&str>,
    ) -> Result<&Product, ProductError> {
        let by_service = service_name
            .and_then(|name| self.by_service.get(name))
            .map(|i| &self.list[*i]);
        match (self.resolve(param, key), by_service) {
            (Err(ProductError::Missing), Some(product)) if product.requires_key() => {
                Err(ProductError::MissingKey(product.id.clone()))
            }
            (Err(ProductError::Missing), Some(product)) => Ok(product),
            (result, _) => result,
        }
    }

    /// The product the key of another service's SDK selects (a PostHog token, an Aptabase app
    /// key), which stands in for the product's ingest key; a product the request also names
    /// (`?product=`) must be the same. Without such a key, [`Products::resolve`].
    pub fn resolve_compat(
        &self,
        format: CompatFormat,
        compat_key: Option<&str>,
        param: Option<&str>,
        key: Option<&str>,
    ) -> Result<&Product, ProductError> {
        let Some(compat_key) = compat_key.filter(|k| !k.trim().is_empty()) else {
            return self.resolve(param, key).map_err(|e| match e {
                ProductError::Missing => ProductError::MissingCompatKey {
                    sent_as: format.key_source(),
                    config_key: format.config_key(),
                },
                other => other,
            });
        };
        let product = self
            .by_compat
            .get(&(format, format.normalize(compat_key)))
            .map(|i| &self.list[*i])
            .ok_or(ProductError::UnknownCompatKey {
                config_key: format.config_key(),
            })?;
        if param.is_some_and(|id| id != product.id) {
            return Err(ProductError::InvalidKey);
        }
        Ok(product)
    }

    /// The product an ingest key belongs to.
    pub fn for_key(&self, key: &str) -> Option<&Product> {
        self.by_key.get(key).map(|i| &self.list[*i])
    }

    /// Whether a browser page on `origin` may call a client endpoint (CORS). The product the
    /// request names decides: the one its ingest key belongs to, else the one `id` names (from
    /// `?product=` or the path). When it names none this registry knows — as in a preflight,
    /// which carries no key — the origin is allowed if any product allows it.
    pub fn allows_origin(&self, origin: &str, key: Option<&str>, id: Option<&str>) -> bool {
        let named = key
            .and_then(|key| self.for_key(key))
            .or_else(|| id.and_then(|id| self.get(id)));
        match named {
            Some(product) => product.cors_origins.allows(origin),
            None => self.list.iter().any(|p| p.cors_origins.allows(origin)),
        }
    }

    /// The product a request is for: from its ingest key, or `?product=` (which must agree with
    /// the key when both are given). With a single product configured it is the default.
    pub fn resolve(
        &self,
        param: Option<&str>,
        key: Option<&str>,
    ) -> Result<&Product, ProductError> {
        let by_param = match param {
            Some(id) => Some(
                self.get(id)
                    .ok_or_else(|| ProductError::Unknown(id.chars().take(64).collect()))?,
            ),
            None => None,
        };
        let by_key = match key {
            Some(key) => Some(self.for_key(key).ok_or(ProductError::InvalidKey)?),
            None => None,
        };
        let product = match (by_param, by_key) {
            (Some(p), Some(k)) if p.index != k.index => return Err(ProductError::InvalidKey),
            (_, Some(k)) => k,
            (Some(p), None) => p,
            (None, None) if self.list.len() == 1 => &self.list[0],
            (None, None) => return Err(ProductError::Missing),
        };
        if product.requires_key() && by_key.is_none() {
            return Err(ProductError::MissingKey(product.id.clone()));
        }
        Ok(product)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn products(text: &str) -> Products {
        Products::compile(&Config::from_toml(text).unwrap()).unwrap()
    }

    const KEYED: &str = "[[products]]\nid = \"web\"\ningest_keys = [\"web-key-0123\"]\ncors_origins = [\"https://app.example.com\"]\n\n[[products]]\nid = \"backend\"\ningest_keys = [\"backend-key-0123\"]\n";

    #[test]
    fn compat_keys_select_their_product_in_place_of_its_ingest_key() {
        let p = products(&format!(
            "{KEYED}[products.compat]\nposthog_tokens = [\"phc_backend\"]\naptabase_app_keys = [\"A-SH-42\"]\n"
        ));
        let resolve = |format, compat: Option<&str>, param: Option<&str>| {
            p.resolve_compat(format, compat, param, None)
                .map(|p| p.id.as_str())
        };
        assert_eq!(
            resolve(CompatFormat::PostHog, Some("phc_backend"), None).unwrap(),
            "backend"
        );
        // Aptabase app keys match in any case, as Aptabase upper-cases them.
        assert_eq!(
            resolve(CompatFormat::Aptabase, Some("a-sh-42"), Some("backend")).unwrap(),
            "backend"
        );
        // A token of one format is not a key of the other, nor of another product.
        let err = resolve(CompatFormat::Aptabase, Some("phc_backend"), None).unwrap_err();
        assert_eq!(err.error_code(), Code::InvalidIngestKey);
        assert!(err.to_string().contains("aptabase_app_keys"), "{err}");
        let err = resolve(CompatFormat::PostHog, Some("phc_backend"), Some("web")).unwrap_err();
        assert_eq!(err.error_code(), Code::InvalidIngestKey);
        // Without one, the product's own rules: its ingest key is required.
        let err = resolve(CompatFormat::PostHog, None, Some("backend")).unwrap_err();
        assert_eq!(err.error_code(), Code::MissingIngestKey);
        // Neither a key nor a product: the error names the SDK's own key and where it is listed.
        let err = resolve(CompatFormat::Aptabase, None, None).unwrap_err();
        assert_eq!(err.error_code(), Code::MissingProduct);
        let message = err.to_string();
        assert!(message.contains("App-Key header"), "{message}");
        assert!(message.contains("aptabase_app_keys"), "{message}");
    }

    #[test]
    fn the_named_product_decides_the_origin() {
        let p = products(KEYED);
        let app = "https://app.example.com";
        assert!(p.allows_origin(app, Some("web-key-0123"), None));
        assert!(p.allows_origin(app, None, Some("web")));
        assert!(!p.allows_origin("https://evil.example", None, Some("web")));
        // A keyed product without `cors_origins` allows none; the key outranks `?product=`.
        assert!(!p.allows_origin(app, None, Some("backend")));
        assert!(!p.allows_origin(app, Some("backend-key-0123"), Some("web")));
    }

    #[test]
    fn without_a_known_product_any_product_may_allow() {
        let p = products(KEYED);
        let app = "https://app.example.com";
        assert!(p.allows_origin(app, None, None));
        assert!(p.allows_origin(app, Some("no-such-key"), Some("no-such-product")));
        assert!(!p.allows_origin("https://evil.example", None, None));
        let with_open = products(&format!("{KEYED}\n[[products]]\nid = \"open\"\n"));
        assert_eq!(
            with_open.get("open").unwrap().cors_origins,
            AllowedOrigins::Any
        );
        assert!(with_open.allows_origin("https://evil.example", None, None));
        assert!(with_open.allows_origin("https://evil.example", None, Some("open")));
        assert!(!with_open.allows_origin("https://evil.example", None, Some("web")));
    }
}
