//! Traces: the events of one trace (spans and logs that carry a W3C `trace_id`), found through
//! the search index, read from the store, and laid out as a waterfall: every span under its
//! parent, depth from the parent chain, siblings by start time, start offsets and durations
//! against the trace's start.
//!
//! A span is an event with a `metrics.duration_ms` (what OTLP spans become at ingest, and what
//! native clients send); any other event of the trace (a log, an exception, a point event) is a
//! log: a marker at its time, placed under the span it names in `span_id`.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use uuid::Uuid;

use crate::error::{Code, ErrorCode, StoreError};
use crate::fields::EventField;
use crate::model::{DimValue, Event, Level};
use crate::scope::Scope;
use crate::search::{Filter, SearchError, SearchIndex};
use crate::store::Store;

/// The most events one trace answer holds: the trace's oldest events by timestamp, so its start
/// and root spans are in it.
pub const MAX_TRACE_EVENTS: usize = 2_000;

/// The metric that makes an event a span: its duration in milliseconds (fractional).
pub const DURATION_METRIC: &str = "duration_ms";

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("invalid parameter `trace_id`: {0}")]
    InvalidId(String),
    #[error("trace {0} not found")]
    NotFound(String),
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ErrorCode for TraceError {
    fn error_code(&self) -> Code {
        match self {
            TraceError::InvalidId(_) => Code::InvalidParameter,
            TraceError::NotFound(_) => Code::NotFound,
            TraceError::Search(e) => e.error_code(),
            TraceError::Store(e) => e.error_code(),
        }
    }

    fn message(&self) -> String {
        match self {
            TraceError::Search(e) => e.message(),
            TraceError::Store(e) => e.message(),
            other => other.to_string(),
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            TraceError::InvalidId(_) => Some(serde_json::json!({ "parameter": "trace_id" })),
            TraceError::Search(e) => e.details(),
            _ => None,
        }
    }
}

/// A trace id as W3C trace context spells it: 32 hex digits, not all zero. Kept as given (ids
/// are matched exactly, so no case folding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceId(String);

impl TraceId {
    pub fn parse(text: &str) -> Result<TraceId, TraceError> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TraceError::InvalidId("must be 32 hex digits".into()));
        }
        if text.bytes().all(|b| b == b'0') {
            return Err(TraceError::InvalidId(
                "the all-zero trace id is not a trace".into(),
            ));
        }
        Ok(TraceId(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One trace: its waterfall and its events.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Trace {
    pub trace_id: String,
    /// The earliest event's timestamp (epoch ms).
    pub start_ms: i64,
    /// From the start to the latest end (a span's start + duration, a log's time), in ms.
    pub duration_ms: f64,
    /// Rows that are spans, logs, and errors (either kind).
    pub spans: usize,
    pub logs: usize,
    pub errors: usize,
    /// Events of the trace in the index; more than `limit` means the answer is truncated.
    pub total: u64,
    /// Whether events past `limit` were left out (the latest ones by timestamp).
    pub truncated: bool,
    /// [`MAX_TRACE_EVENTS`].
    pub limit: usize,
    /// One row per event, in tree order: each row followed by its children (by start time).
    pub waterfall: Vec<Row>,
    /// The events, by timestamp.
    pub events: Vec<Event>,
}

/// What a waterfall row stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    /// An event with a duration: a bar.
    Span,
    /// An event without one: a marker at its time.
    Log,
}

/// One event of the waterfall.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Row {
    pub event_id: Uuid,
    pub kind: RowKind,
    pub name: String,
    pub level: Level,
    /// `error` or `fatal`, or an `error` object.
    pub error: bool,
    pub span_id: Option<String>,
    pub parent_span_id: Option<String>,
    /// 0 for roots; a child is one deeper than the row it is placed under.
    pub depth: usize,
    /// The event names a parent (a span its `parent_span_id` names, or for a log the span of its
    /// `span_id`) that is not laid out above it: missing from the trace, itself, or in a cycle.
    /// It is shown as a root.
    pub orphan: bool,
    /// Milliseconds from the trace's start.
    pub offset_ms: i64,
    /// `metrics.duration_ms`; 0 for logs.
    pub duration_ms: f64,
    /// The event's dimensions and metrics (but `duration_ms`), by name.
    pub attributes: BTreeMap<String, Attribute>,
}

