//! The `restsync` command: parse arguments, run, exit with a meaningful code.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match restsync::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are answers (stdout, 0); anything else the parser
            // refuses is a usage error, 64 like every other one (EX_USAGE).
            let _ = e.print();
            return ExitCode::from(match e.use_stderr() {
                true => restsync::exit::USAGE as u8,
                false => restsync::exit::OK as u8,
            });
        }
    };
    let code = restsync::cli::run(cli);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
