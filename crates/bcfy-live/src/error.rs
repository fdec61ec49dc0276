//! The error `LiveCallProducer::run` returns.

use std::fmt;

use bcfy_proto::{ErrorCategory, RetryHint};

/// What went wrong with a live session, as a stable enum for callers to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LiveErrorKind {
    /// `max_retry_attempts` consecutive polls failed; the last failure is the source.
    RetriesExhausted,
    /// The session cannot be had and retrying will not help (bad credentials, no credentials).
    Authentication,
    /// The queue's receiver was dropped: nobody takes the calls any more.
    QueueClosed,
    /// `run` was called while another `run` of the same producer was still active.
    AlreadyRunning,
}

impl fmt::Display for LiveErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RetriesExhausted => "retry budget exhausted",
            Self::Authentication => "authentication failed",
            Self::QueueClosed => "queue closed",
            Self::AlreadyRunning => "producer already running",
        })
    }
}

/// The live-session error (`LiveSessionError` of the spec's taxonomy).
///
/// Its message is built from sanitized parts only (error kinds, status codes, capped snippets
/// that the lower crates already scrubbed of cookies and tokens).
#[derive(Debug, thiserror::Error)]
#[error("live session: {kind}{}: {message}", attempts_suffix(*.attempts))]
pub struct LiveError {
    kind: LiveErrorKind,
    message: String,
    attempts: u32,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

fn attempts_suffix(attempts: u32) -> String {
    if attempts == 0 {
        String::new()
    } else {
        format!(" after {attempts} attempts")
    }
}

impl LiveError {
    pub(crate) fn new(kind: LiveErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            attempts: 0,
            source: None,
        }
    }

    pub(crate) fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    pub(crate) fn with_boxed_source(
        mut self,
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    ) -> Self {
        self.source = Some(source);
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> LiveErrorKind {
        self.kind
    }

    /// How many consecutive failed attempts preceded this error (0 when not applicable).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The spec's taxonomy bucket: `Authentication` for session failures that retrying cannot
    /// fix, `LiveSession` for everything else.
    pub fn category(&self) -> ErrorCategory {
        match self.kind {
            LiveErrorKind::Authentication => ErrorCategory::Authentication,
            _ => ErrorCategory::LiveSession,
        }
    }

    /// Whether restarting the producer may help: after an exhausted budget, later (back off);
    /// a closed queue, a second `run` or bad credentials will not fix themselves.
    pub fn retry_hint(&self) -> RetryHint {
        match self.kind {
            LiveErrorKind::RetriesExhausted => RetryHint::Backoff,
            _ => RetryHint::Never,
        }
    }
}
