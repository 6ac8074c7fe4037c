//! The ClickHouse destination, over ClickHouse's HTTP interface (`ureq`, `JSONEachRow`): the
//! table it creates (one row per event, every event field a column, dimensions and metrics as
//! parallel key/value arrays, partitioned by product and UTC day, a ReplacingMergeTree whose
//! sorting key ends in the event id so a batch delivered twice leaves one row once merged),
//! deliveries, subject deletes (a mutation, confirmed through `system.mutations`) and retention
//! (dropping whole product-day partitions). The SQL runs on ClickHouse 18.16 (Debian's) and
//! on current releases. The password never appears in a log line or an error.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::SinkConfig;
use crate::model::{DimValue, Event};
use crate::privacy::SubjectKind;
use crate::sinks::{Destination, SinkError, SubjectDelete};

/// How long a subject delete may take to finish before the erasure answers "not confirmed".
const MUTATION_CONFIRM_TIMEOUT: Duration = Duration::from_secs(15);
const MUTATION_POLL: Duration = Duration::from_millis(100);
/// The longest piece of an error answer kept.
const ERROR_TEXT_MAX: usize = 300;

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

/// One event as a `JSONEachRow` line.
#[derive(Serialize)]
struct Row<'a> {
    id: uuid::Uuid,
    product: &'a str,
    name: &'a str,
    time: i64,
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
            id: e.id,
            product: &e.product,
            name: &e.name,
            time: e.timestamp.div_euclid(1000),
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

/// A ClickHouse server, database and table.
pub struct ClickHouse {
    agent: ureq::Agent,
    url: String,
    database: String,
    table: String,
    user: String,
    password: Option<String>,
}

impl ClickHouse {
    pub fn new(config: &SinkConfig) -> Result<ClickHouse, SinkError> {
        Ok(ClickHouse {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .timeout_global(Some(Duration::from_millis(config.timeout_ms)))
                .user_agent(concat!("telemetryd/", env!("CARGO_PKG_VERSION")))
                .build()
                .into(),
            url: format!("{}/", config.url.trim_end_matches('/')),
            database: config.database.clone(),
            table: config.table.clone(),
            user: config.user.clone(),
            password: config.password()?,
        })
    }

    /// `database.table` (both validated as identifiers by the config).
    fn qualified(&self) -> String {
        format!("{}.{}", self.database, self.table)
    }

    /// The `CREATE TABLE` statement of the sink's table.
    pub fn create_table_sql(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({COLUMNS}\n)\n{ENGINE}",
            self.qualified()
        )
    }

    /// Runs `sql` (in the URL when `body` carries data, else as the body); the answer's text.
    /// `secret` (a subject id) is blanked out of any error, as is the password.
    fn run(
        &self,
        sql: &str,
        body: Option<&[u8]>,
        secret: Option<&str>,
    ) -> Result<String, SinkError> {
        let mut request = self
            .agent
            .post(&self.url)
            .header("X-ClickHouse-User", &self.user);
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

    /// Rows of a `JSONEachRow` answer.
    fn select<T: for<'de> Deserialize<'de>>(&self, sql: &str) -> Result<Vec<T>, SinkError> {
        let text = self.run(&format!("{sql} FORMAT JSONEachRow"), None, None)?;
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

    /// Waits until the table has no unfinished mutation.
    fn mutations_done(&self) -> Result<(), SinkError> {
        #[derive(Deserialize)]
        struct Pending {
            #[serde(deserialize_with = "number_or_text")]
            pending: u64,
        }
        let sql = format!(
            "SELECT count() AS pending FROM system.mutations WHERE database = '{}' AND table = '{}' AND is_done = 0",
            self.database, self.table
        );
        let started = Instant::now();
        loop {
            let rows: Vec<Pending> = self.select(&sql)?;
            if rows.first().is_none_or(|r| r.pending == 0) {
                return Ok(());
            }
            if started.elapsed() >= MUTATION_CONFIRM_TIMEOUT {
                return Err(SinkError::Unconfirmed(format!(
                    "the delete was still running after {} s",
                    MUTATION_CONFIRM_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(MUTATION_POLL);
        }
    }
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
        self.run(
            &format!("CREATE DATABASE IF NOT EXISTS {}", self.database),
            None,
            None,
        )?;
        self.run(&self.create_table_sql(), None, None)?;
        Ok(())
    }

    fn deliver(&self, events: &[(u64, Event)]) -> Result<(), SinkError> {
        let mut body = Vec::with_capacity(events.len() * 512);
        for (_, event) in events {
            serde_json::to_writer(&mut body, &Row::of(event)).map_err(|e| SinkError::Rejected {
                status: 0,
                message: format!("cannot encode an event: {e}"),
            })?;
            body.push(b'\n');
        }
        let sql = format!("INSERT INTO {} FORMAT JSONEachRow", self.qualified());
        self.run(&sql, Some(&body), None)?;
        Ok(())
    }

    fn delete_subject(&self, delete: &SubjectDelete) -> Result<(), SinkError> {
        if delete.products.is_empty() {
            return Ok(());
        }
        let column = match delete.kind {
            SubjectKind::Install => "install_id",
            SubjectKind::User => "user_id",
        };
        let products: Vec<String> = delete.products.iter().map(|p| quote(p)).collect();
        let sql = format!(
            "ALTER TABLE {} DELETE WHERE {column} = {} AND product IN ({}) AND received_at_ms <= {}",
            self.qualified(),
            quote(&delete.id),
            products.join(", "),
            delete.received_until_ms
        );
        self.run(&sql, None, Some(&delete.id))?;
        self.mutations_done()
    }

    fn apply_retention(&self, cutoffs: &[(String, i64)]) -> Result<u64, SinkError> {
        #[derive(Deserialize)]
        struct Part {
            partition_id: String,
            partition: String,
        }
        let parts: Vec<Part> = self.select(&format!(
            "SELECT DISTINCT partition_id, partition FROM system.parts WHERE database = '{}' AND table = '{}' AND active",
            self.database, self.table
        ))?;
        let mut dropped = 0;
        for part in parts {
            let Some((product, day)) = parse_partition(&part.partition) else {
                continue;
            };
            let Some((_, cutoff)) = cutoffs.iter().find(|(p, _)| *p == product) else {
                continue;
            };
            // A day goes when all of it is older than the cutoff.
            if day < yyyymmdd(*cutoff) {
                self.run(
                    &format!(
                        "ALTER TABLE {} DROP PARTITION ID {}",
                        self.qualified(),
                        quote(&part.partition_id)
                    ),
                    None,
                    None,
                )?;
                dropped += 1;
            }
        }
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
