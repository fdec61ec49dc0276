//! ArchiveClient against the transport mock: cache hit/miss, TTLs under paused time,
//! revalidation, corrupt and broken caches, single-flight, parse errors, re-login, ranges.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bcfy_archive::{
    ArchiveClient, ArchiveErrorKind, Cache, CacheEntry, CacheError, CacheKey, CacheStats, FsCache,
    MemoryCache,
};
use bcfy_auth::{AuthManager, Credentials, LoginBackoff};
use bcfy_proto::{ErrorCategory, GroupId, ParseErrorKind, TimeBlock, TimeWindow};
use bcfy_transport::http::{Method, StatusCode};
use bcfy_transport::mock::{MockResponse, MockTransport, RecordedRequest};
use tokio::time::Instant;
use url::Url;

const ARCHIVE: &str = "/calls/apis/archivecall.php";
const FIXTURE: &str = include_str!("fixtures/archivecall.json");
const MISSING_CALLS: &str = include_str!("fixtures/archive-missing-calls.json");

fn site() -> Url {
    Url::parse("https://www.broadcastify.com").unwrap()
}

fn group() -> GroupId {
    "4290-512".parse().unwrap()
}

/// The block of the captured archive response (September 2025: complete).
fn past_block() -> TimeBlock {
    TimeBlock::from_aligned(1_758_371_400).unwrap()
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn login_ok(token: &str) -> MockResponse {
    MockResponse::new(StatusCode::FOUND)
        .header("location", "https://www.broadcastify.com")
        .header("set-cookie", format!("bcfyuser1={token}; path=/; HttpOnly"))
}

fn archive_body(s: i64) -> String {
    format!(
        r#"{{"calls":[],"serverTime":{},"start":{},"end":{}}}"#,
        s + 10,
        s - 1,
        s + 1800
    )
}

struct Setup {
    mock: MockTransport,
    auth: Arc<AuthManager>,
}

fn setup() -> Setup {
    let mock = MockTransport::new();
    mock.on(Method::POST, "/login/", login_ok("tok-1"));
    let auth = Arc::new(
        AuthManager::new(
            mock.shared(),
            site(),
            Credentials::new("alice", "pw").into(),
        )
        .with_backoff(LoginBackoff {
            min_interval: Duration::ZERO,
            ..LoginBackoff::default()
        }),
    );
    Setup { mock, auth }
}

impl Setup {
    fn client(&self, cache: Arc<dyn Cache>) -> ArchiveClient {
        ArchiveClient::new(self.mock.shared(), self.auth.clone(), site(), cache)
    }

    fn archive_requests(&self) -> Vec<RecordedRequest> {
        self.mock.requests_to(ARCHIVE)
    }
}

#[tokio::test]
async fn miss_then_hit_and_the_request_is_the_spec_one() {
    let t = setup();
    t.mock.on(Method::GET, ARCHIVE, MockResponse::json(FIXTURE));
    let client = t.client(Arc::new(MemoryCache::default()));

    let first = client.fetch(group(), past_block()).await.unwrap();
    assert!(!first.cache_hit);
    assert_eq!(first.calls.len(), 14);
    assert_eq!(first.window, TimeWindow::new(1_758_371_399, 1_758_373_200));
    assert_eq!(first.server_time, Some(1_758_457_817));
    assert_eq!(first.raw["calls"].as_array().unwrap().len(), 14);

    let second = client.fetch(group(), past_block()).await.unwrap();
    assert!(second.cache_hit);
    assert_eq!(second.calls, first.calls);
    assert_eq!(second.fetched_at, first.fetched_at);

    let reqs = t.archive_requests();
    assert_eq!(reqs.len(), 1, "the second fetch must not make a request");
    let req = &reqs[0];
    assert_eq!(req.method, Method::GET);
    assert_eq!(
        req.url.as_str(),
        "https://www.broadcastify.com/calls/apis/archivecall.php?group=4290-512&s=1758371400"
    );
    assert_eq!(req.header("cookie"), Some("bcfyuser1=tok-1"));
    assert_eq!(req.header("x-requested-with"), Some("XMLHttpRequest"));
    assert!(req.header("user-agent").unwrap().contains("Chrome/126"));
    assert_eq!(t.mock.requests_to("/login/").len(), 1);
    let stats = client.stats();
    assert_eq!(
        (stats.cache_hits, stats.cache_misses, stats.requests),
        (1, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn the_current_block_expires_quickly_and_past_blocks_do_not() {
    let t = setup();
    t.mock.on_fn(|r| {
        let s: i64 = r
            .url
            .query_pairs()
            .find(|(k, _)| k == "s")
            .and_then(|(_, v)| v.parse().ok())?;
        Some(MockResponse::json(archive_body(s)))
    });
    let client = t.client(Arc::new(MemoryCache::default()));
    let current = TimeBlock::containing(now_secs());
    let ttl = client.policy().current_block_ttl;
    assert_eq!(ttl, Duration::from_mins(1));

    client.fetch(group(), current).await.unwrap();
    client.fetch(group(), past_block()).await.unwrap();
    assert_eq!(t.archive_requests().len(), 2);

    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(client.fetch(group(), current).await.unwrap().cache_hit);
    assert_eq!(t.archive_requests().len(), 2);

    tokio::time::advance(Duration::from_secs(2)).await;
    let refetched = client.fetch(group(), current).await.unwrap();
    assert!(
        !refetched.cache_hit,
        "the current block must expire after its TTL"
    );
    assert_eq!(t.archive_requests().len(), 3);

    // A day later the complete block is still served from the cache.
    tokio::time::advance(Duration::from_hours(24)).await;
    assert!(client.fetch(group(), past_block()).await.unwrap().cache_hit);
    assert_eq!(t.archive_requests().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_stale_entry_revalidates_with_304() {
    let t = setup();
    let current = TimeBlock::containing(now_secs());
    let body = archive_body(current.epoch_secs());
    t.mock.on(
        Method::GET,
        ARCHIVE,
        MockResponse::json(body.clone())
            .header("etag", "\"v1\"")
            .header("last-modified", "Wed, 26 Nov 2026 14:00:00 GMT"),
    );
    t.mock.on(
        Method::GET,
        ARCHIVE,
        MockResponse::new(StatusCode::NOT_MODIFIED).header("etag", "\"v1\""),
    );
    let client = t.client(Arc::new(MemoryCache::default()));

    let first = client.fetch(group(), current).await.unwrap();
    assert!(!first.cache_hit);
    assert_eq!(t.archive_requests()[0].header("if-none-match"), None);
    tokio::time::advance(Duration::from_secs(61)).await;

    let second = client.fetch(group(), current).await.unwrap();
    assert!(second.cache_hit && second.revalidated);
    assert_eq!(second.raw, first.raw);
    assert!(second.fetched_at > first.fetched_at);
    let reqs = t.archive_requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].header("if-none-match"), Some("\"v1\""));
    assert_eq!(
        reqs[1].header("if-modified-since"),
        Some("Wed, 26 Nov 2026 14:00:00 GMT")
    );

    // Fresh again after the 304: no request.
    assert!(client.fetch(group(), current).await.unwrap().cache_hit);
    assert_eq!(t.archive_requests().len(), 2);
    assert_eq!(client.stats().revalidated, 1);
}

#[tokio::test(start_paused = true)]
async fn a_stale_entry_without_validators_is_fetched_again() {
    let t = setup();
    let current = TimeBlock::containing(now_secs());
    t.mock.on(
        Method::GET,
        ARCHIVE,
        MockResponse::json(archive_body(current.epoch_secs())),
    );
    let client = t.client(Arc::new(MemoryCache::default()));
    client.fetch(group(), current).await.unwrap();
    tokio::time::advance(Duration::from_secs(61)).await;
    let again = client.fetch(group(), current).await.unwrap();
    assert!(!again.cache_hit);
    let reqs = t.archive_requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].header("if-none-match"), None);
}

/// Captured tracing output.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn a_corrupt_cache_file_is_a_logged_counted_miss() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let t = setup();
    t.mock.on(Method::GET, ARCHIVE, MockResponse::json(FIXTURE));
    let cache = Arc::new(FsCache::new(dir.path()));
    let client = t.client(cache.clone());
    client.fetch(group(), past_block()).await.unwrap();
    let path = cache.entry_path(&CacheKey::new(group(), past_block()));
    assert!(path.exists());

    // Truncate the file as a crash or a bad disk would.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    let result = client.fetch(group(), past_block()).await.unwrap();
    assert!(!result.cache_hit);
    assert_eq!(result.calls.len(), 14);
    assert_eq!(t.archive_requests().len(), 2);
    assert_eq!(cache.stats().corrupt, 1);
    assert!(
        logs.text().contains("corrupt archive cache entry"),
        "{}",
        logs.text()
    );
    // The entry was rewritten whole: a third fetch is a hit.
    assert!(client.fetch(group(), past_block()).await.unwrap().cache_hit);
    assert_eq!(t.archive_requests().len(), 2);
}

#[tokio::test]
async fn an_intact_entry_whose_body_does_not_parse_is_a_miss() {
    let t = setup();
    t.mock.on(Method::GET, ARCHIVE, MockResponse::json(FIXTURE));
    let cache = Arc::new(MemoryCache::default());
    let client = t.client(cache.clone());
    let far = SystemTime::now() + Duration::from_hours(1);
    cache
        .set(
            &CacheKey::new(group(), past_block()),
            CacheEntry {
                body: "<html>oops</html>".into(),
                fetched_at: SystemTime::now(),
                fresh_until: far,
                retain_until: far,
                etag: None,
                last_modified: None,
            },
        )
        .await
        .unwrap();
    let result = client.fetch(group(), past_block()).await.unwrap();
    assert!(!result.cache_hit);
    assert_eq!(client.stats().corrupt_entries, 1);
    assert_eq!(t.archive_requests().len(), 1);
}

#[tokio::test]
async fn the_fs_cache_survives_a_restart_and_leaves_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let t = setup();
    t.mock.on(Method::GET, ARCHIVE, MockResponse::json(FIXTURE));
    t.client(Arc::new(FsCache::new(dir.path())))
        .fetch(group(), past_block())
        .await
        .unwrap();

    // A new process: new cache handle, new client.
    let restarted = t.client(Arc::new(FsCache::new(dir.path())));
    let result = restarted.fetch(group(), past_block()).await.unwrap();
    assert!(result.cache_hit);
    assert_eq!(result.calls.len(), 14);
    assert_eq!(t.archive_requests().len(), 1);

    let group_dir = dir.path().join("4290-512");
    let names: Vec<_> = std::fs::read_dir(&group_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["1758371400.entry"]);
}

