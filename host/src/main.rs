//! `scanner-host`: connect tenants to scanner plugins, scan, list findings,
//! and run the scheduler.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
