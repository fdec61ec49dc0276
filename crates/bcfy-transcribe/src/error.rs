//! The crate's error type.

use std::fmt;
use std::time::Duration;

use bcfy_proto::{ErrorCategory, RetryHint};
use http::StatusCode;

/// Longest message or payload snippet an error keeps, in bytes.
pub(crate) const SNIPPET_MAX: usize = 256;

/// What went wrong with a transcription, without the details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TranscriptionErrorKind {
    /// The provider answered with a non-success HTTP status.
    Http(StatusCode),
    /// The provider answered, but the transcript text was empty or only whitespace.
    EmptyText,
    /// The provider answered without a `text` field (or with `null`).
    MissingText,
    /// The request did not get an answer: connect failure, reset, timeout, truncated body.
    Network,
    /// The answer could not be understood: not JSON where JSON was due, a non-string `text`,
    /// an error object with a success status, a body over the size cap.
    InvalidResponse,
    /// The provider or pipeline is misconfigured (bad endpoint URL, missing API key, TLS setup).
    Config,
    /// The call's audio is larger than the pipeline accepts for one upload.
    TooLarge,
    /// The call has no audio bytes to upload.
    EmptyAudio,
}

impl TranscriptionErrorKind {
    /// A short stable name for logs and metrics labels (`http`, `empty_text`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http(_) => "http",
            Self::EmptyText => "empty_text",
            Self::MissingText => "missing_text",
            Self::Network => "network",
            Self::InvalidResponse => "invalid_response",
            Self::Config => "config",
            Self::TooLarge => "too_large",
            Self::EmptyAudio => "empty_audio",
        }
    }
}

impl fmt::Display for TranscriptionErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http(status) => write!(f, "http {}", status.as_u16()),
            other => f.write_str(other.as_str()),
        }
    }
}

/// A failed transcription.
///
/// `Display` is `"{kind}: {message}"`; the message is sanitized and capped at 256 bytes and never
/// contains the API key (the provider scrubs it, and `Bearer ...` values are redacted by
/// [`bcfy_proto::snippet`]). [`retry_hint`](Self::retry_hint) says whether trying again can help:
/// network errors, 429 and 5xx back off (or wait for the server's `Retry-After`); everything else
/// is final.
#[derive(thiserror::Error)]
#[error("{kind}: {message}")]
pub struct TranscriptionError {
    kind: TranscriptionErrorKind,
    message: String,
    retry_after: Option<Duration>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl fmt::Debug for TranscriptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The source is summarized by presence only: third-party errors may carry request
        // details this crate does not control.
        f.debug_struct("TranscriptionError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("retry_after", &self.retry_after)
            .field("has_source", &self.source.is_some())
            .finish()
    }
}

impl TranscriptionError {
    /// A new error of `kind`; `message` is sanitized and capped.
    pub fn new(kind: TranscriptionErrorKind, message: impl AsRef<str>) -> Self {
        Self {
            kind,
            message: bcfy_proto::snippet(message.as_ref().as_bytes(), SNIPPET_MAX),
            retry_after: None,
            source: None,
        }
    }

    /// An HTTP error for `status`, with a snippet of the response body.
    pub fn http(status: StatusCode, body: &[u8]) -> Self {
        let reason = status.canonical_reason().unwrap_or("unknown status");
        let body = bcfy_proto::snippet(body, SNIPPET_MAX);
        let message = if body.is_empty() {
            format!("provider answered {} {reason}", status.as_u16())
        } else {
            format!("provider answered {} {reason}: {body}", status.as_u16())
        };
        Self::new(TranscriptionErrorKind::Http(status), message)
    }

    /// Attaches the server's `Retry-After` delay (used by [`retry_hint`](Self::retry_hint)).
    #[must_use]
    pub fn with_retry_after(mut self, delay: Option<Duration>) -> Self {
        self.retry_after = delay;
        self
    }

    /// Attaches the underlying error.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> TranscriptionErrorKind {
        self.kind
    }

    /// The sanitized, length-capped message (no kind prefix).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status when the provider answered with one that was not a success.
    pub fn status(&self) -> Option<StatusCode> {
        match self.kind {
            TranscriptionErrorKind::Http(status) => Some(status),
            _ => None,
        }
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether and when trying the same request again may succeed.
    ///
    /// `Network`, `429` and `5xx` are retryable (after `Retry-After` when the server sent it,
    /// otherwise with backoff); other statuses (400, 401, 403, 404, 413, ...) and every content
    /// error (empty or missing text, an unreadable answer) are final: the same audio would get
    /// the same answer.
    pub fn retry_hint(&self) -> RetryHint {
        let retryable = match self.kind {
            TranscriptionErrorKind::Network => true,
            TranscriptionErrorKind::Http(status) => {
                status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
            }
            _ => false,
        };
        match (retryable, self.retry_after) {
            (false, _) => RetryHint::Never,
            (true, Some(delay)) => RetryHint::After(delay),
            (true, None) => RetryHint::Backoff,
        }
    }

    /// Where this error sits in the spec's taxonomy: always
    /// [`ErrorCategory::Transcription`].
    pub fn category(&self) -> ErrorCategory {
        ErrorCategory::Transcription
    }

    /// Replaces every occurrence of `secret` in the message by `[redacted]` (defence in depth for
    /// providers that echo credentials in error bodies).
    #[must_use]
    pub(crate) fn scrub(mut self, secret: Option<&str>) -> Self {
        if let Some(secret) = secret.filter(|s| s.len() >= 4)
            && self.message.contains(secret)
        {
            self.message = self.message.replace(secret, "[redacted]");
        }
        self
    }
}