#[tokio::test]
async fn fs_cache_purge_drops_expired_entries_and_leftover_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let cache = FsCache::new(dir.path());
    let old = CacheKey::new(group(), past_block());
    let live = CacheKey::new(group(), past_block().next());
    let entry = |retain: SystemTime| CacheEntry {
        body: archive_body(0).into(),
        fetched_at: SystemTime::now(),
        fresh_until: retain,
        retain_until: retain,
        etag: None,
        last_modified: None,
    };
    cache
        .set(&old, entry(SystemTime::now() - Duration::from_secs(1)))
        .await
        .unwrap();
    cache
        .set(&live, entry(SystemTime::now() + Duration::from_hours(1)))
        .await
        .unwrap();
    std::fs::write(dir.path().join("4290-512/.1.2.3.tmp"), b"half").unwrap();
    assert_eq!(cache.purge().await.unwrap(), 2);
    assert!(!cache.entry_path(&old).exists());
    assert!(cache.get(&live).await.unwrap().is_some());
}

#[tokio::test(start_paused = true)]
async fn concurrent_fetches_of_one_block_make_one_request() {
    let t = setup();
    t.mock.on(
        Method::GET,
        ARCHIVE,
        MockResponse::json(FIXTURE).delay(Duration::from_millis(300)),
    );
    let client = t.client(Arc::new(MemoryCache::default()));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.fetch(group(), past_block()).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().calls.len(), 14);
    }
    assert_eq!(t.archive_requests().len(), 1);
    assert_eq!(t.mock.requests_to("/login/").len(), 1);
    assert_eq!(client.stats().coalesced, 49);
}

