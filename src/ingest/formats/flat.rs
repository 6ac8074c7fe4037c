//! Flat events: a bare JSON array of flat objects, as SDKs such as the voice-AI SDK send them
//! (`event`, `install_id`, `run_id`, `sdk_version`, `os`, plus dimensions). Their keys reach the
//! canonical fields through the product's `[mapping]` (flat key → field name). The body itself is
//! read by the native format, which accepts both shapes in one request; an event that used any
//! mapped key is stored with `source = flat`.

use std::collections::HashMap;

use crate::model::Field;

/// A product's `[mapping]`, compiled.
#[derive(Debug, Default)]
pub struct FlatMapping {
    fields: HashMap<String, Field>,
}

impl FlatMapping {
    /// Entries naming no canonical field are left out (config validation reports them).
    pub fn compile<'a>(mapping: impl IntoIterator<Item = (&'a String, &'a String)>) -> Self {
        let fields = mapping
            .into_iter()
            .filter_map(|(flat_key, field)| {
                Field::from_name(field).map(|field| (flat_key.clone(), field))
            })
            .collect();
        FlatMapping { fields }
    }

    /// The canonical field a flat key stands for.
    pub fn field(&self, key: &str) -> Option<Field> {
        if self.fields.is_empty() {
            return None;
        }
        self.fields.get(key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_known_fields_only() {
        let config: Vec<(String, String)> = vec![
            ("event".into(), "name".into()),
            ("sdk_version".into(), "app_version".into()),
            ("weird".into(), "not_a_field".into()),
        ];
        let mapping = FlatMapping::compile(config.iter().map(|(a, b)| (a, b)));
        assert_eq!(mapping.field("event"), Some(Field::Name));
        assert_eq!(mapping.field("sdk_version"), Some(Field::AppVersion));
        assert_eq!(mapping.field("weird"), None);
        assert_eq!(mapping.field("name"), None);
    }
}
