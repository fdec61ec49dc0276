//! A Broadcastify Calls and OpenAI Whisper simulator: a real hyper server for tests,
//! benchmarks and demos.
//!
//! `bcfy-sim` speaks the parts of Broadcastify the client uses — login and logout,
//! `live-calls`, `archivecall.php` and the calls CDN — and an OpenAI-compatible
//! `/v1/audio/transcriptions`, over real sockets (HTTP/1.1 and HTTP/2 through hyper-util's auto
//! server, optionally TLS with a generated certificate and ALPN `h2`). It depends on none of the
//! other bcfy crates: it is a stand-in for the real service, so its payloads are written from the
//! captured fixtures (same keys, same JSON types), not from our own models.
//!
//! **The feed.** Calls are generated deterministically from a seed (content of call *i* depends
//! only on the seed and *i*) and ingested on a simulated clock at a configurable rate across the
//! configured talkgroups. The default clock follows real time from a start epoch (the current
//! time unless set), so a client polling with real time sees calls appear; a manual clock
//! ([`SimulatorBuilder::manual_clock`], [`SimHandle::advance`], [`SimHandle::ingest`]) makes
//! tests exact. Several calls may share a `ts`; a fraction of calls are ingested *late* with a
//! `ts` equal to the largest already ingested (see [`SimulatorBuilder::late_ingest_probability`]),
//! which a client that sends `lastPos + 1` will miss.
//!
//! **Observability.** Every request is recorded ([`SimHandle::requests`]) and every call the
//! live endpoint served intact is listed once ([`SimHandle::served_calls`]), so a test can prove
//! that each served call reached the client exactly once.
//!
//! **Faults.** A [`FaultPlan`] makes endpoints misbehave by script or seeded probability: 429
//! and 503 with `Retry-After`, connection resets mid-body, slow headers or body, malformed
//! JSON, hostile entries, truncated audio, duplicate calls across polls, a `lastPos` that goes
//! backwards, sessions that expire after K requests, and transmissions uploaded by two nodes.
//!
//! **Choices where the real service is unknown** (documented in the README too):
//! - logged-out `live-calls` answers status 200 with
//!   `{"error":"You must be logged in to access live calls","serverTime":N}`; logged-out
//!   `archivecall.php` answers 403 with `{"error":"You must be logged in to access archives",...}`;
//! - `live-calls` returns calls with `ts >= pos`; with nothing to return, `lastPos` is
//!   `ceil(pos) - 1`, so a client that sends `lastPos + 1` asks again from the same `pos`;
//! - `archivecall.php` with an `s` not on a 30-minute boundary answers 400 with an `error` JSON;
//!   a block holds the calls with `s <= ts < s + 1800`;
//! - the CDN needs no cookie and sends `Content-Type: audio/mp4` unless switched off.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bcfy_sim::SimError> {
//! use bcfy_sim::{FaultPlan, Simulator};
//! let sim = Simulator::builder()
//!     .seed(7)
//!     .groups([(4290, 512), (4290, 1536)])
//!     .calls_per_second(5.0)
//!     .total_calls(Some(200))
//!     .user("demo", "demo-password")
//!     .whisper_key("sk-sim")
//!     .faults(FaultPlan::none())
//!     .start()
//!     .await?;
//! println!("site {} cdn {} whisper {}", sim.base_url(), sim.cdn_url(), sim.whisper_url());
//! // ... run a client against it ...
//! let served = sim.served_calls();
//! println!("{} calls served", served.len());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod audio;
mod faults;
mod feed;
mod record;
mod server;
mod tls;
mod whisper;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::Url;

pub use crate::faults::{
    Endpoint, Fault, FaultPlan, FaultPlanParseError, FaultRule, RetryAfter, Trigger,
};
pub use crate::record::{RecordedRequest, ServedCall};
pub use crate::server::{ARCHIVE_LOGGED_OUT, LIVE_LOGGED_OUT};

use crate::feed::{Feed, FeedConfig, GroupInfo, StoredCall};
use crate::server::{Clock, Role, Shared, SimConfig, lock};

