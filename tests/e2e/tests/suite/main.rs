//! The end-to-end suite: the real plugin components in the real host against
//! the Wiz simulator. One test binary on purpose: each binary links wasmtime,
//! the simulator and SQLite, so one link instead of six keeps the suite's
//! build time and disk use down (CI runs on 2 cores).

mod attacks;
mod cache;
mod connector;
mod contract;
mod dependabot;
mod export;
mod host;
mod http;
mod import;
mod operator;
mod readme;
mod sandbox;
mod scaleout;
mod sync;
