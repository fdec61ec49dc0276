//! `TranscriptionPipeline` with in-process fake providers under paused tokio time: order,
//! bounds, back-pressure, retries, call assembly.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bcfy_proto::{CallId, TranscriptionConfig};
use bcfy_transcribe::{
    PipelineError, RetryPolicy, TranscribeRequest, Transcriber, Transcript, TranscriptionError,
    TranscriptionErrorKind, TranscriptionOutcome, TranscriptionPipeline,
};
use bytes::Bytes;
use common::{call, payload, whole};
use http::StatusCode;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

type Script = dyn Fn(&TranscribeRequest, usize) -> (Duration, Result<Transcript, TranscriptionError>)
    + Send
    + Sync;

/// A provider whose answer and latency per (request, attempt) come from a closure, optionally
/// held at a gate, recording every attempt.
struct Fake {
    script: Box<Script>,
    gate: Option<Arc<Semaphore>>,
    attempts: Mutex<HashMap<CallId, usize>>,
    log: Mutex<Vec<(CallId, Bytes, Instant)>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl std::fmt::Debug for Fake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fake")
    }
}

impl Fake {
    fn new(
        script: impl Fn(&TranscribeRequest, usize) -> (Duration, Result<Transcript, TranscriptionError>)
        + Send
        + Sync
        + 'static,
    ) -> Arc<Self> {
        Self::gated(script, None)
    }

    fn gated(
        script: impl Fn(&TranscribeRequest, usize) -> (Duration, Result<Transcript, TranscriptionError>)
        + Send
        + Sync
        + 'static,
        gate: Option<Arc<Semaphore>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            script: Box::new(script),
            gate,
            attempts: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        })
    }

    fn attempts(&self, call_id: &CallId) -> usize {
        self.attempts
            .lock()
            .unwrap()
            .get(call_id)
            .copied()
            .unwrap_or(0)
    }

    fn log(&self) -> Vec<(CallId, Bytes, Instant)> {
        self.log.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Transcriber for Fake {
    async fn transcribe(
        &self,
        request: TranscribeRequest,
    ) -> Result<Transcript, TranscriptionError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            let n = attempts.entry(request.call_id.clone()).or_default();
            *n += 1;
            *n
        };
        self.log.lock().unwrap().push((
            request.call_id.clone(),
            request.audio.clone(),
            Instant::now(),
        ));
        let (delay, result) = (self.script)(&request, attempt);
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        tokio::time::sleep(delay).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

#[allow(clippy::unnecessary_wraps)] // shaped like a provider answer
fn echo_text(request: &TranscribeRequest) -> Result<Transcript, TranscriptionError> {
    Ok(Transcript::new(
        String::from_utf8_lossy(&request.audio).into_owned(),
    ))
}

fn config(max_concurrency: usize) -> TranscriptionConfig {
    TranscriptionConfig {
        max_concurrency,
        ..TranscriptionConfig::default()
    }
}

fn no_jitter() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(30),
        jitter_ratio: 0.0,
        seed: Some(1),
    }
}

/// Runs `pipeline` over `events` (input closed afterwards) and collects every outcome.
async fn run_all(
    pipeline: &TranscriptionPipeline,
    events: Vec<bcfy_proto::AudioPayloadEvent>,
) -> Vec<TranscriptionOutcome> {
    let (in_tx, in_rx) = mpsc::channel(4);
    let (out_tx, mut out_rx) = mpsc::channel(4);
    let feed = async move {
        for event in events {
            in_tx.send(event).await.unwrap();
        }
    };
    let collect = async move {
        let mut outcomes = Vec::new();
        while let Some(outcome) = out_rx.recv().await {
            outcomes.push(outcome);
        }
        outcomes
    };
    let (result, (), outcomes) = tokio::join!(pipeline.run(in_rx, out_tx), feed, collect);
    result.unwrap();
    outcomes
}

fn text(outcome: &TranscriptionOutcome) -> &str {
    match outcome {
        TranscriptionOutcome::Complete(result) => &result.text,
        TranscriptionOutcome::Failed(failed) => &failed.error,
    }
}

