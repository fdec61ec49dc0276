//! Unit tests of the audio consumer: paused tokio time and the transport's scripted mock.

#![allow(
    clippy::float_cmp,
    clippy::many_single_char_names,
    clippy::field_reassign_with_default,
    clippy::duration_suboptimal_units
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bcfy_audio::{AudioConsumer, AudioOutcome};
use bcfy_proto::{
    AudioConfig, Call, LiveCallEnvelope, NodeId, SessionToken, SystemId, TalkgroupId,
};
use bcfy_transport::mock::{MockResponse, MockTransport, RecordedRequest};
use bcfy_transport::{RequestClass, Transport, TransportErrorKind};
use http::StatusCode;
use tokio::sync::mpsc;
use tokio::time::Instant;
use url::Url;

const CDN: &str = "https://calls.broadcastify.com";

/// A minimal MP4 header (`ftyp` box) followed by filler.
fn m4a(len: usize, fill: u8) -> Vec<u8> {
    let mut v = b"\0\0\0\x18ftypM4A \0\0\0\0M4A mp42isom".to_vec();
    v.resize(len.max(v.len()), fill);
    v
}

fn call(n: u64) -> Arc<Call> {
    let mut c = Call::new(
        1_758_428_000 + n as i64,
        NodeId::new(2893),
        format!("{}-512", 1_758_427_000 + n),
    );
    c.hash = Some("abcd1234".to_owned());
    c.sid = Some(SystemId::new(4290));
    c.talkgroup = Some(TalkgroupId::new(512));
    c.duration_secs = Some(2.5);
    Arc::new(c)
}

fn path(n: u64) -> String {
    format!("/abcd1234/2893/{}-512.m4a", 1_758_427_000 + n)
}

fn envelope(n: u64) -> LiveCallEnvelope {
    LiveCallEnvelope::new(call(n), None, SystemTime::UNIX_EPOCH)
}

fn config() -> AudioConfig {
    AudioConfig {
        initial_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(10),
        ..AudioConfig::default()
    }
}

/// Scripts per path: each request takes the next response (the last repeats); records times.
#[derive(Clone, Default)]
struct Script {
    routes: Arc<Mutex<HashMap<String, Vec<MockResponse>>>>,
    times: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl Script {
    fn install(mock: &MockTransport) -> Self {
        let s = Script::default();
        let s2 = s.clone();
        mock.on_fn(move |req: &RecordedRequest| {
            s2.times
                .lock()
                .unwrap()
                .push((req.path().to_owned(), Instant::now()));
            let mut routes = s2.routes.lock().unwrap();
            let q = routes.get_mut(req.path())?;
            Some(if q.len() > 1 {
                q.remove(0)
            } else {
                q[0].clone()
            })
        });
        s
    }

    fn on(&self, n: u64, responses: Vec<MockResponse>) {
        self.routes.lock().unwrap().insert(path(n), responses);
    }

    fn hits(&self, n: u64) -> Vec<Instant> {
        let p = path(n);
        self.times
            .lock()
            .unwrap()
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, t)| *t)
            .collect()
    }
}

fn rig(config: AudioConfig) -> (MockTransport, Script, Arc<AudioConsumer>) {
    let mock = MockTransport::new();
    mock.session().set(Some(SessionToken::new("tok-9")));
    let script = Script::install(&mock);
    let consumer = AudioConsumer::new(mock.shared(), Url::parse(CDN).unwrap(), config)
        .unwrap()
        .with_site(&Url::parse("https://www.broadcastify.com").unwrap())
        .with_rng_seed(3);
    (mock, script, Arc::new(consumer))
}

async fn run_all(consumer: &Arc<AudioConsumer>, ns: &[u64], out_cap: usize) -> Vec<AudioOutcome> {
    let (in_tx, in_rx) = mpsc::channel(ns.len().max(1));
    let (out_tx, mut out_rx) = mpsc::channel(out_cap);
    for &n in ns {
        in_tx.send(envelope(n)).await.unwrap();
    }
    drop(in_tx);
    let c = Arc::clone(consumer);
    let task = tokio::spawn(async move { c.run(in_rx, out_tx).await });
    let mut out = Vec::new();
    while let Some(o) = out_rx.recv().await {
        out.push(o);
    }
    task.await.unwrap().unwrap();
    out
}

fn ok(o: &AudioOutcome) -> &bcfy_proto::AudioPayloadEvent {
    match o {
        AudioOutcome::Ok(e) => e,
        AudioOutcome::Failed(f) => panic!("{} failed: {}", f.call_id, f.error),
    }
}

fn failed(o: &AudioOutcome) -> &bcfy_proto::AudioFailedEvent {
    match o {
        AudioOutcome::Failed(f) => f,
        AudioOutcome::Ok(e) => panic!("{} unexpectedly ok", e.call_id),
    }
}

