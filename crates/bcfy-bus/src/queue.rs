//! One subscriber's bounded queue.
//!
//! A `VecDeque` under a short `std` mutex (never held across an `.await`), one receiver waker,
//! and for [`Policy::Block`] a fair Tokio semaphore holding one permit per free slot. Publishers
//! wait for a permit in FIFO order, so a stalled subscriber pushes back on whoever publishes to
//! it. For [`Policy::DropOldest`] there is no semaphore: a full queue loses its front element.
//! The receiver is woken only when it sleeps (its waker is taken on the first push), so a burst of
//! publications costs one wakeup.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::{Semaphore, TryAcquireError};

use crate::Policy;

/// Largest initial allocation of a queue, so a huge capacity costs memory only when used.
const MAX_INITIAL_SLOTS: usize = 64;

pub(crate) struct Queue<T> {
    state: Mutex<State<T>>,
    /// Free slots, for `Policy::Block` only.
    permits: Option<Semaphore>,
    capacity: usize,
}

struct State<T> {
    buf: VecDeque<T>,
    rx_waker: Option<Waker>,
    closed: bool,
    delivered: u64,
    received: u64,
    dropped: u64,
}

/// Counters of one queue, read under its lock.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct QueueCounts {
    pub(crate) delivered: u64,
    pub(crate) received: u64,
    pub(crate) dropped: u64,
    pub(crate) queued: usize,
}

/// What a push did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued.
    Queued,
    /// Queued, and the oldest element was dropped to make room.
    QueuedDroppedOldest,
    /// The queue is closed; the element was discarded.
    Closed,
}

impl<T> Queue<T> {
    pub(crate) fn new(capacity: usize, policy: Policy) -> Self {
        Self {
            state: Mutex::new(State {
                buf: VecDeque::with_capacity(capacity.min(MAX_INITIAL_SLOTS)),
                rx_waker: None,
                closed: false,
                delivered: 0,
                received: 0,
                dropped: 0,
            }),
            permits: match policy {
                Policy::Block => Some(Semaphore::new(capacity)),
                Policy::DropOldest => None,
            },
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while the lock is held, but a poisoned queue must not take the bus down.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item`, waiting for room under `Policy::Block`.
    ///
    /// Cancel safe: if the future is dropped while waiting, nothing was queued.
    pub(crate) async fn push(&self, item: T) -> Pushed {
        if let Some(permits) = &self.permits {
            match permits.try_acquire() {
                Ok(permit) => permit.forget(),
                Err(TryAcquireError::NoPermits) => match permits.acquire().await {
                    Ok(permit) => permit.forget(),
                    Err(_) => return Pushed::Closed,
                },
                Err(TryAcquireError::Closed) => return Pushed::Closed,
            }
        }
        self.push_now(item)
    }

    /// Queues `item` without waiting: the caller holds a slot (Block) or the policy never waits.
    fn push_now(&self, item: T) -> Pushed {
        let mut st = self.lock();
        if st.closed {
            return Pushed::Closed;
        }
        let evicted = if self.permits.is_none() && st.buf.len() >= self.capacity {
            st.dropped += 1;
            st.buf.pop_front()
        } else {
            None
        };
        st.buf.push_back(item);
        st.delivered += 1;
        let waker = st.rx_waker.take();
        drop(st);
        if let Some(waker) = waker {
            waker.wake();
        }
        // The evicted element (if any) is dropped here, outside the lock.
        if evicted.is_some() {
            Pushed::QueuedDroppedOldest
        } else {
            Pushed::Queued
        }
    }

    /// Takes the next element; `Ready(None)` once closed and empty.
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut st = self.lock();
        if let Some(item) = st.buf.pop_front() {
            st.received += 1;
            drop(st);
            if let Some(permits) = &self.permits {
                permits.add_permits(1);
            }
            return Poll::Ready(Some(item));
        }
        if st.closed {
            return Poll::Ready(None);
        }
        match &mut st.rx_waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Stops accepting elements. What is queued stays to be popped; publishers waiting for room
    /// give up.
    pub(crate) fn close(&self) {
        let waker = {
            let mut st = self.lock();
            st.closed = true;
            st.rx_waker.take()
        };
        if let Some(permits) = &self.permits {
            permits.close();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Drops everything queued (the receiver is gone).
    pub(crate) fn clear(&self) {
        let items = std::mem::take(&mut self.lock().buf);
        drop(items);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub(crate) fn counts(&self) -> QueueCounts {
        let st = self.lock();
        QueueCounts {
            delivered: st.delivered,
            received: st.received,
            dropped: st.dropped,
            queued: st.buf.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use futures::task::noop_waker_ref;

    fn pop<T>(q: &Queue<T>) -> Poll<Option<T>> {
        q.poll_pop(&mut Context::from_waker(noop_waker_ref()))
    }

    #[test]
    fn block_queue_waits_when_full_and_resumes_in_order() {
        let q = Queue::new(2, Policy::Block);
        assert_eq!(q.push(1).now_or_never(), Some(Pushed::Queued));
        assert_eq!(q.push(2).now_or_never(), Some(Pushed::Queued));
        let mut third = Box::pin(q.push(3));
        assert!(
            (&mut third).now_or_never().is_none(),
            "a full Block queue waits"
        );
        assert_eq!(pop(&q), Poll::Ready(Some(1)));
        assert_eq!(third.now_or_never(), Some(Pushed::Queued));
        assert_eq!(pop(&q), Poll::Ready(Some(2)));
        assert_eq!(pop(&q), Poll::Ready(Some(3)));
        assert_eq!(pop(&q), Poll::Pending);
        q.close();
        assert_eq!(pop(&q), Poll::Ready(None));
        assert_eq!(q.push(4).now_or_never(), Some(Pushed::Closed));
    }

    #[test]
    fn drop_oldest_never_waits() {
        let q = Queue::new(2, Policy::DropOldest);
        for i in 0..5 {
            assert!(q.push(i).now_or_never().is_some());
        }
        let c = q.counts();
        assert_eq!((c.delivered, c.dropped, c.queued), (5, 3, 2));
        assert_eq!(pop(&q), Poll::Ready(Some(3)));
        assert_eq!(pop(&q), Poll::Ready(Some(4)));
    }

    #[test]
    fn close_releases_waiting_publishers() {
        let q = Queue::new(1, Policy::Block);
        assert_eq!(q.push(1).now_or_never(), Some(Pushed::Queued));
        let mut waiting = Box::pin(q.push(2));
        assert!((&mut waiting).now_or_never().is_none());
        q.close();
        assert_eq!(waiting.now_or_never(), Some(Pushed::Closed));
        assert_eq!(pop(&q), Poll::Ready(Some(1)), "queued items survive close");
        assert_eq!(pop(&q), Poll::Ready(None));
    }
}
