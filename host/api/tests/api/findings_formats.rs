//! `GET /v1/findings`: the image, CVE and detection filters, and the
//! listing as CSV, OCSF and SARIF files (every matching finding once) and
//! as JSON that matches `docs/findings.schema.json`.

use crate::support::{TestApi, error_kind, keys};
use hyper::StatusCode;
use scanner_formats::{FindingFormat, Producer, write_findings};
use scanner_store::{FindingQuery, FindingRow, StatusFilter};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `value` percent-encoded for a query string.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every stored finding, open and resolved, mapped or not.
fn everything() -> FindingQuery {
    FindingQuery {
        status: StatusFilter::All,
        include_unmapped: true,
        ..FindingQuery::default()
    }
}

/// `(tenant, id)` of store rows, in order.
fn row_keys(rows: &[FindingRow]) -> Vec<(String, String)> {
    rows.iter()
        .map(|r| (r.tenant.clone(), r.id.clone()))
        .collect()
}

/// The value that occurs most often among `values`.
fn most_common(values: impl IntoIterator<Item = String>) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(v, _)| v)
        .expect("a value")
}

/// The middle one of the instants `values` parse to.
fn median_instant(values: impl IntoIterator<Item = String>) -> OffsetDateTime {
    let mut instants: Vec<OffsetDateTime> = values
        .into_iter()
        .map(|v| OffsetDateTime::parse(&v, &Rfc3339).expect("RFC 3339 from the simulator"))
        .collect();
    instants.sort();
    instants[instants.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_new_filter_lists_what_the_store_lists_for_it() {
    let api = TestApi::start(300).await;
    api.connect_and_scan("acme").await;
    api.connect_and_scan("globex").await;
    let admin = api.token(&[], true);
    let all = api.store().findings(&everything()).expect("findings");

    let image = most_common(all.iter().filter_map(|r| r.image.clone()));
    let cve = most_common(all.iter().flat_map(|r| r.cves.clone()));
    let first = median_instant(all.iter().filter_map(|r| r.first_detected_at.clone()));
    let last = median_instant(all.iter().filter_map(|r| r.last_detected_at.clone()));
    let text = |t: OffsetDateTime| t.format(&Rfc3339).expect("format");
    // The same instant with an offset, as a client in another zone sends it.
    let last_east = last
        .to_offset(time::UtcOffset::from_hms(2, 0, 0).expect("offset"))
        .format(&Rfc3339)
        .expect("format");

    let cases: Vec<(String, FindingQuery)> = vec![
        (
            format!("image={}", encode(&image)),
            FindingQuery {
                image: Some(image.clone()),
                ..everything()
            },
        ),
        (
            format!("image={}&tenant=globex", encode(&image.to_uppercase())),
            FindingQuery {
                image: Some(image.clone()),
                tenant: Some("globex".into()),
                ..everything()
            },
        ),
        (
            format!("cve={}", cve.to_lowercase()),
            FindingQuery {
                cve: Some(cve.parse().expect("cve")),
                ..everything()
            },
        ),
        (
            format!("first-detected-after={}", encode(&text(first))),
            FindingQuery {
                first_detected_after: Some(first),
                ..everything()
            },
        ),
        (
            format!("last-detected-after={}", encode(&last_east)),
            FindingQuery {
                last_detected_after: Some(last),
                ..everything()
            },
        ),
        (
            format!(
                "cve={cve}&first-detected-after={}&severity=low",
                encode(&text(first))
            ),
            FindingQuery {
                cve: Some(cve.parse().expect("cve")),
                first_detected_after: Some(first),
                min_severity: Some(scanner_contract::Severity::Low),
                ..everything()
            },
        ),
    ];
    for (query, store_query) in cases {
        let expected = row_keys(&api.store().findings(&store_query).expect("findings"));
        let (rows, _) = api
            .all_pages(
                &format!("{query}&status=all&include-unmapped=true&limit=25"),
                &admin,
            )
            .await;
        assert_eq!(keys(&rows), expected, "{query}");
        assert!(
            expected.len() < all.len(),
            "{query}: the filter leaves some out"
        );
        // Every case but the combined one finds something.
        if !query.contains("severity") {
            assert!(!expected.is_empty(), "{query}: nothing matched");
        }
    }

    // What the filters select, checked row by row and not only against
    // the store.
    let (rows, _) = api
        .all_pages(
            &format!("cve={cve}&status=all&include-unmapped=true"),
            &admin,
        )
        .await;
    for row in &rows {
        let cves = row["cves"].as_array().expect("cves");
        assert!(cves.iter().any(|c| c == cve.as_str()), "{row}");
    }
    let (rows, _) = api
        .all_pages(
            &format!("image={}&status=all&include-unmapped=true", encode(&image)),
            &admin,
        )
        .await;
    for row in &rows {
        assert_eq!(row["kind"], "container-image", "{row}");
    }
}

/// The ids a body in `format` holds, one per finding it lists.
fn listed_ids(format: FindingFormat, body: &str) -> Vec<String> {
    match format {
        FindingFormat::Csv => {
            let mut reader = csv::Reader::from_reader(body.as_bytes());
            let headers = reader.headers().expect("header").clone();
            let id = headers.iter().position(|h| h == "id").expect("id column");
            reader
                .records()
                .map(|r| r.expect("record")[id].to_string())
                .collect()
        }
        FindingFormat::Ocsf => body
            .lines()
            .map(|line| {
                let event: Value = serde_json::from_str(line).expect("one JSON object a line");
                event["finding_info"]["uid"]
                    .as_str()
                    .expect("uid")
                    .to_string()
            })
            .collect(),
        FindingFormat::Sarif => {
            let log: Value = serde_json::from_str(body).expect("SARIF is JSON");
            log["runs"][0]["results"]
                .as_array()
                .expect("results")
                .iter()
                .map(|r| {
                    r["properties"]["findingId"]
                        .as_str()
                        .expect("id")
                        .to_string()
                })
                .collect()
        }
        FindingFormat::Json => unreachable!("json is paged"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_formats_hold_every_matching_finding_once_with_their_content_type() {
    // More findings than one store read (1000 rows), so the stream walks
    // several pages.
    let api = TestApi::start(3000).await;
    api.connect_and_scan("acme").await;
    let admin = api.token(&[], true);
    let all = api.store().findings(&everything()).expect("findings");
    assert!(all.len() > 1000, "{} findings", all.len());
    let producer = Producer::new("scanner-host", env!("CARGO_PKG_VERSION"));

    for (format, content_type, file) in [
        (
            FindingFormat::Csv,
            "text/csv; charset=utf-8",
            "findings.csv",
        ),
        (
            FindingFormat::Ocsf,
            "application/x-ndjson",
            "findings.ocsf.jsonl",
        ),
        (
            FindingFormat::Sarif,
            "application/sarif+json",
            "findings.sarif",
        ),
    ] {
        let name = format.name();
        for (query, store_query) in [
            ("status=all&include-unmapped=true", everything()),
            (
                "severity=high",
                FindingQuery {
                    min_severity: Some(scanner_contract::Severity::High),
                    ..FindingQuery::default()
                },
            ),
        ] {
            let answer = api
                .get(&format!("/v1/findings?{query}&format={name}"), &admin)
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{name}: {}", answer.text);
            assert_eq!(answer.content_type.as_deref(), Some(content_type));
            assert_eq!(
                answer.content_disposition.as_deref(),
                Some(format!("attachment; filename=\"{file}\"").as_str())
            );
            let expected = api.store().findings(&store_query).expect("findings");
            let ids = listed_ids(format, &answer.text);
            assert_eq!(ids.len(), expected.len(), "{name} {query}: one per finding");
            let unique: BTreeSet<&String> = ids.iter().collect();
            assert_eq!(unique.len(), ids.len(), "{name} {query}: none twice");
            let want: Vec<String> = expected.iter().map(|r| r.id.clone()).collect();
            assert_eq!(ids, want, "{name} {query}: the store's rows in its order");
            // The very bytes the CLI's writer gives for the same rows.
            let mut bytes = Vec::new();
            write_findings(format, &mut bytes, &expected, &producer).expect("write");
            assert!(
                answer.text.as_bytes() == bytes.as_slice(),
                "{name} {query}: not the writer's bytes"
            );
        }
    }

    // A tenant token's file holds its tenant's findings only.
    api.connect_and_scan("globex").await;
    let acme = api.token(&["acme"], false);
    let answer = api.get("/v1/findings?format=ocsf&status=all", &acme).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let expected = api
        .store()
        .findings(&FindingQuery {
            tenant: Some("acme".into()),
            status: StatusFilter::All,
            ..FindingQuery::default()
        })
        .expect("findings");
    assert_eq!(
        listed_ids(FindingFormat::Ocsf, &answer.text),
        expected.iter().map(|r| r.id.clone()).collect::<Vec<_>>()
    );
    // JSON stays the paged shape when asked for by name.
    let json = api.get("/v1/findings?format=json&limit=3", &admin).await;
    assert_eq!(json.status, StatusCode::OK, "{}", json.text);
    assert_eq!(json.content_type.as_deref(), Some("application/json"));
    assert_eq!(json.json["findings"].as_array().expect("rows").len(), 3);
    assert!(json.json["next"].is_string());
    // An unknown tenant is a 404 in every format, before any file starts.
    let missing = api
        .get("/v1/findings?tenant=initech&format=csv", &admin)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text);
    assert_eq!(error_kind(&missing), "not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filter_and_format_values_are_bad_requests() {
    let api = TestApi::start(10).await;
    let admin = api.token(&[], true);
    for (query, says) in [
        ("cve=CVE-24-1234", "not a CVE id"),
        ("cve=GHSA-abcd-efgh-ijkl", "not a CVE id"),
        ("cve=CVE-2024-123", "not a CVE id"),
        (
            "first-detected-after=yesterday",
            "first-detected-after must be an RFC 3339",
        ),
        (
            "first-detected-after=2025-01-31",
            "first-detected-after must be an RFC 3339",
        ),
        (
            "last-detected-after=2025-01-31T00:00:00+02:00",
            "write a `+` offset as %2B",
        ),
        (
            "last-detected-after=",
            "last-detected-after must be an RFC 3339",
        ),
        ("format=xml", "expected one of: json, csv, ocsf, sarif"),
        ("format=CSV", "expected one of: json, csv, ocsf, sarif"),
        (
            "format=csv&limit=10",
            "limit and cursor page the json format only",
        ),
        (
            "format=sarif&cursor=abc",
            "limit and cursor page the json format only",
        ),
        (
            "format=ocsf&limit=1000",
            "limit and cursor page the json format only",
        ),
    ] {
        let answer = api.get(&format!("/v1/findings?{query}"), &admin).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{query}: {}",
            answer.text
        );
        assert_eq!(error_kind(&answer), "invalid-input", "{query}");
        let message = answer.json["error"]["message"].as_str().expect("message");
        assert!(message.contains(says), "{query}: {message}");
    }
    for query in [
        "cve=cve-2024-1234",
        "first-detected-after=2025-01-31T00:00:00%2B02:00",
        "last-detected-after=2025-01-31T00:00:00.123456Z",
        "image=registry.example/acme/shop:1.2",
        "format=json",
    ] {
        let answer = api.get(&format!("/v1/findings?{query}"), &admin).await;
        assert_eq!(answer.status, StatusCode::OK, "{query}: {}", answer.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_format_rows_match_the_committed_schema() {
    let api = TestApi::start(200).await;
    api.connect_and_scan("acme").await;
    let admin = api.token(&[], true);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/findings.schema.json"
    );
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("committed schema"))
            .expect("schema JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");

    let (rows, _) = api
        .all_pages(
            "status=all&include-unmapped=true&format=json&limit=50",
            &admin,
        )
        .await;
    assert!(rows.len() > 50, "{} rows", rows.len());
    let kinds: BTreeSet<&str> = rows.iter().filter_map(|r| r["kind"].as_str()).collect();
    assert!(kinds.len() > 1, "rows of several kinds: {kinds:?}");
    let listing = Value::Array(rows);
    let errors: Vec<String> = validator
        .iter_errors(&listing)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");

    // The schema holds the rows to their shape: a row with a field of the
    // wrong type is refused.
    let mut wrong = listing.clone();
    wrong[0]["severity"] = Value::from(5);
    assert!(!validator.is_valid(&wrong));
    let mut missing = listing;
    if let Some(row) = missing[0].as_object_mut() {
        row.remove("id");
    }
    assert!(!validator.is_valid(&missing));
}