#[tokio::test(start_paused = true)]
async fn downloads_once_with_cookie_referer_and_server_content_type() {
    let (mock, script, consumer) = rig(config());
    let body = m4a(20_000, 7);
    script.on(
        1,
        vec![MockResponse::ok(body.clone()).header("content-type", "audio/aac")],
    );
    script.on(2, vec![MockResponse::ok(body.clone())]);
    let out = run_all(&consumer, &[1, 2], 4).await;
    let a = ok(&out[0]);
    assert_eq!(a.payload.as_ref(), body.as_slice());
    assert_eq!(
        (a.content_type.as_str(), a.content_type_sniffed),
        ("audio/aac", false)
    );
    assert_eq!((a.sequence, a.start_offset, a.end_offset), (0, 0.0, 2.5));
    assert_eq!(a.call_id, call(1).call_id());
    let b = ok(&out[1]);
    assert_eq!(
        (b.content_type.as_str(), b.content_type_sniffed),
        ("audio/mp4", true)
    );
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2, "each call downloaded once");
    let r = &reqs[0];
    assert_eq!(r.url.as_str(), format!("{CDN}{}", path(1)));
    assert_eq!(r.class, RequestClass::Audio);
    assert_eq!(r.header("cookie"), Some("bcfyuser1=tok-9"));
    assert_eq!(
        r.header("referer"),
        Some("https://www.broadcastify.com/calls/")
    );
    assert!(r.header("user-agent").unwrap().contains("Chrome/126"));
    assert_eq!(consumer.stats().downloaded, 2);
    assert_eq!(consumer.stats().bytes, 40_000);
}

#[tokio::test(start_paused = true)]
async fn outcomes_keep_input_order_while_downloads_overlap() {
    let mut c = config();
    c.max_concurrency = 4;
    let (_mock, script, consumer) = rig(c);
    // The first call is the slowest, the last the fastest.
    for n in 1..=6u64 {
        let delay = Duration::from_secs(7 - n);
        script.on(
            n,
            vec![MockResponse::ok(m4a(100 + n as usize, n as u8)).delay(delay)],
        );
    }
    let started = Instant::now();
    let out = run_all(&consumer, &[1, 2, 3, 4, 5, 6], 8).await;
    let ids: Vec<_> = out.iter().map(|o| o.call_id().clone()).collect();
    assert_eq!(ids, (1..=6).map(|n| call(n).call_id()).collect::<Vec<_>>());
    for (i, o) in out.iter().enumerate() {
        assert_eq!(ok(o).payload.len(), 101 + i);
    }
    // Four ran at once: calls 1-4 all started at t0. A finished download keeps its slot until
    // the calls before it are out (that is what bounds memory), so 5 and 6 start when call 1
    // (6 s) is published: 8 s in all, not the 21 s of one at a time.
    for n in 1..=4 {
        assert_eq!(script.hits(n)[0], started, "call {n} should start at once");
    }
    assert_eq!(script.hits(5)[0] - started, Duration::from_secs(6));
    assert_eq!(started.elapsed(), Duration::from_secs(8));
}

#[tokio::test(start_paused = true)]
async fn a_truncated_body_is_retried_with_backoff() {
    let (_mock, script, consumer) = rig(config());
    let body = m4a(1000, 1);
    script.on(
        1,
        vec![
            MockResponse::ok(body[..400].to_vec()).header("content-length", "1000"),
            MockResponse::ok(body[..999].to_vec()).header("content-length", "1000"),
            MockResponse::ok(body.clone()).header("content-length", "1000"),
        ],
    );
    let out = run_all(&consumer, &[1], 1).await;
    assert_eq!(ok(&out[0]).payload.as_ref(), body.as_slice());
    let hits = script.hits(1);
    assert_eq!(hits.len(), 3);
    let g1 = (hits[1] - hits[0]).as_secs_f64();
    let g2 = (hits[2] - hits[1]).as_secs_f64();
    assert!(
        (0.45..=0.55).contains(&g1) && (0.9..=1.1).contains(&g2),
        "{g1} {g2}"
    );
    assert_eq!(consumer.stats().retries, 2);
}

