//! AuthManager against the transport mock: single-flight, backoff, invalidation, token sources,
//! the credential store, logout.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bcfy_auth::{
    AuthClient, AuthErrorKind, AuthManager, CredentialSource, CredentialStore, Credentials,
    LoginBackoff, MemoryCredentialStore,
};
use bcfy_proto::SessionToken;
use bcfy_transport::http::{Method, StatusCode};
use bcfy_transport::mock::{MockResponse, MockTransport};
use bcfy_transport::{Transport, TransportErrorKind};
use tokio::time::Instant;
use url::Url;

fn site() -> Url {
    Url::parse("https://www.broadcastify.com").unwrap()
}

fn creds() -> Credentials {
    Credentials::new("alice", "hunter2-password")
}

fn ok_login(token: &str) -> MockResponse {
    MockResponse::new(StatusCode::FOUND)
        .header("location", "https://www.broadcastify.com")
        .header("set-cookie", "PHPSESSID=x; path=/")
        .header(
            "set-cookie",
            format!("bcfyuser1={token}; path=/; domain=.broadcastify.com; secure; HttpOnly"),
        )
}

fn failed_login() -> MockResponse {
    MockResponse::new(StatusCode::FOUND)
        .header("location", "https://www.broadcastify.com/login/?failed=1")
}

fn logins(mock: &MockTransport) -> usize {
    mock.requests_to("/login/").len()
}

fn manager(mock: &MockTransport, source: CredentialSource) -> AuthManager {
    AuthManager::new(mock.shared(), site(), source)
}

#[tokio::test]
async fn login_sends_the_spec_form_without_a_cookie() {
    let mock = MockTransport::new();
    // A stale token in the slot must not be sent to the login form.
    mock.session().set(Some(SessionToken::new("old-token")));
    mock.on(Method::POST, "/login/", ok_login("tok-1"));
    let client = AuthClient::new(mock.shared(), site());
    let result = client.login(&creds()).await.unwrap();
    assert_eq!(result.token.expose_secret(), "tok-1");

    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.method, Method::POST);
    assert_eq!(req.url.as_str(), "https://www.broadcastify.com/login/");
    assert_eq!(req.header("cookie"), None);
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form = req.form();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("username"), Some("alice"));
    assert_eq!(get("password"), Some("hunter2-password"));
    assert_eq!(get("action"), Some("auth"));
    assert_eq!(get("redirect"), Some("https://www.broadcastify.com"));
    assert_eq!(form.len(), 4);
}

#[tokio::test]
async fn login_failures_have_their_kinds() {
    let mock = MockTransport::new();
    let client = AuthClient::new(mock.shared(), site());

    mock.on(Method::POST, "/login/", failed_login());
    let err = client.login(&creds()).await.unwrap_err();
    assert_eq!(err.kind(), AuthErrorKind::InvalidCredentials);

    let mock = MockTransport::new();
    let client = AuthClient::new(mock.shared(), site());
    mock.on(
        Method::POST,
        "/login/",
        MockResponse::new(StatusCode::FOUND).header("location", "https://www.broadcastify.com"),
    );
    let err = client.login(&creds()).await.unwrap_err();
    assert_eq!(err.kind(), AuthErrorKind::MissingCookie);

    let mock = MockTransport::new();
    let client = AuthClient::new(mock.shared(), site());
    mock.on(
        Method::POST,
        "/login/",
        MockResponse::new(StatusCode::BAD_GATEWAY),
    );
    let err = client.login(&creds()).await.unwrap_err();
    assert_eq!(err.kind(), AuthErrorKind::Transport);
    assert_eq!(err.status(), Some(StatusCode::BAD_GATEWAY));

    let mock = MockTransport::new();
    let client = AuthClient::new(mock.shared(), site());
    mock.on(
        Method::POST,
        "/login/",
        MockResponse::error(TransportErrorKind::Connect),
    );
    let err = client.login(&creds()).await.unwrap_err();
    assert_eq!(err.kind(), AuthErrorKind::Transport);
    assert_eq!(
        err.transport_error()
            .map(bcfy_transport::TransportError::kind),
        Some(TransportErrorKind::Connect)
    );
}

