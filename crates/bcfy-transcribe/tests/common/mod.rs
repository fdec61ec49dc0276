//! A local OpenAI-compatible `/v1/audio/transcriptions` stub (hyper on 127.0.0.1) and helpers.
#![allow(dead_code, unreachable_pub, clippy::needless_pass_by_value)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bcfy_proto::{AudioPayloadEvent, Call, CallId, TranscriptionConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub const KEY: &str = "sk-test-0123456789abcdef-SECRET";

/// One upload as the stub parsed it.
#[derive(Debug, Clone)]
pub struct Upload {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub file_name: Option<String>,
    pub file_content_type: Option<String>,
    pub file: Bytes,
    pub fields: HashMap<String, String>,
}

/// What the stub answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<&'static str>,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
    pub delay: Duration,
}

impl Reply {
    pub fn json(value: serde_json::Value) -> Self {
        Self {
            status: 200,
            content_type: Some("application/json"),
            body: value.to_string(),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn text(text: &str) -> Self {
        Self {
            status: 200,
            content_type: Some("text/plain; charset=utf-8"),
            body: text.to_owned(),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn status(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: Some("application/json"),
            body: body.to_owned(),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// Answers like OpenAI would for the format asked, transcribing the audio as its own UTF-8 text.
pub fn echo(upload: &Upload, _index: usize) -> Reply {
    let text = String::from_utf8_lossy(&upload.file).into_owned();
    match upload.fields.get("response_format").map(String::as_str) {
        Some("text") => Reply::text(&format!("{text}\n")),
        Some("verbose_json") => Reply::json(serde_json::json!({
            "task": "transcribe", "language": "english", "duration": 3.5, "text": text,
            "segments": [{"id": 0, "text": format!(" {text}"), "avg_logprob": -0.2}]
        })),
        _ => Reply::json(serde_json::json!({ "text": text })),
    }
}

type Handler = Arc<dyn Fn(&Upload, usize) -> Reply + Send + Sync>;

pub struct StubState {
    key: String,
    handler: Handler,
    pub uploads: Mutex<Vec<Upload>>,
    pub requests: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    /// When set, every request takes a permit before answering (the test adds permits).
    pub gate: Option<Arc<Semaphore>>,
    /// Notified when a request arrives.
    pub arrived: tokio::sync::Notify,
}

pub struct Stub {
    pub addr: SocketAddr,
    pub state: Arc<StubState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stub {
    pub async fn start(handler: impl Fn(&Upload, usize) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_with(handler, None).await
    }

    pub async fn start_with(
        handler: impl Fn(&Upload, usize) -> Reply + Send + Sync + 'static,
        gate: Option<Arc<Semaphore>>,
    ) -> Self {
        Self::start_full(handler, gate, None).await
    }

    /// The stub behind TLS (`https://`).
    pub async fn start_tls(
        handler: impl Fn(&Upload, usize) -> Reply + Send + Sync + 'static,
        acceptor: tokio_rustls::TlsAcceptor,
    ) -> Self {
        Self::start_full(handler, None, Some(acceptor)).await
    }

    async fn start_full(
        handler: impl Fn(&Upload, usize) -> Reply + Send + Sync + 'static,
        gate: Option<Arc<Semaphore>>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(StubState {
            key: KEY.to_owned(),
            handler: Arc::new(handler),
            uploads: Mutex::new(Vec::new()),
            requests: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            gate,
            arrived: tokio::sync::Notify::new(),
        });
        let task = tokio::spawn(serve(listener, Arc::clone(&state), tls));
        Self { addr, state, task }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn uploads(&self) -> Vec<Upload> {
        self.state.uploads.lock().unwrap().clone()
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// A config pointing at this stub with the test key.
    pub fn config(&self) -> TranscriptionConfig {
        TranscriptionConfig {
            enabled: true,
            endpoint_url: Some(self.base_url().parse().unwrap()),
            api_key: Some(SecretString::from(KEY.to_owned())),
            ..TranscriptionConfig::default()
        }
    }
}

async fn serve(
    listener: TcpListener,
    state: Arc<StubState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = Arc::clone(&state);
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(Arc::clone(&state), request));
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
            }
        });
    }
}

struct InFlightGuard(Arc<StubState>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(
    state: Arc<StubState>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _guard = InFlightGuard(Arc::clone(&state));
    let index = state.requests.fetch_add(1, Ordering::SeqCst);
    state.arrived.notify_waiters();

    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let authorization = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let content_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = request
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();

    let mut upload = Upload {
        method,
        path,
        authorization,
        file_name: None,
        file_content_type: None,
        file: Bytes::new(),
        fields: HashMap::new(),
    };
    if let Ok(boundary) = multer::parse_boundary(&content_type) {
        let stream = futures::stream::once(async move { Ok::<Bytes, Infallible>(body) });
        let mut multipart = multer::Multipart::new(stream, boundary);
        while let Ok(Some(field)) = multipart.next_field().await {
            let name = field.name().unwrap_or("").to_owned();
            if name == "file" {
                upload.file_name = field.file_name().map(str::to_owned);
                upload.file_content_type = field.content_type().map(ToString::to_string);
                upload.file = field.bytes().await.unwrap_or_default();
            } else {
                let value = field.text().await.unwrap_or_default();
                upload.fields.insert(name, value);
            }
        }
    }
    state.uploads.lock().unwrap().push(upload.clone());

    let reply = if upload.method != "POST" || upload.path != "/v1/audio/transcriptions" {
        Reply::status(404, r#"{"error":{"message":"not found"}}"#)
    } else if upload.authorization.as_deref() != Some(&format!("Bearer {}", state.key)) {
        Reply::status(
            401,
            r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}"#,
        )
    } else if upload.file.is_empty() || !upload.fields.contains_key("model") {
        Reply::status(
            400,
            r#"{"error":{"message":"file and model are required"}}"#,
        )
    } else {
        (state.handler)(&upload, index)
    };
    if let Some(gate) = &state.gate {
        gate.acquire().await.unwrap().forget();
    }
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    if let Some(ct) = reply.content_type {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, ct.parse().unwrap());
    }
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    Ok(response)
}

/// A call with a known duration, built through the proto's tolerant parser.
pub fn call(n: u32, duration: Option<f64>) -> Arc<Call> {
    let mut value = serde_json::json!({
        "id": "4290-512", "ts": 1_700_000_000 + i64::from(n), "systemId": 2893,
        "sid": 4290, "call_tg": 512, "filename": format!("1700000000-{n}"),
    });
    if let Some(duration) = duration {
        value["call_duration"] = serde_json::json!(duration);
    }
    Arc::new(Call::from_value(&value).unwrap())
}

/// A whole-call payload whose audio is `text` (the stub's echo transcribes it back).
pub fn payload(
    call: &Arc<Call>,
    sequence: u32,
    start: f64,
    end: f64,
    audio: &str,
) -> AudioPayloadEvent {
    AudioPayloadEvent {
        call_id: call.call_id(),
        call: Arc::clone(call),
        sequence,
        start_offset: start,
        end_offset: end,
        payload: Bytes::from(audio.to_owned()),
        content_type: "audio/mp4".to_owned(),
        content_type_sniffed: false,
    }
}

/// Payload for call `n` with duration 2 s covering it whole, audio `"call {n}"`.
pub fn whole(n: u32) -> AudioPayloadEvent {
    let call = call(n, Some(2.0));
    payload(&call, 0, 0.0, 2.0, &format!("call {n}"))
}

pub fn call_id_of(n: u32) -> CallId {
    call(n, None).call_id()
}
