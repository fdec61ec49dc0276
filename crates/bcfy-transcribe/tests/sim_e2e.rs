//! End to end against `bcfy-sim`'s OpenAI-compatible `/v1/audio/transcriptions`: real call
//! audio from the simulator's feed, its transcripts, its key check and its faults.

use std::sync::Arc;
use std::time::Duration;

use bcfy_proto::{AudioPayloadEvent, Call, TranscriptionConfig};
use bcfy_sim::{Endpoint, Fault, FaultPlan, SimHandle, Simulator};
use bcfy_transcribe::{
    OpenAiTranscriber, ResponseFormat, RetryPolicy, TranscribeRequest, Transcriber,
    TranscriptionErrorKind, TranscriptionOutcome, TranscriptionPipeline,
};
use tokio::sync::mpsc;

const KEY: &str = "sk-sim-e2e-key-0123456789";

async fn simulator(faults: FaultPlan) -> SimHandle {
    Simulator::builder()
        .seed(11)
        .groups([(4290, 512), (4290, 1536)])
        .calls_per_second(0.0)
        .whisper_key(KEY)
        .faults(faults)
        .start()
        .await
        .unwrap()
}

fn config(sim: &SimHandle) -> TranscriptionConfig {
    TranscriptionConfig {
        enabled: true,
        endpoint_url: Some(sim.whisper_url()),
        api_key: Some(KEY.to_owned().into()),
        max_concurrency: 2,
        ..TranscriptionConfig::default()
    }
}

/// The audio stage's event for a simulator call: the whole file as one payload.
fn event(sim: &SimHandle, call_id: &str) -> AudioPayloadEvent {
    let call = Arc::new(Call::from_value(&sim.call_payload(call_id).unwrap()).unwrap());
    assert_eq!(call.call_id().as_str(), call_id);
    AudioPayloadEvent {
        call_id: call.call_id(),
        end_offset: call.duration_secs.unwrap_or(0.0),
        call,
        sequence: 0,
        start_offset: 0.0,
        payload: sim.call_audio(call_id).unwrap(),
        content_type: "audio/mp4".to_owned(),
        content_type_sniffed: false,
    }
}

#[tokio::test]
async fn pipeline_transcribes_simulator_calls_in_order_through_a_503() {
    // The second transcription request fails once with 503: retried, nothing lost.
    let sim =
        simulator(FaultPlan::none().nth(Endpoint::Transcription, 2, Fault::Unavailable(None)))
            .await;
    let ids = sim.ingest(6);
    assert!(ids.len() >= 6);
    let config = config(&sim);
    let pipeline =
        TranscriptionPipeline::new(Arc::new(OpenAiTranscriber::new(&config).unwrap()), &config)
            .with_retry_policy(RetryPolicy {
                initial_backoff: Duration::from_millis(5),
                seed: Some(5),
                ..RetryPolicy::default()
            });
    let (in_tx, in_rx) = mpsc::channel(config.queue_size);
    let (out_tx, mut out_rx) = mpsc::channel(config.queue_size);
    for id in &ids {
        in_tx.send(event(&sim, id)).await.unwrap();
    }
    drop(in_tx);
    pipeline.run(in_rx, out_tx).await.unwrap();
    let mut outcomes = Vec::new();
    while let Some(outcome) = out_rx.recv().await {
        outcomes.push(outcome);
    }
    assert_eq!(outcomes.len(), ids.len());
    for (id, outcome) in ids.iter().zip(&outcomes) {
        let TranscriptionOutcome::Complete(result) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(result.call_id.as_str(), id, "input order kept");
        assert_eq!(result.text, sim.transcript_for(id).unwrap().trim());
        assert_eq!(result.language, "english");
        assert!(
            result.average_logprob.is_some_and(|p| p < 0.0),
            "{result:?}"
        );
        assert!(!result.segments.is_empty());
    }
    let stats = pipeline.stats();
    assert_eq!(
        (stats.completed, stats.failed, stats.retries),
        (ids.len() as u64, 0, 1)
    );
    let requests = sim.requests_to(Endpoint::Transcription);
    assert_eq!(requests.len(), ids.len() + 1);
}

#[tokio::test]
async fn formats_and_key_against_the_simulator() {
    let sim = simulator(FaultPlan::none()).await;
    let id = sim.ingest(1).remove(0);
    let expected = sim.transcript_for(&id).unwrap();
    let request = || {
        let event = event(&sim, &id);
        TranscribeRequest::m4a(event.call_id, event.payload)
    };
    for format in [
        ResponseFormat::VerboseJson,
        ResponseFormat::Json,
        ResponseFormat::Text,
    ] {
        let whisper = OpenAiTranscriber::builder(&config(&sim))
            .response_format(format)
            .build()
            .unwrap();
        let transcript = whisper.transcribe(request()).await.unwrap();
        assert_eq!(transcript.text, expected.trim(), "{format:?}");
        assert_eq!(
            transcript.language.is_some(),
            format == ResponseFormat::VerboseJson
        );
    }
    let mut wrong = config(&sim);
    wrong.api_key = Some("sk-wrong".to_owned().into());
    let error = OpenAiTranscriber::new(&wrong)
        .unwrap()
        .transcribe(request())
        .await
        .unwrap_err();
    assert_eq!(
        error.kind(),
        TranscriptionErrorKind::Http(http::StatusCode::UNAUTHORIZED)
    );
    // Audio the simulator does not know is rejected with 400, a final error.
    let junk = TranscribeRequest::m4a(request().call_id, bytes::Bytes::from_static(b"not audio"));
    let whisper = OpenAiTranscriber::new(&config(&sim)).unwrap();
    let error = whisper.transcribe(junk).await.unwrap_err();
    assert_eq!(
        error.kind(),
        TranscriptionErrorKind::Http(http::StatusCode::BAD_REQUEST)
    );
    sim.shutdown().await;
}
