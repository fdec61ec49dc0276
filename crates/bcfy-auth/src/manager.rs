//! The session manager: one login in flight, backoff, invalidation.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use bcfy_proto::{RetryHint, SessionToken};
use bcfy_transport::SharedTransport;
use tokio::time::Instant;
use url::Url;

use crate::client::AuthClient;
use crate::credentials::{CredentialSource, CredentialStore, Credentials, MemoryCredentialStore};
use crate::error::{AuthError, AuthErrorKind};

/// Login pacing: after consecutive failures the next attempt waits `initial`, then doubling,
/// capped at `max`; and no two attempts (successful or not) are ever closer than
/// `min_interval`, so a session that keeps dying cannot turn into a login storm. Waits use
/// tokio time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginBackoff {
    /// The wait after the first failure.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
    /// The least time between the starts of two login attempts.
    pub min_interval: Duration,
}

impl Default for LoginBackoff {
    /// 5 s after the first failure, doubling up to 5 minutes; attempts at least 5 s apart
    /// (at most two logins in any 10 s, the service contract's burst limit).
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(5),
            max: Duration::from_mins(5),
            min_interval: Duration::from_secs(5),
        }
    }
}

impl LoginBackoff {
    /// The wait after `failures` consecutive failures (`failures >= 1`).
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << exp)
            .map_or(self.max, |d| d.min(self.max))
    }
}

/// Counters of an [`AuthManager`], for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthStats {
    /// Successful logins.
    pub logins: u64,
    /// Failed login attempts.
    pub login_failures: u64,
    /// Tokens declared dead through [`AuthManager::invalidate`].
    pub invalidations: u64,
    /// Tokens taken from the [`CredentialStore`] instead of logging in.
    pub store_reuses: u64,
}

#[derive(Default)]
struct Counters {
    logins: AtomicU64,
    login_failures: AtomicU64,
    invalidations: AtomicU64,
    store_reuses: AtomicU64,
}

/// The live session, read on every request (a plain mutex, never held across an await).
struct Session {
    current: Option<SessionToken>,
    /// The last token declared dead, so a store still holding it does not revive it.
    dead: Option<SessionToken>,
    /// Whether a session ever existed (a later login is a refresh).
    ever_live: bool,
}

/// The login state, held (async mutex) for the whole of one login attempt.
struct Flight {
    credentials: Option<Credentials>,
    failures: u32,
    next_attempt: Option<Instant>,
    last_attempt: Option<Instant>,
    /// Invalid credentials stay invalid until [`AuthManager::set_credentials`].
    final_error: Option<AuthError>,
    /// The last failed attempt (its number in `AuthManager::attempts`) and its error, handed to
    /// callers that waited for it.
    last_failure: Option<(u64, AuthError)>,
}

/// Keeps one Broadcastify session alive for everything that shares a transport.
///
/// [`ensure_session`](Self::ensure_session) returns the live token, logging in when there is
/// none. Concurrent callers share one login: while a login is in flight, every other caller
/// waits for it and receives its outcome, so a hundred pollers that all lose their session at
/// once make one login request. After a failed attempt the next one waits
/// ([`LoginBackoff`], doubling); invalid credentials are final until
/// [`set_credentials`](Self::set_credentials). Every new token is written to the transport's
/// [`SessionSlot`](bcfy_transport::SessionSlot) (so requests carry the cookie) and to the
/// [`CredentialStore`].
///
/// When a response shows the session is gone ([`is_logged_out`](crate::is_logged_out), or a
/// logged-out body), callers pass the token they sent to [`invalidate`](Self::invalidate); a
/// stale report about a token that was already replaced is ignored, so it cannot cause a
/// second login.
///
/// Tracing events (`login ok`, `login failed`, `session refreshed`, `session invalidated`,
/// `logged out`) carry kinds and counts, never the password or the token.
pub struct AuthManager {
    client: AuthClient,
    store: Arc<dyn CredentialStore>,
    backoff: LoginBackoff,
    session: Mutex<Session>,
    flight: tokio::sync::Mutex<Flight>,
    /// Completed login attempts, successful or not.
    attempts: AtomicU64,
    counters: Counters,
}

