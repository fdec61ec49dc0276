//! The HTTP side: listeners, routing, the endpoint handlers and fault shaping.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt as _;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use url::Url;

use crate::faults::{Endpoint, Fault, FaultPlan, RetryAfter};
use crate::feed::{Feed, Filter, StoredCall, parse_group};
use crate::record::RecordedRequest;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type Body = BoxBody<Bytes, BoxError>;

/// The hostile entries of `fixtures/live-calls-hostile.json`, verbatim.
const HOSTILE: &str = r#"{"id": "4290-512", "ts": 1758430140, "systemId": 2893, "call_tg": 512, "filename": "../../etc/passwd", "enc": "m4a", "hash": "qwh9zivk"},
    {"id": "4290-512", "ts": 1758430141, "systemId": "2893@evil.example", "call_tg": 512, "filename": "1758430123-512", "enc": "m4a"},
    {"id": "4290-512", "ts": 1758430142, "systemId": 2893, "call_tg": 512, "filename": "1758430124-512", "enc": "m4a?x=1", "hash": "a/b"},
    {"id": "4290-512", "ts": -5, "systemId": 2893, "call_tg": 512, "filename": "1758430125-512", "call_duration": 1e309},
    "not an object",
    null"#;

/// The logged-out answer of live-calls (status 200, as some clients expect).
pub const LIVE_LOGGED_OUT: &str = "You must be logged in to access live calls";
/// The logged-out answer of archivecall.php (status 403).
pub const ARCHIVE_LOGGED_OUT: &str = "You must be logged in to access archives";

/// The simulated clock: epoch seconds, following tokio's clock (real mode) or only moved by
/// `advance` (manual mode).
pub(crate) struct Clock {
    origin: tokio::time::Instant,
    base: f64,
    real: bool,
    offset_bits: AtomicU64,
}

impl Clock {
    pub(crate) fn new(base: f64, real: bool) -> Clock {
        Clock {
            origin: tokio::time::Instant::now(),
            base,
            real,
            offset_bits: AtomicU64::new(0f64.to_bits()),
        }
    }
    pub(crate) fn now(&self) -> f64 {
        let off = f64::from_bits(self.offset_bits.load(Ordering::Acquire));
        let run = if self.real {
            self.origin.elapsed().as_secs_f64()
        } else {
            0.0
        };
        self.base + off + run
    }
    pub(crate) fn advance(&self, d: Duration) {
        let _ = self
            .offset_bits
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some((f64::from_bits(b) + d.as_secs_f64()).to_bits())
            });
    }
}

/// Server-side settings fixed at start.
pub(crate) struct SimConfig {
    pub(crate) users: Vec<(String, String)>,
    pub(crate) whisper_key: Option<String>,
    pub(crate) faults: FaultPlan,
    pub(crate) playlists: HashMap<String, Vec<(u64, u64)>>,
    pub(crate) audio_content_type: Option<String>,
    pub(crate) audio_throttle: Option<u64>,
    pub(crate) record_requests: bool,
    pub(crate) track_served: bool,
    pub(crate) init_history_limit: Option<usize>,
    pub(crate) site_url: Url,
}

struct Session {
    requests: u64,
    alive: bool,
}

/// Calls served intact by live-calls, first-served order.
#[derive(Default)]
pub(crate) struct Served {
    pub(crate) calls: Vec<Arc<StoredCall>>,
    /// Distinct calls served (also counted when the ledger is off).
    pub(crate) count: u64,
    seen: HashSet<u64>,
}