#[tokio::test]
async fn ensure_session_logs_in_once_and_writes_slot_and_store() {
    let mock = MockTransport::new();
    mock.on(Method::POST, "/login/", ok_login("tok-1"));
    let store = Arc::new(MemoryCredentialStore::new());
    let auth = manager(&mock, creds().into()).with_store(store.clone());

    let t1 = auth.ensure_session().await.unwrap();
    let t2 = auth.ensure_session().await.unwrap();
    assert_eq!(t1.expose_secret(), "tok-1");
    assert_eq!(t1, t2);
    assert_eq!(logins(&mock), 1);
    assert_eq!(mock.session().get(), Some(t1.clone()));
    assert_eq!(store.get().await, Some(t1));
    assert_eq!(auth.stats().logins, 1);
}

#[tokio::test(start_paused = true)]
async fn hundred_concurrent_callers_make_one_login() {
    let mock = MockTransport::new();
    mock.on(
        Method::POST,
        "/login/",
        ok_login("tok-1").delay(Duration::from_millis(200)),
    );
    let auth = Arc::new(manager(&mock, creds().into()));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let auth = auth.clone();
            tokio::spawn(async move { auth.ensure_session().await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().expose_secret(), "tok-1");
    }
    assert_eq!(logins(&mock), 1);
}

#[tokio::test(start_paused = true)]
async fn hundred_concurrent_callers_share_one_failure() {
    let mock = MockTransport::new();
    mock.on(
        Method::POST,
        "/login/",
        MockResponse::new(StatusCode::INTERNAL_SERVER_ERROR).delay(Duration::from_millis(200)),
    );
    let auth = Arc::new(manager(&mock, creds().into()));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let auth = auth.clone();
            tokio::spawn(async move { auth.ensure_session().await })
        })
        .collect();
    for task in tasks {
        assert_eq!(
            task.await.unwrap().unwrap_err().kind(),
            AuthErrorKind::Transport
        );
    }
    assert_eq!(logins(&mock), 1);
}

#[tokio::test(start_paused = true)]
async fn repeated_failures_back_off_exponentially() {
    let mock = MockTransport::new();
    mock.on(
        Method::POST,
        "/login/",
        MockResponse::new(StatusCode::SERVICE_UNAVAILABLE),
    );
    let auth = manager(&mock, creds().into()).with_backoff(LoginBackoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(5),
        min_interval: Duration::ZERO,
    });
    let mut waits = Vec::new();
    for _ in 0..6 {
        let start = Instant::now();
        assert!(auth.ensure_session().await.is_err());
        waits.push(start.elapsed().as_secs());
    }
    assert_eq!(waits, [0, 1, 2, 4, 5, 5]);
    assert_eq!(logins(&mock), 6);
    assert_eq!(auth.stats().login_failures, 6);
}

#[tokio::test(start_paused = true)]
async fn default_pacing_never_logs_in_twice_within_five_seconds() {
    let mock = MockTransport::new();
    mock.on(Method::POST, "/login/", ok_login("tok-1"));
    mock.on(Method::POST, "/login/", ok_login("tok-2"));
    mock.on(Method::POST, "/login/", ok_login("tok-3"));
    let auth = manager(&mock, creds().into());
    let start = Instant::now();
    let t1 = auth.ensure_session().await.unwrap();
    auth.invalidate(&t1);
    let t2 = auth.ensure_session().await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    auth.invalidate(&t2);
    let t3 = auth.ensure_session().await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert_eq!(t3.expose_secret(), "tok-3");
}

