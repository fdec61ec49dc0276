//! The archive client: cache first, one request per block in flight, revalidation, re-login.

use bcfy_proto::base_dir as site_dir;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bcfy_auth::{AuthManager, is_logged_out};
use bcfy_proto::{
    ArchiveResponse, CacheConfig, Call, GroupId, RejectedCall, TimeBlock, TimeWindow,
};
use bcfy_transport::{Request, RequestClass, SharedTransport};
use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::{StreamExt, TryStreamExt};
use http::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use http::{HeaderMap, StatusCode};
use serde_json::Value;
use tracing::Instrument;
use url::Url;

use crate::cache::{Cache, CacheEntry, CacheKey};
use crate::clock::{Clock, RuntimeClock};
use crate::error::{ArchiveError, ArchiveErrorKind, SNIPPET_MAX};

/// How long archive entries stay fresh.
///
/// A block that ended more than `settle` ago is complete: its calls never change, so it stays
/// fresh for `past_block_ttl`. The current block (and a future one) is still filling, so it
/// stays fresh only `current_block_ttl`. A stale entry the server gave validators for
/// (`ETag`/`Last-Modified`) is kept `stale_retention` longer, so that it can be revalidated
/// with a conditional request instead of fetched again. Without `retain_metadata`, each call's
/// uploader `metadata` object is dropped from what is cached (it is often most of the body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachePolicy {
    /// Freshness of a complete block.
    pub past_block_ttl: Duration,
    /// Freshness of the block still filling.
    pub current_block_ttl: Duration,
    /// How long after its end a block may still gain calls (uploads arrive late).
    pub settle: Duration,
    /// How long a stale entry with validators is kept for revalidation.
    pub stale_retention: Duration,
    /// Whether cached calls keep their `metadata` (the answer of the fetch that stored them
    /// always does).
    pub retain_metadata: bool,
}

impl Default for CachePolicy {
    /// 30 days for complete blocks, 60 s for the current one, 10 minutes to settle, 1 day of
    /// stale retention, metadata kept.
    fn default() -> Self {
        Self {
            past_block_ttl: Duration::from_hours(30 * 24),
            current_block_ttl: Duration::from_mins(1),
            settle: Duration::from_mins(10),
            stale_retention: Duration::from_hours(24),
            retain_metadata: true,
        }
    }
}

impl CachePolicy {
    /// The policy a [`CacheConfig`] describes: its `ttl` is the freshness of complete blocks
    /// (the current block stays fresh for the shorter of it and the default 60 s), and its
    /// `retain_metadata` is kept.
    pub fn from_config(config: &CacheConfig) -> Self {
        let default = Self::default();
        Self {
            past_block_ttl: config.ttl,
            current_block_ttl: default.current_block_ttl.min(config.ttl),
            retain_metadata: config.retain_metadata,
            ..default
        }
    }

    /// Whether `block` can no longer change at `now`.
    pub fn is_complete(&self, block: TimeBlock, now: SystemTime) -> bool {
        let end = block.window().end;
        let settle = i64::try_from(self.settle.as_secs()).unwrap_or(i64::MAX);
        end.saturating_add(settle) <= unix_secs(now)
    }

    /// How long an entry for `block` fetched at `now` stays fresh.
    pub fn ttl(&self, block: TimeBlock, now: SystemTime) -> Duration {
        if self.is_complete(block, now) {
            self.past_block_ttl
        } else {
            self.current_block_ttl
        }
    }
}

/// One block of one talkgroup's archive (the spec's `ArchiveResult`).
#[derive(Clone, Debug)]
pub struct ArchiveResult {
    /// The talkgroup.
    pub group: GroupId,
    /// The block asked for.
    pub block: TimeBlock,
    /// The calls that parsed.
    pub calls: Vec<Call>,
    /// Entries of `calls` that were refused (hostile or malformed), with why.
    pub rejected: Vec<RejectedCall>,
    /// The response's `start`/`end`.
    pub window: TimeWindow,
    /// The response's `serverTime`.
    pub server_time: Option<i64>,
    /// When the body was fetched (or last confirmed by a `304`).
    pub fetched_at: SystemTime,
    /// Whether the body came from the cache (fresh, or confirmed by a `304`).
    pub cache_hit: bool,
    /// Whether a conditional request confirmed a stale entry (`304 Not Modified`).
    pub revalidated: bool,
    /// The whole response as JSON.
    pub raw: Arc<Value>,
}

