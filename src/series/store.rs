//! The series tables in the store and everything that reads or writes them: metric and series
//! definitions, points keyed by (series, millisecond), the cumulative streams' last reports,
//! and the install → series index that erasure follows. Writes take the caller's write
//! transaction and so run on the store writer (`Writer::exclusive`); reads open their own read
//! transaction.

use std::collections::HashMap;
use std::sync::Arc;

use redb::{ReadTransaction, ReadableTable, Table, TableDefinition, WriteTransaction};

use crate::error::StoreError;
use crate::series::cumulative::{self, StreamState};
use crate::series::mapping::{Data, MetricInfo, Rejections, Sample, Temporality};
use crate::series::model::{metric_key, metric_prefix, MetricDef, Point, SeriesDef};
use crate::store::{Store, META};

/// `product \0 name` → JSON [`MetricDef`].
pub const METRICS: TableDefinition<&str, &[u8]> = TableDefinition::new("series_metrics");
/// `product \0 name \0 identity` (see `Identity::key`) → series id.
pub const SERIES_KEYS: TableDefinition<&str, u64> = TableDefinition::new("series_keys");
/// Series id → JSON [`SeriesDef`].
pub const SERIES: TableDefinition<u64, &[u8]> = TableDefinition::new("series");
/// A point's key: (series id, time in ms).
pub type PointKey = (u64, i64);
/// (series id, time in ms) → JSON [`Point`].
pub const POINTS: TableDefinition<(u64, i64), &[u8]> = TableDefinition::new("series_points");
/// (series id, stream key) → JSON [`StreamState`]: the last report of each cumulative stream.
pub const STREAMS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("series_streams");
/// (install id, series id) → nothing: the series of each install, for erasure.
pub const INSTALL_SERIES: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("series_installs");
/// The id the next new series gets (in the store's `meta` table).
pub const META_NEXT_SERIES_ID: &str = "next_series_id";
/// Outbox position → (series id, time in ms): every point write in order, for the export
/// sinks, which read the point's current value when they deliver. Written only while sinks are
/// configured; pruned once every sink has delivered it.
pub const OUTBOX: TableDefinition<u64, (u64, i64)> = TableDefinition::new("series_outbox");
/// The outbox position the next point write gets (in `meta`; positions start at 1).
pub const META_OUTBOX_NEXT: &str = "series_outbox_next";
/// The lowest outbox position from which the outbox is complete (in `meta`): a sink whose
/// position is below it missed point writes and must copy every point again.
pub const META_OUTBOX_FLOOR: &str = "series_outbox_floor";

/// Creates the series tables (at store open, so reads and backups always find them).
pub fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(METRICS)?;
    txn.open_table(SERIES_KEYS)?;
    txn.open_table(SERIES)?;
    txn.open_table(POINTS)?;
    txn.open_table(STREAMS)?;
    txn.open_table(INSTALL_SERIES)?;
    txn.open_table(OUTBOX)?;
    Ok(())
}

fn codec(e: serde_json::Error) -> StoreError {
    StoreError::Codec(e.to_string())
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(codec)
}

