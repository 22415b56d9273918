//! Typed upstream errors carrying the HTTP status and the upstream's own message.

use std::time::Duration;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum UpstreamError {
    /// A non-success HTTP status.
    #[error("{upstream} answered HTTP {status}: {message}")]
    Http {
        upstream: &'static str,
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// An error body (`{"message", "code"}`) that arrived with a success status.
    #[error("{upstream} answered with an error (code {code}): {message}")]
    Api {
        upstream: &'static str,
        code: i64,
        message: String,
    },
    /// No answer. `maybe_sent` is true when the request may have reached upstream
    /// (a timeout, a connection dropped after sending), so a write may have taken effect.
    #[error("{upstream}: {message}")]
    Transport {
        upstream: &'static str,
        message: String,
        maybe_sent: bool,
    },
    /// A success status with a body that is not what the API documents.
    #[error("{upstream} sent a malformed answer: {message}")]
    Malformed { upstream: &'static str, message: String },
}

impl UpstreamError {
    /// Worth trying again later: timeouts, connection errors, 5xx, 429, garbled bodies.
    pub fn is_retryable(&self) -> bool {
        match self {
            UpstreamError::Http { status, .. } => *status == 429 || *status == 408 || *status >= 500,
            // Plusofon's bodies carry their own code; "User not found" comes as code 500, so
            // only a rate-limit code is taken as passing.
            UpstreamError::Api { code, .. } => *code == 429,
            UpstreamError::Transport { .. } | UpstreamError::Malformed { .. } => true,
        }
    }

    /// The request may have taken effect upstream without us learning its result.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            UpstreamError::Transport { maybe_sent, .. } => *maybe_sent,
            UpstreamError::Malformed { .. } => true,
            UpstreamError::Http { status, .. } => *status == 502 || *status == 504,
            UpstreamError::Api { .. } => false,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            UpstreamError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            UpstreamError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, UpstreamError::Http { status: 404, .. })
            || matches!(self, UpstreamError::Api { code: 404, .. })
    }
}
