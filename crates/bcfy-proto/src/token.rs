//! The Broadcastify session token.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use secrecy::{ExposeSecret, SecretString};

struct Inner {
    value: SecretString,
    issued_at: SystemTime,
    expires_at: Option<SystemTime>,
}

/// The value of the `bcfyuser1` cookie, with when it was issued and (if known) when it expires.
///
/// `Debug` and `Display` print `SessionToken([redacted])`; only [`SessionToken::expose_secret`]
/// reveals the value. Cloning is cheap (`Arc`). Two tokens are equal when their values are.
///
/// ```
/// let t = bcfy_proto::SessionToken::new("abc123");
/// assert_eq!(t.expose_secret(), "abc123");
/// assert_eq!(format!("{t:?} {t}"), "SessionToken([redacted]) SessionToken([redacted])");
/// ```
#[derive(Clone)]
pub struct SessionToken(Arc<Inner>);

impl SessionToken {
    /// A token issued now, with no known expiry.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Arc::new(Inner {
            value: SecretString::from(value.into()),
            issued_at: SystemTime::now(),
            expires_at: None,
        }))
    }

    /// The same token with a known expiry.
    #[must_use]
    pub fn with_expiry(self, expires_at: SystemTime) -> Self {
        Self(Arc::new(Inner {
            value: self.0.value.clone(),
            issued_at: self.0.issued_at,
            expires_at: Some(expires_at),
        }))
    }

    /// The same token with another issue time (e.g. when restored from a store).
    #[must_use]
    pub fn with_issued_at(self, issued_at: SystemTime) -> Self {
        Self(Arc::new(Inner {
            value: self.0.value.clone(),
            issued_at,
            expires_at: self.0.expires_at,
        }))
    }

    /// The cookie value. Never log it.
    pub fn expose_secret(&self) -> &str {
        self.0.value.expose_secret()
    }

    /// When the token was obtained.
    pub fn issued_at(&self) -> SystemTime {
        self.0.issued_at
    }

    /// When the token expires, if known.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.0.expires_at
    }

    /// Whether the token is known to have expired at `now`.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.0.expires_at.is_some_and(|e| e <= now)
    }
}

impl PartialEq for SessionToken {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.expose_secret() == other.expose_secret()
    }
}

impl Eq for SessionToken {}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken([redacted])")
    }
}

impl fmt::Display for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken([redacted])")
    }
}
