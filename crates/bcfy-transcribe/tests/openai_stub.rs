//! `OpenAiTranscriber` against a local OpenAI-compatible stub: what is uploaded, which answers are
//! transcripts and which are errors.

mod common;

use std::time::Duration;

use bcfy_proto::RetryHint;
use bcfy_transcribe::{
    OpenAiTranscriber, ResponseFormat, TranscribeRequest, Transcriber, TranscriptionErrorKind,
};
use bytes::Bytes;
use common::{KEY, Reply, Stub, call_id_of, echo};
use http::StatusCode;

fn request(n: u32, audio: &str) -> TranscribeRequest {
    TranscribeRequest::m4a(call_id_of(n), Bytes::from(audio.to_owned()))
}

#[tokio::test]
async fn verbose_json_upload_and_fields_kept() {
    let stub = Stub::start(|_, _| {
        Reply::json(serde_json::json!({
            "task": "transcribe", "language": "english", "duration": 8.25,
            "text": " Medic 12 en route. ",
            "segments": [
                {"id": 0, "start": 0.0, "end": 4.0, "text": " Medic 12", "avg_logprob": -0.1,
                 "compression_ratio": 1.2, "no_speech_prob": 0.01},
                {"id": 1, "start": 4.0, "end": 8.0, "text": " en route.", "avg_logprob": -0.3}
            ],
            "usage": {"type": "duration", "seconds": 9}
        }))
    })
    .await;
    let whisper = OpenAiTranscriber::new(&stub.config()).unwrap();
    assert_eq!(whisper.response_format(), ResponseFormat::VerboseJson);
    let transcript = whisper.transcribe(request(1, "AAC bytes")).await.unwrap();
    assert_eq!(transcript.text, "Medic 12 en route.");
    assert_eq!(transcript.language.as_deref(), Some("english"));
    assert_eq!(transcript.duration, Some(8.25));
    assert_eq!(transcript.segments, ["Medic 12", "en route."]);
    let logprob = transcript.average_logprob.unwrap();
    assert!((logprob - -0.2).abs() < 1e-9, "{logprob}");

    let uploads = stub.uploads();
    assert_eq!(uploads.len(), 1, "one upload per call");
    let upload = &uploads[0];
    assert_eq!(upload.path, "/v1/audio/transcriptions");
    assert_eq!(
        upload.authorization.as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(
        upload.file_name.as_deref(),
        Some(format!("{}.m4a", call_id_of(1)).as_str())
    );
    assert_eq!(upload.file_content_type.as_deref(), Some("audio/mp4"));
    assert_eq!(upload.file, Bytes::from_static(b"AAC bytes"));
    assert_eq!(upload.fields["model"], "whisper-1");
    assert_eq!(upload.fields["language"], "en");
    assert_eq!(upload.fields["response_format"], "verbose_json");
}

#[tokio::test]
async fn json_and_text_formats() {
    let stub = Stub::start(echo).await;
    let json = OpenAiTranscriber::builder(&stub.config())
        .response_format(ResponseFormat::Json)
        .model("Systran/faster-whisper-small")
        .language(None)
        .build()
        .unwrap();
    let transcript = json.transcribe(request(1, "units respond")).await.unwrap();
    assert_eq!(transcript.text, "units respond");
    assert_eq!(transcript.language, None);
    assert!(transcript.segments.is_empty());

    let text = OpenAiTranscriber::builder(&stub.config())
        .response_format(ResponseFormat::Text)
        .build()
        .unwrap();
    // A transcript that happens to be valid JSON stays text when the server says text/plain.
    let transcript = text.transcribe(request(2, "42")).await.unwrap();
    assert_eq!(transcript.text, "42");
    let transcript = text.transcribe(request(3, "copy that")).await.unwrap();
    assert_eq!(transcript.text, "copy that");

    let uploads = stub.uploads();
    assert_eq!(uploads[0].fields["response_format"], "json");
    assert_eq!(uploads[0].fields["model"], "Systran/faster-whisper-small");
    assert!(!uploads[0].fields.contains_key("language"));
    assert_eq!(uploads[1].fields["response_format"], "text");
}

#[tokio::test]
async fn json_answer_to_a_verbose_request_still_works() {
    // Some servers ignore `response_format`; a plain `{"text"}` or bare text is still read.
    let stub = Stub::start(|_, index| {
        if index == 0 {
            Reply::json(serde_json::json!({"text": "plain json"}))
        } else {
            let mut reply = Reply::text("bare text");
            reply.content_type = None;
            reply
        }
    })
    .await;
    let whisper = OpenAiTranscriber::new(&stub.config()).unwrap();
    assert_eq!(
        whisper.transcribe(request(1, "a")).await.unwrap().text,
        "plain json"
    );
    assert_eq!(
        whisper.transcribe(request(2, "b")).await.unwrap().text,
        "bare text"
    );
}

#[tokio::test]
async fn missing_and_empty_text_are_errors() {
    let stub = Stub::start(|_, index| match index {
        0 => Reply::json(serde_json::json!({"language": "english", "duration": 1.0})),
        1 => Reply::json(serde_json::json!({"text": "   "})),
        2 => Reply::json(serde_json::json!({"text": null})),
        3 => Reply::text(""),
        _ => Reply::status(200, "{not json"),
    })
    .await;
    let whisper = OpenAiTranscriber::new(&stub.config()).unwrap();
    let kinds = [
        TranscriptionErrorKind::MissingText,
        TranscriptionErrorKind::EmptyText,
        TranscriptionErrorKind::MissingText,
        TranscriptionErrorKind::EmptyText,
        TranscriptionErrorKind::InvalidResponse,
    ];
    for (n, expected) in kinds.into_iter().enumerate() {
        let error = whisper
            .transcribe(request(n as u32, "x"))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), expected, "answer {n}: {error}");
        assert_eq!(
            error.retry_hint(),
            RetryHint::Never,
            "content errors are final"
        );
    }
}

