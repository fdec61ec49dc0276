//! Secret hygiene: every tracing event (TRACE, every crate) of a full cycle — a failed login, a
//! login, authenticated requests, an expired session and a refresh, a failing logout, a logout —
//! is captured, and neither the password nor any token appears in it, nor in any error's
//! `Display`/`Debug`, nor in the `Debug` of the credentials, results and manager.
//!
//! One test in this binary: it installs the global subscriber.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bcfy_auth::{
    AuthClient, AuthErrorKind, AuthManager, CredentialSource, Credentials, LoginBackoff,
    is_logged_out,
};
use bcfy_sim::{Endpoint, Fault, FaultPlan, Simulator};
use bcfy_transport::{HttpTransport, Request, SharedTransport};

const PASSWORD: &str = "Zq7pPassw0rdNeverLogged";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_in_logs_errors_or_debug_output() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();

    let sim = Simulator::builder()
        .seed(9)
        .groups([(4290, 512)])
        .calls_per_second(0.0)
        .user("alice", PASSWORD)
        // The first logout fails (503 without Retry-After is a plain error status).
        .faults(FaultPlan::none().nth(Endpoint::Logout, 1, Fault::Unavailable(None)))
        .start()
        .await
        .unwrap();
    let transport: SharedTransport = Arc::new(HttpTransport::builder().build().unwrap());
    let mut shown = Vec::<String>::new();
    let mut tokens = Vec::<String>::new();

    // A failed login.
    let auth = AuthManager::new(
        transport.clone(),
        sim.base_url(),
        CredentialSource::Credentials(Credentials::new("alice", format!("{PASSWORD}-wrong"))),
    )
    .with_backoff(LoginBackoff {
        min_interval: Duration::ZERO,
        ..LoginBackoff::default()
    });
    let err = auth.ensure_session().await.unwrap_err();
    assert_eq!(err.kind(), AuthErrorKind::InvalidCredentials);
    shown.push(format!("{err} {err:?}"));

    // A login.
    auth.set_credentials(Credentials::new("alice", PASSWORD))
        .await;
    let first = auth.ensure_session().await.unwrap();
    tokens.push(first.expose_secret().to_owned());
    shown.push(format!("{first} {first:?} {auth:?}"));

    // Authenticated requests carry the cookie; then the session dies and is refreshed.
    let mut url = sim.base_url().join("calls/apis/archivecall.php").unwrap();
    url.set_query(Some("group=4290-512&s=1763985600"));
    let ok = transport.send(Request::get(url.clone())).await.unwrap();
    assert!(ok.status().is_success());
    shown.push(format!("{ok:?}"));
    sim.expire_sessions();
    let gone = transport.send(Request::get(url.clone())).await.unwrap();
    assert!(is_logged_out(gone.status(), gone.headers()));
    shown.push(format!("{gone:?}"));
    auth.invalidate(&first);
    let second = auth.ensure_session().await.unwrap();
    assert_ne!(first, second);
    tokens.push(second.expose_secret().to_owned());

    // A failing logout, then a login and a logout that work.
    let err = auth.logout().await.unwrap_err();
    shown.push(format!("{err} {err:?}"));
    let third = auth.ensure_session().await.unwrap();
    tokens.push(third.expose_secret().to_owned());
    auth.logout().await.unwrap();

    // The raw client's result and the credentials themselves.
    let client = AuthClient::new(transport.clone(), sim.base_url());
    let result = client
        .login(&Credentials::new("alice", PASSWORD))
        .await
        .unwrap();
    tokens.push(result.token.expose_secret().to_owned());
    shown.push(format!("{result:?}"));
    shown.push(format!("{:?}", Credentials::new("alice", PASSWORD)));
    shown.push(format!(
        "{:?}",
        CredentialSource::Both {
            credentials: Credentials::new("alice", PASSWORD),
            token: result.token.clone(),
        }
    ));
    let err = client
        .login(&Credentials::new("alice", "nope"))
        .await
        .unwrap_err();
    shown.push(format!("{err} {err:?}"));

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    // The capture works and covers the cycle.
    for event in [
        "login failed",
        "login ok",
        "session invalidated",
        "session refreshed",
        "logout request failed",
        "logged out",
    ] {
        assert!(logs.contains(event), "no `{event}` event in:\n{logs}");
    }
    assert_eq!(sim.requests_to(Endpoint::Login).len(), 6);
    assert!(
        tokens.iter().all(|t| t.len() >= 16),
        "tokens too short to search for"
    );

    let mut secrets = vec![PASSWORD.to_owned()];
    secrets.extend(tokens);
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret appears in the logs:\n{logs}"
        );
        for text in &shown {
            assert!(
                !text.contains(secret.as_str()),
                "a secret appears in: {text}"
            );
        }
    }
}