impl ArchiveResult {
    fn new(
        key: CacheKey,
        response: ArchiveResponse,
        fetched_at: SystemTime,
        cache_hit: bool,
        revalidated: bool,
    ) -> Self {
        Self {
            group: key.group,
            block: key.block,
            calls: response.calls,
            rejected: response.rejected,
            window: response.window,
            server_time: response.server_time,
            fetched_at,
            cache_hit,
            revalidated,
            raw: response.raw,
        }
    }
}

/// Counters of an [`ArchiveClient`], for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArchiveStats {
    /// Fetches answered from a fresh cache entry, without a request.
    pub cache_hits: u64,
    /// Fetches that found no usable entry.
    pub cache_misses: u64,
    /// Requests sent to `archivecall.php` (re-login retries included).
    pub requests: u64,
    /// Stale entries confirmed by a `304 Not Modified`.
    pub revalidated: u64,
    /// Cache operations that failed (the fetch went on without the cache).
    pub cache_errors: u64,
    /// Cached bodies that no longer parsed (treated as misses).
    pub corrupt_entries: u64,
    /// Logged-out answers that led to a new login and a retry.
    pub relogins: u64,
    /// Fetches that joined one already in flight for the same block.
    pub coalesced: u64,
}

#[derive(Default)]
struct Counters {
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    requests: AtomicU64,
    revalidated: AtomicU64,
    cache_errors: AtomicU64,
    corrupt_entries: AtomicU64,
    relogins: AtomicU64,
    coalesced: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

type SharedFetch = Shared<BoxFuture<'static, Result<ArchiveResult, ArchiveError>>>;

struct Inner {
    transport: SharedTransport,
    auth: Arc<AuthManager>,
    site: Url,
    cache: Arc<dyn Cache>,
    clock: Arc<dyn Clock>,
    policy: CachePolicy,
    concurrency: usize,
    counters: Counters,
    /// Fetches in flight, by key, with an id so a finished fetch removes only itself.
    inflight: Mutex<HashMap<CacheKey, (u64, SharedFetch)>>,
    next_id: AtomicU64,
}

/// Fetches archived call metadata (`archivecall.php`), cache first.
///
/// [`fetch`](Self::fetch) looks in the [`Cache`] first; a fresh entry answers without a
/// request. Otherwise it asks the service (with `If-None-Match`/`If-Modified-Since` when a
/// stale entry has validators; a `304` refreshes the entry without a body), stores the answer,
/// and returns it. Concurrent fetches of the same block share one lookup and one request. A
/// logged-out answer invalidates the session through the [`AuthManager`], which logs in again,
/// and the request is retried once. The cache can fail without failing a fetch: every cache
/// error is logged, counted, and bypassed.
///
/// Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct ArchiveClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for ArchiveClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArchiveClient")
            .field("site", &self.inner.site.as_str())
            .field("cache", &self.inner.cache)
            .field("policy", &self.inner.policy)
            .field("concurrency", &self.inner.concurrency)
            .finish_non_exhaustive()
    }
}

