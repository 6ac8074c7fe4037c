//! OTLP metrics as time series, end to end: exports (protobuf and JSON, built from the
//! opentelemetry-proto types) taken by `state.series.accept`, read back through the query API
//! over HTTP with the values asserted; partial success; the retention sweep and an install's
//! erasure.

mod common;

use common::{request, TestServer, ADMIN_TOKEN, VIEWER_TOKEN};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::{json, Value};
use telemetryd::otlp::Encoding;
use telemetryd::series::{self, SeriesError};
use telemetryd::timespan::{hour_start, DAY_MS, HOUR_MS, MINUTE_MS};

const INSTALL_ATTRIBUTE: &str = "app.install_id";

/// The shipped config, with voice-sdk taking its install id from `app.install_id` and
/// selected by the service name `atlas-sdk`.
fn server() -> TestServer {
    let text = common::shipped_config_text().replacen(
        "[products.otlp]\nservice_names = []\n",
        &format!(
            "[products.otlp]\nservice_names = [\"atlas-sdk\"]\ninstall_id_attribute = \"{INSTALL_ATTRIBUTE}\"\n"
        ),
        1,
    );
    TestServer::start(&text, &[])
}

fn now_ms() -> i64 {
    telemetryd::model::now_ms()
}

fn ns(ms: i64) -> u64 {
    ms as u64 * 1_000_000
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

fn attrs(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
    pairs.iter().map(|(k, v)| kv(k, v)).collect()
}

fn export(resource: Vec<KeyValue>, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource,
                ..Resource::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    }
}

/// A cumulative monotonic counter report (what the Python and JS SDKs send by default).
fn counter(name: &str, points: Vec<(Vec<KeyValue>, i64, i64, f64)>) -> Metric {
    Metric {
        name: name.into(),
        unit: "1".into(),
        description: "SDK events".into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points
                .into_iter()
                .map(|(attributes, start, time, value)| NumberDataPoint {
                    attributes,
                    start_time_unix_nano: ns(start),
                    time_unix_nano: ns(time),
                    value: Some(number_data_point::Value::AsInt(value as i64)),
                    ..NumberDataPoint::default()
                })
                .collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Metric::default()
    }
}

fn accept(
    server: &TestServer,
    product: Option<&str>,
    body: &[u8],
    encoding: Encoding,
) -> series::MetricsOutcome {
    server
        .state
        .series
        .accept(product, None, None, body, encoding)
        .expect("accepted")
}

fn query(server: &TestServer, params: &[(&str, String)]) -> Value {
    let qs: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let resp = server.admin_get(&format!("/api/v1/metrics/query?{}", qs.join("&")));
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()
}

