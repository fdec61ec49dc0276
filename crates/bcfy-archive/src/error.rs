//! The error type of bcfy-archive.

use std::fmt;
use std::sync::Arc;

use bcfy_auth::AuthError;
use bcfy_proto::{ErrorCategory, ParseError, RetryHint};
use bcfy_transport::TransportError;
use http::StatusCode;

/// What went wrong while fetching an archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ArchiveErrorKind {
    /// No session could be established ([`ArchiveError::auth_error`] says why).
    Authentication,
    /// The service still answered "logged out" after logging in again.
    LoggedOut,
    /// The HTTP exchange failed (connection, timeout, rate limit, body).
    Transport,
    /// The service answered an unexpected HTTP status.
    Status,
    /// The body is not an archive response (not JSON, no `calls`, an `error` answer).
    ResponseParsing,
    /// The fetch task ended without an answer (the runtime shut down).
    Cancelled,
}

impl ArchiveErrorKind {
    /// A short, stable, snake_case name (for logs and metrics labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authentication => "authentication",
            Self::LoggedOut => "logged_out",
            Self::Transport => "transport",
            Self::Status => "status",
            Self::ResponseParsing => "response_parsing",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for ArchiveErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug)]
enum Source {
    Auth(AuthError),
    Transport(Arc<TransportError>),
    Parse(Arc<ParseError>),
}

/// An archive fetch failure.
///
/// Cheap to clone (every caller waiting on one shared fetch receives it). Its `Display` and
/// `Debug` carry at most a sanitized, length-capped snippet of the body, never a token.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct ArchiveError {
    kind: ArchiveErrorKind,
    message: String,
    status: Option<StatusCode>,
    snippet: Option<String>,
    #[source]
    source: Option<Source>,
}

/// The longest body snippet an error keeps.
pub(crate) const SNIPPET_MAX: usize = 200;

impl ArchiveError {
    pub(crate) fn new(kind: ArchiveErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            status: None,
            snippet: None,
            source: None,
        }
    }

    pub(crate) fn auth(err: AuthError) -> Self {
        Self {
            kind: ArchiveErrorKind::Authentication,
            message: format!("no Broadcastify session: {err}"),
            status: err.status(),
            snippet: None,
            source: Some(Source::Auth(err)),
        }
    }

    pub(crate) fn transport(err: TransportError) -> Self {
        Self {
            kind: ArchiveErrorKind::Transport,
            message: format!("archive request failed: {err}"),
            status: err.status(),
            snippet: None,
            source: Some(Source::Transport(Arc::new(err))),
        }
    }

    pub(crate) fn status(status: StatusCode, body: &[u8]) -> Self {
        let snippet = bcfy_proto::snippet(body, SNIPPET_MAX);
        Self {
            kind: ArchiveErrorKind::Status,
            message: format!(
                "archive request answered HTTP status {}: {snippet}",
                status.as_u16()
            ),
            status: Some(status),
            snippet: Some(snippet),
            source: None,
        }
    }

    pub(crate) fn parse(err: ParseError) -> Self {
        let snippet = err.snippet().map(str::to_owned);
        Self {
            kind: ArchiveErrorKind::ResponseParsing,
            message: format!("archive response not understood: {err}"),
            status: None,
            snippet,
            source: Some(Source::Parse(Arc::new(err))),
        }
    }

    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ArchiveErrorKind {
        self.kind
    }

    /// The HTTP status involved, when there was one.
    pub fn http_status(&self) -> Option<StatusCode> {
        self.status
    }

    /// A sanitized, length-capped excerpt of the offending body.
    pub fn snippet(&self) -> Option<&str> {
        self.snippet.as_deref()
    }

    /// The authentication failure, for [`ArchiveErrorKind::Authentication`].
    pub fn auth_error(&self) -> Option<&AuthError> {
        match &self.source {
            Some(Source::Auth(e)) => Some(e),
            _ => None,
        }
    }

    /// The transport failure, for [`ArchiveErrorKind::Transport`].
    pub fn transport_error(&self) -> Option<&TransportError> {
        match &self.source {
            Some(Source::Transport(e)) => Some(e),
            _ => None,
        }
    }

    /// The parse failure, for [`ArchiveErrorKind::ResponseParsing`].
    pub fn parse_error(&self) -> Option<&ParseError> {
        match &self.source {
            Some(Source::Parse(e)) => Some(e),
            _ => None,
        }
    }

    /// The spec's error category.
    pub fn category(&self) -> ErrorCategory {
        match (&self.kind, &self.source) {
            (ArchiveErrorKind::Authentication, Some(Source::Auth(e))) => e.category(),
            (ArchiveErrorKind::Authentication | ArchiveErrorKind::LoggedOut, _) => {
                ErrorCategory::Authentication
            }
            (ArchiveErrorKind::ResponseParsing, _) => ErrorCategory::ResponseParsing,
            _ => ErrorCategory::Transport,
        }
    }

    /// Whether trying again could help, and when.
    pub fn retry_hint(&self) -> RetryHint {
        match (&self.kind, &self.source) {
            (_, Some(Source::Auth(e))) => e.retry_hint(),
            (_, Some(Source::Transport(e))) => e.retry_hint(),
            (ArchiveErrorKind::Status, _) => match self.status {
                Some(s) if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                    RetryHint::Backoff
                }
                _ => RetryHint::Never,
            },
            _ => RetryHint::Backoff,
        }
    }
}

impl std::error::Error for Source {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Auth(e) => e.source(),
            Self::Transport(e) => e.source(),
            Self::Parse(e) => e.source(),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auth(e) => e.fmt(f),
            Self::Transport(e) => e.fmt(f),
            Self::Parse(e) => e.fmt(f),
        }
    }
}
