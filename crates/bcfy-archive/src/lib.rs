//! Archived call metadata (`archivecall.php`) behind a cache-first client.
//!
//! Broadcastify serves a talkgroup's past calls in 30-minute blocks:
//! `GET {site}/calls/apis/archivecall.php?group={sid}-{tg}&s={block start}`, with the session
//! cookie. [`ArchiveClient::fetch`] returns one block as an [`ArchiveResult`];
//! [`ArchiveClient::fetch_range`] walks every block of a time window, several at once.
//!
//! Archives are cached, because a complete block never changes: the client asks its [`Cache`]
//! first, keeps complete blocks fresh for a long time and the block still filling only briefly
//! ([`CachePolicy`]), revalidates stale entries with `If-None-Match`/`If-Modified-Since` when the
//! service sent validators (a `304` refreshes the entry without a body), and makes one request
//! for any number of concurrent fetches of one block. Two caches come with it: [`MemoryCache`]
//! (moka, bounded by size and age) and [`FsCache`] (one file per block, written atomically,
//! surviving restarts; a corrupt file is a logged miss). A failing cache is logged, counted in
//! [`ArchiveStats`] and bypassed: it never fails a fetch. Sessions come from a shared
//! [`bcfy_auth::AuthManager`]; a logged-out answer makes it log in again and the request is
//! retried once.
//!
//! ```no_run
//! use std::sync::Arc;
//! use bcfy_archive::{ArchiveClient, FsCache};
//! use bcfy_auth::{AuthManager, CredentialSource, Credentials};
//! use bcfy_proto::{GroupId, TimeBlock};
//! use bcfy_transport::{HttpTransport, SharedTransport};
//! use url::Url;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let transport: SharedTransport = Arc::new(HttpTransport::builder().build()?);
//! let site = Url::parse("https://www.broadcastify.com")?;
//! let auth = Arc::new(AuthManager::new(
//!     transport.clone(),
//!     site.clone(),
//!     CredentialSource::Credentials(Credentials::new("alice", "correct horse")),
//! ));
//! let archive = ArchiveClient::new(transport, auth, site, Arc::new(FsCache::new("/var/cache/bcfy")));
//!
//! let group: GroupId = "4290-512".parse()?;
//! let block = TimeBlock::containing(1_763_985_700);
//! let result = archive.fetch(group, block).await?; // logs in, then fetches (or reads the cache)
//! println!("{} calls, from cache: {}", result.calls.len(), result.cache_hit);
//! # Ok(())
//! # }
//! ```

mod cache;
mod client;
mod clock;
mod error;

pub use cache::{
    Cache, CacheEntry, CacheError, CacheErrorKind, CacheKey, CacheStats, FsCache, MemoryCache,
    cache_from_config,
};
pub use client::{ArchiveClient, ArchiveResult, ArchiveStats, CachePolicy};
pub use clock::{Clock, RuntimeClock};
pub use error::{ArchiveError, ArchiveErrorKind};
