//! The bus itself: subscriber registry, publication, handler tasks, shutdown.

use std::any::Any;
use std::fmt;
use std::future::{Future, poll_fn};
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::task::{Context, Poll};

use futures::{FutureExt as _, Stream};
use tokio::sync::Notify;

use crate::error::BusError;
use crate::pattern::{Pattern, validate_topic};
use crate::queue::{Pushed, Queue};

/// Default per-subscriber queue capacity.
pub const DEFAULT_CAPACITY: usize = 256;

/// One delivered event: the concrete topic it was published on and its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<E> {
    /// The topic the event was published on (not the pattern that matched it). Shared by every
    /// subscriber of one publication.
    pub topic: Arc<str>,
    /// The payload.
    pub payload: E,
}

impl<E> Event<E> {
    /// The topic the event was published on.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The payload, dropping the topic.
    pub fn into_payload(self) -> E {
        self.payload
    }

    /// Topic and payload.
    pub fn into_parts(self) -> (Arc<str>, E) {
        (self.topic, self.payload)
    }
}

/// What a full subscriber queue does with the next event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Policy {
    /// The publisher waits until the subscriber has room: back-pressure reaches the publisher and
    /// nothing is lost. The default.
    #[default]
    Block,
    /// The publisher never waits: the oldest queued event is dropped and the subscriber's
    /// `dropped` (lag) counter increments. For dashboards and other "latest is what matters"
    /// consumers.
    DropOldest,
}

/// Options of one subscription.
///
/// ```
/// use bcfy_bus::{Policy, SubscribeOptions};
/// let opts = SubscribeOptions::default().capacity(16).policy(Policy::DropOldest).name("dashboard");
/// assert_eq!(opts.capacity, 16);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Queue capacity in events (at least 1). Default [`DEFAULT_CAPACITY`].
    pub capacity: usize,
    /// What a full queue does. Default [`Policy::Block`].
    pub policy: Policy,
    /// A name for logs and stats.
    pub name: Option<String>,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self {
            capacity: DEFAULT_CAPACITY,
            policy: Policy::Block,
            name: None,
        }
    }
}

impl SubscribeOptions {
    /// Sets the queue capacity.
    #[must_use]
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets the full-queue policy.
    #[must_use]
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the name shown in logs and stats.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    fn validate(&self) -> Result<(), BusError> {
        if self.capacity == 0 {
            return Err(BusError::InvalidOptions("capacity must be at least 1"));
        }
        Ok(())
    }
}

/// Identifier of one subscription, unique within its bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubscriberId(u64);

impl SubscriberId {
    /// The number behind the id.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SubscriberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sub-{}", self.0)
    }
}

/// Whether a subscription runs a handler or is read as a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubscriberKind {
    /// An async callback run on its own task.
    Handler,
    /// A [`SubscriptionStream`].
    Stream,
}

/// A snapshot of one subscriber's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriberStats {
    /// The subscription's id.
    pub id: SubscriberId,
    /// Its name, if one was given.
    pub name: Option<Arc<str>>,
    /// Its pattern.
    pub pattern: Arc<str>,
    /// Handler or stream.
    pub kind: SubscriberKind,
    /// Its policy.
    pub policy: Policy,
    /// Its queue capacity.
    pub capacity: usize,
    /// Events put in its queue.
    pub delivered: u64,
    /// Events taken from its queue by the handler task or the stream.
    pub received: u64,
    /// Events dropped from its queue by [`Policy::DropOldest`]: how far it lagged.
    pub dropped: u64,
    /// Events waiting in its queue now.
    pub queued: usize,
    /// Handler calls that returned an error.
    pub handler_errors: u64,
    /// Handler calls that panicked.
    pub panics: u64,
    /// Whether it no longer receives new events (unsubscribed, or the bus shut down).
    pub closed: bool,
}

/// A snapshot of the bus's counters since it was created.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusStats {
    /// Successful `publish` calls.
    pub published: u64,
    /// Publications that matched no subscriber.
    pub unmatched: u64,
    /// Events put in subscriber queues (one publication to three subscribers counts three).
    pub delivered: u64,
    /// Events dropped by [`Policy::DropOldest`] queues.
    pub dropped: u64,
    /// Handler calls that returned an error.
    pub handler_errors: u64,
    /// Handler calls that panicked.
    pub panics: u64,
    /// Subscriptions currently registered.
    pub subscribers: usize,
}

