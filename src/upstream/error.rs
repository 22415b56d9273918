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
    /// Never sent: restsync was stopping (no request starts after the stop signal).
    #[error("not sent: restsync is stopping")]
    NotStarted,
    /// A success status with a body that is not what the API documents.
    #[error("{upstream} sent a malformed answer: {message}")]
    Malformed { upstream: &'static str, message: String },
}

/// What a write that failed may have done upstream, as far as the answer tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteEffect {
    /// Upstream refused it or never got it.
    None,
    /// Answered (a 5xx): finished, perhaps after taking effect.
    MayHaveHappened,
    /// Unanswered, or answered unreadably: it may still be in progress upstream for up to
    /// the request timeout.
    MayStillBeInProgress,
}

impl UpstreamError {
    /// Worth trying again later: timeouts, connection errors, 5xx, 429, garbled bodies.
    pub fn is_retryable(&self) -> bool {
        match self {
            UpstreamError::Http { status, .. } => *status == 429 || *status == 408 || *status >= 500,
            // Plusofon's bodies carry their own code; "User not found" comes as code 500, so
            // only a rate-limit code is taken as passing.
            UpstreamError::Api { code, .. } => *code == 429 || *code == 503,
            UpstreamError::Transport { .. } | UpstreamError::Malformed { .. } | UpstreamError::NotStarted => {
                true
            }
        }
    }

    /// What a failed write may have done upstream.
    pub fn write_effect(&self) -> WriteEffect {
        match self {
            // A timeout or a connection dropped after sending: upstream may still be
            // working on it.
            UpstreamError::Transport { maybe_sent: true, .. } => WriteEffect::MayStillBeInProgress,
            UpstreamError::Transport { .. } | UpstreamError::NotStarted => WriteEffect::None,
            // A success status whose body we could not read (a proxy's page, a truncated
            // body): it may or may not have been done. Treated like an unanswered request,
            // so a lagging list has the same time to show the record before a re-send.
            UpstreamError::Malformed { .. } => WriteEffect::MayStillBeInProgress,
            // A gateway's 502/503/504 (nginx after its own timeout, say) ends only the
            // gateway's wait: the backend behind it may still be working on the request.
            UpstreamError::Http {
                status: 502..=504, ..
            } => WriteEffect::MayStillBeInProgress,
            // An answered 5xx: the request is over, but it may have done its work first.
            UpstreamError::Http { status, .. } if *status >= 500 => WriteEffect::MayHaveHappened,
            UpstreamError::Http { .. } | UpstreamError::Api { .. } => WriteEffect::None,
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
