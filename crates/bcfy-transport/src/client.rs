//! [`HttpTransport`]: the real client (hyper-util pool, rustls, h2, the policy stack).

use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use pin_project_lite::pin_project;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::decompression::{DecompressionBody, DecompressionLayer};
use tracing::Instrument;

use bcfy_proto::TransportConfig;

use crate::budget::{GovernorBudget, RateBudget, UnlimitedBudget};
use crate::error::{
    BoxError, TransportError, TransportErrorKind, from_body_error, from_client_error,
    from_decoded_body_error,
};
use crate::gate::{DEFAULT_RETRY_AFTER, MAX_RETRY_AFTER, RetryAfterGate, rate_limit_pause};
use crate::request::{Request, RequestClass};
use crate::response::{Body, Response};
use crate::session::SessionSlot;
use crate::template::HeaderTemplate;
use crate::transport::{SharedTransport, Transport};

/// The HTTP/2 keep-alive ping interval used unless the builder says otherwise.
pub const DEFAULT_HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(30);

/// How long an HTTP/2 keep-alive ping may go unanswered before the connection is closed (and
/// its requests fail with `Timeout`), unless the builder says otherwise.
pub const DEFAULT_HTTP2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The body idle timeout used unless the builder says otherwise: the longest wait for the next
/// body bytes while the reader is waiting for them.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

type NetService = BoxCloneSyncService<
    http::Request<Full<Bytes>>,
    http::Response<DecompressionBody<NetBody>>,
    hyper_util::client::legacy::Error,
>;

/// The one HTTP client of bcfy. Cheap to clone: every clone shares one connection pool, one
/// session slot, one Retry-After gate, one rate budget and the two semaphores.
///
/// Every [`send`](Transport::send) passes, in this order (DESIGN's stack):
/// 1. the **header template** and session cookie ([`HeaderTemplate`]);
/// 2. the **Retry-After gate** (waits while a 429 / 503 pause is running);
/// 3. the **rate budget** ([`RequestClass::Api`] only);
/// 4. the **semaphore** of its class (`max_in_flight_api` / `max_in_flight_audio`); the permit
///    lives in the response body until it is read to the end, fails or is dropped, so a slow
///    download keeps its slot and API polls never wait behind downloads;
/// 5. the tower stack: tower-http **decompression** (gzip, deflate, br) over a body wrapper
///    with the **body idle timeout**, over hyper-util's **pooled client** with hyper-rustls
///    (ALPN h2 then http/1.1, TCP keep-alive, HTTP/2 pings, idle connections closed after
///    `pool_idle_timeout` by a tokio timer), under the **request timeout** (until headers).
///
/// A 429 (or a 503 with `Retry-After`) closes the gate for the given time (capped at
/// [`MAX_RETRY_AFTER`] by default) and the call fails with `RateLimited` and
/// `RetryHint::After`. Redirects are never followed: a 302 is a response like any other.
///
/// ```no_run
/// use bcfy_proto::TransportConfig;
/// use bcfy_transport::{HttpTransport, Request, Transport, url::Url};
///
/// # async fn demo() -> Result<(), bcfy_transport::TransportError> {
/// let transport = HttpTransport::builder().config(TransportConfig::default()).build()?;
/// let url = Url::parse("https://www.broadcastify.com/calls/").unwrap();
/// let body = transport.send(Request::get(url)).await?.bytes().await?;
/// # let _ = body; Ok(()) }
/// ```
#[derive(Clone)]
pub struct HttpTransport {
    inner: Arc<Inner>,
}

struct Inner {
    service: NetService,
    template: HeaderTemplate,
    session: SessionSlot,
    gate: RetryAfterGate,
    budget: Arc<dyn RateBudget>,
    api_permits: Arc<Semaphore>,
    audio_permits: Arc<Semaphore>,
    request_timeout: Duration,
    max_body_bytes: u64,
    default_retry_after: Duration,
    max_retry_after: Duration,
}

impl HttpTransport {
    /// A builder with the default [`TransportConfig`].
    pub fn builder() -> HttpTransportBuilder {
        HttpTransportBuilder::new()
    }

    /// The shared Retry-After gate (e.g. to report `closed_until()` in health checks).
    pub fn gate(&self) -> &RetryAfterGate {
        &self.inner.gate
    }

    /// The rate budget API requests draw from.
    pub fn rate_budget(&self) -> &Arc<dyn RateBudget> {
        &self.inner.budget
    }

    /// Free permits of the API semaphore.
    pub fn available_api_permits(&self) -> usize {
        self.inner.api_permits.available_permits()
    }

    /// Free permits of the audio semaphore.
    pub fn available_audio_permits(&self) -> usize {
        self.inner.audio_permits.available_permits()
    }