/// What went wrong starting the simulator.
#[derive(Debug, thiserror::Error)]
#[error("bcfy-sim {kind:?} error: {message}")]
pub struct SimError {
    kind: SimErrorKind,
    message: String,
}

/// The kind of a [`SimError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SimErrorKind {
    /// A listener could not bind (port in use, permission).
    Bind,
    /// The TLS certificate or configuration could not be built.
    Tls,
    /// The builder's settings are inconsistent (e.g. no talkgroups).
    Config,
}

/// Whether retrying the same operation can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryHint {
    /// It will fail the same way.
    Never,
    /// It may work later (e.g. a port freed).
    Backoff,
}

impl SimError {
    /// The kind of error.
    pub fn kind(&self) -> SimErrorKind {
        self.kind
    }
    /// Whether a retry can help.
    pub fn retry_hint(&self) -> RetryHint {
        match self.kind {
            SimErrorKind::Bind => RetryHint::Backoff,
            SimErrorKind::Tls | SimErrorKind::Config => RetryHint::Never,
        }
    }
    pub(crate) fn tls(message: String) -> SimError {
        SimError {
            kind: SimErrorKind::Tls,
            message,
        }
    }
    fn config(message: &str) -> SimError {
        SimError {
            kind: SimErrorKind::Config,
            message: message.to_owned(),
        }
    }
}

/// Entry point: `Simulator::builder()`.
#[derive(Debug)]
pub struct Simulator;

impl Simulator {
    /// A builder with the defaults: seed 0, groups `4290-512` and `4290-1536`, 1 call/s,
    /// endless feed, user `demo`/`demo-password`, no Whisper key check, no faults, real clock
    /// from now, plain HTTP on 127.0.0.1 with OS-chosen ports.
    pub fn builder() -> SimulatorBuilder {
        SimulatorBuilder::default()
    }
}

/// Configures and starts a simulator. Every setter is optional. `Debug` redacts passwords and
/// the Whisper key.
#[derive(Clone)]
#[must_use]
pub struct SimulatorBuilder {
    seed: u64,
    groups: Vec<(u64, u64)>,
    rate: f64,
    total: Option<u64>,
    users: Vec<(String, String)>,
    users_set: bool,
    whisper_key: Option<String>,
    faults: FaultPlan,
    manual_start: Option<i64>,
    start_epoch: Option<i64>,
    backfill: Duration,
    late_probability: f64,
    hashless_probability: f64,
    metadata_probability: f64,
    audio_padding: usize,
    audio_content_type: Option<String>,
    audio_throttle: Option<u64>,
    record_requests: bool,
    track_served: bool,
    max_stored: Option<usize>,
    playlists: HashMap<String, Vec<(u64, u64)>>,
    init_history_limit: Option<usize>,
    tls: bool,
    ip: IpAddr,
    port: u16,
    cdn_port: u16,
}

impl std::fmt::Debug for SimulatorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let users: Vec<&str> = self.users.iter().map(|(u, _)| u.as_str()).collect();
        f.debug_struct("SimulatorBuilder")
            .field("seed", &self.seed)
            .field("groups", &self.groups)
            .field("rate", &self.rate)
            .field("total", &self.total)
            .field("users", &users)
            .field(
                "whisper_key",
                &self.whisper_key.as_ref().map(|_| "[redacted]"),
            )
            .field("faults", &self.faults)
            .field("manual_start", &self.manual_start)
            .field("start_epoch", &self.start_epoch)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Default for SimulatorBuilder {
    fn default() -> Self {
        SimulatorBuilder {
            seed: 0,
            groups: Vec::new(),
            rate: 1.0,
            total: None,
            users: vec![("demo".into(), "demo-password".into())],
            users_set: false,
            whisper_key: None,
            faults: FaultPlan::none(),
            manual_start: None,
            start_epoch: None,
            backfill: Duration::ZERO,
            late_probability: 0.05,
            hashless_probability: 0.0,
            metadata_probability: 0.7,
            audio_padding: 0,
            audio_content_type: Some("audio/mp4".into()),
            audio_throttle: None,
            record_requests: true,
            track_served: true,
            max_stored: None,
            playlists: HashMap::new(),
            init_history_limit: None,
            tls: false,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            cdn_port: 0,
        }
    }
}