/// A dimension or metric value.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Attribute {
    Dim(DimValue),
    Metric(f64),
}

/// The trace `id`: at most [`MAX_TRACE_EVENTS`] of its events, the oldest first, and their
/// waterfall; [`TraceError::NotFound`] when the index and store have none.
pub fn load(
    search: &SearchIndex,
    store: &Store,
    id: &TraceId,
    scope: &Scope,
) -> Result<Trace, TraceError> {
    let filter = Filter::default()
        .with(EventField::TraceId, id.as_str())
        .within(scope.clone());
    let found = search.oldest(&filter, MAX_TRACE_EVENTS)?;
    let truncated = found.total > found.hits.len() as u64;
    // The store reads blocks in position order; the waterfall wants time order.
    let mut seqs: Vec<u64> = found.hits.iter().map(|h| h.seq).collect();
    seqs.sort_unstable();
    let mut events = store.events_at(&seqs)?;
    events.sort_by_key(|(seq, event)| (event.timestamp, *seq));
    let events: Vec<Event> = events.into_iter().map(|(_, e)| e).collect();
    if events.is_empty() {
        return Err(TraceError::NotFound(id.to_string()));
    }
    Ok(Trace::build(id.as_str(), events, found.total, truncated))
}

impl Trace {
    /// The trace of `events`, which must be in timestamp order (ties in the order given).
    pub fn build(trace_id: &str, events: Vec<Event>, total: u64, truncated: bool) -> Trace {
        let start_ms = events.first().map_or(0, |e| e.timestamp);
        let end_ms = events
            .iter()
            .map(|e| (e.timestamp - start_ms) as f64 + span_duration(e).unwrap_or(0.0))
            .fold(0.0, f64::max);
        let waterfall = waterfall(&events, start_ms);
        let spans = waterfall.iter().filter(|r| r.kind == RowKind::Span).count();
        Trace {
            trace_id: trace_id.to_string(),
            start_ms,
            duration_ms: end_ms,
            spans,
            logs: waterfall.len() - spans,
            errors: waterfall.iter().filter(|r| r.error).count(),
            total,
            truncated,
            limit: MAX_TRACE_EVENTS,
            waterfall,
            events,
        }
    }
}

/// The event's span duration, if it is a span (a finite `duration_ms`; negative counts as 0).
fn span_duration(event: &Event) -> Option<f64> {
    event
        .metrics
        .get(DURATION_METRIC)
        .copied()
        .filter(|d| d.is_finite())
        .map(|d| d.max(0.0))
}

fn is_error(event: &Event) -> bool {
    event.level >= Level::Error || event.error.is_some()
}

