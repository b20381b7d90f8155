//! The commands, one module each; `main` parses the command line and calls
//! the `run` function of the one it names.

pub(crate) mod connect;
pub(crate) mod demo;
pub(crate) mod disconnect;
pub(crate) mod export;
pub(crate) mod findings;
pub(crate) mod inspect;
pub(crate) mod keys;
pub(crate) mod plugins;
pub(crate) mod repos;
pub(crate) mod scan;
pub(crate) mod schedule;
pub(crate) mod serve;
pub(crate) mod status;
pub(crate) mod test;
pub(crate) mod tokens;