#[tokio::test]
async fn http_errors_keep_their_status_and_hint() {
    let stub = Stub::start(|_, index| match index {
        0 => Reply::status(500, "upstream exploded"),
        1 => Reply::status(
            429,
            r#"{"error":{"message":"slow down","type":"rate_limit"}}"#,
        )
        .header("retry-after", "3"),
        2 => Reply::status(503, "<html>maintenance</html>"),
        3 => Reply::status(400, r#"{"detail":"bad audio"}"#),
        _ => Reply::status(413, ""),
    })
    .await;
    let whisper = OpenAiTranscriber::new(&stub.config()).unwrap();
    let expected = [
        (500, RetryHint::Backoff),
        (429, RetryHint::After(Duration::from_secs(3))),
        (503, RetryHint::Backoff),
        (400, RetryHint::Never),
        (413, RetryHint::Never),
    ];
    for (n, (status, hint)) in expected.into_iter().enumerate() {
        let error = whisper
            .transcribe(request(n as u32, "x"))
            .await
            .unwrap_err();
        let status = StatusCode::from_u16(status).unwrap();
        assert_eq!(
            error.kind(),
            TranscriptionErrorKind::Http(status),
            "{error}"
        );
        assert_eq!(error.retry_hint(), hint, "{error}");
    }
    assert_eq!(stub.uploads().len(), 5, "the provider itself never retries");
    let error = whisper.transcribe(request(9, "x")).await.unwrap_err();
    assert!(error.to_string().contains("413"), "{error}");
}

#[tokio::test]
async fn wrong_key_is_401_and_final() {
    let stub = Stub::start(echo).await;
    let mut config = stub.config();
    config.api_key = Some("sk-wrong-key-value".to_owned().into());
    let whisper = OpenAiTranscriber::new(&config).unwrap();
    let error = whisper.transcribe(request(1, "x")).await.unwrap_err();
    assert_eq!(
        error.kind(),
        TranscriptionErrorKind::Http(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(error.retry_hint(), RetryHint::Never);
    assert!(!format!("{error} {error:?}").contains("sk-wrong-key-value"));
}

#[tokio::test]
async fn echoed_key_is_scrubbed_from_errors_and_debug_has_no_key() {
    let stub = Stub::start(|upload, _| {
        // A hostile or careless server echoing the credential in its error body.
        let auth = upload.authorization.clone().unwrap_or_default();
        let key = auth.trim_start_matches("Bearer ");
        Reply::status(400, &format!("bad request for key={key} auth=[{auth}]"))
    })
    .await;
    let whisper = OpenAiTranscriber::new(&stub.config()).unwrap();
    let error = whisper.transcribe(request(1, "x")).await.unwrap_err();
    let shown = format!("{error} | {error:?} | {whisper:?}");
    assert!(!shown.contains(KEY), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");
    let builder = OpenAiTranscriber::builder(&stub.config());
    assert!(!format!("{builder:?}").contains(KEY));
}

#[tokio::test]
async fn network_errors_are_retryable() {
    // Bind then drop: nothing listens on this port.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let whisper = OpenAiTranscriber::builder(&bcfy_proto::TranscriptionConfig::default())
        .endpoint(format!("http://127.0.0.1:{port}"))
        .build()
        .unwrap();
    assert_eq!(whisper.api_base(), format!("http://127.0.0.1:{port}/v1"));
    let error = whisper.transcribe(request(1, "x")).await.unwrap_err();
    assert_eq!(error.kind(), TranscriptionErrorKind::Network, "{error}");
    assert_eq!(error.retry_hint(), RetryHint::Backoff);
}

#[tokio::test]
async fn oversized_answer_is_rejected() {
    let stub =
        Stub::start(|_, _| Reply::json(serde_json::json!({"text": "y".repeat(10_000)}))).await;
    let whisper = OpenAiTranscriber::builder(&stub.config())
        .max_response_bytes(1_000)
        .build()
        .unwrap();
    let error = whisper.transcribe(request(1, "x")).await.unwrap_err();
    assert_eq!(
        error.kind(),
        TranscriptionErrorKind::InvalidResponse,
        "{error}"
    );
}

#[test]
fn config_errors() {
    let mut config = bcfy_proto::TranscriptionConfig::default();
    // OpenAI itself without a key.
    let error = OpenAiTranscriber::new(&config).unwrap_err();
    assert_eq!(error.kind(), TranscriptionErrorKind::Config);
    assert!(error.to_string().contains("api_key"), "{error}");
    // A key is enough for OpenAI; the default base is OpenAI's.
    config.api_key = Some("sk-x".to_owned().into());
    let whisper = OpenAiTranscriber::new(&config).unwrap();
    assert_eq!(whisper.api_base(), "https://api.openai.com/v1");
    let error = OpenAiTranscriber::builder(&config)
        .endpoint("ftp://x/v1")
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), TranscriptionErrorKind::Config);
    let error = OpenAiTranscriber::builder(&config)
        .model(" ")
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), TranscriptionErrorKind::Config);
}

