//! Upstream HTTP clients: one `Client` per API, typed errors that know whether they are
//! worth retrying, and the page envelopes of both paginators.

mod api;
mod error;
mod http;
pub mod page;

pub use api::{CreateOutcome, DeleteOutcome, ResourceApi};
pub use error::{UpstreamError, WriteEffect};
pub use http::Client;
pub use page::Page;
