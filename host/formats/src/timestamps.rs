//! The store's timestamps (RFC 3339 text, the scanner's own unchanged) in
//! the forms the formats want. A timestamp that does not parse is treated
//! as absent rather than failing the whole listing: the JSON and CSV
//! writers still carry its text unchanged.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `s` parsed as RFC 3339.
pub(crate) fn parse(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339).ok()
}

/// Milliseconds since the Unix epoch (OCSF's timestamp type).
pub(crate) fn epoch_millis(s: &str) -> Option<i64> {
    let t = parse(s)?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// The UTC date as `MM/DD/YYYY`.
pub(crate) fn us_date(s: &str) -> Option<String> {
    let t = parse(s)?.to_offset(time::UtcOffset::UTC);
    Some(format!(
        "{:02}/{:02}/{:04}",
        u8::from(t.month()),
        t.day(),
        t.year()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_becomes_epoch_millis_and_a_utc_date() {
        assert_eq!(epoch_millis("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(
            epoch_millis("2024-05-01T12:00:00+02:00"),
            Some(1_714_557_600_000)
        );
        // 23:30 at -02:00 is the next day in UTC.
        assert_eq!(
            us_date("2024-02-29T23:30:00-02:00").as_deref(),
            Some("03/01/2024")
        );
        assert_eq!(
            us_date("2024-01-05T00:00:00Z").as_deref(),
            Some("01/05/2024")
        );
    }

    #[test]
    fn text_that_is_not_rfc3339_is_absent() {
        assert_eq!(epoch_millis("yesterday"), None);
        assert_eq!(us_date(""), None);
    }
}