impl SimulatorBuilder {
    /// Seed of every random choice (calls, tokens, probabilistic faults).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Talkgroups of the feed as `(sid, talkgroup)`. Each `sid` gets its own upload node
    /// (`systemId`; 2893 for sid 4290 as in the fixtures).
    pub fn groups(mut self, groups: impl IntoIterator<Item = (u64, u64)>) -> Self {
        self.groups = groups.into_iter().collect();
        self
    }
    /// Mean feed rate across all groups (exponential gaps); 0 = calls only via
    /// [`SimHandle::ingest`].
    pub fn calls_per_second(mut self, rate: f64) -> Self {
        self.rate = rate;
        self
    }
    /// Total number of call entries the feed produces (second-node uploads included);
    /// `None` = endless.
    pub fn total_calls(mut self, total: Option<u64>) -> Self {
        self.total = total;
        self
    }
    /// A known account. The first call replaces the default `demo`/`demo-password`; further
    /// calls add accounts.
    pub fn user(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        if !self.users_set {
            self.users.clear();
            self.users_set = true;
        }
        self.users.push((username.into(), password.into()));
        self
    }
    /// The Bearer key `/v1/audio/transcriptions` requires (none set = any key accepted).
    pub fn whisper_key(mut self, key: impl Into<String>) -> Self {
        self.whisper_key = Some(key.into());
        self
    }
    /// The fault plan.
    pub fn faults(mut self, plan: FaultPlan) -> Self {
        self.faults = plan;
        self
    }
    /// Manual clock starting at `start_epoch` (epoch seconds): time moves only through
    /// [`SimHandle::advance`], and [`SimHandle::ingest`] makes calls appear now.
    pub fn manual_clock(mut self, start_epoch: i64) -> Self {
        self.manual_start = Some(start_epoch);
        self
    }
    /// Real-time clock starting at this epoch (default: the current time).
    pub fn start_epoch(mut self, epoch: i64) -> Self {
        self.start_epoch = Some(epoch);
        self
    }
    /// Calls are ingested from `start - backfill`, so this much history exists at start.
    pub fn backfill(mut self, d: Duration) -> Self {
        self.backfill = d;
        self
    }
    /// Probability that a call is ingested late, with the largest `ts` already ingested
    /// (default 0.05).
    pub fn late_ingest_probability(mut self, p: f64) -> Self {
        self.late_probability = p;
        self
    }
    /// Probability that a call has no `hash` (CDN path `/{systemId}/{filename}.m4a`); default 0.
    pub fn hashless_probability(mut self, p: f64) -> Self {
        self.hashless_probability = p;
        self
    }
    /// Probability that a call carries trunk-recorder `metadata` (default 0.7).
    pub fn metadata_probability(mut self, p: f64) -> Self {
        self.metadata_probability = p;
        self
    }
    /// Extra bytes of padding in every call's trailing `free` box (default 0; per-call padding
    /// of 16..2048 bytes is always added). Large values make throughput benchmarks meaningful.
    pub fn audio_padding(mut self, bytes: usize) -> Self {
        self.audio_padding = bytes;
        self
    }
    /// The CDN's `Content-Type` (default `Some("audio/mp4")`; `None` sends none).
    pub fn audio_content_type(mut self, ct: Option<&str>) -> Self {
        self.audio_content_type = ct.map(str::to_owned);
        self
    }
    /// Throttle every audio body to this many bytes per second.
    pub fn audio_throttle(mut self, bytes_per_sec: Option<u64>) -> Self {
        self.audio_throttle = bytes_per_sec;
        self
    }
    /// Record every request (default true; turn off for long load runs).
    pub fn record_requests(mut self, on: bool) -> Self {
        self.record_requests = on;
        self
    }
    /// Keep the served-call ledger ([`SimHandle::served_calls`]; default true). When off, only
    /// [`SimHandle::served_count`] is kept, for long load runs.
    pub fn track_served(mut self, on: bool) -> Self {
        self.track_served = on;
        self
    }
    /// Keep at most about this many ingested calls (between `n` and `2n`; the oldest are
    /// dropped in batches and then 404 on the CDN and vanish from archives). Default: keep all.
    pub fn max_stored_calls(mut self, n: Option<usize>) -> Self {
        self.max_stored = n;
        self
    }
    /// A playlist uuid that live-calls' `playlist_uuid` resolves to these groups.
    pub fn playlist(
        mut self,
        uuid: impl Into<String>,
        groups: impl IntoIterator<Item = (u64, u64)>,
    ) -> Self {
        self.playlists
            .insert(uuid.into(), groups.into_iter().collect());
        self
    }
    /// On `doInit=1`, return at most this many (most recent) calls (default: no limit).
    pub fn init_history_limit(mut self, limit: Option<usize>) -> Self {
        self.init_history_limit = limit;
        self
    }
    /// Serve HTTPS with a generated certificate (ALPN `h2`, `http/1.1`).
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }
    /// Bind address (default 127.0.0.1).
    pub fn bind_ip(mut self, ip: IpAddr) -> Self {
        self.ip = ip;
        self
    }
    /// Site port (default 0 = OS-chosen).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    /// CDN port (default 0 = OS-chosen).
    pub fn cdn_port(mut self, port: u16) -> Self {
        self.cdn_port = port;
        self
    }

    /// Binds the site and CDN listeners and starts serving on the current tokio runtime.
    pub async fn start(self) -> Result<SimHandle, SimError> {
        let groups = if self.groups.is_empty() {
            vec![(4290, 512), (4290, 1536)]
        } else {
            self.groups.clone()
        };
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            return Err(SimError::config("calls_per_second must be finite and >= 0"));
        }
        let mut sids: Vec<u64> = Vec::new();
        let infos: Vec<GroupInfo> = groups
            .iter()
            .enumerate()
            .map(|(i, &(sid, tg))| {
                let si = sids.iter().position(|&s| s == sid).unwrap_or_else(|| {
                    sids.push(sid);
                    sids.len() - 1
                });
                GroupInfo::new(i, sid, tg, si)
            })
            .collect();
        let bind = |port| async move {
            TcpListener::bind(SocketAddr::new(self.ip, port))
                .await
                .map_err(|e| SimError {
                    kind: SimErrorKind::Bind,
                    message: format!("{}:{port}: {e}", self.ip),
                })
        };
        let site = bind(self.port).await?;
        let cdn = bind(self.cdn_port).await?;
        let tls = if self.tls {
            Some(tls::generate()?)
        } else {
            None
        };
        let scheme = if self.tls { "https" } else { "http" };
        let url = |l: &TcpListener| -> Result<Url, SimError> {
            let addr = l.local_addr().map_err(|e| SimError {
                kind: SimErrorKind::Bind,
                message: e.to_string(),
            })?;
            Url::parse(&format!("{scheme}://{addr}/")).map_err(|e| SimError::config(&e.to_string()))
        };
        let site_url = url(&site)?;
        let cdn_url = url(&cdn)?;

        let (real, base) = if let Some(s) = self.manual_start {
            (false, s as f64)
        } else {
            let now = self.start_epoch.map_or_else(
                || {
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64())
                },
                |e| e as f64,
            );
            (true, now)
        };
        let clock = Clock::new(base, real);
        let feed = Feed::new(
            FeedConfig {
                seed: self.seed,
                groups: infos,
                rate: self.rate,
                total: self.total,
                late_probability: self.late_probability,
                dual_probability: self.faults.dual_upload_probability,
                hashless_probability: self.hashless_probability,
                metadata_probability: self.metadata_probability,
                audio_padding: self.audio_padding,
                max_stored: self.max_stored,
            },
            base - self.backfill.as_secs_f64(),
        );
        let shared = Arc::new(Shared::new(
            SimConfig {
                users: self.users,
                whisper_key: self.whisper_key,
                faults: self.faults,
                playlists: self.playlists,
                audio_content_type: self.audio_content_type,
                audio_throttle: self.audio_throttle,
                record_requests: self.record_requests,
                track_served: self.track_served,
                init_history_limit: self.init_history_limit,
                site_url: site_url.clone(),
            },
            clock,
            feed,
            self.seed,
        ));
        shared.now_pumped();
        let (stop_tx, stop_rx) = watch::channel(false);
        let acceptor = tls.as_ref().map(|t| t.acceptor.clone());
        let tasks = vec![
            tokio::spawn(server::accept_loop(
                site,
                shared.clone(),
                Role::Site,
                acceptor.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(server::accept_loop(
                cdn,
                shared.clone(),
                Role::Cdn,
                acceptor,
                stop_rx,
            )),
        ];
        Ok(SimHandle {
            inner: Arc::new(Inner {
                shared,
                site_url,
                cdn_url,
                cert: tls.map(|t| (t.cert_der, t.cert_pem)),
                stop: stop_tx,
                tasks: Mutex::new(tasks),
            }),
        })
    }
}

