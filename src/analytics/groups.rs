//! Which groups an answer shows: the top N by weighted events, with groups of fewer distinct
//! installs than the product's `min_group_installs` folded into "other" (k-anonymity); plus the
//! interner that gives values from separate scans one id space.

use rustc_hash::FxHashMap;
use std::borrow::Cow;
use std::hash::Hash;
use std::sync::Arc;

use crate::search::{Dictionary, ScanColumn, NO_VALUE};

/// The label of the folded group.
pub const OTHER: &str = "other";
/// The label of events without a value for a grouped field.
pub const NONE: &str = "(none)";

/// A candidate group: its key, weighted events and distinct installs.
pub struct Candidate<K> {
    pub key: K,
    pub weight: f64,
    pub installs: usize,
}

/// The chosen groups: `kept` in display order (weighted events descending), and whether some
/// groups were folded into "other".
#[derive(Debug, PartialEq)]
pub struct Selection<K: Eq + Hash> {
    pub kept: Vec<K>,
    /// Groups folded because they have fewer than `min_installs` distinct installs.
    pub suppressed: usize,
    /// Groups folded because they fell outside the top `limit`.
    pub beyond_limit: usize,
    slot: FxHashMap<K, usize>,
}

impl<K: Eq + Hash + Clone> Selection<K> {
    /// The output slot of `key`: its index in `kept`, or `kept.len()` for "other".
    pub fn slot(&self, key: &K) -> usize {
        self.slot.get(key).copied().unwrap_or(self.kept.len())
    }

    /// Whether an "other" group exists.
    pub fn has_other(&self) -> bool {
        self.suppressed + self.beyond_limit > 0
    }

    /// Number of output slots ("other" included when it exists).
    pub fn slots(&self) -> usize {
        self.kept.len() + usize::from(self.has_other())
    }
}

/// Folds groups under `min_installs` distinct installs (0 = no folding), then keeps the `limit`
/// heaviest; ties by key order.
pub fn select<K: Eq + Hash + Clone + Ord>(
    mut candidates: Vec<Candidate<K>>,
    limit: usize,
    min_installs: u32,
) -> Selection<K> {
    let before = candidates.len();
    candidates.retain(|c| min_installs == 0 || c.installs >= min_installs as usize);
    let suppressed = before - candidates.len();
    candidates.sort_by(|a, b| {
        b.weight
            .total_cmp(&a.weight)
            .then_with(|| a.key.cmp(&b.key))
    });
    let beyond_limit = candidates.len().saturating_sub(limit);
    candidates.truncate(limit);
    let kept: Vec<K> = candidates.into_iter().map(|c| c.key).collect();
    let slot = kept
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), i))
        .collect();
    Selection {
        kept,
        suppressed,
        beyond_limit,
        slot,
    }
}

/// One id space for a column across several scans. Scans of a column share their global ids
/// (see [`Dictionary::generation`]), so their ids are taken as they are; only when the
/// column's dictionary was rebuilt between two scans are the later scan's ids translated by
/// value.
#[derive(Default)]
pub struct Interner {
    /// The dictionary of this interner's ids (the largest seen of its generation).
    dictionary: Option<Arc<Dictionary>>,
    /// Values of rebuilt dictionaries, by value: ids beyond `dictionary`'s values.
    by_value: FxHashMap<String, u32>,
    extra: Vec<String>,
}

