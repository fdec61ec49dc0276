//! `POST /v1/audio/transcriptions`, OpenAI-compatible.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, StatusCode};

use crate::audio;
use crate::server::{Reply, Shared, lock, openai_error};

fn language_name(code: &str) -> &str {
    match code {
        "en" | "english" => "english",
        "es" | "spanish" => "spanish",
        "fr" | "french" => "french",
        "de" | "german" => "german",
        other => other,
    }
}

/// Answers one transcription request; `form` receives the text fields for the request log.
pub(crate) async fn transcribe(
    shared: &Shared,
    headers: &HeaderMap,
    body: Bytes,
    form: &mut Vec<(String, String)>,
) -> Reply {
    if let Some(key) = &shared.cfg.whisper_key {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            // Never echo the key back, not even a prefix of it.
            return openai_error(
                StatusCode::UNAUTHORIZED,
                "Incorrect API key provided.",
                "invalid_request_error",
                Some("invalid_api_key"),
            );
        }
    }
    let Some(boundary) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| multer::parse_boundary(ct).ok())
    else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "Expected a multipart/form-data body.",
            "invalid_request_error",
            None,
        );
    };
    let stream = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut mp = multer::Multipart::new(stream, boundary);
    let mut file: Option<Bytes> = None;
    loop {
        match mp.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_owned();
                if name == "file" {
                    match field.bytes().await {
                        Ok(b) => {
                            form.push(("file".into(), format!("<{} bytes>", b.len())));
                            file = Some(b);
                        }
                        Err(_) => break,
                    }
                } else if let Ok(t) = field.text().await {
                    form.push((name, t));
                }
            }
            Ok(None) => break,
            Err(_) => {
                return openai_error(
                    StatusCode::BAD_REQUEST,
                    "Could not parse multipart form.",
                    "invalid_request_error",
                    None,
                );
            }
        }
    }
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let Some(file) = file else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "Missing required parameter: 'file'.",
            "invalid_request_error",
            None,
        );
    };
    if get("model").is_none_or(|m| m.is_empty()) {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "you must provide a model parameter",
            "invalid_request_error",
            None,
        );
    }
    let format = get("response_format").unwrap_or_else(|| "json".into());
    let call = audio::embedded_call_id(&file).and_then(|id| lock(&shared.feed).get(id).cloned());
    let Some(call) = call.filter(|c| c.audio() == file) else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "Audio file could not be decoded or its format is not supported.",
            "invalid_request_error",
            None,
        );
    };
    let language = get("language").unwrap_or_else(|| "en".into());
    match format.as_str() {
        "json" => Reply::json(
            StatusCode::OK,
            serde_json::json!({ "text": call.transcript }).to_string(),
        ),
        "text" => {
            let mut r = Reply::new(StatusCode::OK);
            r.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r.chunks.push(Bytes::from(format!("{}\n", call.transcript)));
            r
        }
        "verbose_json" => {
            let segments: Vec<serde_json::Value> = call
                .segments
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    serde_json::json!({
                        "id": i, "seek": 0, "start": s.start, "end": s.end, "text": s.text,
                        "tokens": [], "temperature": 0.0, "avg_logprob": s.avg_logprob,
                        "compression_ratio": 1.2, "no_speech_prob": 0.01,
                    })
                })
                .collect();
            Reply::json(
                StatusCode::OK,
                serde_json::json!({
                    "task": "transcribe",
                    "language": language_name(&language),
                    "duration": call.duration,
                    "text": call.transcript,
                    "segments": segments,
                })
                .to_string(),
            )
        }
        other => openai_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "Unsupported response_format `{}`; use json, verbose_json or text.",
                other.chars().take(32).collect::<String>()
            ),
            "invalid_request_error",
            None,
        ),
    }
}