    /// This transport as a [`SharedTransport`].
    pub fn shared(&self) -> SharedTransport {
        Arc::new(self.clone())
    }

    async fn send_inner(&self, req: Request) -> Result<Response, TransportError> {
        let inner = &*self.inner;
        let class = req.request_class();
        let timeout = req.timeout_override().unwrap_or(inner.request_timeout);
        // 1. An invalid request fails before it waits for anything.
        if let Some(reason) = req.invalid_reason() {
            return Err(TransportError::new(
                TransportErrorKind::InvalidRequest,
                reason,
            ));
        }
        // 2. Retry-After gate.
        inner.gate.wait().await;
        // 3. rate budget.
        if class == RequestClass::Api {
            inner.budget.acquire().await;
        }
        // 4. semaphore of the class.
        let semaphore = match class {
            RequestClass::Api => &inner.api_permits,
            RequestClass::Audio => &inner.audio_permits,
        };
        let permit = Arc::clone(semaphore).acquire_owned().await.map_err(|_| {
            TransportError::new(TransportErrorKind::Connect, "the transport is shut down")
        })?;
        // The gate may have closed while this request queued for the budget or a permit.
        inner.gate.wait().await;
        // 5. template + cookie, the only place they are applied: last, so a request that
        // waited (gate, budget, permit) carries the session current when it leaves, not a
        // token that a logged-out answer ended meanwhile.
        let http_req = inner.template.apply(req, &inner.session)?;
        // 6. the network stack, until the response headers.
        let http_req = http_req.map(Full::new);
        let resp = tokio::time::timeout(timeout, inner.service.clone().oneshot(http_req))
            .await
            .map_err(|_| {
                TransportError::new(
                    TransportErrorKind::Timeout,
                    format!("no response headers within {:.3} s", timeout.as_secs_f64()),
                )
            })?
            .map_err(from_client_error)?;
        let span = tracing::Span::current();
        span.record("status", resp.status().as_u16());
        span.record("version", tracing::field::debug(resp.version()));
        if let Some(pause) = rate_limit_pause(
            resp.status(),
            resp.headers(),
            inner.default_retry_after,
            inner.max_retry_after,
        ) {
            inner.gate.close_for(pause);
            tracing::warn!(
                status = resp.status().as_u16(),
                pause_secs = pause.as_secs_f64(),
                "server asked to slow down; all requests paused"
            );
            return Err(TransportError::rate_limited(resp.status(), pause));
        }
        let (parts, body) = resp.into_parts();
        let body = Body::new(PermitBody {
            inner: body,
            permit: Some(permit),
            done: false,
        });
        Ok(Response::new(parts.status, parts.headers, body)
            .with_version(parts.version)
            .with_max_body_bytes(inner.max_body_bytes))
    }
}

#[async_trait::async_trait]
impl Transport for HttpTransport {
    async fn send(&self, req: Request) -> Result<Response, TransportError> {
        // Host and path only: the query and headers may carry secrets.
        let span = tracing::info_span!(
            "bcfy.transport.request",
            method = %req.method(),
            host = req.url().host_str().unwrap_or(""),
            path = req.url().path(),
            class = req.request_class().as_str(),
            status = tracing::field::Empty,
            version = tracing::field::Empty,
        );
        let result = self.send_inner(req).instrument(span.clone()).await;
        if let Err(e) = &result {
            span.in_scope(
                || tracing::debug!(kind = e.kind().as_str(), error = %e, "request failed"),
            );
        }
        result
    }

    fn session(&self) -> &SessionSlot {
        &self.inner.session
    }
}

impl fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTransport")
            .field("session", &self.inner.session)
            .field("gate_closed_until", &self.inner.gate.closed_until())
            .field("budget", &self.inner.budget)
            .field("api_permits", &self.inner.api_permits.available_permits())
            .field(
                "audio_permits",
                &self.inner.audio_permits.available_permits(),
            )
            .finish_non_exhaustive()
    }
}

/// Builds an [`HttpTransport`]; every setting has a default, validated by
/// [`build`](Self::build).
#[must_use]
pub struct HttpTransportBuilder {
    config: TransportConfig,
    provider: Option<Arc<CryptoProvider>>,
    budget: Option<Arc<dyn RateBudget>>,
    extra_roots: Vec<CertificateDer<'static>>,
    webpki_roots: bool,
    session: Option<SessionSlot>,
    body_idle_timeout: Duration,
    http2_keep_alive: Option<Duration>,
    http2_keep_alive_timeout: Duration,
    default_retry_after: Duration,
    max_retry_after: Duration,
}

