//! The ClickHouse destination, over ClickHouse's HTTP interface (`ureq`, `RowBinary`): the
//! tables it creates (events: one row per event, every event field a column, dimensions and
//! metrics as parallel key/value arrays, a ReplacingMergeTree whose sorting key ends in the
//! event id so a batch delivered twice leaves one row once merged; metric points: one row per
//! point of a series, replaced by a later version; both partitioned by product and UTC day),
//! deliveries, subject deletes (a mutation, confirmed through `system.mutations`) and retention
//! (dropping whole product-day partitions, and a table TTL from each product's retention where
//! the server has TTLs) — on every shard of a sharded cluster. The SQL runs on ClickHouse 18.16
//! (Debian's) and on current releases. The password never appears in a log line or an error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::SinkConfig;
use crate::model::{DimValue, Event};
use crate::privacy::SubjectKind;
use crate::series::model::Point;
use crate::series::store::PointRecord;
use crate::sinks::{row_binary, Destination, SinkError, SubjectDelete};

/// How long a subject delete may take to finish before the erasure answers "not confirmed".
const MUTATION_CONFIRM_TIMEOUT: Duration = Duration::from_secs(15);
const MUTATION_POLL: Duration = Duration::from_millis(100);
/// The longest piece of an error answer kept.
const ERROR_TEXT_MAX: usize = 300;
/// The first ClickHouse release with table TTLs.
const TTL_SINCE: (u32, u32) = (19, 6);
/// Rows of products the config does not name are kept this long by the TTL (the sweep leaves
/// them alone too).
const TTL_UNKNOWN_PRODUCT_DAYS: u32 = 36_500;

/// The table's columns and types, in the order of [`Row`]. The README's "Scaling out" section
/// shows the same DDL.
const COLUMNS: &str = "
    id UUID,
    product String,
    name String,
    time DateTime('UTC'),
    timestamp_ms Int64,
    received_at_ms Int64,
    level String,
    platform Nullable(String),
    channel Nullable(String),
    module Nullable(String),
    app_version Nullable(String),
    release_channel Nullable(String),
    os_family Nullable(String),
    os_version Nullable(String),
    arch Nullable(String),
    runtime Nullable(String),
    device_model Nullable(String),
    install_id Nullable(String),
    user_id Nullable(String),
    session_id Nullable(String),
    trace_id Nullable(String),
    span_id Nullable(String),
    parent_span_id Nullable(String),
    country_code Nullable(String),
    region_code Nullable(String),
    message Nullable(String),
    error_domain Nullable(String),
    error_code Nullable(String),
    error_message Nullable(String),
    error_stack Nullable(String),
    fingerprint Nullable(String),
    dim_keys Array(String),
    dim_values Array(String),
    metric_keys Array(String),
    metric_values Array(Float64),
    sample_rate Float64,
    schema_version Nullable(UInt32),
    source String,
    flags Array(String)";

/// The engine clause: one partition per product and UTC day (retention drops whole
/// partitions per product), sorted for per-product, per-event-name time ranges.
const ENGINE: &str = "ENGINE = ReplacingMergeTree()
PARTITION BY (product, toYYYYMMDD(time))
ORDER BY (product, name, time, id)";

/// The metric points table's columns, in the order of [`PointRow`]. `value` is a counter's
/// increase or a gauge's value; histograms and summaries fill `count` and `sum` (a gauge's
/// `count` is how many reports its value averages) and their buckets or quantiles.
const POINT_COLUMNS: &str = "
    product String,
    metric String,
    kind String,
    unit String,
    series_id UInt64,
    time DateTime('UTC'),
    time_ms Int64,
    install_id Nullable(String),
    attribute_keys Array(String),
    attribute_values Array(String),
    value Nullable(Float64),
    count UInt64,
    sum Nullable(Float64),
    min Nullable(Float64),
    max Nullable(Float64),
    bucket_bounds Array(Float64),
    bucket_counts Array(UInt64),
    quantiles Array(Float64),
    quantile_values Array(Float64),
    version UInt64";

/// The points engine: the row of a point with the highest version stays once parts merge.
const POINT_ENGINE: &str = "ENGINE = ReplacingMergeTree(version)
PARTITION BY (product, toYYYYMMDD(time))
ORDER BY (product, metric, series_id, time_ms)";