/// Everything the handlers share.
pub(crate) struct Shared {
    pub(crate) cfg: SimConfig,
    pub(crate) clock: Clock,
    pub(crate) feed: Mutex<Feed>,
    sessions: Mutex<HashMap<String, Session>>,
    pub(crate) served: Mutex<Served>,
    pub(crate) log: Mutex<Vec<RecordedRequest>>,
    counters: [AtomicU64; 7],
    /// Requests answered per endpoint (counted when the answer's headers are ready).
    pub(crate) answered: [AtomicU64; 7],
    /// Woken whenever a request is answered or a call is served.
    pub(crate) changed: tokio::sync::Notify,
    /// One stream per endpoint, so an endpoint's fault sequence depends only on its own
    /// request order, not on how requests to other endpoints interleave.
    fault_rng: [Mutex<ChaCha8Rng>; 7],
    token_rng: Mutex<ChaCha8Rng>,
    conn_ids: AtomicU64,
}

/// Locks a mutex, recovering the data if a panicking holder poisoned it (the simulator's state
/// stays usable for the remaining assertions of a test).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn random_token(rng: &mut ChaCha8Rng, len: usize) -> String {
    const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHA[rng.random_range(0..ALPHA.len())] as char)
        .collect()
}

impl Shared {
    pub(crate) fn new(cfg: SimConfig, clock: Clock, feed: Feed, seed: u64) -> Shared {
        Shared {
            cfg,
            clock,
            feed: Mutex::new(feed),
            sessions: Mutex::new(HashMap::new()),
            served: Mutex::new(Served::default()),
            log: Mutex::new(Vec::new()),
            counters: Default::default(),
            answered: Default::default(),
            changed: tokio::sync::Notify::new(),
            fault_rng: std::array::from_fn(|i| {
                Mutex::new(ChaCha8Rng::seed_from_u64(
                    seed ^ (0xFA17 + ((i as u64) << 32)),
                ))
            }),
            token_rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ 0x70CE)),
            conn_ids: AtomicU64::new(0),
        }
    }

    /// Current sim time, after ingesting whatever became due.
    pub(crate) fn now_pumped(&self) -> f64 {
        let now = self.clock.now();
        lock(&self.feed).pump(now);
        now
    }

    /// Opens a session for a known user; returns its token.
    pub(crate) fn open_session(&self) -> String {
        let token = random_token(&mut lock(&self.token_rng), 40);
        lock(&self.sessions).insert(
            token.clone(),
            Session {
                requests: 0,
                alive: true,
            },
        );
        token
    }

    pub(crate) fn expire_all_sessions(&self) {
        for s in lock(&self.sessions).values_mut() {
            s.alive = false;
        }
    }

    /// Counts an authenticated request; false when the token is unknown, logged out or expired.
    fn use_session(&self, token: Option<&str>) -> bool {
        let Some(token) = token else { return false };
        let mut sessions = lock(&self.sessions);
        let Some(s) = sessions.get_mut(token) else {
            return false;
        };
        if !s.alive {
            return false;
        }
        s.requests += 1;
        if let Some(k) = self.cfg.faults.session_expiry_after
            && s.requests > k
        {
            s.alive = false;
            return false;
        }
        true
    }

    fn active_faults(&self, ep: Endpoint) -> Active {
        let n = self.counters[ep.index()].fetch_add(1, Ordering::Relaxed) + 1;
        let mut a = Active::default();
        for rule in self.cfg.faults.rules.iter().filter(|r| r.endpoint == ep) {
            if !rule
                .trigger
                .fires(n, || lock(&self.fault_rng[ep.index()]).random::<f64>())
            {
                continue;
            }
            tracing::debug!(endpoint = %ep, request = n, fault = ?rule.fault, "bcfy-sim injects a fault");
            match &rule.fault {
                f @ (Fault::TooManyRequests(_) | Fault::Unavailable(_)) => {
                    if a.status.is_none() {
                        a.status = Some(f.clone());
                    }
                }
                Fault::ResetMidBody => a.reset = true,
                Fault::SlowHeaders(d) => a.slow_headers = Some(*d),
                Fault::SlowBody(d) => a.slow_body = Some(*d),
                Fault::MalformedJson => a.malformed = true,
                Fault::HostileEntries => a.hostile = true,
                Fault::TruncatedBody => a.truncate = true,
                Fault::DuplicateCalls => a.duplicate = true,
                Fault::LastPosBackwards => a.backwards = true,
            }
        }
        a
    }
}

