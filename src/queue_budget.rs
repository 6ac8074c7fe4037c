//! A ceiling on the events waiting in an in-memory queue: what keeps memory bounded by the
//! configuration rather than by the load. The store writer's queue and the search indexer's
//! queue each hold one; a queue that is full refuses (the writer answers `503 overloaded`, the
//! indexer leaves the batch to its catch-up from the store).

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct QueueBudget {
    queued: AtomicUsize,
    limit: usize,
}

impl QueueBudget {
    pub fn new(limit: usize) -> QueueBudget {
        QueueBudget {
            queued: AtomicUsize::new(0),
            limit: limit.max(1),
        }
    }

    /// Takes room for `events`; false when they would go over the limit. An empty queue takes
    /// any batch, so a batch larger than the limit still passes on its own.
    pub fn try_take(&self, events: usize) -> bool {
        let mut queued = self.queued.load(Ordering::Relaxed);
        loop {
            if queued > 0 && queued.saturating_add(events) > self.limit {
                return false;
            }
            match self.queued.compare_exchange_weak(
                queued,
                queued + events,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => queued = now,
            }
        }
    }

    /// Gives back the room of `events` that left the queue.
    pub fn give_back(&self, events: usize) {
        let _ = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |queued| {
                Some(queued.saturating_sub(events))
            });
    }

    /// Events in the queue now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_over_the_limit_and_takes_room_given_back() {
        let budget = QueueBudget::new(10);
        assert!(budget.try_take(6));
        assert!(!budget.try_take(5));
        assert!(budget.try_take(4));
        assert_eq!(budget.queued(), 10);
        budget.give_back(6);
        assert!(budget.try_take(5));
        assert!(!budget.try_take(2));
        budget.give_back(100);
        assert_eq!(budget.queued(), 0);
        // An empty queue takes a batch over the limit, alone.
        assert!(budget.try_take(50));
        assert!(!budget.try_take(1));
    }
}
