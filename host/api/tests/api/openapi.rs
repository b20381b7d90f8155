//! The OpenAPI document: served without a token, generated from the same
//! annotations the router registers, checked here against the live
//! routes, and kept in `docs/openapi.json` for readers of the repository.

use crate::support::{TestApi, V1_ROUTES};
use hyper::StatusCode;
use serde_json::Value;
use std::path::PathBuf;

/// The methods of an OpenAPI path item.
const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// `(METHOD, path)` of every operation the document lists.
fn operations(document: &Value) -> Vec<(String, String)> {
    let paths = document["paths"].as_object().expect("paths");
    let mut out = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if item.get(method).is_some() {
                out.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_a_live_route_and_every_route_is_documented() {
    let api = TestApi::start(10).await;
    let answer = api.request("GET", "/v1/openapi.json", None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let document = answer.json;
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        document["openapi"]
    );
    let operations = operations(&document);
    let token = api.token(&[], true);
    for (method, path) in &operations {
        let concrete = path.replace("{tenant}", "acme").replace("{id}", "1");
        let answer = api
            .request(method, &concrete, Some(&format!("Bearer {token}")))
            .await;
        // The router's own answers for what it does not have: a route
        // that exists answers anything else (even 404 for the unknown
        // tenant, with another message).
        let unrouted = answer.status == StatusCode::METHOD_NOT_ALLOWED
            || (answer.status == StatusCode::NOT_FOUND
                && answer.json["error"]["message"] == "no such route");
        assert!(!unrouted, "{method} {path} is documented but not routed");
        // Every documented operation declares a 401 when it needs a token.
        let operation = &document["paths"][path][method.to_lowercase()];
        // A path parameter is one the path names; the rest are in the query.
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            let name = parameter["name"].as_str().expect("a parameter name");
            let in_path = path.contains(&format!("{{{name}}}"));
            let expected = if in_path { "path" } else { "query" };
            assert_eq!(
                parameter["in"], expected,
                "{method} {path}: parameter {name} is documented in the wrong place"
            );
        }
        if operation.get("security").is_some() {
            assert!(
                operation["responses"].get("401").is_some(),
                "{method} {path} needs a token but does not document 401"
            );
        }
    }
    // The routes the other modules test are all documented.
    for (method, path) in V1_ROUTES {
        let documented = path
            .replacen("/acme", "/{tenant}", 1)
            .replace("/scans/1", "/scans/{id}")
            .replace("/exports/1", "/exports/{id}");
        assert!(
            operations.contains(&(method.to_string(), documented.clone())),
            "{method} {documented} is routed but not documented"
        );
    }
    for path in ["/healthz", "/readyz", "/metrics", "/v1/repositories"] {
        assert!(
            document["paths"].get(path).is_some(),
            "{path} is not documented"
        );
    }
    // Every schema a response or body names is defined.
    let text = serde_json::to_string(&document).expect("document");
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("schemas");
    for reference in text.split("\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().expect("a name");
        assert!(
            schemas.contains_key(name),
            "{name} is named but not defined"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committed_document_is_the_one_the_code_generates() {
    let api = TestApi::start(0).await;
    let answer = api.request("GET", "/v1/openapi.json", None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let generated = serde_json::to_string_pretty(&answer.json).expect("JSON") + "\n";
    let committed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var_os("SCANNER_UPDATE_OPENAPI").is_some() {
        std::fs::write(&committed, &generated).expect("write docs/openapi.json");
        return;
    }
    let on_disk = std::fs::read_to_string(&committed).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/openapi.json differs from the API's document; regenerate it with: \
         SCANNER_UPDATE_OPENAPI=1 cargo test -p scanner-api --test api openapi::"
    );
}
