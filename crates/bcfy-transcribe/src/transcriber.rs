//! The provider abstraction.

use std::fmt;

use bcfy_proto::CallId;
use bytes::Bytes;

use crate::TranscriptionError;

/// MIME type of the uploads the pipeline makes (the spec's `.m4a`).
pub const M4A_CONTENT_TYPE: &str = "audio/mp4";

/// One call's audio to transcribe.
#[derive(Clone)]
pub struct TranscribeRequest {
    /// The call the audio belongs to (correlation id for logs).
    pub call_id: CallId,
    /// The whole call's audio, uploaded as one file.
    pub audio: Bytes,
    /// MIME type of the upload (`audio/mp4` for Broadcastify's AAC in M4A).
    pub content_type: String,
    /// File name of the upload; providers such as OpenAI infer the format from its extension.
    pub file_name: String,
}

impl TranscribeRequest {
    /// The spec's upload: the audio as `{call_id}.m4a` with MIME type `audio/mp4`.
    pub fn m4a(call_id: CallId, audio: Bytes) -> Self {
        let file_name = format!("{call_id}.m4a");
        Self {
            call_id,
            audio,
            content_type: M4A_CONTENT_TYPE.to_owned(),
            file_name,
        }
    }
}

impl fmt::Debug for TranscribeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The audio is summarized by size: dumping megabytes of AAC helps nobody.
        f.debug_struct("TranscribeRequest")
            .field("call_id", &self.call_id)
            .field("audio_bytes", &self.audio.len())
            .field("content_type", &self.content_type)
            .field("file_name", &self.file_name)
            .finish()
    }
}

/// What a provider heard.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transcript {
    /// The transcript; never empty when returned by a [`Transcriber`] (empty text is
    /// [`TranscriptionErrorKind::EmptyText`](crate::TranscriptionErrorKind::EmptyText)).
    pub text: String,
    /// The language the provider detected (`verbose_json` only; OpenAI names it in full,
    /// e.g. `"english"`).
    pub language: Option<String>,
    /// Mean of the segments' `avg_logprob` (`verbose_json` only): a rough confidence, closer to
    /// 0 is more confident.
    pub average_logprob: Option<f64>,
    /// The segments' texts, trimmed, in order (`verbose_json` only; empty otherwise).
    pub segments: Vec<String>,
    /// Audio duration in seconds as the provider measured it (`verbose_json` only).
    pub duration: Option<f64>,
}

impl Transcript {
    /// A transcript with only `text` set.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ..Self::default()
        }
    }
}

/// A speech-to-text provider.
///
/// One call of [`transcribe`](Self::transcribe) is one attempt: implementations do not retry
/// (the [`TranscriptionPipeline`](crate::TranscriptionPipeline) does, guided by
/// [`TranscriptionError::retry_hint`]), do not log secrets, and never return an empty or made-up
/// transcript: a provider that answers without usable text returns an error. Object safe, so the
/// pipeline holds an `Arc<dyn Transcriber>` and other providers (Deepgram-like APIs, a local
/// model, a test fake) plug in beside [`OpenAiTranscriber`](crate::OpenAiTranscriber).
#[async_trait::async_trait]
pub trait Transcriber: Send + Sync + fmt::Debug + 'static {
    /// Transcribes one call's audio.
    async fn transcribe(
        &self,
        request: TranscribeRequest,
    ) -> Result<Transcript, TranscriptionError>;

    /// A short provider name for logs (`"openai-compatible"`, ...).
    fn name(&self) -> &'static str {
        "transcriber"
    }
}
