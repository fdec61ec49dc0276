//! The error of one audio download.

use std::fmt;

use bcfy_proto::{ErrorCategory, RetryHint};
use http::StatusCode;

/// Why a call's audio could not be had, as a stable enum for callers to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AudioErrorKind {
    /// The call's fields cannot make a safe CDN URL (hostile or missing path parts). Final.
    InvalidUrl,
    /// The CDN answered 404 or 410. Final.
    NotFound,
    /// Another non-success status; retried when it is 5xx, 408 or 429.
    Status,
    /// The body ended before `Content-Length` bytes (a reset or a cut connection). Retried.
    Truncated,
    /// The CDN answered with an empty body. Retried.
    Empty,
    /// The body exceeds `max_bytes`. Final.
    TooLarge,
    /// Connecting, TLS, a timeout or reading the body failed. Retried unless the transport
    /// says otherwise.
    Transport,
    /// The attempt exceeded the consumer's per-attempt deadline. Retried.
    Timeout,
    /// The output channel's receiver was dropped (`run` only).
    OutputClosed,
}

impl AudioErrorKind {
    /// A short, stable, snake_case name (for logs and metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidUrl => "invalid_url",
            Self::NotFound => "not_found",
            Self::Status => "status",
            Self::Truncated => "truncated",
            Self::Empty => "empty",
            Self::TooLarge => "too_large",
            Self::Transport => "transport",
            Self::Timeout => "timeout",
            Self::OutputClosed => "output_closed",
        }
    }
}

impl fmt::Display for AudioErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An audio download failure (`AudioDownloadError` of the spec's taxonomy).
///
/// The message holds only kinds, status codes, byte counts and the transport's own sanitized
/// text: never a cookie or token.
#[derive(Debug, thiserror::Error)]
#[error("audio download {kind}: {message}")]
pub struct AudioError {
    kind: AudioErrorKind,
    message: String,
    status: Option<StatusCode>,
    hint: RetryHint,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl AudioError {
    pub(crate) fn new(kind: AudioErrorKind, message: impl Into<String>, hint: RetryHint) -> Self {
        Self {
            kind,
            message: message.into(),
            status: None,
            hint,
            source: None,
        }
    }

    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> AudioErrorKind {
        self.kind
    }

    /// The HTTP status, when the CDN answered one.
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }

    /// Whether (and when) the same download may succeed if tried again.
    pub fn retry_hint(&self) -> RetryHint {
        self.hint
    }

    /// Always [`ErrorCategory::AudioDownload`].
    pub fn category(&self) -> ErrorCategory {
        ErrorCategory::AudioDownload
    }
}