/// What a handler's future may return: `()` or `Result<(), E: Display>`. An `Err` is logged and
/// counted in [`SubscriberStats::handler_errors`]; the subscription carries on.
pub trait HandlerResult: Send + 'static {
    /// The error message, if the handler failed.
    fn into_error(self) -> Option<String>;
}

impl HandlerResult for () {
    fn into_error(self) -> Option<String> {
        None
    }
}

impl<Er: fmt::Display + Send + 'static> HandlerResult for Result<(), Er> {
    fn into_error(self) -> Option<String> {
        self.err().map(|e| e.to_string())
    }
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    unmatched: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    handler_errors: AtomicU64,
    panics: AtomicU64,
}

/// A one-shot flag that can be awaited.
#[derive(Default)]
struct Latch {
    set: AtomicBool,
    notify: Notify,
}

impl Latch {
    fn set(&self) {
        self.set.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    async fn wait(&self) {
        loop {
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// Everything about one subscriber that the bus and its handle share.
struct Sub<E> {
    id: SubscriberId,
    name: Option<Arc<str>>,
    pattern: Pattern,
    kind: SubscriberKind,
    policy: Policy,
    capacity: usize,
    queue: Queue<Event<E>>,
    handler_errors: AtomicU64,
    panics: AtomicU64,
    /// Set when the receiving side has finished: the handler task ended, or the stream ended or
    /// was dropped. `shutdown` and `unsubscribe` wait on it for handlers.
    done: Latch,
    counters: Arc<Counters>,
}

impl<E> Sub<E> {
    fn stats(&self) -> SubscriberStats {
        let q = self.queue.counts();
        SubscriberStats {
            id: self.id,
            name: self.name.clone(),
            pattern: self.pattern.raw().clone(),
            kind: self.kind,
            policy: self.policy,
            capacity: self.capacity,
            delivered: q.delivered,
            received: q.received,
            dropped: q.dropped,
            queued: q.queued,
            handler_errors: self.handler_errors.load(Ordering::Relaxed),
            panics: self.panics.load(Ordering::Relaxed),
            closed: self.queue.is_closed(),
        }
    }

    fn label(&self) -> &str {
        self.name
            .as_deref()
            .unwrap_or_else(|| self.pattern.as_str())
    }
}

type SubList<E> = Arc<[Arc<Sub<E>>]>;

struct Inner<E> {
    /// Copy-on-write list: publishers deliver under the read lock while no queue makes them
    /// wait, and take a snapshot (one `Arc` clone) to wait outside it, so the lock is never held
    /// across an `.await`; (un)subscribing builds a new list.
    subs: RwLock<SubList<E>>,
    closed: AtomicBool,
    /// Publications in progress, so `shutdown` can let them finish before closing the queues.
    in_flight: AtomicUsize,
    idle: Notify,
    next_id: AtomicU64,
    counters: Arc<Counters>,
}

impl<E> Inner<E> {
    fn snapshot(&self) -> SubList<E> {
        self.subs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn remove(&self, id: SubscriberId) {
        let mut subs = self.subs.write().unwrap_or_else(PoisonError::into_inner);
        if subs.iter().any(|s| s.id == id) {
            *subs = subs.iter().filter(|s| s.id != id).cloned().collect();
        }
    }

    fn leave(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 && self.closed.load(Ordering::SeqCst)
        {
            self.idle.notify_waiters();
        }
    }
}

impl<E> Drop for Inner<E> {
    fn drop(&mut self) {
        // The last `EventBus` is gone: nobody can publish any more, so let every subscriber drain
        // what it has and end (streams return `None`, handler tasks exit).
        let subs = self.subs.get_mut().unwrap_or_else(PoisonError::into_inner);
        for sub in subs.iter() {
            sub.queue.close();
        }
    }
}

/// Decrements the in-flight count when a publication ends or is cancelled.
struct InFlight<'a, E>(&'a Inner<E>);

impl<E> Drop for InFlight<'_, E> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// Unsubscribes a subscriber (closes its queue and takes it off the bus).
fn close_sub<E>(bus: &Weak<Inner<E>>, sub: &Sub<E>) {
    if let Some(inner) = bus.upgrade() {
        inner.remove(sub.id);
    }
    sub.queue.close();
}

/// A typed in-process publish/subscribe bus. See the [crate docs](crate).
///
/// Cheap to clone (an `Arc` inside); every clone is the same bus.
pub struct EventBus<E> {
    inner: Arc<Inner<E>>,
}

impl<E> Clone for EventBus<E> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<E> fmt::Debug for EventBus<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("subscribers", &self.inner.snapshot().len())
            .field("closed", &self.inner.closed.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl<E: Clone + Send + Sync + 'static> Default for EventBus<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: Clone + Send + Sync + 'static> EventBus<E> {
    /// An empty bus.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                subs: RwLock::new(Arc::from(Vec::new())),
                closed: AtomicBool::new(false),
                in_flight: AtomicUsize::new(0),
                idle: Notify::new(),
                next_id: AtomicU64::new(1),
                counters: Arc::default(),
            }),
        }
    }

    /// Publishes `event` on `topic` to every subscriber whose pattern matches, in subscription
    /// order, and returns how many subscribers it was queued for.
    ///
    /// Under [`Policy::Block`] this waits while a matching subscriber's queue is full. Events of
    /// successive `publish` calls reach each subscriber in call order. Publishing to a topic
    /// nobody listens to allocates nothing; a matched publication allocates the topic string its
    /// subscribers share at most once (not when this thread published the same topic among its
    /// last few) and clones `event` once per extra subscriber.
    ///
    /// Cancelling the returned future part-way may leave the event delivered to some subscribers
    /// and not others.
    ///
    /// # Errors
    /// [`BusError::InvalidTopic`] for a malformed topic (e.g. one with a wildcard);
    /// [`BusError::Closed`] once [`shutdown`](Self::shutdown) has begun.
    pub async fn publish(&self, topic: &str, event: E) -> Result<usize, BusError> {
        validate_topic(topic)?;
        let inner = &*self.inner;
        // Enter first, then check `closed`: with `shutdown` doing the reverse (set `closed`, then
        // read `in_flight`), one of the two always sees the other.
        inner.in_flight.fetch_add(1, Ordering::SeqCst);
        let _in_flight = InFlight(inner);
        if inner.closed.load(Ordering::SeqCst) {
            return Err(BusError::Closed);
        }
        let counters = &inner.counters;
        counters.published.fetch_add(1, Ordering::Relaxed);

        let mut tally = Tally::default();
        if let Some(resume) = inner.deliver_now(topic, event, &mut tally) {
            deliver_waiting(topic, resume, &mut tally).await;
        }
        if tally.matched == 0 {
            counters.unmatched.fetch_add(1, Ordering::Relaxed);
        }
        if tally.delivered > 0 {
            counters
                .delivered
                .fetch_add(tally.delivered as u64, Ordering::Relaxed);
        }
        if tally.dropped > 0 {
            counters.dropped.fetch_add(tally.dropped, Ordering::Relaxed);
        }
        let delivered = tally.delivered;
        Ok(delivered)
    }

    /// Whether any current subscriber would receive an event published on `topic`. Lets a
    /// publisher skip building an expensive event nobody wants. An invalid topic has none.
    pub fn has_subscribers(&self, topic: &str) -> bool {
        validate_topic(topic).is_ok()
            && self
                .inner
                .snapshot()
                .iter()
                .any(|s| s.pattern.matches(topic))
    }

    /// Runs `handler` for every event matching `pattern`, with default options
    /// ([`Policy::Block`], capacity [`DEFAULT_CAPACITY`]).
    ///
    /// See [`subscribe_with`](Self::subscribe_with).
    ///
    /// # Errors
    /// As [`subscribe_with`](Self::subscribe_with).
    pub fn subscribe<F, Fut>(&self, pattern: &str, handler: F) -> Result<Subscription<E>, BusError>
    where
        F: Fn(Event<E>) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        self.subscribe_with(pattern, SubscribeOptions::default(), handler)
    }