/// One metric point as a `RowBinary` row (fields in the order of [`POINT_COLUMNS`]).
#[derive(Serialize)]
struct PointRow<'a> {
    product: &'a str,
    metric: &'a str,
    kind: &'static str,
    unit: &'a str,
    series_id: u64,
    time: u32,
    time_ms: i64,
    install_id: Option<&'a str>,
    attribute_keys: Vec<&'a str>,
    attribute_values: Vec<&'a str>,
    value: Option<f64>,
    count: u64,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    bucket_bounds: &'a [f64],
    bucket_counts: &'a [u64],
    quantiles: Vec<f64>,
    quantile_values: Vec<f64>,
    version: u64,
}

/// A `DateTime` column's value (seconds, within its range) of a time in milliseconds.
fn date_time(ms: i64) -> u32 {
    u32::try_from(ms.div_euclid(1000).max(0)).unwrap_or(u32::MAX)
}

/// The column names of a column list (`COLUMNS`, `POINT_COLUMNS`), comma-separated, in order.
fn column_names(columns: &str) -> String {
    columns
        .split(",\n")
        .filter_map(|c| c.split_whitespace().next())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A float as the sink stores it (an infinite sum or value becomes NULL).
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

impl<'a> PointRow<'a> {
    fn of(r: &'a PointRecord) -> PointRow<'a> {
        let series = &*r.series;
        let mut row = PointRow {
            product: &series.product,
            metric: &series.name,
            kind: r.metric.kind.as_str(),
            unit: &r.metric.unit,
            series_id: series.id,
            time: date_time(r.time_ms),
            time_ms: r.time_ms,
            install_id: series.identity.install.as_deref(),
            attribute_keys: series
                .identity
                .attributes
                .keys()
                .map(String::as_str)
                .collect(),
            attribute_values: series
                .identity
                .attributes
                .values()
                .map(String::as_str)
                .collect(),
            value: None,
            count: 0,
            sum: None,
            min: None,
            max: None,
            bucket_bounds: &[],
            bucket_counts: &[],
            quantiles: Vec::new(),
            quantile_values: Vec::new(),
            version: r.version,
        };
        match &r.point {
            Point::Increase(increase) => row.value = finite(*increase),
            Point::Value { mean, n } => {
                row.value = finite(*mean);
                row.count = u64::from(*n);
            }
            Point::Histogram(h) => {
                row.count = h.count;
                row.sum = finite(h.sum);
                row.min = h.min.and_then(finite);
                row.max = h.max.and_then(finite);
                if !h.buckets.is_empty() {
                    row.bucket_bounds = &series.identity.bounds;
                    row.bucket_counts = &h.buckets;
                }
            }
            Point::Summary(q) => {
                row.count = q.count;
                row.sum = finite(q.sum);
                for (quantile, value) in &q.quantiles {
                    if let (Some(quantile), Some(value)) = (finite(*quantile), finite(*value)) {
                        row.quantiles.push(quantile);
                        row.quantile_values.push(value);
                    }
                }
            }
        }
        row
    }
}

/// One event as a `RowBinary` row (fields in the order of [`COLUMNS`]).
#[derive(Serialize)]
struct Row<'a> {
    id: (u64, u64),
    product: &'a str,
    name: &'a str,
    time: u32,
    timestamp_ms: i64,
    received_at_ms: i64,
    level: &'static str,
    platform: Option<&'a str>,
    channel: Option<&'a str>,
    module: Option<&'a str>,
    app_version: Option<&'a str>,
    release_channel: Option<&'a str>,
    os_family: Option<&'a str>,
    os_version: Option<&'a str>,
    arch: Option<&'a str>,
    runtime: Option<&'a str>,
    device_model: Option<&'a str>,
    install_id: Option<&'a str>,
    user_id: Option<&'a str>,
    session_id: Option<&'a str>,
    trace_id: Option<&'a str>,
    span_id: Option<&'a str>,
    parent_span_id: Option<&'a str>,
    country_code: Option<&'a str>,
    region_code: Option<&'a str>,
    message: Option<&'a str>,
    error_domain: Option<&'a str>,
    error_code: Option<&'a str>,
    error_message: Option<&'a str>,
    error_stack: Option<&'a str>,
    fingerprint: Option<&'a str>,
    dim_keys: Vec<&'a str>,
    dim_values: Vec<&'a str>,
    metric_keys: Vec<&'a str>,
    metric_values: Vec<f64>,
    sample_rate: f64,
    schema_version: Option<u32>,
    source: &'a str,
    flags: &'a [String],
}

impl<'a> Row<'a> {
    fn of(e: &'a Event) -> Row<'a> {
        let error = e.error.as_ref();
        let err = |f: fn(&'a crate::model::ErrorInfo) -> &'a Option<String>| {
            error.and_then(|i| f(i).as_deref())
        };
        Row {
            id: row_binary::uuid(&e.id),
            product: &e.product,
            name: &e.name,
            time: date_time(e.timestamp),
            timestamp_ms: e.timestamp,
            received_at_ms: e.received_at,
            level: e.level.as_str(),
            platform: e.platform.as_deref(),
            channel: e.channel.as_deref(),
            module: e.module.as_deref(),
            app_version: e.app_version.as_deref(),
            release_channel: e.release_channel.as_deref(),
            os_family: e.os_family.as_deref(),
            os_version: e.os_version.as_deref(),
            arch: e.arch.as_deref(),
            runtime: e.runtime.as_deref(),
            device_model: e.device_model.as_deref(),
            install_id: e.install_id.as_deref(),
            user_id: e.user_id.as_deref(),
            session_id: e.session_id.as_deref(),
            trace_id: e.trace_id.as_deref(),
            span_id: e.span_id.as_deref(),
            parent_span_id: e.parent_span_id.as_deref(),
            country_code: e.country_code.as_deref(),
            region_code: e.region_code.as_deref(),
            message: e.message.as_deref(),
            error_domain: err(|i| &i.domain),
            error_code: err(|i| &i.code),
            error_message: err(|i| &i.message),
            error_stack: err(|i| &i.stack),
            fingerprint: e.fingerprint.as_deref(),
            dim_keys: e.dims.keys().map(String::as_str).collect(),
            dim_values: e
                .dims
                .values()
                .map(|v| match v {
                    DimValue::Bool(true) => "true",
                    DimValue::Bool(false) => "false",
                    DimValue::Str(s) => s.as_str(),
                })
                .collect(),
            metric_keys: e.metrics.keys().map(String::as_str).collect(),
            metric_values: e.metrics.values().copied().collect(),
            sample_rate: e.sample_rate,
            schema_version: e.schema_version,
            source: e.source.as_str(),
            flags: &e.flags,
        }
    }
}

/// The positions of a batch's events in the events table's sorting key order (`ENGINE`:
/// product, name, time in seconds, id), which ClickHouse otherwise puts each insert in itself:
/// a sorted insert costs it about a third less CPU. The batch's few (product, name) pairs are
/// ranked once, so the sort compares integers.
fn sorting_key_order(events: &[(u64, Arc<Event>)]) -> Vec<u32> {
    let mut pairs: rustc_hash::FxHashMap<(&str, &str), u32> = Default::default();
    let mut keys: Vec<(u64, u128, u32)> = Vec::with_capacity(events.len());
    for (position, (_, e)) in events.iter().enumerate() {
        let next = pairs.len() as u32;
        let pair = *pairs.entry((&e.product, &e.name)).or_insert(next);
        // ClickHouse reads a UUID's first written half as the low one and compares high
        // half first.
        let (first, second) = row_binary::uuid(&e.id);
        let id = (u128::from(second) << 64) | u128::from(first);
        let time = u64::from(date_time(e.timestamp));
        keys.push(((u64::from(pair) << 32) | time, id, position as u32));
    }
    let mut ranked: Vec<((&str, &str), u32)> = pairs.into_iter().collect();
    ranked.sort_unstable();
    let mut rank_of = vec![0; ranked.len()];
    for (rank, (_, pair)) in ranked.iter().enumerate() {
        rank_of[*pair as usize] = rank as u64;
    }
    for (key, _, _) in &mut keys {
        *key = (rank_of[(*key >> 32) as usize] << 32) | (*key & u64::from(u32::MAX));
    }
    keys.sort_unstable();
    keys.into_iter().map(|(_, _, position)| position).collect()
}

/// `RowBinary` rows, encoded in the order they come (for a batch, the order its events were
/// received and allocated in, which memory serves fastest) and laid out in a given order. The
/// buffers are kept from insert to insert, so a batch is not written into fresh pages (about
/// 300 bytes an event: 15 MB at the default batch size).
#[derive(Default)]
struct Encoder {
    body: Vec<u8>,
    rows: Vec<u8>,
    ends: Vec<usize>,
}

impl Encoder {
    /// The body of `rows`, in `order` (positions in `rows`) when given.
    fn encode<R: Serialize>(
        &mut self,
        rows: impl Iterator<Item = R>,
        order: Option<&[u32]>,
    ) -> Result<&[u8], SinkError> {
        let encoded = match order {
            Some(_) => &mut self.rows,
            None => &mut self.body,
        };
        encoded.clear();
        self.ends.clear();
        for row in rows {
            row_binary::append(encoded, &row).map_err(|e| SinkError::Rejected {
                status: 0,
                message: format!("cannot encode a row: {e}"),
            })?;
            self.ends.push(encoded.len());
        }
        let Some(order) = order else {
            return Ok(&self.body);
        };
        self.body.clear();
        for &position in order {
            let position = position as usize;
            let start = position
                .checked_sub(1)
                .map_or(0, |before| self.ends[before]);
            self.body
                .extend_from_slice(&self.rows[start..self.ends[position]]);
        }
        Ok(&self.body)
    }
}

/// A server and the events and points tables the sink's deletes and partition drops run on.
struct Target {
    url: String,
    table: String,
    points_table: String,
}

/// A ClickHouse server (or cluster), database and tables.
pub struct ClickHouse {
    /// The TTL expression of each product's retention, and the file keeping the one last set.
    ttl: String,
    ttl_file: std::path::PathBuf,
    agent: ureq::Agent,
    /// Where inserts go, and where the tables are created when not sharded.
    url: String,
    database: String,
    table: String,
    points_table: String,
    /// Where deletes and partition drops run: every shard's local tables, or `url`'s tables.
    targets: Vec<Target>,
    sharded: bool,
    user: String,
    password: Option<String>,
    encoder: std::sync::Mutex<Encoder>,
}

impl ClickHouse {
    /// The destination of `config`; `retention` is each product's `retention_days`, and
    /// `state_dir` keeps the TTL last set (`NAME.ttl`).
    pub fn new(
        config: &SinkConfig,
        retention: &[(String, u32)],
        state_dir: &std::path::Path,
    ) -> Result<ClickHouse, SinkError> {
        Ok(ClickHouse {
            ttl: ttl_expression(retention),
            ttl_file: state_dir.join(format!("{}.ttl", config.name)),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .timeout_global(Some(Duration::from_millis(config.timeout_ms)))
                .user_agent(concat!("telemetryd/", env!("CARGO_PKG_VERSION")))
                .build()
                .into(),
            url: base_url(&config.url),
            database: config.database.clone(),
            table: config.table.clone(),
            points_table: config.points_table.clone(),
            targets: if config.shards.is_empty() {
                vec![Target {
                    url: base_url(&config.url),
                    table: config.table.clone(),
                    points_table: config.points_table.clone(),
                }]
            } else {
                config
                    .shards
                    .iter()
                    .map(|url| Target {
                        url: base_url(url),
                        table: config.shard_table.clone().unwrap_or(config.table.clone()),
                        points_table: config
                            .shard_points_table
                            .clone()
                            .unwrap_or(config.points_table.clone()),
                    })
                    .collect()
            },
            sharded: !config.shards.is_empty(),
            user: config.user.clone(),
            password: config.password()?,
            encoder: std::sync::Mutex::default(),
        })
    }

    /// `database.table` (both validated as identifiers by the config).
    fn qualified(&self, table: &str) -> String {
        format!("{}.{table}", self.database)
    }

    /// The `CREATE TABLE` statement of the sink's events table.
    pub fn create_table_sql(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({COLUMNS}\n)\n{ENGINE}",
            self.qualified(&self.table)
        )
    }

    /// The `CREATE TABLE` statement of the sink's metric points table.
    pub fn create_points_table_sql(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({POINT_COLUMNS}\n)\n{POINT_ENGINE}",
            self.qualified(&self.points_table)
        )
    }

    /// Runs `sql` at `url` (in the URL when `body` carries data, else as the body); the
    /// answer's text. `secret` (a subject id) is blanked out of any error, as is the password.
    fn run(
        &self,
        url: &str,
        sql: &str,
        body: Option<&[u8]>,
        secret: Option<&str>,
    ) -> Result<String, SinkError> {
        let mut request = self.agent.post(url).header("X-ClickHouse-User", &self.user);
        if let Some(password) = &self.password {
            request = request.header("X-ClickHouse-Key", password);
        }
        let result = match body {
            Some(data) => request.query("query", sql).send(data),
            None => request.send(sql.as_bytes()),
        };
        let scrub = |text: String| self.scrub(text, secret);
        let mut response = result.map_err(|e| SinkError::Unreachable(scrub(e.to_string())))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| SinkError::Unreachable(scrub(e.to_string())))?;
        if status != 200 {
            let mut message = scrub(text.trim().to_string());
            if message.len() > ERROR_TEXT_MAX {
                let mut end = ERROR_TEXT_MAX;
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                message.truncate(end);
            }
            return Err(SinkError::Rejected { status, message });
        }
        Ok(text)
    }

    fn scrub(&self, mut text: String, secret: Option<&str>) -> String {
        for hidden in [self.password.as_deref(), secret].into_iter().flatten() {
            if !hidden.is_empty() {
                text = text.replace(hidden, "[hidden]");
            }
        }
        text
    }

    /// Rows of a `JSONEachRow` answer from `url`.
    fn select<T: for<'de> Deserialize<'de>>(
        &self,
        url: &str,
        sql: &str,
    ) -> Result<Vec<T>, SinkError> {
        let text = self.run(url, &format!("{sql} FORMAT JSONEachRow"), None, None)?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).map_err(|e| SinkError::Rejected {
                    status: 200,
                    message: format!("unexpected answer: {e}"),
                })
            })
            .collect()
    }

    /// Waits until the target's tables have no unfinished mutation.
    fn mutations_done(&self, target: &Target) -> Result<(), SinkError> {
        #[derive(Deserialize)]
        struct Pending {
            #[serde(deserialize_with = "number_or_text")]
            pending: u64,
        }
        let sql = format!(
            "SELECT count() AS pending FROM system.mutations WHERE database = '{}' AND table IN ('{}', '{}') AND is_done = 0",
            self.database, target.table, target.points_table
        );
        let started = Instant::now();
        loop {
            let rows: Vec<Pending> = self.select(&target.url, &sql)?;
            if rows.first().is_none_or(|r| r.pending == 0) {
                return Ok(());
            }
            if started.elapsed() >= MUTATION_CONFIRM_TIMEOUT {
                return Err(SinkError::Unconfirmed(format!(
                    "the delete was still running at {} after {} s",
                    target.url,
                    MUTATION_CONFIRM_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(MUTATION_POLL);
        }
    }

    /// Inserts `RowBinary` rows into `table`'s `columns` at the insert URL, in `order` when
    /// given.
    fn insert<R: Serialize>(
        &self,
        table: &str,
        columns: &str,
        rows: impl Iterator<Item = R>,
        order: Option<&[u32]>,
    ) -> Result<(), SinkError> {
        let mut encoder = self.encoder.lock().unwrap_or_else(|p| p.into_inner());
        let body = encoder.encode(rows, order)?;
        let sql = format!(
            "INSERT INTO {} ({}) FORMAT RowBinary",
            self.qualified(table),
            column_names(columns)
        );
        self.run(&self.url, &sql, Some(body), None)?;
        Ok(())
    }

    /// Whether the server at `url` has table TTLs.
    fn has_ttl(&self, url: &str) -> Result<bool, SinkError> {
        let version = self.run(url, "SELECT version()", None, None)?;
        Ok(version_at_least(version.trim(), TTL_SINCE))
    }

    /// Sets the retention TTL on every target's tables that has TTLs, unless it is the one
    /// set last (so a restart does not make ClickHouse re-evaluate the TTL of every part).
    fn apply_ttl(&self) -> Result<(), SinkError> {
        let applied = std::fs::read_to_string(&self.ttl_file).unwrap_or_default();
        if applied == self.ttl {
            return Ok(());
        }
        // Kept only when every target took it: a server upgraded to TTLs later gets it then.
        let mut everywhere = true;
        for target in &self.targets {
            if !self.has_ttl(&target.url)? {
                everywhere = false;
                continue;
            }
            for table in [&target.table, &target.points_table] {
                let sql = format!(
                    "ALTER TABLE {} MODIFY TTL {}",
                    self.qualified(table),
                    self.ttl
                );
                self.run(&target.url, &sql, None, None)?;
            }
        }
        if !everywhere {
            return Ok(());
        }
        std::fs::write(&self.ttl_file, &self.ttl).map_err(|e| SinkError::State {
            path: self.ttl_file.clone(),
            message: e.to_string(),
        })
    }

    /// Fails unless `table` exists at `url` (a cluster's tables are created by its operator).
    fn require_table(&self, url: &str, table: &str) -> Result<(), SinkError> {
        let answer = self.run(
            url,
            &format!("EXISTS TABLE {}", self.qualified(table)),
            None,
            None,
        )?;
        if answer.trim() == "1" {
            return Ok(());
        }
        Err(SinkError::NotReady(format!(
            "table {} does not exist at {url}; on a sharded cluster create it first (README, \"Scaling out\")",
            self.qualified(table)
        )))
    }
}

/// A row's expiry: its time plus its product's retention in days.
fn ttl_expression(retention: &[(String, u32)]) -> String {
    let products: Vec<String> = retention.iter().map(|(p, _)| quote(p)).collect();
    let days: Vec<String> = retention.iter().map(|(_, d)| d.to_string()).collect();
    format!(
        "time + toIntervalDay(transform(product, [{}], [{}], {TTL_UNKNOWN_PRODUCT_DAYS}))",
        products.join(", "),
        days.join(", ")
    )
}

/// Whether a `SELECT version()` answer (`18.16.1`, `24.8.4.13`) is at least `major.minor`.
fn version_at_least(version: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}

/// `url` with one trailing slash.
fn base_url(url: &str) -> String {
    format!("{}/", url.trim_end_matches('/'))
}

/// ClickHouse writes 64-bit integers as JSON strings by default.
fn number_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u64),
        Text(String),
    }
    match Either::deserialize(d)? {
        Either::Number(n) => Ok(n),
        Either::Text(t) => t.parse().map_err(serde::de::Error::custom),
    }
}