impl ArchiveClient {
    /// A client for the site at `site`, sending through `transport` with the session `auth`
    /// keeps, caching in `cache`. Uses [`CachePolicy::default`], a [`RuntimeClock`], and fetches
    /// at most 4 blocks at once in [`fetch_range`](Self::fetch_range).
    pub fn new(
        transport: SharedTransport,
        auth: Arc<AuthManager>,
        site: Url,
        cache: Arc<dyn Cache>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                transport,
                auth,
                site,
                cache,
                clock: Arc::new(RuntimeClock::new()),
                policy: CachePolicy::default(),
                concurrency: 4,
                counters: Counters::default(),
                inflight: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
            }),
        }
    }

    /// Use `policy` for freshness. Call before sharing the client.
    #[must_use]
    pub fn with_policy(self, policy: CachePolicy) -> Self {
        self.rebuild(|i| i.policy = policy)
    }

    /// Read the time from `clock`. Call before sharing the client.
    #[must_use]
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        self.rebuild(|i| i.clock = clock)
    }

    /// Fetch at most `n` (at least 1) blocks at once in [`fetch_range`](Self::fetch_range).
    /// The transport's own limits apply on top.
    #[must_use]
    pub fn with_concurrency(self, n: usize) -> Self {
        self.rebuild(|i| i.concurrency = n.max(1))
    }

    fn rebuild(self, f: impl FnOnce(&mut Inner)) -> Self {
        let inner = match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                f(&mut inner);
                inner
            }
            Err(shared) => {
                let mut inner = Inner {
                    transport: shared.transport.clone(),
                    auth: shared.auth.clone(),
                    site: shared.site.clone(),
                    cache: shared.cache.clone(),
                    clock: shared.clock.clone(),
                    policy: shared.policy,
                    concurrency: shared.concurrency,
                    counters: Counters::default(),
                    inflight: Mutex::new(HashMap::new()),
                    next_id: AtomicU64::new(0),
                };
                f(&mut inner);
                inner
            }
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The cache in use.
    pub fn cache(&self) -> &Arc<dyn Cache> {
        &self.inner.cache
    }

    /// The freshness policy in use.
    pub fn policy(&self) -> &CachePolicy {
        &self.inner.policy
    }

    /// Counters for metrics.
    pub fn stats(&self) -> ArchiveStats {
        let c = &self.inner.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ArchiveStats {
            cache_hits: l(&c.cache_hits),
            cache_misses: l(&c.cache_misses),
            requests: l(&c.requests),
            revalidated: l(&c.revalidated),
            cache_errors: l(&c.cache_errors),
            corrupt_entries: l(&c.corrupt_entries),
            relogins: l(&c.relogins),
            coalesced: l(&c.coalesced),
        }
    }

    /// The URL of `group`'s archive for `block`:
    /// `{site}/calls/apis/archivecall.php?group={sid}-{tg}&s={block epoch}`.
    pub fn archive_url(&self, group: GroupId, block: TimeBlock) -> Url {
        archive_url(&self.inner.site, group, block)
    }

    /// `group`'s archived calls for `block`, from the cache when fresh, else from the service.
    ///
    /// Runs on a spawned task, so a caller that gives up does not cancel the fetch for others
    /// waiting on the same block (and the answer still lands in the cache).
    pub async fn fetch(
        &self,
        group: GroupId,
        block: TimeBlock,
    ) -> Result<ArchiveResult, ArchiveError> {
        let key = CacheKey::new(group, block);
        let shared = {
            let mut inflight = self
                .inner
                .inflight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((_, fetch)) = inflight.get(&key) {
                bump(&self.inner.counters.coalesced);
                fetch.clone()
            } else {
                let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                let inner = Arc::clone(&self.inner);
                let span = tracing::debug_span!(
                    "archive_fetch",
                    group = %group,
                    block = block.epoch_secs()
                );
                // Inserted before the task can finish (the lock is held), so the task's
                // removal below always finds its own entry.
                let task = tokio::spawn(
                    async move {
                        let result = inner.fetch_uncoalesced(key).await;
                        let mut inflight = inner
                            .inflight
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        if inflight.get(&key).is_some_and(|(i, _)| *i == id) {
                            inflight.remove(&key);
                        }
                        result
                    }
                    .instrument(span),
                );
                let fetch = async move {
                    task.await.unwrap_or_else(|_| {
                        Err(ArchiveError::new(
                            ArchiveErrorKind::Cancelled,
                            "the archive fetch task ended without an answer",
                        ))
                    })
                }
                .boxed()
                .shared();
                inflight.insert(key, (id, fetch.clone()));
                fetch
            }
        };
        shared.await
    }

    /// Every 30-minute block that intersects `window` (`[start, end)` in epoch seconds), in
    /// order, fetched concurrently (at most [`with_concurrency`](Self::with_concurrency) at
    /// once). Fails with the first error. The calls of each block are returned as the service
    /// sent them: blocks at the window's edges may hold calls outside it.
    pub async fn fetch_range(
        &self,
        group: GroupId,
        window: TimeWindow,
    ) -> Result<Vec<ArchiveResult>, ArchiveError> {
        futures::stream::iter(TimeBlock::covering(window))
            .map(|block| self.fetch(group, block))
            .buffered(self.inner.concurrency)
            .try_collect()
            .await
    }
}

