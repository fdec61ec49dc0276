//! The error type of bcfy-auth.

use std::fmt;
use std::sync::Arc;

use bcfy_proto::{ErrorCategory, RetryHint};
use bcfy_transport::TransportError;
use http::StatusCode;

/// What went wrong while establishing or ending a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthErrorKind {
    /// The login form answered with a redirect carrying `failed=1`: the username or password is
    /// wrong. Final until the credentials change; never retried automatically.
    InvalidCredentials,
    /// The login answered below 400 but set no `bcfyuser1` cookie.
    MissingCookie,
    /// The HTTP exchange failed (connection, timeout, rate limit, or a status of 400 or more).
    Transport,
    /// The session is gone and there are no credentials to log in again with.
    LoggedOut,
    /// Neither credentials nor a token were supplied.
    NoCredentials,
}

impl AuthErrorKind {
    /// A short, stable, snake_case name (for logs and metrics labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidCredentials => "invalid_credentials",
            Self::MissingCookie => "missing_cookie",
            Self::Transport => "transport",
            Self::LoggedOut => "logged_out",
            Self::NoCredentials => "no_credentials",
        }
    }
}

impl fmt::Display for AuthErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authentication failure.
///
/// Its `Display` and `Debug` never contain a password or a session token: messages are built
/// from fixed text, status codes and the transport's own (already sanitized) errors. The error is
/// cheap to clone, so every caller that waited on one shared login attempt receives the same
/// failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct AuthError {
    kind: AuthErrorKind,
    message: String,
    status: Option<StatusCode>,
    #[source]
    source: Option<Arc<TransportError>>,
}

impl AuthError {
    pub(crate) fn new(kind: AuthErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            status: None,
            source: None,
        }
    }

    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    pub(crate) fn transport(context: &str, err: TransportError) -> Self {
        let status = err.status();
        Self {
            kind: AuthErrorKind::Transport,
            message: format!("{context}: {err}"),
            status,
            source: Some(Arc::new(err)),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> AuthErrorKind {
        self.kind
    }

    /// The HTTP status involved, when there was one.
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }

    /// The underlying transport error, for [`AuthErrorKind::Transport`].
    pub fn transport_error(&self) -> Option<&TransportError> {
        self.source.as_deref()
    }

    /// Whether trying again could help, and when.
    ///
    /// Invalid credentials, a lost session without credentials, and missing credentials are
    /// final ([`RetryHint::Never`]); a transport failure carries the transport's hint; a missing
    /// cookie backs off.
    pub fn retry_hint(&self) -> RetryHint {
        match self.kind {
            AuthErrorKind::InvalidCredentials
            | AuthErrorKind::LoggedOut
            | AuthErrorKind::NoCredentials => RetryHint::Never,
            AuthErrorKind::MissingCookie => RetryHint::Backoff,
            AuthErrorKind::Transport => self
                .source
                .as_deref()
                .map_or(RetryHint::Backoff, TransportError::retry_hint),
        }
    }

    /// The spec's error category: [`ErrorCategory::Transport`] for HTTP failures,
    /// [`ErrorCategory::Authentication`] otherwise.
    pub fn category(&self) -> ErrorCategory {
        match self.kind {
            AuthErrorKind::Transport => ErrorCategory::Transport,
            _ => ErrorCategory::Authentication,
        }
    }
}