/// A ClickHouse string literal.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `('product',20260101)` (how `system.parts` names a partition of the table) → its product
/// and day.
fn parse_partition(text: &str) -> Option<(String, u32)> {
    let inner = text.strip_prefix('(')?.strip_suffix(')')?;
    let (product, day) = inner.rsplit_once(',')?;
    let product = product.trim().strip_prefix('\'')?.strip_suffix('\'')?;
    let mut unquoted = String::with_capacity(product.len());
    let mut chars = product.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            unquoted.push(chars.next()?);
        } else {
            unquoted.push(c);
        }
    }
    Some((unquoted, day.trim().parse().ok()?))
}

/// The UTC day of `ms` as `YYYYMMDD`, as `toYYYYMMDD` writes it.
fn yyyymmdd(ms: i64) -> u32 {
    let date = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .map(|t| t.date())
        .unwrap_or(time::Date::MIN);
    (date.year().max(0) as u32) * 10_000
        + u32::from(u8::from(date.month())) * 100
        + u32::from(date.day())
}

impl Destination for ClickHouse {
    fn prepare(&self) -> Result<(), SinkError> {
        if self.sharded {
            self.require_table(&self.url, &self.table)?;
            self.require_table(&self.url, &self.points_table)?;
            for target in &self.targets {
                self.require_table(&target.url, &target.table)?;
                self.require_table(&target.url, &target.points_table)?;
            }
            return self.apply_ttl();
        }
        let create_database = format!("CREATE DATABASE IF NOT EXISTS {}", self.database);
        self.run(&self.url, &create_database, None, None)?;
        self.run(&self.url, &self.create_table_sql(), None, None)?;
        self.run(&self.url, &self.create_points_table_sql(), None, None)?;
        self.apply_ttl()
    }

