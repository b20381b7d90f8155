//! The JSON Schema of the `json` format, generated from the row type so it
//! cannot drift from what is written; `docs/findings.schema.json` is this
//! schema, committed (a test fails when the two differ).

use scanner_store::FindingRow;
use serde_json::Value;

/// The JSON Schema (draft 2020-12) of what [`crate::write_json`] writes:
/// an array of findings, each described under `$defs/FindingRow`. The
/// HTTP API's `format=json` pages hold the same rows under `findings`.
pub fn json_schema() -> Value {
    let mut schema = schemars::schema_for!(Vec<FindingRow>);
    schema.insert("title".into(), "scanner-host findings".into());
    schema.insert(
        "description".into(),
        "Findings as `scanner-host findings --format json` writes them: an array of \
         `$defs/FindingRow`. `GET /v1/findings` (format=json) returns the same rows \
         in its pages' `findings` array."
            .into(),
    );
    schema.to_value()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{code_finding, image_finding};
    use std::path::Path;

    /// The environment variable that makes the test below rewrite the
    /// committed schema instead of comparing with it.
    const UPDATE: &str = "UPDATE_FINDINGS_SCHEMA";

    #[test]
    fn the_committed_schema_is_the_generated_one() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/findings.schema.json");
        let generated = serde_json::to_string_pretty(&json_schema()).expect("schema") + "\n";
        if std::env::var_os(UPDATE).is_some() {
            std::fs::write(&path, &generated).expect("write the schema");
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/findings.schema.json is not the schema the row type gives: \
             update it with `{UPDATE}=1 cargo test -p scanner-formats --lib schema` \
             and commit it"
        );
    }

    #[test]
    fn the_schema_describes_every_field_of_a_row() {
        let schema = json_schema();
        let row = &schema["$defs"]["FindingRow"];
        let properties = row["properties"].as_object().expect("properties");
        for finding in [code_finding(), image_finding()] {
            let value = serde_json::to_value(&finding).expect("row");
            let fields = value.as_object().expect("object");
            for field in fields.keys() {
                assert!(properties.contains_key(field), "{field} is not described");
            }
            assert_eq!(properties.len(), fields.len());
        }
        assert_eq!(schema["type"], "array");
        assert_eq!(schema["items"]["$ref"], "#/$defs/FindingRow");
    }
}