#[tokio::test]
async fn concurrent_fetches_share_one_request_with_the_fs_cache_too() {
    let dir = tempfile::tempdir().unwrap();
    let t = setup();
    t.mock.on(
        Method::GET,
        ARCHIVE,
        MockResponse::json(FIXTURE).delay(Duration::from_millis(50)),
    );
    let client = t.client(Arc::new(FsCache::new(dir.path())));
    let results =
        futures::future::join_all((0..20).map(|_| client.fetch(group(), past_block()))).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(t.archive_requests().len(), 1);
}

#[tokio::test]
async fn missing_calls_is_a_response_parsing_error_and_is_not_cached() {
    let t = setup();
    t.mock
        .on(Method::GET, ARCHIVE, MockResponse::json(MISSING_CALLS));
    let client = t.client(Arc::new(MemoryCache::default()));
    let err = client.fetch(group(), past_block()).await.unwrap_err();
    assert_eq!(err.kind(), ArchiveErrorKind::ResponseParsing);
    assert_eq!(err.category(), ErrorCategory::ResponseParsing);
    assert_eq!(
        err.parse_error().map(bcfy_proto::ParseError::kind),
        Some(ParseErrorKind::MissingField)
    );
    assert!(client.fetch(group(), past_block()).await.is_err());
    assert_eq!(t.archive_requests().len(), 2);
}

