//! What ingest dropped or changed in the events it took in, field by field, and why: the
//! bounded list the ingest answer carries (`adjusted`, at most [`MAX_LISTED`] entries, then a
//! count of the rest) and the counts by reason the metrics take.

use serde::Serialize;

use crate::error::AdjustReason;

/// Most adjusted fields one ingest answer lists; the rest are counted in `adjusted_more`.
pub const MAX_LISTED: usize = 100;

/// One field of one event that was dropped or changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Adjusted {
    /// The event's index in the request.
    pub index: usize,
    /// The field: a canonical name (`platform`), `dims.KEY` / `metrics.KEY` for a dimension or
    /// metric under the key the schema sees, `error.KEY` for a part of the error object.
    pub field: String,
    pub reason: AdjustReason,
}

/// The adjustments of one request.
#[derive(Debug, Default)]
pub struct Adjustments {
    /// The first [`MAX_LISTED`], in event order.
    pub listed: Vec<Adjusted>,
    /// How many more there were.
    pub more: u64,
    /// All of them, by [`AdjustReason::index`].
    pub by_reason: [u64; AdjustReason::ALL.len()],
}

impl Adjustments {
    /// Adds one event's adjustments (field, reason).
    pub fn add(&mut self, index: usize, fields: Vec<(String, AdjustReason)>) {
        for (field, reason) in fields {
            self.by_reason[reason.index()] += 1;
            if self.listed.len() < MAX_LISTED {
                self.listed.push(Adjusted {
                    index,
                    field,
                    reason,
                });
            } else {
                self.more += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_bounded_and_everything_is_counted() {
        let mut adjustments = Adjustments::default();
        adjustments.add(0, Vec::new());
        assert!(adjustments.listed.is_empty());
        for index in 0..60 {
            adjustments.add(
                index,
                vec![
                    ("dims.a".into(), AdjustReason::UnknownKey),
                    ("dims.b".into(), AdjustReason::OffList),
                ],
            );
        }
        assert_eq!(adjustments.listed.len(), MAX_LISTED);
        assert_eq!(adjustments.more, 20);
        assert_eq!(adjustments.by_reason[AdjustReason::UnknownKey.index()], 60);
        assert_eq!(adjustments.by_reason[AdjustReason::OffList.index()], 60);
        assert_eq!(
            adjustments.listed[3],
            Adjusted {
                index: 1,
                field: "dims.b".into(),
                reason: AdjustReason::OffList
            }
        );
    }
}