    fn deliver(&self, events: &[(u64, Arc<Event>)]) -> Result<(), SinkError> {
        let order = sorting_key_order(events);
        let rows = events.iter().map(|(_, e)| Row::of(e));
        self.insert(&self.table, COLUMNS, rows, Some(&order))
    }

    fn deliver_points(&self, points: &[PointRecord]) -> Result<(), SinkError> {
        self.insert(
            &self.points_table,
            POINT_COLUMNS,
            points.iter().map(PointRow::of),
            None,
        )
    }

    fn delete_subject(&self, delete: &SubjectDelete) -> Result<(), SinkError> {
        if delete.products.is_empty() {
            return Ok(());
        }
        let column = match delete.kind {
            SubjectKind::Install => "install_id",
            SubjectKind::User => "user_id",
        };
        let products = delete
            .products
            .iter()
            .map(|p| quote(p))
            .collect::<Vec<_>>()
            .join(", ");
        let id = quote(&delete.id);
        // Every shard first, then the confirmations: the shards' mutations run side by side.
        for target in &self.targets {
            let events = format!(
                "ALTER TABLE {} DELETE WHERE {column} = {id} AND product IN ({products}) AND received_at_ms <= {}",
                self.qualified(&target.table),
                delete.received_until_ms
            );
            self.run(&target.url, &events, None, Some(&delete.id))?;
            if let (SubjectKind::Install, Some(below)) = (delete.kind, delete.points_below) {
                let points = format!(
                    "ALTER TABLE {} DELETE WHERE install_id = {id} AND product IN ({products}) AND version < {below}",
                    self.qualified(&target.points_table),
                );
                self.run(&target.url, &points, None, Some(&delete.id))?;
            }
        }
        for target in &self.targets {
            self.mutations_done(target)?;
        }
        Ok(())
    }

