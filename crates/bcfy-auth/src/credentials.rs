//! Credentials, the token store, and where a manager gets its session from.

use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use bcfy_proto::SessionToken;
use secrecy::SecretString;

/// A Broadcastify username and password.
///
/// The password is a [`SecretString`]: it is zeroized on drop, and `Debug` prints only the
/// username.
#[derive(Clone)]
pub struct Credentials {
    /// The account's username.
    pub username: String,
    /// The account's password.
    pub password: SecretString,
}

impl Credentials {
    /// Credentials from a username and a password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: SecretString::from(password.into()),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// Where an [`AuthManager`](crate::AuthManager) gets its session from.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum CredentialSource {
    /// Nothing yet: [`ensure_session`](crate::AuthManager::ensure_session) fails with
    /// [`AuthErrorKind::NoCredentials`](crate::AuthErrorKind::NoCredentials) until
    /// [`set_credentials`](crate::AuthManager::set_credentials) (or a token in the
    /// [`CredentialStore`]).
    None,
    /// Log in with these credentials whenever a session is needed.
    Credentials(Credentials),
    /// Use this existing `bcfyuser1` token; when it dies there is no way to log in again
    /// ([`AuthErrorKind::LoggedOut`](crate::AuthErrorKind::LoggedOut)).
    Token(SessionToken),
    /// Start with this token and log in with the credentials once it dies.
    Both {
        /// Used when the token is gone.
        credentials: Credentials,
        /// Used first.
        token: SessionToken,
    },
}

impl CredentialSource {
    pub(crate) fn into_parts(self) -> (Option<Credentials>, Option<SessionToken>) {
        match self {
            Self::None => (None, None),
            Self::Credentials(c) => (Some(c), None),
            Self::Token(t) => (None, Some(t)),
            Self::Both { credentials, token } => (Some(credentials), Some(token)),
        }
    }
}

impl From<Credentials> for CredentialSource {
    fn from(c: Credentials) -> Self {
        Self::Credentials(c)
    }
}

impl From<SessionToken> for CredentialSource {
    fn from(t: SessionToken) -> Self {
        Self::Token(t)
    }
}

/// Where session tokens are kept between logins (and, for a persistent implementation, between
/// process restarts).
///
/// The [`AuthManager`](crate::AuthManager) reads the store when it has no live session (before
/// logging in), writes every new token to it, and clears it when the session ends. Implement it
/// to plug in a secret manager; errors are the implementation's to log (a failing store degrades
/// to "no stored token", it never blocks a login).
#[async_trait]
pub trait CredentialStore: Send + Sync + fmt::Debug + 'static {
    /// The stored token, if any.
    async fn get(&self) -> Option<SessionToken>;
    /// Replace the stored token (`None` clears it).
    async fn put(&self, token: Option<SessionToken>);
}

/// The default [`CredentialStore`]: one token in memory, gone with the process.
#[derive(Debug, Default)]
pub struct MemoryCredentialStore {
    token: Mutex<Option<SessionToken>>,
}

impl MemoryCredentialStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that already holds `token`.
    pub fn with_token(token: SessionToken) -> Self {
        Self {
            token: Mutex::new(Some(token)),
        }
    }
}

#[async_trait]
impl CredentialStore for MemoryCredentialStore {
    async fn get(&self) -> Option<SessionToken> {
        self.token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    async fn put(&self, token: Option<SessionToken>) {
        *self
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = token;
    }
}
