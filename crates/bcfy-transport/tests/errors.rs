//! Connect, TLS, timeouts and resets give the right error kinds, and no error or log line
//! ever holds the session token.

mod common;

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bcfy_transport::{
    Request, SessionToken, Transport, TransportConfig, TransportError, TransportErrorKind,
};
use bytes::Bytes;
use common::{Mode, channel_body, config, ok, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TOKEN: &str = "TOKEN-s3cr3t-0123456789";

/// Asserts the token appears nowhere in the error: Display, Debug, and the source chain.
fn assert_no_secret(err: &TransportError) {
    let mut text = format!("{err} {err:?}");
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = cur {
        text = format!("{text} {e} {e:?}");
        cur = e.source();
    }
    assert!(!text.contains(TOKEN), "secret leaked: {text}");
    assert!(!text.contains("s3cr3t"), "secret leaked: {text}");
}

fn with_session(t: &impl Transport) {
    t.session().set(Some(SessionToken::new(TOKEN)));
}

#[tokio::test]
async fn connection_refused_is_connect() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let t = bcfy_transport::HttpTransport::builder()
        .config(config())
        .build()
        .unwrap();
    with_session(&t);
    let url = bcfy_transport::url::Url::parse(&format!("http://{addr}/x")).unwrap();
    let err = t.send(Request::get(url)).await.unwrap_err();
    assert_eq!(err.kind(), TransportErrorKind::Connect, "{err:?}");
    assert_eq!(err.retry_hint(), bcfy_transport::RetryHint::Backoff);
    assert_no_secret(&err);
}

#[tokio::test]
async fn a_hanging_connect_is_a_timeout() {
    // A listener that never accepts, with its accept queue filled: further SYNs are dropped,
    // so a connect hangs until the client gives up.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
        assert!(fillers.len() < 64, "the accept queue never filled");
    }
    let t = bcfy_transport::HttpTransport::builder()
        .config(TransportConfig {
            connect_timeout: Duration::from_millis(300),
            ..config()
        })
        .build()
        .unwrap();
    with_session(&t);
    let url = bcfy_transport::url::Url::parse(&format!("http://{addr}/x")).unwrap();
    let err = t.send(Request::get(url)).await.unwrap_err();
    assert_eq!(err.kind(), TransportErrorKind::Timeout, "{err:?}");
    assert_no_secret(&err);
}

#[tokio::test]
async fn an_untrusted_certificate_is_tls() {
    let server = start(Mode::TlsH2, |_| async { ok("x") }).await;
    // Only the webpki roots: the test certificate is not trusted.
    let t = bcfy_transport::HttpTransport::builder()
        .config(config())
        .crypto_provider(common::provider())
        .build()
        .unwrap();
    with_session(&t);
    let err = t.send(Request::get(server.url("/x"))).await.unwrap_err();
    assert_eq!(err.kind(), TransportErrorKind::Tls, "{err:?}");
    assert_eq!(err.retry_hint(), bcfy_transport::RetryHint::Never);
    assert_no_secret(&err);
}

#[tokio::test]
async fn no_headers_in_time_is_a_timeout() {
    let server = start(Mode::TlsH2, |seen| async move {
        if seen.path == "/never" {
            std::future::pending::<()>().await;
        }
        ok("x")
    })
    .await;
    let t = server.client(TransportConfig {
        request_timeout: Duration::from_millis(300),
        ..config()
    });
    with_session(&t);
    let err = t
        .send(Request::get(server.url("/never")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), TransportErrorKind::Timeout, "{err:?}");
    assert_no_secret(&err);
    // The per-request override applies too, and the transport still works afterwards.
    let err = t
        .send(Request::get(server.url("/never")).timeout(Duration::from_millis(100)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), TransportErrorKind::Timeout);
    assert_eq!(
        t.send(Request::get(server.url("/ok")))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
        "x"
    );
}

#[tokio::test]
async fn a_stalled_body_hits_the_idle_timeout() {
    let feeds = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&feeds);
    let server = start(Mode::TlsH2, move |_| {
        let keep = Arc::clone(&keep);
        async move {
            let (tx, body) = channel_body(4);
            tx.try_send(Ok(Bytes::from_static(b"partial"))).unwrap();
            keep.lock().unwrap().push(tx); // never sends more, never ends
            http::Response::new(body)
        }
    })
    .await;
    let t = server
        .builder(config())
        .body_idle_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    with_session(&t);
    let resp = t.send(Request::get(server.url("/stall"))).await.unwrap();
    let err = resp.bytes().await.unwrap_err();
    assert_eq!(err.kind(), TransportErrorKind::Timeout, "{err:?}");
    assert_no_secret(&err);
    assert_eq!(
        t.available_api_permits(),
        config().max_in_flight_api,
        "permit released"
    );
    drop(feeds);
}

