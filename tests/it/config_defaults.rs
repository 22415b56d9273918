//! Every default is declared once (`config::defaults`); the example configuration and the
//! README state the same values.

use restsync::config;

/// `(section, key, value)` of every `key = value` line of a TOML text, by section.
fn assignments(toml_text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in toml_text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.split(" #").next().unwrap_or(v).trim();
            out.push((section.clone(), k.trim().to_string(), v.to_string()));
        }
    }
    out
}

#[test]
fn the_example_config_states_every_default_as_declared() {
    let example = std::fs::read_to_string("config/restsync.example.toml").expect("example config");
    let stated = assignments(&example);
    for (section, key, value) in config::documented() {
        let found = stated
            .iter()
            .find(|(s, k, _)| *s == section && *k == key)
            .unwrap_or_else(|| panic!("config/restsync.example.toml does not document {section}.{key}"));
        assert_eq!(
            found.2, value,
            "{section}.{key}: the example says {}, the default is {value}",
            found.2
        );
    }
}

#[test]
fn the_readme_states_the_defaults_as_declared() {
    let readme = std::fs::read_to_string("README.md").expect("README");
    let defaults = config::documented();
    // `key = value` lines in the README's TOML blocks.
    let mut checked = 0;
    for block in readme.split("```toml").skip(1) {
        let block = block.split("```").next().unwrap_or_default();
        for (section, key, value) in assignments(block) {
            if let Some((_, _, default)) = defaults.iter().find(|(s, k, _)| *s == section && *k == key) {
                assert_eq!(
                    &value, default,
                    "README: {section}.{key} = {value}, the default is {default}"
                );
                checked += 1;
            }
        }
    }
    // "`section.key` (default N)" in the prose.
    for (section, key, value) in &defaults {
        let needle = format!("`{section}.{key}` (default ");
        for (at, _) in readme.match_indices(&needle) {
            let rest = &readme[at + needle.len()..];
            let stated = rest.split(')').next().unwrap_or_default();
            assert_eq!(
                stated,
                value.trim_matches('"'),
                "README: {section}.{key} (default {stated})"
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "the README states only {checked} defaults");
}
