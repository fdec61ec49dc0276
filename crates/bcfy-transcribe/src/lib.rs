//! Transcription of call audio through any OpenAI-compatible Whisper service.
//!
//! Three layers, each usable alone:
//!
//! - [`Transcriber`]: one upload of one call's audio, one [`Transcript`] or one
//!   [`TranscriptionError`] (with a [`kind`](TranscriptionError::kind) and a
//!   [`retry_hint`](TranscriptionError::retry_hint)). Object safe, so providers are swappable.
//! - [`OpenAiTranscriber`]: the provider for `POST {base}/v1/audio/transcriptions`, built on
//!   async-openai's `byot` call with our own multipart request type (the upload is
//!   `{call_id}.m4a`, `audio/mp4`) and our own lenient response type (`verbose_json`, `json` or
//!   plain text; servers that omit `segments`, `usage` or `compression_ratio` are fine), over a
//!   reqwest client with an explicit rustls configuration, exactly one attempt per call, and an
//!   API key that never reaches a log line, an error message or `Debug`.
//! - [`TranscriptionPipeline`]: the stage between the audio consumer and the bus. It
//!   concatenates each call's [`AudioPayloadEvent`](bcfy_proto::AudioPayloadEvent)s, uploads
//!   once, retries network errors, 429 and 5xx with jittered backoff on tokio time, and emits
//!   one [`TranscriptionOutcome`] per call in input order. Concurrency (`max_concurrency`) and
//!   the calls held in memory (`reorder_window`) are bounded, so a slow provider fills the input
//!   channel and the stage before waits: back-pressure, not memory growth.
//!
//! Failures are never papered over: missing or empty text, HTTP errors and network errors are
//! [`TranscriptionOutcome::Failed`] events, logged with `tracing` and counted in
//! [`PipelineStats`].

mod error;
mod openai;
mod pipeline;
mod transcriber;

pub use error::{TranscriptionError, TranscriptionErrorKind};
pub use openai::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RESPONSE_BYTES, OpenAiTranscriber,
    OpenAiTranscriberBuilder, ResponseFormat,
};
pub use pipeline::{
    DEFAULT_MAX_CALL_BYTES, PipelineError, PipelineStats, RetryPolicy, TranscriptionOutcome,
    TranscriptionPipeline,
};
pub use transcriber::{M4A_CONTENT_TYPE, TranscribeRequest, Transcriber, Transcript};

/// The README's example, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
