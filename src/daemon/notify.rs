//! systemd notifications (`Type=notify`): READY, STATUS, RELOADING, STOPPING and watchdog
//! heartbeats. Without `NOTIFY_SOCKET` they do nothing.

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

pub fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("started")]);
    start_watchdog();
}

pub fn reloaded() {
    send(&[NotifyState::Ready, NotifyState::Status("configuration reloaded")]);
}

pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send(&states);
}

pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

/// Heartbeats at half the interval systemd asked for (`WatchdogSec=`).
fn start_watchdog() {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval / 2);
        loop {
            tick.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    });
}