/// The series tables, open in one write transaction.
struct Tables<'t> {
    metrics: Table<'t, &'static str, &'static [u8]>,
    keys: Table<'t, &'static str, u64>,
    series: Table<'t, u64, &'static [u8]>,
    points: Table<'t, (u64, i64), &'static [u8]>,
    streams: Table<'t, (u64, u64), &'static [u8]>,
    installs: Table<'t, (&'static str, u64), ()>,
    outbox: Table<'t, u64, (u64, i64)>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>, StoreError> {
        Ok(Tables {
            metrics: txn.open_table(METRICS)?,
            keys: txn.open_table(SERIES_KEYS)?,
            series: txn.open_table(SERIES)?,
            points: txn.open_table(POINTS)?,
            streams: txn.open_table(STREAMS)?,
            installs: txn.open_table(INSTALL_SERIES)?,
            outbox: txn.open_table(OUTBOX)?,
        })
    }

    fn metric(&self, product: &str, name: &str) -> Result<Option<MetricDef>, StoreError> {
        let key = metric_key(product, name);
        let found = self.metrics.get(key.as_str())?;
        found
            .map(|v| serde_json::from_slice(v.value()).map_err(codec))
            .transpose()
    }

    fn put_metric(&mut self, def: &MetricDef) -> Result<(), StoreError> {
        let key = metric_key(&def.product, &def.name);
        self.metrics.insert(key.as_str(), encode(def)?.as_slice())?;
        Ok(())
    }

    fn series_def(&self, id: u64) -> Result<Option<SeriesDef>, StoreError> {
        let found = self.series.get(id)?;
        found
            .map(|v| serde_json::from_slice(v.value()).map_err(codec))
            .transpose()
    }

    fn put_series(&mut self, def: &SeriesDef) -> Result<(), StoreError> {
        self.series.insert(def.id, encode(def)?.as_slice())?;
        Ok(())
    }

    /// Deletes a series with its points, streams and index rows, and counts it out of its
    /// metric (which goes when its last series does). Returns the points deleted.
    fn delete_series(&mut self, def: &SeriesDef) -> Result<u64, StoreError> {
        let points = drain(
            self.points
                .extract_from_if((def.id, i64::MIN)..=(def.id, i64::MAX), |_, _| true)?,
        )?;
        drain(
            self.streams
                .extract_from_if((def.id, 0)..=(def.id, u64::MAX), |_, _| true)?,
        )?;
        self.series.remove(def.id)?;
        let key = def.identity.key(&def.product, &def.name)?;
        self.keys.remove(key.as_str())?;
        if let Some(install) = &def.identity.install {
            self.installs.remove((install.as_str(), def.id))?;
        }
        if let Some(mut metric) = self.metric(&def.product, &def.name)? {
            metric.series = metric.series.saturating_sub(1);
            if metric.series == 0 {
                let key = metric_key(&def.product, &def.name);
                self.metrics.remove(key.as_str())?;
            } else {
                self.put_metric(&metric)?;
            }
        }
        Ok(points)
    }
}

/// Consumes an extraction (which removes what it yields) and counts the rows.
fn drain<I, T>(rows: I) -> Result<u64, StoreError>
where
    I: Iterator<Item = Result<T, redb::StorageError>>,
{
    let mut n = 0;
    for row in rows {
        row?;
        n += 1;
    }
    Ok(n)
}

/// What [`apply`] did with a request's samples.
#[derive(Debug, Default)]
pub struct Applied {
    pub accepted: u64,
    /// Samples refused here (a kind other than the stored metric's).
    pub rejected: Rejections,
    /// Points written (a counter that did not move stores none).
    pub points_written: u64,
    pub series_created: u64,
}

