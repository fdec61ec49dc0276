//! What the pipeline stages hand to each other and publish on the bus.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::call::{Call, RawCall};
use crate::ids::{CallId, SystemId, TalkgroupId};

/// One live call as the producer hands it on (`calls.live`, `calls.live.{sys}.{tg}`).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveCallEnvelope {
    /// The call.
    pub call: Arc<Call>,
    /// The producer's cursor after the poll that brought the call.
    pub cursor: Option<f64>,
    /// When the poll's answer arrived.
    pub received_at: SystemTime,
    /// `(sid, tg)` of the shard topic, see [`Call::shard_key`].
    pub shard_key: (SystemId, TalkgroupId),
    /// The call's entry as sent (its JSON text; [`RawCall::to_map`] parses it).
    pub raw_payload: RawCall,
}

impl LiveCallEnvelope {
    /// An envelope for `call`, with its shard key and raw payload derived from it.
    pub fn new(call: Arc<Call>, cursor: Option<f64>, received_at: SystemTime) -> Self {
        let raw_payload = match call.to_value() {
            Value::Object(m) => RawCall::from_map(&m),
            _ => RawCall::from_map(&Map::new()),
        };
        Self {
            shard_key: call.shard_key(),
            call,
            cursor,
            received_at,
            raw_payload,
        }
    }

    /// The call's id.
    pub fn call_id(&self) -> CallId {
        self.call.call_id()
    }
}

/// A call's audio (`calls.audio.raw`, `calls.audio.raw.{callId}`). The whole file is one
/// payload today (`sequence` 0); the fields leave room for chunked delivery.
#[derive(Clone, PartialEq)]
pub struct AudioPayloadEvent {
    /// The call's id.
    pub call_id: CallId,
    /// The call.
    pub call: Arc<Call>,
    /// Index of this payload within the call.
    pub sequence: u32,
    /// Start of this payload in the call, seconds.
    pub start_offset: f64,
    /// End of this payload in the call, seconds.
    pub end_offset: f64,
    /// The audio bytes.
    pub payload: Bytes,
    /// Media type (`audio/mp4` for m4a).
    pub content_type: String,
    /// Whether `content_type` was sniffed from the bytes (the CDN sent none).
    pub content_type_sniffed: bool,
}

impl fmt::Debug for AudioPayloadEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The payload can be megabytes: show its length only.
        f.debug_struct("AudioPayloadEvent")
            .field("call_id", &self.call_id)
            .field("sequence", &self.sequence)
            .field("start_offset", &self.start_offset)
            .field("end_offset", &self.end_offset)
            .field("payload_len", &self.payload.len())
            .field("content_type", &self.content_type)
            .field("content_type_sniffed", &self.content_type_sniffed)
            .finish_non_exhaustive()
    }
}

/// A call whose audio could not be downloaded.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioFailedEvent {
    /// The call's id.
    pub call_id: CallId,
    /// The call.
    pub call: Arc<Call>,
    /// Attempts made.
    pub attempts: u32,
    /// The last error (sanitized).
    pub error: String,
}

/// A final transcript (`transcription.complete`).
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptionResult {
    /// The call's id.
    pub call_id: CallId,
    /// The call.
    pub call: Arc<Call>,
    /// The transcript.
    pub text: String,
    /// Language (requested or detected).
    pub language: String,
    /// Mean log-probability, when the provider gives one.
    pub average_logprob: Option<f64>,
    /// Segment texts; empty with the OpenAI backend.
    pub segments: Vec<String>,
}

/// A call whose transcription failed.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptionFailedEvent {
    /// The call's id.
    pub call_id: CallId,
    /// The call.
    pub call: Arc<Call>,
    /// The error (sanitized).
    pub error: String,
}