#[tokio::test(start_paused = true)]
async fn resets_5xx_and_timeouts_are_retried() {
    let (_mock, script, consumer) = rig(config());
    let body = m4a(3000, 2);
    script.on(
        1,
        vec![
            MockResponse::ok(body[..1000].to_vec()).fail_body(TransportErrorKind::Body),
            MockResponse::new(StatusCode::SERVICE_UNAVAILABLE),
            MockResponse::ok(body.clone()).delay(Duration::from_hours(1)),
            MockResponse::ok(body.clone()),
        ],
    );
    let out = run_all(&consumer, &[1], 1).await;
    assert_eq!(ok(&out[0]).payload.len(), 3000);
    assert_eq!(script.hits(1).len(), 4);
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_budget_is_reported_in_order_and_later_calls_still_flow() {
    let mut c = config();
    c.max_attempts = 3;
    let (_mock, script, consumer) = rig(c);
    script.on(1, vec![MockResponse::ok(m4a(100, 1))]);
    script.on(2, vec![MockResponse::new(StatusCode::BAD_GATEWAY)]);
    script.on(3, vec![MockResponse::ok(m4a(300, 3))]);
    let out = run_all(&consumer, &[1, 2, 3], 4).await;
    assert_eq!(out.len(), 3);
    ok(&out[0]);
    let f = failed(&out[1]);
    assert_eq!((f.attempts, &f.call_id), (3, &call(2).call_id()));
    assert!(f.error.contains("502"), "{}", f.error);
    assert_eq!(ok(&out[2]).payload.len(), 300);
    assert_eq!(script.hits(2).len(), 3);
    assert_eq!(consumer.stats().failed, 1);
}

#[tokio::test(start_paused = true)]
async fn not_found_and_client_errors_are_final() {
    let (_mock, script, consumer) = rig(config());
    script.on(1, vec![MockResponse::new(StatusCode::NOT_FOUND)]);
    script.on(2, vec![MockResponse::new(StatusCode::FORBIDDEN)]);
    let out = run_all(&consumer, &[1, 2], 4).await;
    assert_eq!(failed(&out[0]).attempts, 1);
    assert!(failed(&out[0]).error.contains("not_found"));
    assert_eq!(failed(&out[1]).attempts, 1);
    assert_eq!((script.hits(1).len(), script.hits(2).len()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn bodies_over_max_bytes_are_refused() {
    let mut c = config();
    c.max_bytes = 1000;
    c.chunk_size = 256;
    let (_mock, script, consumer) = rig(c);
    script.on(
        1,
        vec![MockResponse::ok(m4a(2000, 1)).header("content-length", "2000")],
    );
    // No Content-Length: the cap is enforced while reading the chunks.
    script.on(
        2,
        vec![MockResponse::ok(vec![0u8; 600]).chunks([vec![0u8; 600], vec![0u8; 600]])],
    );
    script.on(3, vec![MockResponse::ok(m4a(1000, 1))]);
    let out = run_all(&consumer, &[1, 2, 3], 4).await;
    assert!(failed(&out[0]).error.contains("too_large"));
    assert!(failed(&out[1]).error.contains("too_large"));
    assert_eq!(ok(&out[2]).payload.len(), 1000);
    assert_eq!((script.hits(1).len(), script.hits(2).len()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_call_without_a_safe_url_fails_without_a_request() {
    let (mock, _script, consumer) = rig(config());
    let mut c = Call::new(1, NodeId::new(1), "../../etc/passwd");
    c.hash = None;
    let outcome = consumer.download(Arc::new(c)).await;
    let f = failed(&outcome);
    assert_eq!(f.attempts, 0);
    assert!(mock.requests().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_full_output_channel_pauses_downloads() {
    let mut c = config();
    c.max_concurrency = 2;
    let (mock, script, consumer) = rig(c);
    for n in 1..=10 {
        script.on(n, vec![MockResponse::ok(m4a(64, n as u8))]);
    }
    let (in_tx, in_rx) = mpsc::channel(16);
    let (out_tx, mut out_rx) = mpsc::channel(1);
    for n in 1..=10 {
        in_tx.send(envelope(n)).await.unwrap();
    }
    drop(in_tx);
    let cons = Arc::clone(&consumer);
    let task = tokio::spawn(async move { cons.run(in_rx, out_tx).await });
    tokio::time::sleep(Duration::from_mins(1)).await;
    // One outcome sits in the channel, one waits to be sent, two more are buffered at most.
    let sent = mock.requests().len();
    assert!(sent <= 4, "downloads must pause while nobody reads: {sent}");
    let mut got = Vec::new();
    while let Some(o) = out_rx.recv().await {
        got.push(o.call_id().clone());
    }
    task.await.unwrap().unwrap();
    assert_eq!(got, (1..=10).map(|n| call(n).call_id()).collect::<Vec<_>>());
    assert_eq!(mock.requests().len(), 10);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_output_ends_the_run() {
    let (_mock, script, consumer) = rig(config());
    script.on(1, vec![MockResponse::ok(m4a(64, 1))]);
    let (in_tx, in_rx) = mpsc::channel(4);
    let (out_tx, out_rx) = mpsc::channel(1);
    drop(out_rx);
    in_tx.send(envelope(1)).await.unwrap();
    let err = consumer.run(in_rx, out_tx).await.unwrap_err();
    assert_eq!(err.kind(), bcfy_audio::AudioErrorKind::OutputClosed);
}

#[tokio::test(start_paused = true)]
async fn retry_after_on_audio_is_honoured() {
    let (_mock, script, consumer) = rig(config());
    script.on(
        1,
        vec![
            MockResponse::new(StatusCode::TOO_MANY_REQUESTS).header("retry-after", "4"),
            MockResponse::ok(m4a(128, 1)),
        ],
    );
    let out = run_all(&consumer, &[1], 1).await;
    assert_eq!(ok(&out[0]).payload.len(), 128);
    let hits = script.hits(1);
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[1] - hits[0], Duration::from_secs(4));
}