#[derive(Default)]
struct Active {
    status: Option<Fault>,
    reset: bool,
    slow_headers: Option<Duration>,
    slow_body: Option<Duration>,
    malformed: bool,
    hostile: bool,
    truncate: bool,
    duplicate: bool,
    backwards: bool,
}

/// An answer before fault shaping.
pub(crate) struct Reply {
    status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) chunks: Vec<Bytes>,
    json: bool,
    served: Vec<Arc<StoredCall>>,
    throttle: Option<u64>,
    head: bool,
}

impl Reply {
    pub(crate) fn new(status: StatusCode) -> Reply {
        Reply {
            status,
            headers: HeaderMap::new(),
            chunks: Vec::new(),
            json: false,
            served: Vec::new(),
            throttle: None,
            head: false,
        }
    }
    pub(crate) fn json(status: StatusCode, body: impl Into<Bytes>) -> Reply {
        let mut r = Reply::new(status);
        r.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r.chunks.push(body.into());
        r.json = true;
        r
    }
    fn text(status: StatusCode, body: &'static str) -> Reply {
        let mut r = Reply::new(status);
        r.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r.chunks.push(Bytes::from_static(body.as_bytes()));
        r
    }
    fn header(mut self, name: HeaderName, value: &str) -> Reply {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.append(name, v);
        }
        self
    }
}

fn error_json(message: &str, server_time: i64) -> Bytes {
    Bytes::from(serde_json::json!({ "error": message, "serverTime": server_time }).to_string())
}

pub(crate) fn openai_error(
    status: StatusCode,
    message: &str,
    kind: &str,
    code: Option<&str>,
) -> Reply {
    let body = serde_json::json!({
        "error": { "message": message, "type": kind, "param": null, "code": code }
    });
    Reply::json(status, body.to_string())
}

fn route(cdn: bool, method: &Method, path: &str, query: Option<&str>) -> Endpoint {
    if cdn {
        return if *method == Method::GET || *method == Method::HEAD {
            Endpoint::Audio
        } else {
            Endpoint::Other
        };
    }
    match (method, path) {
        (&Method::POST, "/login/" | "/login") => Endpoint::Login,
        (&Method::GET, "/account/" | "/account") => {
            let logout = query.is_some_and(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .any(|(k, v)| k == "action" && v == "logout")
            });
            if logout {
                Endpoint::Logout
            } else {
                Endpoint::Other
            }
        }
        (&Method::POST, "/calls/apis/live-calls" | "/calls/apis/live-calls/") => {
            Endpoint::LiveCalls
        }
        (&Method::GET, "/calls/apis/archivecall.php") => Endpoint::Archive,
        (&Method::POST, "/v1/audio/transcriptions") => Endpoint::Transcription,
        _ => Endpoint::Other,
    }
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn retry_after_value(ra: RetryAfter) -> String {
    match ra {
        RetryAfter::Seconds(s) => s.to_string(),
        RetryAfter::HttpDate(d) => {
            let at = SystemTime::now() + d;
            let secs = at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |x| x.as_secs() + u64::from(x.subsec_nanos() > 0));
            httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
        }
    }
}

fn status_fault_reply(f: &Fault, ep: Endpoint) -> Reply {
    let (status, ra, msg) = match f {
        Fault::TooManyRequests(ra) => (StatusCode::TOO_MANY_REQUESTS, *ra, "Too Many Requests"),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            match f {
                Fault::Unavailable(ra) => *ra,
                _ => None,
            },
            "Service Unavailable",
        ),
    };
    let mut r = if ep == Endpoint::Transcription {
        openai_error(
            status,
            msg,
            "requests",
            Some(if status == StatusCode::TOO_MANY_REQUESTS {
                "rate_limit_exceeded"
            } else {
                "service_unavailable"
            }),
        )
    } else {
        Reply::text(status, msg)
    };
    if let Some(ra) = ra {
        r = r.header(header::RETRY_AFTER, &retry_after_value(ra));
    }
    r
}

