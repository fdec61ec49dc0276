//! A scripted, recording [`Transport`] for tests of the crates built on this one
//! (feature `mock`).
//!
//! [`MockTransport`] applies the same [`HeaderTemplate`] and session cookie as the real
//! transport, records every request as it would have gone on the wire, and answers from
//! scripts: per `(method, path)` queues, then closures, else `404`. A scripted 429 (or 503 with
//! `Retry-After`) becomes a `RateLimited` error exactly as with [`HttpTransport`](crate::HttpTransport).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use bcfy_transport::mock::{MockResponse, MockTransport};
//! use bcfy_transport::{Request, SessionToken, Transport, http::Method, url::Url};
//!
//! let mock = MockTransport::new();
//! mock.on(Method::GET, "/calls/", MockResponse::ok("hello"));
//! mock.session().set(Some(SessionToken::new("tok")));
//!
//! let url = Url::parse("https://www.broadcastify.com/calls/").unwrap();
//! let resp = mock.send(Request::get(url)).await.unwrap();
//! assert_eq!(resp.bytes().await.unwrap(), "hello");
//!
//! let seen = &mock.requests()[0];
//! assert_eq!(seen.header("cookie"), Some("bcfyuser1=tok"));
//! assert!(seen.header("user-agent").unwrap().contains("Chrome/126"));
//! # }
//! ```

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use url::Url;

use bcfy_proto::TransportConfig;

use crate::error::{TransportError, TransportErrorKind};
use crate::gate::{DEFAULT_RETRY_AFTER, MAX_RETRY_AFTER, RetryAfterGate, rate_limit_pause};
use crate::request::{CookiePolicy, RedactedHeaders, Request, RequestClass, redacted_url};
use crate::response::{Body, Response};
use crate::session::SessionSlot;
use crate::template::HeaderTemplate;
use crate::transport::{SharedTransport, Transport};

type Handler = Arc<dyn Fn(&RecordedRequest) -> Option<MockResponse> + Send + Sync>;

/// A request as the mock saw it: after the header template and the session cookie.
#[derive(Clone)]
pub struct RecordedRequest {
    /// The method.
    pub method: Method,
    /// The full URL (with query).
    pub url: Url,
    /// Every header that would have gone on the wire (template, per-request, cookie).
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The request class.
    pub class: RequestClass,
    /// The cookie policy the caller chose.
    pub cookie_policy: CookiePolicy,
}

impl RecordedRequest {
    /// A header value as text (`None` when absent or not UTF-8).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The URL path.
    pub fn path(&self) -> &str {
        self.url.path()
    }

    /// The body as (lossy) text.
    pub fn body_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The form fields of an urlencoded body, in order (repeated keys kept).
    pub fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(&self.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
}

impl fmt::Debug for RecordedRequest {
    /// Redacts cookie values and the body (a login form holds a password).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedRequest")
            .field("method", &self.method)
            .field("url", &redacted_url(&self.url))
            .field("headers", &RedactedHeaders(&self.headers))
            .field("body_len", &self.body.len())
            .field("class", &self.class)
            .finish_non_exhaustive()
    }
}

/// A scripted answer of the mock: a response (status, headers, body in chunks, optionally a
/// body failure after them, optionally a delay before the headers), or a request error.
#[derive(Clone)]
pub struct MockResponse {
    status: StatusCode,
    headers: HeaderMap,
    chunks: Vec<Bytes>,
    body_error: Option<TransportErrorKind>,
    error: Option<TransportErrorKind>,
    delay: Option<Duration>,
}