#[tokio::test(start_paused = true)]
async fn outcomes_follow_input_order_and_concurrency_is_bounded() {
    // Call 0 is the slowest, call 11 the fastest: completion order is the reverse of input order.
    let fake = Fake::new(|request, _| {
        let n: u64 = String::from_utf8_lossy(&request.audio)[5..]
            .parse()
            .unwrap();
        (Duration::from_millis(100 * (12 - n)), echo_text(request))
    });
    let pipeline = TranscriptionPipeline::new(fake.clone(), &config(3));
    let outcomes = run_all(&pipeline, (0..12).map(whole).collect()).await;
    let texts: Vec<_> = outcomes.iter().map(text).collect();
    let expected: Vec<_> = (0..12).map(|n| format!("call {n}")).collect();
    assert_eq!(texts, expected);
    for (n, outcome) in outcomes.iter().enumerate() {
        assert_eq!(outcome.call_id(), &common::call_id_of(n as u32));
    }
    assert_eq!(
        fake.max_in_flight.load(Ordering::SeqCst),
        3,
        "the bound is reached, never passed"
    );
    let stats = pipeline.stats();
    assert_eq!(stats.max_in_flight, 3);
    assert_eq!(
        (
            stats.payloads_received,
            stats.calls_started,
            stats.completed
        ),
        (12, 12, 12)
    );
    assert_eq!((stats.failed, stats.in_flight, stats.buffered), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn blocked_provider_fills_the_input_and_the_sender_waits() {
    let gate = Arc::new(Semaphore::new(0));
    let fake = Fake::gated(
        |request, _| (Duration::ZERO, echo_text(request)),
        Some(gate.clone()),
    );
    let pipeline = Arc::new(TranscriptionPipeline::new(fake.clone(), &config(2)));
    assert_eq!(pipeline.reorder_window(), 4);
    let (in_tx, in_rx) = mpsc::channel(2);
    let (out_tx, mut out_rx) = mpsc::channel(16);
    let runner = tokio::spawn({
        let pipeline = Arc::clone(&pipeline);
        async move { pipeline.run(in_rx, out_tx).await }
    });

    let mut accepted = 0_u32;
    for n in 0..20 {
        if in_tx.try_send(whole(n)).is_err() {
            break;
        }
        accepted += 1;
        // Let the pipeline take what it will (paused time: this returns once all tasks idle).
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Window (4 calls held) + channel capacity (2): the 7th payload has nowhere to go.
    assert_eq!(accepted, 6);
    assert_eq!(fake.in_flight.load(Ordering::SeqCst), 2);
    assert_eq!(pipeline.stats().buffered, 4);
    let waiting = tokio::time::timeout(Duration::from_hours(1), in_tx.send(whole(6))).await;
    assert!(
        waiting.is_err(),
        "the sender waits while the provider is stuck"
    );

    // Unblock: everything drains in order.
    gate.add_permits(1000);
    in_tx.send(whole(6)).await.unwrap();
    drop(in_tx);
    let mut texts = Vec::new();
    while let Some(outcome) = out_rx.recv().await {
        texts.push(text(&outcome).to_owned());
    }
    runner.await.unwrap().unwrap();
    assert_eq!(
        texts,
        (0..7).map(|n| format!("call {n}")).collect::<Vec<_>>()
    );
}

#[tokio::test(start_paused = true)]
async fn slow_consumer_also_back_pressures() {
    let fake = Fake::new(|request, _| (Duration::from_millis(5), echo_text(request)));
    let pipeline = Arc::new(TranscriptionPipeline::new(fake.clone(), &config(2)));
    let (in_tx, in_rx) = mpsc::channel(2);
    let (out_tx, mut out_rx) = mpsc::channel(1);
    let runner = tokio::spawn({
        let pipeline = Arc::clone(&pipeline);
        async move { pipeline.run(in_rx, out_tx).await }
    });
    let mut accepted = 0;
    for n in 0..20 {
        if in_tx.try_send(whole(n)).is_err() {
            break;
        }
        accepted += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // 1 outcome in the output channel + 4 held + 2 in the input channel.
    assert_eq!(accepted, 7);
    assert_eq!(
        fake.log().len(),
        5,
        "no call is transcribed beyond the window"
    );
    drop(in_tx);
    let mut count = 0;
    while let Some(outcome) = out_rx.recv().await {
        assert_eq!(text(&outcome), format!("call {count}"));
        count += 1;
    }
    assert_eq!(count, 7);
    runner.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn server_errors_back_off_then_succeed() {
    let fake = Fake::new(|request, attempt| {
        let result = if attempt < 3 {
            Err(TranscriptionError::http(
                StatusCode::INTERNAL_SERVER_ERROR,
                b"oops",
            ))
        } else {
            echo_text(request)
        };
        (Duration::ZERO, result)
    });
    let pipeline =
        TranscriptionPipeline::new(fake.clone(), &config(2)).with_retry_policy(no_jitter());
    let started = Instant::now();
    let outcomes = run_all(&pipeline, vec![whole(0)]).await;
    assert!(outcomes[0].is_complete(), "{outcomes:?}");
    assert_eq!(text(&outcomes[0]), "call 0");
    assert_eq!(fake.attempts(&common::call_id_of(0)), 3);
    let times: Vec<_> = fake.log().iter().map(|(_, _, at)| *at - started).collect();
    assert_eq!(
        times,
        [
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(3)
        ]
    );
    assert_eq!(pipeline.stats().retries, 2);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_unless_longer_than_max_backoff() {
    let fake = Fake::new(|request, attempt| {
        let wait = if request.audio.as_ref() == b"call 0" {
            5
        } else {
            120
        };
        let result = if attempt == 1 {
            Err(TranscriptionError::http(StatusCode::TOO_MANY_REQUESTS, b"")
                .with_retry_after(Some(Duration::from_secs(wait))))
        } else {
            echo_text(request)
        };
        (Duration::ZERO, result)
    });
    let pipeline =
        TranscriptionPipeline::new(fake.clone(), &config(1)).with_retry_policy(no_jitter());
    let started = Instant::now();
    let outcomes = run_all(&pipeline, vec![whole(0), whole(1)]).await;
    assert!(outcomes[0].is_complete());
    let call0 = common::call_id_of(0);
    let retried: Vec<_> = fake
        .log()
        .into_iter()
        .filter(|(id, _, _)| *id == call0)
        .collect();
    assert_eq!(retried.len(), 2);
    assert_eq!(
        retried[1].2 - started,
        Duration::from_secs(5),
        "waited for Retry-After"
    );
    // Retry-After 120 s > max_backoff 30 s: fail now rather than stall the calls behind.
    let TranscriptionOutcome::Failed(failed) = &outcomes[1] else {
        panic!("{outcomes:?}")
    };
    assert!(failed.error.contains("429"), "{}", failed.error);
    assert_eq!(fake.attempts(&common::call_id_of(1)), 1);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_pauses_every_call_not_only_the_one_that_got_it() {
    // Two slots. Call 0 answers 429 (Retry-After 5 s) after 1 s; call 1 holds the other slot
    // for 2 s; call 2 gets that slot at t=2 but must not upload before t=1+5.
    let fake = Fake::new(|request, attempt| match (request.audio.as_ref(), attempt) {
        (b"call 0", 1) => (
            Duration::from_secs(1),
            Err(TranscriptionError::http(StatusCode::TOO_MANY_REQUESTS, b"")
                .with_retry_after(Some(Duration::from_secs(5)))),
        ),
        (b"call 1", _) => (Duration::from_secs(2), echo_text(request)),
        _ => (Duration::ZERO, echo_text(request)),
    });
    let pipeline =
        TranscriptionPipeline::new(fake.clone(), &config(2)).with_retry_policy(no_jitter());
    let started = Instant::now();
    let outcomes = run_all(&pipeline, vec![whole(0), whole(1), whole(2)]).await;
    assert!(
        outcomes.iter().all(TranscriptionOutcome::is_complete),
        "{outcomes:?}"
    );
    let first_upload_of_call2 = fake
        .log()
        .into_iter()
        .find(|(id, _, _)| *id == common::call_id_of(2))
        .map(|(_, _, at)| at - started)
        .unwrap();
    assert_eq!(first_upload_of_call2, Duration::from_secs(6));
}

#[tokio::test(start_paused = true)]
async fn final_errors_are_not_retried_and_network_errors_exhaust_attempts() {
    let fake = Fake::new(|request, _| {
        let result = match request.audio.as_ref() {
            b"call 0" => Err(TranscriptionError::http(
                StatusCode::UNAUTHORIZED,
                b"no key",
            )),
            b"call 1" => Err(TranscriptionError::new(
                TranscriptionErrorKind::Network,
                "reset",
            )),
            b"call 2" => Err(TranscriptionError::new(
                TranscriptionErrorKind::EmptyText,
                "blank",
            )),
            _ => echo_text(request),
        };
        (Duration::ZERO, result)
    });
    let pipeline =
        TranscriptionPipeline::new(fake.clone(), &config(2)).with_retry_policy(no_jitter());
    let outcomes = run_all(&pipeline, (0..4).map(whole).collect()).await;
    let attempts: Vec<_> = (0..4)
        .map(|n| fake.attempts(&common::call_id_of(n)))
        .collect();
    assert_eq!(attempts, [1, 4, 1, 1]);
    assert!(
        text(&outcomes[0]).starts_with("http 401"),
        "{}",
        text(&outcomes[0])
    );
    assert!(
        text(&outcomes[1]).contains("after 4 attempts"),
        "{}",
        text(&outcomes[1])
    );
    assert!(
        text(&outcomes[2]).starts_with("empty_text"),
        "{}",
        text(&outcomes[2])
    );
    assert!(outcomes[3].is_complete());
    let stats = pipeline.stats();
    assert_eq!((stats.completed, stats.failed, stats.retries), (1, 3, 3));
}

#[tokio::test(start_paused = true)]
async fn seeded_jitter_is_reproducible() {
    async fn waits(seed: u64) -> Vec<Duration> {
        let fake = Fake::new(|_, _| {
            (
                Duration::ZERO,
                Err(TranscriptionError::new(
                    TranscriptionErrorKind::Network,
                    "down",
                )),
            )
        });
        let policy = RetryPolicy {
            jitter_ratio: 0.5,
            seed: Some(seed),
            ..no_jitter()
        };
        let pipeline =
            TranscriptionPipeline::new(fake.clone(), &config(1)).with_retry_policy(policy);
        run_all(&pipeline, vec![whole(0)]).await;
        let log = fake.log();
        log.windows(2).map(|pair| pair[1].2 - pair[0].2).collect()
    }
    let first = waits(7).await;
    assert_eq!(first.len(), 3);
    assert_eq!(first, waits(7).await);
    assert_ne!(first, waits(8).await);
    // Each wait is within ±50 % of 1 s, 2 s, 4 s.
    for (wait, base) in first.iter().zip([1.0, 2.0, 4.0]) {
        let secs = wait.as_secs_f64();
        assert!(secs >= base * 0.5 && secs <= base * 1.5, "{secs} vs {base}");
    }
}

#[tokio::test(start_paused = true)]
async fn payloads_are_concatenated_per_call_in_sequence_order() {
    let fake = Fake::new(|request, _| (Duration::ZERO, echo_text(request)));
    let pipeline = TranscriptionPipeline::new(fake.clone(), &config(2));
    let a = call(1, Some(6.0));
    let b = call(2, Some(10.0));
    let c = call(3, None);
    let d = call(4, Some(4.0));
    let events = vec![
        // a: two halves out of order plus a duplicate; complete when the offsets reach 6 s.
        payload(&a, 1, 3.0, 4.5, "CD"),
        payload(&a, 1, 3.0, 4.5, "XX"),
        payload(&a, 0, 0.0, 3.0, "AB"),
        payload(&a, 2, 4.5, 6.0, "EF"),
        // b: only [0, 3] of 10 s arrives; the next call's payload ends it.
        payload(&b, 0, 0.0, 3.0, "partial"),
        // c: no known duration, so its one payload is final.
        payload(&c, 0, 0.0, 0.0, "no duration"),
        // d: still open when the input closes.
        payload(&d, 0, 0.0, 1.0, "tail"),
    ];
    let outcomes = run_all(&pipeline, events).await;
    let texts: Vec<_> = outcomes.iter().map(text).collect();
    assert_eq!(texts, ["ABCDEF", "partial", "no duration", "tail"]);
    assert_eq!(fake.log().len(), 4, "one upload per call");
    assert_eq!(pipeline.stats().payloads_received, 7);
}

#[tokio::test(start_paused = true)]
async fn smallest_window_still_assembles_multi_payload_calls() {
    let fake = Fake::new(|request, _| (Duration::from_millis(3), echo_text(request)));
    let pipeline = TranscriptionPipeline::new(fake, &config(1)).with_reorder_window(1);
    assert_eq!(pipeline.reorder_window(), 2);
    let a = call(1, Some(4.0));
    let b = call(2, Some(4.0));
    let events = vec![
        payload(&a, 0, 0.0, 2.0, "a1"),
        payload(&a, 1, 2.0, 4.0, "a2"),
        payload(&b, 0, 0.0, 2.0, "b1"),
        payload(&b, 1, 2.0, 4.0, "b2"),
    ];
    let outcomes = run_all(&pipeline, events).await;
    let texts: Vec<_> = outcomes.iter().map(text).collect();
    assert_eq!(texts, ["a1a2", "b1b2"]);
}

#[tokio::test(start_paused = true)]
async fn a_complete_call_is_sent_without_waiting_for_the_next_one() {
    let fake = Fake::new(|request, _| (Duration::from_millis(10), echo_text(request)));
    let pipeline = Arc::new(TranscriptionPipeline::new(fake, &config(2)));
    let (in_tx, in_rx) = mpsc::channel(4);
    let (out_tx, mut out_rx) = mpsc::channel(4);
    let runner = tokio::spawn({
        let pipeline = Arc::clone(&pipeline);
        async move { pipeline.run(in_rx, out_tx).await }
    });
    in_tx.send(whole(0)).await.unwrap();
    // The input stays open: the outcome must come anyway.
    let outcome = out_rx.recv().await.unwrap();
    assert_eq!(text(&outcome), "call 0");
    drop(in_tx);
    runner.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn results_carry_call_and_language() {
    let fake = Fake::new(|request, _| {
        let mut transcript = echo_text(request).unwrap();
        if request.audio.as_ref() == b"call 1" {
            transcript.language = Some("spanish".to_owned());
            transcript.average_logprob = Some(-0.4);
            transcript.segments = vec!["s".to_owned()];
        }
        (Duration::ZERO, Ok(transcript))
    });
    let pipeline = TranscriptionPipeline::new(fake, &config(2));
    let outcomes = run_all(&pipeline, vec![whole(0), whole(1)]).await;
    let [
        TranscriptionOutcome::Complete(first),
        TranscriptionOutcome::Complete(second),
    ] = &outcomes[..]
    else {
        panic!("{outcomes:?}")
    };
    assert_eq!(
        first.language, "en",
        "the requested language when none is detected"
    );
    assert_eq!(first.call.call_id(), first.call_id);
    assert_eq!(second.language, "spanish");
    assert_eq!(second.average_logprob, Some(-0.4));
    assert_eq!(second.segments, ["s"]);
}

#[tokio::test(start_paused = true)]
async fn empty_and_oversized_audio_fail_without_upload() {
    let fake = Fake::new(|request, _| (Duration::ZERO, echo_text(request)));
    let pipeline = TranscriptionPipeline::new(fake.clone(), &config(2)).with_max_call_bytes(8);
    let a = call(1, Some(2.0));
    let b = call(2, Some(2.0));
    let outcomes = run_all(
        &pipeline,
        vec![
            payload(&a, 0, 0.0, 2.0, ""),
            payload(&b, 0, 0.0, 2.0, "123456789"),
            whole(3),
        ],
    )
    .await;
    assert!(
        text(&outcomes[0]).starts_with("empty_audio"),
        "{}",
        text(&outcomes[0])
    );
    assert!(
        text(&outcomes[1]).starts_with("too_large"),
        "{}",
        text(&outcomes[1])
    );
    assert_eq!(text(&outcomes[2]), "call 3");
    assert_eq!(fake.log().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn dropped_output_stops_the_pipeline() {
    let fake = Fake::new(|request, _| (Duration::from_millis(1), echo_text(request)));
    let pipeline = TranscriptionPipeline::new(fake, &config(2));
    let (in_tx, in_rx) = mpsc::channel(4);
    let (out_tx, out_rx) = mpsc::channel(1);
    drop(out_rx);
    in_tx.send(whole(0)).await.unwrap();
    let result = pipeline.run(in_rx, out_tx).await;
    assert!(
        matches!(result, Err(PipelineError::OutputClosed)),
        "{result:?}"
    );
    assert_eq!(pipeline.stats().buffered, 0);
}

static_assertions::assert_impl_all!(TranscriptionPipeline: Send, Sync);
static_assertions::assert_impl_all!(bcfy_transcribe::OpenAiTranscriber: Send, Sync, Transcriber);
static_assertions::assert_obj_safe!(Transcriber);
