//! One subscriber's bounded queue.
//!
//! A `VecDeque` under a short `std` mutex (never held across an `.await`) and one receiver
//! waker. The receiver is woken only when it sleeps (its waker is taken by the first push), so a
//! burst of publications costs one wakeup. Publishing is synchronous while there is room; only a
//! full [`Policy::Block`] queue makes a publisher register on a [`Notify`] and wait. Waiting
//! publishers are served in FIFO order (`Notify::notify_one` wakes the oldest waiter, and a
//! publisher that arrives while others wait queues behind them instead of taking a freed slot),
//! so a stalled subscriber pushes back on whoever publishes to it without starving anyone. For
//! [`Policy::DropOldest`] a full queue loses its front element instead.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

use crate::Policy;

/// Largest initial allocation of a queue, so a huge capacity costs memory only when used.
const MAX_INITIAL_SLOTS: usize = 64;

pub(crate) struct Queue<T> {
    state: Mutex<State<T>>,
    /// Signalled when a slot frees up while publishers wait (`Policy::Block`), and on close.
    space: Notify,
    policy: Policy,
    capacity: usize,
}

struct State<T> {
    buf: VecDeque<T>,
    rx_waker: Option<Waker>,
    closed: bool,
    /// Publishers waiting for room (`Policy::Block`).
    waiting: usize,
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

/// Takes a waiting publisher off the count however its wait ends (including cancellation).
struct Waiting<'a, T> {
    queue: &'a Queue<T>,
    registered: bool,
}

impl<T> Drop for Waiting<'_, T> {
    fn drop(&mut self) {
        if self.registered {
            self.queue.lock().waiting -= 1;
        }
    }
}

impl<T> Queue<T> {
    pub(crate) fn new(capacity: usize, policy: Policy) -> Self {
        Self {
            state: Mutex::new(State {
                buf: VecDeque::with_capacity(capacity.min(MAX_INITIAL_SLOTS)),
                rx_waker: None,
                closed: false,
                waiting: 0,
                delivered: 0,
                received: 0,
                dropped: 0,
            }),
            space: Notify::new(),
            policy,
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while the lock is held, but a poisoned queue must not take the bus down.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item` if that needs no waiting; gives it back otherwise (a full `Block` queue, or
    /// other publishers already waiting for room).
    pub(crate) fn try_push(&self, item: T) -> Result<Pushed, T> {
        let mut st = self.lock();
        if st.closed {
            return Ok(Pushed::Closed);
        }
        let full = st.buf.len() >= self.capacity;
        match self.policy {
            Policy::Block if full || st.waiting > 0 => Err(item),
            Policy::Block => {
                Self::enqueue(st, item);
                Ok(Pushed::Queued)
            }
            Policy::DropOldest => {
                let evicted = if full {
                    st.dropped += 1;
                    st.buf.pop_front()
                } else {
                    None
                };
                Self::enqueue(st, item);
                // The evicted element is dropped here, outside the lock.
                Ok(match evicted {
                    Some(_) => Pushed::QueuedDroppedOldest,
                    None => Pushed::Queued,
                })
            }
        }
    }

    /// Queues `item`, waiting for room under `Policy::Block`.
    ///
    /// Cancel safe: if the future is dropped while waiting, nothing was queued.
    pub(crate) async fn push(&self, item: T) -> Pushed {
        match self.try_push(item) {
            Ok(pushed) => pushed,
            Err(item) => self.push_slow(item).await,
        }
    }

    async fn push_slow(&self, item: T) -> Pushed {
        let mut guard = Waiting {
            queue: self,
            registered: false,
        };
        loop {
            // Register before looking, so a slot freed in between is not missed.
            let mut notified = pin!(self.space.notified());
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if st.closed {
                    return Pushed::Closed;
                }
                // A newcomer queues behind earlier waiters; a woken waiter takes the free slot.
                let my_turn = guard.registered || st.waiting == 0;
                if my_turn && st.buf.len() < self.capacity {
                    if guard.registered {
                        st.waiting -= 1;
                        guard.registered = false;
                    }
                    let pass_on = st.waiting > 0 && st.buf.len() + 1 < self.capacity;
                    Self::enqueue(st, item);
                    if pass_on {
                        self.space.notify_one();
                    }
                    return Pushed::Queued;
                }
                if !guard.registered {
                    st.waiting += 1;
                    guard.registered = true;
                }
            }
            notified.await;
        }
    }

    /// Appends under the lock, then wakes the receiver outside it.
    fn enqueue(mut st: MutexGuard<'_, State<T>>, item: T) {
        st.buf.push_back(item);
        st.delivered += 1;
        let waker = st.rx_waker.take();
        drop(st);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Takes the next element; `Ready(None)` once closed and empty.
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut st = self.lock();
        if let Some(item) = st.buf.pop_front() {
            st.received += 1;
            // Only the pop that ends "full" wakes a waiting publisher; each publisher that gets
            // a slot wakes the next one if there is more room (see `push_slow`). One wakeup per
            // refill instead of one per pop.
            let wake_publisher = st.waiting > 0 && st.buf.len() + 1 == self.capacity;
            drop(st);
            if wake_publisher {
                self.space.notify_one();
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
        self.space.notify_waiters();
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
    fn waiting_publishers_are_served_in_arrival_order_and_newcomers_queue_behind() {
        let q = Queue::new(1, Policy::Block);
        assert_eq!(q.push(0).now_or_never(), Some(Pushed::Queued));
        let mut first = Box::pin(q.push(1));
        let mut second = Box::pin(q.push(2));
        assert!((&mut first).now_or_never().is_none());
        assert!((&mut second).now_or_never().is_none());
        assert_eq!(pop(&q), Poll::Ready(Some(0)));
        // A slot is free, but two publishers wait: a newcomer does not jump the line.
        assert!(matches!(q.try_push(9), Err(9)));
        assert!((&mut second).now_or_never().is_none());
        assert_eq!(first.now_or_never(), Some(Pushed::Queued));
        assert_eq!(pop(&q), Poll::Ready(Some(1)));
        assert_eq!(second.now_or_never(), Some(Pushed::Queued));
        assert_eq!(pop(&q), Poll::Ready(Some(2)));
        assert_eq!(q.try_push(3), Ok(Pushed::Queued));
    }

    #[test]
    fn a_cancelled_waiter_passes_its_turn_on() {
        let q = Queue::new(1, Policy::Block);
        assert_eq!(q.push(0).now_or_never(), Some(Pushed::Queued));
        let mut first = Box::pin(q.push(1));
        let mut second = Box::pin(q.push(2));
        assert!((&mut first).now_or_never().is_none());
        assert!((&mut second).now_or_never().is_none());
        assert_eq!(pop(&q), Poll::Ready(Some(0)));
        drop(first);
        assert_eq!(second.now_or_never(), Some(Pushed::Queued));
        assert_eq!(pop(&q), Poll::Ready(Some(2)));
        assert_eq!(q.lock().waiting, 0);
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