    /// Runs `handler` for every event matching `pattern`, one event at a time in publish order,
    /// on a task spawned on the current Tokio runtime.
    ///
    /// The handler may return `()` or `Result<(), impl Display>`. An error or a panic (in the
    /// call or in the future) is logged with `tracing`, counted in the subscriber's stats, and
    /// the handler carries on with the next event; the bus and other subscribers are unaffected.
    ///
    /// The returned [`Subscription`] unsubscribes when dropped; use
    /// [`Subscription::detach`] to keep it for the bus's lifetime. A handler that publishes
    /// to a topic it is itself subscribed to with [`Policy::Block`] can deadlock once its own
    /// queue is full: use [`Policy::DropOldest`] or another task for such loops. A handler that
    /// captures a clone of the bus keeps the bus alive: end it with
    /// [`shutdown`](Self::shutdown) or [`Subscription::unsubscribe`], not by dropping the bus.
    ///
    /// # Errors
    /// [`BusError::InvalidPattern`], [`BusError::InvalidOptions`], [`BusError::Closed`] after
    /// shutdown, [`BusError::NoRuntime`] outside a Tokio runtime.
    pub fn subscribe_with<F, Fut>(
        &self,
        pattern: &str,
        options: SubscribeOptions,
        handler: F,
    ) -> Result<Subscription<E>, BusError>
    where
        F: Fn(Event<E>) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BusError::NoRuntime)?;
        let sub = self.register(pattern, options, SubscriberKind::Handler)?;
        runtime.spawn(run_handler(Arc::clone(&sub), handler));
        Ok(Subscription {
            sub,
            bus: Arc::downgrade(&self.inner),
            detached: false,
        })
    }

    /// A [`Stream`] of the events matching `pattern`, with default options.
    ///
    /// # Errors
    /// As [`stream_with`](Self::stream_with).
    pub fn stream(&self, pattern: &str) -> Result<SubscriptionStream<E>, BusError> {
        self.stream_with(pattern, SubscribeOptions::default())
    }

    /// A [`Stream`] of the events matching `pattern`, in publish order. Needs no runtime of its
    /// own. Dropping it unsubscribes; it ends (`None`) after [`SubscriptionStream::close`], after
    /// the bus shuts down, or when every `EventBus` clone is gone, once what was queued has been
    /// read.
    ///
    /// # Errors
    /// [`BusError::InvalidPattern`], [`BusError::InvalidOptions`], [`BusError::Closed`] after
    /// shutdown.
    pub fn stream_with(
        &self,
        pattern: &str,
        options: SubscribeOptions,
    ) -> Result<SubscriptionStream<E>, BusError> {
        let sub = self.register(pattern, options, SubscriberKind::Stream)?;
        Ok(SubscriptionStream {
            sub,
            bus: Arc::downgrade(&self.inner),
            finished: false,
        })
    }

    fn register(
        &self,
        pattern: &str,
        options: SubscribeOptions,
        kind: SubscriberKind,
    ) -> Result<Arc<Sub<E>>, BusError> {
        let pattern = Pattern::parse(pattern)?;
        options.validate()?;
        let inner = &*self.inner;
        let sub = Arc::new(Sub {
            id: SubscriberId(inner.next_id.fetch_add(1, Ordering::Relaxed)),
            name: options.name.map(Arc::from),
            pattern,
            kind,
            policy: options.policy,
            capacity: options.capacity,
            queue: Queue::new(options.capacity, options.policy),
            handler_errors: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            done: Latch::default(),
            counters: Arc::clone(&inner.counters),
        });
        let mut subs = inner.subs.write().unwrap_or_else(PoisonError::into_inner);
        // Checked under the write lock so `shutdown`'s snapshot cannot miss this subscriber.
        if inner.closed.load(Ordering::SeqCst) {
            return Err(BusError::Closed);
        }
        *subs = subs.iter().cloned().chain([Arc::clone(&sub)]).collect();
        drop(subs);
        tracing::debug!(subscriber = %sub.id, pattern = sub.pattern.as_str(), kind = ?kind, "bus subscription added");
        Ok(sub)
    }

    /// Shuts the bus down gracefully: from now on `publish` and `subscribe` fail with
    /// [`BusError::Closed`]; publications already in progress complete; then every subscriber is
    /// closed to new events, and this returns once every handler subscriber has run for every
    /// event in its queue. Streams are closed too and keep what is queued for their reader
    /// (they yield it, then `None`); their reader is not waited for, since the bus does not own
    /// it.
    ///
    /// A publication in progress that is blocked on a full stream nobody reads, or a handler
    /// that never returns, keeps this waiting: wrap the call in `tokio::time::timeout` to bound
    /// it. Idempotent; concurrent calls all wait for the end.
    pub async fn shutdown(&self) {
        let inner = &*self.inner;
        inner.closed.store(true, Ordering::SeqCst);
        loop {
            let mut idle = pin!(inner.idle.notified());
            idle.as_mut().enable();
            if inner.in_flight.load(Ordering::SeqCst) == 0 {
                break;
            }
            idle.await;
        }
        let subs = inner.snapshot();
        for sub in subs.iter() {
            sub.queue.close();
        }
        for sub in subs.iter().filter(|s| s.kind == SubscriberKind::Handler) {
            sub.done.wait().await;
        }
        *inner.subs.write().unwrap_or_else(PoisonError::into_inner) = Arc::from(Vec::new());
        tracing::debug!(subscribers = subs.len(), "bus shut down");
    }

    /// Whether [`shutdown`](Self::shutdown) has begun.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// The bus's counters.
    pub fn stats(&self) -> BusStats {
        let c = &self.inner.counters;
        BusStats {
            published: c.published.load(Ordering::Relaxed),
            unmatched: c.unmatched.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            handler_errors: c.handler_errors.load(Ordering::Relaxed),
            panics: c.panics.load(Ordering::Relaxed),
            subscribers: self.inner.snapshot().len(),
        }
    }

    /// The counters of every current subscriber, in subscription order.
    pub fn subscriber_stats(&self) -> Vec<SubscriberStats> {
        self.inner.snapshot().iter().map(|s| s.stats()).collect()
    }
}

