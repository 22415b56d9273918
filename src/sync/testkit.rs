//! The engine in-process for tests: the sandbox on 127.0.0.1, an in-memory store, and a
//! resource context for phone numbers.

use super::{CycleOptions, Engine, ResourceCtx};
use crate::config;
use crate::resources::ResourceKind;
use crate::sandbox::{Kind, Sandbox, SandboxOptions};
use crate::store::{AsyncStore, Store};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub(crate) struct Setup {
    pub sandbox: Sandbox,
    pub engine: Engine,
    pub stop: CancellationToken,
    _dir: tempfile::TempDir,
}

pub(crate) async fn setup(records: usize) -> Setup {
    let opts = SandboxOptions {
        records,
        ..SandboxOptions::default()
    };
    let sandbox = Sandbox::start(opts.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restsync.toml");
    std::fs::write(
        &path,
        format!(
            r#"[database]
path = "unused.db"
[upstreams.firstline]
base_url = "{}"
token = "{}"
[upstreams.plusofon]
base_url = "{}"
token = "{}"
client = "{}"
[sync]
per_page = 10
retry_base_ms = 10
request_timeout_secs = 3
"#,
            sandbox.firstline_url(),
            opts.firstline_token,
            sandbox.plusofon_url(),
            opts.plusofon_token,
            opts.plusofon_client
        ),
    )
    .unwrap();
    let settings = config::load_with_env(&path, Default::default()).unwrap();
    let db = AsyncStore::new(Store::open_in_memory().unwrap());
    let stop = CancellationToken::new();
    let engine = Engine::new(Arc::new(settings), db)
        .unwrap()
        .with_shutdown(stop.clone());
    Setup {
        sandbox,
        engine,
        stop,
        _dir: dir,
    }
}

impl Setup {
    pub(crate) fn ctx(&self) -> ResourceCtx {
        self.engine
            .ctx(ResourceKind::PHONE_NUMBERS, CycleOptions::default())
            .unwrap()
    }

    pub(crate) async fn mirror_ids(&self) -> Vec<i64> {
        let spec = ResourceKind::PHONE_NUMBERS.spec();
        let mut ids: Vec<i64> = self
            .engine
            .db()
            .call(move |s| {
                let mut stmt = s.conn().prepare(&format!("SELECT id FROM {}", spec.table))?;
                let ids = stmt
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<i64>>>()?;
                Ok(ids)
            })
            .await
            .unwrap();
        ids.sort_unstable();
        ids
    }

    /// Runs `sql` as a person would (tracking on), in its own transaction.
    pub(crate) async fn person(&self, sql: String) {
        self.engine
            .db()
            .call(move |st| {
                st.person().execute_batch(&sql)?;
                Ok(())
            })
            .await
            .unwrap()
    }

    pub(crate) fn upstream_ids(&self) -> Vec<i64> {
        let mut ids = self.sandbox.control().ids(Kind::PhoneNumbers);
        ids.sort_unstable();
        ids
    }
}
