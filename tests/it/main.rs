//! The integration tests: the real binary and library against the built-in sandbox on
//! 127.0.0.1, a real SQLite file, real HTTP. One test crate, so `cargo test` links once.

#![allow(clippy::print_stdout, clippy::print_stderr)]
#![allow(dead_code)]

mod common;
mod config_defaults;
mod config_example;
mod conflicts;
mod convergence;
mod daemon;
mod defined;
mod errors;
mod limits;
mod logs;
mod parsers;
mod progress;
mod pull;
mod push;
mod reliability;
mod systemd;
mod tracking;
