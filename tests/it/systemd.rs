//! The unit files: what `systemd-analyze verify` says of them (where systemd is installed),
//! the sysusers file creating the group people edit the mirror as, and the settings the
//! README promises (no restart loop on a bad config, a timer whose Persistent= works).

use std::path::Path;
use std::process::Command;

const UNITS: &[&str] = &[
    "restsync.service",
    "restsync-once.service",
    "restsync-once.timer",
    "restsync@.service",
];

fn unit(name: &str) -> String {
    std::fs::read_to_string(Path::new("systemd").join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn available(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_units_promise_what_the_readme_says() {
    for service in ["restsync.service", "restsync@.service"] {
        let text = unit(service);
        assert!(
            text.contains("RestartPreventExitStatus=78"),
            "{service}: a bad config must not restart in a loop"
        );
        assert!(text.contains("Type=notify"), "{service}");
    }
    let template = unit("restsync@.service");
    for line in [
        "User=restsync",
        "Group=restsync",
        "UMask=0007",
        "StateDirectoryMode=0770",
    ] {
        assert!(template.contains(line), "restsync@.service lacks {line}");
    }
    let timer = unit("restsync-once.timer");
    assert!(
        !timer.contains("Persistent=") || timer.contains("OnCalendar="),
        "Persistent= only acts on OnCalendar= timers"
    );
    let readme = std::fs::read_to_string("README.md").expect("README");
    for name in UNITS {
        for doc in unit(name)
            .lines()
            .filter_map(|l| l.strip_prefix("Documentation=file://"))
        {
            let installed = doc.trim_start_matches("/usr/local/share/doc/restsync/");
            assert!(
                readme.contains(&format!("{installed} /usr/local/share/doc/restsync/{installed}")),
                "{name}: Documentation= points at {doc}, which the README's install steps must put there"
            );
        }
    }
}

#[test]
fn systemd_analyze_verify_accepts_every_unit() {
    if !available("systemd-analyze") {
        eprintln!("systemd-analyze not installed; skipped");
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let binary = env!("CARGO_BIN_EXE_restsync");
    let mut paths = Vec::new();
    for name in UNITS {
        // verify wants ExecStart's binary to exist; a template is checked as an instance.
        let text = unit(name).replace("/usr/local/bin/restsync", binary);
        let file = dir.path().join(name.replace("@.", "@acme."));
        std::fs::write(&file, text).expect("unit");
        paths.push(file);
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths)
        .output()
        .expect("systemd-analyze runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Warnings about the machine this runs on (no systemd as PID 1 in a container) are not
    // about the units; anything naming one of them is.
    let about_units: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(dir.path().to_str().unwrap_or("?")))
        .collect();
    assert!(out.status.success() && about_units.is_empty(), "{stderr}");
}

#[test]
fn the_sysusers_file_creates_the_group_people_edit_the_mirror_as() {
    if !available("systemd-sysusers") {
        eprintln!("systemd-sysusers not installed; skipped");
        return;
    }
    let root = tempfile::tempdir().expect("root");
    std::fs::create_dir_all(root.path().join("etc")).expect("etc");
    let out = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(std::fs::canonicalize("systemd/restsync.sysusers").expect("sysusers file"))
        .output()
        .expect("systemd-sysusers runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).expect("passwd");
    let group = std::fs::read_to_string(root.path().join("etc/group")).expect("group");
    let user = passwd
        .lines()
        .find(|l| l.starts_with("restsync:"))
        .expect("user restsync");
    assert!(user.contains(":/var/lib/restsync:"), "{user}");
    assert!(group.lines().any(|l| l.starts_with("restsync:")), "{group}");
}