/// Handles one request end to end; never fails (errors become HTTP answers).
pub(crate) async fn handle(
    shared: Arc<Shared>,
    conn: u64,
    cdn: bool,
    req: Request<Incoming>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let ep = route(cdn, &parts.method, &path, query.as_deref());
    let faults = shared.active_faults(ep);
    let arrived = SystemTime::now();
    let sim_time = shared.clock.now();
    let cookie = cookie_value(&parts.headers, "bcfyuser1");

    // Whisper uploads can be large; everything else is small.
    let limit = if ep == Endpoint::Transcription {
        64 << 20
    } else {
        1 << 20
    };
    let body = match Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let mut form: Vec<(String, String)> = if is_form {
        url::form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    } else {
        Vec::new()
    };

    let mut reply = if let Some(f) = &faults.status {
        status_fault_reply(f, ep)
    } else {
        match ep {
            Endpoint::Login => login(&shared, &parts.headers, &form),
            Endpoint::Logout => logout(&shared, cookie.as_deref()),
            Endpoint::LiveCalls => live(&shared, &form, cookie.as_deref(), &faults),
            Endpoint::Archive => {
                archive(&shared, query.as_deref(), &parts.headers, cookie.as_deref())
            }
            Endpoint::Audio => audio(&shared, &path, parts.method == Method::HEAD),
            Endpoint::Transcription => {
                crate::whisper::transcribe(&shared, &parts.headers, body.clone(), &mut form).await
            }
            Endpoint::Other => Reply::text(StatusCode::NOT_FOUND, "Not Found"),
        }
    };

    if faults.malformed && reply.json && !reply.chunks.is_empty() {
        let whole: Vec<u8> = reply
            .chunks
            .iter()
            .flat_map(|c| c.iter().copied())
            .collect();
        let cut = (whole.len() / 2).max(1).min(whole.len());
        reply.chunks = vec![Bytes::from(whole[..cut].to_vec())];
    }
    let intact = !(faults.malformed || faults.reset || faults.truncate);
    // Calls count as served when the body's last byte is handed to the connection: a client
    // that gave up during slow headers or a slow body never polls that far.
    let on_done: Option<OnDone> = (intact && !reply.served.is_empty()).then(|| {
        let calls = std::mem::take(&mut reply.served);
        let shared = shared.clone();
        Box::new(move || {
            {
                let mut served = lock(&shared.served);
                for c in calls {
                    if served.seen.insert(c.seq) {
                        served.count += 1;
                        if shared.cfg.track_served {
                            served.calls.push(c);
                        }
                    }
                }
            }
            shared.changed.notify_waiters();
        }) as OnDone
    });

    if shared.cfg.record_requests {
        let answered_at = SystemTime::now() + faults.slow_headers.unwrap_or_default();
        let retry_after = reply
            .headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.trim().parse::<f64>().ok().or_else(|| {
                    httpdate::parse_http_date(v).ok().map(|t| {
                        t.duration_since(answered_at)
                            .unwrap_or_default()
                            .as_secs_f64()
                    })
                })
            });
        let logged_out = reply.status == StatusCode::UNAUTHORIZED
            || reply.status == StatusCode::FORBIDDEN
            || (ep == Endpoint::LiveCalls
                && reply.chunks.first().is_some_and(|c| {
                    c.windows(LIVE_LOGGED_OUT.len())
                        .any(|w| w == LIVE_LOGGED_OUT.as_bytes())
                }));
        let rec = RecordedRequest {
            endpoint: ep,
            method: parts.method.clone(),
            path,
            query,
            form,
            headers: parts.headers.clone(),
            cookie,
            time: arrived,
            sim_time,
            connection_id: conn,
            version: parts.version,
            status: reply.status,
            answered_at,
            retry_after,
            logged_out,
        };
        lock(&shared.log).push(rec);
    }

    if let Some(d) = faults.slow_headers {
        tokio::time::sleep(d).await;
    }
    shared.answered[ep.index()].fetch_add(1, Ordering::Release);
    shared.changed.notify_waiters();
    build_response(reply, &faults, on_done)
}

