//! The in-memory cache, on moka.

use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;

use super::{Cache, CacheCounters, CacheEntry, CacheError, CacheKey, CacheStats};

/// Drops an entry from memory once its `retain_until` has passed.
struct RetainUntil;

impl moka::Expiry<CacheKey, CacheEntry> for RetainUntil {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &CacheEntry,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(remaining(value))
    }

    fn expire_after_update(
        &self,
        _key: &CacheKey,
        value: &CacheEntry,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(remaining(value))
    }
}

fn remaining(entry: &CacheEntry) -> Duration {
    entry
        .retain_until
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

/// An in-memory [`Cache`] bounded by total body size (least recently used bodies go first)
/// and by each entry's `retain_until`. Gone when the process ends; cheap to share.
///
/// moka does its housekeeping during cache calls (there is no timer), so an expired entry may
/// occupy memory until the next call; it is never returned after its `retain_until`.
#[derive(Debug, Clone)]
pub struct MemoryCache {
    inner: moka::future::Cache<CacheKey, CacheEntry>,
    counters: std::sync::Arc<CacheCounters>,
}

impl Default for MemoryCache {
    /// 64 MiB of bodies.
    fn default() -> Self {
        Self::new(64 * 1024 * 1024)
    }
}

impl MemoryCache {
    /// A cache holding at most `max_bytes` of response bodies.
    pub fn new(max_bytes: u64) -> Self {
        let inner = moka::future::Cache::builder()
            .name("bcfy-archive")
            .max_capacity(max_bytes)
            .weigher(|_key: &CacheKey, entry: &CacheEntry| {
                // The body dominates; 256 bytes stands for the key and metadata.
                u32::try_from(entry.body.len().saturating_add(256)).unwrap_or(u32::MAX)
            })
            .expire_after(RetainUntil)
            .build();
        Self::from_moka(inner)
    }

    /// A cache holding at most `max_entries` blocks, whatever their size.
    pub fn with_max_entries(max_entries: u64) -> Self {
        let inner = moka::future::Cache::builder()
            .name("bcfy-archive")
            .max_capacity(max_entries)
            .expire_after(RetainUntil)
            .build();
        Self::from_moka(inner)
    }

    fn from_moka(inner: moka::future::Cache<CacheKey, CacheEntry>) -> Self {
        Self {
            inner,
            counters: std::sync::Arc::default(),
        }
    }

    /// How many entries are held (approximate: moka counts lazily).
    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<CacheEntry>, CacheError> {
        let found = self
            .inner
            .get(key)
            .await
            .filter(|e| e.retain_until > SystemTime::now());
        CacheCounters::bump(if found.is_some() {
            &self.counters.hits
        } else {
            &self.counters.misses
        });
        Ok(found)
    }

    async fn set(&self, key: &CacheKey, entry: CacheEntry) -> Result<(), CacheError> {
        self.inner.insert(*key, entry).await;
        CacheCounters::bump(&self.counters.writes);
        Ok(())
    }

    async fn remove(&self, key: &CacheKey) -> Result<(), CacheError> {
        self.inner.invalidate(key).await;
        Ok(())
    }

    fn stats(&self) -> CacheStats {
        self.counters.snapshot()
    }
}
