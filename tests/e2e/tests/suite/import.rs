//! The Wiz connector against the simulator, through the real host.

use scanner_contract::SettingValue;
use scanner_store::{FindingQuery, StatusFilter};
use scanner_tests::{expected_open, runtime_in, wiz_settings};
use std::collections::BTreeSet;
use wiz_sim::{SimConfig, Simulator};

fn sim(findings: usize) -> Simulator {
    Simulator::start_background(SimConfig {
        findings,
        seed: 11,
        ..SimConfig::default()
    })
    .expect("simulator")
}

#[tokio::test]
async fn full_import_returns_exactly_the_open_cve_findings_of_enabled_kinds() {
    let sim = sim(3000);
    for (sca, images) in [(true, true), (true, false), (false, true)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = runtime_in(dir.path());
        let mut settings = wiz_settings(&sim);
        settings.insert("scan-sca".into(), SettingValue::Boolean(sca));
        settings.insert(
            "scan-container-images".into(),
            SettingValue::Boolean(images),
        );
        runtime
            .connect("t", "wiz", &settings)
            .await
            .expect("connect");
        let report = runtime.scan("t", &()).await.expect("scan");
        let rows = runtime
            .store()
            .findings(&FindingQuery {
                tenant: Some("t".into()),
                status: StatusFilter::All,
                include_unmapped: true,
                ..FindingQuery::default()
            })
            .expect("findings");
        let got: BTreeSet<String> = rows.iter().map(|r| r.id.clone()).collect();
        assert_eq!(rows.len(), got.len(), "a finding was stored twice");
        let want = expected_open(&sim, sca, images);
        let missing: Vec<&String> = want.difference(&got).take(5).collect();
        let extra: Vec<&String> = got.difference(&want).take(5).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "sca={sca} images={images}: {} expected, {} imported; missing e.g. {missing:?}, extra e.g. {extra:?}; report {report:?}",
            want.len(),
            got.len()
        );
        assert_eq!(report.new as usize, got.len());
        if !sca {
            assert!(rows.iter().all(|r| r.kind != "code-dependency"));
        }
        if !images {
            assert!(rows.iter().all(|r| r.kind != "container-image"));
        }
    }
}
