//! Admin authentication and authorisation: bearer tokens checked against SHA-256 hashes from the
//! config in constant time, the `viewer` / `admin` roles, each token's product scope, and the
//! bootstrap token written to the data dir when the config names none.
//!
//! Every admin handler extracts a [`Caller`]; its methods are the one place the role and the
//! product scope are checked: `require_admin` (writes), `require_all_products` (operations that
//! span every product: backups, purges, clustering runs, process-wide counters), `scope_for`
//! (the caller's scope narrowed to a requested product, for domain code to filter by) and
//! `check_product` (an object of a product outside the scope is `not_found`, never `forbidden`,
//! so a scoped token learns nothing about other products).

use std::future::{ready, Ready};
use std::path::Path;

use actix_web::{web, FromRequest, HttpRequest};

use sha2::{Digest, Sha256};

use crate::config::{AdminToken, Role};
use crate::hash::{hash_token, parse_token_hash};
use crate::http::error::ApiError;
use crate::scope::{OutOfScope, Scope};
use crate::AppState;

pub const BOOTSTRAP_TOKEN_FILE: &str = "admin-token";

/// A new random token (from the OS random source).
pub fn generate_token() -> String {
    format!(
        "td_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

struct KnownToken {
    caller: Caller,
    digest: [u8; 32],
}

/// The configured tokens, ready to verify.
pub struct TokenSet {
    tokens: Vec<KnownToken>,
}

impl TokenSet {
    pub fn new(tokens: &[AdminToken]) -> TokenSet {
        TokenSet {
            tokens: tokens
                .iter()
                .filter_map(|t| {
                    Some(KnownToken {
                        caller: Caller {
                            name: t.name.clone(),
                            role: t.role,
                            scope: Scope::only(t.products.iter().cloned()),
                        },
                        digest: parse_token_hash(&t.hash)?,
                    })
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The token's name, role and scope; every configured hash is compared, in constant time
    /// each.
    pub fn verify(&self, presented: &str) -> Option<Caller> {
        let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        let mut found = None;
        for token in &self.tokens {
            if constant_time_eq(&digest, &token.digest) {
                found = Some(token.caller.clone());
            }
        }
        found
    }

    /// With no token configured, a generated admin token kept in `data_dir/admin-token`
    /// (created once, readable by the owner only) lets the operator sign in.
    pub fn with_bootstrap(
        tokens: &[AdminToken],
        data_dir: &Path,
    ) -> std::io::Result<(TokenSet, Option<std::path::PathBuf>)> {
        if !tokens.is_empty() {
            return Ok((TokenSet::new(tokens), None));
        }
        let path = data_dir.join(BOOTSTRAP_TOKEN_FILE);
        let token = match std::fs::read_to_string(&path) {
            Ok(existing) if !existing.trim().is_empty() => existing.trim().to_string(),
            _ => {
                let token = generate_token();
                write_private(&path, &token)?;
                token
            }
        };
        let bootstrap = AdminToken {
            name: "bootstrap".into(),
            role: Role::Admin,
            hash: hash_token(&token),
            products: Vec::new(),
        };
        Ok((TokenSet::new(&[bootstrap]), Some(path)))
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    writeln!(file, "{contents}")
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// An authenticated admin-API caller (either role, any scope). Extract it to require a token.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    /// The products the token sees and changes.
    pub scope: Scope,
}

impl Caller {
    /// Fails with `403` unless the caller has the `admin` role.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Viewer => Err(ApiError::Forbidden(self.name.clone())),
        }
    }

    /// Fails with `403` unless the caller's scope is every product (an operation or a figure
    /// that cannot be split by product).
    pub fn require_all_products(&self) -> Result<(), ApiError> {
        if self.scope.is_all() {
            Ok(())
        } else {
            Err(ApiError::NeedsAllProducts(self.name.clone()))
        }
    }

    /// `require_admin` and `require_all_products`: global operations (backups, purges,
    /// clustering runs).
    pub fn require_global_admin(&self) -> Result<(), ApiError> {
        self.require_admin()?;
        self.require_all_products()
    }

    /// The products a request may reach: the caller's scope, narrowed to the product it names
    /// (none or empty: the whole scope); a product outside the scope is `not_found`.
    pub fn scope_for(&self, requested: Option<&str>) -> Result<Scope, OutOfScope> {
        self.scope.narrow(requested)
    }

    /// The one product a per-product request is about: the one named (which must be in scope),
    /// else the only product the caller sees; otherwise `product` is required.
    pub fn one_product<'a>(
        &self,
        requested: Option<&str>,
        products: impl Iterator<Item = &'a str>,
    ) -> Result<String, ApiError> {
        match requested.map(str::trim).filter(|p| !p.is_empty()) {
            Some(product) => {
                self.scope_for(Some(product))?;
                Ok(product.to_string())
            }
            None => {
                let visible: Vec<&str> = products.filter(|p| self.scope.allows(p)).collect();
                match visible.as_slice() {
                    [only] => Ok(only.to_string()),
                    _ => Err(ApiError::invalid_parameter("product", "is required")),
                }
            }
        }
    }

    /// `not_found` (with `what` as the thing not found) unless `product` is in scope.
    pub fn check_product(
        &self,
        product: &str,
        what: impl FnOnce() -> String,
    ) -> Result<(), ApiError> {
        if self.scope.allows(product) {
            Ok(())
        } else {
            Err(ApiError::NotFound(what()))
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

fn app_state(req: &HttpRequest) -> Result<&web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal("application state missing".into()))
}

/// The bearer token of the request.
fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or(ApiError::MissingToken)?;
    let value = header.to_str().map_err(|_| ApiError::InvalidToken)?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(ApiError::InvalidToken)
}

fn authenticate(req: &HttpRequest) -> Result<Caller, ApiError> {
    let state = app_state(req)?;
    state
        .tokens
        .verify(bearer(req)?)
        .ok_or(ApiError::InvalidToken)
}

/// A reader of the Prometheus metrics: anyone, or with `[metrics] token_hash` set, only a
/// request bearing that token (`401` otherwise). Extract it to guard `/metrics`.
pub struct MetricsReader;

impl FromRequest for MetricsReader {
    type Error = ApiError;
    type Future = Ready<Result<MetricsReader, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(metrics_reader(req))
    }
}

fn metrics_reader(req: &HttpRequest) -> Result<MetricsReader, ApiError> {
    let state = app_state(req)?;
    let Some(hash) = state.config.metrics.token_hash.as_deref() else {
        return Ok(MetricsReader);
    };
    let expected = parse_token_hash(hash)
        .ok_or_else(|| ApiError::Internal("metrics.token_hash does not parse".into()))?;
    let digest: [u8; 32] = Sha256::digest(bearer(req)?.trim().as_bytes()).into();
    if constant_time_eq(&digest, &expected) {
        Ok(MetricsReader)
    } else {
        Err(ApiError::InvalidToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_round_trip_and_roles() {
        let hash = hash_token("s3cret-token");
        assert!(hash.starts_with("sha256:") && hash.len() == 71);
        assert!(parse_token_hash(&hash).is_some());
        assert!(parse_token_hash("sha256:zz").is_none());
        let set = TokenSet::new(&[
            AdminToken {
                name: "ops".into(),
                role: Role::Admin,
                hash,
                products: Vec::new(),
            },
            AdminToken {
                name: "view".into(),
                role: Role::Viewer,
                hash: hash_token("viewer-token"),
                products: vec!["voice-sdk".into()],
            },
        ]);
        let ops = set.verify("s3cret-token").unwrap();
        assert_eq!((ops.name.as_str(), ops.role), ("ops", Role::Admin));
        assert!(ops.scope.is_all() && ops.require_global_admin().is_ok());
        let view = set.verify("viewer-token").unwrap();
        assert_eq!((view.name.as_str(), view.role), ("view", Role::Viewer));
        assert_eq!(view.scope, Scope::only(["voice-sdk"]));
        assert!(view.require_all_products().is_err());
        assert!(view.check_product("desktop", || "x".into()).is_err());
        assert!(view.scope_for(Some("desktop")).is_err());
        assert_eq!(set.verify("wrong"), None);
    }

    #[test]
    fn bootstrap_token_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let (set, path) = TokenSet::with_bootstrap(&[], dir.path()).unwrap();
        let token = std::fs::read_to_string(path.unwrap()).unwrap();
        assert!(set.verify(token.trim()).is_some());
        let (again, _) = TokenSet::with_bootstrap(&[], dir.path()).unwrap();
        assert!(again.verify(token.trim()).is_some());
    }
}
