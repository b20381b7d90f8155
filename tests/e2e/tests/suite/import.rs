//! The Wiz connector against the simulator, through the real host.

use scanner_contract::SettingValue;
use scanner_store::{FindingQuery, StatusFilter};
use scanner_tests::{TestEnv, expected_open, runtime_in};
use std::collections::BTreeSet;
use wiz_sim::SimConfig;

#[tokio::test]
async fn full_import_returns_exactly_the_open_cve_findings_of_enabled_kinds() {
    let env = TestEnv::new(SimConfig {
        findings: 3000,
        seed: 11,
        ..SimConfig::default()
    });
    let sim = env.sim();
    for (sca, images) in [(true, true), (true, false), (false, true)] {
        // A fresh database per case, against the same simulator.
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = runtime_in(dir.path());
        let mut settings = env.settings();
        settings.insert("scan-sca".into(), SettingValue::Boolean(sca));
        settings.insert(
            "scan-container-images".into(),
            SettingValue::Boolean(images),
        );
        runtime
            .connect("t", "wiz", &settings, &scanner_tests::loopback_grants())
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
        let want = expected_open(sim, sca, images);
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
