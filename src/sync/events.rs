//! What the engine reports while it works. The engine prints nothing itself: whoever
//! drives it (the one-shot command's progress bars, a test) passes an [`Observer`].

use crate::resources::ResourceKind;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A page of a walk was written (`records` on it; `last_page` as upstream says now).
    Page {
        resource: ResourceKind,
        page: u64,
        last_page: u64,
        records: u64,
    },
    /// A resource's walk ended (complete or not).
    WalkDone { resource: ResourceKind },
    /// A journal entry of a resource was dealt with in a push: sent, settled, or left for
    /// later (`done` says whether its change is upstream now).
    Pushed { resource: ResourceKind, done: bool },
}

/// Receives progress; called on the engine's tasks, so it must be quick.
pub type Observer = Arc<dyn Fn(Progress) + Send + Sync>;