    fn apply_retention(&self, cutoffs: &[(String, i64)]) -> Result<u64, SinkError> {
        #[derive(Deserialize)]
        struct Part {
            table: String,
            partition_id: String,
            partition: String,
        }
        let mut dropped = 0;
        for target in &self.targets {
            let parts: Vec<Part> = self.select(
                &target.url,
                &format!(
                    "SELECT DISTINCT table, partition_id, partition FROM system.parts WHERE database = '{}' AND table IN ('{}', '{}') AND active",
                    self.database, target.table, target.points_table
                ),
            )?;
            for part in parts {
                let Some((product, day)) = parse_partition(&part.partition) else {
                    continue;
                };
                let Some((_, cutoff)) = cutoffs.iter().find(|(p, _)| *p == product) else {
                    continue;
                };
                // A day goes when all of it is older than the cutoff.
                if day < yyyymmdd(*cutoff) {
                    let sql = format!(
                        "ALTER TABLE {} DROP PARTITION ID {}",
                        self.qualified(&part.table),
                        quote(&part.partition_id)
                    );
                    self.run(&target.url, &sql, None, None)?;
                    dropped += 1;
                }
            }
        }
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RowBinary rows carry no names: a row's members must come in its table's column order.
    fn assert_in_column_order(json: &str, columns: &str) {
        let names = column_names(columns);
        let positions: Vec<usize> = names
            .split(", ")
            .map(|name| {
                json.find(&format!("\"{name}\":"))
                    .unwrap_or_else(|| panic!("no member {name} in {json}"))
            })
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "the members are not in the order of the columns {names}: {json}"
        );
    }