impl Inner {
    async fn fetch_uncoalesced(&self, key: CacheKey) -> Result<ArchiveResult, ArchiveError> {
        let now = self.clock.now();
        let entry = match self.cache.get(&key).await {
            Ok(entry) => entry,
            Err(err) => {
                bump(&self.counters.cache_errors);
                tracing::warn!(
                    kind = %err.kind(),
                    error = %err,
                    "archive cache read failed; fetching from the network"
                );
                None
            }
        };
        let mut stale = None;
        if let Some(entry) = entry {
            match ArchiveResponse::from_slice(&entry.body) {
                Ok(response) if entry.is_fresh(now) => {
                    bump(&self.counters.cache_hits);
                    tracing::debug!("archive cache hit");
                    return Ok(ArchiveResult::new(
                        key,
                        response,
                        entry.fetched_at,
                        true,
                        false,
                    ));
                }
                Ok(response) if entry.can_revalidate() => stale = Some((entry, response)),
                Ok(_) => {}
                Err(err) => {
                    bump(&self.counters.corrupt_entries);
                    tracing::warn!(
                        kind = ?err.kind(),
                        "cached archive body does not parse; treating it as a miss"
                    );
                    if let Err(err) = self.cache.remove(&key).await {
                        bump(&self.counters.cache_errors);
                        tracing::warn!(kind = %err.kind(), error = %err, "archive cache remove failed");
                    }
                }
            }
        }
        bump(&self.counters.cache_misses);
        self.fetch_network(key, stale).await
    }

    async fn fetch_network(
        &self,
        key: CacheKey,
        stale: Option<(CacheEntry, ArchiveResponse)>,
    ) -> Result<ArchiveResult, ArchiveError> {
        let url = archive_url(&self.site, key.group, key.block);
        let referer = tg_page_url(&self.site, key.group);
        let mut relogged = false;
        loop {
            let token = self
                .auth
                .ensure_session()
                .await
                .map_err(ArchiveError::auth)?;
            let mut request = Request::get(url.clone())
                .class(RequestClass::Api)
                .header("x-requested-with", "XMLHttpRequest");
            if let Some(referer) = &referer {
                request = request.header("referer", referer.as_str());
            }
            if let Some((entry, _)) = &stale {
                if let Some(etag) = &entry.etag {
                    request = request.header(IF_NONE_MATCH, etag.as_str());
                }
                if let Some(lm) = &entry.last_modified {
                    request = request.header(IF_MODIFIED_SINCE, lm.as_str());
                }
            }
            bump(&self.counters.requests);
            let response = self
                .transport
                .send(request)
                .await
                .map_err(ArchiveError::transport)?;
            let status = response.status();
            let logged_out = if is_logged_out(status, response.headers()) {
                true
            } else if status == StatusCode::NOT_MODIFIED {
                if let Some((entry, parsed)) = stale {
                    return Ok(self
                        .revalidated(key, entry, parsed, response.headers())
                        .await);
                }
                return Err(ArchiveError::new(
                    ArchiveErrorKind::Status,
                    "archive request answered 304 to an unconditional request",
                )
                .with_status(status));
            } else if !status.is_success() {
                let body = response.bytes().await.unwrap_or_default();
                return Err(ArchiveError::status(status, &body));
            } else {
                let headers = response.headers().clone();
                let body = response.bytes().await.map_err(ArchiveError::transport)?;
                match ArchiveResponse::from_slice(&body) {
                    Ok(parsed) => return Ok(self.store(key, body, parsed, &headers).await),
                    Err(err) if err.is_logged_out() => true,
                    Err(err) => return Err(ArchiveError::parse(err)),
                }
            };
            debug_assert!(logged_out);
            self.auth.invalidate(&token);
            if relogged {
                return Err(ArchiveError::new(
                    ArchiveErrorKind::LoggedOut,
                    "the archive still answered logged out after logging in again",
                )
                .with_status(status));
            }
            relogged = true;
            bump(&self.counters.relogins);
            tracing::info!(
                status = status.as_u16(),
                "archive answered logged out; logging in again"
            );
        }
    }

    /// Store a fresh answer (best effort) and build the result.
    async fn store(
        &self,
        key: CacheKey,
        body: Bytes,
        parsed: ArchiveResponse,
        headers: &HeaderMap,
    ) -> ArchiveResult {
        let now = self.clock.now();
        let body = if self.policy.retain_metadata {
            body
        } else {
            without_metadata(&parsed.raw).unwrap_or(body)
        };
        let entry = self.entry(
            key,
            body,
            now,
            validator(headers, &ETAG),
            validator(headers, &LAST_MODIFIED),
        );
        self.put(key, entry).await;
        ArchiveResult::new(key, parsed, now, false, false)
    }