#[tokio::test]
async fn slow_provider_times_out_as_a_retryable_network_error() {
    let stub =
        Stub::start(|upload, index| echo(upload, index).delayed(Duration::from_secs(30))).await;
    let whisper = OpenAiTranscriber::builder(&stub.config())
        .request_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let error = whisper.transcribe(request(1, "x")).await.unwrap_err();
    assert_eq!(error.kind(), TranscriptionErrorKind::Network, "{error}");
    assert!(error.message().contains("timed out"), "{error}");
    assert_eq!(error.retry_hint(), RetryHint::Backoff);
}

/// A provider that reads the upload, answers `head` (status, headers and the start of a body
/// shorter than its `content-length`), then resets the connection.
async fn cut_short_provider(head: &'static [u8]) -> OpenAiTranscriber {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let _ = socket.read(&mut buf).await;
        let _ = socket.write_all(head).await;
        let _ = socket.flush().await;
        drop(socket);
    });
    let config = bcfy_proto::TranscriptionConfig {
        enabled: true,
        endpoint_url: Some(format!("http://{addr}/v1").parse().unwrap()),
        api_key: Some(secrecy::SecretString::from(KEY.to_owned())),
        ..bcfy_proto::TranscriptionConfig::default()
    };
    OpenAiTranscriber::new(&config).unwrap()
}

#[tokio::test]
async fn a_body_cut_short_is_a_retryable_network_error() {
    // A server that promises 200 bytes of JSON, sends a few, and resets: a transient network
    // failure (retried by the pipeline), not an unreadable answer.
    let whisper = cut_short_provider(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{\"text\": \"Eng",
    )
    .await;
    let error = whisper
        .transcribe(request(1, "AAC bytes"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), TranscriptionErrorKind::Network, "{error}");
    assert_eq!(error.retry_hint(), RetryHint::Backoff, "{error}");
}

#[tokio::test]
async fn an_error_answer_cut_short_keeps_its_status_and_retry_after() {
    // A 503 with Retry-After whose body is reset mid-way (the soak met it): the pause the
    // headers asked for still holds; the cut body does not turn it into a plain network error.
    let whisper = cut_short_provider(
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 7\r\ncontent-length: 200\r\n\r\n{\"error\": {",
    )
    .await;
    let error = whisper
        .transcribe(request(1, "AAC bytes"))
        .await
        .unwrap_err();
    assert_eq!(
        error.kind(),
        TranscriptionErrorKind::Http(StatusCode::SERVICE_UNAVAILABLE),
        "{error}"
    );
    assert_eq!(
        error.retry_hint(),
        RetryHint::After(Duration::from_secs(7)),
        "{error}"
    );
}