impl Default for HttpTransportBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpTransportBuilder {
    /// A builder with the default [`TransportConfig`], the crate's default crypto provider,
    /// webpki roots and no extra roots.
    pub fn new() -> Self {
        Self {
            config: TransportConfig::default(),
            provider: None,
            budget: None,
            extra_roots: Vec::new(),
            webpki_roots: true,
            session: None,
            body_idle_timeout: DEFAULT_BODY_IDLE_TIMEOUT,
            http2_keep_alive: Some(DEFAULT_HTTP2_KEEP_ALIVE),
            http2_keep_alive_timeout: DEFAULT_HTTP2_KEEP_ALIVE_TIMEOUT,
            default_retry_after: DEFAULT_RETRY_AFTER,
            max_retry_after: MAX_RETRY_AFTER,
        }
    }

    /// The transport settings (timeouts, pool, semaphores, header values, body cap).
    pub fn config(mut self, config: TransportConfig) -> Self {
        self.config = config;
        self
    }

    /// The rustls crypto provider. Default: aws-lc-rs (feature `aws-lc-rs`), else ring
    /// (feature `ring`). The transport never installs a process-wide default provider.
    pub fn crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// The rate budget for API requests. Default: a [`GovernorBudget`] of the config's
    /// `rate_limit_per_minute`, or none when that is unset.
    pub fn rate_budget(mut self, budget: Arc<dyn RateBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Extra trusted root certificates (DER), in addition to the webpki roots unless
    /// [`webpki_roots(false)`](Self::webpki_roots).
    pub fn root_certificates(
        mut self,
        roots: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Self {
        self.extra_roots.extend(roots);
        self
    }

    /// Whether to trust the Mozilla roots of `webpki-roots` (default true).
    pub fn webpki_roots(mut self, enabled: bool) -> Self {
        self.webpki_roots = enabled;
        self
    }

    /// Shares an existing session slot instead of a fresh one.
    pub fn session_slot(mut self, slot: SessionSlot) -> Self {
        self.session = Some(slot);
        self
    }

    /// The longest wait for the next body bytes while the reader is waiting (default
    /// [`DEFAULT_BODY_IDLE_TIMEOUT`]); it fails the body with `Timeout`. Time the reader spends
    /// elsewhere does not count.
    pub fn body_idle_timeout(mut self, timeout: Duration) -> Self {
        self.body_idle_timeout = timeout;
        self
    }

    /// The HTTP/2 keep-alive ping interval (default [`DEFAULT_HTTP2_KEEP_ALIVE`]; `None`
    /// disables pings).
    pub fn http2_keep_alive(mut self, interval: Option<Duration>) -> Self {
        self.http2_keep_alive = interval;
        self
    }

    /// How long a keep-alive ping may go unanswered before the connection is closed (default
    /// [`DEFAULT_HTTP2_KEEP_ALIVE_TIMEOUT`]).
    pub fn http2_keep_alive_timeout(mut self, timeout: Duration) -> Self {
        self.http2_keep_alive_timeout = timeout;
        self
    }

    /// The pause after a 429 without a usable `Retry-After` (default [`DEFAULT_RETRY_AFTER`]).
    pub fn default_retry_after(mut self, pause: Duration) -> Self {
        self.default_retry_after = pause;
        self
    }

    /// The cap on any `Retry-After` pause (default [`MAX_RETRY_AFTER`], 10 minutes).
    pub fn max_retry_after(mut self, cap: Duration) -> Self {
        self.max_retry_after = cap;
        self
    }

    /// Builds the transport: validates the settings and sets up TLS and the pool. Needs no
    /// runtime; the transport must be used inside a tokio runtime.
    pub fn build(self) -> Result<HttpTransport, TransportError> {
        let cfg = &self.config;
        let config_error = |msg: &str| TransportError::new(TransportErrorKind::Config, msg);
        cfg.validate()
            .map_err(|e| config_error(&format!("invalid transport config: {e}")))?;
        if cfg.max_in_flight_api == 0 {
            return Err(config_error("max_in_flight_api must be at least 1"));
        }
        if cfg.max_in_flight_audio == 0 {
            return Err(config_error("max_in_flight_audio must be at least 1"));
        }
        if cfg.connect_timeout.is_zero() || cfg.request_timeout.is_zero() {
            return Err(config_error("timeouts must be greater than zero"));
        }
        if self.body_idle_timeout.is_zero() {
            return Err(config_error("body_idle_timeout must be greater than zero"));
        }
        let template = HeaderTemplate::new(cfg)?;
        let provider = match self.provider {
            Some(p) => p,
            None => default_provider().ok_or_else(|| {
                config_error("no crypto provider: enable `aws-lc-rs` or `ring`, or pass one")
            })?,
        };
        let mut roots = rustls::RootCertStore::empty();
        if self.webpki_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for cert in self.extra_roots {
            roots.add(cert).map_err(|e| {
                TransportError::new(
                    TransportErrorKind::Config,
                    format!("invalid root certificate: {e}"),
                )
            })?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| {
                TransportError::new(
                    TransportErrorKind::Config,
                    format!("crypto provider unusable: {e}"),
                )
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(cfg.connect_timeout));
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_mins(1)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);

        let mut client = Client::builder(TokioExecutor::new());
        // Without these timers hyper-util never expires idle connections nor sends h2 pings.
        client
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_host);
        if let Some(interval) = self.http2_keep_alive {
            client
                .http2_keep_alive_interval(interval)
                .http2_keep_alive_timeout(self.http2_keep_alive_timeout);
        }
        let client: Client<_, Full<Bytes>> = client.build(https);

        let idle = self.body_idle_timeout;
        let service = ServiceBuilder::new()
            .layer(DecompressionLayer::new())
            .map_response(move |resp: http::Response<Incoming>| {
                resp.map(|body| NetBody::new(body, idle))
            })
            .service(client);

        let budget: Arc<dyn RateBudget> = match (self.budget, cfg.rate_limit_per_minute) {
            (Some(b), _) => b,
            (None, Some(n)) => match NonZeroU32::new(n) {
                Some(n) => Arc::new(GovernorBudget::per_minute(n)),
                None => return Err(config_error("rate_limit_per_minute must be at least 1")),
            },
            (None, None) => Arc::new(UnlimitedBudget),
        };

        Ok(HttpTransport {
            inner: Arc::new(Inner {
                service: BoxCloneSyncService::new(service),
                template,
                session: self.session.unwrap_or_default(),
                gate: RetryAfterGate::new(),
                budget,
                api_permits: Arc::new(Semaphore::new(cfg.max_in_flight_api)),
                audio_permits: Arc::new(Semaphore::new(cfg.max_in_flight_audio)),
                request_timeout: cfg.request_timeout,
                max_body_bytes: cfg.max_body_bytes,
                default_retry_after: self.default_retry_after,
                max_retry_after: self.max_retry_after,
            }),
        })
    }
}

impl fmt::Debug for HttpTransportBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTransportBuilder")
            .field("extra_roots", &self.extra_roots.len())
            .field("webpki_roots", &self.webpki_roots)
            .field("body_idle_timeout", &self.body_idle_timeout)
            .finish_non_exhaustive()
    }
}

