//! The umbrella's error: every sub-crate error mapped onto the spec's taxonomy.

use std::fmt;
use std::time::Duration;

use crate::config::ConfigLoadError;
use crate::proto::{ErrorCategory, RetryHint};

/// What went wrong, at the granularity callers branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Login, logout, or no usable session.
    Authentication,
    /// Network, TLS, HTTP status or rate limiting.
    Transport,
    /// A response that is not what the service is known to send.
    ResponseParsing,
    /// The archive cache failed.
    Cache,
    /// A live producer gave up.
    LiveSession,
    /// A call's audio could not be downloaded.
    AudioDownload,
    /// The transcription provider failed.
    Transcription,
    /// The configuration is invalid (the message names the key).
    Config,
    /// The client was used out of order (e.g. `start` twice, a producer after shutdown).
    InvalidState,
    /// A graceful shutdown did not finish within its timeout.
    ShutdownTimeout,
}

impl ErrorKind {
    /// The spec's category for this kind; `None` for the umbrella's own kinds (configuration,
    /// misuse, shutdown timeout), which the Python spec has no class for.
    pub const fn category(self) -> Option<ErrorCategory> {
        match self {
            Self::Authentication => Some(ErrorCategory::Authentication),
            Self::Transport => Some(ErrorCategory::Transport),
            Self::ResponseParsing => Some(ErrorCategory::ResponseParsing),
            Self::Cache => Some(ErrorCategory::Cache),
            Self::LiveSession => Some(ErrorCategory::LiveSession),
            Self::AudioDownload => Some(ErrorCategory::AudioDownload),
            Self::Transcription => Some(ErrorCategory::Transcription),
            Self::Config | Self::InvalidState | Self::ShutdownTimeout => None,
        }
    }

    /// The category's kind.
    pub const fn from_category(category: ErrorCategory) -> Self {
        match category {
            ErrorCategory::Authentication => Self::Authentication,
            ErrorCategory::ResponseParsing => Self::ResponseParsing,
            ErrorCategory::Cache => Self::Cache,
            ErrorCategory::LiveSession => Self::LiveSession,
            ErrorCategory::AudioDownload => Self::AudioDownload,
            ErrorCategory::Transcription => Self::Transcription,
            // Transport, and any future category of the non-exhaustive enum: transport is the
            // most generic kind.
            _ => Self::Transport,
        }
    }

    /// A stable snake_case name, for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Authentication => "authentication",
            Self::Transport => "transport",
            Self::ResponseParsing => "response_parsing",
            Self::Cache => "cache",
            Self::LiveSession => "live_session",
            Self::AudioDownload => "audio_download",
            Self::Transcription => "transcription",
            Self::Config => "config",
            Self::InvalidState => "invalid_state",
            Self::ShutdownTimeout => "shutdown_timeout",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of every fallible [`crate::Client`] method.
///
/// It carries the kind, a retry hint and the sub-crate error as its `source()`. Like every
/// error of bcfy, its `Display` and `Debug` never contain a password, token or API key (the
/// sub-crate errors guarantee it for themselves).
pub struct Error {
    kind: ErrorKind,
    retry: RetryHint,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` with its own message.
    pub(crate) fn new(kind: ErrorKind, retry: RetryHint, message: impl Into<String>) -> Self {
        Self {
            kind,
            retry,
            message: message.into(),
            source: None,
        }
    }

    /// Wraps a sub-crate error.
    pub(crate) fn wrap<E>(kind: ErrorKind, retry: RetryHint, source: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Self {
            kind,
            retry,
            message: source.to_string(),
            source: Some(Box::new(source)),
        }
    }

    pub(crate) fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidState, RetryHint::Never, message)
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The spec's category (`None` for configuration, misuse and shutdown timeouts).
    pub fn category(&self) -> Option<ErrorCategory> {
        self.kind.category()
    }

    /// Whether and when retrying may succeed.
    pub fn retry_hint(&self) -> RetryHint {
        self.retry
    }

    /// The sub-crate error, to downcast (`AuthError`, `TransportError`, ...).
    pub fn into_source(self) -> Option<Box<dyn std::error::Error + Send + Sync + 'static>> {
        self.source
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error: {}", self.kind, self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("retry", &self.retry)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<ConfigLoadError> for Error {
    fn from(e: ConfigLoadError) -> Self {
        Self::wrap(ErrorKind::Config, RetryHint::Never, e)
    }
}

impl From<crate::proto::ConfigError> for Error {
    fn from(e: crate::proto::ConfigError) -> Self {
        Self::from(ConfigLoadError::new(e.key, e.message))
    }
}

/// Shorthand for a shutdown that ran out of time.
pub(crate) fn shutdown_timeout(timeout: Duration) -> Error {
    Error::new(
        ErrorKind::ShutdownTimeout,
        RetryHint::Never,
        format!("the pipeline did not drain within {timeout:?}; remaining tasks were aborted"),
    )
}

/// `From` for sub-crate errors that know their category and retry hint.
macro_rules! from_categorized {
    ($($(#[$meta:meta])* $ty:ty),* $(,)?) => {$(
        $(#[$meta])*
        impl From<$ty> for Error {
            fn from(e: $ty) -> Self {
                let kind = ErrorKind::from_category(e.category());
                let retry = e.retry_hint();
                Self::wrap(kind, retry, e)
            }
        }
    )*};
}

from_categorized!(
    crate::auth::AuthError,
    crate::archive::ArchiveError,
    crate::live::LiveError,
    crate::audio::AudioError,
    crate::proto::ParseError,
    #[cfg(feature = "transcribe")]
    crate::transcribe::TranscriptionError,
);

impl From<crate::transport::TransportError> for Error {
    fn from(e: crate::transport::TransportError) -> Self {
        let retry = e.retry_hint();
        Self::wrap(ErrorKind::Transport, retry, e)
    }
}
