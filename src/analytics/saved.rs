//! Saved analytics queries: a named query spec of one product, optionally pinned to the
//! product's dashboard. The record, the body of a create or an edit, and their validation (the
//! spec must be one `POST /api/v1/analytics/query` accepts). Storage lives in
//! `store::saved_queries`, HTTP in `http::saved_queries`.

use serde::{Deserialize, Serialize};

use super::{AnalyticsError, Query};

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 120;

/// A saved query as stored and answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SavedQuery {
    pub id: String,
    pub product: String,
    pub name: String,
    /// The spec's members (without `product`), as sent to `POST /api/v1/analytics/query`.
    #[schema(value_type = crate::analytics::Query)]
    pub query: serde_json::Value,
    /// Shown on the product's dashboard.
    pub pinned: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// The name of the token that saved it.
    pub created_by: String,
}

/// The body of a create (`product`, `name` and `query` required) or of an edit (any member;
/// `product` may not change).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SavedDraft {
    pub product: Option<String>,
    pub name: Option<String>,
    #[schema(value_type = Option<crate::analytics::Query>)]
    pub query: Option<serde_json::Value>,
    pub pinned: Option<bool>,
}

impl SavedDraft {
    pub fn from_json(body: &[u8]) -> Result<SavedDraft, AnalyticsError> {
        serde_json::from_slice(body).map_err(|e| AnalyticsError::Shape {
            message: e.to_string(),
            member: None,
        })
    }
}

/// A new saved query of `product` from a draft.
pub fn create(
    draft: SavedDraft,
    product: String,
    id: String,
    actor: &str,
    now_ms: i64,
) -> Result<SavedQuery, AnalyticsError> {
    let name = draft
        .name
        .ok_or_else(|| AnalyticsError::invalid("name", "is required"))?;
    let query = draft
        .query
        .ok_or_else(|| AnalyticsError::invalid("query", "is required"))?;
    Ok(SavedQuery {
        id,
        product,
        name: valid_name(&name)?,
        query: valid_query(query)?,
        pinned: draft.pinned.unwrap_or(false),
        created_at: now_ms,
        updated_at: now_ms,
        created_by: actor.to_string(),
    })
}

/// `saved` with the draft's members applied.
pub fn edit(
    saved: &SavedQuery,
    draft: SavedDraft,
    now_ms: i64,
) -> Result<SavedQuery, AnalyticsError> {
    if draft.product.as_ref().is_some_and(|p| *p != saved.product) {
        return Err(AnalyticsError::invalid(
            "product",
            "a saved query stays in its product",
        ));
    }
    let mut edited = saved.clone();
    if let Some(name) = draft.name {
        edited.name = valid_name(&name)?;
    }
    if let Some(query) = draft.query {
        edited.query = valid_query(query)?;
    }
    if let Some(pinned) = draft.pinned {
        edited.pinned = pinned;
    }
    edited.updated_at = now_ms;
    Ok(edited)
}

/// A new saved-query id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn valid_name(name: &str) -> Result<String, AnalyticsError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AnalyticsError::invalid("name", "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(AnalyticsError::invalid(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(AnalyticsError::invalid(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(name.to_string())
}

/// The spec, checked the way the query endpoint checks it (the product is the saved query's).
fn valid_query(query: serde_json::Value) -> Result<serde_json::Value, AnalyticsError> {
    if query.get("product").is_some() {
        return Err(AnalyticsError::invalid(
            "query.product",
            "the product is the saved query's `product`",
        ));
    }
    Query::from_json(query.clone())?;
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn draft(body: serde_json::Value) -> SavedDraft {
        SavedDraft::from_json(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn create_checks_name_and_spec() {
        let saved = create(
            draft(
                json!({"name": "  Weekly opens ", "query": {"kind": "trend", "measure": "events"}}),
            ),
            "app".into(),
            "id1".into(),
            "ops",
            5,
        )
        .unwrap();
        assert_eq!(saved.name, "Weekly opens");
        assert!(!saved.pinned);
        assert_eq!((saved.created_at, saved.updated_at), (5, 5));
        let invalid = |body: serde_json::Value| match create(
            draft(body),
            "app".into(),
            "id".into(),
            "ops",
            5,
        ) {
            Err(AnalyticsError::Invalid { member, .. }) => member,
            Err(AnalyticsError::Shape { member, .. }) => member.unwrap_or_default(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            invalid(json!({"query": {"kind": "active_installs"}})),
            "name"
        );
        assert_eq!(
            invalid(json!({"name": " ", "query": {"kind": "active_installs"}})),
            "name"
        );
        assert_eq!(invalid(json!({"name": "x"})), "query");
        assert_eq!(
            invalid(json!({"name": "x", "query": {"kind": "active_installs", "colour": 1}})),
            "colour"
        );
        assert_eq!(
            invalid(json!({"name": "x", "query": {"kind": "active_installs", "product": "b"}})),
            "query.product"
        );
        assert!(SavedDraft::from_json(br#"{"name": "x", "pinnned": true}"#).is_err());
    }

    #[test]
    fn edit_keeps_what_the_draft_leaves_out() {
        let saved = create(
            draft(json!({"name": "a", "query": {"kind": "active_installs"}})),
            "app".into(),
            "id1".into(),
            "ops",
            5,
        )
        .unwrap();
        let edited = edit(&saved, draft(json!({"pinned": true})), 9).unwrap();
        assert_eq!((edited.name.as_str(), edited.pinned), ("a", true));
        assert_eq!((edited.created_at, edited.updated_at), (5, 9));
        let renamed = edit(&edited, draft(json!({"name": "b", "product": "app"})), 10).unwrap();
        assert_eq!(renamed.name, "b");
        assert!(edit(&saved, draft(json!({"product": "other"})), 9).is_err());
    }
}
