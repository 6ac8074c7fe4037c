//! The API document (`GET /api/v1/openapi.json`): served without a token, a valid OpenAPI 3.1
//! document by a real validator (`openapi-spec-validator`, installed into `tests/otel/.venv` by
//! `scripts/test.sh` from `tests/otel/requirements.txt`), covering every route the server
//! answers with exactly the methods it answers, and carrying the facts clients rely on (the
//! error codes from the one table, the catalogue's fields, the limits).
//!
//! Paths are registered only through `http::resource`, which refuses (in debug builds) a path
//! the document does not have; these tests check the methods and that every documented
//! operation reaches a handler.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{repo_path, request, TestServer, ADMIN_TOKEN};
use serde_json::Value;
use telemetryd::error::Code;
use telemetryd::fields::{EventField, Use, FIELDS};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn document(server: &TestServer) -> Value {
    let resp = server.get("/api/v1/openapi.json");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(
        resp.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        resp.header("content-type")
    );
    resp.json()
}

/// Runs the validator on `doc`: `Ok` or the validator's complaint.
fn validate(doc: &Value) -> Result<(), String> {
    let python = repo_path("tests/otel/.venv/bin/python");
    assert!(
        python.exists(),
        "{} does not exist; install the test tools the way scripts/test.sh does: \
         `python3 -m venv tests/otel/.venv && tests/otel/.venv/bin/pip install -r tests/otel/requirements.txt`",
        python.display()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, serde_json::to_vec(doc).unwrap()).unwrap();
    let out = Command::new(&python)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args([
            "-c",
            "import json, sys\n\
             from openapi_spec_validator import validate\n\
             from openapi_spec_validator.validation import OpenAPIV31SpecValidator\n\
             validate(json.load(open(sys.argv[1])), cls=OpenAPIV31SpecValidator)\n",
        ])
        .arg(&path)
        .output()
        .expect("run the validator");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn the_served_document_is_valid_openapi_3_1() {
    let server = TestServer::shipped(&[]);
    let doc = document(&server);
    assert_eq!(doc["openapi"], "3.1.0");
    validate(&doc).unwrap_or_else(|e| panic!("the validator refused the document:\n{e}"));

    // The validator does refuse a broken document.
    let mut broken = doc.clone();
    broken["paths"]["/api/v1/events/{id}"]["get"]["responses"]["200"]["content"] =
        Value::String("not a content map".into());
    assert!(validate(&broken).is_err(), "a broken document passed");
}

/// A request to `method path` with the path parameters filled in and no credentials.
fn call(server: &TestServer, method: &str, path: &str) -> common::Resp {
    let concrete = path
        .replace("{id}", "0195d8a4-3f10-7000-8000-000000000001")
        .replace("{trace_id}", "4bf92f3577b34da6a3ce929d0e0e4736")
        .replace("{kind}", "install")
        .replace("{product}", "voice-sdk");
    request(
        &method.to_uppercase(),
        &format!("{}{concrete}", server.url),
        &[],
        None,
    )
}

fn error_message(resp: &common::Resp) -> String {
    serde_json::from_slice::<Value>(&resp.body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn every_route_is_documented_with_exactly_its_methods() {
    let server = TestServer::shipped(&[]);
    let doc = document(&server);
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 38, "{} paths", paths.len());
    for (path, item) in paths {
        for method in METHODS {
            let resp = call(&server, method, path);
            let message = error_message(&resp);
            if item.get(method).is_some() {
                assert!(
                    resp.status != 405 && !message.starts_with("route "),
                    "{method} {path} is documented but not served: {} {}",
                    resp.status,
                    resp.text()
                );
            } else {
                assert_eq!(
                    (resp.status, resp.error_code().as_str()),
                    (405, "method_not_allowed"),
                    "{method} {path} is served but not documented: {}",
                    resp.text()
                );
            }
        }
    }
    // Neither the UI nor unknown API paths are API routes.
    let resp = call(&server, "get", "/api/v1/nothing-here");
    assert_eq!(resp.status, 404);
    assert!(error_message(&resp).starts_with("route "));
    assert!(paths.get("/api/v1/nothing-here").is_none());
}

/// Every JSON answer of the admin API (`/api/v1/...`) has a described schema: a named type or
/// one with its members, never a bare object.
#[test]
fn every_admin_answer_has_a_typed_schema() {
    let server = TestServer::shipped(&[]);
    let doc = document(&server);
    let mut untyped = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/") || path == "/api/v1/openapi.json" {
            continue;
        }
        for (method, operation) in item.as_object().unwrap() {
            let schema = &operation["responses"]["200"]["content"]["application/json"]["schema"];
            if schema.is_null() {
                continue; // not JSON (exports, the native ingest answer is typed below)
            }
            let typed = schema.get("$ref").is_some()
                || schema.get("properties").is_some()
                || schema.get("items").is_some()
                || schema.get("allOf").is_some()
                || schema.get("oneOf").is_some();
            if !typed {
                untyped.push(format!("{method} {path}: {schema}"));
            }
        }
    }
    assert!(untyped.is_empty(), "answers without a schema: {untyped:#?}");
}