    /// A `304`: the stale entry is current again.
    async fn revalidated(
        &self,
        key: CacheKey,
        entry: CacheEntry,
        parsed: ArchiveResponse,
        headers: &HeaderMap,
    ) -> ArchiveResult {
        bump(&self.counters.revalidated);
        tracing::debug!("archive entry revalidated (304)");
        let now = self.clock.now();
        // A 304 may carry updated validators; keep the old ones otherwise.
        let etag = validator(headers, &ETAG).or(entry.etag);
        let last_modified = validator(headers, &LAST_MODIFIED).or(entry.last_modified);
        let entry = self.entry(key, entry.body, now, etag, last_modified);
        self.put(key, entry).await;
        ArchiveResult::new(key, parsed, now, true, true)
    }

    fn entry(
        &self,
        key: CacheKey,
        body: Bytes,
        now: SystemTime,
        etag: Option<String>,
        last_modified: Option<String>,
    ) -> CacheEntry {
        let fresh_until = now + self.policy.ttl(key.block, now);
        let retain_until = if etag.is_some() || last_modified.is_some() {
            fresh_until + self.policy.stale_retention
        } else {
            fresh_until
        };
        CacheEntry {
            body,
            fetched_at: now,
            fresh_until,
            retain_until,
            etag,
            last_modified,
        }
    }

    async fn put(&self, key: CacheKey, entry: CacheEntry) {
        if let Err(err) = self.cache.set(&key, entry).await {
            bump(&self.counters.cache_errors);
            tracing::warn!(
                kind = %err.kind(),
                error = %err,
                "archive cache write failed; the answer is returned uncached"
            );
        }
    }
}

/// The response with each call's `metadata` removed, re-encoded; `None` if nothing changed.
fn without_metadata(raw: &Value) -> Option<Bytes> {
    let mut raw = raw.clone();
    let mut changed = false;
    for call in raw.get_mut("calls")?.as_array_mut()? {
        if let Some(call) = call.as_object_mut() {
            changed |= call.remove("metadata").is_some();
        }
    }
    if !changed {
        return None;
    }
    serde_json::to_vec(&raw).ok().map(Bytes::from)
}

fn validator(headers: &HeaderMap, name: &http::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= SNIPPET_MAX)
        .map(str::to_owned)
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn archive_url(site: &Url, group: GroupId, block: TimeBlock) -> Url {
    let mut url = site_dir(site);
    let path = format!("{}calls/apis/archivecall.php", url.path());
    url.set_path(&path);
    url.query_pairs_mut()
        .append_pair("group", &group.to_string())
        .append_pair("s", &block.epoch_secs().to_string());
    url
}

/// The talkgroup's calls page, which is where the site's own archive requests come from.
fn tg_page_url(site: &Url, group: GroupId) -> Option<Url> {
    site_dir(site)
        .join(&format!("calls/tg/{}/{}", group.sid, group.tg))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let site = Url::parse("https://www.broadcastify.com").unwrap();
        let group: GroupId = "4290-512".parse().unwrap();
        let block = TimeBlock::from_aligned(1_763_985_600).unwrap();
        assert_eq!(
            archive_url(&site, group, block).as_str(),
            "https://www.broadcastify.com/calls/apis/archivecall.php?group=4290-512&s=1763985600"
        );
        assert_eq!(
            tg_page_url(&site, group).unwrap().as_str(),
            "https://www.broadcastify.com/calls/tg/4290/512"
        );
        let prefixed = Url::parse("http://127.0.0.1:9/sim").unwrap();
        assert_eq!(
            archive_url(&prefixed, group, block).as_str(),
            "http://127.0.0.1:9/sim/calls/apis/archivecall.php?group=4290-512&s=1763985600"
        );
    }

    #[test]
    fn policy_past_and_current() {
        let p = CachePolicy::default();
        let block = TimeBlock::from_aligned(1_763_985_600).unwrap();
        let at = |s: i64| UNIX_EPOCH + Duration::from_secs(s as u64);
        // inside the block: current
        assert_eq!(p.ttl(block, at(1_763_985_700)), p.current_block_ttl);
        // just after its end, still settling
        assert_eq!(p.ttl(block, at(1_763_987_400 + 599)), p.current_block_ttl);
        // settled
        assert_eq!(p.ttl(block, at(1_763_987_400 + 600)), p.past_block_ttl);
        // a future block
        assert_eq!(p.ttl(block.next(), at(1_763_985_700)), p.current_block_ttl);
    }
}
