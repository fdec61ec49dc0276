//! Archive time blocks and windows.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A span of epoch seconds, `[start, end)`.
///
/// An archive response reports its window verbatim (`start = s - 1`, `end = s + 1800` on the
/// real service); [`TimeBlock::window`] is exactly `[s, s + 1800)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimeWindow {
    /// First second (epoch seconds).
    pub start: i64,
    /// End (epoch seconds, exclusive).
    pub end: i64,
}

impl TimeWindow {
    /// A window `[start, end)`.
    pub const fn new(start: i64, end: i64) -> Self {
        Self { start, end }
    }

    /// Whether `epoch_secs` lies in `[start, end)`.
    pub const fn contains(&self, epoch_secs: i64) -> bool {
        self.start <= epoch_secs && epoch_secs < self.end
    }

    /// Whether the window holds no second.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// Why a value is not a time block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value} is not a time block: archive blocks are epoch seconds aligned to 1800 s within [{min}, {max}]", min = TimeBlock::MIN.0, max = TimeBlock::MAX.0)]
pub struct TimeBlockError {
    value: i64,
}

/// A 30-minute archive block, identified by its first second (epoch seconds, a multiple of
/// 1800): the `s` query value of `archivecall.php`. Never a block number.
///
/// ```
/// use bcfy_proto::TimeBlock;
/// let b = TimeBlock::containing(1_758_428_366);
/// assert_eq!(b.epoch_secs(), 1_758_427_200);
/// assert_eq!(b.next().epoch_secs(), 1_758_429_000);
/// assert!(TimeBlock::from_aligned(1_758_428_366).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TimeBlock(i64);

impl TimeBlock {
    /// Length of a block in seconds.
    pub const SECONDS: i64 = 1800;
    /// The earliest representable block.
    pub const MIN: TimeBlock = TimeBlock((i64::MIN / Self::SECONDS) * Self::SECONDS);
    /// The latest representable block (its window end still fits an `i64`).
    pub const MAX: TimeBlock =
        TimeBlock(((i64::MAX - Self::SECONDS) / Self::SECONDS) * Self::SECONDS);

    /// The block containing `epoch_secs` (floored to 1800 s). Inputs beyond the representable
    /// range saturate to [`TimeBlock::MIN`] / [`TimeBlock::MAX`].
    pub fn containing(epoch_secs: i64) -> Self {
        if epoch_secs < Self::MIN.0 {
            return Self::MIN;
        }
        let floor = epoch_secs.div_euclid(Self::SECONDS) * Self::SECONDS;
        Self(floor.min(Self::MAX.0))
    }

    /// A block from its aligned first second; rejects unaligned or out-of-range values.
    pub fn from_aligned(epoch_secs: i64) -> Result<Self, TimeBlockError> {
        if epoch_secs.rem_euclid(Self::SECONDS) == 0
            && (Self::MIN.0..=Self::MAX.0).contains(&epoch_secs)
        {
            Ok(Self(epoch_secs))
        } else {
            Err(TimeBlockError { value: epoch_secs })
        }
    }

    /// The first second of the block: the `s` query value.
    pub const fn epoch_secs(self) -> i64 {
        self.0
    }

    /// The following block (saturates at [`TimeBlock::MAX`]).
    #[must_use]
    pub fn next(self) -> Self {
        Self(self.0.saturating_add(Self::SECONDS).min(Self::MAX.0))
    }

    /// The preceding block (saturates at [`TimeBlock::MIN`]).
    #[must_use]
    pub fn prev(self) -> Self {
        Self(self.0.saturating_sub(Self::SECONDS).max(Self::MIN.0))
    }

    /// `[s, s + 1800)`.
    pub const fn window(self) -> TimeWindow {
        TimeWindow {
            start: self.0,
            end: self.0 + Self::SECONDS,
        }
    }

    /// The blocks that intersect `window` (`[start, end)`), in order; none if it is empty.
    pub fn covering(window: TimeWindow) -> impl Iterator<Item = TimeBlock> {
        let first = Self::containing(window.start);
        let mut next = (!window.is_empty()).then_some(first);
        std::iter::from_fn(move || {
            let cur = next?;
            let following = cur.next();
            next = (following != cur && following.0 < window.end).then_some(following);
            Some(cur)
        })
    }
}

impl fmt::Display for TimeBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl<'de> Deserialize<'de> for TimeBlock {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_aligned(i64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<i64> for TimeBlock {
    type Error = TimeBlockError;

    fn try_from(v: i64) -> Result<Self, Self::Error> {
        Self::from_aligned(v)
    }
}