    #[test]
    fn point_rows_follow_the_points_table() {
        use crate::series::model::{HistogramPoint, Identity, Kind, MetricDef, SeriesDef};
        let series = SeriesDef {
            id: 7,
            product: "p".into(),
            name: "m".into(),
            identity: Identity {
                attributes: [("surface".to_string(), "cli".to_string())].into(),
                install: Some("i".into()),
                bounds: vec![0.1, 0.5],
            },
            first_ms: 0,
            last_ms: 0,
            counted_from_ns: 0,
        };
        let metric = MetricDef {
            product: "p".into(),
            name: "m".into(),
            kind: Kind::Histogram,
            unit: "s".into(),
            description: String::new(),
            series: 1,
            attribute_keys: Default::default(),
            first_ms: 0,
            last_ms: 0,
        };
        let record = PointRecord {
            version: 3,
            series: std::sync::Arc::new(series),
            metric: std::sync::Arc::new(metric),
            time_ms: 1_700_000_000_123,
            point: Point::Histogram(HistogramPoint {
                count: 3,
                sum: f64::INFINITY,
                min: Some(0.05),
                max: None,
                buckets: vec![1, 2, 0],
            }),
        };
        let row = PointRow::of(&record);
        assert_eq!((row.time, row.count, row.sum), (1_700_000_000, 3, None));
        assert_eq!(
            (row.bucket_bounds, row.bucket_counts),
            (&[0.1, 0.5][..], &[1, 2, 0][..])
        );
        assert_in_column_order(&serde_json::to_string(&row).unwrap(), POINT_COLUMNS);
        assert_eq!(date_time(-5), 0);
    }

