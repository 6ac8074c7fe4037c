//! Product scope: which products a caller may see and change (an admin token's `products`, or
//! that narrowed to the one product a request asks for). Domain code takes a `Scope` as a
//! filter over its products; it knows nothing of tokens or HTTP.
//!
//! A product outside the scope does not exist for the caller: naming one answers `not_found`,
//! as does any object (event, trace, cluster, policy) of such a product.

use std::collections::BTreeSet;

use crate::error::{Code, ErrorCode};

/// Every product, or only the ones listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// `None`: every product.
    only: Option<BTreeSet<String>>,
}

/// A product named by a request lies outside the caller's scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("product `{0}` is outside the token's scope")]
pub struct OutOfScope(pub String);

impl ErrorCode for OutOfScope {
    fn error_code(&self) -> Code {
        Code::NotFound
    }
}

impl Scope {
    /// Every product.
    pub fn all() -> Scope {
        Scope::default()
    }

    /// Only `products`; an empty list means every product (as in the config).
    pub fn only<S: Into<String>>(products: impl IntoIterator<Item = S>) -> Scope {
        let set: BTreeSet<String> = products.into_iter().map(Into::into).collect();
        Scope {
            only: (!set.is_empty()).then_some(set),
        }
    }

    /// True when the scope spans every product (global operations need it).
    pub fn is_all(&self) -> bool {
        self.only.is_none()
    }

    pub fn allows(&self, product: &str) -> bool {
        self.only.as_ref().is_none_or(|set| set.contains(product))
    }

    /// The listed products, or `None` for every product.
    pub fn products(&self) -> Option<&BTreeSet<String>> {
        self.only.as_ref()
    }

    /// True when every product of `products` is in scope and the list names at least one (an
    /// entry about no product in particular concerns every product).
    pub fn covers<'a>(&self, mut products: impl Iterator<Item = &'a str>) -> bool {
        match &self.only {
            None => true,
            Some(set) => {
                let mut any = false;
                let inside = products.all(|p| {
                    any = true;
                    set.contains(p)
                });
                any && inside
            }
        }
    }

    /// This scope narrowed to the product a request names (none or empty: unchanged).
    pub fn narrow(&self, requested: Option<&str>) -> Result<Scope, OutOfScope> {
        match requested.map(str::trim).filter(|p| !p.is_empty()) {
            None => Ok(self.clone()),
            Some(product) if self.allows(product) => Ok(Scope::only([product])),
            Some(product) => Err(OutOfScope(product.chars().take(64).collect())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_and_listed_products() {
        let all = Scope::all();
        assert!(all.is_all() && all.allows("voice-sdk"));
        assert_eq!(Scope::only(Vec::<String>::new()), all);
        let voice = Scope::only(["voice-sdk"]);
        assert!(!voice.is_all());
        assert!(voice.allows("voice-sdk") && !voice.allows("desktop"));
        assert!(voice.covers(["voice-sdk"].into_iter()));
        assert!(!voice.covers(["voice-sdk", "desktop"].into_iter()));
        assert!(!voice.covers(std::iter::empty()));
        assert!(all.covers(std::iter::empty()));
    }

    #[test]
    fn narrowing_to_a_requested_product() {
        let both = Scope::only(["a", "b"]);
        assert_eq!(both.narrow(None).unwrap(), both);
        assert_eq!(both.narrow(Some(" ")).unwrap(), both);
        assert_eq!(both.narrow(Some("a")).unwrap(), Scope::only(["a"]));
        assert_eq!(both.narrow(Some("c")), Err(OutOfScope("c".into())));
        assert_eq!(Scope::all().narrow(Some("c")).unwrap(), Scope::only(["c"]));
    }
}