/// Writes a request's samples for `product` in the caller's transaction: the metric and
/// series definitions (created as needed), each cumulative stream's state and the points
/// (merged into any point already at the same millisecond), each point write noted in the
/// outbox when `outbox` (export sinks are configured). Samples are taken in time order.
pub fn apply(
    txn: &WriteTransaction,
    product: &str,
    metrics: &[MetricInfo],
    mut samples: Vec<Sample>,
    outbox: bool,
) -> Result<Applied, StoreError> {
    samples.sort_by_key(|s| s.time_ns);
    let mut tables = Tables::open(txn)?;
    let mut meta = txn.open_table(META)?;
    let mut next_id = meta
        .get(META_NEXT_SERIES_ID)?
        .map(|v| v.value())
        .unwrap_or(1);
    let mut next_outbox = meta.get(META_OUTBOX_NEXT)?.map_or(1, |v| v.value());
    let mut metric_defs: HashMap<String, MetricDef> = HashMap::new();
    let mut series_defs: HashMap<String, SeriesDef> = HashMap::new();
    let mut applied = Applied::default();
    for sample in samples {
        let Some(info) = metrics.get(sample.metric) else {
            continue;
        };
        if !metric_defs.contains_key(&info.name) {
            let def = match tables.metric(product, &info.name)? {
                Some(def) => def,
                None => MetricDef {
                    product: product.to_string(),
                    name: info.name.clone(),
                    kind: info.kind,
                    unit: String::new(),
                    description: String::new(),
                    series: 0,
                    attribute_keys: Default::default(),
                    first_ms: sample.time_ms,
                    last_ms: sample.time_ms,
                },
            };
            metric_defs.insert(info.name.clone(), def);
        }
        let Some(metric) = metric_defs.get_mut(&info.name) else {
            continue;
        };
        if metric.kind != info.kind {
            applied.rejected.add(
                &info.name,
                format!(
                    "the metric is stored as a {} and this point is a {}",
                    metric.kind.as_str(),
                    info.kind.as_str()
                ),
                1,
            );
            continue;
        }
        if !info.unit.is_empty() {
            metric.unit.clone_from(&info.unit);
        }
        if !info.description.is_empty() {
            metric.description.clone_from(&info.description);
        }
        metric.first_ms = metric.first_ms.min(sample.time_ms);
        metric.last_ms = metric.last_ms.max(sample.time_ms);

        let key = sample.identity.key(product, &info.name)?;
        if !series_defs.contains_key(&key) {
            let stored = match tables.keys.get(key.as_str())?.map(|v| v.value()) {
                Some(id) => tables.series_def(id)?,
                None => None,
            };
            let def = match stored {
                Some(def) => def,
                None => {
                    let id = next_id;
                    next_id += 1;
                    tables.keys.insert(key.as_str(), id)?;
                    if let Some(install) = &sample.identity.install {
                        tables.installs.insert((install.as_str(), id), ())?;
                    }
                    metric.series += 1;
                    metric
                        .attribute_keys
                        .extend(sample.identity.attributes.keys().cloned());
                    applied.series_created += 1;
                    SeriesDef {
                        id,
                        product: product.to_string(),
                        name: info.name.clone(),
                        identity: sample.identity.clone(),
                        first_ms: sample.time_ms,
                        last_ms: sample.time_ms,
                        counted_from_ns: 0,
                    }
                }
            };
            series_defs.insert(key.clone(), def);
        }
        let Some(series) = series_defs.get_mut(&key) else {
            continue;
        };
        series.first_ms = series.first_ms.min(sample.time_ms);
        series.last_ms = series.last_ms.max(sample.time_ms);

        let stream = match &sample.data {
            Data::Totals {
                temporality: Temporality::Cumulative,
                ..
            } => Some((
                series.id,
                cumulative::stream_key(&sample.sender, sample.start_ns),
            )),
            _ => None,
        };
        let state: Option<StreamState> = match stream {
            Some(stream) => {
                let found = tables.streams.get(stream)?;
                found
                    .map(|v| serde_json::from_slice(v.value()).map_err(codec))
                    .transpose()?
            }
            None => None,
        };
        let (point, next) = cumulative::point(
            info.kind,
            &sample.data,
            state.as_ref(),
            sample.start_ns,
            sample.time_ns,
            series.counted_from_ns,
        );
        if let (Some(stream), Some(next)) = (stream, next) {
            tables.streams.insert(stream, encode(&next)?.as_slice())?;
        }
        if let Some(mut point) = point {
            let at = (series.id, sample.time_ms);
            let existing = tables
                .points
                .get(at)?
                .map(|v| Point::decode(v.value()))
                .transpose()?;
            if let Some(existing) = existing {
                let mut merged = existing;
                merged.merge(point);
                point = merged;
            }
            tables.points.insert(at, point.encode()?.as_slice())?;
            if outbox {
                tables.outbox.insert(next_outbox, at)?;
                next_outbox += 1;
            }
            applied.points_written += 1;
        }
        applied.accepted += 1;
    }
    for def in metric_defs.values() {
        tables.put_metric(def)?;
    }
    for def in series_defs.values() {
        tables.put_series(def)?;
    }
    meta.insert(META_NEXT_SERIES_ID, next_id)?;
    if outbox {
        meta.insert(META_OUTBOX_NEXT, next_outbox)?;
    }
    Ok(applied)
}

/// The outbox's floor and next position: `[floor, next)` is what it holds.
pub fn outbox_bounds(txn: &ReadTransaction) -> Result<(u64, u64), StoreError> {
    let meta = txn.open_table(META)?;
    let floor = meta.get(META_OUTBOX_FLOOR)?.map_or(0, |v| v.value());
    let next = meta.get(META_OUTBOX_NEXT)?.map_or(1, |v| v.value());
    Ok((floor, next))
}

/// Deletes the outbox below `below` (every sink has delivered it) and raises the floor to it.
pub fn prune_outbox(txn: &WriteTransaction, below: u64) -> Result<u64, StoreError> {
    let pruned = drain(
        txn.open_table(OUTBOX)?
            .extract_from_if(..below, |_, _| true)?,
    )?;
    let mut meta = txn.open_table(META)?;
    let floor = meta.get(META_OUTBOX_FLOOR)?.map_or(0, |v| v.value());
    if below > floor {
        meta.insert(META_OUTBOX_FLOOR, below)?;
    }
    Ok(pruned)
}