fn bucket_values(group: &Value) -> Vec<Value> {
    group["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| b["value"].clone())
        .collect()
}

/// The group whose attributes are `attrs`.
fn group(result: &Value, attrs: Value) -> &Value {
    result["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["attributes"] == attrs)
        .unwrap_or_else(|| panic!("no group {attrs} in {result}"))
}

#[test]
fn a_counter_across_a_client_restart_is_increases_per_bucket() {
    let server = server();
    // Three whole hours ago, so every bucket below is complete.
    let base = hour_start(now_ms()) - 3 * HOUR_MS;
    let at = |minutes: i64| base + minutes * MINUTE_MS;
    let cli = || attrs(&[("surface", "cli"), ("event", "start")]);
    let web = || attrs(&[("surface", "web"), ("event", "start")]);
    let resource = || {
        attrs(&[
            ("service.name", "atlas-sdk"),
            ("telemetry.sdk.language", "python"),
        ])
    };
    // Run 1 of the client started at minute 5: 5, then 8 (+3), then 8 (nothing).
    let first = export(
        resource(),
        vec![counter(
            "atlas_sdk_events_total",
            vec![
                (cli(), at(5), at(10), 5.0),
                (web(), at(5), at(10), 1.0),
                (cli(), at(5), at(20), 8.0),
                (cli(), at(5), at(70), 8.0),
            ],
        )],
    );
    // No product named: the service name selects voice-sdk.
    let outcome = accept(&server, None, &first.encode_to_vec(), Encoding::Protobuf);
    assert_eq!(
        (
            outcome.accepted_points,
            outcome.rejected_points,
            outcome.error_message.as_str()
        ),
        (4, 0, "")
    );
    // The client restarted at minute 75 (new start time): its counter began again at 0.
    let second = export(
        resource(),
        vec![counter(
            "atlas_sdk_events_total",
            vec![
                (cli(), at(75), at(80), 2.0),
                (web(), at(5), at(80), 4.0),
                (cli(), at(75), at(130), 6.0),
                // A resend of a report already taken adds nothing.
                (cli(), at(5), at(20), 8.0),
            ],
        )],
    );
    let outcome = accept(&server, None, &second.encode_to_vec(), Encoding::Protobuf);
    assert_eq!((outcome.accepted_points, outcome.rejected_points), (4, 0));
    // A JSON export of the same client, as the OTLP/HTTP JSON mapping writes it.
    let third = export(
        resource(),
        vec![counter(
            "atlas_sdk_events_total",
            vec![(cli(), at(75), at(140), 9.0)],
        )],
    );
    let body = serde_json::to_vec(&third).unwrap();
    let outcome = accept(&server, Some("voice-sdk"), &body, Encoding::Json);
    assert_eq!((outcome.accepted_points, outcome.rejected_points), (1, 0));

    let result = query(
        &server,
        &[
            ("product", "voice-sdk".into()),
            ("name", "atlas_sdk_events_total".into()),
            ("from", base.to_string()),
            ("to", (base + 3 * HOUR_MS - 1).to_string()),
            ("bucket", "1h".into()),
            ("group_by", "surface".into()),
        ],
    );
    assert_eq!(result["kind"], "counter");
    assert_eq!(result["stat"], "increase");
    assert_eq!(result["unit"], "1");
    assert_eq!(result["bucket_ms"], HOUR_MS);
    assert_eq!(result["from_ms"], base);
    assert_eq!(result["group_by"], json!(["surface"]));
    let cli = group(&result, json!({"surface": "cli"}));
    // Hour 0: 5 + 3; hour 1: 0 (no change), then the new run's 2; hour 2: +4, +3.
    assert_eq!(bucket_values(cli), vec![json!(8.0), json!(2.0), json!(7.0)]);
    assert_eq!(cli["overall"], json!(17.0));
    assert_eq!(cli["series"], 1);
    let web = group(&result, json!({"surface": "web"}));
    assert_eq!(bucket_values(web), vec![json!(1.0), json!(3.0), json!(0.0)]);
    assert_eq!(web["overall"], json!(4.0));
    // The larger group comes first.
    assert_eq!(result["groups"][0]["attributes"], json!({"surface": "cli"}));
    let starts: Vec<i64> = cli["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["start_ms"].as_i64().unwrap())
        .collect();
    assert_eq!(starts, vec![base, base + HOUR_MS, base + 2 * HOUR_MS]);

    // Rate: the increase per second of the bucket; no grouping: one group of both series.
    let rate = query(
        &server,
        &[
            ("product", "voice-sdk".into()),
            ("name", "atlas_sdk_events_total".into()),
            ("from", base.to_string()),
            ("to", (base + HOUR_MS - 1).to_string()),
            ("stat", "rate".into()),
        ],
    );
    assert_eq!(rate["groups"].as_array().unwrap().len(), 1);
    assert_eq!(rate["groups"][0]["series"], 2);
    assert_eq!(rate["groups"][0]["attributes"], json!({}));
    assert_eq!(bucket_values(&rate["groups"][0]), vec![json!(9.0 / 3600.0)]);

    // The metric list.
    let names = server.get_as("/api/v1/metrics/names?product=voice-sdk", VIEWER_TOKEN);
    assert_eq!(names.status, 200, "{}", names.text());
    let names = names.json();
    let metric = &names["metrics"][0];
    assert_eq!(metric["name"], "atlas_sdk_events_total");
    assert_eq!(metric["product"], "voice-sdk");
    assert_eq!(metric["kind"], "counter");
    assert_eq!(metric["description"], "SDK events");
    assert_eq!(metric["series"], 2);
    assert_eq!(metric["attributes"], json!(["event", "surface"]));
    assert_eq!(metric["first_seen_ms"], at(10));
    assert_eq!(metric["last_seen_ms"], at(140));
    assert_eq!(metric["stats"], json!(["increase", "rate"]));
    let all = server.admin_get("/api/v1/metrics/names").json();
    assert_eq!(all["metrics"].as_array().unwrap().len(), 1);
    let other = server
        .admin_get("/api/v1/metrics/names?product=dictation-app")
        .json();
    assert_eq!(other["metrics"], json!([]));
}

#[test]
fn a_histogram_answers_counts_sums_and_percentiles() {
    let server = server();
    let base = hour_start(now_ms()) - 2 * HOUR_MS;
    let start = base - HOUR_MS;
    let bounds = vec![0.1, 0.5, 1.0, 5.0];
    let report = |minutes: i64, counts: Vec<u64>, sum: f64| HistogramDataPoint {
        attributes: attrs(&[("route", "/v1/calls")]),
        start_time_unix_nano: ns(start),
        time_unix_nano: ns(base + minutes * MINUTE_MS),
        count: counts.iter().sum(),
        sum: Some(sum),
        bucket_counts: counts,
        explicit_bounds: bounds.clone(),
        min: Some(0.05),
        max: Some(7.0),
        ..HistogramDataPoint::default()
    };
    let histogram = |points| Metric {
        name: "atlas_sdk_request_duration_seconds".into(),
        unit: "s".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Metric::default()
    };
    // Cumulative reports: the first is everything since the client's start (an hour before
    // the range, but the series is new, so it counts); the second adds [0, 10, 10, 0, 0].
    let first = export(
        attrs(&[("service.name", "atlas-sdk")]),
        vec![histogram(vec![report(10, vec![10, 10, 0, 0, 0], 2.5)])],
    );
    // Sent as JSON, the spec's mapping (u64 as strings, camelCase), from a hand-written text.
    let json_text = serde_json::to_string(&first).unwrap();
    assert!(json_text.contains("\"bucketCounts\":[\"10\",\"10\",\"0\",\"0\",\"0\"]"));
    let outcome = accept(&server, None, json_text.as_bytes(), Encoding::Json);
    assert_eq!((outcome.accepted_points, outcome.rejected_points), (1, 0));
    let second = export(
        attrs(&[("service.name", "atlas-sdk")]),
        vec![histogram(vec![report(70, vec![10, 20, 10, 0, 0], 10.0)])],
    );
    let outcome = accept(&server, None, &second.encode_to_vec(), Encoding::Protobuf);
    assert_eq!((outcome.accepted_points, outcome.rejected_points), (1, 0));

    let ask = |stat: &str| {
        query(
            &server,
            &[
                ("product", "voice-sdk".into()),
                ("name", "atlas_sdk_request_duration_seconds".into()),
                ("from", base.to_string()),
                ("to", (base + 2 * HOUR_MS - 1).to_string()),
                ("bucket", "60m".into()),
                ("stat", stat.into()),
            ],
        )
    };
    let values = |stat: &str| bucket_values(&ask(stat)["groups"][0]);
    assert_eq!(ask("increase")["kind"], "histogram");
    assert_eq!(values("increase"), vec![json!(20.0), json!(20.0)]);
    assert_eq!(values("sum"), vec![json!(2.5), json!(7.5)]);
    assert_eq!(values("avg"), vec![json!(0.125), json!(0.375)]);
    assert_eq!(values("max"), vec![json!(7.0), json!(7.0)]);
    // Hour 0: 10 in (min 0.05, 0.1], 10 in (0.1, 0.5]; p50 is rank 10 → 0.1, p95 rank 19 →
    // 0.1 + 0.4 × 9/10. Hour 1: 10 in (0.1, 0.5], 10 in (0.5, 1]; p50 → 0.5, p90 rank 18 →
    // 0.5 + 0.5 × 8/10.
    let p50 = values("p50");
    let p95 = values("p95");
    let p90 = values("p90");
    let close = |v: &Value, want: f64| (v.as_f64().unwrap() - want).abs() < 1e-9;
    assert!(close(&p50[0], 0.1) && close(&p50[1], 0.5), "{p50:?}");
    assert!(
        close(&p95[0], 0.46) && close(&p90[1], 0.9),
        "{p95:?} {p90:?}"
    );
    // Over both hours: 40 observations, 10 | 20 | 10 in the first three buckets; p50 is rank
    // 20, the middle of (0.1, 0.5].
    assert!(close(&ask("p50")["groups"][0]["overall"], 0.3));

    // A statistic the kind does not answer, a range with too many buckets, an unknown metric.
    let bad = server.admin_get(
        "/api/v1/metrics/query?product=voice-sdk&name=atlas_sdk_request_duration_seconds&stat=value",
    );
    assert_eq!(
        (bad.status, bad.error_code().as_str()),
        (400, "invalid_parameter")
    );
    assert_eq!(bad.json()["error"]["details"]["parameter"], "stat");
    assert!(bad
        .text()
        .contains("a histogram metric answers increase, rate"));
    let too_many = server.admin_get(
        "/api/v1/metrics/query?product=voice-sdk&name=atlas_sdk_request_duration_seconds&from=-30d&bucket=1m",
    );
    assert_eq!(
        (too_many.status, too_many.error_code().as_str()),
        (400, "invalid_parameter")
    );
    assert_eq!(too_many.json()["error"]["details"]["parameter"], "bucket");
    let unknown = server.admin_get("/api/v1/metrics/query?product=voice-sdk&name=nope");
    assert_eq!(
        (unknown.status, unknown.error_code().as_str()),
        (404, "not_found")
    );
    let no_product = server.admin_get("/api/v1/metrics/query?name=nope");
    assert_eq!(no_product.error_code(), "invalid_parameter");
    let unknown_product = server.admin_get("/api/v1/metrics/names?product=nope");
    assert_eq!(unknown_product.error_code(), "unknown_product");
    let stray = server.admin_get("/api/v1/metrics/names?produkt=x");
    assert_eq!(stray.error_code(), "invalid_parameter");
    let anonymous = server.get("/api/v1/metrics/names");
    assert_eq!(
        (anonymous.status, anonymous.error_code().as_str()),
        (401, "missing_token")
    );
}

#[test]
fn a_gauge_is_its_mean_per_bucket_and_bad_points_are_reported() {
    let server = server();
    let base = hour_start(now_ms()) - HOUR_MS;
    let t = |minutes: i64| (ns(base + minutes * MINUTE_MS)).to_string();
    // Hand-written OTLP JSON, as a browser or curl sends it: ints as strings, attributes as
    // AnyValue objects; one point without a time, one with an array attribute, one metric of
    // unknown type.
    let body = format!(
        r#"{{"resourceMetrics":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"atlas-sdk"}}}}]}},
        "scopeMetrics":[{{"scope":{{"name":"atlas"}},"metrics":[
          {{"name":"atlas_sdk_queue_size","unit":"{{items}}","gauge":{{"dataPoints":[
            {{"timeUnixNano":"{a}","asInt":"10","attributes":[{{"key":"platform","value":{{"stringValue":"linux"}}}}]}},
            {{"timeUnixNano":"{b}","asDouble":20.0,"attributes":[{{"key":"platform","value":{{"stringValue":"linux"}}}}]}},
            {{"timeUnixNano":"{b}","asDouble":6,"attributes":[{{"key":"platform","value":{{"stringValue":"macos"}}}}]}},
            {{"asInt":"3"}},
            {{"timeUnixNano":"{c}","asInt":"1","attributes":[{{"key":"tags","value":{{"arrayValue":{{"values":[{{"stringValue":"x"}}]}}}}}}]}}
          ]}}}},
          {{"name":"atlas_sdk_mystery"}}
        ]}}]}}]}}"#,
        a = t(10),
        b = t(20),
        c = t(30),
    );
    let outcome = accept(&server, None, body.as_bytes(), Encoding::Json);
    assert_eq!((outcome.accepted_points, outcome.rejected_points), (3, 3));
    let message = &outcome.error_message;
    assert!(message.starts_with("3 data points rejected: "), "{message}");
    for reason in [
        "metric `atlas_sdk_mystery`: unknown metric type (1)",
        "metric `atlas_sdk_queue_size`: the point has no time_unix_nano (1)",
        "metric `atlas_sdk_queue_size`: attribute `tags` is an array: series attributes are strings, numbers or booleans (1)",
    ] {
        assert!(message.contains(reason), "{reason} in {message}");
    }
    // The answer in the request's encoding, with the partial success.
    let answer: Value = serde_json::from_slice(&series::answer(&outcome, Encoding::Json)).unwrap();
    assert_eq!(answer["partialSuccess"]["rejectedDataPoints"], 3);
    assert_eq!(answer["partialSuccess"]["errorMessage"], json!(message));
    let answer = ExportMetricsServiceResponse::decode(
        series::answer(&outcome, Encoding::Protobuf).as_slice(),
    )
    .unwrap();
    assert_eq!(answer.partial_success.unwrap().rejected_data_points, 3);

    let result = query(
        &server,
        &[
            ("product", "voice-sdk".into()),
            ("name", "atlas_sdk_queue_size".into()),
            ("from", base.to_string()),
            ("to", (base + HOUR_MS - 1).to_string()),
            ("bucket", "30m".into()),
            ("group_by", "platform".into()),
        ],
    );
    assert_eq!(
        (result["kind"].as_str(), result["stat"].as_str()),
        (Some("gauge"), Some("value"))
    );
    assert_eq!(result["unit"], "{items}");
    let linux = group(&result, json!({"platform": "linux"}));
    // The mean of 10 and 20 in the first half hour; no point in the second.
    assert_eq!(bucket_values(linux), vec![json!(15.0), Value::Null]);
    assert_eq!(linux["overall"], json!(15.0));
    assert_eq!(
        bucket_values(group(&result, json!({"platform": "macos"}))),
        vec![json!(6.0), Value::Null]
    );

    // A NaN (protobuf carries it; the JSON mapping has no number for it) is refused.
    let nan = export(
        Vec::new(),
        vec![Metric {
            name: "atlas_sdk_queue_size".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    time_unix_nano: ns(base),
                    value: Some(number_data_point::Value::AsDouble(f64::NAN)),
                    ..NumberDataPoint::default()
                }],
            })),
            ..Metric::default()
        }],
    );
    let outcome = accept(
        &server,
        Some("voice-sdk"),
        &nan.encode_to_vec(),
        Encoding::Protobuf,
    );
    assert_eq!(
        (outcome.accepted_points, outcome.error_message.as_str()),
        (
            0,
            "1 data point rejected: metric `atlas_sdk_queue_size`: value is NaN (1)"
        )
    );

    // An empty export is a success; an undecodable one and an oversized one are refused whole.
    let empty = accept(&server, Some("voice-sdk"), b"", Encoding::Json);
    assert_eq!(empty, series::MetricsOutcome::default());
    assert_eq!(series::answer(&empty, Encoding::Json), b"{}".to_vec());
    let anonymous = accept(&server, None, b"", Encoding::Protobuf);
    assert_eq!(anonymous, series::MetricsOutcome::default());
    let err = server
        .state
        .series
        .accept(Some("voice-sdk"), None, None, b"{", Encoding::Json)
        .unwrap_err();
    assert!(matches!(err, SeriesError::InvalidBody(_)), "{err}");
    let points: Vec<(Vec<KeyValue>, i64, i64, f64)> = (0..=series::MAX_POINTS)
        .map(|i| (Vec::new(), base, base + i as i64, 1.0))
        .collect();
    let big = export(Vec::new(), vec![counter("big", points)]);
    let err = server
        .state
        .series
        .accept(
            Some("voice-sdk"),
            None,
            None,
            &big.encode_to_vec(),
            Encoding::Protobuf,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            SeriesError::BatchTooLarge {
                count: 50_001,
                limit: 50_000
            }
        ),
        "{err}"
    );
    // A product must be known (two products, no name, no service name) once there are points.
    let err = server
        .state
        .series
        .accept(
            None,
            None,
            None,
            &export(
                Vec::new(),
                vec![counter("x", vec![(Vec::new(), base, base + 1, 1.0)])],
            )
            .encode_to_vec(),
            Encoding::Protobuf,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no product given: send the product's ingest key in X-Telemetry-Key or add ?product=ID"
    );
}

