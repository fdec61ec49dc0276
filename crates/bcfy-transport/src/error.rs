//! [`TransportError`]: what went wrong, whether to retry, and never a secret.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use bcfy_proto::RetryHint;
use http::StatusCode;

/// A boxed error, as the hyper / tower stack hands them out.
pub(crate) type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// The longest message a [`TransportError`] keeps (characters).
const MAX_MESSAGE_CHARS: usize = 512;

/// What kind of failure a [`TransportError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The TCP connection could not be opened (refused, DNS, unreachable), or it broke before
    /// the response headers arrived.
    Connect,
    /// A deadline passed: the connect timeout, the request timeout (no response headers in
    /// time), the body idle timeout (no body bytes for too long) or an unanswered HTTP/2
    /// keep-alive ping.
    Timeout,
    /// The server answered with a status the caller treats as a failure
    /// (see [`Response::error_for_status`](crate::Response::error_for_status)).
    Status,
    /// The TLS handshake failed (certificate, protocol, ALPN).
    Tls,
    /// The response body broke off (connection reset, truncated body, stream error).
    Body,
    /// The response body could not be decompressed (corrupt gzip, deflate or br data).
    Decode,
    /// The server asked us to slow down (429, or 503 with `Retry-After`): the transport's gate
    /// is closed and [`TransportError::retry_hint`] says for how long.
    RateLimited,
    /// The request itself is wrong (bad URL scheme, bad header, a header the transport owns).
    InvalidRequest,
    /// The body is larger than the allowed maximum.
    TooLarge,
    /// The transport could not be built from its configuration.
    Config,
}

impl TransportErrorKind {
    /// A stable snake_case name, for metrics and log fields.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Status => "status",
            Self::Tls => "tls",
            Self::Body => "body",
            Self::Decode => "decode",
            Self::RateLimited => "rate_limited",
            Self::InvalidRequest => "invalid_request",
            Self::TooLarge => "too_large",
            Self::Config => "config",
        }
    }

    /// The retry hint an error of this kind carries unless told otherwise.
    const fn default_retry_hint(self) -> RetryHint {
        match self {
            Self::Connect | Self::Timeout | Self::Body | Self::Decode => RetryHint::Backoff,
            Self::RateLimited => RetryHint::After(Duration::from_secs(1)),
            Self::Status | Self::Tls | Self::InvalidRequest | Self::TooLarge | Self::Config => {
                RetryHint::Never
            }
        }
    }
}

impl fmt::Display for TransportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error of the transport: a [`kind`](Self::kind), a [`retry hint`](Self::retry_hint), the
/// HTTP status when there was one, a short sanitized message and the underlying error.
///
/// The message is built by this crate and passed through [`bcfy_proto::snippet`], so it is
/// length-capped and any `bcfyuser1=…` cookie value or bearer token is replaced by
/// `[redacted]`. The transport never puts request headers or cookies into an error; the
/// `Debug` output shows the source only through the same sanitizer.
#[derive(thiserror::Error)]
#[error("{kind} error: {message}")]
pub struct TransportError {
    kind: TransportErrorKind,
    message: String,
    status: Option<StatusCode>,
    retry_hint: RetryHint,
    #[source]
    source: Option<BoxError>,
}

impl TransportError {
    /// A new error of `kind`; `message` is sanitized and capped, the retry hint is the kind's
    /// default (back off for network failures, never for invalid requests).
    pub fn new(kind: TransportErrorKind, message: impl AsRef<str>) -> Self {
        Self {
            kind,
            message: sanitize(message.as_ref()),
            status: None,
            retry_hint: kind.default_retry_hint(),
            source: None,
        }
    }

    /// A [`TransportErrorKind::RateLimited`] error that says to come back after `after`.
    pub fn rate_limited(status: StatusCode, after: Duration) -> Self {
        Self::new(
            TransportErrorKind::RateLimited,
            format!(
                "server answered {status}; requests paused for {:.3} s",
                after.as_secs_f64()
            ),
        )
        .with_status(status)
        .with_retry_hint(RetryHint::After(after))
    }

    /// Attaches the underlying error (kept as [`std::error::Error::source`]).
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Attaches the HTTP status the error is about.
    #[must_use]
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// Replaces the retry hint.
    #[must_use]
    pub fn with_retry_hint(mut self, hint: RetryHint) -> Self {
        self.retry_hint = hint;
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> TransportErrorKind {
        self.kind
    }

    /// Whether and when retrying may succeed.
    pub fn retry_hint(&self) -> RetryHint {
        self.retry_hint
    }

    /// The HTTP status this error is about, if any.
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }

