//! ArchiveClient end to end against bcfy-sim over plain HTTP on 127.0.0.1, through the real
//! HttpTransport and AuthManager.

use std::sync::Arc;
use std::time::Duration;

use bcfy_archive::{ArchiveClient, Cache, CachePolicy, FsCache, MemoryCache};
use bcfy_auth::{AuthManager, Credentials, LoginBackoff};
use bcfy_proto::{GroupId, TimeBlock, TimeWindow};
use bcfy_sim::{Endpoint, SimHandle, Simulator};
use bcfy_transport::{HttpTransport, SharedTransport};

/// 2025-11-24 12:00:00 UTC, a block boundary: complete by the wall clock.
const B0: i64 = 1_763_985_600;

fn group() -> GroupId {
    "4290-512".parse().unwrap()
}

fn block(i: i64) -> TimeBlock {
    TimeBlock::from_aligned(B0 + i * 1800).unwrap()
}

/// A simulator whose manual clock starts in block 0 with 5 calls, then 3 calls in block 1,
/// then 2 in block 2.
async fn sim() -> SimHandle {
    let sim = Simulator::builder()
        .seed(11)
        .groups([(4290, 512)])
        .calls_per_second(0.0)
        .user("alice", "pw")
        .manual_clock(B0 + 60)
        .start()
        .await
        .unwrap();
    assert_eq!(sim.ingest(5).len(), 5);
    sim.advance(Duration::from_mins(30));
    assert_eq!(sim.ingest(3).len(), 3);
    sim.advance(Duration::from_mins(30));
    assert_eq!(sim.ingest(2).len(), 2);
    sim
}

fn client(sim: &SimHandle, cache: Arc<dyn Cache>) -> ArchiveClient {
    let transport: SharedTransport = Arc::new(HttpTransport::builder().build().unwrap());
    let auth = Arc::new(
        AuthManager::new(
            transport.clone(),
            sim.base_url(),
            Credentials::new("alice", "pw").into(),
        )
        .with_backoff(LoginBackoff {
            min_interval: Duration::ZERO,
            ..LoginBackoff::default()
        }),
    );
    ArchiveClient::new(transport, auth, sim.base_url(), cache)
}

#[tokio::test]
async fn fetch_logs_in_then_serves_the_second_fetch_from_the_cache() {
    let sim = sim().await;
    let archive = client(&sim, Arc::new(MemoryCache::default()));
    let first = archive.fetch(group(), block(0)).await.unwrap();
    assert!(!first.cache_hit);
    assert_eq!(first.calls.len(), 5);
    assert!(first.rejected.is_empty());
    assert_eq!(first.window, TimeWindow::new(B0 - 1, B0 + 1800));
    assert!(first.calls.iter().all(|c| c.ts >= B0 && c.ts < B0 + 1800));

    let second = archive.fetch(group(), block(0)).await.unwrap();
    assert!(second.cache_hit);
    assert_eq!(second.calls, first.calls);

    let reqs = sim.requests_to(Endpoint::Archive);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].query_value("group").as_deref(), Some("4290-512"));
    assert_eq!(reqs[0].query_value("s"), Some(B0.to_string()));
    assert!(reqs[0].cookie.is_some());
    assert_eq!(reqs[0].header("accept-encoding"), Some("gzip, deflate, br"));
    assert_eq!(sim.requests_to(Endpoint::Login).len(), 1);
}

#[tokio::test]
async fn stale_entries_revalidate_with_the_simulator_etag() {
    let sim = sim().await;
    // Everything is stale at once, so every fetch revalidates.
    let archive = client(&sim, Arc::new(MemoryCache::default())).with_policy(CachePolicy {
        past_block_ttl: Duration::ZERO,
        current_block_ttl: Duration::ZERO,
        ..CachePolicy::default()
    });
    let first = archive.fetch(group(), block(2)).await.unwrap();
    assert_eq!(first.calls.len(), 2);

    let second = archive.fetch(group(), block(2)).await.unwrap();
    assert!(second.cache_hit && second.revalidated);
    assert_eq!(second.calls, first.calls);
    let reqs = sim.requests_to(Endpoint::Archive);
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].header("if-none-match").is_some());
    assert_eq!(reqs[1].status.as_u16(), 304);

    // New calls in the block change its ETag: a full answer replaces the entry.
    assert_eq!(sim.ingest(4).len(), 4);
    let third = archive.fetch(group(), block(2)).await.unwrap();
    assert!(!third.cache_hit);
    assert_eq!(third.calls.len(), 6);
    assert_eq!(archive.stats().revalidated, 1);
}

#[tokio::test]
async fn an_expired_session_is_replaced_and_the_fetch_retried() {
    let sim = sim().await;
    let archive = client(&sim, Arc::new(MemoryCache::default()));
    archive.fetch(group(), block(0)).await.unwrap();
    sim.expire_sessions();
    let result = archive.fetch(group(), block(1)).await.unwrap();
    assert_eq!(result.calls.len(), 3);
    assert_eq!(sim.requests_to(Endpoint::Login).len(), 2);
    let reqs = sim.requests_to(Endpoint::Archive);
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[1].status.as_u16(), 403);
    assert_ne!(reqs[1].cookie, reqs[2].cookie);
    assert_eq!(archive.stats().relogins, 1);
}

#[tokio::test]
async fn fetch_range_covers_every_block_of_the_window() {
    let sim = sim().await;
    let archive = client(&sim, Arc::new(MemoryCache::default()));
    let window = TimeWindow::new(B0 + 30, B0 + 2 * 1800 + 1);
    let results = archive.fetch_range(group(), window).await.unwrap();
    let counts: Vec<usize> = results.iter().map(|r| r.calls.len()).collect();
    assert_eq!(counts, [5, 3, 2]);
    let mut asked: Vec<String> = sim
        .requests_to(Endpoint::Archive)
        .iter()
        .filter_map(|r| r.query_value("s"))
        .collect();
    asked.sort();
    assert_eq!(asked, [B0, B0 + 1800, B0 + 3600].map(|s| s.to_string()));
}

#[tokio::test]
async fn concurrent_fetches_of_one_block_make_one_request() {
    let sim = sim().await;
    let archive = client(&sim, Arc::new(MemoryCache::default()));
    let results =
        futures::future::join_all((0..32).map(|_| archive.fetch(group(), block(0)))).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_ok_and(|r| r.calls.len() == 5))
    );
    assert_eq!(sim.requests_to(Endpoint::Archive).len(), 1);
    assert_eq!(sim.requests_to(Endpoint::Login).len(), 1);
}

#[tokio::test]
async fn the_fs_cache_serves_a_restarted_client_without_a_request() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    client(&sim, Arc::new(FsCache::new(dir.path())))
        .fetch(group(), block(1))
        .await
        .unwrap();
    let restarted = client(&sim, Arc::new(FsCache::new(dir.path())));
    let result = restarted.fetch(group(), block(1)).await.unwrap();
    assert!(result.cache_hit);
    assert_eq!(result.calls.len(), 3);
    assert_eq!(sim.requests_to(Endpoint::Archive).len(), 1);
    // The restarted client never needed a session.
    assert_eq!(sim.requests_to(Endpoint::Login).len(), 1);
}