/// What one publication did so far.
#[derive(Default)]
struct Tally {
    /// The topic, shared by every subscriber's copy; allocated at the first match only.
    topic: Option<Arc<str>>,
    matched: usize,
    delivered: usize,
    dropped: u64,
}

impl Tally {
    fn topic(&mut self, topic: &str) -> Arc<str> {
        Arc::clone(self.topic.get_or_insert_with(|| shared_topic(topic)))
    }

    fn count(&mut self, pushed: Pushed) {
        match pushed {
            Pushed::Queued => self.delivered += 1,
            Pushed::QueuedDroppedOldest => {
                self.delivered += 1;
                self.dropped += 1;
            }
            Pushed::Closed => {}
        }
    }
}

/// How many recently published topics each thread keeps.
const RECENT_TOPICS: usize = 4;

/// The last few topics published from this thread, so that a topic published over and over
/// (`calls.live`) is not allocated each time. A fixed number of slots per thread, replaced
/// round-robin: memory stays bounded however many distinct scoped topics go by.
struct RecentTopics {
    slots: [Option<Arc<str>>; RECENT_TOPICS],
    next: usize,
}

thread_local! {
    static RECENT: std::cell::RefCell<RecentTopics> = const {
        std::cell::RefCell::new(RecentTopics {
            slots: [const { None }; RECENT_TOPICS],
            next: 0,
        })
    };
}