    /// The sanitized message (without the kind prefix of `Display`).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = self.source.as_ref().map(|s| sanitize(&s.to_string()));
        f.debug_struct("TransportError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("status", &self.status)
            .field("retry_hint", &self.retry_hint)
            .field("source", &source)
            .finish()
    }
}

/// Sanitizes and caps a message destined for an error or a log.
pub(crate) fn sanitize(message: &str) -> String {
    bcfy_proto::snippet(message.as_bytes(), MAX_MESSAGE_CHARS)
}

/// Classifies an error of the hyper-util client (raised before the response headers).
pub(crate) fn from_client_error(err: hyper_util::client::legacy::Error) -> TransportError {
    let detail = chain_text(&err);
    let kind = if chain_has_tls(&err) {
        TransportErrorKind::Tls
    } else if (err.is_connect() && chain_has_timeout(&err)) || chain_has_hyper_timeout(&err) {
        TransportErrorKind::Timeout
    } else if is_user_error(&err) {
        TransportErrorKind::InvalidRequest
    } else {
        TransportErrorKind::Connect
    };
    let context = match kind {
        TransportErrorKind::Tls => "TLS handshake failed",
        TransportErrorKind::Timeout if err.is_connect() => "connect timed out",
        TransportErrorKind::Timeout => "connection timed out (keep-alive ping unanswered)",
        TransportErrorKind::InvalidRequest => "request rejected by the HTTP client",
        _ if err.is_connect() => "could not connect",
        _ => "connection failed before the response headers",
    };
    TransportError::new(kind, format!("{context}: {detail}")).with_source(err)
}

/// Classifies an error raised while reading a response body from hyper.
pub(crate) fn from_body_error(err: hyper::Error) -> TransportError {
    let detail = chain_text(&err);
    // hyper's only timeouts on an open body are the HTTP/2 keep-alive ones.
    let kind = if err.is_timeout() {
        TransportErrorKind::Timeout
    } else {
        TransportErrorKind::Body
    };
    TransportError::new(kind, format!("response body failed: {detail}")).with_source(err)
}

/// Classifies an error out of the decompression layer: errors of the body below it are
/// already [`TransportError`]s; an `io::Error` is the decoder's.
pub(crate) fn from_decoded_body_error(err: BoxError) -> TransportError {
    match err.downcast::<TransportError>() {
        Ok(e) => *e,
        Err(err) => match err.downcast::<std::io::Error>() {
            Ok(io) => TransportError::new(
                TransportErrorKind::Decode,
                format!("could not decompress the response body: {io}"),
            )
            .with_source(io),
            Err(other) => {
                let detail = chain_text(other.as_ref());
                TransportError::new(
                    TransportErrorKind::Body,
                    format!("response body failed: {detail}"),
                )
                .with_source(other)
            }
        },
    }
}

/// The error and its sources joined by ": ", for a message (sanitized by the caller).
fn chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    let mut depth = 0;
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
        depth += 1;
        if depth > 8 {
            break;
        }
    }
    out
}

/// Walks the chain, looking into `io::Error` payloads too (their `source()` skips them).
fn chain_any(
    err: &(dyn StdError + 'static),
    pred: &dyn Fn(&(dyn StdError + 'static)) -> bool,
) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    let mut depth = 0;
    while let Some(e) = cur {
        if pred(e) {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && (pred(inner) || chain_any(inner, pred))
        {
            return true;
        }
        cur = e.source();
        depth += 1;
        if depth > 8 {
            break;
        }
    }
    false
}

fn chain_has_tls(err: &(dyn StdError + 'static)) -> bool {
    chain_any(err, &|e| e.is::<rustls::Error>())
}

fn chain_has_timeout(err: &(dyn StdError + 'static)) -> bool {
    chain_any(err, &|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

fn chain_has_hyper_timeout(err: &(dyn StdError + 'static)) -> bool {
    chain_any(err, &|e| {
        e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
    })
}

fn is_user_error(err: &(dyn StdError + 'static)) -> bool {
    chain_any(err, &|e| {
        e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_user)
    })
}
