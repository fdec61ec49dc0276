//! `TranscriptionPipeline` over `OpenAiTranscriber` against the local stub (real sockets, real
//! time; assertions never depend on speed).

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bcfy_transcribe::{
    OpenAiTranscriber, RetryPolicy, TranscriptionOutcome, TranscriptionPipeline,
};
use common::{Reply, Stub, echo, whole};
use tokio::sync::{Semaphore, mpsc};

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        jitter_ratio: 0.1,
        seed: Some(42),
    }
}

async fn run(pipeline: &TranscriptionPipeline, calls: u32) -> Vec<TranscriptionOutcome> {
    let (in_tx, in_rx) = mpsc::channel(2);
    let (out_tx, mut out_rx) = mpsc::channel(2);
    let feed = async move {
        for n in 0..calls {
            in_tx.send(whole(n)).await.unwrap();
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

#[tokio::test]
async fn order_kept_when_later_calls_answer_first() {
    // Call n answers after (8 - n) * 15 ms: the server finishes them in reverse.
    let stub = Stub::start(|upload, index| {
        let n: u64 = String::from_utf8_lossy(&upload.file)[5..].parse().unwrap();
        echo(upload, index).delayed(Duration::from_millis((8 - n) * 15))
    })
    .await;
    let mut config = stub.config();
    config.max_concurrency = 4;
    let pipeline =
        TranscriptionPipeline::new(Arc::new(OpenAiTranscriber::new(&config).unwrap()), &config);
    let outcomes = run(&pipeline, 8).await;
    let texts: Vec<_> = outcomes.iter().map(text).collect();
    assert_eq!(
        texts,
        (0..8).map(|n| format!("call {n}")).collect::<Vec<_>>()
    );
    let TranscriptionOutcome::Complete(first) = &outcomes[0] else {
        panic!()
    };
    assert_eq!(first.language, "english", "verbose_json language kept");
    assert_eq!(first.segments, ["call 0"]);
    assert_eq!(stub.uploads().len(), 8);
}

#[tokio::test]
async fn concurrency_bound_holds_at_the_server() {
    let gate = Arc::new(Semaphore::new(0));
    let stub = Stub::start_with(echo, Some(gate.clone())).await;
    let mut config = stub.config();
    config.max_concurrency = 3;
    let pipeline = Arc::new(TranscriptionPipeline::new(
        Arc::new(OpenAiTranscriber::new(&config).unwrap()),
        &config,
    ));
    let runner = tokio::spawn({
        let pipeline = Arc::clone(&pipeline);
        async move { run(&pipeline, 10).await }
    });
    let requests = || stub.state.requests.load(Ordering::SeqCst);
    let mut released = 0;
    while released < 10 {
        // Wait until the pipeline has sent as many requests as it may (3, or what is left),
        // give a 4th the chance to show up, then let those through. A new request can only
        // start once an earlier answer arrived, so the released ones are gone by then.
        let expected = (10 - released).min(3);
        loop {
            let arrived = stub.state.arrived.notified();
            if requests() >= released + expected {
                break;
            }
            arrived.await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            requests(),
            released + expected,
            "no more than max_concurrency requests"
        );
        assert_eq!(stub.in_flight(), expected);
        gate.add_permits(expected);
        released += expected;
    }
    let outcomes = runner.await.unwrap();
    assert_eq!(outcomes.len(), 10);
    assert!(outcomes.iter().all(TranscriptionOutcome::is_complete));
    assert_eq!(stub.max_in_flight(), 3);
    assert_eq!(pipeline.stats().max_in_flight, 3);
}

#[tokio::test]
async fn server_error_then_success_is_retried_with_the_same_upload() {
    let stub = Stub::start(|upload, index| {
        if index == 0 {
            Reply::status(500, "temporarily broken")
        } else {
            echo(upload, index)
        }
    })
    .await;
    let config = stub.config();
    let pipeline =
        TranscriptionPipeline::new(Arc::new(OpenAiTranscriber::new(&config).unwrap()), &config)
            .with_retry_policy(fast_retries());
    let outcomes = run(&pipeline, 1).await;
    assert!(outcomes[0].is_complete(), "{outcomes:?}");
    assert_eq!(text(&outcomes[0]), "call 0");
    let uploads = stub.uploads();
    assert_eq!(uploads.len(), 2);
    assert_eq!(
        uploads[0].file, uploads[1].file,
        "the whole call re-uploaded"
    );
    assert_eq!(pipeline.stats().retries, 1);
}

#[tokio::test]
async fn unauthorized_fails_once_without_a_transcript() {
    let stub = Stub::start(echo).await;
    let mut config = stub.config();
    config.api_key = Some("sk-not-the-right-one".to_owned().into());
    let pipeline =
        TranscriptionPipeline::new(Arc::new(OpenAiTranscriber::new(&config).unwrap()), &config)
            .with_retry_policy(fast_retries());
    let outcomes = run(&pipeline, 2).await;
    assert_eq!(outcomes.len(), 2);
    for outcome in &outcomes {
        let TranscriptionOutcome::Failed(failed) = outcome else {
            panic!("{outcome:?}")
        };
        assert!(failed.error.starts_with("http 401"), "{}", failed.error);
        assert!(!failed.error.contains("sk-not-the-right-one"));
    }
    assert_eq!(stub.uploads().len(), 2, "401 is final: one upload per call");
    assert_eq!(pipeline.stats().failed, 2);
}
