//! Findings in the formats security tools ingest, written the same way by
//! every front end (the command line today, an HTTP API later) so they all
//! produce the same bytes:
//!
//! - [`write_json`]: a JSON array of the stored findings, every field as
//!   the store holds it (`scanner-host findings --format json`).
//! - [`write_csv`]: CSV whose first columns are those of DefectDojo's
//!   "Generic Findings Import", followed by every field of the finding;
//!   cells are neutralised against formula injection ([`csv_cell`]).
//! - [`write_ocsf`]: OCSF 1.5 Vulnerability Findings (class 2002), one JSON
//!   object per line.
//! - [`write_sarif`]: one SARIF 2.1.0 log, one result per finding.
//!
//! Every writer takes the rows as an iterator (of rows or references to
//! them) and writes as it goes, so a caller can stream rows straight from
//! the store to a socket or a file, page after page.
//!
//! [`json_schema`] is the JSON Schema of what [`write_json`] writes,
//! generated from [`FindingRow`] and committed as `docs/findings.schema.json`.
//! Errors are the writer's I/O errors, their kind kept (a closed pipe stays
//! `BrokenPipe`).

mod cell;
mod csv_format;
#[cfg(test)]
mod fixtures;
mod json;
mod ocsf;
mod producer;
mod sarif;
mod schema;
mod timestamps;

pub use cell::csv_cell;
pub use csv_format::{CSV_HEADERS, write_csv};
pub use json::write_json;
pub use ocsf::{OCSF_VERSION, write_ocsf};
pub use producer::Producer;
pub use sarif::{SARIF_SCHEMA, write_sarif};
pub use schema::json_schema;

use scanner_store::FindingRow;
use std::borrow::Borrow;
use std::io::{self, Write};
use std::str::FromStr;

/// A findings format, for front ends that pick one by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingFormat {
    /// [`write_json`].
    Json,
    /// [`write_csv`].
    Csv,
    /// [`write_ocsf`].
    Ocsf,
    /// [`write_sarif`].
    Sarif,
}

/// A format name that is none of [`FindingFormat::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format `{0}` (expected one of: {names})", names = FindingFormat::NAMES.join(", "))]
pub struct UnknownFormat(pub String);

impl FromStr for FindingFormat {
    type Err = UnknownFormat;

    /// A format by its name, as [`FindingFormat::name`] gives it.
    fn from_str(s: &str) -> Result<FindingFormat, UnknownFormat> {
        match s {
            "json" => Ok(FindingFormat::Json),
            "csv" => Ok(FindingFormat::Csv),
            "ocsf" => Ok(FindingFormat::Ocsf),
            "sarif" => Ok(FindingFormat::Sarif),
            other => Err(UnknownFormat(other.to_string())),
        }
    }
}

impl FindingFormat {
    /// Every format's name, as [`FromStr`] takes them.
    pub const NAMES: [&'static str; 4] = ["json", "csv", "ocsf", "sarif"];

    /// The format's name.
    pub fn name(self) -> &'static str {
        match self {
            FindingFormat::Json => "json",
            FindingFormat::Csv => "csv",
            FindingFormat::Ocsf => "ocsf",
            FindingFormat::Sarif => "sarif",
        }
    }

    /// The file name extension of a file in this format (without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            FindingFormat::Json => "json",
            FindingFormat::Csv => "csv",
            // JSON lines, as tools that read OCSF files expect them.
            FindingFormat::Ocsf => "ocsf.jsonl",
            FindingFormat::Sarif => "sarif",
        }
    }

    /// The media type a response in this format carries.
    pub fn content_type(self) -> &'static str {
        match self {
            FindingFormat::Json => "application/json",
            FindingFormat::Csv => "text/csv; charset=utf-8",
            // One JSON object per line.
            FindingFormat::Ocsf => "application/x-ndjson",
            FindingFormat::Sarif => "application/sarif+json",
        }
    }
}

/// Writes `rows` to `out` in `format`; `producer` names the tool in the
/// formats that carry it (OCSF, SARIF).
pub fn write_findings<W: Write>(
    format: FindingFormat,
    out: W,
    rows: impl IntoIterator<Item = impl Borrow<FindingRow>>,
    producer: &Producer,
) -> io::Result<()> {
    match format {
        FindingFormat::Json => write_json(out, rows),
        FindingFormat::Csv => write_csv(out, rows),
        FindingFormat::Ocsf => write_ocsf(out, rows, producer),
        FindingFormat::Sarif => write_sarif(out, rows, producer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::code_finding;

    /// A reader that went away.
    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn formats_are_read_back_from_their_names() {
        for name in FindingFormat::NAMES {
            let format: FindingFormat = name.parse().expect(name);
            assert_eq!(format.name(), name);
        }
        let error = "xml".parse::<FindingFormat>().expect_err("xml");
        assert_eq!(
            error.to_string(),
            "unknown format `xml` (expected one of: json, csv, ocsf, sarif)"
        );
    }

    #[test]
    fn a_closed_pipe_stays_a_broken_pipe_in_every_format() {
        let rows = vec![code_finding(); 2];
        let producer = Producer::new("scanner-host", "0.1.0");
        for format in [
            FindingFormat::Json,
            FindingFormat::Csv,
            FindingFormat::Ocsf,
            FindingFormat::Sarif,
        ] {
            let err = write_findings(format, ClosedPipe, &rows, &producer)
                .expect_err("a closed pipe fails");
            assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{format:?}: {err}");
        }
    }
}