/// Runs once when a body's last byte has been produced.
type OnDone = Box<dyn FnOnce() + Send + Sync>;

fn build_response(reply: Reply, faults: &Active, on_done: Option<OnDone>) -> Response<Body> {
    let total: usize = reply.chunks.iter().map(Bytes::len).sum();
    let mut chunks = if reply.head { Vec::new() } else { reply.chunks };
    let ending = if faults.reset {
        Ending::Reset
    } else if faults.truncate {
        Ending::Short
    } else {
        Ending::Complete
    };
    if (faults.reset || faults.truncate) && !chunks.is_empty() {
        chunks = take_prefix(chunks, total / 2);
    }
    let pacing = if let Some(d) = faults.slow_body {
        Pacing::Pieces(d)
    } else if let Some(rate) = reply.throttle {
        Pacing::Rate(rate)
    } else {
        Pacing::None
    };
    let body: Body = match (&pacing, &ending, chunks.len(), on_done) {
        (Pacing::None, Ending::Complete, 0, None) => Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed(),
        (Pacing::None, Ending::Complete, 1, None) => Full::new(chunks.swap_remove(0))
            .map_err(|never| match never {})
            .boxed(),
        (.., on_done) => paced_body(chunks, pacing, ending, on_done),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = reply.status;
    *resp.headers_mut() = reply.headers;
    if reply.status != StatusCode::NOT_MODIFIED {
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    }
    resp
}

#[derive(Clone, Copy)]
enum Pacing {
    None,
    Pieces(Duration),
    Rate(u64),
}

#[derive(Clone, Copy)]
enum Ending {
    Complete,
    /// Stop early, then fail the body (hyper aborts the connection).
    Reset,
    /// Stop early, ending the body cleanly (shorter than `Content-Length`).
    Short,
}

fn take_prefix(chunks: Vec<Bytes>, mut n: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    for c in chunks {
        if n == 0 {
            break;
        }
        let take = c.len().min(n);
        out.push(c.slice(..take));
        n -= take;
    }
    out
}

fn paced_body(
    chunks: Vec<Bytes>,
    pacing: Pacing,
    ending: Ending,
    mut on_done: Option<OnDone>,
) -> Body {
    let total: usize = chunks.iter().map(Bytes::len).sum();
    let (pieces, delay_for): (Vec<Bytes>, Box<dyn Fn(usize) -> Duration + Send + Sync>) =
        match pacing {
            Pacing::None => (chunks, Box::new(|_| Duration::ZERO)),
            Pacing::Pieces(d) => (
                split(chunks, total.div_ceil(8).max(1)),
                Box::new(move |_| d),
            ),
            Pacing::Rate(rate) => {
                let rate = rate.max(1);
                let piece = (rate / 20).max(1) as usize;
                (
                    split(chunks, piece),
                    Box::new(move |len| Duration::from_secs_f64(len as f64 / rate as f64)),
                )
            }
        };
    let reset = matches!(ending, Ending::Reset);
    let broken = !matches!(ending, Ending::Complete);
    let last = pieces.len().saturating_sub(1);
    if pieces.is_empty()
        && let Some(f) = on_done.take()
    {
        f();
    }
    let data = futures::stream::iter(pieces.into_iter().enumerate()).then(move |(i, p)| {
        let d = if i == 0 {
            Duration::ZERO
        } else {
            delay_for(p.len())
        };
        let done = if i == last { on_done.take() } else { None };
        async move {
            if !d.is_zero() {
                tokio::time::sleep(d).await;
            }
            if let Some(f) = done {
                f();
            }
            Ok::<_, BoxError>(Frame::data(p))
        }
    });
    // Before breaking off, give hyper time to flush the headers and the partial body, so the
    // client sees a started answer that stops, not a connection closed before any byte.
    let tail = futures::stream::once(async move {
        if broken {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .filter_map(move |()| async move {
        reset.then(|| {
            Err::<Frame<Bytes>, BoxError>(Box::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "simulated reset mid-body",
            )))
        })
    });
    http_body_util::BodyExt::boxed(StreamBody::new(data.chain(tail)))
}

fn split(chunks: Vec<Bytes>, size: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    for c in chunks {
        let mut at = 0;
        while at < c.len() {
            let end = (at + size).min(c.len());
            out.push(c.slice(at..end));
            at = end;
        }
    }
    out
}

fn login(shared: &Shared, headers: &HeaderMap, form: &[(String, String)]) -> Reply {
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let site = shared
        .cfg
        .site_url
        .as_str()
        .trim_end_matches('/')
        .to_owned();
    if get("action") != Some("auth") {
        // Not the login form's submission: the site shows the login page.
        let mut r = Reply::text(StatusCode::OK, "<html><body>Login</body></html>");
        r.headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        return r;
    }
    let ok = match (get("username"), get("password")) {
        (Some(u), Some(p)) => shared.cfg.users.iter().any(|(uu, pp)| uu == u && pp == p),
        _ => false,
    };
    let domain = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map_or("127.0.0.1", |h| h.rsplit_once(':').map_or(h, |(a, _)| a))
        .to_owned();
    let phpsess = random_token(&mut lock(&shared.token_rng), 26);
    let mut r = Reply::new(StatusCode::FOUND)
        .header(header::SET_COOKIE, &format!("PHPSESSID={phpsess}; path=/"));
    if ok {
        let token = shared.open_session();
        let location = get("redirect")
            .filter(|s| !s.is_empty())
            .unwrap_or(&site)
            .to_owned();
        r = r
            .header(header::LOCATION, &location)
            .header(
                header::SET_COOKIE,
                &format!("bcfyuser1={token}; path=/; domain={domain}; secure; HttpOnly"),
            )
            .header(
                header::SET_COOKIE,
                &format!(
                    "bcfyuser_prefs={}; path=/; secure",
                    random_token(&mut lock(&shared.token_rng), 12)
                ),
            );
    } else {
        r = r.header(header::LOCATION, &format!("{site}/login/?failed=1"));
    }
    r
}

fn logout(shared: &Shared, cookie: Option<&str>) -> Reply {
    if let Some(t) = cookie
        && let Some(s) = lock(&shared.sessions).get_mut(t)
    {
        s.alive = false;
    }
    Reply::new(StatusCode::FOUND)
        .header(header::LOCATION, shared.cfg.site_url.as_str())
        .header(
            header::SET_COOKIE,
            "bcfyuser1=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; path=/",
        )
}

fn live(
    shared: &Shared,
    form: &[(String, String)],
    cookie: Option<&str>,
    faults: &Active,
) -> Reply {
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let now = shared.now_pumped();
    let server_time = now.floor() as i64;
    if !shared.use_session(cookie) {
        return Reply::json(StatusCode::OK, error_json(LIVE_LOGGED_OUT, server_time));
    }
    let groups: Vec<(u64, u64)> = form
        .iter()
        .filter(|(k, _)| k == "groups[]")
        .filter_map(|(_, v)| parse_group(v))
        .collect();
    let nonzero = |k: &str| {
        get(k)
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|v| *v != 0)
    };
    let filter = if !groups.is_empty() {
        Some(Filter::Groups(groups))
    } else if let Some(uuid) = get("playlist_uuid").filter(|u| !u.is_empty()) {
        match shared.cfg.playlists.get(uuid) {
            Some(g) => Some(Filter::Groups(g.clone())),
            None => {
                return Reply::json(StatusCode::OK, error_json("Unknown playlist", server_time));
            }
        }
    } else if let Some(sid) = nonzero("sid") {
        Some(Filter::Sid(sid))
    } else {
        nonzero("systemId").map(Filter::Node)
    };
    let pos: f64 = get("pos")
        .and_then(|p| p.trim().parse().ok())
        .filter(|p: &f64| p.is_finite())
        .unwrap_or(0.0);
    let init = get("doInit") == Some("1");
    let (mut calls, dups) = match &filter {
        Some(f) => {
            let feed = lock(&shared.feed);
            let limit = if init {
                shared.cfg.init_history_limit
            } else {
                None
            };
            let calls = feed.live(f, pos, limit);
            let dups = if faults.duplicate {
                feed.before(f, pos, 3)
            } else {
                Vec::new()
            };
            (calls, dups)
        }
        None => (Vec::new(), Vec::new()),
    };
    let last = calls.last().map(|c| c.ts);
    let mut last_pos = last.unwrap_or(pos.ceil() as i64 - 1);
    if faults.backwards {
        last_pos = pos.floor() as i64 - 60;
    }
    if !dups.is_empty() {
        let mut all = dups;
        all.append(&mut calls);
        calls = all;
    }
    let mut body = Vec::with_capacity(48 + calls.iter().map(|c| c.json.len() + 1).sum::<usize>());
    body.extend_from_slice(b"{\"calls\":[");
    for (i, c) in calls.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&c.json);
    }
    if faults.hostile {
        if !calls.is_empty() {
            body.push(b',');
        }
        body.extend_from_slice(HOSTILE.as_bytes());
    }
    let _ = write!(
        Tail(&mut body),
        "],\"serverTime\":{server_time},\"lastPos\":{last_pos}}}"
    );
    let mut r = Reply::json(StatusCode::OK, body);
    r.served = calls;
    r
}

