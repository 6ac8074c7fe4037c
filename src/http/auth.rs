//! Admin authentication: bearer tokens checked against SHA-256 hashes from the config in
//! constant time, the `viewer` / `admin` roles, and the bootstrap token written to the data dir
//! when the config names none.

use std::future::{ready, Ready};
use std::path::Path;

use actix_web::{web, FromRequest, HttpRequest};

use sha2::{Digest, Sha256};

use crate::config::{AdminToken, Role};
use crate::hash::{hash_token, parse_token_hash};
use crate::http::error::ApiError;
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
    name: String,
    role: Role,
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
                        name: t.name.clone(),
                        role: t.role,
                        digest: parse_token_hash(&t.hash)?,
                    })
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The token's name and role; every configured hash is compared, in constant time each.
    pub fn verify(&self, presented: &str) -> Option<(String, Role)> {
        let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        let mut found = None;
        for token in &self.tokens {
            if constant_time_eq(&digest, &token.digest) {
                found = Some((token.name.clone(), token.role));
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

/// An authenticated admin-API caller (either role). Extract it to require a token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// Fails with `403` unless the caller has the `admin` role.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Viewer => Err(ApiError::Forbidden(self.name.clone())),
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

fn authenticate(req: &HttpRequest) -> Result<Caller, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal("application state missing".into()))?;
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or(ApiError::MissingToken)?;
    let value = header.to_str().map_err(|_| ApiError::InvalidToken)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(ApiError::InvalidToken)?;
    let (name, role) = state.tokens.verify(token).ok_or(ApiError::InvalidToken)?;
    Ok(Caller { name, role })
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
            },
            AdminToken {
                name: "view".into(),
                role: Role::Viewer,
                hash: hash_token("viewer-token"),
            },
        ]);
        assert_eq!(
            set.verify("s3cret-token"),
            Some(("ops".into(), Role::Admin))
        );
        assert_eq!(
            set.verify("viewer-token"),
            Some(("view".into(), Role::Viewer))
        );
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
