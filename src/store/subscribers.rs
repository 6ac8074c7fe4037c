//! Commit subscribers: everything that derives data from the store's event sequence (the search
//! index, the clustering pass, export sinks). Each keeps its own persisted position — the first
//! position of the sequence it has not durably taken in — and catches up from it on its own, so
//! a subscriber that was down, slow or just started loses nothing. After every commit the writer
//! hands each subscriber the events that just became durable, as a hint it may use to stay
//! current without reading them back; it must return at once (hand them to its own thread).
//!
//! Adding a subscriber: implement [`CommitSubscriber`] where its data lives, persist its position
//! (its own storage, or [`crate::store::Store::position`] / [`set_position`] under its own key),
//! and `register` it where the appliance is assembled (`lib.rs`); the startup log, `/metrics`
//! (`telemetryd_subscriber_lag_events`) and `/api/v1/stats` then list it with its lag.

use std::sync::{Arc, RwLock};

use redb::WriteTransaction;
use serde::Serialize;

use crate::error::StoreError;
use crate::model::Event;
use crate::store::{Store, META};

/// Events just made durable, with their positions, in position order.
pub type Committed = [(u64, Arc<Event>)];

pub trait CommitSubscriber: Send + Sync {
    /// A stable name, for logs and metrics.
    fn name(&self) -> &'static str;

    /// The first position it has not durably taken in; everything below is done.
    fn position(&self) -> Result<u64, StoreError>;

    /// Events that just became durable. Must not block the writer.
    fn committed(&self, events: &Committed);
}

/// How far one subscriber is behind the store.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SubscriberLag {
    pub name: &'static str,
    pub position: u64,
    /// Positions between its position and the store's next one (deleted ones included).
    pub lag_events: u64,
}

/// The registered subscribers, shared by the writer (which notifies them) and whoever reports
/// on them. Registration happens while the appliance is assembled.
#[derive(Clone, Default)]
pub struct Subscribers {
    list: Arc<RwLock<Vec<Arc<dyn CommitSubscriber>>>>,
}

impl Subscribers {
    pub fn register(&self, subscriber: Arc<dyn CommitSubscriber>) {
        let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
        list.push(subscriber);
    }

    fn all(&self) -> Vec<Arc<dyn CommitSubscriber>> {
        self.list.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Tells every subscriber what just became durable.
    pub fn notify(&self, events: &Committed) {
        if events.is_empty() {
            return;
        }
        let list = self.list.read().unwrap_or_else(|p| p.into_inner());
        for subscriber in list.iter() {
            subscriber.committed(events);
        }
    }

    /// Each subscriber's position and lag behind `next_seq`.
    pub fn lags(&self, next_seq: u64) -> Vec<SubscriberLag> {
        self.all()
            .iter()
            .map(|s| {
                let position = s.position().unwrap_or(0);
                SubscriberLag {
                    name: s.name(),
                    position,
                    lag_events: next_seq.saturating_sub(position),
                }
            })
            .collect()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.all().iter().map(|s| s.name()).collect()
    }
}

impl Store {
    /// A subscriber's persisted position under `key` (0 when it has none yet).
    pub fn position(&self, key: &str) -> Result<u64, StoreError> {
        self.meta(key)
    }
}

/// Persists a subscriber's position under `key`, in the caller's transaction (so it moves
/// together with what the subscriber wrote).
pub fn set_position(txn: &WriteTransaction, key: &str, position: u64) -> Result<(), StoreError> {
    txn.open_table(META)?.insert(key, position)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Recorder {
        seen: Mutex<Vec<u64>>,
    }

    impl CommitSubscriber for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        fn position(&self) -> Result<u64, StoreError> {
            Ok(self.seen.lock().unwrap().last().map_or(0, |p| p + 1))
        }
        fn committed(&self, events: &Committed) {
            self.seen
                .lock()
                .unwrap()
                .extend(events.iter().map(|(seq, _)| *seq));
        }
    }

    #[test]
    fn notifies_in_order_and_reports_lag() {
        let subscribers = Subscribers::default();
        let recorder = Arc::new(Recorder {
            seen: Mutex::new(Vec::new()),
        });
        subscribers.register(recorder.clone());
        let event = Arc::new(Event::default());
        subscribers.notify(&[(0, event.clone()), (1, event.clone())]);
        subscribers.notify(&[]);
        subscribers.notify(&[(2, event)]);
        assert_eq!(*recorder.seen.lock().unwrap(), vec![0, 1, 2]);
        let lags = subscribers.lags(10);
        assert_eq!(lags.len(), 1);
        assert_eq!(
            (lags[0].name, lags[0].position, lags[0].lag_events),
            ("recorder", 3, 7)
        );
        assert_eq!(subscribers.names(), vec!["recorder"]);
    }

    #[test]
    fn positions_persist_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.position("sink.test").unwrap(), 0);
        store
            .write(|txn| set_position(txn, "sink.test", 42))
            .unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.position("sink.test").unwrap(), 42);
    }
}
