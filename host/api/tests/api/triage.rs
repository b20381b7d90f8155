//! `GET /v1/findings` by what analysts triage by: the `kev`, `exploit` and
//! `min-epss` filters, the `sort=epss` order and its cursor, and bad values
//! refused naming the parameter.

use crate::support::{TestApi, error_kind, keys};
use hyper::StatusCode;
use scanner_store::{FindingQuery, FindingSort, StatusFilter};
use serde_json::Value;

/// `(tenant, id)` of what the store lists for `q` over every status.
fn stored(api: &TestApi, q: FindingQuery) -> Vec<(String, String)> {
    api.store()
        .findings(&FindingQuery {
            status: StatusFilter::All,
            include_unmapped: true,
            ..q
        })
        .expect("findings")
        .into_iter()
        .map(|r| (r.tenant, r.id))
        .collect()
}

/// An API over two scanned tenants and an admin token.
async fn scanned() -> (TestApi, String) {
    let api = TestApi::start(150).await;
    api.connect_and_scan("acme").await;
    api.connect_and_scan("globex").await;
    let admin = api.token(&[], true);
    (api, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kev_exploit_and_min_epss_list_only_the_findings_they_name() {
    let (api, admin) = scanned().await;
    let base = "status=all&include-unmapped=true&limit=40";
    let (all, _) = api.all_pages(base, &admin).await;
    assert!(
        all.iter().any(|r| r["epss_probability"].is_number()),
        "the simulator serves EPSS"
    );

    let (kev, _) = api.all_pages(&format!("{base}&kev=true"), &admin).await;
    assert!(kev.iter().all(|r| r["has_cisa_kev_exploit"] == true));
    assert_eq!(
        keys(&kev),
        stored(
            &api,
            FindingQuery {
                kev: true,
                ..FindingQuery::default()
            }
        )
    );
    let kev_in_all = all
        .iter()
        .filter(|r| r["has_cisa_kev_exploit"] == true)
        .count();
    assert_eq!(kev.len(), kev_in_all, "every KEV finding, no other");

    let (exploit, _) = api.all_pages(&format!("{base}&exploit=true"), &admin).await;
    assert!(exploit.iter().all(|r| r["has_exploit"] == true));
    assert_eq!(
        exploit.len(),
        all.iter().filter(|r| r["has_exploit"] == true).count()
    );

    let (likely, _) = api.all_pages(&format!("{base}&min-epss=0.5"), &admin).await;
    let at_least_half = |r: &Value| r["epss_probability"].as_f64().is_some_and(|p| p >= 0.5);
    assert!(likely.iter().all(at_least_half));
    assert_eq!(
        likely.len(),
        all.iter().filter(|r| at_least_half(r)).count()
    );

    // `false` is no filter.
    let (unfiltered, _) = api
        .all_pages(&format!("{base}&kev=false&exploit=false"), &admin)
        .await;
    assert_eq!(keys(&unfiltered), keys(&all));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_either_sort_hold_every_finding_once_in_its_order() {
    let (api, admin) = scanned().await;
    for (sort, store_sort) in [
        ("severity", FindingSort::Severity),
        ("epss", FindingSort::Epss),
    ] {
        let (rows, pages) = api
            .all_pages(
                &format!("status=all&include-unmapped=true&limit=7&sort={sort}"),
                &admin,
            )
            .await;
        assert!(pages > 2, "{sort}: {pages} pages");
        let want = stored(
            &api,
            FindingQuery {
                sort: store_sort,
                ..FindingQuery::default()
            },
        );
        assert_eq!(keys(&rows), want, "sort={sort}");
        if store_sort == FindingSort::Epss {
            // Highest first, findings without EPSS last.
            let epss: Vec<f64> = rows
                .iter()
                .map(|r| r["epss_probability"].as_f64().unwrap_or(-1.0))
                .collect();
            assert!(epss.windows(2).all(|w| w[0] >= w[1]), "{epss:?}");
        }
    }
    // The default is the severity order.
    let (default, _) = api
        .all_pages("status=all&include-unmapped=true&limit=50", &admin)
        .await;
    assert_eq!(
        keys(&default),
        stored(&api, FindingQuery::default()),
        "no sort: by severity"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_triage_parameters_are_bad_requests_naming_them() {
    let (api, admin) = scanned().await;
    for (query, names) in [
        ("kev=yes", "kev"),
        ("exploit=1", "exploit"),
        ("min-epss=1.5", "min-epss"),
        ("min-epss=-0.1", "min-epss"),
        ("min-epss=half", "min-epss"),
        ("sort=cvss", "sort"),
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
        assert!(message.contains(names), "{query}: {message}");
    }
    // A cursor of one sort given with the other.
    let first = api.get("/v1/findings?sort=epss&limit=2", &admin).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let next = first.json["next"].as_str().expect("a next page");
    for query in [
        format!("cursor={next}"),
        format!("sort=severity&cursor={next}"),
    ] {
        let answer = api.get(&format!("/v1/findings?{query}"), &admin).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{query}: {}",
            answer.text
        );
        let message = answer.json["error"]["message"].as_str().expect("message");
        assert!(message.contains("cursor"), "{message}");
    }
    let same = api
        .get(
            &format!("/v1/findings?sort=epss&limit=2&cursor={next}"),
            &admin,
        )
        .await;
    assert_eq!(same.status, StatusCode::OK, "{}", same.text);
}
