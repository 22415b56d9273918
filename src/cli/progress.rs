//! Progress bars for a one-shot run on a terminal: one per resource (pages, records, rate,
//! ETA), then its pushes. Only when stderr is a terminal and logs are text; log lines are
//! written with the bars suspended, so the two never interleave.

use crate::resources::ResourceKind;
use crate::sync::events::{Observer, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// Turns progress bars on for this process (called by logging set-up, which knows the
/// log format and whether stderr is a terminal).
pub fn enable() {
    let _ = BARS.set(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
}

/// stderr for log lines: with the bars, if any, cleared while a line is written.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match BARS.get() {
            Some(bars) => bars.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Takes the bars off the screen (before the end-of-run summary).
pub fn clear() {
    if let Some(bars) = BARS.get() {
        let _ = bars.clear();
    }
}

/// An observer drawing the bars, or None when bars are off.
pub fn observer() -> Option<Observer> {
    let bars = BARS.get()?.clone();
    let style = ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} pages, {msg}, ETA {eta}")
        .ok()?
        .progress_chars("=> ");
    let state: Mutex<HashMap<ResourceKind, (ProgressBar, u64, u64)>> = Mutex::new(HashMap::new());
    let rate = |bar: &ProgressBar, records: u64| {
        let secs = bar.elapsed().as_secs_f64().max(0.001);
        format!("{records} records ({:.0}/s)", records as f64 / secs)
    };
    Some(Arc::new(move |event: Progress| {
        let Ok(mut state) = state.lock() else { return };
        match event {
            Progress::Page {
                resource,
                page,
                last_page,
                records,
            } => {
                let (bar, received, _) = state.entry(resource).or_insert_with(|| {
                    let bar = bars.add(ProgressBar::new(last_page));
                    bar.set_style(style.clone());
                    bar.set_prefix(resource.name());
                    (bar, 0, 0)
                });
                *received += records;
                bar.set_length(last_page.max(page));
                bar.set_position(page);
                bar.set_message(rate(bar, *received));
            }
            Progress::WalkDone { resource } => {
                if let Some((bar, received, _)) = state.get(&resource) {
                    bar.finish_with_message(rate(bar, *received));
                }
            }
            Progress::Pushed { resource, .. } => {
                if let Some((bar, received, pushed)) = state.get_mut(&resource) {
                    *pushed += 1;
                    bar.set_message(format!("{}, {pushed} pushes", rate(bar, *received)));
                }
            }
        }
    }))
}
