//! Progress bars: drawn on a terminal with text logs, never in JSON log mode, never when
//! stderr is not a terminal (cron, systemd, a pipe). The terminal is a real pseudo-terminal.

use crate::common::Env;
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use std::io::Read;
use std::process::{Command, Stdio};

/// Runs restsync with stderr on a pseudo-terminal; returns the exit code and what the
/// terminal received.
fn on_a_terminal(env: &Env, args: &[&str]) -> (i32, String) {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    let name = ptsname(&master, Vec::new()).expect("ptsname");
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().expect("pty path"))
        .expect("open the terminal's other end");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_restsync"));
    cmd.arg("--config")
        .arg(&env.config)
        .args(args)
        .env_remove("RESTSYNC_LOG_FORMAT")
        .env("TERM", "xterm-256color")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave));
    let mut child = cmd.spawn().expect("spawn");
    drop(cmd); // our copy of the terminal's other end, so reading ends when the child exits
    let reader = std::thread::spawn(move || {
        let mut master = std::fs::File::from(master);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the child (the last holder of the other end) has exited.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    });
    let code = child.wait().expect("wait").code().unwrap_or(-1);
    let out = reader.join().expect("reader");
    (code, String::from_utf8_lossy(&out).into_owned())
}

fn has_bars(text: &str) -> bool {
    text.contains(" pages, ") && text.contains("records (")
}

#[tokio::test(flavor = "multi_thread")]
async fn bars_on_a_terminal_with_text_logs_only() {
    let env = Env::start(120).await;
    let (code, terminal) = on_a_terminal(&env, &["sync", "--once"]);
    assert_eq!(code, 0, "{terminal}");
    assert!(has_bars(&terminal), "no progress bars on a terminal:\n{terminal}");
    assert!(
        terminal.contains("phone_numbers ["),
        "one bar per resource:\n{terminal}"
    );

    // JSON logs on the same terminal: every line is JSON, no bars.
    let (code, terminal) = on_a_terminal(&env, &["--log-format", "json", "sync", "--once"]);
    assert_eq!(code, 0, "{terminal}");
    assert!(!has_bars(&terminal), "bars in JSON log mode:\n{terminal}");
    for line in terminal.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<serde_json::Value>(line.trim()).is_ok(),
            "not JSON: {line:?}"
        );
    }

    // stderr not a terminal (a pipe, as under cron or systemd): no bars, no carriage returns.
    let run = env.sync_once().await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!has_bars(&run.stderr), "bars into a pipe:\n{}", run.stderr);
    assert!(!run.stderr.contains('\r'), "terminal control in a pipe");
}