impl fmt::Debug for AuthManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthManager")
            .field("site", &self.client.site().as_str())
            .field("has_session", &self.current().is_some())
            .field("store", &self.store)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl AuthManager {
    /// A manager for the site at `site`, logging in through `transport`. A token in `source`
    /// becomes the live session at once (and is written to the transport's session slot).
    pub fn new(transport: SharedTransport, site: Url, source: CredentialSource) -> Self {
        let (credentials, token) = source.into_parts();
        if let Some(token) = &token {
            transport.session().set(Some(token.clone()));
        }
        Self {
            client: AuthClient::new(transport, site),
            store: Arc::new(MemoryCredentialStore::new()),
            backoff: LoginBackoff::default(),
            session: Mutex::new(Session {
                ever_live: token.is_some(),
                current: token,
                dead: None,
            }),
            flight: tokio::sync::Mutex::new(Flight {
                credentials,
                failures: 0,
                next_attempt: None,
                last_attempt: None,
                final_error: None,
                last_failure: None,
            }),
            attempts: AtomicU64::new(0),
            counters: Counters::default(),
        }
    }

    /// Use `store` instead of the in-memory default. A token it holds is used before logging
    /// in.
    #[must_use]
    pub fn with_store(mut self, store: Arc<dyn CredentialStore>) -> Self {
        self.store = store;
        self
    }

    /// Use `backoff` between failed login attempts instead of the default.
    #[must_use]
    pub fn with_backoff(mut self, backoff: LoginBackoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The raw login/logout client.
    pub fn client(&self) -> &AuthClient {
        &self.client
    }

    /// The site base URL.
    pub fn site(&self) -> &Url {
        self.client.site()
    }

    /// The transport whose session slot this manager writes.
    pub fn transport(&self) -> &SharedTransport {
        self.client.transport()
    }

    /// The live token, if there is one (no login, no store lookup).
    pub fn current(&self) -> Option<SessionToken> {
        self.live_token()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> AuthStats {
        AuthStats {
            logins: self.counters.logins.load(Ordering::Relaxed),
            login_failures: self.counters.login_failures.load(Ordering::Relaxed),
            invalidations: self.counters.invalidations.load(Ordering::Relaxed),
            store_reuses: self.counters.store_reuses.load(Ordering::Relaxed),
        }
    }

    /// The live session token, logging in if there is none (or it expired, or was
    /// invalidated). See the type's docs for single-flight and backoff.
    pub async fn ensure_session(&self) -> Result<SessionToken, AuthError> {
        if let Some(token) = self.live_token() {
            return Ok(token);
        }
        let seen = self.attempts.load(Ordering::Acquire);
        let mut flight = self.flight.lock().await;
        // Someone else may have logged in, or failed to, while we waited for the lock.
        if let Some(token) = self.live_token() {
            return Ok(token);
        }
        if let Some((attempt, err)) = &flight.last_failure
            && *attempt > seen
        {
            return Err(err.clone());
        }
        if let Some(err) = &flight.final_error {
            return Err(err.clone());
        }
        if let Some(token) = self.stored_token().await {
            return Ok(token);
        }
        let Some(credentials) = flight.credentials.clone() else {
            let ever_live = self.lock_session().ever_live;
            return Err(if ever_live {
                AuthError::new(
                    AuthErrorKind::LoggedOut,
                    "the session ended and there are no credentials to log in again",
                )
            } else {
                AuthError::new(
                    AuthErrorKind::NoCredentials,
                    "no credentials and no session token were supplied",
                )
            });
        };
        let earliest = [
            flight.next_attempt,
            flight.last_attempt.map(|t| t + self.backoff.min_interval),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(at) = earliest
            && at > Instant::now()
        {
            tracing::debug!(
                failures = flight.failures,
                wait_ms = (at - Instant::now()).as_millis() as u64,
                "waiting before the next login attempt"
            );
            tokio::time::sleep_until(at).await;
        }
        flight.last_attempt = Some(Instant::now());
        let result = self.client.login(&credentials).await;
        let attempt = self.attempts.fetch_add(1, Ordering::AcqRel) + 1;
        match result {
            Ok(auth) => {
                flight.failures = 0;
                flight.next_attempt = None;
                flight.last_failure = None;
                self.counters.logins.fetch_add(1, Ordering::Relaxed);
                let refreshed = self.adopt(auth.token.clone());
                self.store.put(Some(auth.token.clone())).await;
                if refreshed {
                    tracing::info!(expires = auth.expires_at.is_some(), "session refreshed");
                } else {
                    tracing::info!(expires = auth.expires_at.is_some(), "login ok");
                }
                Ok(auth.token)
            }
            Err(err) => {
                self.counters.login_failures.fetch_add(1, Ordering::Relaxed);
                if err.kind() == AuthErrorKind::InvalidCredentials {
                    flight.final_error = Some(err.clone());
                    tracing::warn!(
                        kind = %err.kind(),
                        "login failed; not retrying until the credentials change"
                    );
                } else {
                    flight.failures = flight.failures.saturating_add(1);
                    let mut wait = self.backoff.delay(flight.failures);
                    if let RetryHint::After(d) = err.retry_hint() {
                        wait = wait.max(d);
                    }
                    flight.next_attempt = Some(Instant::now() + wait);
                    tracing::warn!(
                        kind = %err.kind(),
                        status = err.status().map(|s| s.as_u16()),
                        failures = flight.failures,
                        next_attempt_in_ms = wait.as_millis() as u64,
                        "login failed"
                    );
                }
                flight.last_failure = Some((attempt, err.clone()));
                Err(err)
            }
        }
    }

    /// Declare `seen` dead (a response to a request that carried it showed the session is
    /// gone). If `seen` is still the live token, it is dropped from this manager and the
    /// transport's slot, and the next [`ensure_session`](Self::ensure_session) logs in again.
    /// If a newer token is already live, this does nothing: the failure was about an old
    /// session.
    pub fn invalidate(&self, seen: &SessionToken) {
        let mut session = self.lock_session();
        let is_current = session
            .current
            .as_ref()
            .is_some_and(|c| c.expose_secret() == seen.expose_secret());
        if !is_current {
            tracing::debug!("stale session invalidation ignored");
            return;
        }
        session.current = None;
        session.dead = Some(seen.clone());
        drop(session);
        let slot = self.transport().session();
        if slot
            .get()
            .is_some_and(|t| t.expose_secret() == seen.expose_secret())
        {
            slot.set(None);
        }
        self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
        tracing::info!("session invalidated");
    }

    /// Replace the credentials used for logging in. Clears a final
    /// [`InvalidCredentials`](AuthErrorKind::InvalidCredentials) and any backoff.
    pub async fn set_credentials(&self, credentials: Credentials) {
        let mut flight = self.flight.lock().await;
        flight.credentials = Some(credentials);
        flight.final_error = None;
        flight.failures = 0;
        flight.next_attempt = None;
        flight.last_failure = None;
    }

    /// Log out: the logout request (with the cookie), then the session is cleared from this
    /// manager, the transport's slot and the store, whether or not the request succeeded.
    /// Without a live session nothing is sent. A later
    /// [`ensure_session`](Self::ensure_session) logs in again if there are credentials.
    pub async fn logout(&self) -> Result<(), AuthError> {
        let _flight = self.flight.lock().await;
        let token = self.lock_session().current.clone();
        let result = match &token {
            Some(_) => self.client.logout().await,
            None => Ok(()),
        };
        {
            let mut session = self.lock_session();
            session.current = None;
            if token.is_some() {
                session.dead = token;
            }
        }
        self.transport().session().set(None);
        self.store.put(None).await;
        match &result {
            Ok(()) => tracing::info!("logged out"),
            Err(err) => {
                tracing::warn!(
                    kind = %err.kind(),
                    status = err.status().map(|s| s.as_u16()),
                    "logout request failed; session cleared locally"
                );
            }
        }
        result
    }

    fn lock_session(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current token unless it has expired (then it is dropped).
    fn live_token(&self) -> Option<SessionToken> {
        let mut session = self.lock_session();
        let token = session.current.as_ref()?;
        if token.expires_at().is_some_and(|at| at <= SystemTime::now()) {
            tracing::info!("session expired");
            session.dead = session.current.take();
            return None;
        }
        Some(token.clone())
    }

    /// Make `token` the live session; returns whether one existed before (a refresh).
    fn adopt(&self, token: SessionToken) -> bool {
        self.transport().session().set(Some(token.clone()));
        let mut session = self.lock_session();
        let refreshed = session.ever_live;
        session.current = Some(token);
        session.ever_live = true;
        refreshed
    }

    /// A usable token from the store (not expired, not the one just declared dead).
    async fn stored_token(&self) -> Option<SessionToken> {
        let token = self.store.get().await?;
        let dead = self
            .lock_session()
            .dead
            .as_ref()
            .is_some_and(|d| d.expose_secret() == token.expose_secret());
        let expired = token.expires_at().is_some_and(|at| at <= SystemTime::now());
        if dead || expired {
            self.store.put(None).await;
            return None;
        }
        self.counters.store_reuses.fetch_add(1, Ordering::Relaxed);
        self.adopt(token.clone());
        tracing::info!("session restored from the credential store");
        Some(token)
    }
}
