//! A slow reader slows the server down: the body is pulled only as fast as the caller reads.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bcfy_transport::{Request, RequestClass, Transport};
use bytes::Bytes;
use common::{Mode, channel_body, config, start};
use futures::StreamExt;

const TOTAL: u64 = 64 * 1024 * 1024;
const FRAME: usize = 64 * 1024;

/// Waits until `counter` stops moving (the server's writes are blocked), returns its value.
async fn settled(counter: &AtomicU64) -> u64 {
    let mut last = counter.load(Ordering::SeqCst);
    let mut still = 0;
    // Sampling is the only way to observe "nothing happens"; 6 quiet samples of 50 ms.
    while still < 6 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = counter.load(Ordering::SeqCst);
        if now == last {
            still += 1;
        } else {
            still = 0;
            last = now;
        }
    }
    last
}

async fn slow_reader_stalls_the_server(mode: Mode) {
    let handed = Arc::new(AtomicU64::new(0));
    let h = Arc::clone(&handed);
    let server = start(mode, move |_| {
        let h = Arc::clone(&h);
        async move {
            // Capacity 1: the producer can only run ahead of hyper's writes by one frame, so
            // `handed` tracks what the server managed to write (plus one frame).
            let (tx, body) = channel_body(1);
            tokio::spawn(async move {
                let frame = Bytes::from(vec![7u8; FRAME]);
                let mut sent = 0u64;
                while sent < TOTAL {
                    if tx.send(Ok(frame.clone())).await.is_err() {
                        return;
                    }
                    sent += FRAME as u64;
                    h.store(sent, Ordering::SeqCst);
                }
            });
            let mut r = http::Response::new(body);
            r.headers_mut()
                .insert("content-length", TOTAL.to_string().parse().unwrap());
            r
        }
    })
    .await;
    let t = server.client(config());
    let resp = t
        .send(Request::get(server.url("/audio/big.m4a")).class(RequestClass::Audio))
        .await
        .unwrap();
    let mut chunks = resp.into_chunks(8192);
    let first = chunks.next().await.unwrap().unwrap();
    assert_eq!(first.len(), 8192);

    // The client stops reading: the server's writes must stall far short of the whole body
    // (socket buffers, hyper's read buffer and the h2 window are all it may fill).
    let stalled_at = settled(&handed).await;
    eprintln!(
        "{mode:?}: server stalled after {} KiB of {} KiB",
        stalled_at / 1024,
        TOTAL / 1024
    );
    assert!(
        stalled_at < TOTAL / 4,
        "{mode:?}: server wrote {stalled_at} bytes unread"
    );

    // Reading resumes: the server resumes and the whole body arrives intact.
    let mut received = first.len() as u64;
    while let Some(c) = chunks.next().await {
        let c = c.unwrap();
        assert!(c.iter().all(|&b| b == 7));
        received += c.len() as u64;
    }
    assert_eq!(received, TOTAL);
    assert_eq!(handed.load(Ordering::SeqCst), TOTAL);
}

#[tokio::test]
async fn slow_reader_stalls_an_http1_server() {
    slow_reader_stalls_the_server(Mode::Plain).await;
}

#[tokio::test]
async fn slow_reader_stalls_an_h2_server() {
    slow_reader_stalls_the_server(Mode::TlsH2).await;
}