/// `fmt::Write` into a byte vector.
struct Tail<'a>(&'a mut Vec<u8>);
impl std::fmt::Write for Tail<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn archive(
    shared: &Shared,
    query: Option<&str>,
    headers: &HeaderMap,
    cookie: Option<&str>,
) -> Reply {
    let now = shared.now_pumped();
    let server_time = now.floor() as i64;
    if !shared.use_session(cookie) {
        return Reply::json(
            StatusCode::FORBIDDEN,
            error_json(ARCHIVE_LOGGED_OUT, server_time),
        );
    }
    let q: Vec<(String, String)> = query
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let Some((sid, tg)) = get("group").and_then(parse_group) else {
        return Reply::json(
            StatusCode::BAD_REQUEST,
            error_json("Invalid group", server_time),
        );
    };
    let Some(s) = get("s").and_then(|s| s.parse::<i64>().ok()) else {
        return Reply::json(
            StatusCode::BAD_REQUEST,
            error_json("Invalid start time", server_time),
        );
    };
    if s.rem_euclid(1800) != 0 {
        return Reply::json(
            StatusCode::BAD_REQUEST,
            error_json(
                "Invalid start time: s must be on a 30-minute boundary",
                server_time,
            ),
        );
    }
    let calls = lock(&shared.feed).archive(sid, tg, s);
    let last_seq = calls.last().map_or(0, |c| c.seq + 1);
    let etag = format!("\"{sid}-{tg}-{s}-{}-{last_seq}\"", calls.len());
    let modified = calls
        .last()
        .map_or(s, |c| c.ts)
        .clamp(0, server_time.max(0));
    let last_modified = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(modified as u64));
    let not_modified = match headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        Some(inm) => inm
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag.as_str())),
        None => headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .is_some_and(|t| t.as_secs() as i64 >= modified),
    };
    let mut r = if not_modified {
        Reply::new(StatusCode::NOT_MODIFIED)
    } else {
        let mut body = Vec::with_capacity(
            64 + calls
                .iter()
                .map(|c| c.archive_json.len() + 1)
                .sum::<usize>(),
        );
        body.extend_from_slice(b"{\"calls\":[");
        for (i, c) in calls.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&c.archive_json);
        }
        let _ = write!(
            Tail(&mut body),
            "],\"serverTime\":{server_time},\"start\":{},\"end\":{}}}",
            s - 1,
            s + 1800
        );
        Reply::json(StatusCode::OK, body)
    };
    r = r
        .header(header::ETAG, &etag)
        .header(header::LAST_MODIFIED, &last_modified)
        .header(header::CACHE_CONTROL, "private, max-age=0");
    r
}