#[tokio::test]
async fn a_server_error_is_a_status_error_with_a_sanitized_snippet() {
    let t = setup();
    t.mock.on(
        Method::GET,
        ARCHIVE,
        MockResponse::new(StatusCode::INTERNAL_SERVER_ERROR)
            .body("boom bcfyuser1=tok-1 \u{1b}[31m"),
    );
    let client = t.client(Arc::new(MemoryCache::default()));
    let err = client.fetch(group(), past_block()).await.unwrap_err();
    assert_eq!(err.kind(), ArchiveErrorKind::Status);
    assert_eq!(err.http_status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(err.retry_hint(), bcfy_proto::RetryHint::Backoff);
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("boom"));
    assert!(!shown.contains("tok-1"), "{shown}");
    assert!(!shown.contains('\u{1b}'), "{shown}");
}

#[tokio::test(start_paused = true)]
async fn a_logged_out_answer_relogs_in_and_retries_once() {
    let t = setup();
    t.mock.on(Method::POST, "/login/", login_ok("tok-2"));
    t.mock.on(
        Method::GET,
        ARCHIVE,
        MockResponse::new(StatusCode::FORBIDDEN).body("You must be logged in to access archives"),
    );
    t.mock.on(Method::GET, ARCHIVE, MockResponse::json(FIXTURE));
    let client = t.client(Arc::new(MemoryCache::default()));
    let result = client.fetch(group(), past_block()).await.unwrap();
    assert_eq!(result.calls.len(), 14);
    let reqs = t.archive_requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header("cookie"), Some("bcfyuser1=tok-1"));
    assert_eq!(reqs[1].header("cookie"), Some("bcfyuser1=tok-2"));
    assert_eq!(t.mock.requests_to("/login/").len(), 2);
    assert_eq!(client.stats().relogins, 1);
}