/// The topic as a shared string: from this thread's recent topics, or newly allocated.
fn shared_topic(topic: &str) -> Arc<str> {
    RECENT
        .try_with(|recent| {
            let mut recent = recent.try_borrow_mut().ok()?;
            if let Some(hit) = recent.slots.iter().flatten().find(|t| ***t == *topic) {
                return Some(Arc::clone(hit));
            }
            let fresh: Arc<str> = Arc::from(topic);
            let slot = recent.next;
            recent.slots[slot] = Some(Arc::clone(&fresh));
            recent.next = (slot + 1) % RECENT_TOPICS;
            Some(fresh)
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| Arc::from(topic))
}

/// Where a publication stopped because a subscriber's queue is full.
struct Resume<E> {
    subs: SubList<E>,
    /// Index in `subs` of the subscriber to wait for.
    index: usize,
    /// Its event.
    blocked: Event<E>,
    /// The payload for the matching subscribers after it, if any.
    rest: Option<E>,
}

impl<E: Clone> Inner<E> {
    /// Delivers synchronously, under the read lock and without touching the list's reference
    /// count, until a subscriber would make the publisher wait. The previous match gets a clone
    /// and the last one gets `event` itself, which saves a clone per publication.
    fn deliver_now(&self, topic: &str, event: E, tally: &mut Tally) -> Option<Resume<E>> {
        let subs = self.subs.read().unwrap_or_else(PoisonError::into_inner);
        let mut matches = subs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.pattern.matches(topic));
        let mut next = matches.next();
        let mut event = Some(event);
        while let Some((index, sub)) = next {
            tally.matched += 1;
            let following = matches.next();
            let payload = if following.is_some() {
                event.clone()
            } else {
                event.take()
            };
            let Some(payload) = payload else { break };
            let ev = Event {
                topic: tally.topic(topic),
                payload,
            };
            match sub.queue.try_push(ev) {
                Ok(pushed) => tally.count(pushed),
                Err(blocked) => {
                    return Some(Resume {
                        subs: Arc::clone(&subs),
                        index,
                        blocked,
                        rest: following.and(event),
                    });
                }
            }
            next = following;
        }
        None
    }
}