/// Parses a CDN path into the call id it names, or `None`.
fn cdn_call_id(path: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (hash, node, file) = match parts.as_slice() {
        [h, n, f] => (Some(*h), *n, *f),
        [n, f] => (None, *n, *f),
        _ => return None,
    };
    let (filename, enc) = file.rsplit_once('.')?;
    if node.is_empty() || !node.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id = match hash {
        Some(h) => format!("{node}-{filename}-{h}"),
        None => format!("{node}-{filename}"),
    };
    Some((id, enc.to_owned()))
}

fn audio(shared: &Shared, path: &str, head: bool) -> Reply {
    shared.now_pumped();
    let call = cdn_call_id(path).and_then(|(id, enc)| {
        if enc != "m4a" {
            return None;
        }
        lock(&shared.feed).get(&id).cloned()
    });
    let Some(call) = call else {
        return Reply::text(StatusCode::NOT_FOUND, "Not Found");
    };
    let mut r = Reply::new(StatusCode::OK);
    if let Some(ct) = &shared.cfg.audio_content_type
        && let Ok(v) = HeaderValue::from_str(ct)
    {
        r.headers.insert(header::CONTENT_TYPE, v);
    }
    r.chunks = call.audio_chunks();
    r.throttle = shared.cfg.audio_throttle;
    r.head = head;
    r
}

