//! AuthManager end to end against bcfy-sim over plain HTTP on 127.0.0.1, through the real
//! HttpTransport.

use std::sync::Arc;
use std::time::Duration;

use bcfy_auth::{AuthErrorKind, AuthManager, Credentials, LoginBackoff, is_logged_out};
use bcfy_sim::{Endpoint, SimHandle, Simulator};
use bcfy_transport::{HttpTransport, Request, SharedTransport};

async fn sim() -> SimHandle {
    Simulator::builder()
        .seed(4)
        .groups([(4290, 512)])
        .calls_per_second(0.0)
        .user("alice", "correct-horse")
        .start()
        .await
        .unwrap()
}

fn transport() -> SharedTransport {
    Arc::new(HttpTransport::builder().build().unwrap())
}

fn manager(sim: &SimHandle, transport: &SharedTransport, password: &str) -> AuthManager {
    AuthManager::new(
        transport.clone(),
        sim.base_url(),
        Credentials::new("alice", password).into(),
    )
    .with_backoff(LoginBackoff {
        min_interval: Duration::ZERO,
        ..LoginBackoff::default()
    })
}

/// An authenticated request (an archive block) with whatever cookie the transport holds.
async fn probe(sim: &SimHandle, transport: &SharedTransport) -> bcfy_transport::Response {
    let mut url = sim.base_url().join("calls/apis/archivecall.php").unwrap();
    url.set_query(Some("group=4290-512&s=1763985600"));
    transport.send(Request::get(url)).await.unwrap()
}

#[tokio::test]
async fn login_logout_round_trip() {
    let sim = sim().await;
    let transport = transport();
    let auth = manager(&sim, &transport, "correct-horse");
    let token = auth.ensure_session().await.unwrap();
    assert_eq!(transport.session().get(), Some(token.clone()));

    let logins = sim.requests_to(Endpoint::Login);
    assert_eq!(logins.len(), 1);
    let login = &logins[0];
    assert_eq!(login.form_value("username"), Some("alice"));
    assert_eq!(login.form_value("password"), Some("correct-horse"));
    assert_eq!(login.form_value("action"), Some("auth"));
    assert_eq!(
        login.form_value("redirect"),
        Some(sim.base_url().as_str().trim_end_matches('/'))
    );
    assert_eq!(login.cookie, None);
    assert_eq!(login.status.as_u16(), 302);

    // The session works.
    assert!(probe(&sim, &transport).await.status().is_success());

    auth.logout().await.unwrap();
    let logouts = sim.requests_to(Endpoint::Logout);
    assert_eq!(logouts.len(), 1);
    assert_eq!(logouts[0].cookie.as_deref(), Some(token.expose_secret()));
    assert_eq!(transport.session().get(), None);
    // The server forgot the session too.
    let after = probe(&sim, &transport).await;
    assert!(is_logged_out(after.status(), after.headers()));
}

#[tokio::test]
async fn wrong_password_is_invalid_credentials_and_not_retried() {
    let sim = sim().await;
    let transport = transport();
    let auth = manager(&sim, &transport, "wrong");
    for _ in 0..3 {
        let err = auth.ensure_session().await.unwrap_err();
        assert_eq!(err.kind(), AuthErrorKind::InvalidCredentials);
    }
    assert_eq!(sim.requests_to(Endpoint::Login).len(), 1);
    auth.set_credentials(Credentials::new("alice", "correct-horse"))
        .await;
    assert!(auth.ensure_session().await.is_ok());
    assert_eq!(sim.requests_to(Endpoint::Login).len(), 2);
}

#[tokio::test]
async fn an_expired_session_is_detected_and_replaced() {
    let sim = sim().await;
    let transport = transport();
    let auth = manager(&sim, &transport, "correct-horse");
    let first = auth.ensure_session().await.unwrap();
    sim.expire_sessions();

    let answer = probe(&sim, &transport).await;
    assert!(is_logged_out(answer.status(), answer.headers()));
    auth.invalidate(&first);
    let second = auth.ensure_session().await.unwrap();
    assert_ne!(first, second);
    assert!(probe(&sim, &transport).await.status().is_success());
    assert_eq!(sim.requests_to(Endpoint::Login).len(), 2);
    assert_eq!(auth.stats().logins, 2);
}

#[tokio::test]
async fn hundred_concurrent_callers_make_one_login_request() {
    let sim = sim().await;
    let transport = transport();
    let auth = Arc::new(manager(&sim, &transport, "correct-horse"));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let auth = auth.clone();
            tokio::spawn(async move { auth.ensure_session().await })
        })
        .collect();
    let mut tokens = Vec::new();
    for task in tasks {
        tokens.push(task.await.unwrap().unwrap());
    }
    assert!(tokens.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(sim.requests_to(Endpoint::Login).len(), 1);
}
