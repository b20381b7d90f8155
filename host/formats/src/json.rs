//! Findings as one pretty-printed JSON array: every field of the store's
//! [`FindingRow`] under its own name, exactly as stored.

use scanner_store::FindingRow;
use serde::{Serialize, Serializer};
use std::borrow::Borrow;
use std::io::{self, Write};

/// Writes `rows` as a pretty-printed JSON array followed by a newline,
/// streaming one row at a time. The bytes are those of
/// `serde_json::to_string_pretty` over all the rows.
pub fn write_json<W: Write>(
    mut out: W,
    rows: impl IntoIterator<Item = impl Borrow<FindingRow>>,
) -> io::Result<()> {
    let mut serializer = serde_json::Serializer::pretty(&mut out);
    serializer
        .collect_seq(rows.into_iter().map(Row))
        .map_err(io::Error::from)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// A row however it is held (owned or borrowed), serialized as the row.
struct Row<R>(R);

impl<R: Borrow<FindingRow>> Serialize for Row<R> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.borrow().serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{code_finding, image_finding};

    #[test]
    fn json_is_the_pretty_array_of_the_rows_as_stored() {
        for rows in [
            vec![],
            vec![code_finding()],
            vec![code_finding(), image_finding()],
        ] {
            let mut out = Vec::new();
            write_json(&mut out, &rows).expect("write");
            let want = serde_json::to_string_pretty(&rows).expect("json") + "\n";
            assert_eq!(String::from_utf8(out).expect("utf-8"), want);
        }
    }
}
