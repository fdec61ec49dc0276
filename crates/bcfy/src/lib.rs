//! bcfy: an async, event-driven client for Broadcastify Calls.
//!
//! A [`Client`] logs in, polls live calls for any number of talkgroups (one request for all
//! of them), downloads each call's audio, optionally transcribes it through any
//! OpenAI-compatible Whisper service, and publishes every stage on a topic bus:
//!
//! ```text
//! LiveCallProducer --mpsc(queue_maxsize)--> dispatcher --bus--> calls.live, calls.live.{sid}.{tg}
//!                                               +--mpsc--> AudioConsumer --bus--> calls.audio.raw, calls.audio.raw.{callId}
//!                                                                                  (calls.audio.failed)
//!                                                             +--mpsc--> TranscriptionPipeline --bus--> transcription.complete
//!                                                                                                        (transcription.failed)
//! ```
//!
//! Every hop is a bounded channel and every bus subscriber a bounded queue that blocks its
//! publisher when full, so a slow consumer slows the stages before it, up to the producer,
//! which stops polling and keeps its cursor: back-pressure never loses a call. Each stage
//! publishes a call before handing it on, so a call's `calls.live` always precedes its
//! `calls.audio.raw`, which precedes its transcript. [`Client::shutdown`] stops polling and
//! drains what was already polled through every stage within a timeout.
//!
//! The sub-crates are re-exported ([`proto`], [`transport`], [`auth`], [`archive`], [`live`],
//! [`audio`], [`bus`], and [`transcribe`] with the default `transcribe` feature); each is
//! usable on its own. Configuration loads from TOML or YAML plus `BCFY_*` variables
//! ([`config`]). Feature `blocking` adds `blocking::Client` for synchronous callers; feature
//! `otel` adds `telemetry::Telemetry`, OpenTelemetry export of traces and metrics over OTLP.
//!
//! ```no_run
//! use std::time::Duration;
//! use bcfy::{BcfyEvent, Client, proto::Subscription};
//! use futures::StreamExt;
//! use secrecy::SecretString;
//!
//! # async fn run() -> Result<(), bcfy::Error> {
//! let client = Client::builder()
//!     .credentials("me", SecretString::from("password"))
//!     .build()?;
//! let mut transcripts = client.stream("transcription.complete")?;
//! client.create_live_producer(Subscription::talkgroups(["4290-512".parse().unwrap()]).unwrap())?;
//! client.start().await?;
//! while let Some(event) = transcripts.next().await {
//!     if let BcfyEvent::Transcript(t) = &event.payload {
//!         println!("{}: {}", t.call_id, t.text);
//!     }
//! }
//! client.shutdown(Duration::from_secs(10)).await?;
//! # Ok(()) }
//! ```

pub use bcfy_archive as archive;
pub use bcfy_audio as audio;
pub use bcfy_auth as auth;
pub use bcfy_bus as bus;
pub use bcfy_live as live;
pub use bcfy_proto as proto;
#[cfg(feature = "transcribe")]
pub use bcfy_transcribe as transcribe;
pub use bcfy_transport as transport;

#[cfg(feature = "blocking")]
pub mod blocking;
mod client;
pub mod config;
mod error;
pub mod event;
mod health;
#[cfg(feature = "otel")]
pub mod telemetry;

pub use client::{Client, ClientBuilder, ClientStats, ShutdownReport};
pub use config::Config;
pub use error::{Error, ErrorKind};
pub use event::{BcfyEvent, topics};
pub use health::{Counts, Health, RunState};
