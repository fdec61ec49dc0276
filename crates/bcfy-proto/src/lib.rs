//! Typed models of Broadcastify Calls: ids, calls, live and archive responses, events,
//! configuration and error kinds. serde only: no IO, no tokio.
//!
//! This is the bottom layer every other bcfy crate stands on. Parsing is tolerant where the
//! real service (or a future version of it) may vary — numbers as strings, nulls, absent
//! keys, `call-ttl`/`call_ttl`, a non-object `metadata`, unknown keys kept verbatim — and
//! strict where a payload could do harm: the parts of a call's audio URL are validated so no
//! payload can steer a request off the calls CDN, and one bad entry is rejected on its own
//! ([`RejectedCall`]) while the rest of the batch parses. Nothing here panics on input.
//!
//! The payload's `id` is the GROUP key (`{sid}-{tg}`, [`GroupId`]); a call's identity is
//! [`CallId`] (node + filename (+ hash)). Secrets ([`SessionToken`], the transcription API
//! key) never appear in `Debug`/`Display` output, and [`snippet`] redacts them from payload
//! excerpts.
//!
//! ```
//! let body = br#"{"calls": [{"id": "4290-512", "ts": 1758428382, "systemId": 2893,
//!   "sid": 4290, "call_tg": 512, "filename": "1758428366-512", "hash": "qwh9zivk"}],
//!   "serverTime": 1758428390, "lastPos": 1758428382}"#;
//! let resp = bcfy_proto::LiveCallsResponse::from_slice(body).unwrap();
//! let call = &resp.calls[0];
//! assert_eq!(call.call_id().to_string(), "2893-1758428366-512-qwh9zivk");
//! assert_eq!(call.group().unwrap().to_string(), "4290-512");
//! let cdn = url::Url::parse("https://calls.broadcastify.com").unwrap();
//! assert_eq!(call.audio_url(&cdn).unwrap().as_str(),
//!            "https://calls.broadcastify.com/qwh9zivk/2893/1758428366-512.m4a");
//! ```

mod call;
pub mod config;
mod error;
mod events;
mod ids;
mod response;
mod sniff;
pub(crate) mod snippet;
mod subscription;
mod time;
mod token;

pub use call::{AudioUrlError, Call, CallError, CallErrorKind, RawCall, RawJson};
pub use config::{
    AudioConfig, CacheConfig, ConfigError, DEFAULT_ACCEPT, DEFAULT_CALLS_CDN, DEFAULT_SITE,
    DEFAULT_USER_AGENT, Endpoints, LiveProducerConfig, TranscriptionConfig, TransportConfig,
    WhisperProvider, base_dir,
};
pub use error::{ErrorCategory, RetryHint};
pub use events::{
    AudioFailedEvent, AudioPayloadEvent, LiveCallEnvelope, TranscriptionFailedEvent,
    TranscriptionResult,
};
pub use ids::{CallId, CallIdError, GroupId, GroupIdError, NodeId, SystemId, TalkgroupId};
pub use response::{ArchiveResponse, LiveCallsResponse, ParseError, ParseErrorKind, RejectedCall};
pub use secrecy::{ExposeSecret, SecretString};
pub use sniff::sniff_content_type;
pub use snippet::snippet;
pub use subscription::{LiveCallsForm, SessionKey, Subscription, SubscriptionError};
pub use time::{TimeBlock, TimeBlockError, TimeWindow};
pub use token::SessionToken;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
