//! TLS, ALPN, connection reuse and the header template against a local server.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bcfy_transport::http::Version;
use bcfy_transport::{
    CookiePolicy, Request, RequestClass, SessionToken, Transport, TransportConfig,
    TransportErrorKind,
};
use common::{Mode, config, ok, start};

const UA: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
const ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

#[tokio::test]
async fn h2_is_negotiated_over_tls() {
    let server = start(Mode::TlsH2, |_| async { ok("hi") }).await;
    let t = server.client(config());
    let resp = t.send(Request::get(server.url("/x"))).await.unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.bytes().await.unwrap(), "hi");
    let seen = server.stats.requests();
    assert_eq!(seen[0].version, Version::HTTP_2, "the server saw HTTP/2");
}

#[tokio::test]
async fn http1_is_used_when_the_server_offers_only_http1() {
    let server = start(Mode::TlsH1, |_| async { ok("hi") }).await;
    let t = server.client(config());
    let resp = t.send(Request::get(server.url("/x"))).await.unwrap();
    assert_eq!(resp.version(), Version::HTTP_11);
    assert_eq!(server.stats.requests()[0].version, Version::HTTP_11);
}

async fn reuse(mode: Mode) {
    let server = start(mode, |_| async { ok("x") }).await;
    let max = 4;
    let t = server.client(TransportConfig {
        max_in_flight_api: max,
        ..config()
    });
    for _ in 0..200 {
        let body = t
            .send(Request::get(server.url("/seq")))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body, "x");
    }
    assert_eq!(
        server.stats.accepts(),
        1,
        "200 sequential requests on one connection"
    );

    let mut tasks = Vec::new();
    for _ in 0..50 {
        // Clones share the pool.
        let t = t.clone();
        let url = server.url("/par");
        tasks.push(tokio::spawn(async move {
            t.send(Request::get(url))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), "x");
    }
    let accepts = server.stats.accepts();
    if mode == Mode::TlsH2 {
        assert_eq!(
            accepts, 1,
            "h2 multiplexes every request on the one connection"
        );
    } else {
        // hyper-util races a checkout against a new connect when no idle connection is
        // ready, and a losing connect is finished in the background and pooled. So while the
        // first connections are still in their TLS handshake a few extra may open (measured:
        // 4 plain, 5 over TLS for a bound of 4); never one per request.
        assert!(
            accepts <= 2 * max,
            "50 concurrent requests opened {accepts} connections"
        );
    }
    assert_eq!(server.stats.requests().len(), 250);
}

#[tokio::test]
async fn connections_are_reused_over_h2() {
    reuse(Mode::TlsH2).await;
}

#[tokio::test]
async fn connections_are_reused_over_http1_tls() {
    reuse(Mode::TlsH1).await;
}

#[tokio::test]
async fn connections_are_reused_over_plain_http1() {
    reuse(Mode::Plain).await;
}

async fn template_on_every_request(mode: Mode) {
    let server = start(mode, |_| async { ok("") }).await;
    let t = server.client(TransportConfig {
        accept_language: "fr-FR,fr;q=0.8".to_owned(),
        ..config()
    });
    // No session yet.
    t.send(Request::get(server.url("/a"))).await.unwrap();
    t.session().set(Some(SessionToken::new("tok-123")));
    t.send(Request::get(server.url("/b"))).await.unwrap();
    t.send(
        Request::post_form(server.url("/c"), "a=1").header("x-requested-with", "XMLHttpRequest"),
    )
    .await
    .unwrap();
    t.send(
        Request::get(server.url("/d"))
            .cookie(CookiePolicy::None)
            .class(RequestClass::Audio),
    )
    .await
    .unwrap();
    t.send(Request::get(server.url("/e")).header("accept", "application/json"))
        .await
        .unwrap();
    // A caller cannot override the template: the request fails before it is sent.
    let err = t
        .send(Request::get(server.url("/f")).header("user-agent", "curl/8.0"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), TransportErrorKind::InvalidRequest);
    let err = t
        .send(Request::get(server.url("/g")).header("cookie", "bcfyuser1=forged"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), TransportErrorKind::InvalidRequest);

    let seen = server.stats.requests();
    let paths: Vec<_> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/a", "/b", "/c", "/d", "/e"],
        "rejected requests never left"
    );
    for s in &seen {
        assert_eq!(s.header("user-agent"), Some(UA), "{}", s.path);
        assert_eq!(s.header("accept-language"), Some("fr-FR,fr;q=0.8"));
        assert_eq!(s.header("accept-encoding"), Some("gzip, deflate, br"));
        assert!(s.header("traceparent").is_none());
        if s.version == Version::HTTP_11 {
            assert_eq!(s.header("connection"), Some("keep-alive"));
        }
        let expect_accept = if s.path == "/e" {
            "application/json"
        } else {
            ACCEPT
        };
        assert_eq!(s.header("accept"), Some(expect_accept));
        let expect_cookie = match s.path.as_str() {
            "/a" | "/d" => None,
            _ => Some("bcfyuser1=tok-123"),
        };
        assert_eq!(s.header("cookie"), expect_cookie, "{}", s.path);
    }
    assert_eq!(seen[2].header("x-requested-with"), Some("XMLHttpRequest"));
    assert_eq!(
        seen[2].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(seen[2].body, "a=1");
}

#[tokio::test]
async fn template_and_cookie_on_every_request_h2() {
    template_on_every_request(Mode::TlsH2).await;
}

#[tokio::test]
async fn template_and_cookie_on_every_request_http1() {
    template_on_every_request(Mode::Plain).await;
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = start(Mode::Plain, |s| async move {
        let mut r = common::status(302);
        r.headers_mut()
            .insert("location", "/elsewhere".parse().unwrap());
        r.headers_mut().insert(
            "set-cookie",
            "bcfyuser1=fresh-token; path=/".parse().unwrap(),
        );
        let _ = s;
        r
    })
    .await;
    let t = server.client(config());
    let resp = t
        .send(Request::post_form(server.url("/login/"), "x=1"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert!(
        !format!("{resp:?}").contains("fresh-token"),
        "Debug redacts Set-Cookie"
    );
    assert_eq!(server.stats.requests().len(), 1);
}

#[tokio::test]
async fn idle_pooled_connections_are_closed_by_the_pool_timer() {
    let server = start(Mode::Plain, |_| async { ok("x") }).await;
    let t = server.client(TransportConfig {
        pool_idle_timeout: Duration::from_millis(200),
        ..config()
    });
    t.send(Request::get(server.url("/1")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    // Real time on a real socket: the idle connection must be dropped, so the next request
    // opens a new one (without `pool_timer` it would be reused forever).
    tokio::time::sleep(Duration::from_millis(700)).await;
    t.send(Request::get(server.url("/2")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(server.stats.accepts(), 2);
    let _ = Arc::clone(&server.stats);
}