#[test]
fn retention_and_erasure_remove_points() {
    let server = server();
    let now = now_ms();
    let recent = now - 2 * HOUR_MS;
    let i1 = attrs(&[("surface", "cli"), (INSTALL_ATTRIBUTE, "install-1")]);
    let i2 = attrs(&[("surface", "cli"), (INSTALL_ATTRIBUTE, "install-2")]);
    let body = export(
        attrs(&[("service.name", "atlas-sdk")]),
        vec![counter(
            "atlas_sdk_events_total",
            vec![
                (i1.clone(), recent - HOUR_MS, recent, 3.0),
                (i1.clone(), recent - HOUR_MS, recent + MINUTE_MS, 5.0),
                (i2.clone(), recent - HOUR_MS, recent, 7.0),
            ],
        )],
    );
    let outcome = accept(&server, None, &body.encode_to_vec(), Encoding::Protobuf);
    assert_eq!((outcome.accepted_points, outcome.rejected_points), (3, 0));
    // Points older than the product's retention (dictation-app keeps 30 days) are refused at
    // the door...
    let old = now - 31 * DAY_MS;
    let stale = export(
        Vec::new(),
        vec![counter(
            "dictation_words_total",
            vec![(Vec::new(), old - HOUR_MS, old, 4.0)],
        )],
    );
    let outcome = accept(
        &server,
        Some("dictation-app"),
        &stale.encode_to_vec(),
        Encoding::Protobuf,
    );
    assert_eq!(outcome.rejected_points, 1);
    assert!(outcome
        .error_message
        .contains("older than the product's retention of 30 days"));
    // ...and points that grew older are swept: store one 31 days old and one recent directly.
    let put = |time_ms: i64, value: f64, install: &str| {
        use telemetryd::series::cumulative::Totals;
        use telemetryd::series::mapping::{Data, MetricInfo, Sample, Temporality};
        use telemetryd::series::model::{Identity, Kind};
        let sample = Sample {
            metric: 0,
            identity: Identity {
                attributes: [("surface".to_string(), "app".to_string())].into(),
                install: Some(install.to_string()),
                bounds: Vec::new(),
            },
            sender: [9; 32],
            start_ns: 0,
            time_ns: ns(time_ms),
            time_ms,
            data: Data::Totals {
                temporality: Temporality::Delta,
                totals: Totals::counter(value),
                min: None,
                max: None,
                quantiles: Vec::new(),
            },
        };
        let metrics = vec![MetricInfo {
            name: "dictation_words_total".into(),
            kind: Kind::Counter,
            unit: String::new(),
            description: String::new(),
        }];
        server
            .state
            .writer
            .exclusive_blocking(move |store| {
                store.write(|txn| {
                    series::store::apply(txn, "dictation-app", &metrics, vec![sample], false)
                })
            })
            .unwrap();
    };
    put(old, 4.0, "old-install");
    put(old + DAY_MS, 5.0, "install-9");
    put(recent, 6.0, "install-9");
    let words = |from: &str| {
        query(
            &server,
            &[
                ("product", "dictation-app".into()),
                ("name", "dictation_words_total".into()),
                ("from", from.into()),
                ("bucket", "1d".into()),
            ],
        )["groups"][0]["overall"]
            .clone()
    };
    assert_eq!(words("-40d"), json!(15.0));
    let report = server.state.retention.sweep().expect("sweep");
    // The old install's series (not seen within retention) goes whole; install-9's old point.
    assert_eq!(
        (report.series_points_deleted, report.series_deleted),
        (2, 1)
    );
    assert_eq!(words("-40d"), json!(6.0));
    let names = server
        .admin_get("/api/v1/metrics/names?product=dictation-app")
        .json();
    assert_eq!(names["metrics"][0]["series"], 1);
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains("telemetryd_retention_deleted_series_points_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("telemetryd_otlp_metric_points_accepted_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("telemetryd_otlp_metric_points_rejected_total 1"),
        "{metrics}"
    );

    // Erasing install-1 removes its series and points; install-2's stay.
    let total = |server: &TestServer| {
        query(
            server,
            &[
                ("product", "voice-sdk".into()),
                ("name", "atlas_sdk_events_total".into()),
                ("from", "-1d".into()),
            ],
        )["groups"][0]["overall"]
            .clone()
    };
    assert_eq!(total(&server), json!(12.0));
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let erased = request(
        "DELETE",
        &format!("{}/api/v1/subjects/install/install-1", server.url),
        &[("authorization", auth.as_str())],
        None,
    );
    assert_eq!(erased.status, 200, "{}", erased.text());
    let report = erased.json();
    assert_eq!(report["series_removed"], 1);
    assert_eq!(report["series_points_removed"], 2);
    assert_eq!(total(&server), json!(7.0));
    let names = server
        .admin_get("/api/v1/metrics/names?product=voice-sdk")
        .json();
    assert_eq!(names["metrics"][0]["series"], 1);
    // The audit entry counts them too.
    let audit = server
        .admin_get("/api/v1/audit?action=subject.erase")
        .json();
    assert_eq!(audit["entries"][0]["result"]["series_points_removed"], 2);
}
