//! `LiveCallProducer`: polls Broadcastify's live-calls API into a bounded queue.
//!
//! The producer is a single `async` loop: reserve a slot of the output queue (so a full queue
//! means no poll at all), ask the live-calls API for everything since the cursor (all the
//! subscription's talkgroups in one request), drop the calls already dispatched (the cursor
//! overlaps the previous poll by one second, because `ts` has one-second resolution and the
//! server can ingest a call in the same second after a poll saw that second), dispatch the
//! rest in `ts` order as [`LiveCallEnvelope`](bcfy_proto::LiveCallEnvelope)s, move the cursor,
//! and sleep the jittered poll interval. Failures back off exponentially within a retry budget;
//! a logged-out answer re-authenticates through `bcfy-auth`; Retry-After is honoured. All
//! waiting is on tokio time and all randomness comes from a seedable RNG, so the whole loop is
//! testable under paused time.
//!
//! See [`LiveCallProducer`] for the details and an example.

mod backoff;
mod dedup;
mod error;
mod producer;
mod stats;

pub use error::{LiveError, LiveErrorKind};
pub use producer::{Clock, DEFAULT_MAX_ANSWER_BYTES, LiveCallProducer, ProducerHandle};
pub use stats::ProducerStats;
