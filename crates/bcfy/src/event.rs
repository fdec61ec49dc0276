//! The event type every topic of the client's bus carries, the topic names, and the stable
//! JSON Lines form of an event (what `tail --jsonl` prints).
//!
//! Each call produces, in order: `calls.live` then `calls.live.{sid}.{tg}`; `calls.audio.raw`
//! then `calls.audio.raw.{callId}` (or `calls.audio.failed`); `transcription.complete` (or
//! `transcription.failed`) when transcription is enabled. Events are cheap to clone: every
//! payload sits behind an `Arc`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::proto::{
    AudioFailedEvent, AudioPayloadEvent, Call, CallId, LiveCallEnvelope, TranscriptionFailedEvent,
    TranscriptionResult,
};

/// Topic names, exactly the spec's, plus the two failure topics of this crate.
pub mod topics {
    /// Every live call, as soon as it is polled.
    pub const CALLS_LIVE: &str = "calls.live";
    /// Every downloaded call audio.
    pub const CALLS_AUDIO_RAW: &str = "calls.audio.raw";
    /// Calls whose audio could not be downloaded.
    pub const CALLS_AUDIO_FAILED: &str = "calls.audio.failed";
    /// Final transcripts.
    pub const TRANSCRIPTION_COMPLETE: &str = "transcription.complete";
    /// Calls whose transcription failed.
    pub const TRANSCRIPTION_FAILED: &str = "transcription.failed";

    /// `calls.live.{sid}.{tg}`: the shard topic of one talkgroup.
    pub fn calls_live_shard(sid: u64, tg: u64) -> String {
        format!("{CALLS_LIVE}.{sid}.{tg}")
    }

    /// `calls.audio.raw.{callId}`: the audio topic of one call.
    pub fn calls_audio_raw_call(call_id: &str) -> String {
        format!("{CALLS_AUDIO_RAW}.{call_id}")
    }
}

/// One bus event. Variants follow the pipeline stages; every payload is an `Arc`, so a
/// clone per subscriber costs a reference count.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum BcfyEvent {
    /// A polled live call (`calls.live`, `calls.live.{sid}.{tg}`).
    Live(Arc<LiveCallEnvelope>),
    /// A call's downloaded audio (`calls.audio.raw`, `calls.audio.raw.{callId}`).
    Audio(Arc<AudioPayloadEvent>),
    /// A call whose audio download failed (`calls.audio.failed`).
    AudioFailed(Arc<AudioFailedEvent>),
    /// A final transcript (`transcription.complete`).
    Transcript(Arc<TranscriptionResult>),
    /// A failed transcription (`transcription.failed`).
    TranscriptFailed(Arc<TranscriptionFailedEvent>),
}

impl BcfyEvent {
    /// The global topic this event is published on first.
    pub fn topic(&self) -> &'static str {
        match self {
            Self::Live(_) => topics::CALLS_LIVE,
            Self::Audio(_) => topics::CALLS_AUDIO_RAW,
            Self::AudioFailed(_) => topics::CALLS_AUDIO_FAILED,
            Self::Transcript(_) => topics::TRANSCRIPTION_COMPLETE,
            Self::TranscriptFailed(_) => topics::TRANSCRIPTION_FAILED,
        }
    }

    /// The call this event is about.
    pub fn call(&self) -> &Arc<Call> {
        match self {
            Self::Live(e) => &e.call,
            Self::Audio(e) => &e.call,
            Self::AudioFailed(e) => &e.call,
            Self::Transcript(e) => &e.call,
            Self::TranscriptFailed(e) => &e.call,
        }
    }

    /// The call's id (`{node}-{filename}[-{hash}]`).
    pub fn call_id(&self) -> CallId {
        match self {
            Self::Live(e) => e.call.call_id(),
            Self::Audio(e) => e.call_id.clone(),
            Self::AudioFailed(e) => e.call_id.clone(),
            Self::Transcript(e) => e.call_id.clone(),
            Self::TranscriptFailed(e) => e.call_id.clone(),
        }
    }

    /// The event as one JSON object, the stable schema of `tail --jsonl` (documented in the
    /// crate README). Common keys: `topic`, `call_id`, `group` (`"{sid}-{tg}"` or null),
    /// `node`, `filename`, `ts`, `start_time`, `duration` (seconds or null), `talkgroup`
    /// (alpha tag or null), `src` (source unit or null), `emitted_at` (epoch seconds, float).
    /// Per topic: audio `bytes`, `content_type`, `sha256`; audio failure `attempts`, `error`;
    /// transcript `text`, `language`, `average_logprob`; transcription failure `error`.
    pub fn to_json(&self) -> Value {
        let mut obj = call_map(self.call());
        obj.insert("topic".into(), Value::from(self.topic()));
        obj.insert("call_id".into(), Value::from(self.call_id().as_str()));
        match self {
            Self::Live(_) => {}
            Self::Audio(e) => {
                obj.insert("bytes".into(), Value::from(e.payload.len()));
                obj.insert("content_type".into(), Value::from(e.content_type.as_str()));
                obj.insert("sha256".into(), Value::from(sha256_hex(&e.payload)));
            }
            Self::AudioFailed(e) => {
                obj.insert("attempts".into(), Value::from(e.attempts));
                obj.insert("error".into(), Value::from(e.error.as_str()));
            }
            Self::Transcript(e) => {
                obj.insert("text".into(), Value::from(e.text.as_str()));
                obj.insert("language".into(), Value::from(e.language.as_str()));
                obj.insert("average_logprob".into(), json!(e.average_logprob));
            }
            Self::TranscriptFailed(e) => {
                obj.insert("error".into(), Value::from(e.error.as_str()));
            }
        }
        Value::Object(obj)
    }

    /// [`Self::to_json`] as one line of text (no trailing newline).
    pub fn to_json_line(&self) -> String {
        self.to_json().to_string()
    }
}

/// The keys of the JSONL schema that describe a call (everything but the per-topic keys):
/// `topic` (null here), `call_id`, `group`, `node`, `filename`, `ts`, `start_time`,
/// `duration`, `talkgroup`, `src`, `emitted_at`. `tail --archive --jsonl` prints these with
/// `topic` set to `"archive"`.
pub fn call_json(call: &Call) -> Value {
    Value::Object(call_map(call))
}

fn call_map(call: &Call) -> Map<String, Value> {
    let mut obj = Map::new();
    obj.insert("topic".into(), Value::Null);
    obj.insert("call_id".into(), Value::from(call.call_id().as_str()));
    obj.insert(
        "group".into(),
        call.group()
            .map_or(Value::Null, |g| Value::from(g.to_string())),
    );
    obj.insert("node".into(), Value::from(call.node.get()));
    obj.insert("filename".into(), Value::from(call.filename.as_str()));
    obj.insert("ts".into(), Value::from(call.ts));
    obj.insert("start_time".into(), json!(call.start_time));
    obj.insert("duration".into(), json!(call.duration_secs));
    obj.insert(
        "talkgroup".into(),
        json!(call.display.as_deref().or(call.descr.as_deref())),
    );
    obj.insert("src".into(), json!(call.src));
    obj.insert("emitted_at".into(), Value::from(epoch_now()));
    obj
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_millis() as f64) / 1000.0)
}