/// Rows for `events` (in timestamp order) in tree order: a depth-first walk from the roots, each
/// row's children by start time. A span is placed under the first span (by start) carrying its
/// `parent_span_id`; a log under the span of its `span_id` (or else its `parent_span_id`).
/// Events naming no parent are roots; so are orphans, and in a cycle (bad data) the cycle's
/// earliest event. Every event is one row, whatever the data.
fn waterfall(events: &[Event], start_ms: i64) -> Vec<Row> {
    let n = events.len();
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (i, event) in events.iter().enumerate() {
        if span_duration(event).is_some() {
            if let Some(id) = event.span_id.as_deref() {
                owner.entry(id).or_insert(i);
            }
        }
    }
    let mut parent: Vec<Option<usize>> = vec![None; n];
    let mut orphan = vec![false; n];
    for (i, event) in events.iter().enumerate() {
        let names: &[Option<&str>] = if span_duration(event).is_some() {
            &[event.parent_span_id.as_deref(), None]
        } else {
            &[event.span_id.as_deref(), event.parent_span_id.as_deref()]
        };
        let mut named = names.iter().flatten().peekable();
        let has_name = named.peek().is_some();
        parent[i] = named.find_map(|id| owner.get(id).copied().filter(|p| *p != i));
        orphan[i] = has_name && parent[i].is_none();
    }
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, p) in parent.iter().enumerate() {
        if let Some(p) = p {
            children[*p].push(i);
        }
    }

    // Roots: events naming no parent, orphans, and one event per cycle. Whatever no root
    // reaches hangs below a cycle (every ancestor of an unreached event is unreached and has a
    // parent): walk up to the cycle and enter it at its earliest event.
    let mut roots: Vec<usize> = (0..n).filter(|&i| parent[i].is_none()).collect();
    let mut reached = vec![false; n];
    for &root in &roots {
        descend(root, &children, &mut reached, &mut |_, _| {});
    }
    for i in 0..n {
        if reached[i] {
            continue;
        }
        let mut on_path: HashMap<usize, usize> = HashMap::new();
        let mut path = Vec::new();
        let mut j = i;
        let root = loop {
            if let Some(&at) = on_path.get(&j) {
                break path[at..].iter().copied().min().unwrap_or(j);
            }
            on_path.insert(j, path.len());
            path.push(j);
            match parent[j] {
                Some(p) if !reached[p] => j = p,
                _ => break j,
            }
        };
        orphan[root] = true;
        roots.push(root);
        descend(root, &children, &mut reached, &mut |_, _| {});
    }
    roots.sort_unstable();

    let mut order: Vec<(usize, usize)> = Vec::with_capacity(n);
    let mut placed = vec![false; n];
    for root in roots {
        descend(root, &children, &mut placed, &mut |i, depth| {
            order.push((i, depth))
        });
    }

    order
        .into_iter()
        .map(|(i, depth)| {
            let event = &events[i];
            let duration = span_duration(event);
            let mut attributes: BTreeMap<String, Attribute> = event
                .metrics
                .iter()
                .filter(|(k, _)| k.as_str() != DURATION_METRIC)
                .map(|(k, v)| (k.clone(), Attribute::Metric(*v)))
                .collect();
            for (k, v) in &event.dims {
                attributes.insert(k.clone(), Attribute::Dim(v.clone()));
            }
            Row {
                event_id: event.id,
                kind: if duration.is_some() {
                    RowKind::Span
                } else {
                    RowKind::Log
                },
                name: event.name.clone(),
                level: event.level,
                error: is_error(event),
                span_id: event.span_id.clone(),
                parent_span_id: event.parent_span_id.clone(),
                depth,
                orphan: orphan[i],
                offset_ms: event.timestamp - start_ms,
                duration_ms: duration.unwrap_or(0.0),
                attributes,
            }
        })
        .collect()
}