/// Which listener a connection came from.
#[derive(Clone, Copy)]
pub(crate) enum Role {
    Site,
    Cdn,
}

/// Accepts connections until `stop` flips, serving each with hyper-util's auto (h1 + h2) server.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    role: Role,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((stream, _)) = accepted else {
            // Out of file descriptors or similar: back off briefly rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = shared.conn_ids.fetch_add(1, Ordering::Relaxed) + 1;
        let shared = shared.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    if let Ok(s) = acceptor.accept(stream).await {
                        serve_conn(s, shared, conn, role, stop).await;
                    }
                }
                None => serve_conn(stream, shared, conn, role, stop).await,
            }
        });
    }
}

async fn serve_conn<I>(
    io: I,
    shared: Arc<Shared>,
    conn: u64,
    role: Role,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cdn = matches!(role, Role::Cdn);
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(shared, conn, cdn, req).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let conn_fut = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn_fut);
    tokio::select! {
        _ = conn_fut.as_mut() => {}
        _ = stop.changed() => {
            conn_fut.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn_fut).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdn_paths() {
        assert_eq!(
            cdn_call_id("/qwh9zivk/2893/1758428366-512.m4a"),
            Some(("2893-1758428366-512-qwh9zivk".into(), "m4a".into()))
        );
        assert_eq!(
            cdn_call_id("/2893/1758428366-512.m4a"),
            Some(("2893-1758428366-512".into(), "m4a".into()))
        );
        assert_eq!(cdn_call_id("/x/y/z/w.m4a"), None);
        assert_eq!(cdn_call_id("/abc/1758428366-512.m4a"), None);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(retry_after_value(RetryAfter::Seconds(2)), "2");
        let d = retry_after_value(RetryAfter::HttpDate(Duration::from_secs(5)));
        let t = httpdate::parse_http_date(&d).unwrap();
        let ahead = t.duration_since(SystemTime::now()).unwrap();
        assert!(
            ahead <= Duration::from_secs(6) && ahead >= Duration::from_secs(4),
            "{ahead:?}"
        );
    }
}
