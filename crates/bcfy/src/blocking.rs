//! A synchronous adapter over the async [`crate::Client`] (feature `blocking`).
//!
//! [`Client`] owns a multi-threaded Tokio runtime and runs every call of the async client on
//! it with `block_on`; the pipeline's tasks run on that runtime's worker threads. Events are
//! read from an [`EventIter`], a blocking iterator over a bus subscription. Do not use it from
//! inside an async context (blocking a runtime thread panics in Tokio).
//!
//! ```no_run
//! use std::time::Duration;
//! use bcfy::blocking::Client;
//! use bcfy::proto::Subscription;
//!
//! let client = Client::new(bcfy::Client::builder())?;
//! let events = client.events("calls.live")?;
//! client.create_live_producer(Subscription::talkgroups(["4290-512".parse().unwrap()]).unwrap())?;
//! client.start()?;
//! for event in events.take(10) {
//!     println!("{} {}", event.topic, event.payload.call_id());
//! }
//! client.shutdown(Duration::from_secs(10))?;
//! # Ok::<(), bcfy::Error>(())
//! ```

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::archive::ArchiveResult;
use crate::bus::{Event, SubscriptionStream};
use crate::error::{Error, ErrorKind};
use crate::live::LiveCallProducer;
use crate::proto::{GroupId, RetryHint, SessionToken, Subscription, TimeBlock, TimeWindow};
use crate::{BcfyEvent, ClientBuilder, Health, ShutdownReport};

/// The blocking client: the async [`crate::Client`] plus the runtime it runs on.
#[derive(Debug)]
pub struct Client {
    runtime: Arc<tokio::runtime::Runtime>,
    inner: crate::Client,
}

impl Client {
    /// Starts a runtime and builds the client from `builder` on it.
    pub fn new(builder: ClientBuilder) -> Result<Self, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("bcfy-blocking")
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::InvalidState,
                    RetryHint::Never,
                    format!("cannot start a Tokio runtime: {e}"),
                )
            })?;
        let inner = {
            let _guard = runtime.enter();
            builder.build()?
        };
        Ok(Self {
            runtime: Arc::new(runtime),
            inner,
        })
    }

    /// The async client, to use from async code running on [`Self::runtime`].
    pub fn as_async(&self) -> &crate::Client {
        &self.inner
    }

    /// The runtime the client runs on.
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// See [`crate::Client::authenticate`].
    pub fn authenticate(&self) -> Result<SessionToken, Error> {
        self.runtime.block_on(self.inner.authenticate())
    }

    /// See [`crate::Client::logout`].
    pub fn logout(&self) -> Result<(), Error> {
        self.runtime.block_on(self.inner.logout())
    }

    /// See [`crate::Client::get_archived_calls`].
    pub fn get_archived_calls(
        &self,
        group: GroupId,
        block: TimeBlock,
    ) -> Result<ArchiveResult, Error> {
        self.runtime
            .block_on(self.inner.get_archived_calls(group, block))
    }

    /// See [`crate::Client::get_archived_range`].
    pub fn get_archived_range(
        &self,
        group: GroupId,
        window: TimeWindow,
    ) -> Result<Vec<ArchiveResult>, Error> {
        self.runtime
            .block_on(self.inner.get_archived_range(group, window))
    }

    /// See [`crate::Client::create_live_producer`].
    pub fn create_live_producer(
        &self,
        subscription: Subscription,
    ) -> Result<Arc<LiveCallProducer>, Error> {
        let _guard = self.runtime.enter();
        self.inner.create_live_producer(subscription)
    }

    /// A blocking iterator over events on topics matching `pattern` (see
    /// [`crate::Client::stream`]). It ends after [`shutdown`](Self::shutdown) once drained.
    pub fn events(&self, pattern: &str) -> Result<EventIter, Error> {
        let stream = self.inner.stream(pattern)?;
        Ok(EventIter {
            runtime: self.runtime.clone(),
            stream,
        })
    }

    /// Runs `handler` on a runtime thread for every event matching `pattern`, until shutdown.
    pub fn register_consumer<F>(&self, pattern: &str, handler: F) -> Result<(), Error>
    where
        F: Fn(Event<BcfyEvent>) + Send + Sync + 'static,
    {
        let _guard = self.runtime.enter();
        let handler = Arc::new(handler);
        self.inner
            .register_consumer(pattern, move |event| {
                let handler = handler.clone();
                async move {
                    // The handler is synchronous: keep it off the async workers' fast path.
                    let _ = tokio::task::spawn_blocking(move || handler(event)).await;
                }
            })?
            .detach();
        Ok(())
    }

    /// See [`crate::Client::start`].
    pub fn start(&self) -> Result<(), Error> {
        self.runtime.block_on(self.inner.start())
    }

    /// See [`crate::Client::shutdown`]. An [`EventIter`] that nobody reads keeps the bus from
    /// draining until the timeout: drop it or read it on another thread.
    pub fn shutdown(&self, timeout: Duration) -> Result<ShutdownReport, Error> {
        self.runtime.block_on(self.inner.shutdown(timeout))
    }

    /// See [`crate::Client::health`].
    pub fn health(&self) -> Health {
        self.inner.health()
    }
}

/// A blocking iterator over bus events (topic and payload), from [`Client::events`].
#[derive(Debug)]
pub struct EventIter {
    runtime: Arc<tokio::runtime::Runtime>,
    stream: SubscriptionStream<BcfyEvent>,
}

impl EventIter {
    /// The next event, waiting at most `timeout`; `Ok(None)` when the stream ended,
    /// `Err(())` on timeout.
    #[allow(clippy::result_unit_err)]
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Event<BcfyEvent>>, ()> {
        let stream = &mut self.stream;
        self.runtime
            .block_on(async { tokio::time::timeout(timeout, stream.next()).await })
            .map_err(|_| ())
    }
}

impl Iterator for EventIter {
    type Item = Event<BcfyEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        let stream = &mut self.stream;
        self.runtime.block_on(stream.next())
    }
}