#[tokio::test(start_paused = true)]
async fn a_logged_out_body_relogs_in_too() {
    let t = setup();
    t.mock.on(Method::POST, "/login/", login_ok("tok-2"));
    t.mock.on(
        Method::GET,
        ARCHIVE,
        MockResponse::json(r#"{"error": "You must be logged in to access archives"}"#),
    );
    t.mock.on(Method::GET, ARCHIVE, MockResponse::json(FIXTURE));
    let client = t.client(Arc::new(MemoryCache::default()));
    assert!(client.fetch(group(), past_block()).await.is_ok());
    assert_eq!(t.archive_requests().len(), 2);
    assert_eq!(t.mock.requests_to("/login/").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn still_logged_out_after_relogin_is_an_error_after_one_retry() {
    let t = setup();
    t.mock.on(Method::POST, "/login/", login_ok("tok-2"));
    t.mock.on(
        Method::GET,
        ARCHIVE,
        MockResponse::new(StatusCode::FOUND).header("location", "/login/"),
    );
    let client = t.client(Arc::new(MemoryCache::default()));
    let err = client.fetch(group(), past_block()).await.unwrap_err();
    assert_eq!(err.kind(), ArchiveErrorKind::LoggedOut);
    assert_eq!(err.category(), ErrorCategory::Authentication);
    assert_eq!(t.archive_requests().len(), 2);
    assert_eq!(t.mock.requests_to("/login/").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn fetch_range_walks_blocks_concurrently_in_order() {
    let t = setup();
    t.mock.on_fn(|r| {
        let s: i64 = r
            .url
            .query_pairs()
            .find(|(k, _)| k == "s")
            .and_then(|(_, v)| v.parse().ok())?;
        Some(MockResponse::json(archive_body(s)).delay(Duration::from_secs(1)))
    });
    let b0 = past_block();
    let window = TimeWindow::new(b0.epoch_secs() + 100, b0.epoch_secs() + 2 * 1800 + 10);
    let client = t.client(Arc::new(MemoryCache::default()));
    // Log in first so only archive requests are timed.
    t.auth.ensure_session().await.unwrap();

    let start = Instant::now();
    let results = client.fetch_range(group(), window).await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "blocks are fetched concurrently"
    );
    let blocks: Vec<i64> = results.iter().map(|r| r.block.epoch_secs()).collect();
    assert_eq!(
        blocks,
        [
            b0.epoch_secs(),
            b0.epoch_secs() + 1800,
            b0.epoch_secs() + 3600
        ]
    );
    assert!(
        results
            .iter()
            .all(|r| r.window.start == r.block.epoch_secs() - 1)
    );
    let mut requested: Vec<String> = t
        .archive_requests()
        .iter()
        .map(|r| r.url.query().unwrap().to_owned())
        .collect();
    requested.sort();
    assert_eq!(requested.len(), 3);

    // With a limit of 2, three blocks take two rounds.
    let limited = t
        .client(Arc::new(MemoryCache::default()))
        .with_concurrency(2);
    let start = Instant::now();
    limited.fetch_range(group(), window).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(2));

    // An empty window fetches nothing.
    assert!(
        client
            .fetch_range(group(), TimeWindow::new(10, 10))
            .await
            .unwrap()
            .is_empty()
    );
}

/// A cache whose every operation fails.
#[derive(Debug, Default)]
struct BrokenCache;

#[async_trait]
impl Cache for BrokenCache {
    async fn get(&self, _key: &CacheKey) -> Result<Option<CacheEntry>, CacheError> {
        Err(CacheError::io(
            "disk on fire",
            io::Error::other("read failed"),
        ))
    }
    async fn set(&self, _key: &CacheKey, _entry: CacheEntry) -> Result<(), CacheError> {
        Err(CacheError::io(
            "disk on fire",
            io::Error::other("write failed"),
        ))
    }
    async fn remove(&self, _key: &CacheKey) -> Result<(), CacheError> {
        Ok(())
    }
    fn stats(&self) -> CacheStats {
        CacheStats::default()
    }
}

#[tokio::test]
async fn a_broken_cache_never_breaks_a_fetch() {
    let t = setup();
    t.mock.on(Method::GET, ARCHIVE, MockResponse::json(FIXTURE));
    let client = t.client(Arc::new(BrokenCache));
    for _ in 0..2 {
        let result = client.fetch(group(), past_block()).await.unwrap();
        assert_eq!(result.calls.len(), 14);
        assert!(!result.cache_hit);
    }
    assert_eq!(t.archive_requests().len(), 2);
    assert_eq!(
        client.stats().cache_errors,
        4,
        "two reads and two writes failed"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn an_unwritable_fs_cache_degrades_to_the_network() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the cache directory should be: every write fails.
    let blocker = dir.path().join("cache");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let t = setup();
    t.mock.on(Method::GET, ARCHIVE, MockResponse::json(FIXTURE));
    let cache = Arc::new(FsCache::new(&blocker));
    let client = t.client(cache.clone());
    assert!(client.fetch(group(), past_block()).await.is_ok());
    assert!(client.fetch(group(), past_block()).await.is_ok());
    assert_eq!(t.archive_requests().len(), 2);
    assert!(client.stats().cache_errors >= 2);
    assert!(cache.stats().errors >= 2);
}

#[tokio::test]
async fn without_retain_metadata_cached_calls_lose_their_metadata() {
    let t = setup();
    t.mock.on(Method::GET, ARCHIVE, MockResponse::json(FIXTURE));
    let config = bcfy_proto::CacheConfig {
        retain_metadata: false,
        ..bcfy_proto::CacheConfig::default()
    };
    let policy = bcfy_archive::CachePolicy::from_config(&config);
    assert_eq!(policy.past_block_ttl, config.ttl);
    let client = t
        .client(bcfy_archive::cache_from_config(&config))
        .with_policy(policy);
    let first = client.fetch(group(), past_block()).await.unwrap();
    assert!(first.calls.iter().any(|c| c.metadata.is_some()));
    let cached = client.fetch(group(), past_block()).await.unwrap();
    assert!(cached.cache_hit);
    assert_eq!(cached.calls.len(), 14);
    assert!(cached.calls.iter().all(|c| c.metadata.is_none()));
}

#[tokio::test]
async fn client_and_futures_are_send_and_sync() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<ArchiveClient>();
    assert_send_sync::<bcfy_archive::ArchiveError>();
    assert_send_sync::<FsCache>();
    assert_send_sync::<MemoryCache>();
    let t = setup();
    let client = t.client(Arc::new(MemoryCache::default()));
    assert_send(&client.fetch(group(), past_block()));
    assert_send(&client.fetch_range(group(), TimeWindow::new(0, 1)));
}