#[tokio::test(start_paused = true)]
async fn invalid_credentials_are_final_until_they_change() {
    let mock = MockTransport::new();
    mock.on(Method::POST, "/login/", failed_login());
    mock.on(Method::POST, "/login/", ok_login("tok-ok"));
    let auth = manager(&mock, creds().into());
    for _ in 0..5 {
        assert_eq!(
            auth.ensure_session().await.unwrap_err().kind(),
            AuthErrorKind::InvalidCredentials
        );
    }
    assert_eq!(logins(&mock), 1, "invalid credentials must not be retried");

    auth.set_credentials(Credentials::new("alice", "the-right-one"))
        .await;
    let token = auth.ensure_session().await.unwrap();
    assert_eq!(token.expose_secret(), "tok-ok");
    assert_eq!(logins(&mock), 2);
}

#[tokio::test(start_paused = true)]
async fn stale_invalidation_does_not_cause_a_second_login() {
    let mock = MockTransport::new();
    mock.on(Method::POST, "/login/", ok_login("tok-1"));
    mock.on(Method::POST, "/login/", ok_login("tok-2"));
    let auth = manager(&mock, creds().into());
    let t1 = auth.ensure_session().await.unwrap();

    // Two requests carried t1 and both came back logged out.
    auth.invalidate(&t1);
    assert_eq!(mock.session().get(), None, "a dead token leaves the slot");
    let t2 = auth.ensure_session().await.unwrap();
    assert_eq!(t2.expose_secret(), "tok-2");
    auth.invalidate(&t1); // the second, late report about t1
    assert_eq!(auth.ensure_session().await.unwrap(), t2);
    assert_eq!(logins(&mock), 2);
    assert_eq!(mock.session().get(), Some(t2));
    assert_eq!(auth.stats().invalidations, 1);
}

#[tokio::test]
async fn a_supplied_token_is_used_without_login() {
    let mock = MockTransport::new();
    let token = SessionToken::new("given-token");
    let auth = manager(&mock, token.clone().into());
    assert_eq!(mock.session().get(), Some(token.clone()));
    assert_eq!(auth.ensure_session().await.unwrap(), token);
    assert!(mock.requests().is_empty());

    // Without credentials a dead token cannot be replaced.
    auth.invalidate(&token);
    assert_eq!(
        auth.ensure_session().await.unwrap_err().kind(),
        AuthErrorKind::LoggedOut
    );
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn nothing_supplied_is_no_credentials_until_credentials_are_set() {
    let mock = MockTransport::new();
    mock.on(Method::POST, "/login/", ok_login("tok-1"));
    let auth = manager(&mock, CredentialSource::None);
    assert_eq!(
        auth.ensure_session().await.unwrap_err().kind(),
        AuthErrorKind::NoCredentials
    );
    assert!(mock.requests().is_empty());
    auth.set_credentials(creds()).await;
    assert_eq!(
        auth.ensure_session().await.unwrap().expose_secret(),
        "tok-1"
    );
}

#[tokio::test]
async fn an_expired_token_without_credentials_is_logged_out() {
    let mock = MockTransport::new();
    let auth = AuthManager::new(
        mock.shared(),
        site(),
        CredentialSource::Token(SessionToken::new("t").with_expiry(SystemTime::UNIX_EPOCH)),
    );
    // An already-expired token and no credentials: logged out.
    assert_eq!(
        auth.ensure_session().await.unwrap_err().kind(),
        AuthErrorKind::LoggedOut
    );
}

#[tokio::test(start_paused = true)]
async fn token_then_credentials_and_expiry() {
    let mock = MockTransport::new();
    mock.on(Method::POST, "/login/", ok_login("fresh"));
    let expired =
        SessionToken::new("expired").with_expiry(SystemTime::now() - Duration::from_secs(1));
    let auth = manager(
        &mock,
        CredentialSource::Both {
            credentials: creds(),
            token: expired,
        },
    );
    let token = auth.ensure_session().await.unwrap();
    assert_eq!(token.expose_secret(), "fresh");
    assert_eq!(logins(&mock), 1);
}

#[tokio::test(start_paused = true)]
async fn the_store_is_used_before_logging_in_and_a_dead_stored_token_is_not_revived() {
    let mock = MockTransport::new();
    mock.on(Method::POST, "/login/", ok_login("new"));
    let stored = SessionToken::new("stored");
    let store = Arc::new(MemoryCredentialStore::with_token(stored.clone()));
    let auth = manager(&mock, creds().into()).with_store(store.clone());

    assert_eq!(auth.ensure_session().await.unwrap(), stored);
    assert_eq!(logins(&mock), 0);
    assert_eq!(mock.session().get(), Some(stored.clone()));
    assert_eq!(auth.stats().store_reuses, 1);

    auth.invalidate(&stored);
    let fresh = auth.ensure_session().await.unwrap();
    assert_eq!(fresh.expose_secret(), "new");
    assert_eq!(logins(&mock), 1);
    assert_eq!(store.get().await, Some(fresh));
}

#[tokio::test]
async fn logout_sends_the_cookie_and_clears_everything() {
    let mock = MockTransport::new();
    mock.on(Method::POST, "/login/", ok_login("tok-1"));
    mock.on(
        Method::GET,
        "/account/",
        MockResponse::new(StatusCode::FOUND).header("location", "https://www.broadcastify.com"),
    );
    let store = Arc::new(MemoryCredentialStore::new());
    let auth = manager(&mock, creds().into()).with_store(store.clone());
    auth.ensure_session().await.unwrap();
    auth.logout().await.unwrap();

    let out = mock.requests_to("/account/");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].method, Method::GET);
    assert_eq!(out[0].url.query(), Some("action=logout"));
    assert_eq!(out[0].header("cookie"), Some("bcfyuser1=tok-1"));
    assert_eq!(mock.session().get(), None);
    assert_eq!(store.get().await, None);
    assert_eq!(auth.current(), None);

    // Logging out again sends nothing.
    auth.logout().await.unwrap();
    assert_eq!(mock.requests_to("/account/").len(), 1);
}

