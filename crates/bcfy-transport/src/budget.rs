//! [`RateBudget`]: the token bucket API requests draw from.

use std::fmt;
use std::num::NonZeroU32;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// A budget of requests over time, shared by every producer of one client. The transport
/// calls [`acquire`](Self::acquire) before every [`RequestClass::Api`](crate::RequestClass::Api)
/// request; an implementation waits until the request may go.
///
/// It is a trait so a budget shared by a fleet of processes (e.g. in Redis) can replace the
/// in-process [`GovernorBudget`]. Implementations must wait with tokio time so paused-time
/// tests work.
#[async_trait::async_trait]
pub trait RateBudget: Send + Sync + fmt::Debug + 'static {
    /// Waits until one more request fits in the budget, and takes it.
    async fn acquire(&self);
}

/// No budget: every request may go at once (used when `rate_limit_per_minute` is unset).
#[derive(Debug, Clone, Copy, Default)]
pub struct UnlimitedBudget;

#[async_trait::async_trait]
impl RateBudget for UnlimitedBudget {
    async fn acquire(&self) {}
}

/// A clock for governor that reads tokio time, so the budget advances with paused tokio time
/// in tests and waits with `tokio::time::sleep` (governor's own `until_ready` sleeps on
/// futures-timer, which paused time does not move).
#[derive(Debug, Clone)]
struct TokioClock {
    origin: tokio::time::Instant,
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.origin.elapsed())
    }
}

type DirectLimiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;

/// An in-process token bucket (GCRA, from `governor`) on tokio time.
///
/// [`per_minute(n)`](Self::per_minute) spaces requests `60/n` seconds apart with a burst of
/// one, so no window of a minute ever sees more than `n` (+1 at the window's edge) requests:
/// the spec's `rate_limit_per_minute` is an upper bound on API hits, not an average.
/// [`with_burst`](Self::with_burst) allows a burst for callers that want one.
///
/// ```
/// # async fn demo() {
/// use std::num::NonZeroU32;
/// use bcfy_transport::{GovernorBudget, RateBudget};
///
/// let budget = GovernorBudget::per_minute(NonZeroU32::new(30).unwrap());
/// budget.acquire().await; // at once
/// budget.acquire().await; // two seconds later
/// # }
/// ```
pub struct GovernorBudget {
    limiter: DirectLimiter,
    per_minute: NonZeroU32,
    burst: NonZeroU32,
}

impl GovernorBudget {
    /// `n` requests per minute, evenly spaced (burst of one).
    pub fn per_minute(n: NonZeroU32) -> Self {
        Self::with_burst(n, NonZeroU32::MIN)
    }

    /// `n` requests per minute on average, with up to `burst` at once after a quiet spell.
    pub fn with_burst(n: NonZeroU32, burst: NonZeroU32) -> Self {
        let quota = Quota::per_minute(n).allow_burst(burst);
        let clock = TokioClock {
            origin: tokio::time::Instant::now(),
        };
        Self {
            limiter: RateLimiter::direct_with_clock(quota, clock),
            per_minute: n,
            burst,
        }
    }
}

#[async_trait::async_trait]
impl RateBudget for GovernorBudget {
    async fn acquire(&self) {
        loop {
            match self.limiter.check() {
                Ok(()) => return,
                Err(not_until) => {
                    let now = self.limiter.clock().now();
                    let wait = not_until.wait_time_from(now);
                    // Never spin: a wait rounded down to zero still sleeps one timer tick.
                    let wait = wait.max(std::time::Duration::from_millis(1));
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

impl fmt::Debug for GovernorBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GovernorBudget")
            .field("per_minute", &self.per_minute)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}
