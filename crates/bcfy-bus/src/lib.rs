//! A typed in-process event bus with NATS-style subject patterns, per-subscriber ordering and
//! back-pressure.
//!
//! # Design
//!
//! An [`EventBus<E>`] carries events of one type `E` (typically an enum or an `Arc` of one; it
//! is cloned once per extra matching subscriber, so keep it cheap to clone). Events are published
//! on *topics*, dot-separated segments such as `calls.live.4290.512`, and received by
//! subscribers through *patterns* in the style of NATS subjects: `*` matches exactly one segment
//! and a final `>` matches one or more trailing segments (`calls.live.*.*`, `calls.>`). Each
//! subscriber owns a bounded queue; [`publish`](EventBus::publish) walks the subscriber list (a
//! copy-on-write snapshot, no lock held across `.await`), matches the topic segment by segment
//! without allocating, and pushes into each matching queue. A subscriber's [`Policy`] decides
//! what a full queue does: [`Policy::Block`] (the default) makes the publisher wait, so
//! back-pressure travels up to whoever publishes and nothing is lost; [`Policy::DropOldest`]
//! never waits and counts what it drops. Because each subscriber has its own queue, each sees
//! the events of successive `publish` calls in call order, and a slow subscriber delays only the
//! publishers that feed it. A subscriber is either a handler (an async callback run one event at
//! a time on its own task, with errors and panics caught, logged and counted) or a
//! [`SubscriptionStream`]. [`shutdown`](EventBus::shutdown) stops publications and waits until
//! every handler has drained its queue; streams keep what is queued for their reader, then end.
//!
//! Publishing to a topic that no pattern matches costs a validation pass and one string
//! comparison pass per subscriber, and no allocation: unbounded families of scoped topics such
//! as `calls.audio.raw.{callId}` cost nothing when nobody listens. Nothing is cached per topic
//! beyond the last few topics each thread published (so `calls.live` is not reallocated on
//! every call): memory stays bounded however many distinct topics go by.
//!
//! # Example
//!
//! ```
//! use bcfy_bus::{EventBus, Policy, SubscribeOptions};
//! use futures::StreamExt;
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), bcfy_bus::BusError> {
//! let bus: EventBus<Arc<str>> = EventBus::new();
//!
//! // An async handler on every shard topic; it learns the concrete topic it matched.
//! let seen = Arc::new(AtomicUsize::new(0));
//! let counter = Arc::clone(&seen);
//! let handler = bus.subscribe("calls.live.*.*", move |event| {
//!     let counter = Arc::clone(&counter);
//!     async move {
//!         assert!(event.topic().starts_with("calls.live."));
//!         counter.fetch_add(1, Ordering::SeqCst);
//!         Ok::<(), std::io::Error>(())
//!     }
//! })?;
//!
//! // A stream of everything under `calls.`, for a dashboard that may lag.
//! let mut dashboard = bus.stream_with(
//!     "calls.>",
//!     SubscribeOptions::default().capacity(64).policy(Policy::DropOldest),
//! )?;
//!
//! let call: Arc<str> = Arc::from("4290-512 call");
//! assert_eq!(bus.publish("calls.live", Arc::clone(&call)).await?, 1);
//! assert_eq!(bus.publish("calls.live.4290.512", call).await?, 2);
//! assert_eq!(bus.publish("calls.audio.raw.1-abc", Arc::from("audio")).await?, 1);
//! assert_eq!(bus.publish("nobody.listens", Arc::from("x")).await?, 0);
//!
//! let first = dashboard.next().await.unwrap();
//! assert_eq!(first.topic(), "calls.live");
//!
//! // Drain everything and stop; the handler has run for every event it was sent.
//! bus.shutdown().await;
//! assert_eq!(seen.load(Ordering::SeqCst), 1);
//! assert_eq!(handler.stats().received, 1);
//! let rest: Vec<_> = dashboard.map(|e| e.topic).collect().await;
//! assert_eq!(rest.len(), 2);
//! # Ok(())
//! # }
//! ```

mod bus;
mod error;
mod pattern;
mod queue;

pub use bus::{
    BusStats, DEFAULT_CAPACITY, Event, EventBus, HandlerResult, Policy, SubscribeOptions,
    SubscriberId, SubscriberKind, SubscriberStats, Subscription, SubscriptionStream,
};
pub use error::{BusError, BusErrorKind, InvalidReason};
pub use pattern::{Pattern, validate_topic};

// The README's example is compiled and run as a doctest too.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
