//! `AudioConsumer`: downloads each live call's audio once, streamed, bounded and in order.
//!
//! The consumer reads [`LiveCallEnvelope`](bcfy_proto::LiveCallEnvelope)s from the producer's
//! queue, fetches `https://calls.broadcastify.com/{hash}/{node}/{filename}.{enc}` (built and
//! validated by `bcfy-proto`, so a payload can never steer a request elsewhere) through the
//! shared transport's audio pool, and emits one [`AudioOutcome`] per call: the payload as an
//! [`AudioPayloadEvent`](bcfy_proto::AudioPayloadEvent), or an
//! [`AudioFailedEvent`](bcfy_proto::AudioFailedEvent) once the retry budget is spent. Several
//! downloads run concurrently, but an ordered buffer publishes outcomes strictly in input order;
//! a full output channel pauses the downloads, so memory is bounded by configuration.
//!
//! See [`AudioConsumer`] for the details and an example.

mod consumer;
mod error;

pub use consumer::{AudioConsumer, AudioOutcome, AudioStats, DEFAULT_ATTEMPT_TIMEOUT};
pub use error::{AudioError, AudioErrorKind};