/// The rest of a publication from the first subscriber that made it wait, on a snapshot of the
/// list (no lock is held across `.await`).
async fn deliver_waiting<E: Clone>(topic: &str, resume: Resume<E>, tally: &mut Tally) {
    let Resume {
        subs,
        index,
        blocked,
        mut rest,
    } = resume;
    tally.count(subs[index].queue.push(blocked).await);
    let mut matches = subs[index + 1..]
        .iter()
        .filter(|s| s.pattern.matches(topic));
    let mut next = matches.next();
    while let Some(sub) = next {
        tally.matched += 1;
        let following = matches.next();
        let payload = if following.is_some() {
            rest.clone()
        } else {
            rest.take()
        };
        let Some(payload) = payload else { break };
        let ev = Event {
            topic: tally.topic(topic),
            payload,
        };
        tally.count(sub.queue.push(ev).await);
        next = following;
    }
}

/// Sets a subscriber's `done` latch when its receiving side goes away, however that happens
/// (including the runtime dropping the handler task).
struct DoneOnDrop<E>(Arc<Sub<E>>);

impl<E> Drop for DoneOnDrop<E> {
    fn drop(&mut self) {
        self.0.done.set();
    }
}

async fn run_handler<E, F, Fut>(sub: Arc<Sub<E>>, handler: F)
where
    E: Send + Sync + 'static,
    F: Fn(Event<E>) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: HandlerResult,
{
    let sub = DoneOnDrop(sub);
    let sub = &*sub.0;
    while let Some(event) = poll_fn(|cx| sub.queue.poll_pop(cx)).await {
        let topic = Arc::clone(&event.topic);
        // The call itself may panic as well as the future it returns.
        let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(event))) {
            Ok(fut) => AssertUnwindSafe(fut).catch_unwind().await,
            Err(panic) => Err(panic),
        };
        match outcome {
            Ok(result) => {
                if let Some(error) = result.into_error() {
                    sub.handler_errors.fetch_add(1, Ordering::Relaxed);
                    sub.counters.handler_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        subscriber = %sub.id,
                        name = sub.label(),
                        topic = &*topic,
                        error = %error,
                        "bus handler returned an error"
                    );
                }
            }
            Err(panic) => {
                sub.panics.fetch_add(1, Ordering::Relaxed);
                sub.counters.panics.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    subscriber = %sub.id,
                    name = sub.label(),
                    topic = &*topic,
                    panic = panic_message(&*panic),
                    "bus handler panicked; it keeps receiving events"
                );
            }
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "<non-string panic payload>"
    }
}

/// A handler subscription. Dropping it unsubscribes (see [`unsubscribe`](Self::unsubscribe));
/// [`detach`](Self::detach) keeps the handler running for the bus's lifetime.
#[must_use = "dropping a Subscription unsubscribes it at once; call .detach() to keep it"]
pub struct Subscription<E> {
    sub: Arc<Sub<E>>,
    bus: Weak<Inner<E>>,
    detached: bool,
}