impl MockResponse {
    /// An empty response with `status`.
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            chunks: Vec::new(),
            body_error: None,
            error: None,
            delay: None,
        }
    }

    /// A 200 with `body`.
    pub fn ok(body: impl Into<Bytes>) -> Self {
        Self::new(StatusCode::OK).body(body)
    }

    /// A 200 with a JSON `body` and `Content-Type: application/json`.
    pub fn json(body: impl Into<Bytes>) -> Self {
        Self::ok(body).header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
    }

    /// A request that fails with `kind` (no response), e.g. `Connect` or `Timeout`.
    pub fn error(kind: TransportErrorKind) -> Self {
        let mut r = Self::new(StatusCode::INTERNAL_SERVER_ERROR);
        r.error = Some(kind);
        r
    }

    /// Sets a header (panics on an invalid name or value: scripts are test code).
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        K: TryInto<HeaderName>,
        V: TryInto<HeaderValue>,
    {
        let (Ok(name), Ok(value)) = (name.try_into(), value.try_into()) else {
            panic!("MockResponse::header: invalid header name or value");
        };
        self.headers.insert(name, value);
        self
    }

    /// The body, as one chunk.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.chunks = vec![body.into()];
        self
    }

    /// The body, as these chunks (each a separate frame).
    pub fn chunks<I, B>(mut self, chunks: I) -> Self
    where
        I: IntoIterator<Item = B>,
        B: Into<Bytes>,
    {
        self.chunks = chunks.into_iter().map(Into::into).collect();
        self
    }

    /// After the chunks, the body fails with `kind` (e.g. `Body` for a reset mid-body).
    pub fn fail_body(mut self, kind: TransportErrorKind) -> Self {
        self.body_error = Some(kind);
        self
    }

    /// Waits `delay` (tokio time) before answering; longer than the request timeout fails
    /// with `Timeout`, as the real transport would.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

impl fmt::Debug for MockResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockResponse")
            .field("status", &self.status)
            .field("headers", &RedactedHeaders(&self.headers))
            .field(
                "body_len",
                &self.chunks.iter().map(Bytes::len).sum::<usize>(),
            )
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// The scripted, recording transport. Cheap to clone; clones share scripts, records, session
/// slot and gate.
///
/// Answers are chosen in this order: the queue of `(method, path)` (each request takes the next
/// response; the last one repeats), then the closures in registration order (first `Some`
/// wins), else `404 Not Found`. Paths are matched without host or query.
///
/// By default the mock does not make callers wait on its Retry-After gate (so tests in real
/// time do not stall); [`enforce_gate(true)`](Self::enforce_gate) makes it behave like the
/// real transport, for paused-time tests.
#[derive(Clone)]
pub struct MockTransport {
    inner: Arc<MockInner>,
}

struct MockInner {
    template: HeaderTemplate,
    session: SessionSlot,
    gate: RetryAfterGate,
    enforce_gate: AtomicBool,
    routes: Mutex<HashMap<(Method, String), VecDeque<MockResponse>>>,
    handlers: Mutex<Vec<Handler>>,
    requests: Mutex<Vec<RecordedRequest>>,
    request_timeout: Duration,
    max_body_bytes: u64,
}

impl Default for MockTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl MockTransport {
    /// A mock with the default [`TransportConfig`] (its header template, timeout, body cap).
    pub fn new() -> Self {
        Self::with_config(&TransportConfig::default())
    }

    /// A mock with `config`'s header template, request timeout and body cap. Panics when the
    /// config's header values are invalid (test code).
    pub fn with_config(config: &TransportConfig) -> Self {
        let template = match HeaderTemplate::new(config) {
            Ok(t) => t,
            Err(e) => panic!("MockTransport: {e}"),
        };
        Self {
            inner: Arc::new(MockInner {
                template,
                session: SessionSlot::new(),
                gate: RetryAfterGate::new(),
                enforce_gate: AtomicBool::new(false),
                routes: Mutex::new(HashMap::new()),
                handlers: Mutex::new(Vec::new()),
                requests: Mutex::new(Vec::new()),
                request_timeout: config.request_timeout,
                max_body_bytes: config.max_body_bytes,
            }),
        }
    }

    /// Appends `response` to the queue of `(method, path)`.
    pub fn on(&self, method: Method, path: &str, response: MockResponse) -> &Self {
        lock(&self.inner.routes)
            .entry((method, path.to_owned()))
            .or_default()
            .push_back(response);
        self
    }

