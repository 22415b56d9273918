//! SIGTERM/SIGINT cancel the shutdown token (a second one exits at once); SIGHUP asks for
//! a configuration reload.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What the service is told from outside: stop, or reload its configuration.
pub struct Control {
    /// Cancelled to stop: no new request starts, in-flight ones get the grace period.
    pub shutdown: CancellationToken,
    /// One message per reload request.
    pub reload: mpsc::Receiver<()>,
    /// What the service reports (`/healthz`, STATUS=); a driver may keep a clone to await
    /// finished passes.
    pub health: super::Health,
}

impl Control {
    /// Driven by the process's signals: SIGTERM/SIGINT stop (a second one exits at once),
    /// SIGHUP reloads.
    pub fn from_signals() -> Control {
        let shutdown = CancellationToken::new();
        let reload = spawn(shutdown.clone());
        Control {
            shutdown,
            reload,
            health: super::Health::default(),
        }
    }
}

fn spawn(shutdown: CancellationToken) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    let _ = tx.try_send(());
                    continue;
                }
            }
            if shutdown.is_cancelled() {
                tracing::warn!("second stop signal: exiting now");
                std::process::exit(1);
            }
            tracing::info!("stop signal: finishing in-flight requests");
            shutdown.cancel();
        }
    });
    rx
}