struct Inner {
    shared: Arc<Shared>,
    site_url: Url,
    cdn_url: Url,
    cert: Option<(Vec<u8>, String)>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: stop accepting so no task outlives the simulator.
        let _ = self.stop.send(true);
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }
}

/// A running simulator. Cheap to clone; the server stops when [`SimHandle::shutdown`] is
/// called or the last clone is dropped.
#[derive(Clone)]
pub struct SimHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("base_url", &self.inner.site_url.as_str())
            .field("cdn_url", &self.inner.cdn_url.as_str())
            .finish_non_exhaustive()
    }
}

fn served_call(feed: &Feed, c: &StoredCall) -> ServedCall {
    let g = feed.group_of(c);
    ServedCall {
        call_id: c.call_id.clone(),
        group: g.key.clone(),
        sid: g.sid,
        talkgroup: g.tg,
        node: c.node,
        filename: c.filename.clone(),
        hash: c.hash.clone(),
        ts: c.ts,
        start_time: c.start,
        audio_sha256: c.audio_sha256().to_owned(),
        audio_len: c.audio_len(),
        transcript: c.transcript.clone(),
        dual_of: c.dual_of.clone(),
        late: c.late,
        payload: serde_json::from_slice(&c.json).unwrap_or(serde_json::Value::Null),
    }
}

