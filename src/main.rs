//! The `restsync` command: parse arguments, run, exit with a meaningful code.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = restsync::cli::Cli::parse();
    let code = restsync::cli::run(cli);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