/// Empties the outbox when no sink is configured, moving next and floor one past what was
/// there: point writes from now on are not noted, and any sink position from before is below
/// the floor, so a sink configured again later copies every point instead of missing some.
pub fn close_outbox(txn: &WriteTransaction) -> Result<(), StoreError> {
    let next = {
        let meta = txn.open_table(META)?;
        let next = meta.get(META_OUTBOX_NEXT)?.map_or(1, |v| v.value());
        next + 1
    };
    prune_outbox(txn, next)?;
    txn.open_table(META)?.insert(META_OUTBOX_NEXT, next)?;
    Ok(())
}

/// One point as an export sink delivers it: its series and metric, and a version that orders
/// the deliveries of one point (a later version was read after every change an earlier one saw).
#[derive(Debug, Clone)]
pub struct PointRecord {
    pub version: u64,
    pub series: Arc<SeriesDef>,
    pub metric: Arc<MetricDef>,
    pub time_ms: i64,
    pub point: Point,
}

/// A point's series and its metric.
type SeriesAndMetric = (Arc<SeriesDef>, Arc<MetricDef>);

/// Series and metric definitions read once per batch.
struct Definitions {
    series_table: redb::ReadOnlyTable<u64, &'static [u8]>,
    metrics_table: redb::ReadOnlyTable<&'static str, &'static [u8]>,
    series: HashMap<u64, Option<Arc<SeriesDef>>>,
    metrics: HashMap<String, Option<Arc<MetricDef>>>,
}

impl Definitions {
    fn new(txn: &ReadTransaction) -> Result<Definitions, StoreError> {
        Ok(Definitions {
            series_table: txn.open_table(SERIES)?,
            metrics_table: txn.open_table(METRICS)?,
            series: HashMap::new(),
            metrics: HashMap::new(),
        })
    }

    /// The series and its metric, when both are still stored.
    fn of(&mut self, id: u64) -> Result<Option<SeriesAndMetric>, StoreError> {
        if !self.series.contains_key(&id) {
            let def = self
                .series_table
                .get(id)?
                .map(|v| serde_json::from_slice::<SeriesDef>(v.value()).map_err(codec))
                .transpose()?
                .map(Arc::new);
            self.series.insert(id, def);
        }
        let Some(Some(series)) = self.series.get(&id).cloned() else {
            return Ok(None);
        };
        let key = metric_key(&series.product, &series.name);
        if !self.metrics.contains_key(&key) {
            let def = self
                .metrics_table
                .get(key.as_str())?
                .map(|v| serde_json::from_slice::<MetricDef>(v.value()).map_err(codec))
                .transpose()?
                .map(Arc::new);
            self.metrics.insert(key.clone(), def);
        }
        Ok(self.metrics[&key].clone().map(|metric| (series, metric)))
    }
}

/// Up to `limit` outbox entries from position `from`, as the points' current values (points
/// and series deleted since are left out; a point written twice in the range is read once),
/// and the position after the last entry read.
pub fn outbox_points(
    store: &Store,
    from: u64,
    limit: usize,
) -> Result<(Vec<PointRecord>, u64), StoreError> {
    let txn = store.begin_read()?;
    let outbox = txn.open_table(OUTBOX)?;
    let points = txn.open_table(POINTS)?;
    let mut definitions = Definitions::new(&txn)?;
    let mut latest: HashMap<(u64, i64), u64> = HashMap::new();
    let mut below = from;
    for row in outbox.range(from..)?.take(limit) {
        let (seq, at) = row?;
        latest.insert(at.value(), seq.value());
        below = seq.value() + 1;
    }
    let mut records = Vec::with_capacity(latest.len());
    for (at, version) in latest {
        let Some(point) = points
            .get(at)?
            .map(|v| Point::decode(v.value()))
            .transpose()?
        else {
            continue;
        };
        if let Some((series, metric)) = definitions.of(at.0)? {
            records.push(PointRecord {
                version,
                series,
                metric,
                time_ms: at.1,
                point,
            });
        }
    }
    records.sort_by_key(|r| r.version);
    Ok((records, below))
}