impl<E> Subscription<E> {
    /// The subscription's id.
    pub fn id(&self) -> SubscriberId {
        self.sub.id
    }

    /// The pattern it was made with.
    pub fn pattern(&self) -> &str {
        self.sub.pattern.as_str()
    }

    /// Its counters.
    pub fn stats(&self) -> SubscriberStats {
        self.sub.stats()
    }

    /// Whether the handler task has ended (after unsubscribe or shutdown, once drained).
    pub fn is_finished(&self) -> bool {
        self.sub.done.is_set()
    }

    /// Stops new events from reaching the handler, lets it finish the events already queued,
    /// and returns its final counters once the handler task has ended. Dropping the handle does
    /// the same without waiting.
    pub async fn unsubscribe(mut self) -> SubscriberStats {
        self.detached = true;
        close_sub(&self.bus, &self.sub);
        self.sub.done.wait().await;
        self.sub.stats()
    }

    /// Lets the handler run until the bus shuts down (or every `EventBus` clone is dropped),
    /// without keeping a handle.
    pub fn detach(mut self) {
        self.detached = true;
    }
}

impl<E> Drop for Subscription<E> {
    fn drop(&mut self) {
        if !self.detached {
            close_sub(&self.bus, &self.sub);
        }
    }
}

impl<E> fmt::Debug for Subscription<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.sub.id)
            .field("pattern", &self.sub.pattern)
            .field("name", &self.sub.name)
            .finish_non_exhaustive()
    }
}

/// A subscription read as a [`Stream`] of [`Event`]s, in publish order.
///
/// Dropping it unsubscribes and discards what was queued. [`close`](Self::close) stops new
/// events but keeps yielding the queued ones, then `None`.
pub struct SubscriptionStream<E> {
    sub: Arc<Sub<E>>,
    bus: Weak<Inner<E>>,
    finished: bool,
}

impl<E> SubscriptionStream<E> {
    /// The next event, or `None` once the stream is closed and drained.
    pub async fn recv(&mut self) -> Option<Event<E>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next event.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event<E>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let next = self.sub.queue.poll_pop(cx);
        if let Poll::Ready(None) = next {
            self.finished = true;
            self.sub.done.set();
        }
        next
    }

    /// Unsubscribes: no new events arrive, the queued ones are still yielded, then `None`.
    pub fn close(&mut self) {
        close_sub(&self.bus, &self.sub);
    }

    /// Whether the stream receives no new events any more (closed, unsubscribed, or the bus
    /// shut down). Queued events may remain to be read.
    pub fn is_closed(&self) -> bool {
        self.sub.queue.is_closed()
    }

    /// The subscription's id.
    pub fn id(&self) -> SubscriberId {
        self.sub.id
    }

    /// The pattern it was made with.
    pub fn pattern(&self) -> &str {
        self.sub.pattern.as_str()
    }

    /// How many events [`Policy::DropOldest`] has dropped from this stream so far.
    pub fn lagged(&self) -> u64 {
        self.sub.queue.counts().dropped
    }

    /// Its counters.
    pub fn stats(&self) -> SubscriberStats {
        self.sub.stats()
    }

    /// The payloads alone, without topics.
    pub fn into_payloads(self) -> impl Stream<Item = E> + Unpin {
        futures::StreamExt::map(self, Event::into_payload)
    }
}

impl<E> Stream for SubscriptionStream<E> {
    type Item = Event<E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<E> futures::stream::FusedStream for SubscriptionStream<E> {
    fn is_terminated(&self) -> bool {
        self.finished
    }
}

impl<E> Drop for SubscriptionStream<E> {
    fn drop(&mut self) {
        close_sub(&self.bus, &self.sub);
        // Nobody will read what is left; free it now rather than when the last handle goes.
        self.sub.queue.clear();
        self.sub.done.set();
    }
}

impl<E> fmt::Debug for SubscriptionStream<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionStream")
            .field("id", &self.sub.id)
            .field("pattern", &self.sub.pattern)
            .field("name", &self.sub.name)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}
