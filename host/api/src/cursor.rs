//! The findings listing's page cursor: the sort key of a page's last row
//! as base64url (no padding) of its JSON, opaque to clients.

use crate::error::ApiError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use scanner_store::FindingKey;

/// The cursor of `key`.
pub(crate) fn encode(key: &FindingKey) -> Result<String, ApiError> {
    let json = serde_json::to_vec(key).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
        )
    })?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

/// The key a cursor holds; 400 when it is not one this API gave out.
pub(crate) fn decode(cursor: &str) -> Result<FindingKey, ApiError> {
    let malformed = || {
        ApiError::bad_request(
            "malformed cursor: pass the `next` value of the previous page unchanged",
        )
    };
    let json = URL_SAFE_NO_PAD
        .decode(cursor.trim_end_matches('='))
        .map_err(|_| malformed())?;
    serde_json::from_slice(&json).map_err(|_| malformed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use scanner_store::FindingSort;

    #[test]
    fn a_cursor_gives_back_its_key() {
        let key = FindingKey {
            sort: FindingSort::Severity,
            epss: None,
            severity_rank: 4,
            last_detected_at: "2025-06-01T00:00:00Z".into(),
            tenant: "acme".into(),
            id: "f/1?&=".into(),
        };
        let cursor = encode(&key).expect("encode");
        assert!(
            cursor
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{cursor}"
        );
        assert_eq!(decode(&cursor).expect("decode"), key);
    }

    #[test]
    fn an_epss_cursor_gives_back_its_probability_to_the_bit() {
        // Numbers whose shortest decimal form a JSON reader may round.
        for epss in [0.1 + 0.2, 0.975_310_000_000_000_1, f64::MIN_POSITIVE, -1.0] {
            let key = FindingKey {
                sort: FindingSort::Epss,
                epss: Some(epss),
                severity_rank: 0,
                last_detected_at: String::new(),
                tenant: "acme".into(),
                id: "f1".into(),
            };
            let back = decode(&encode(&key).expect("encode")).expect("decode");
            assert_eq!(back.epss.map(f64::to_bits), Some(epss.to_bits()));
            assert_eq!(back, key);
        }
    }

    #[test]
    fn a_cursor_without_a_sort_is_of_the_severity_order() {
        // A cursor given out before listings had a sort.
        let old = URL_SAFE_NO_PAD
            .encode(br#"{"severity_rank":4,"last_detected_at":"","tenant":"a","id":"f"}"#);
        let key = decode(&old).expect("decode");
        assert_eq!(key.sort, FindingSort::Severity);
        assert_eq!(key.epss, None);
    }

    #[test]
    fn malformed_cursors_are_bad_requests() {
        for cursor in [
            "",
            "not base64!",
            "e30",
            "bnVsbA",
            "eyJzZXZlcml0eV9yYW5rIjoiNCJ9",
        ] {
            let error = decode(cursor).expect_err(cursor);
            assert_eq!(
                error.status,
                axum::http::StatusCode::BAD_REQUEST,
                "{cursor}"
            );
        }
    }
}
