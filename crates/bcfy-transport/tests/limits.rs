//! Semaphores (API and audio) and the rate budget, observed from the server side.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bcfy_transport::{RateBudget, Request, RequestClass, Transport, TransportConfig};
use bytes::Bytes;
use common::{Mode, channel_body, config, ok, start};
use futures::StreamExt;

#[tokio::test]
async fn api_requests_in_flight_never_exceed_the_bound() {
    let hold = Duration::from_millis(50);
    let server = start(Mode::TlsH2, move |_| async move {
        tokio::time::sleep(hold).await;
        ok("done")
    })
    .await;
    let bound = 3;
    let t = server.client(TransportConfig {
        max_in_flight_api: bound,
        ..config()
    });
    let started = Instant::now();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let t = t.clone();
            let url = server.url(&format!("/r{i}"));
            tokio::spawn(async move {
                t.send(Request::get(url))
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), "done");
    }
    let max = server.stats.max_in_flight();
    assert!(
        max <= bound,
        "server saw {max} requests at once, bound {bound}"
    );
    // 20 requests, 3 at a time, 50 ms each: at least 7 rounds.
    assert!(started.elapsed() >= hold * 7, "{:?}", started.elapsed());
    assert_eq!(server.stats.requests().len(), 20);
}

#[tokio::test]
async fn the_audio_permit_is_held_until_the_body_is_read() {
    type Feed = tokio::sync::mpsc::Sender<Result<Bytes, common::BoxError>>;
    let (tx, rx) = tokio::sync::mpsc::channel::<tokio::sync::oneshot::Sender<Feed>>(4);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    // Each audio response streams a body the test feeds through a channel.
    let server = start(Mode::TlsH2, move |seen| {
        let rx = Arc::clone(&rx);
        async move {
            if seen.path.starts_with("/audio") {
                let (body_tx, body) = channel_body(1);
                if let Some(feed) = rx.lock().await.recv().await {
                    let _ = feed.send(body_tx);
                }
                http::Response::new(body)
            } else {
                ok("api")
            }
        }
    })
    .await;
    let t = server.client(TransportConfig {
        max_in_flight_audio: 2,
        max_in_flight_api: 1,
        ..config()
    });
    assert_eq!(t.available_audio_permits(), 2);

    let (feed_a, got_a) = tokio::sync::oneshot::channel();
    tx.send(feed_a).await.unwrap();
    let a = t
        .send(Request::get(server.url("/audio/a")).class(RequestClass::Audio))
        .await
        .unwrap();
    let body_a = got_a.await.unwrap();
    let (feed_b, got_b) = tokio::sync::oneshot::channel();
    tx.send(feed_b).await.unwrap();
    let b = t
        .send(Request::get(server.url("/audio/b")).class(RequestClass::Audio))
        .await
        .unwrap();
    let body_b = got_b.await.unwrap();
    // Headers are in, bodies are not: both permits are still taken.
    assert_eq!(t.available_audio_permits(), 0);

    // Downloads never starve API requests: a poll goes through while both are busy.
    let api = t.send(Request::get(server.url("/api"))).await.unwrap();
    assert_eq!(api.bytes().await.unwrap(), "api");
    assert_eq!(t.available_api_permits(), 1);

    // A third download waits for a permit: it does not reach the server.
    let t3 = t.clone();
    let url3 = server.url("/audio/c");
    let (feed_c, got_c) = tokio::sync::oneshot::channel();
    tx.send(feed_c).await.unwrap();
    let third = tokio::spawn(async move {
        t3.send(Request::get(url3).class(RequestClass::Audio))
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let audio_seen = |srv: &common::Server| {
        srv.stats
            .requests()
            .iter()
            .filter(|s| s.path.starts_with("/audio"))
            .count()
    };
    assert_eq!(
        audio_seen(&server),
        2,
        "the third download is held back by the semaphore"
    );

    // Reading body A to the end frees its permit, and the third download goes.
    body_a.send(Ok(Bytes::from_static(b"aaaa"))).await.unwrap();
    drop(body_a);
    let mut chunks = a.into_chunks(2);
    let mut read = Vec::new();
    while let Some(c) = chunks.next().await {
        read.extend_from_slice(&c.unwrap());
    }
    assert_eq!(read, b"aaaa");
    let c = third.await.unwrap();
    let body_c = got_c.await.unwrap();
    assert_eq!(audio_seen(&server), 3);
    assert_eq!(t.available_audio_permits(), 0, "B and C hold the permits");

    // Dropping an unread body frees its permit too.
    drop(b);
    drop(c);
    drop((body_b, body_c));
    assert_eq!(t.available_audio_permits(), 2);
}

/// A budget that counts acquisitions.
#[derive(Debug, Default)]
struct Counting(AtomicUsize);

#[async_trait::async_trait]
impl RateBudget for Counting {
    async fn acquire(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn only_api_requests_draw_from_the_rate_budget() {
    let server = start(Mode::Plain, |_| async { ok("x") }).await;
    let budget = Arc::new(Counting::default());
    let t = server
        .builder(config())
        .rate_budget(budget.clone())
        .build()
        .unwrap();
    for _ in 0..3 {
        t.send(Request::get(server.url("/api"))).await.unwrap();
    }
    for _ in 0..2 {
        t.send(Request::get(server.url("/cdn")).class(RequestClass::Audio))
            .await
            .unwrap();
    }
    assert_eq!(budget.0.load(Ordering::SeqCst), 3);
    assert_eq!(server.stats.requests().len(), 5);
}

#[test]
fn zero_bounds_are_rejected_at_build() {
    for cfg in [
        TransportConfig {
            max_in_flight_api: 0,
            ..config()
        },
        TransportConfig {
            max_in_flight_audio: 0,
            ..config()
        },
        TransportConfig {
            rate_limit_per_minute: Some(0),
            ..config()
        },
        TransportConfig {
            user_agent: "bad\nagent".to_owned(),
            ..config()
        },
    ] {
        let err = bcfy_transport::HttpTransport::builder()
            .config(cfg)
            .build()
            .unwrap_err();
        assert_eq!(
            err.kind(),
            bcfy_transport::TransportErrorKind::Config,
            "{err}"
        );
    }
}
