//! Which groups an answer shows: the top N by weighted events, with groups of fewer distinct
//! installs than the product's `min_group_installs` folded into "other" (k-anonymity); plus the
//! interner that gives values from separate scans one id space.

use rustc_hash::FxHashMap;
use std::hash::Hash;

use crate::search::{ScanColumn, NO_VALUE};

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

/// Gives the values of several scans' columns one id space.
#[derive(Default)]
pub struct Interner {
    ids: FxHashMap<String, u32>,
    pub values: Vec<String>,
}

impl Interner {
    /// The id of every value of `column` (index = the column's id), in this interner.
    pub fn translate(&mut self, column: &ScanColumn) -> Vec<u32> {
        column
            .values
            .iter()
            .map(|value| match self.ids.get(value) {
                Some(id) => *id,
                None => {
                    let id = self.values.len() as u32;
                    self.ids.insert(value.clone(), id);
                    self.values.push(value.clone());
                    id
                }
            })
            .collect()
    }

    /// The label of `id` ([`NONE`] for no value).
    pub fn label(&self, id: u32) -> String {
        label(self.values.get(id as usize).map(String::as_str))
    }
}

/// The label of a value (or of its absence).
pub fn label(value: Option<&str>) -> String {
    value.unwrap_or(NONE).to_string()
}

/// `id` through a translation table from [`Interner::translate`].
pub fn through(table: &[u32], id: u32) -> u32 {
    if id == NO_VALUE {
        NO_VALUE
    } else {
        table.get(id as usize).copied().unwrap_or(NO_VALUE)
    }
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

    #[test]
    fn zero_turns_folding_off() {
        let selection = select(vec![candidate("a", 1.0, 1)], 10, 0);
        assert_eq!(selection.kept, vec!["a".to_string()]);
        assert!(!selection.has_other());
        assert_eq!(selection.slots(), 1);
    }
}
