//! tracing to stderr: human-readable or JSON; `RUST_LOG` beats `log.level`. Text logs on a
//! terminal share stderr with the progress bars, which step aside for each line.

use crate::config::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

pub fn init(level: Option<&str>, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level.unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // restsync says itself which database it upgraded (the library's line names none,
        // and would also speak of in-memory databases).
        .add_directive("rusqlite_migration=warn".parse().unwrap_or_default());
    let terminal = std::io::stderr().is_terminal();
    // Progress bars only where a person watches text logs.
    if terminal && format == LogFormat::Text {
        super::progress::enable();
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal)
        .with_writer(|| super::progress::LogWriter);
    let result = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // Already initialised (tests calling in twice): keep the first.
    let _ = result;
}
