//! Broadcastify login, logout and single-flight session management.
//!
//! Broadcastify has no API keys for the calls pages: a session is the `bcfyuser1` cookie that
//! the login form sets. [`AuthClient`] performs the two raw exchanges (the login form POST,
//! inspected without following its redirect, and the logout link). [`AuthManager`] is what the
//! rest of bcfy uses: it hands out the live [`SessionToken`](bcfy_proto::SessionToken), logs
//! in when there is none (one login in flight however many callers need it, with exponential
//! backoff after failures), writes each new token to the transport's session slot so every
//! request carries the cookie, and keeps it in a pluggable [`CredentialStore`]. Other crates
//! call [`is_logged_out`] on their responses and [`AuthManager::invalidate`] the token they
//! sent when the session is gone.
//!
//! Secrets stay secret: the password is a [`secrecy::SecretString`], tokens print as
//! `[redacted]`, and no error, `Debug` output or tracing event contains either (a test captures
//! every trace event of a login / refresh / logout cycle to check).
//!
//! ```no_run
//! use std::sync::Arc;
//! use bcfy_auth::{AuthManager, CredentialSource, Credentials};
//! use bcfy_transport::{HttpTransport, SharedTransport};
//! use url::Url;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let transport: SharedTransport = Arc::new(HttpTransport::builder().build()?);
//! let site = Url::parse("https://www.broadcastify.com")?;
//! let auth = Arc::new(AuthManager::new(
//!     transport,
//!     site,
//!     CredentialSource::Credentials(Credentials::new("alice", "correct horse")),
//! ));
//! let token = auth.ensure_session().await?; // logs in once; later calls reuse the session
//! println!("logged in: {token:?}"); // prints SessionToken([redacted])
//! auth.logout().await?;
//! # Ok(())
//! # }
//! ```

mod client;
mod credentials;
mod error;
mod manager;

pub use client::{AuthClient, AuthResult, SESSION_COOKIE, is_logged_out};
pub use credentials::{CredentialSource, CredentialStore, Credentials, MemoryCredentialStore};
pub use error::{AuthError, AuthErrorKind};
pub use manager::{AuthManager, AuthStats, LoginBackoff};
