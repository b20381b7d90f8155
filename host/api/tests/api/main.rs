//! The API over real HTTP: a server on 127.0.0.1 in this process, over a
//! runtime on a temporary database with the Wiz plugin, connected to the
//! Wiz simulator. One test binary; a module per resource.

mod console;
mod core;
mod findings_formats;
mod grants;
mod integrations;
mod metrics;
mod openapi;
mod paging;
mod scans;
mod stop;
// Shared by every module; a helper one module does not use yet is fine.
#[allow(dead_code)]
mod support;
mod tls;
mod triage;