#[test]
fn the_document_carries_the_code_table_the_catalogue_and_the_limits() {
    let server = TestServer::shipped(&[]);
    let doc = document(&server);
    let schemas = &doc["components"]["schemas"];
    let op = |path: &str, method: &str| doc["paths"][path][method].clone();

    // The error codes are the table's, and each error answer names codes of its status.
    let codes: Vec<&str> = schemas["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        Code::ALL.iter().map(|c| c.name()).collect::<Vec<_>>()
    );
    let mut error_answers = 0;
    for item in doc["paths"].as_object().unwrap().values() {
        for (_, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                let status: u16 = status.parse().unwrap();
                let Some(allowed) = response.pointer(
                    "/content/application~1json/schema/allOf/1/properties/error/properties/code/enum",
                ) else {
                    continue;
                };
                error_answers += 1;
                for name in allowed.as_array().unwrap() {
                    let code = Code::ALL
                        .iter()
                        .find(|c| c.name() == name.as_str().unwrap())
                        .unwrap_or_else(|| panic!("{name} is not in the table"));
                    assert_eq!(code.status(), status, "{name} answered as {status}");
                }
            }
        }
    }
    assert!(error_answers > 50, "{error_answers} error answers");

    // Admin routes: a bearer token, and its 401 names the token codes.
    let search = op("/api/v1/events", "get");
    assert_eq!(search["security"][0]["admin_token"], serde_json::json!([]));
    let unauthorized = search["responses"]["401"].to_string();
    assert!(unauthorized.contains("missing_token") && unauthorized.contains("invalid_token"));
    assert_eq!(
        doc["components"]["securitySchemes"]["admin_token"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["ingest_key"]["name"],
        "X-Telemetry-Key"
    );
    // The document itself needs no token.
    assert!(op("/api/v1/openapi.json", "get").get("security").is_none());

    // Search parameters: the catalogue's filter fields, and the page size limit.
    let params: BTreeSet<String> = search["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    for field in EventField::with_use(Use::Filter) {
        assert!(
            params.contains(field.name()),
            "no `{}` filter",
            field.name()
        );
    }
    let limit = search["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap();
    assert_eq!(limit["schema"]["maximum"], 1000);

    // The native batch: every name a client may send a field under.
    let ingest = op("/api/v1/events", "post");
    assert_eq!(
        ingest["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/NativeBatch"
    );
    let event = &schemas["NativeBatch"]["oneOf"][1]["items"]["properties"];
    for def in FIELDS.iter().filter(|d| d.wire.is_some()) {
        for name in def.client_names() {
            assert!(event.get(name).is_some(), "the native event lacks `{name}`");
        }
    }
    assert!(ingest["responses"]["413"]
        .to_string()
        .contains("batch_too_large"));

    // The analytics spec comes from its Rust types: the kinds and a trend's measures.
    let analytics = serde_json::to_string(schemas).unwrap();
    for kind in [
        "trend",
        "distribution",
        "funnel",
        "active_installs",
        "retention",
    ] {
        assert!(
            analytics.contains(&format!("\"{kind}\"")),
            "no analytics kind {kind}"
        );
    }
    assert!(schemas["Measure"]["enum"]
        .as_array()
        .unwrap()
        .contains(&Value::from("p95")));
    let query = op("/api/v1/analytics/query", "post");
    let json_schema = |v: &Value| v["content"]["application/json"]["schema"]["$ref"].clone();
    assert_eq!(
        json_schema(&query["requestBody"]),
        "#/components/schemas/QueryBody"
    );
    assert_eq!(
        json_schema(&query["responses"]["200"]),
        "#/components/schemas/Answer"
    );
    assert_eq!(schemas["Answer"]["oneOf"].as_array().unwrap().len(), 6);

    // A typed answer: the stored event, with its level enum.
    assert_eq!(
        op("/api/v1/events/{id}", "get")["responses"]["200"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/Event"
    );
    assert_eq!(
        schemas["Level"]["enum"],
        serde_json::json!(["debug", "info", "warn", "error", "fatal"])
    );

    // And an operation documented as admin-only really asks for a token.
    let resp = call(&server, "get", "/api/v1/audit");
    assert_eq!(resp.error_code(), "missing_token");
    let resp = server.get_as("/api/v1/audit", ADMIN_TOKEN);
    assert_eq!(resp.status, 200, "{}", resp.text());
}
