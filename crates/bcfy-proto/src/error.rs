//! The error taxonomy shared by every crate, and retry hints.

use std::time::Duration;

/// The spec's error taxonomy; every crate's error maps onto one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCategory {
    /// Login, logout or session problems.
    Authentication,
    /// Network, TLS, HTTP status or rate limiting.
    Transport,
    /// A body that is not what the service is known to send.
    ResponseParsing,
    /// The archive cache failed.
    Cache,
    /// The live producer's session failed.
    LiveSession,
    /// A call's audio could not be downloaded.
    AudioDownload,
    /// The transcription provider failed.
    Transcription,
}

impl ErrorCategory {
    /// A stable snake_case name, for metrics and log fields.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Authentication => "authentication",
            Self::Transport => "transport",
            Self::ResponseParsing => "response_parsing",
            Self::Cache => "cache",
            Self::LiveSession => "live_session",
            Self::AudioDownload => "audio_download",
            Self::Transcription => "transcription",
        }
    }
}

impl std::fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryHint {
    /// Retrying the same request cannot succeed.
    Never,
    /// The server said when to come back (e.g. `Retry-After`).
    After(Duration),
    /// Transient: retry with exponential backoff.
    Backoff,
}

impl RetryHint {
    /// Whether a retry may succeed.
    pub const fn is_retryable(self) -> bool {
        !matches!(self, Self::Never)
    }
}