/// Depth-first from `root`, children in their order, skipping what is `placed` already (so a
/// cycle ends): `visit(event, depth)` for each event placed.
fn descend(
    root: usize,
    children: &[Vec<usize>],
    placed: &mut [bool],
    visit: &mut impl FnMut(usize, usize),
) {
    let mut stack = vec![(root, 0)];
    while let Some((i, depth)) = stack.pop() {
        if placed[i] {
            continue;
        }
        placed[i] = true;
        visit(i, depth);
        stack.extend(children[i].iter().rev().map(|&c| (c, depth + 1)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ErrorInfo;

    const T0: i64 = 1_795_219_200_000;
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn span(name: &str, id: &str, parent: Option<&str>, at: i64, duration: f64) -> Event {
        Event {
            timestamp: T0 + at,
            trace_id: Some(TRACE.into()),
            span_id: Some(id.into()),
            parent_span_id: parent.map(str::to_string),
            metrics: BTreeMap::from([(DURATION_METRIC.to_string(), duration)]),
            ..Event::new("sdk", name)
        }
    }

    fn log(name: &str, span_id: Option<&str>, at: i64) -> Event {
        Event {
            timestamp: T0 + at,
            trace_id: Some(TRACE.into()),
            span_id: span_id.map(str::to_string),
            ..Event::new("sdk", name)
        }
    }

    /// The trace of `events` given in any order (sorted by time as `load` does).
    fn trace(mut events: Vec<Event>) -> Trace {
        events.sort_by_key(|e| e.timestamp);
        let total = events.len() as u64;
        Trace::build(TRACE, events, total, false)
    }

    /// `(name, depth)` per row, in row order.
    fn shape(trace: &Trace) -> Vec<(&str, usize)> {
        trace
            .waterfall
            .iter()
            .map(|r| (r.name.as_str(), r.depth))
            .collect()
    }

    #[test]
    fn children_follow_their_parent_siblings_by_start_time() {
        // Given children first and out of order, as exporters send spans when they end.
        let t = trace(vec![
            span("tts", "c3", Some("a1"), 700, 100.0),
            span("llm.token", "d4", Some("b2"), 300, 5.0),
            span("llm", "b2", Some("a1"), 200, 400.5),
            span("stt", "e5", Some("a1"), 10, 150.0),
            span("turn", "a1", None, 0, 812.5),
        ]);
        assert_eq!(
            shape(&t),
            [
                ("turn", 0),
                ("stt", 1),
                ("llm", 1),
                ("llm.token", 2),
                ("tts", 1)
            ]
        );
        let llm = &t.waterfall[2];
        assert_eq!((llm.offset_ms, llm.duration_ms), (200, 400.5));
        assert_eq!(llm.parent_span_id.as_deref(), Some("a1"));
        assert_eq!((llm.kind, llm.orphan), (RowKind::Span, false));
        assert_eq!((t.start_ms, t.duration_ms), (T0, 812.5));
        assert_eq!((t.spans, t.logs, t.errors), (5, 0, 0));
        assert_eq!(t.events.len(), 5);
    }

    #[test]
    fn the_trace_ends_at_its_latest_end() {
        // A child outlasting its parent, and a log after every span.
        let t = trace(vec![
            span("root", "a1", None, 5, 100.0),
            span("late", "b2", Some("a1"), 50, 200.25),
            log("flush", None, 400),
        ]);
        assert_eq!(t.start_ms, T0 + 5);
        assert_eq!(t.duration_ms, 395.0);
        let t = trace(vec![span("only", "a1", None, 0, 0.0)]);
        assert_eq!(t.duration_ms, 0.0);
    }

    #[test]
    fn logs_are_markers_under_the_span_they_name() {
        let t = trace(vec![
            span("root", "a1", None, 0, 500.0),
            span("llm", "b2", Some("a1"), 100, 300.0),
            log("retrying", Some("b2"), 150),
            log("started", Some("a1"), 50),
            log("outside", None, 20),
        ]);
        assert_eq!(
            shape(&t),
            [
                ("root", 0),
                ("started", 1),
                ("llm", 1),
                ("retrying", 2),
                ("outside", 0)
            ]
        );
        let retrying = &t.waterfall[3];
        assert_eq!(retrying.kind, RowKind::Log);
        assert_eq!((retrying.offset_ms, retrying.duration_ms), (150, 0.0));
        assert_eq!((t.spans, t.logs), (2, 3));
        assert!(
            !t.waterfall[4].orphan,
            "a log naming no span is a plain root"
        );
    }

    #[test]
    fn orphans_are_roots_in_start_order() {
        let t = trace(vec![
            span("root", "a1", None, 0, 100.0),
            span("lost", "b2", Some("ffffffffffffffff"), 30, 10.0),
            span("child of lost", "c3", Some("b2"), 35, 1.0),
            log("log of a missing span", Some("eeeeeeeeeeeeeeee"), 10),
        ]);
        assert_eq!(
            shape(&t),
            [
                ("root", 0),
                ("log of a missing span", 0),
                ("lost", 0),
                ("child of lost", 1)
            ]
        );
        let orphans: Vec<bool> = t.waterfall.iter().map(|r| r.orphan).collect();
        assert_eq!(orphans, [false, true, true, false]);
    }

    #[test]
    fn cycles_in_bad_data_end_and_keep_every_event() {
        let t = trace(vec![
            span("root", "a1", None, 0, 100.0),
            // b2 → c3 → b2, with d4 hanging below c3 and starting first.
            span("b", "b2", Some("c3"), 20, 10.0),
            span("c", "c3", Some("b2"), 30, 10.0),
            span("d", "d4", Some("c3"), 10, 10.0),
            // Its own parent.
            span("self", "e5", Some("e5"), 40, 10.0),
        ]);
        assert_eq!(
            shape(&t),
            [("root", 0), ("b", 0), ("c", 1), ("d", 2), ("self", 0)]
        );
        let orphans: Vec<(&str, bool)> = t
            .waterfall
            .iter()
            .map(|r| (r.name.as_str(), r.orphan))
            .collect();
        assert_eq!(
            orphans,
            [
                ("root", false),
                ("b", true),
                ("c", false),
                ("d", false),
                ("self", true)
            ]
        );
    }

    #[test]
    fn a_long_chain_does_not_overflow_and_a_repeated_span_id_keeps_both() {
        let mut events: Vec<Event> = (0..MAX_TRACE_EVENTS)
            .map(|i| {
                let parent = (i > 0).then(|| format!("{:016x}", i - 1));
                span(
                    "step",
                    &format!("{i:016x}"),
                    parent.as_deref(),
                    i as i64,
                    1.0,
                )
            })
            .collect();
        events.push(span("again", &format!("{:016x}", 0), None, 5_000, 1.0));
        let t = trace(events);
        assert_eq!(t.waterfall.len(), MAX_TRACE_EVENTS + 1);
        let depths: Vec<usize> = t.waterfall.iter().map(|r| r.depth).collect();
        assert_eq!(depths[MAX_TRACE_EVENTS - 1], MAX_TRACE_EVENTS - 1);
        assert_eq!(
            (
                t.waterfall[MAX_TRACE_EVENTS].name.as_str(),
                depths[MAX_TRACE_EVENTS]
            ),
            ("again", 0)
        );
    }

    #[test]
    fn errors_attributes_and_durations() {
        let failed = Event {
            level: Level::Error,
            error: Some(ErrorInfo {
                code: Some("rate_limit".into()),
                ..ErrorInfo::default()
            }),
            dims: BTreeMap::from([("provider".to_string(), DimValue::Str("openai".into()))]),
            metrics: BTreeMap::from([
                (DURATION_METRIC.to_string(), 812.5),
                ("tokens".to_string(), 120.0),
            ]),
            ..span("llm", "b2", None, 0, 0.0)
        };
        let exception = Event {
            error: Some(ErrorInfo::default()),
            ..log("exception", Some("b2"), 800)
        };
        let negative = span("clock skew", "c3", None, 900, -3.0);
        let t = trace(vec![failed, exception, negative]);
        let llm = &t.waterfall[0];
        assert!(llm.error);
        assert_eq!(llm.duration_ms, 812.5);
        assert_eq!(
            serde_json::to_value(&llm.attributes).unwrap(),
            serde_json::json!({"provider": "openai", "tokens": 120.0})
        );
        assert!(t.waterfall[1].error, "an error object marks an info event");
        assert_eq!(t.waterfall[2].duration_ms, 0.0);
        assert_eq!(t.errors, 2);
    }

    #[test]
    fn rows_serialize_with_their_documented_names() {
        let t = trace(vec![span("turn", "a1", None, 0, 10.0)]);
        let value = serde_json::to_value(&t).unwrap();
        let row = &value["waterfall"][0];
        let mut keys: Vec<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "attributes",
                "depth",
                "duration_ms",
                "error",
                "event_id",
                "kind",
                "level",
                "name",
                "offset_ms",
                "orphan",
                "parent_span_id",
                "span_id"
            ]
        );
        assert_eq!(
            (row["kind"].as_str(), row["level"].as_str()),
            (Some("span"), Some("info"))
        );
        assert_eq!(value["limit"], MAX_TRACE_EVENTS);
    }

    #[test]
    fn trace_ids_are_32_hex_digits() {
        assert_eq!(TraceId::parse(TRACE).unwrap().as_str(), TRACE);
        assert!(TraceId::parse("4BF92F3577B34DA6A3CE929D0E0E4736").is_ok());
        for bad in [
            "",
            "4bf92f3577b34da6a3ce929d0e0e473",
            "4bf92f3577b34da6a3ce929d0e0e47360",
            "4bf92f3577b34da6a3ce929d0e0e473g",
            "00000000000000000000000000000000",
            "4bf92f35-77b3-4da6-a3ce-929d0e0e",
        ] {
            let err = TraceId::parse(bad).unwrap_err();
            assert_eq!(err.error_code(), Code::InvalidParameter, "{bad}");
            assert_eq!(err.details().unwrap()["parameter"], "trace_id");
        }
        assert_eq!(
            TraceError::NotFound(TRACE.into()).error_code(),
            Code::NotFound
        );
    }
}