impl Interner {
    /// Every row's id of `column` in this interner.
    pub fn ids<'a>(&mut self, column: &'a ScanColumn) -> Cow<'a, [u32]> {
        let Some(mine) = &self.dictionary else {
            self.dictionary = Some(column.dictionary.clone());
            return Cow::Borrowed(&column.ids);
        };
        if mine.generation == column.dictionary.generation {
            // The same ids; a later dictionary of a generation extends the earlier ones (unless
            // translated values took the ids beyond this one's).
            if column.dictionary.len() <= mine.len() {
                return Cow::Borrowed(&column.ids);
            }
            if self.extra.is_empty() {
                self.dictionary = Some(column.dictionary.clone());
                return Cow::Borrowed(&column.ids);
            }
        }
        if self.by_value.is_empty() {
            for id in 0..mine.len() as u32 {
                if let Some(value) = mine.value(id) {
                    self.by_value.insert(value.to_string(), id);
                }
            }
        }
        let base = mine.len() as u32;
        let mut table: FxHashMap<u32, u32> = FxHashMap::default();
        let ids = column
            .ids
            .iter()
            .map(|id| match (*id, column.value(*id)) {
                (NO_VALUE, _) | (_, None) => NO_VALUE,
                (id, Some(value)) => {
                    *table
                        .entry(id)
                        .or_insert_with(|| match self.by_value.get(value) {
                            Some(mine) => *mine,
                            None => {
                                let new = base + self.extra.len() as u32;
                                self.by_value.insert(value.to_string(), new);
                                self.extra.push(value.to_string());
                                new
                            }
                        })
                }
            })
            .collect();
        Cow::Owned(ids)
    }

    /// The label of `id` ([`NONE`] for no value).
    pub fn label(&self, id: u32) -> String {
        let base = self.dictionary.as_ref().map_or(0, |d| d.len() as u32);
        let value = match &self.dictionary {
            Some(dictionary) if id < base => dictionary.value(id),
            _ => id
                .checked_sub(base)
                .and_then(|i| self.extra.get(i as usize))
                .map(String::as_str),
        };
        label(value)
    }
}

/// The label of a value (or of its absence).
pub fn label(value: Option<&str>) -> String {
    value.unwrap_or(NONE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(key: &str, weight: f64, installs: usize) -> Candidate<String> {
        Candidate {
            key: key.to_string(),
            weight,
            installs,
        }
    }

    #[test]
    fn small_groups_fold_and_the_rest_is_top_n() {
        let selection = select(
            vec![
                candidate("a", 10.0, 6),
                candidate("b", 50.0, 1),
                candidate("c", 30.0, 5),
                candidate("d", 20.0, 9),
            ],
            2,
            5,
        );
        assert_eq!(selection.kept, vec!["c".to_string(), "d".to_string()]);
        assert_eq!(selection.suppressed, 1);
        assert_eq!(selection.beyond_limit, 1);
        assert_eq!(selection.slot(&"b".to_string()), 2);
        assert_eq!(selection.slot(&"d".to_string()), 1);
        assert_eq!(selection.slots(), 3);
    }

    fn column(generation: u64, values: &[&str], ids: &[u32]) -> ScanColumn {
        ScanColumn {
            ids: ids.to_vec(),
            dictionary: Arc::new(Dictionary::of(generation, values)),
        }
    }

    #[test]
    fn scans_of_one_generation_keep_their_ids_and_a_rebuilt_one_is_translated() {
        let mut interner = Interner::default();
        let first = column(1, &["a", "b"], &[0, 1, NO_VALUE]);
        assert_eq!(&*interner.ids(&first), &[0, 1, NO_VALUE]);
        // The same generation, grown by a new value: the same ids.
        let grown = column(1, &["a", "b", "c"], &[2, 0]);
        assert_eq!(&*interner.ids(&grown), &[2, 0]);
        // Rebuilt: "c" is now 0 and "d" new; translated by value.
        let rebuilt = column(2, &["c", "d", "a"], &[0, 1, 2, 1, NO_VALUE]);
        assert_eq!(&*interner.ids(&rebuilt), &[2, 3, 0, 3, NO_VALUE]);
        let labels: Vec<String> = [0, 2, 3, NO_VALUE].map(|id| interner.label(id)).to_vec();
        assert_eq!(labels, ["a", "c", "d", NONE]);
    }

    #[test]
    fn zero_turns_folding_off() {
        let selection = select(vec![candidate("a", 1.0, 1)], 10, 0);
        assert_eq!(selection.kept, vec!["a".to_string()]);
        assert!(!selection.has_other());
        assert_eq!(selection.slots(), 1);
    }
}