    #[test]
    fn partitions_parse_as_system_parts_writes_them() {
        assert_eq!(
            parse_partition("('voice-sdk',20260101)"),
            Some(("voice-sdk".to_string(), 20260101))
        );
        assert_eq!(
            parse_partition("('it\\'s',20251231)"),
            Some(("it's".to_string(), 20251231))
        );
        assert_eq!(parse_partition("20260101"), None);
    }

    #[test]
    fn days_are_utc() {
        assert_eq!(yyyymmdd(0), 19700101);
        assert_eq!(yyyymmdd(1_700_000_000_123), 20231114);
        assert_eq!(yyyymmdd(-1), 19691231);
    }

    #[test]
    fn ttls_come_with_19_6_and_follow_each_products_retention() {
        assert!(!version_at_least("18.16.1", TTL_SINCE));
        assert!(!version_at_least("19.5.3.8", TTL_SINCE));
        assert!(version_at_least("19.6.2.11", TTL_SINCE));
        assert!(version_at_least("24.8.4.13", TTL_SINCE));
        assert!(!version_at_least("garbage", TTL_SINCE));
        assert_eq!(
            ttl_expression(&[("voice-sdk".into(), 90), ("it's".into(), 30)]),
            "time + toIntervalDay(transform(product, ['voice-sdk', 'it\\'s'], [90, 30], 36500))"
        );
    }

