//! Producer counters, readable at any time without stopping the producer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A snapshot of a producer's counters since it was created (see
/// [`LiveCallProducer::stats`](crate::LiveCallProducer::stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct ProducerStats {
    /// Live-calls requests sent (successful or not).
    pub polls: u64,
    /// Polls answered with a usable body.
    pub successful_polls: u64,
    /// Envelopes put on the queue.
    pub dispatched: u64,
    /// Calls dropped because their id was dispatched already (the cursor overlap, or a call
    /// repeated inside one answer).
    pub duplicates: u64,
    /// Entries of an answer that failed validation (hostile or malformed); logged and skipped.
    pub rejected: u64,
    /// Calls of the first (`doInit`) answer left out by `max_init_backlog`, plus one for each
    /// live answer over the size cap (the backlog between the cursor and now − `history` was
    /// skipped: see `LiveCallProducer::with_max_answer_bytes`).
    pub backlog_skipped: u64,
    /// Failed polls that were retried after a backoff.
    pub retries: u64,
    /// Polls refused with 429/503 + Retry-After (waited out, not counted against the budget).
    pub rate_limited: u64,
    /// Logged-out answers that led to a new login.
    pub relogins: u64,
    /// Round-trip time of the last poll (request sent to body parsed).
    pub last_poll_latency: Option<Duration>,
    /// Queue occupancy at the last `metrics_interval` sample.
    pub queue_depth: u64,
    /// The cursor (epoch seconds, `ts` units) the next poll starts from.
    pub cursor: f64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) polls: AtomicU64,
    pub(crate) successful_polls: AtomicU64,
    pub(crate) dispatched: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) backlog_skipped: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) relogins: AtomicU64,
    /// Nanoseconds + 1 (0 = never measured).
    pub(crate) last_poll_latency_nanos: AtomicU64,
    pub(crate) queue_depth: AtomicU64,
    /// `f64::to_bits` of the cursor.
    pub(crate) cursor_bits: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set_cursor(&self, cursor: f64) {
        self.cursor_bits.store(cursor.to_bits(), Ordering::Release);
    }

    pub(crate) fn cursor(&self) -> f64 {
        f64::from_bits(self.cursor_bits.load(Ordering::Acquire))
    }

    pub(crate) fn set_latency(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1);
        self.last_poll_latency_nanos
            .store(nanos.saturating_add(1), Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> ProducerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let latency = get(&self.last_poll_latency_nanos);
        ProducerStats {
            polls: get(&self.polls),
            successful_polls: get(&self.successful_polls),
            dispatched: get(&self.dispatched),
            duplicates: get(&self.duplicates),
            rejected: get(&self.rejected),
            backlog_skipped: get(&self.backlog_skipped),
            retries: get(&self.retries),
            rate_limited: get(&self.rate_limited),
            relogins: get(&self.relogins),
            last_poll_latency: (latency > 0).then(|| Duration::from_nanos(latency - 1)),
            queue_depth: get(&self.queue_depth),
            cursor: self.cursor(),
        }
    }
}
