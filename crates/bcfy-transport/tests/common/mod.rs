//! A local hyper server on 127.0.0.1 (plain or TLS with an rcgen certificate) that counts
//! accepted connections, records every request and tracks requests in flight.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bcfy_transport::http::{self, HeaderMap, Method, StatusCode, Version};
use bcfy_transport::rustls;
use bcfy_transport::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use bcfy_transport::{HttpTransport, HttpTransportBuilder, TransportConfig, url::Url};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type RespBody = BoxBody<Bytes, BoxError>;
pub type HandlerFuture = Pin<Box<dyn Future<Output = http::Response<RespBody>> + Send>>;
pub type Handler = Arc<dyn Fn(Seen) -> HandlerFuture + Send + Sync>;

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: std::time::Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    pub accepts: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub requests: Mutex<Vec<Seen>>,
}

impl Stats {
    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
    pub fn requests(&self) -> Vec<Seen> {
        self.requests.lock().unwrap().clone()
    }
}

/// How the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain HTTP/1.1 (and h2c prior knowledge).
    Plain,
    /// TLS offering h2 and http/1.1 by ALPN.
    TlsH2,
    /// TLS offering http/1.1 only.
    TlsH1,
}

pub struct Server {
    pub addr: SocketAddr,
    pub mode: Mode,
    pub cert: CertificateDer<'static>,
    pub stats: Arc<Stats>,
}

impl Server {
    pub fn url(&self, path: &str) -> Url {
        let scheme = if self.mode == Mode::Plain {
            "http"
        } else {
            "https"
        };
        Url::parse(&format!("{scheme}://{}{path}", self.addr)).unwrap()
    }

    /// A transport trusting this server's certificate (and nothing else).
    pub fn client(&self, config: TransportConfig) -> HttpTransport {
        self.builder(config).build().unwrap()
    }

    pub fn builder(&self, config: TransportConfig) -> HttpTransportBuilder {
        HttpTransport::builder()
            .config(config)
            .crypto_provider(provider())
            .webpki_roots(false)
            .root_certificates([self.cert.clone()])
    }
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[cfg(feature = "aws-lc-rs")]
    {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }
    #[cfg(not(feature = "aws-lc-rs"))]
    {
        Arc::new(rustls::crypto::ring::default_provider())
    }
}

pub fn full(body: impl Into<Bytes>) -> RespBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn ok(body: impl Into<Bytes>) -> http::Response<RespBody> {
    http::Response::new(full(body))
}

pub fn status(code: u16) -> http::Response<RespBody> {
    let mut r = ok(Bytes::new());
    *r.status_mut() = StatusCode::from_u16(code).unwrap();
    r
}

/// A body fed by the returned sender, one frame per message; ends when the sender drops.
pub fn channel_body(
    capacity: usize,
) -> (tokio::sync::mpsc::Sender<Result<Bytes, BoxError>>, RespBody) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity);
    let stream = tokio_stream_from(rx);
    (tx, http_body_util::StreamBody::new(stream).boxed())
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, BoxError>>,
) -> impl futures::Stream<Item = Result<hyper::body::Frame<Bytes>, BoxError>> + Send + Sync {
    futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(|r| r.map(hyper::body::Frame::data)))
    })
}

/// Starts a server; `handler` answers every request.
pub async fn start<F, Fut>(mode: Mode, handler: F) -> Server
where
    F: Fn(Seen) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = http::Response<RespBody>> + Send + 'static,
{
    let handler: Handler = Arc::new(move |seen| Box::pin(handler(seen)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(Stats::default());
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let acceptor = match mode {
        Mode::Plain => None,
        Mode::TlsH2 | Mode::TlsH1 => {
            let mut config = rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert.clone()], key)
                .unwrap();
            config.alpn_protocols = if mode == Mode::TlsH2 {
                vec![b"h2".to_vec(), b"http/1.1".to_vec()]
            } else {
                vec![b"http/1.1".to_vec()]
            };
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
        }
    };
    let st = Arc::clone(&stats);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            st.accepts.fetch_add(1, Ordering::SeqCst);
            let st = Arc::clone(&st);
            let handler = Arc::clone(&handler);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let st = Arc::clone(&st);
                    let handler = Arc::clone(&handler);
                    async move { Ok::<_, Infallible>(serve_one(req, &st, &handler).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                    }
                    Some(acceptor) => {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                    }
                }
            });
        }
    });
    Server {
        addr,
        mode,
        cert,
        stats,
    }
}

async fn serve_one(
    req: http::Request<Incoming>,
    stats: &Stats,
    handler: &Handler,
) -> http::Response<RespBody> {
    let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    let seen = Seen {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        version: parts.version,
        headers: parts.headers,
        body,
        at: std::time::Instant::now(),
    };
    stats.requests.lock().unwrap().push(seen.clone());
    let resp = handler(seen).await;
    stats.in_flight.fetch_sub(1, Ordering::SeqCst);
    resp
}

/// A config with short timeouts for socket tests (real durations, never paused time).
pub fn config() -> TransportConfig {
    TransportConfig {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        ..TransportConfig::default()
    }
}