    #[test]
    fn literals_are_escaped() {
        assert_eq!(quote("a'b\\c"), "'a\\'b\\\\c'");
    }

    #[test]
    fn every_event_member_has_a_column() {
        let event = crate::fields::tests::full_event();
        let row = serde_json::to_value(Row::of(&event)).unwrap();
        let mut columns: Vec<&str> = COLUMNS
            .split(",\n")
            .filter_map(|c| c.split_whitespace().next())
            .collect();
        columns.sort_unstable();
        let keys: Vec<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, columns, "the row's members are the table's columns");
        assert_in_column_order(&serde_json::to_string(&Row::of(&event)).unwrap(), COLUMNS);
        for (member, value) in serde_json::to_value(&event).unwrap().as_object().unwrap() {
            let carried = match member.as_str() {
                "timestamp" => vec!["timestamp_ms", "time"],
                "received_at" => vec!["received_at_ms"],
                "error" => vec!["error_domain", "error_code", "error_message", "error_stack"],
                "dims" => vec!["dim_keys", "dim_values"],
                "metrics" => vec!["metric_keys", "metric_values"],
                other => vec![other],
            };
            for column in carried {
                assert!(
                    !row[column].is_null(),
                    "event member {member} ({value}) is not in column {column}"
                );
            }
        }
    }

    proptest::proptest! {
        /// A batch is sent as a permutation of itself, in the table's sorting key order
        /// as ClickHouse compares it: product, name, second, then a UUID by the half written
        /// second (checked against ClickHouse 18.16: the row written (1, 0) sorts before (0, 2)).
        #[test]
        fn batches_go_in_sorting_key_order(
            rows in proptest::collection::vec((0..3usize, 0..3usize, -2_000i64..4_000, 0..3u64, 0..3u64), 0..60)
        ) {
            let products = ["b", "a", "ab"];
            let names = ["x", "", "y"];
            let batch: Vec<(u64, Arc<Event>)> = rows
                .iter()
                .enumerate()
                .map(|(seq, &(p, n, ms, high, low))| {
                    let mut event = crate::fields::tests::full_event();
                    event.product = products[p].into();
                    event.name = names[n].into();
                    event.timestamp = ms;
                    event.id = uuid::Uuid::from_u64_pair(high, low.wrapping_add(seq as u64 * 8));
                    (seq as u64, Arc::new(event))
                })
                .collect();
            let order = sorting_key_order(&batch);
            let sorted: Vec<&Event> = order.iter().map(|&p| &*batch[p as usize].1).collect();
            let key = |e: &Event| {
                let (high, low) = e.id.as_u64_pair();
                (e.product.clone(), e.name.clone(), date_time(e.timestamp), low, high)
            };
            proptest::prop_assert!(sorted.windows(2).all(|w| key(w[0]) <= key(w[1])));
            let mut ids: Vec<uuid::Uuid> = sorted.iter().map(|e| e.id).collect();
            let mut expected: Vec<uuid::Uuid> = batch.iter().map(|(_, e)| e.id).collect();
            ids.sort_unstable();
            expected.sort_unstable();
            proptest::prop_assert_eq!(ids, expected);
            // The body lays the rows out in that order.
            let rows = || batch.iter().map(|(_, e)| Row::of(e));
            let mut encoder = Encoder::default();
            let body = encoder.encode(rows(), Some(&order)).unwrap().to_vec();
            let in_order = order.iter().map(|&p| Row::of(&batch[p as usize].1));
            proptest::prop_assert_eq!(body, encoder.encode(in_order, None).unwrap());
        }
    }
}