impl SimHandle {
    fn shared(&self) -> &Shared {
        &self.inner.shared
    }
    /// The site's base URL, e.g. `http://127.0.0.1:PORT/` (login, live-calls, archives).
    pub fn base_url(&self) -> Url {
        self.inner.site_url.clone()
    }
    /// The calls CDN's base URL (its own port; audio at `/{hash}/{systemId}/{filename}.m4a`).
    pub fn cdn_url(&self) -> Url {
        self.inner.cdn_url.clone()
    }
    /// The OpenAI-compatible API base, ending in `/v1` (transcriptions at
    /// `{whisper_url}/audio/transcriptions`).
    pub fn whisper_url(&self) -> Url {
        let mut u = self.inner.site_url.clone();
        u.set_path("/v1");
        u
    }
    /// The generated certificate (DER) when serving TLS, for a client's root store.
    pub fn tls_certificate_der(&self) -> Option<&[u8]> {
        self.inner.cert.as_ref().map(|(d, _)| d.as_slice())
    }
    /// The generated certificate (PEM) when serving TLS.
    pub fn tls_certificate_pem(&self) -> Option<&str> {
        self.inner.cert.as_ref().map(|(_, p)| p.as_str())
    }
    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared().log).clone()
    }
    /// Requests to one endpoint.
    pub fn requests_to(&self, endpoint: Endpoint) -> Vec<RecordedRequest> {
        lock(&self.shared().log)
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .cloned()
            .collect()
    }
    /// Every call live-calls served in an intact answer, once each, in first-served order.
    /// A call counts when the answer's last byte has been handed to the connection: answers
    /// broken by a reset, truncation or malformed-JSON fault, and answers whose client gave up
    /// (e.g. during slow headers), do not count.
    pub fn served_calls(&self) -> Vec<ServedCall> {
        let calls: Vec<Arc<StoredCall>> = lock(&self.shared().served).calls.clone();
        let feed = lock(&self.shared().feed);
        calls.iter().map(|c| served_call(&feed, c)).collect()
    }
    /// Number of distinct calls live-calls has served intact (kept even without the ledger).
    pub fn served_count(&self) -> u64 {
        lock(&self.shared().served).count
    }
    /// Every call ingested so far (served or not) and still stored, in ingest order.
    pub fn ingested_calls(&self) -> Vec<ServedCall> {
        self.shared().now_pumped();
        let feed = lock(&self.shared().feed);
        feed.calls().iter().map(|c| served_call(&feed, c)).collect()
    }
    /// Number of calls ingested so far (including any dropped by `max_stored_calls`).
    pub fn ingested_count(&self) -> u64 {
        self.shared().now_pumped();
        lock(&self.shared().feed).produced()
    }
    /// Whether a finite feed has produced all its calls.
    pub fn feed_exhausted(&self) -> bool {
        self.shared().now_pumped();
        lock(&self.shared().feed).exhausted()
    }
    /// A call's audio exactly as the CDN serves it.
    pub fn call_audio(&self, call_id: &str) -> Option<Bytes> {
        lock(&self.shared().feed).get(call_id).map(|c| c.audio())
    }
    /// The transcript the Whisper endpoint returns for a call's audio.
    pub fn transcript_for(&self, call_id: &str) -> Option<String> {
        lock(&self.shared().feed)
            .get(call_id)
            .map(|c| c.transcript.clone())
    }
    /// A call's payload object as live-calls serialises it.
    pub fn call_payload(&self, call_id: &str) -> Option<serde_json::Value> {
        lock(&self.shared().feed)
            .get(call_id)
            .and_then(|c| serde_json::from_slice(&c.json).ok())
    }
    /// Current simulated time, epoch seconds.
    pub fn now(&self) -> f64 {
        self.shared().clock.now()
    }
    /// Moves the simulated clock forward (both clock modes) and ingests what became due.
    pub fn advance(&self, d: Duration) {
        self.shared().clock.advance(d);
        self.shared().now_pumped();
    }
    /// Makes the next `n` calls of the feed appear now (sharing the current second as `ts`);
    /// returns their call ids (a second-node upload adds an id). Stops early at `total_calls`.
    pub fn ingest(&self, n: usize) -> Vec<String> {
        let now = self.shared().clock.now();
        lock(&self.shared().feed).ingest(n, now)
    }
    /// Opens a session for a known account without an HTTP login; returns the `bcfyuser1`
    /// token (for tests that start from a stored token).
    pub fn create_session(&self) -> String {
        self.shared().open_session()
    }
    /// Logs every session out (the next authenticated request gets the logged-out answer).
    pub fn expire_sessions(&self) {
        self.shared().expire_all_sessions();
    }
    /// Number of requests to `endpoint` answered so far (counted whether or not requests are
    /// recorded).
    pub fn answered(&self, endpoint: Endpoint) -> u64 {
        self.shared().answered[endpoint.index()].load(std::sync::atomic::Ordering::Acquire)
    }
    /// Waits until live-calls has served at least `n` distinct calls (an event, not a sleep:
    /// wrap it in `tokio::time::timeout` in tests).
    pub async fn wait_served(&self, n: usize) {
        loop {
            let changed = self.shared().changed.notified();
            if lock(&self.shared().served).count >= n as u64 {
                return;
            }
            changed.await;
        }
    }
    /// Waits until at least `n` requests to `endpoint` have been answered.
    pub async fn wait_answered(&self, endpoint: Endpoint, n: u64) {
        loop {
            let changed = self.shared().changed.notified();
            if self.answered(endpoint) >= n {
                return;
            }
            changed.await;
        }
    }
    /// Stops accepting, lets in-flight connections finish (up to 1 s), and returns.
    pub async fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        let tasks: Vec<JoinHandle<()>> = lock(&self.inner.tasks).drain(..).collect();
        for t in tasks {
            let _ = t.await;
        }
    }
}
