//! The mock transport: template applied, cookie attached, scripts replayed, requests recorded.

use bcfy_transport::mock::{MockResponse, MockTransport};
use bcfy_transport::{
    CookiePolicy, Request, RequestClass, RetryHint, SessionToken, Transport, TransportErrorKind,
    http::Method, url::Url,
};
use futures::StreamExt;
use std::time::Duration;

fn url(path: &str) -> Url {
    Url::parse("https://www.broadcastify.com")
        .unwrap()
        .join(path)
        .unwrap()
}

#[tokio::test]
async fn records_requests_with_template_and_cookie() {
    let mock = MockTransport::new();
    mock.on(
        Method::POST,
        "/calls/apis/live-calls",
        MockResponse::json("{\"calls\":[]}"),
    );
    mock.session().set(Some(SessionToken::new("s3cr3t-token")));

    let req = Request::post_form(url("/calls/apis/live-calls"), "groups%5B%5D=4290-512&pos=0")
        .header("x-requested-with", "XMLHttpRequest")
        .header("accept", "application/json, text/javascript, */*; q=0.01");
    let resp = mock.send(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), "{\"calls\":[]}");

    let login =
        Request::post_form(url("/login/"), "username=u&password=p").cookie(CookiePolicy::None);
    let resp = mock.send(login).await.unwrap();
    assert_eq!(resp.status(), 404, "unscripted routes answer 404");

    let seen = mock.requests();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_eq!(
            r.header("user-agent"),
            Some(
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
            )
        );
        assert_eq!(r.header("accept-language"), Some("en-US,en;q=0.9"));
        assert_eq!(r.header("accept-encoding"), Some("gzip, deflate, br"));
        assert_eq!(r.header("connection"), Some("keep-alive"));
        assert_eq!(
            r.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
    }
    assert_eq!(seen[0].header("cookie"), Some("bcfyuser1=s3cr3t-token"));
    assert_eq!(
        seen[0].header("accept"),
        Some("application/json, text/javascript, */*; q=0.01")
    );
    assert_eq!(seen[0].header("x-requested-with"), Some("XMLHttpRequest"));
    assert_eq!(
        seen[0].form()[0],
        ("groups[]".to_owned(), "4290-512".to_owned())
    );
    assert_eq!(
        seen[1].header("cookie"),
        None,
        "CookiePolicy::None sends no cookie"
    );
    assert_eq!(
        seen[1].header("accept"),
        Some(
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
        )
    );
    // Debug of a recorded request shows neither the cookie nor the body (password).
    let dbg = format!("{seen:?}");
    assert!(
        !dbg.contains("s3cr3t-token") && !dbg.contains("password=p"),
        "{dbg}"
    );
}

#[tokio::test]
async fn reserved_headers_cannot_be_overridden() {
    let mock = MockTransport::new();
    for (name, value) in [
        ("user-agent", "curl/8"),
        ("cookie", "bcfyuser1=forged"),
        ("accept-encoding", "identity"),
        ("traceparent", "00-abc-def-01"),
    ] {
        let err = mock
            .send(Request::get(url("/calls/")).header(name, value))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), TransportErrorKind::InvalidRequest, "{name}");
        assert_eq!(err.retry_hint(), RetryHint::Never);
        assert!(
            !err.to_string().contains(value),
            "the value is not echoed: {err}"
        );
    }
    assert!(mock.requests().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn queues_repeat_the_last_answer_and_closures_match() {
    let mock = MockTransport::new();
    mock.on(Method::GET, "/a", MockResponse::ok("1"));
    mock.on(Method::GET, "/a", MockResponse::ok("2"));
    mock.on_fn(|r| {
        (r.path() == "/b").then(|| MockResponse::ok(format!("b:{}", r.url.query().unwrap_or(""))))
    });
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            mock.send(Request::get(url("/a")))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
        );
    }
    assert_eq!(got, ["1", "2", "2"]);
    let b = mock
        .send(Request::get(url("/b?x=1")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(b, "b:x=1");
    assert_eq!(mock.requests_to("/a").len(), 3);
}

#[tokio::test(start_paused = true)]
async fn scripted_429_is_rate_limited_and_gates_when_enforced() {
    let mock = MockTransport::new();
    mock.enforce_gate(true);
    mock.on(
        Method::GET,
        "/x",
        MockResponse::new(bcfy_transport::http::StatusCode::TOO_MANY_REQUESTS)
            .header("retry-after", "30"),
    );
    mock.on(Method::GET, "/x", MockResponse::ok("fine"));
    let err = mock.send(Request::get(url("/x"))).await.unwrap_err();
    assert_eq!(err.kind(), TransportErrorKind::RateLimited);
    assert_eq!(err.retry_hint(), RetryHint::After(Duration::from_secs(30)));
    let start = tokio::time::Instant::now();
    let ok = mock.send(Request::get(url("/x"))).await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(30));
    assert_eq!(ok.bytes().await.unwrap(), "fine");
}

#[tokio::test(start_paused = true)]
async fn delays_time_out_and_bodies_stream_in_chunks() {
    let mock = MockTransport::new();
    mock.on(
        Method::GET,
        "/slow",
        MockResponse::ok("x").delay(Duration::from_secs(31)),
    );
    mock.on(
        Method::GET,
        "/audio",
        MockResponse::new(bcfy_transport::http::StatusCode::OK)
            .chunks([vec![1u8; 5000], vec![2u8; 5000], vec![3u8; 100]])
            .fail_body(TransportErrorKind::Body),
    );
    let err = mock.send(Request::get(url("/slow"))).await.unwrap_err();
    assert_eq!(err.kind(), TransportErrorKind::Timeout);

    let resp = mock
        .send(Request::get(url("/audio")).class(RequestClass::Audio))
        .await
        .unwrap();
    let items: Vec<_> = resp.into_chunks(4096).collect().await;
    let sizes: Vec<_> = items
        .iter()
        .filter_map(|r| r.as_ref().ok().map(bytes::Bytes::len))
        .collect();
    assert_eq!(
        sizes,
        [4096, 4096, 1908],
        "bytes before the failure are delivered"
    );
    assert_eq!(
        items.last().unwrap().as_ref().unwrap_err().kind(),
        TransportErrorKind::Body
    );
}
