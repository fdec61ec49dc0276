//! The clock that decides freshness.

use std::fmt;
use std::time::SystemTime;

/// Where the [`ArchiveClient`](crate::ArchiveClient) reads the time from (to pick the current
/// block and to judge freshness). Implement it to drive the client from your own clock.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The default [`Clock`]: wall-clock time that follows tokio's clock.
///
/// It reads `max(SystemTime::now(), anchor + elapsed tokio time)`, where the anchor is taken
/// when the clock is created. So it never runs backwards when the system clock is stepped back,
/// it follows the system clock forward (after a suspend, say), and it moves with tokio's time
/// when that is paused and advanced.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeClock {
    anchor_wall: SystemTime,
    anchor_instant: tokio::time::Instant,
}

impl RuntimeClock {
    /// A clock anchored now.
    pub fn new() -> Self {
        Self {
            anchor_wall: SystemTime::now(),
            anchor_instant: tokio::time::Instant::now(),
        }
    }
}

impl Default for RuntimeClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for RuntimeClock {
    fn now(&self) -> SystemTime {
        let derived = self
            .anchor_wall
            .checked_add(self.anchor_instant.elapsed())
            .unwrap_or(self.anchor_wall);
        derived.max(SystemTime::now())
    }
}
