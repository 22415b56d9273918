//! Command-line interface: argument definitions and dispatch to one module per command.

#![allow(clippy::print_stdout, clippy::print_stderr)]

/// `println!` that does not panic when stdout is closed (`restsync status | head`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod check_cmd;
mod conflicts_cmd;
mod demo;
mod journal_cmd;
mod logging;
mod progress;
mod resources_cmd;
mod status;
mod summary;
mod sync_cmd;

use crate::config::{self, LogFormat, Settings};
use crate::store::writer_lock::{self, LockError, WriterLock};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

pub use crate::exit;

#[derive(Debug, Parser)]
#[command(
    name = "restsync",
    version,
    about = "Keeps a local SQLite mirror in two-way sync with the Firstline and Plusofon REST APIs"
)]
pub struct Cli {
    /// Configuration file (TOML).
    #[arg(
        long,
        global = true,
        env = "RESTSYNC_CONFIG",
        default_value = "config/restsync.toml"
    )]
    pub config: PathBuf,
    /// Log format on stderr (overrides `log.format`).
    #[arg(long, global = true, env = "RESTSYNC_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sync the mirror with upstream: pull every enabled resource, merge, push local edits.
    /// Without --once, keeps running and syncs on `sync.schedule`.
    Sync {
        /// Run one cycle and exit (0 done, 65 needs attention, 75 work left for a later run,
        /// 78 bad configuration, 1 other error).
        #[arg(long)]
        once: bool,
        /// Apply removals and push deletes even beyond `sync.max_delete_fraction`.
        #[arg(long)]
        allow_mass_delete: bool,
        /// With --once: print the cycle report as one JSON document on stdout instead of
        /// the summary table (logs stay on stderr).
        #[arg(long, requires = "once")]
        json: bool,
    },
    /// Validate the configuration (78 invalid, naming every bad key), check that the
    /// database can be written (73 if not), and print when each resource's next walks run.
    Check {
        /// Also ask each upstream for one record: 65 if it refuses (token, filter), 75 if
        /// it cannot be reached.
        #[arg(long)]
        online: bool,
    },
    /// Dry run: fetch upstream and print what a cycle would create, update, delete and
    /// which conflicts it would resolve how. Changes nothing.
    Plan {
        /// Print the plan as one JSON document.
        #[arg(long)]
        json: bool,
        /// Exit 2 when the next cycle would change something, 0 when it would not, 65 when
        /// it would refuse or hold a change that needs a person, 75 when it would leave work
        /// for a later run (upstream unsettled, an outcome being settled); errors keep their
        /// codes (1, 75, 78).
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Show per resource: rows, pending local changes, journal entries by state, conflicts,
    /// pending entries with attempts and last error, failed entries with upstream's messages
    /// and the command that settles them, last complete pull. Exits 0 healthy, 65 something
    /// needs a person, 75 work is waiting.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Inspect and manage the change journal.
    Journal {
        #[command(subcommand)]
        action: Option<JournalAction>,
        /// Only entries in this state (pending, in_flight, done, failed, superseded).
        #[arg(long)]
        state: Option<String>,
        /// At most this many entries, newest first.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// List the conflicts the merge resolved (resource, row, field, base/local/remote
    /// values, resolution, when), or put a losing value back with `restore <seq>`.
    Conflicts {
        #[command(subcommand)]
        action: Option<ConflictsAction>,
        /// Only this resource's conflicts.
        #[arg(long)]
        resource: Option<String>,
        /// Only conflicts detected within this long, e.g. 30m, 2h, 7d.
        #[arg(long)]
        since: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the resources this configuration can sync (built-in and defined in the config)
    /// with their columns; `resources show NAME` prints one as the TOML that defines it.
    Resources {
        #[command(subcommand)]
        action: Option<ResourcesAction>,
    },
    /// Serve the built-in emulator of the Firstline and Plusofon APIs on 127.0.0.1.
    Sandbox {
        /// Port for the Firstline API (0 picks a free one).
        #[arg(long, default_value_t = 8081)]
        firstline_port: u16,
        /// Port for the Plusofon API (0 picks a free one).
        #[arg(long, default_value_t = 8082)]
        plusofon_port: u16,
        /// Seed for the generated data and fault decisions.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Records generated for each resource.
        #[arg(long, default_value_t = 250)]
        records: usize,
        /// Fault injection, e.g. "error_rate=0.25,rate_limit_rate=0.15,retry_after_secs=1,latency_ms=20".
        #[arg(long)]
        faults: Option<String>,
        /// Also serve the resources defined in this configuration file (generated records).
        #[arg(long = "definitions", value_name = "CONFIG")]
        definitions: Option<PathBuf>,
    },
    /// Run restsync end to end against the built-in sandbox and print a short report.
    Demo {
        /// Where the demo's config and database go.
        #[arg(long, default_value = "restsync-demo")]
        dir: PathBuf,
        /// Records generated for each resource.
        #[arg(long, default_value_t = 250)]
        records: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum ResourcesAction {
    /// Print a resource's definition as TOML (a built-in's too: copy it under another name
    /// in the config and adapt it).
    Show {
        /// Resource name (its mirror table).
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConflictsAction {
    /// Put the losing value of a conflict back into the mirror row (for a record deleted
    /// upstream, the row comes back with id NULL and is created again); the next sync pushes
    /// it. Refused when the row changed since, naming what changed, and when the conflict
    /// was restored already.
    Restore {
        /// Conflict number (seq), from `restsync conflicts`.
        seq: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum JournalAction {
    /// Make failed entries eligible to be sent again now.
    Retry {
        /// Journal entry (seq).
        seq: Option<i64>,
        /// Every failed entry.
        #[arg(long, conflicts_with = "seq")]
        all: bool,
    },
    /// Give up a change: marks the entry superseded and restores the local row from its
    /// base snapshot (the last state known upstream; a row whose id was edited gets it back
    /// in place); for a create, which has no snapshot, deletes the local row. Refused when
    /// the row changed since the entry or ids moved between rows.
    Drop {
        /// Journal entry (seq).
        #[arg(required_unless_present = "all")]
        seq: Option<i64>,
        /// Every entry that can be dropped (queued or failed; add --resource, --state).
        #[arg(long, conflicts_with = "seq")]
        all: bool,
        /// With --all: only this resource's entries.
        #[arg(long, requires = "all")]
        resource: Option<String>,
        /// With --all: only entries in this state (pending or failed).
        #[arg(long, requires = "all")]
        state: Option<String>,
        /// With --all: only the deletes the mass-delete guard holds (undo a guarded mass
        /// delete without touching other failed changes).
        #[arg(long, requires = "all")]
        held: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs the parsed command and returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    let flag_format = cli.log_format.map(|f| match f {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("restsync: cannot start the async runtime: {e}");
            return exit::FATAL;
        }
    };
    match cli.command {
        Command::Sandbox {
            firstline_port,
            plusofon_port,
            seed,
            records,
            faults,
            definitions,
        } => {
            logging::init(None, flag_format.unwrap_or(LogFormat::Text));
            let defined = match definitions.map(|p| config::load(&p)).transpose() {
                Ok(settings) => settings.map(|s| s.kinds()).unwrap_or_default(),
                Err(e) => {
                    eprintln!("restsync: --definitions: {e}");
                    return exit::CONFIG;
                }
            };
            runtime.block_on(demo::serve_sandbox(
                firstline_port,
                plusofon_port,
                seed,
                records,
                faults.as_deref(),
                defined.into_iter().filter(|k| !k.is_built_in()).collect(),
            ))
        }
        Command::Resources { action } => {
            logging::init(Some("warn"), flag_format.unwrap_or(LogFormat::Text));
            // Without a configuration file the built-ins are still worth listing.
            let settings = if cli.config.exists() {
                match config::load(&cli.config) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        eprintln!("restsync: {e}");
                        return exit::CONFIG;
                    }
                }
            } else {
                None
            };
            let show = action.map(|ResourcesAction::Show { name }| name);
            resources_cmd::run(settings.as_ref(), show.as_deref())
        }
        Command::Demo { dir, records } => {
            logging::init(Some("warn"), flag_format.unwrap_or(LogFormat::Text));
            runtime.block_on(demo::run(&dir, records))
        }
        command => {
            let settings = match config::load(&cli.config) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("restsync: {e}");
                    // `sync --once --json` answers with one JSON document whatever happens.
                    if matches!(command, Command::Sync { json: true, .. }) {
                        outln!("{}", summary::json_error(exit::CONFIG, &e.to_string()));
                    }
                    return exit::CONFIG;
                }
            };
            logging::init(
                settings.log_level.as_deref(),
                flag_format.or(settings.log_format).unwrap_or(LogFormat::Text),
            );
            runtime.block_on(dispatch(command, cli.config, settings))
        }
    }
}

async fn dispatch(command: Command, config_path: PathBuf, settings: Settings) -> i32 {
    match command {
        Command::Sync {
            once,
            allow_mass_delete,
            json,
        } => sync_cmd::run(config_path, settings, once, allow_mass_delete, json).await,
        Command::Plan {
            json,
            detailed_exitcode,
        } => sync_cmd::plan(settings, json, detailed_exitcode).await,
        Command::Check { online } => check_cmd::run(&config_path, settings, online).await,
        Command::Status { json } => status::run(&settings, json),
        Command::Journal { action, state, limit } => {
            journal_cmd::run(&settings, action, state.as_deref(), limit)
        }
        Command::Conflicts {
            action,
            resource,
            since,
            json,
        } => {
            let restore = action.map(|ConflictsAction::Restore { seq }| seq);
            conflicts_cmd::run(&settings, restore, resource.as_deref(), since.as_deref(), json)
        }
        Command::Sandbox { .. } | Command::Demo { .. } | Command::Resources { .. } => exit::FATAL,
    }
}

/// Takes the single-writer lock of the database at `db_path` for a command that writes or
/// pushes, waiting a few seconds for another holder. On failure says why and returns the
/// exit code: 75 while another process holds it (a later run will get it), 1 otherwise.
fn writer_lock(db_path: &Path) -> Result<WriterLock, i32> {
    WriterLock::acquire(db_path, writer_lock::DEFAULT_WAIT).map_err(|e| {
        eprintln!("restsync: {e}");
        match e {
            LockError::Held { .. } => exit::TEMPFAIL,
            LockError::Io { .. } => exit::FATAL,
        }
    })
}

/// [`writer_lock`] from async code: the wait runs on the blocking pool.
async fn writer_lock_async(db_path: &Path) -> Result<WriterLock, i32> {
    let db_path = db_path.to_path_buf();
    tokio::task::spawn_blocking(move || writer_lock(&db_path))
        .await
        .unwrap_or_else(|e| {
            eprintln!("restsync: waiting for the writer lock failed: {e}");
            Err(exit::FATAL)
        })
}
