//! The cache contract and its two implementations.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use bcfy_proto::{CacheConfig, ErrorCategory, GroupId, RetryHint, TimeBlock};
use bytes::Bytes;

mod fs;
mod memory;

pub use fs::FsCache;
pub use memory::MemoryCache;

/// The cache a [`CacheConfig`] describes: an [`FsCache`] in its `directory` when one is given,
/// else a [`MemoryCache`] of `max_entries` blocks.
pub fn cache_from_config(config: &CacheConfig) -> Arc<dyn Cache> {
    match &config.directory {
        Some(dir) => Arc::new(FsCache::new(dir.clone())),
        None => Arc::new(MemoryCache::with_max_entries(config.max_entries)),
    }
}

/// What a cache entry is stored under: one talkgroup's archive for one 30-minute block
/// (`(system, talkgroup, time_block)` in the spec's words).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey {
    /// The system and talkgroup.
    pub group: GroupId,
    /// The block.
    pub block: TimeBlock,
}

impl CacheKey {
    /// The key of `group`'s archive for `block`.
    pub fn new(group: GroupId, block: TimeBlock) -> Self {
        Self { group, block }
    }
}

impl fmt::Display for CacheKey {
    /// `{sid}-{tg}@{block epoch}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.group, self.block.epoch_secs())
    }
}

/// One cached archive response: the body exactly as the service sent it, plus what the
/// [`ArchiveClient`](crate::ArchiveClient) needs to decide freshness and to revalidate.
///
/// Freshness is the client's decision (it knows which blocks are immutable); a cache only has
/// to keep the entry, and may drop it once `retain_until` has passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheEntry {
    /// The response body (JSON).
    pub body: Bytes,
    /// When the body was fetched, or last confirmed by a `304`.
    pub fetched_at: SystemTime,
    /// Until when the entry is served without asking the server.
    pub fresh_until: SystemTime,
    /// Until when the entry is worth keeping (later than `fresh_until` when it can be
    /// revalidated).
    pub retain_until: SystemTime,
    /// The response's `ETag`, sent back as `If-None-Match`.
    pub etag: Option<String>,
    /// The response's `Last-Modified`, sent back as `If-Modified-Since`.
    pub last_modified: Option<String>,
}

impl CacheEntry {
    /// Whether the entry may be served at `now` without asking the server.
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        now < self.fresh_until
    }

    /// Whether the server gave validators for a conditional request.
    pub fn can_revalidate(&self) -> bool {
        self.etag.is_some() || self.last_modified.is_some()
    }
}

/// Counters of a cache, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups that found an entry.
    pub hits: u64,
    /// Lookups that found none (corrupt and expired entries included).
    pub misses: u64,
    /// Entries written.
    pub writes: u64,
    /// Entries found corrupt (and dropped).
    pub corrupt: u64,
    /// Operations that failed with a [`CacheError`].
    pub errors: u64,
}

/// Atomic counters behind [`CacheStats`], shared by the implementations.
#[derive(Debug, Default)]
pub(crate) struct CacheCounters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) corrupt: AtomicU64,
    pub(crate) errors: AtomicU64,
}

impl CacheCounters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            corrupt: self.corrupt.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// An async store of archive responses.
///
/// Implementations must be safe to share between tasks. A lookup of an entry that cannot be
/// read back intact (truncated, garbled) is a miss, not an error: errors are for a store that
/// does not work (permissions, a full disk, an unreachable server). The
/// [`ArchiveClient`](crate::ArchiveClient) logs and counts every error and carries on with the
/// network, so a broken cache never breaks a fetch.
#[async_trait]
pub trait Cache: Send + Sync + fmt::Debug + 'static {
    /// The entry stored under `key`, if any.
    async fn get(&self, key: &CacheKey) -> Result<Option<CacheEntry>, CacheError>;
    /// Store `entry` under `key`, replacing any previous one.
    async fn set(&self, key: &CacheKey, entry: CacheEntry) -> Result<(), CacheError>;
    /// Drop the entry under `key` (no error if there is none).
    async fn remove(&self, key: &CacheKey) -> Result<(), CacheError>;
    /// Hit/miss counters.
    fn stats(&self) -> CacheStats;
}

/// What went wrong in a cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CacheErrorKind {
    /// The storage failed (filesystem error, backend unreachable).
    Io,
    /// An entry could not be encoded for storage.
    Encode,
    /// An entry could not be decoded (implementations usually report this as a miss instead).
    Corrupt,
    /// The cache was configured wrongly (for example a directory that is a file).
    Config,
}

impl CacheErrorKind {
    /// A short, stable, snake_case name (for logs and metrics labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Io => "io",
            Self::Encode => "encode",
            Self::Corrupt => "corrupt",
            Self::Config => "config",
        }
    }
}

impl fmt::Display for CacheErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cache failure (the spec's `CacheError`).
#[derive(Clone, Debug, thiserror::Error)]
#[error("archive cache {kind} error: {message}")]
pub struct CacheError {
    kind: CacheErrorKind,
    message: String,
    #[source]
    source: Option<Arc<io::Error>>,
}

impl CacheError {
    /// A cache error of `kind` with a message (for implementations outside this crate).
    pub fn new(kind: CacheErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// An [`CacheErrorKind::Io`] error caused by `err`.
    pub fn io(message: impl Into<String>, err: io::Error) -> Self {
        Self {
            kind: CacheErrorKind::Io,
            message: format!("{}: {err}", message.into()),
            source: Some(Arc::new(err)),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> CacheErrorKind {
        self.kind
    }

    /// Always [`ErrorCategory::Cache`].
    pub fn category(&self) -> ErrorCategory {
        ErrorCategory::Cache
    }

    /// Storage failures may pass ([`RetryHint::Backoff`]); the others will not by themselves.
    pub fn retry_hint(&self) -> RetryHint {
        match self.kind {
            CacheErrorKind::Io => RetryHint::Backoff,
            _ => RetryHint::Never,
        }
    }
}
