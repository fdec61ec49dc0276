//! The API key never reaches a log line: every target at TRACE (ours, async-openai, reqwest,
//! hyper, rustls through the `log` bridge) is captured while requests succeed, fail, retry and
//! are echoed back by a careless server.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bcfy_transcribe::{
    OpenAiTranscriber, RetryPolicy, TranscribeRequest, Transcriber, TranscriptionPipeline,
};
use bytes::Bytes;
use common::{KEY, Reply, Stub, call_id_of, echo, whole};
use tokio::sync::mpsc;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

#[tokio::test]
async fn api_key_never_logged() {
    let capture = Capture::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .try_init()
        .unwrap();

    let stub = Stub::start(|upload, index| match index {
        // The server echoes the Authorization header back in error bodies.
        0 | 2 => Reply::status(500, &format!("failed for {:?}", upload.authorization)),
        1 => Reply::status(
            400,
            &format!(
                "{{\"error\":{{\"message\":\"{:?}\"}}}}",
                upload.authorization
            ),
        ),
        _ => echo(upload, index),
    })
    .await;
    let config = stub.config();
    let whisper = Arc::new(OpenAiTranscriber::new(&config).unwrap());
    tracing::info!(transcriber = ?whisper, config = ?config, "built");
    let request = TranscribeRequest::m4a(call_id_of(1), Bytes::from_static(b"hello"));
    let error = whisper.transcribe(request.clone()).await.unwrap_err();
    tracing::warn!(error = %error, debug = ?error, "direct failure");
    let error = whisper.transcribe(request).await.unwrap_err();
    tracing::warn!(error = %error, debug = ?error, "direct failure");

    // The pipeline: a 500 with the echoed key, retried, then success.
    let pipeline =
        TranscriptionPipeline::new(whisper.clone(), &config).with_retry_policy(RetryPolicy {
            initial_backoff: Duration::from_millis(1),
            seed: Some(3),
            ..RetryPolicy::default()
        });
    tracing::info!(pipeline = ?pipeline, "pipeline");
    let (in_tx, in_rx) = mpsc::channel(4);
    let (out_tx, mut out_rx) = mpsc::channel(4);
    in_tx.send(whole(0)).await.unwrap();
    in_tx.send(whole(1)).await.unwrap();
    drop(in_tx);
    pipeline.run(in_rx, out_tx).await.unwrap();
    let mut outcomes = Vec::new();
    while let Some(outcome) = out_rx.recv().await {
        tracing::info!(outcome = ?outcome, "outcome");
        outcomes.push(outcome);
    }
    assert!(
        outcomes
            .iter()
            .all(bcfy_transcribe::TranscriptionOutcome::is_complete)
    );

    // A wrong key's 401 is logged too.
    let mut wrong = config.clone();
    wrong.api_key = Some("sk-another-secret-key-xyz".to_owned().into());
    let wrong = OpenAiTranscriber::new(&wrong).unwrap();
    let _ = wrong
        .transcribe(TranscribeRequest::m4a(
            call_id_of(2),
            Bytes::from_static(b"x"),
        ))
        .await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    // The capture works and saw the interesting events ...
    assert!(
        logs.contains("transcription attempt failed, retrying"),
        "{logs}"
    );
    assert!(logs.contains("transcription complete"), "{logs}");
    assert!(logs.contains("uploading call audio"), "{logs}");
    // ... and never the key (nor its tail, in case something truncates it).
    for secret in [KEY, &KEY[KEY.len() - 12..], "sk-another-secret-key-xyz"] {
        assert!(
            !logs.contains(secret),
            "secret {secret:?} found in logs:\n{logs}"
        );
    }
}