/// The crate's default crypto provider, by feature (`None` when neither is enabled).
#[allow(clippy::unnecessary_wraps)]
fn default_provider() -> Option<Arc<CryptoProvider>> {
    #[cfg(feature = "aws-lc-rs")]
    {
        Some(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
    }
    #[cfg(all(not(feature = "aws-lc-rs"), feature = "ring"))]
    {
        Some(Arc::new(rustls::crypto::ring::default_provider()))
    }
    #[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
    {
        None
    }
}

pin_project! {
    /// hyper's body with hyper errors mapped to [`TransportError`] and the body idle timeout:
    /// the timer runs only while the reader waits for bytes.
    pub(crate) struct NetBody {
        #[pin]
        inner: Incoming,
        idle: Duration,
        sleep: Option<Pin<Box<Sleep>>>,
        armed: bool,
        failed: bool,
    }
}

impl NetBody {
    fn new(inner: Incoming, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            sleep: None,
            armed: false,
            failed: false,
        }
    }
}

impl HttpBody for NetBody {
    type Data = Bytes;
    type Error = TransportError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, TransportError>>> {
        let this = self.project();
        if *this.failed {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            *this.armed = false;
            return Poll::Ready(frame.map(|r| {
                r.map_err(|e| {
                    *this.failed = true;
                    from_body_error(e)
                })
            }));
        }
        let deadline = Instant::now() + *this.idle;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !*this.armed {
            sleep.as_mut().reset(deadline);
            *this.armed = true;
        }
        ready!(sleep.as_mut().poll(cx));
        *this.failed = true;
        Poll::Ready(Some(Err(TransportError::new(
            TransportErrorKind::Timeout,
            format!(
                "no response body bytes for {:.3} s",
                this.idle.as_secs_f64()
            ),
        ))))
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// The decoded body, with its semaphore permit held until the end, an error or drop.
    struct PermitBody<B> {
        #[pin]
        inner: B,
        permit: Option<OwnedSemaphorePermit>,
        done: bool,
    }
}

impl<B> HttpBody for PermitBody<B>
where
    B: HttpBody<Data = Bytes, Error = BoxError>,
{
    type Data = Bytes;
    type Error = TransportError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, TransportError>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => Poll::Ready(Some(Ok(frame))),
            Some(Err(e)) => {
                *this.done = true;
                this.permit.take();
                Poll::Ready(Some(Err(from_decoded_body_error(e))))
            }
            None => {
                *this.done = true;
                this.permit.take();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
