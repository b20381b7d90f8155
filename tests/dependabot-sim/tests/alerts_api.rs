//! The simulator answers like GitHub's organization alerts API.

use dependabot_sim::{Fault, SimConfig, Simulator};

fn get(sim: &Simulator, path: &str, token: Option<&str>) -> (u16, Option<String>, String) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent();
    let mut request = agent.get(format!("{}{path}", sim.api_url()));
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    let mut response = request.call().expect("request");
    let link = response
        .headers()
        .get("link")
        .map(|v| v.to_str().unwrap_or_default().to_string());
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (response.status().as_u16(), link, body)
}

#[test]
fn pages_through_open_alerts_by_link_header_cursors() {
    let sim = Simulator::start(SimConfig::default()).expect("start");
    let token = sim.token().to_string();
    let mut path = "/orgs/acme/dependabot/alerts?state=open&per_page=100".to_string();
    let mut seen = Vec::new();
    loop {
        let (status, link, body) = get(&sim, &path, Some(&token));
        assert_eq!(status, 200, "{body}");
        let page: Vec<serde_json::Value> = serde_json::from_str(&body).expect("JSON list");
        assert!(page.len() <= 100);
        assert!(page.iter().all(|a| a["state"] == "open"));
        seen.extend(page);
        let Some(link) = link else { break };
        let next = link
            .split_once('<')
            .and_then(|(_, rest)| rest.split_once('>'))
            .map(|(url, _)| url.to_string())
            .expect("a next URL");
        assert!(next.contains("after="), "{next}");
        path = next
            .strip_prefix(&sim.api_url())
            .expect("same origin")
            .to_string();
    }
    let open = sim.alerts().iter().filter(|a| a.state == "open").count();
    assert_eq!(seen.len(), open);
    assert!(open < sim.alerts().len(), "some alerts are not open");
    assert!(sim.alerts().iter().any(|a| a.cve.is_none()));
}

#[test]
fn refuses_bad_tokens_and_unknown_orgs_and_plays_scripted_faults() {
    let sim = Simulator::start(SimConfig::default()).expect("start");
    let token = sim.token().to_string();
    let path = "/orgs/acme/dependabot/alerts";
    assert_eq!(get(&sim, path, Some("wrong")).0, 401);
    assert_eq!(get(&sim, path, None).0, 401);
    assert_eq!(
        get(&sim, "/orgs/nobody/dependabot/alerts", Some(&token)).0,
        404
    );
    assert_eq!(
        get(&sim, &format!("{path}?per_page=101"), Some(&token)).0,
        422
    );
    sim.script([
        None,
        Some(Fault::TooManyRequests { retry_after_s: 2 }),
        Some(Fault::RateLimitExhausted { reset_in_s: 1 }),
        Some(Fault::ServerError),
    ]);
    let statuses: Vec<u16> = (0..5).map(|_| get(&sim, path, Some(&token)).0).collect();
    assert_eq!(statuses, [200, 429, 403, 500, 200]);
    let log = sim.requests();
    let limited: Vec<_> = log.iter().filter(|r| r.not_before.is_some()).collect();
    assert_eq!(limited.len(), 2);
    assert!(limited.iter().all(|r| r.not_before > Some(r.at)));
}