/// Up to `limit` stored points after the point key `after` (all points in key order: a sink's
/// first copy), versioned with the last outbox position of the snapshot they were read in (so
/// they replace the deliveries of every earlier write, and a later write replaces them), and
/// the key to go on after (`None` when the last point was read).
pub fn stored_points(
    store: &Store,
    after: Option<PointKey>,
    limit: usize,
) -> Result<(Vec<PointRecord>, Option<PointKey>), StoreError> {
    let txn = store.begin_read()?;
    let version = outbox_bounds(&txn)?.1 - 1;
    let points = txn.open_table(POINTS)?;
    let mut definitions = Definitions::new(&txn)?;
    let rows = match after {
        Some(key) => points.range((std::ops::Bound::Excluded(key), std::ops::Bound::Unbounded))?,
        None => points.range::<(u64, i64)>(..)?,
    };
    let mut records = Vec::new();
    let mut last = None;
    let mut read = 0;
    for row in rows.take(limit) {
        let (key, value) = row?;
        let (id, time_ms) = key.value();
        last = Some((id, time_ms));
        read += 1;
        if let Some((series, metric)) = definitions.of(id)? {
            records.push(PointRecord {
                version,
                series,
                metric,
                time_ms,
                point: Point::decode(value.value())?,
            });
        }
    }
    Ok((records, if read == limit { last } else { None }))
}

/// Every metric definition, of one product or of all, ordered by product and name.
pub fn metric_defs(store: &Store, product: Option<&str>) -> Result<Vec<MetricDef>, StoreError> {
    let txn = store.begin_read()?;
    let table = txn.open_table(METRICS)?;
    let prefix = product.map(|p| format!("{p}\u{0}")).unwrap_or_default();
    let mut out = Vec::new();
    for row in table.range(prefix.as_str()..)? {
        let (key, value) = row?;
        if !key.value().starts_with(&prefix) {
            break;
        }
        out.push(serde_json::from_slice(value.value()).map_err(codec)?);
    }
    Ok(out)
}

/// One metric's definition and its series, read in `txn`.
pub fn metric_with_series(
    txn: &ReadTransaction,
    product: &str,
    name: &str,
) -> Result<Option<(MetricDef, Vec<SeriesDef>)>, StoreError> {
    let metrics = txn.open_table(METRICS)?;
    let Some(def) = metrics.get(metric_key(product, name).as_str())? else {
        return Ok(None);
    };
    let def: MetricDef = serde_json::from_slice(def.value()).map_err(codec)?;
    let keys = txn.open_table(SERIES_KEYS)?;
    let series = txn.open_table(SERIES)?;
    let prefix = metric_prefix(product, name);
    let mut out = Vec::new();
    for row in keys.range(prefix.as_str()..)? {
        let (key, id) = row?;
        if !key.value().starts_with(&prefix) {
            break;
        }
        if let Some(bytes) = series.get(id.value())? {
            out.push(serde_json::from_slice(bytes.value()).map_err(codec)?);
        }
    }
    Ok(Some((def, out)))
}

/// Calls `f` with every point of series `id` in `[from_ms, to_ms]`, in time order.
pub fn for_each_point(
    txn: &ReadTransaction,
    id: u64,
    from_ms: i64,
    to_ms: i64,
    mut f: impl FnMut(i64, Point),
) -> Result<(), StoreError> {
    let points = txn.open_table(POINTS)?;
    for row in points.range((id, from_ms)..=(id, to_ms))? {
        let (key, bytes) = row?;
        f(key.value().1, Point::decode(bytes.value())?);
    }
    Ok(())
}

/// What an erasure removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Erased {
    pub series: u64,
    pub points: u64,
}

/// Deletes every series of an install in the products of `scope`, with its points and streams.
pub fn erase_install(
    txn: &WriteTransaction,
    install: &str,
    scope: &crate::scope::Scope,
) -> Result<Erased, StoreError> {
    let mut tables = Tables::open(txn)?;
    let mut ids = Vec::new();
    for row in tables
        .installs
        .range((install, 0u64)..=(install, u64::MAX))?
    {
        ids.push(row?.0.value().1);
    }
    let mut erased = Erased::default();
    for id in ids {
        match tables.series_def(id)? {
            Some(def) if scope.allows(&def.product) => {
                erased.points += tables.delete_series(&def)?;
                erased.series += 1;
            }
            Some(_) => {}
            None => {
                tables.installs.remove((install, id))?;
            }
        }
    }
    Ok(erased)
}

