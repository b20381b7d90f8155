//! How values become column text and back: timestamps and JSON. (The
//! contract's enums are stored by their `as_str` names.)

use crate::error::StoreError;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Timestamps are stored as fixed-width RFC 3339 UTC text, so that text
/// order is time order and SQL can compare them.
pub fn timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Parse a stored timestamp.
pub fn parse_timestamp(s: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| StoreError::Corrupt {
        what: "timestamp",
        message: format!("{s}: {e}"),
    })
}

/// A value as JSON text (lists and locations are stored so).
pub(crate) fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}