    /// Adds a closure consulted for requests no queue answers.
    pub fn on_fn<F>(&self, handler: F) -> &Self
    where
        F: Fn(&RecordedRequest) -> Option<MockResponse> + Send + Sync + 'static,
    {
        lock(&self.inner.handlers).push(Arc::new(handler));
        self
    }

    /// Every request sent so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.inner.requests).clone()
    }

    /// The requests sent so far to `path`.
    pub fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        lock(&self.inner.requests)
            .iter()
            .filter(|r| r.url.path() == path)
            .cloned()
            .collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.inner.requests).clear();
    }

    /// The mock's Retry-After gate (closed by scripted 429 / 503 + `Retry-After`).
    pub fn gate(&self) -> &RetryAfterGate {
        &self.inner.gate
    }

    /// Whether requests wait on the gate before they go, as with the real transport.
    pub fn enforce_gate(&self, enforce: bool) -> &Self {
        self.inner.enforce_gate.store(enforce, Ordering::Relaxed);
        self
    }

    /// This mock as a [`SharedTransport`].
    pub fn shared(&self) -> SharedTransport {
        Arc::new(self.clone())
    }

    fn script_for(&self, req: &RecordedRequest) -> MockResponse {
        {
            let mut routes = lock(&self.inner.routes);
            if let Some(queue) = routes.get_mut(&(req.method.clone(), req.url.path().to_owned())) {
                let next = if queue.len() > 1 {
                    queue.pop_front()
                } else {
                    queue.front().cloned()
                };
                if let Some(resp) = next {
                    return resp;
                }
            }
        }
        let handlers = lock(&self.inner.handlers).clone();
        handlers
            .iter()
            .find_map(|h| h(req))
            .unwrap_or_else(|| MockResponse::new(StatusCode::NOT_FOUND).body("no mock route"))
    }
}

#[async_trait::async_trait]
impl Transport for MockTransport {
    async fn send(&self, req: Request) -> Result<Response, TransportError> {
        let class = req.request_class();
        let cookie_policy = req.cookie_policy();
        let timeout = req.timeout_override().unwrap_or(self.inner.request_timeout);
        let url = req.url().clone();
        let http_req = self.inner.template.apply(req, &self.inner.session)?;
        if self.inner.enforce_gate.load(Ordering::Relaxed) {
            self.inner.gate.wait().await;
        }
        let (parts, body) = http_req.into_parts();
        let recorded = RecordedRequest {
            method: parts.method,
            url,
            headers: parts.headers,
            body,
            class,
            cookie_policy,
        };
        lock(&self.inner.requests).push(recorded.clone());
        let script = self.script_for(&recorded);
        if let Some(delay) = script.delay {
            if delay > timeout {
                tokio::time::sleep(timeout).await;
                return Err(TransportError::new(
                    TransportErrorKind::Timeout,
                    format!("no response headers within {:.3} s", timeout.as_secs_f64()),
                ));
            }
            tokio::time::sleep(delay).await;
        }
        if let Some(kind) = script.error {
            return Err(TransportError::new(kind, "scripted failure"));
        }
        if let Some(pause) = rate_limit_pause(
            script.status,
            &script.headers,
            DEFAULT_RETRY_AFTER,
            MAX_RETRY_AFTER,
        ) {
            self.inner.gate.close_for(pause);
            return Err(TransportError::rate_limited(script.status, pause));
        }
        let mut frames: Vec<Result<Bytes, TransportError>> =
            script.chunks.into_iter().map(Ok).collect();
        if let Some(kind) = script.body_error {
            frames.push(Err(TransportError::new(kind, "scripted body failure")));
        }
        let body = Body::from_stream(futures::stream::iter(frames));
        Ok(Response::new(script.status, script.headers, body)
            .with_max_body_bytes(self.inner.max_body_bytes))
    }

    fn session(&self) -> &SessionSlot {
        &self.inner.session
    }
}

impl fmt::Debug for MockTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockTransport")
            .field("session", &self.inner.session)
            .field("requests", &lock(&self.inner.requests).len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
