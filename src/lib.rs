//! restsync: keeps a local SQLite mirror in two-way sync with the Firstline and Plusofon REST APIs.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod exit;
pub mod resources;
pub mod sandbox;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod upstream;
