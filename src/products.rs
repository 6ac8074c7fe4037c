//! The product registry: every configured `[[products]]` entry compiled once at start (its
//! keys, retention, rate limit, ingest rules and the web origins it allows), and which product
//! a client request is for. Ingest, retention, privacy, the policy endpoint and CORS all read
//! it; nothing changes it at run time.

use std::collections::HashMap;

use crate::config::{Config, ConfigError};
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
}

impl ErrorCode for ProductError {
    fn error_code(&self) -> Code {
        match self {
            ProductError::Missing => Code::MissingProduct,
            ProductError::Unknown(_) => Code::UnknownProduct,
            ProductError::MissingKey(_) => Code::MissingIngestKey,
            ProductError::InvalidKey => Code::InvalidIngestKey,
        }
    }
}

#[derive(Debug)]
pub struct Products {
    list: Vec<Product>,
    by_key: HashMap<String, usize>,
    /// OTLP `service.name` → product.
    by_service: HashMap<String, usize>,
}

impl Products {
    pub fn compile(config: &Config) -> Result<Products, ConfigError> {
        let mut list = Vec::with_capacity(config.products.len());
        let mut by_key = HashMap::new();
        let mut by_service = HashMap::new();
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
            list.push(Product {
                index,
                id: product.id.clone(),
                ingest_keys: product.ingest_keys.clone(),
                retention_days: product.retention_days,
                rate_limit_per_minute: product
                    .rate_limit_per_minute
                    .unwrap_or(config.limits.rate_limit_per_minute),
                max_events_per_second: product.max_events_per_second,
                otlp_install_id_attribute: product.otlp.install_id_attribute.clone(),
                rules,
                cors_origins,
            });
        }
        Ok(Products {
            list,
            by_key,
            by_service,
        })
    }

    pub fn all(&self) -> &[Product] {
        &self.list
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|p| p.id.as_str())
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