/// A raw HTTP/1.1 server that sends a Content-Length body and breaks off half way.
async fn breaking_server(reset: bool) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                let mut head = Vec::new();
                write!(head, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n").unwrap();
                head.extend(std::iter::repeat_n(b'a', 5000));
                let _ = sock.write_all(&head).await;
                let _ = sock.flush().await;
                if reset {
                    // SO_LINGER 0: close with RST.
                    sock.set_zero_linger().unwrap();
                    drop(sock);
                } else {
                    drop(sock);
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_reset_or_truncated_body_is_a_body_error() {
    for reset in [true, false] {
        let addr = breaking_server(reset).await;
        let t = bcfy_transport::HttpTransport::builder()
            .config(config())
            .build()
            .unwrap();
        with_session(&t);
        let url = bcfy_transport::url::Url::parse(&format!("http://{addr}/audio")).unwrap();
        let resp = t.send(Request::get(url)).await.unwrap();
        assert_eq!(resp.content_length(), Some(100_000));
        let err = resp.bytes().await.unwrap_err();
        assert_eq!(
            err.kind(),
            TransportErrorKind::Body,
            "reset={reset}: {err:?}"
        );
        assert_eq!(err.retry_hint(), bcfy_transport::RetryHint::Backoff);
        assert_no_secret(&err);
    }
}

#[tokio::test]
async fn a_body_over_the_cap_is_too_large() {
    let server = start(Mode::Plain, |_| async { ok(vec![b'x'; 10_000]) }).await;
    let t = server.client(TransportConfig {
        max_body_bytes: 4096,
        ..config()
    });
    let err = t
        .send(Request::get(server.url("/big")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), TransportErrorKind::TooLarge);
    let small = t
        .send(Request::get(server.url("/big")))
        .await
        .unwrap()
        .bytes_limited(20_000)
        .await;
    assert_eq!(small.unwrap().len(), 10_000);
}

#[tokio::test]
async fn status_errors_and_logs_hold_no_secret() {
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // The server echoes the cookie back in headers and body, as a hostile one might.
    let server = start(Mode::Plain, |seen| async move {
        let cookie = seen.header("cookie").unwrap_or("").to_owned();
        let code = if seen.path == "/limited" { 429 } else { 500 };
        let mut r = common::status(code);
        r.headers_mut().insert("x-echo", cookie.parse().unwrap());
        *r.body_mut() = common::full(cookie);
        r
    })
    .await;
    let t = server.client(config());
    with_session(&t);
    let resp = t
        .send(Request::get(
            server.url(&format!("/fail?sessionKey={TOKEN}")),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let err = resp.error_for_status().unwrap_err();
    assert_eq!(err.kind(), TransportErrorKind::Status);
    assert_no_secret(&err);
    let err = t
        .send(Request::get(server.url("/limited")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), TransportErrorKind::RateLimited);
    assert_no_secret(&err);
    // A request whose header value is bad fails without echoing it.
    let err = t
        .send(Request::get(server.url("/x")).header("x-bad", format!("{TOKEN}\n")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), TransportErrorKind::InvalidRequest);
    assert_no_secret(&err);

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("bcfy.transport.request"),
        "spans were logged: {logs}"
    );
    assert!(
        !logs.contains(TOKEN) && !logs.contains("s3cr3t"),
        "secret in logs: {logs}"
    );
    assert!(format!("{t:?}").find("s3cr3t").is_none());
}

/// Copies `from` to `to` until `cut` is set; from then on, bytes are dropped on the floor.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if cut.load(std::sync::atomic::Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A TCP relay to `upstream` that can go silent in both directions (a network drop).
async fn blackhole_relay(
    upstream: std::net::SocketAddr,
) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicBool>) {
    let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let c = Arc::clone(&cut);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(upstream).await.unwrap();
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pipe(cr, sw, Arc::clone(&c)));
            tokio::spawn(pipe(sr, cw, Arc::clone(&c)));
        }
    });
    (addr, cut)
}

#[tokio::test]
async fn an_unanswered_h2_ping_fails_the_request_as_a_timeout() {
    use std::sync::atomic::Ordering;
    let arrived = Arc::new(tokio::sync::Notify::new());
    let a = Arc::clone(&arrived);
    let server = start(Mode::TlsH2, move |_| {
        let a = Arc::clone(&a);
        async move {
            a.notify_one();
            std::future::pending::<()>().await;
            ok("never")
        }
    })
    .await;
    let (relay, cut) = blackhole_relay(server.addr).await;
    let t = server
        .builder(config())
        .http2_keep_alive(Some(Duration::from_millis(200)))
        .http2_keep_alive_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let url = bcfy_transport::url::Url::parse(&format!("https://{relay}/hang")).unwrap();
    let started = std::time::Instant::now();
    let mut pending = tokio::spawn(async move { t.send(Request::get(url)).await });
    tokio::select! {
        () = arrived.notified() => {}
        early = &mut pending => panic!("the request ended before reaching the server: {early:?}"),
    }
    // The request is in flight on a live h2 connection; now the network goes silent.
    cut.store(true, Ordering::SeqCst);
    let err = pending.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), TransportErrorKind::Timeout, "{err:?}");
    // Long before the 10 s request timeout: the keep-alive ping (needs hyper's timer) fired.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
