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
//! Every writer takes the rows as an iterator and writes as it goes, so a
//! caller can stream rows straight from the store to a socket or a file.
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
mod timestamps;

pub use cell::csv_cell;
pub use csv_format::{CSV_HEADERS, write_csv};
pub use json::write_json;
pub use ocsf::{OCSF_VERSION, write_ocsf};
pub use producer::Producer;
pub use sarif::{SARIF_SCHEMA, write_sarif};

use scanner_store::FindingRow;
use std::io::{self, Write};

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

impl FindingFormat {
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
pub fn write_findings<'a, W: Write>(
    format: FindingFormat,
    out: W,
    rows: impl IntoIterator<Item = &'a FindingRow>,
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