/// What one step of the retention sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepStep {
    pub points_deleted: u64,
    pub series_deleted: u64,
    pub streams_pruned: u64,
    /// The key to continue after, when the step stopped at its limit.
    pub next: Option<String>,
}

/// Retention for up to `max_series` series of `product`, after the series key `after`:
/// deletes points older than `cutoff_ms`, series not seen since then (whose points are all
/// older), and cumulative stream states not reported since `idle_cutoff_ns`, raising the
/// series' `counted_from_ns` past them so a stream reporting again after its state went is
/// not counted twice.
pub fn sweep(
    txn: &WriteTransaction,
    product: &str,
    cutoff_ms: i64,
    idle_cutoff_ns: u64,
    after: Option<&str>,
    max_series: usize,
) -> Result<SweepStep, StoreError> {
    let mut tables = Tables::open(txn)?;
    let prefix = format!("{product}\u{0}");
    let mut batch = Vec::new();
    let mut more = false;
    {
        let start = after.unwrap_or(prefix.as_str());
        for row in tables.keys.range(start..)? {
            let (key, id) = row?;
            let key = key.value();
            if !key.starts_with(&prefix) {
                break;
            }
            if Some(key) == after {
                continue;
            }
            // One more than the step takes, to know whether another step is needed.
            if batch.len() == max_series.max(1) {
                more = true;
                break;
            }
            batch.push((key.to_string(), id.value()));
        }
    }
    let mut step = SweepStep {
        next: more.then(|| batch.last().map(|(k, _)| k.clone())).flatten(),
        ..SweepStep::default()
    };
    for (key, id) in batch {
        let Some(mut def) = tables.series_def(id)? else {
            tables.keys.remove(key.as_str())?;
            continue;
        };
        if def.last_ms < cutoff_ms {
            step.points_deleted += tables.delete_series(&def)?;
            step.series_deleted += 1;
            continue;
        }
        step.points_deleted += drain(
            tables
                .points
                .extract_from_if((id, i64::MIN)..(id, cutoff_ms), |_, _| true)?,
        )?;
        let pruned = drain(tables.streams.extract_from_if(
            (id, 0)..=(id, u64::MAX),
            |_, bytes| {
                serde_json::from_slice::<StreamState>(bytes)
                    .map_or(true, |state| state.time_ns < idle_cutoff_ns)
            },
        )?)?;
        if pruned > 0 {
            step.streams_pruned += pruned;
            def.counted_from_ns = def.counted_from_ns.max(idle_cutoff_ns);
            tables.put_series(&def)?;
        }
    }
    Ok(step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::cumulative::Totals;
    use crate::series::model::{Identity, Kind};
    use redb::ReadableTableMetadata;

    const S: u64 = 1_000_000_000;

    fn info(name: &str, kind: Kind) -> MetricInfo {
        MetricInfo {
            name: name.into(),
            kind,
            unit: "1".into(),
            description: String::new(),
        }
    }

    fn sample(
        surface: &str,
        install: Option<&str>,
        start_s: u64,
        time_s: u64,
        value: f64,
    ) -> Sample {
        Sample {
            metric: 0,
            identity: Identity {
                attributes: [("surface".to_string(), surface.to_string())].into(),
                install: install.map(str::to_string),
                bounds: Vec::new(),
            },
            sender: [1; 32],
            start_ns: start_s * S,
            time_ns: time_s * S,
            time_ms: (time_s * 1000) as i64,
            data: Data::Totals {
                temporality: Temporality::Cumulative,
                totals: Totals::counter(value),
                min: None,
                max: None,
                quantiles: Vec::new(),
            },
        }
    }

    fn points(store: &Store, product: &str, name: &str) -> Vec<(String, i64, Point)> {
        let txn = store.begin_read().unwrap();
        let (_, series) = metric_with_series(&txn, product, name).unwrap().unwrap();
        let mut out = Vec::new();
        for s in series {
            let surface = s.identity.attributes["surface"].clone();
            for_each_point(&txn, s.id, i64::MIN, i64::MAX, |t, p| {
                out.push((surface.clone(), t, p))
            })
            .unwrap();
        }
        out.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        out
    }

    #[test]
    fn apply_turns_reports_into_points_and_keeps_definitions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let metrics = [info("events", Kind::Counter)];
        let applied = store
            .write(|txn| {
                apply(
                    txn,
                    "app",
                    &metrics,
                    vec![
                        // Out of order within the request: taken in time order.
                        sample("cli", None, 100, 160, 7.0),
                        sample("cli", None, 100, 130, 5.0),
                        sample("web", None, 100, 130, 1.0),
                    ],
                    false,
                )
            })
            .unwrap();
        assert_eq!(
            (
                applied.accepted,
                applied.points_written,
                applied.series_created
            ),
            (3, 3, 2)
        );
        // The restarted client (new start) and a resend of an old report.
        store
            .write(|txn| {
                apply(
                    txn,
                    "app",
                    &metrics,
                    vec![
                        sample("cli", None, 170, 190, 4.0),
                        sample("cli", None, 100, 160, 7.0),
                    ],
                    false,
                )
            })
            .unwrap();
        assert_eq!(
            points(&store, "app", "events"),
            vec![
                ("cli".into(), 130_000, Point::Increase(5.0)),
                ("web".into(), 130_000, Point::Increase(1.0)),
                ("cli".into(), 160_000, Point::Increase(2.0)),
                ("cli".into(), 190_000, Point::Increase(4.0)),
            ]
        );
        let defs = metric_defs(&store, Some("app")).unwrap();
        assert_eq!(defs.len(), 1);
        assert_eq!(
            (
                defs[0].kind,
                defs[0].series,
                defs[0].first_ms,
                defs[0].last_ms
            ),
            (Kind::Counter, 2, 130_000, 190_000)
        );
        assert_eq!(
            defs[0].attribute_keys.iter().collect::<Vec<_>>(),
            vec!["surface"]
        );
        assert!(metric_defs(&store, Some("other")).unwrap().is_empty());

        // Another kind under the same name is refused, and nothing of it is stored.
        let gauge = [info("events", Kind::Gauge)];
        let mut g = sample("cli", None, 0, 200, 1.0);
        g.data = Data::Value(1.0);
        let applied = store
            .write(|txn| apply(txn, "app", &gauge, vec![g], false))
            .unwrap();
        assert_eq!((applied.accepted, applied.rejected.count()), (0, 1));
        assert!(applied
            .rejected
            .message()
            .contains("the metric is stored as a counter and this point is a gauge"));
        assert_eq!(points(&store, "app", "events").len(), 4);
    }

    #[test]
    fn the_outbox_notes_point_writes_for_the_sinks_and_is_pruned_behind_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let metrics = [info("events", Kind::Counter)];
        let write = |samples: Vec<Sample>, outbox: bool| {
            store
                .write(|txn| apply(txn, "app", &metrics, samples, outbox))
                .unwrap()
        };
        let bounds = || outbox_bounds(&store.begin_read().unwrap()).unwrap();
        assert_eq!(bounds(), (0, 1));
        // Without sinks nothing is noted.
        write(vec![sample("cli", None, 100, 110, 1.0)], false);
        assert_eq!(bounds(), (0, 1));
        // With sinks every point write is; one point written twice is read once, at its
        // latest value and version.
        write(
            vec![
                sample("cli", None, 100, 120, 3.0),
                sample("web", None, 100, 120, 2.0),
            ],
            true,
        );
        write(vec![sample("web", None, 130, 120, 5.0)], true);
        assert_eq!(bounds(), (0, 4));
        let (records, below) = outbox_points(&store, 1, 10).unwrap();
        assert_eq!(below, 4);
        let read: Vec<(u64, &str, Point)> = records
            .iter()
            .map(|r| {
                let surface = r.series.identity.attributes["surface"].as_str();
                (r.version, surface, r.point.clone())
            })
            .collect();
        assert_eq!(
            read,
            vec![
                (1, "cli", Point::Increase(2.0)),
                (3, "web", Point::Increase(7.0)),
            ]
        );
        assert_eq!(records[0].metric.kind, Kind::Counter);
        assert_eq!(outbox_points(&store, 2, 1).unwrap().1, 3);
        // The copy of every stored point pages by key, versioned by its snapshot.
        let (first, after) = stored_points(&store, None, 2).unwrap();
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|r| r.version == 3));
        let (rest, end) = stored_points(&store, after, 2).unwrap();
        assert_eq!((rest.len(), end), (1, None));
        // Pruning raises the floor; closing (no sinks any more) empties the outbox and puts
        // every earlier position below the floor.
        store.write(|txn| prune_outbox(txn, 3)).unwrap();
        assert_eq!(bounds(), (3, 4));
        assert_eq!(outbox_points(&store, 0, 10).unwrap().0.len(), 1);
        store.write(close_outbox).unwrap();
        assert_eq!(bounds(), (5, 5));
        assert!(outbox_points(&store, 0, 10).unwrap().0.is_empty());
    }

    #[test]
    fn sweep_deletes_old_points_and_series_and_idle_streams() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let metrics = [info("events", Kind::Counter)];
        store
            .write(|txn| {
                apply(
                    txn,
                    "app",
                    &metrics,
                    vec![
                        sample("old", None, 5, 10, 1.0),
                        sample("cli", None, 5, 10, 2.0),
                        sample("cli", None, 5, 20, 3.0),
                        sample("cli", None, 25, 30, 4.0),
                    ],
                    false,
                )
            })
            .unwrap();
        // Cut at 15 s; streams idle since before 26 s go.
        let step = store
            .write(|txn| sweep(txn, "app", 15_000, 26 * S, None, 1))
            .unwrap();
        assert_eq!(
            step.next
                .as_deref()
                .map(|k| k.ends_with("\"cli\"},\"install\":null,\"bounds\":[]}")),
            Some(true)
        );
        assert_eq!(
            (
                step.points_deleted,
                step.series_deleted,
                step.streams_pruned
            ),
            (1, 0, 1)
        );
        let step = store
            .write(|txn| sweep(txn, "app", 15_000, 26 * S, step.next.as_deref(), 1))
            .unwrap();
        assert_eq!(
            (step.points_deleted, step.series_deleted, step.next),
            (1, 1, None)
        );
        assert_eq!(
            points(&store, "app", "events"),
            vec![
                ("cli".into(), 20_000, Point::Increase(1.0)),
                ("cli".into(), 30_000, Point::Increase(4.0)),
            ]
        );
        assert_eq!(metric_defs(&store, None).unwrap()[0].series, 1);
        // The pruned stream reporting again is a baseline (it may have been counted); the
        // stream that kept reporting goes on; a stream started since counts in full.
        store
            .write(|txn| {
                apply(
                    txn,
                    "app",
                    &metrics,
                    vec![
                        sample("cli", None, 5, 40, 9.0),
                        sample("cli", None, 25, 40, 6.0),
                        sample("cli", None, 35, 40, 1.0),
                    ],
                    false,
                )
            })
            .unwrap();
        let last: Vec<Point> = points(&store, "app", "events")
            .into_iter()
            .filter(|p| p.1 == 40_000)
            .map(|p| p.2)
            .collect();
        assert_eq!(last, vec![Point::Increase(3.0)]);
    }

    #[test]
    fn erasing_an_install_removes_its_series_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let metrics = [info("events", Kind::Counter)];
        store
            .write(|txn| {
                apply(
                    txn,
                    "app",
                    &metrics,
                    vec![
                        sample("cli", Some("i-1"), 5, 10, 2.0),
                        sample("web", Some("i-1"), 5, 10, 2.0),
                        sample("web", Some("i-1"), 5, 20, 3.0),
                        sample("cli", Some("i-2"), 5, 10, 7.0),
                    ],
                    false,
                )
            })
            .unwrap();
        let erased = store
            .write(|txn| erase_install(txn, "i-1", &crate::scope::Scope::all()))
            .unwrap();
        assert_eq!(
            erased,
            Erased {
                series: 2,
                points: 3
            }
        );
        assert_eq!(
            points(&store, "app", "events"),
            vec![("cli".into(), 10_000, Point::Increase(7.0))]
        );
        assert_eq!(metric_defs(&store, None).unwrap()[0].series, 1);
        let txn = store.begin_read().unwrap();
        assert_eq!(txn.open_table(STREAMS).unwrap().len().unwrap(), 1);
        assert_eq!(txn.open_table(INSTALL_SERIES).unwrap().len().unwrap(), 1);
        drop(txn);
        assert_eq!(
            store
                .write(|txn| erase_install(txn, "i-1", &crate::scope::Scope::all()))
                .unwrap(),
            Erased::default()
        );
        // The last series gone, the metric goes too.
        store
            .write(|txn| erase_install(txn, "i-2", &crate::scope::Scope::all()))
            .unwrap();
        assert!(metric_defs(&store, None).unwrap().is_empty());
    }
}
