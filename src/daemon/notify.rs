//! systemd notifications (`Type=notify`): READY, STATUS, RELOADING, STOPPING and watchdog
//! heartbeats. Without `NOTIFY_SOCKET` they do nothing.
//!
//! Sending blocks when the receiver's queue is full, so messages go through one thread of
//! their own: a slow service manager can never stall the runtime.

use sd_notify::NotifyState;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::OnceLock;

enum Message {
    Ready,
    Reloading,
    Stopping,
    Watchdog,
    Status(String),
}

fn sender() -> Option<&'static SyncSender<Message>> {
    static SENDER: OnceLock<Option<SyncSender<Message>>> = OnceLock::new();
    SENDER
        .get_or_init(|| {
            std::env::var_os("NOTIFY_SOCKET")?;
            let (tx, rx) = sync_channel::<Message>(64);
            std::thread::Builder::new()
                .name("sd-notify".into())
                .spawn(move || {
                    for message in rx {
                        let status;
                        let mut states = Vec::new();
                        match &message {
                            Message::Ready => states.push(NotifyState::Ready),
                            Message::Reloading => {
                                states.push(NotifyState::Reloading);
                                if let Ok(now) = NotifyState::monotonic_usec_now() {
                                    states.push(now);
                                }
                            }
                            Message::Stopping => states.push(NotifyState::Stopping),
                            Message::Watchdog => states.push(NotifyState::Watchdog),
                            Message::Status(text) => {
                                status = text.clone();
                                states.push(NotifyState::Status(&status));
                            }
                        }
                        if let Err(e) = sd_notify::notify(&states) {
                            tracing::debug!(error = %e, "sd_notify failed");
                        }
                    }
                })
                .ok()?;
            Some(tx)
        })
        .as_ref()
}

/// Queues a message; drops it rather than wait if the queue is full.
fn queue(message: Message) {
    if let Some(tx) = sender() {
        let _ = tx.try_send(message);
    }
}

pub fn ready() {
    queue(Message::Ready);
    status("started");
    start_watchdog();
}

pub fn reloaded() {
    queue(Message::Ready);
    status("configuration reloaded");
}

pub fn reloading() {
    queue(Message::Reloading);
}

pub fn stopping() {
    queue(Message::Stopping);
}

pub fn status(text: &str) {
    queue(Message::Status(text.to_string()));
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
            queue(Message::Watchdog);
        }
    });
}
