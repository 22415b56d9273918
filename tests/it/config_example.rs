//! The documented example configuration is valid as shipped.

use restsync::config;
use std::path::Path;

#[test]
fn the_example_config_loads() {
    let settings = config::load_with_env(Path::new("config/restsync.example.toml"), Default::default())
        .expect("config/restsync.example.toml is valid");
    assert_eq!(settings.resources.len(), 3);
    assert_eq!(settings.sync.per_page, 100);
    assert_eq!(settings.sync.on_conflict, config::ConflictPolicy::RemoteWins);
    assert!(settings.database_path.ends_with("restsync.db"));
}