#[tokio::test]
async fn a_failed_logout_is_an_error_but_the_session_is_cleared() {
    let mock = MockTransport::new();
    mock.on(Method::POST, "/login/", ok_login("tok-1"));
    mock.on(
        Method::GET,
        "/account/",
        MockResponse::new(StatusCode::INTERNAL_SERVER_ERROR),
    );
    let auth = manager(&mock, creds().into());
    auth.ensure_session().await.unwrap();
    let err = auth.logout().await.unwrap_err();
    assert_eq!(err.kind(), AuthErrorKind::Transport);
    assert_eq!(err.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(mock.session().get(), None);
    assert_eq!(auth.current(), None);
}

#[test]
fn debug_output_has_no_secrets() {
    let c = creds();
    let dbg = format!("{c:?}");
    assert!(dbg.contains("alice"));
    assert!(!dbg.contains("hunter2"));

    let mock = MockTransport::new();
    let auth = manager(
        &mock,
        CredentialSource::Both {
            credentials: c,
            token: SessionToken::new("tok-secret-value"),
        },
    );
    let dbg = format!("{auth:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(!dbg.contains("tok-secret-value"), "{dbg}");
    let dbg = format!("{:?}", CredentialSource::from(creds()));
    assert!(!dbg.contains("hunter2"), "{dbg}");
}

#[test]
fn manager_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<AuthManager>();
    assert_send_sync::<bcfy_auth::AuthError>();
}

#[tokio::test]
async fn futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let mock = MockTransport::new();
    let auth = manager(&mock, creds().into());
    assert_send(&auth.ensure_session());
    assert_send(&auth.logout());
    assert_send(&auth.set_credentials(creds()));
    let client = AuthClient::new(mock.shared(), site());
    let c = creds();
    assert_send(&client.login(&c));
    assert_send(&client.logout());
}
