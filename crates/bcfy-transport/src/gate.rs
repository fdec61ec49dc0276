//! [`RetryAfterGate`]: 429 / 503 + `Retry-After` pause every caller of a transport.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::time::Instant;

/// The longest pause a `Retry-After` may impose (10 minutes). A server that asks for more gets
/// this much: the caller retries then and is told again if the server still refuses, instead of
/// a client that goes silent for hours because of one odd header.
pub const MAX_RETRY_AFTER: Duration = Duration::from_mins(10);

/// The pause after a 429 that carries no (parsable) `Retry-After` (5 seconds).
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// A gate shared by every clone of a transport: when the server says "slow down", the gate
/// closes until the given time and every request of every caller waits on it before it goes.
///
/// Closing only ever extends the pause (a shorter `Retry-After` arriving later does not reopen
/// it early). Time is tokio time, so paused-time tests drive it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use bcfy_transport::RetryAfterGate;
///
/// let gate = RetryAfterGate::new();
/// assert!(gate.closed_until().is_none());
/// gate.close_for(Duration::from_millis(10));
/// assert!(gate.closed_until().is_some());
/// gate.wait().await; // returns once 10 ms have passed
/// assert!(gate.closed_until().is_none());
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct RetryAfterGate {
    until: Arc<Mutex<Option<Instant>>>,
}

impl RetryAfterGate {
    /// An open gate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Closes the gate for `pause` from now, unless it is already closed for longer.
    pub fn close_for(&self, pause: Duration) {
        let Some(until) = Instant::now().checked_add(pause) else {
            return;
        };
        let mut guard = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none_or(|cur| cur < until) {
            *guard = Some(until);
        }
    }

    /// When the gate reopens, or `None` when it is open.
    pub fn closed_until(&self) -> Option<Instant> {
        let guard = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        guard.filter(|until| *until > Instant::now())
    }

    /// How long until the gate reopens (`None` when open).
    pub fn remaining(&self) -> Option<Duration> {
        self.closed_until()
            .map(|until| until.saturating_duration_since(Instant::now()))
    }

    /// Waits until the gate is open (at once when it is).
    pub async fn wait(&self) {
        while let Some(until) = self.closed_until() {
            tokio::time::sleep_until(until).await;
        }
    }
}

/// Parses a `Retry-After` value: delta seconds (`"120"`) or an HTTP date, relative to `now`.
/// A date in the past is a zero pause. Returns `None` for anything else.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use bcfy_transport::parse_retry_after;
/// use http::HeaderValue;
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
/// assert_eq!(parse_retry_after(&HeaderValue::from_static("7"), now), Some(Duration::from_secs(7)));
/// let date = HeaderValue::from_static("Wed, 21 Oct 2015 07:29:00 GMT");
/// assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(60)));
/// assert_eq!(parse_retry_after(&HeaderValue::from_static("soon"), now), None);
/// ```
pub fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Huge values saturate; the caller caps them.
        let secs = text.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs));
    }
    let date = httpdate::parse_http_date(text).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Whether a response closes the gate, and for how long: 429 (with any or no `Retry-After`,
/// `default` when absent or unparsable) or 503 with a parsable `Retry-After`; capped at `max`.
pub(crate) fn rate_limit_pause(
    status: StatusCode,
    headers: &HeaderMap,
    default: Duration,
    max: Duration,
) -> Option<Duration> {
    let parsed = headers
        .get(RETRY_AFTER)
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let pause = match status {
        StatusCode::TOO_MANY_REQUESTS => parsed.unwrap_or(default),
        StatusCode::SERVICE_UNAVAILABLE => parsed?,
        _ => return None,
    };
    Some(pause.min(max))
}
