//! The OpenAI-compatible provider (`POST {api_base}/audio/transcriptions`).
//!
//! Built on async-openai: its client composes the request (URL, `Authorization: Bearer`, the
//! multipart body from our own [`UploadForm`] through `AsyncTryFrom`), its `create_byot` call
//! deserializes into our own lenient type, and its `middleware` hook runs the request through
//! [`HttpService`], which replaces async-openai's default executor. That executor retries 429,
//! 5xx and connect errors on its own (three times, up to the server's `Retry-After`, however
//! long) and turns a 4xx without an OpenAI error object into a parse error without its status;
//! ours makes exactly one attempt, keeps every status, caps the body and never logs it. Retries
//! belong to the pipeline, which sees the whole picture (concurrency, order, jitter).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};
use std::{fmt, mem};

use async_openai::Client;
use async_openai::config::{OPENAI_API_BASE, OpenAIConfig};
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use async_openai::traits::AsyncTryFrom;
use bcfy_proto::TranscriptionConfig;
use bytes::{Bytes, BytesMut};
use http::StatusCode;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use crate::error::SNIPPET_MAX;
use crate::{
    TranscribeRequest, Transcriber, Transcript, TranscriptionError, TranscriptionErrorKind,
};

/// Default cap on a provider answer (a verbose transcript of a long call is a few hundred KiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Default time allowed for connecting to the provider.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `response_format` asked of the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ResponseFormat {
    /// `{"text": ...}` only.
    Json,
    /// Text plus language, duration and segments (with `avg_logprob`): the default, since it
    /// feeds [`Transcript::language`], [`Transcript::average_logprob`] and
    /// [`Transcript::segments`].
    #[default]
    VerboseJson,
    /// The bare transcript as `text/plain`.
    Text,
}

impl ResponseFormat {
    /// The form value (`json`, `verbose_json`, `text`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::VerboseJson => "verbose_json",
            Self::Text => "text",
        }
    }
}

/// A [`Transcriber`] for any OpenAI-compatible `/v1/audio/transcriptions` endpoint (OpenAI,
/// faster-whisper servers, LocalAI, whisper.cpp's server, `bcfy-sim`).
///
/// One instance holds one connection pool; it is cheap to share behind an `Arc`. Each
/// [`transcribe`](Transcriber::transcribe) is one multipart upload (`file`, `model`, optional
/// `language`, `response_format`) and one attempt. The answer is read leniently: `verbose_json`,
/// `json` and plain text are all accepted whatever was asked, missing optional fields
/// (`segments`, `usage`, `compression_ratio`, ...) are fine, and only a missing, `null` or blank
/// `text` is an error.
///
/// TLS is rustls with an explicitly chosen crypto provider (aws-lc-rs unless
/// [`crypto_provider`](OpenAiTranscriberBuilder::crypto_provider) says otherwise) and the
/// webpki roots, handed to reqwest preconfigured, so the process-default provider is never
/// consulted or installed and linking both `ring` and `aws-lc-rs` is harmless.
///
/// The API key is a [`SecretString`]: it is exposed only to build the `Authorization` header,
/// scrubbed from error messages, and absent from `Debug`.
///
/// ```no_run
/// use bcfy_proto::{CallId, NodeId, TranscriptionConfig};
/// use bcfy_transcribe::{OpenAiTranscriber, TranscribeRequest, Transcriber};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let mut config = TranscriptionConfig::default();
/// config.endpoint_url = Some("http://127.0.0.1:8000/v1".parse()?);
/// config.api_key = Some("sk-local".to_owned().into());
/// let whisper = OpenAiTranscriber::new(&config)?;
/// let call_id = CallId::new(NodeId::new(7), "1700000000-512", None);
/// let audio = bytes::Bytes::from(std::fs::read("call.m4a")?);
/// let transcript = whisper.transcribe(TranscribeRequest::m4a(call_id, audio)).await?;
/// println!("{} ({:?})", transcript.text, transcript.language);
/// # Ok(())
/// # }
/// ```
pub struct OpenAiTranscriber {
    client: Client<OpenAIConfig>,
    /// The API base with any userinfo removed, for logs.
    display_base: String,
    model: String,
    language: Option<String>,
    response_format: ResponseFormat,
    prompt: Option<String>,
    api_key: Option<SecretString>,
}

impl fmt::Debug for OpenAiTranscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiTranscriber")
            .field("api_base", &self.display_base)
            .field("model", &self.model)
            .field("language", &self.language)
            .field("response_format", &self.response_format)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

impl OpenAiTranscriber {
    /// A provider configured from the spec's `TranscriptionConfig` with every other setting at its
    /// default. Same as `OpenAiTranscriber::builder(config).build()`.
    pub fn new(config: &TranscriptionConfig) -> Result<Self, TranscriptionError> {
        Self::builder(config).build()
    }

    /// A builder starting from `config` (endpoint, key, model, language).
    pub fn builder(config: &TranscriptionConfig) -> OpenAiTranscriberBuilder {
        OpenAiTranscriberBuilder {
            endpoint: config.endpoint_url.as_ref().map(ToString::to_string),
            api_key: config.api_key.clone(),
            model: config.model.clone(),
            language: config.language.clone(),
            response_format: ResponseFormat::default(),
            prompt: None,
            crypto_provider: None,
            extra_roots: Vec::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: config.request_timeout,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// The API base requests go to (`.../v1`), without any userinfo.
    pub fn api_base(&self) -> &str {
        &self.display_base
    }

    /// The model name sent with every upload.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The response format asked for.
    pub fn response_format(&self) -> ResponseFormat {
        self.response_format
    }

    fn scrub(&self, error: TranscriptionError) -> TranscriptionError {
        error.scrub(self.api_key.as_ref().map(ExposeSecret::expose_secret))
    }
}

#[async_trait::async_trait]
impl Transcriber for OpenAiTranscriber {
    async fn transcribe(
        &self,
        request: TranscribeRequest,
    ) -> Result<Transcript, TranscriptionError> {
        let bytes = request.audio.len();
        let form = UploadForm {
            file: request.audio,
            file_name: request.file_name,
            content_type: request.content_type,
            model: self.model.clone(),
            language: self.language.clone(),
            response_format: self.response_format,
            prompt: self.prompt.clone(),
        };
        tracing::debug!(
            call_id = %request.call_id,
            bytes,
            model = %self.model,
            api_base = %self.display_base,
            response_format = self.response_format.as_str(),
            "uploading call audio for transcription"
        );
        let started = Instant::now();
        let answer = self
            .client
            .audio()
            .transcription()
            .create_byot::<UploadForm, LenientBody>(form)
            .await;
        let result = match answer {
            Ok(LenientBody(value)) => transcript_from_value(value),
            Err(error) => Err(map_openai_error(error)),
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(transcript) => {
                tracing::debug!(
                    call_id = %request.call_id,
                    elapsed_ms,
                    chars = transcript.text.len(),
                    language = transcript.language.as_deref().unwrap_or(""),
                    "transcription answer received"
                );
                Ok(transcript)
            }
            Err(error) => {
                let error = self.scrub(error);
                tracing::debug!(
                    call_id = %request.call_id,
                    elapsed_ms,
                    kind = %error.kind(),
                    error = %error,
                    "transcription attempt failed"
                );
                Err(error)
            }
        }
    }

    fn name(&self) -> &'static str {
        "openai-compatible"
    }
}

/// Builder for [`OpenAiTranscriber`]; see [`OpenAiTranscriber::builder`].
#[must_use]
pub struct OpenAiTranscriberBuilder {
    endpoint: Option<String>,
    api_key: Option<SecretString>,
    model: String,
    language: Option<String>,
    response_format: ResponseFormat,
    prompt: Option<String>,
    crypto_provider: Option<Arc<CryptoProvider>>,
    extra_roots: Vec<CertificateDer<'static>>,
    connect_timeout: Duration,
    request_timeout: Duration,
    max_response_bytes: usize,
}

impl fmt::Debug for OpenAiTranscriberBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiTranscriberBuilder")
            .field("endpoint", &self.endpoint.as_deref().map(strip_userinfo))
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("model", &self.model)
            .field("language", &self.language)
            .field("response_format", &self.response_format)
            .field("extra_roots", &self.extra_roots.len())
            .finish_non_exhaustive()
    }
}

impl OpenAiTranscriberBuilder {
    /// The endpoint: an API base such as `https://api.openai.com/v1` or
    /// `http://127.0.0.1:8000/v1`. A bare origin (`http://host:8000`) gets `/v1` appended, and a
    /// full `.../audio/transcriptions` URL is cut back to its base.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The API key sent as `Authorization: Bearer`. Required for OpenAI itself; servers without
    /// authentication accept none.
    pub fn api_key(mut self, key: Option<SecretString>) -> Self {
        self.api_key = key;
        self
    }

    /// The model name (`whisper-1`, `Systran/faster-whisper-small`, ...).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// The language hint (ISO-639-1, e.g. `en`); `None` lets the provider detect it.
    pub fn language(mut self, language: Option<String>) -> Self {
        self.language = language;
        self
    }

    /// The `response_format` to ask for (default [`ResponseFormat::VerboseJson`]).
    pub fn response_format(mut self, format: ResponseFormat) -> Self {
        self.response_format = format;
        self
    }

    /// An optional `prompt` (vocabulary hint: unit names, street names, ten-codes).
    pub fn prompt(mut self, prompt: Option<String>) -> Self {
        self.prompt = prompt;
        self
    }

    /// The rustls crypto provider for HTTPS (default: aws-lc-rs). Pass the same one as the
    /// transport to keep one provider in the process.
    pub fn crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.crypto_provider = Some(provider);
        self
    }

    /// Trusts `certificate` in addition to the webpki roots (a private CA, a test server).
    pub fn add_root_certificate(mut self, certificate: CertificateDer<'static>) -> Self {
        self.extra_roots.push(certificate);
        self
    }

    /// Time allowed to connect (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for one request from send to the end of the answer (default: the config's
    /// `request_timeout`).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Cap on the size of an answer (default 4 MiB); larger answers are
    /// [`TranscriptionErrorKind::InvalidResponse`].
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        self.max_response_bytes = max;
        self
    }

    /// Validates the settings and builds the HTTP client.
    ///
    /// Errors ([`TranscriptionErrorKind::Config`]): an endpoint that is not an `http`/`https`
    /// URL, an empty model, no API key while pointing at OpenAI itself, a root certificate
    /// rustls rejects, a TLS setup the crypto provider cannot satisfy.
    pub fn build(self) -> Result<OpenAiTranscriber, TranscriptionError> {
        let config_error =
            |message: String| TranscriptionError::new(TranscriptionErrorKind::Config, message);
        let api_base = match &self.endpoint {
            Some(endpoint) => normalize_api_base(endpoint).map_err(config_error)?,
            None => OPENAI_API_BASE.to_owned(),
        };
        if self.model.trim().is_empty() {
            return Err(config_error(
                "transcription.model must not be empty".to_owned(),
            ));
        }
        let is_openai = Url::parse(&api_base)
            .ok()
            .and_then(|url| {
                url.host_str()
                    .map(|host| host.eq_ignore_ascii_case("api.openai.com"))
            })
            .unwrap_or(false);
        let api_key = self
            .api_key
            .filter(|key| !key.expose_secret().trim().is_empty());
        if is_openai && api_key.is_none() {
            return Err(config_error(
                "transcription.api_key is required for api.openai.com".to_owned(),
            ));
        }

        let tls =
            client_tls_config(self.crypto_provider, self.extra_roots).map_err(config_error)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            // An API does not redirect; following one could only carry the upload elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| {
                config_error(format!(
                    "cannot build the HTTP client: {}",
                    error.without_url()
                ))
            })?;

        // Every field is set explicitly: `OpenAIConfig::default()` reads OPENAI_* environment
        // variables, and a library must not pick up a base URL or org header from there.
        let config = OpenAIConfig::new()
            .with_api_base(api_base.clone())
            .with_api_key(api_key.as_ref().map_or("", |key| key.expose_secret()))
            .with_org_id("")
            .with_project_id("");
        let client = Client::build(http.clone(), config).with_http_service(HttpService {
            client: http,
            max_response_bytes: self.max_response_bytes,
        });
        Ok(OpenAiTranscriber {
            client,
            display_base: strip_userinfo(&api_base),
            model: self.model,
            language: self.language.filter(|language| !language.trim().is_empty()),
            response_format: self.response_format,
            prompt: self.prompt,
            api_key,
        })
    }
}

/// `endpoint` as an API base without a trailing slash: a bare origin gets `/v1`, a full
/// `/audio/transcriptions` URL loses that suffix.
fn normalize_api_base(endpoint: &str) -> Result<String, String> {
    let mut url = Url::parse(endpoint.trim())
        .map_err(|error| format!("transcription.endpoint_url is not a URL ({error})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("transcription.endpoint_url must be an http or https URL".to_owned());
    }
    url.set_query(None);
    url.set_fragment(None);
    let mut path = url.path().trim_end_matches('/').to_owned();
    if let Some(base) = path.strip_suffix("/audio/transcriptions") {
        path = base.to_owned();
    }
    if path.is_empty() {
        "/v1".clone_into(&mut path);
    }
    url.set_path(&path);
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// `url` with any `user:password@` removed (for logs and `Debug`).
fn strip_userinfo(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            // Both setters only fail for URLs that cannot have credentials at all.
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.as_str().trim_end_matches('/').to_owned()
        }
        Err(_) => "[unparseable url]".to_owned(),
    }
}

/// The rustls client configuration handed to reqwest: the given provider (never the process
/// default), webpki roots plus `extra_roots`, HTTP/1.1 over ALPN (async-openai's reqwest is built
/// without HTTP/2).
fn client_tls_config(
    provider: Option<Arc<CryptoProvider>>,
    extra_roots: Vec<CertificateDer<'static>>,
) -> Result<rustls::ClientConfig, String> {
    let provider =
        provider.unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for certificate in extra_roots {
        roots
            .add(certificate)
            .map_err(|error| format!("root certificate rejected: {error}"))?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS setup failed: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// Our request type for async-openai's `byot` call: the upload with its MIME type (the
/// library's own request type sends the file part without one) and only the fields Whisper
/// servers share. Cloning is cheap: the audio is `Bytes`.
#[derive(Clone)]
struct UploadForm {
    file: Bytes,
    file_name: String,
    content_type: String,
    model: String,
    language: Option<String>,
    response_format: ResponseFormat,
    prompt: Option<String>,
}

impl AsyncTryFrom<UploadForm> for reqwest::multipart::Form {
    type Error = OpenAIError;

    async fn try_from(upload: UploadForm) -> Result<Self, OpenAIError> {
        let length = upload.file.len() as u64;
        let file = reqwest::multipart::Part::stream_with_length(upload.file, length)
            .file_name(upload.file_name)
            .mime_str(&upload.content_type)
            .map_err(|_| OpenAIError::InvalidArgument("invalid upload content type".to_owned()))?;
        let mut form = reqwest::multipart::Form::new()
            .part("file", file)
            .text("model", upload.model)
            .text("response_format", upload.response_format.as_str());
        if let Some(language) = upload.language {
            form = form.text("language", language);
        }
        if let Some(prompt) = upload.prompt {
            form = form.text("prompt", prompt);
        }
        Ok(form)
    }
}

/// Our lenient response type for `create_byot`: any JSON at all. [`transcript_from_value`]
/// decides what is usable, so servers that omit `segments`, `usage`, `compression_ratio` or
/// anything else still work. Plain-text answers arrive as a JSON string (see [`HttpService`]).
#[derive(serde::Deserialize)]
#[serde(transparent)]
struct LenientBody(Value);

/// Reads a provider answer: a JSON string (plain-text format) or an object with `text` and,
/// for `verbose_json`, `language`, `duration` and `segments[].{text, avg_logprob}`.
fn transcript_from_value(value: Value) -> Result<Transcript, TranscriptionError> {
    let invalid =
        |message: String| TranscriptionError::new(TranscriptionErrorKind::InvalidResponse, message);
    let mut object = match value {
        Value::String(text) => return finish_text(text, Transcript::default()),
        Value::Object(object) => object,
        Value::Null => {
            return Err(TranscriptionError::new(
                TranscriptionErrorKind::MissingText,
                "provider answered null",
            ));
        }
        other => {
            return Err(invalid(format!(
                "provider answered a JSON {} instead of a transcript",
                json_type(&other)
            )));
        }
    };
    let text = match object.remove("text") {
        Some(Value::String(text)) => text,
        Some(Value::Null) | None => {
            let body = Value::Object(object).to_string();
            return Err(if body.contains("\"error\"") {
                invalid(format!(
                    "provider answered an error object with a success status: {}",
                    bcfy_proto::snippet(body.as_bytes(), SNIPPET_MAX)
                ))
            } else {
                TranscriptionError::new(
                    TranscriptionErrorKind::MissingText,
                    format!(
                        "provider answer has no `text`: {}",
                        bcfy_proto::snippet(body.as_bytes(), SNIPPET_MAX)
                    ),
                )
            });
        }
        Some(other) => {
            return Err(invalid(format!(
                "provider answer's `text` is a JSON {}, not a string",
                json_type(&other)
            )));
        }
    };
    let mut transcript = Transcript {
        language: match object.get("language") {
            Some(Value::String(language)) if !language.trim().is_empty() => {
                Some(language.trim().to_owned())
            }
            _ => None,
        },
        duration: object.get("duration").and_then(lenient_f64),
        ..Transcript::default()
    };
    if let Some(Value::Array(segments)) = object.get("segments") {
        let mut sum = 0.0;
        let mut count = 0_u32;
        for segment in segments {
            if let Some(text) = segment.get("text").and_then(Value::as_str) {
                let text = text.trim();
                if !text.is_empty() {
                    transcript.segments.push(text.to_owned());
                }
            }
            if let Some(logprob) = segment.get("avg_logprob").and_then(lenient_f64) {
                sum += logprob;
                count += 1;
            }
        }
        if count > 0 {
            transcript.average_logprob = Some(sum / f64::from(count));
        }
    }
    finish_text(text, transcript)
}

fn finish_text(text: String, mut transcript: Transcript) -> Result<Transcript, TranscriptionError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(TranscriptionError::new(
            TranscriptionErrorKind::EmptyText,
            "provider answered an empty transcript",
        ));
    }
    transcript.text = if trimmed.len() == text.len() {
        text
    } else {
        trimmed.to_owned()
    };
    Ok(transcript)
}

/// A finite number from a JSON number or a numeric string.
fn lenient_f64(value: &Value) -> Option<f64> {
    let number = match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    };
    number.filter(|n| n.is_finite())
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Failures [`HttpService`] reports through `OpenAIError::Boxed`, so they reach
/// [`map_openai_error`] intact instead of through async-openai's error parsing.
#[derive(Debug, thiserror::Error)]
enum ServiceFailure {
    #[error("status {status}")]
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
        body: Bytes,
    },
    #[error("answer larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("answer declared as JSON is not JSON")]
    NotJson { body: Bytes },
}

/// The executor behind async-openai's client: one attempt, a capped body, every non-success
/// status as a typed failure, and plain-text answers wrapped as a JSON string so the `byot`
/// call can deserialize them.
#[derive(Clone)]
struct HttpService {
    client: reqwest::Client,
    max_response_bytes: usize,
}

type ServiceFuture = Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send>>;

impl tower::Service<HttpRequestFactory> for HttpService {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = ServiceFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), OpenAIError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, factory: HttpRequestFactory) -> ServiceFuture {
        let client = self.client.clone();
        let limit = self.max_response_bytes;
        Box::pin(async move {
            let request = factory.build().await?;
            let mut response = client
                .execute(request)
                .await
                .map_err(OpenAIError::Reqwest)?;
            let status = response.status();
            let headers = mem::take(response.headers_mut());
            if !status.is_success() {
                let retry_after = headers
                    .get(http::header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(parse_retry_after);
                // The status and its Retry-After are the answer: a body cut short (a reset) or
                // over the cap does not undo them, so the pause is still honoured.
                let body = read_capped(&mut response, limit).await.unwrap_or_default();
                return Err(boxed(ServiceFailure::Status {
                    status,
                    retry_after,
                    body,
                }));
            }
            let body = read_capped(&mut response, limit).await?;
            let body = as_json_body(&headers, body)?;
            let mut rebuilt = http::Response::new(body);
            *rebuilt.status_mut() = status;
            *rebuilt.headers_mut() = headers;
            Ok(reqwest::Response::from(rebuilt))
        })
    }
}

fn boxed(failure: ServiceFailure) -> OpenAIError {
    OpenAIError::Boxed(Box::new(failure))
}

/// Reads the whole body, failing once it passes `limit` bytes.
async fn read_capped(response: &mut reqwest::Response, limit: usize) -> Result<Bytes, OpenAIError> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(boxed(ServiceFailure::TooLarge { limit }));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(OpenAIError::Reqwest)? {
        if body.len() + chunk.len() > limit {
            return Err(boxed(ServiceFailure::TooLarge { limit }));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A success body as JSON for the `byot` call: JSON passes through; a body that is not JSON and
/// was not declared JSON (the `text` format, or a server ignoring `response_format`) becomes a
/// JSON string; a body declared JSON that does not parse is a failure.
fn as_json_body(headers: &http::HeaderMap, body: Bytes) -> Result<Bytes, OpenAIError> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_ascii_lowercase);
    let declared_json = content_type
        .as_deref()
        .is_some_and(|ct| ct.contains("json"));
    let declared_other = content_type.is_some() && !declared_json;
    if !declared_other && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok() {
        return Ok(body);
    }
    if declared_json {
        return Err(boxed(ServiceFailure::NotJson { body }));
    }
    let text = String::from_utf8_lossy(&body);
    serde_json::to_vec(&Value::String(text.into_owned()))
        .map(Bytes::from)
        .map_err(|error| {
            OpenAIError::InvalidArgument(format!("cannot re-encode text answer: {error}"))
        })
}

/// `Retry-After` as delta-seconds or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

fn map_openai_error(error: OpenAIError) -> TranscriptionError {
    match error {
        OpenAIError::Boxed(inner) => match inner.downcast::<ServiceFailure>() {
            Ok(failure) => match *failure {
                ServiceFailure::Status {
                    status,
                    retry_after,
                    body,
                } => TranscriptionError::http(status, &body).with_retry_after(retry_after),
                ServiceFailure::TooLarge { limit } => TranscriptionError::new(
                    TranscriptionErrorKind::InvalidResponse,
                    format!("provider answer larger than {limit} bytes"),
                ),
                ServiceFailure::NotJson { body } => TranscriptionError::new(
                    TranscriptionErrorKind::InvalidResponse,
                    format!(
                        "provider answer declared as JSON is not JSON: {}",
                        bcfy_proto::snippet(&body, SNIPPET_MAX)
                    ),
                ),
            },
            Err(other) => TranscriptionError::new(
                TranscriptionErrorKind::Network,
                format!("request failed: {other}"),
            ),
        },
        OpenAIError::Reqwest(error) => {
            let error = error.without_url();
            // reqwest's `is_decode` also covers a body cut short by a reset: a transient
            // network failure worth a retry. Answers that arrive whole but cannot be read come
            // through `JSONDeserialize` / `NotJson` and stay `InvalidResponse`.
            let kind = if error.is_builder() {
                TranscriptionErrorKind::Config
            } else {
                TranscriptionErrorKind::Network
            };
            let what = if error.is_timeout() {
                "request timed out"
            } else if error.is_connect() {
                "cannot connect to the provider"
            } else {
                "request failed"
            };
            TranscriptionError::new(kind, format!("{what}: {}", error_chain(&error)))
                .with_source(error)
        }
        OpenAIError::JSONDeserialize(error, content) => TranscriptionError::new(
            TranscriptionErrorKind::InvalidResponse,
            format!(
                "unreadable provider answer ({error}): {}",
                bcfy_proto::snippet(content.as_bytes(), SNIPPET_MAX)
            ),
        ),
        OpenAIError::InvalidArgument(message) => {
            TranscriptionError::new(TranscriptionErrorKind::Config, message)
        }
        other => TranscriptionError::new(
            TranscriptionErrorKind::InvalidResponse,
            format!("provider call failed: {other}"),
        ),
    }
}

/// `error` and its sources joined by `": "` (reqwest hides the useful part in the chain).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_base_normalization() {
        let cases = [
            ("http://127.0.0.1:8000", "http://127.0.0.1:8000/v1"),
            ("http://127.0.0.1:8000/", "http://127.0.0.1:8000/v1"),
            ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000/v1"),
            ("https://h/v1/audio/transcriptions", "https://h/v1"),
            ("https://h/openai/v1?x=1", "https://h/openai/v1"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                normalize_api_base(input).as_deref(),
                Ok(expected),
                "{input}"
            );
        }
        assert!(normalize_api_base("ftp://h/v1").is_err());
        assert!(normalize_api_base("not a url").is_err());
        assert_eq!(strip_userinfo("http://u:p@h:1/v1"), "http://h:1/v1");
    }

    #[test]
    fn verbose_json_keeps_language_logprob_segments() {
        let value = serde_json::json!({
            "task": "transcribe", "language": "english", "duration": "12.5",
            "text": " Engine 5 responding. ",
            "segments": [
                {"id": 0, "text": " Engine 5", "avg_logprob": -0.25},
                {"id": 1, "text": " responding.", "avg_logprob": -0.75},
                {"id": 2, "text": "  "}
            ]
        });
        let transcript = transcript_from_value(value).unwrap();
        assert_eq!(transcript.text, "Engine 5 responding.");
        assert_eq!(transcript.language.as_deref(), Some("english"));
        assert_eq!(transcript.duration, Some(12.5));
        assert_eq!(transcript.average_logprob, Some(-0.5));
        assert_eq!(transcript.segments, ["Engine 5", "responding."]);
    }

    #[test]
    fn answers_without_usable_text_are_errors() {
        let kind = |value: Value| transcript_from_value(value).unwrap_err().kind();
        assert_eq!(
            kind(serde_json::json!({"language": "en"})),
            TranscriptionErrorKind::MissingText
        );
        assert_eq!(
            kind(serde_json::json!({"text": null})),
            TranscriptionErrorKind::MissingText
        );
        assert_eq!(
            kind(serde_json::json!({"text": " \n"})),
            TranscriptionErrorKind::EmptyText
        );
        assert_eq!(
            kind(serde_json::json!("")),
            TranscriptionErrorKind::EmptyText
        );
        assert_eq!(
            kind(serde_json::json!({"text": 5})),
            TranscriptionErrorKind::InvalidResponse
        );
        assert_eq!(
            kind(serde_json::json!([1])),
            TranscriptionErrorKind::InvalidResponse
        );
        assert_eq!(
            kind(serde_json::json!({"error": {"message": "boom"}})),
            TranscriptionErrorKind::InvalidResponse
        );
    }

    #[test]
    fn text_bodies_become_json_strings() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8".parse().unwrap(),
        );
        let body = as_json_body(&headers, Bytes::from_static(b"42")).unwrap();
        assert_eq!(body, Bytes::from_static(b"\"42\""));
        let body =
            as_json_body(&http::HeaderMap::new(), Bytes::from_static(b"hello there")).unwrap();
        assert_eq!(body, Bytes::from_static(b"\"hello there\""));
        let body = as_json_body(
            &http::HeaderMap::new(),
            Bytes::from_static(b"{\"text\":\"a\"}"),
        )
        .unwrap();
        assert_eq!(body, Bytes::from_static(b"{\"text\":\"a\"}"));
        headers.insert(
            http::header::CONTENT_TYPE,
            "application/json".parse().unwrap(),
        );
        assert!(as_json_body(&headers, Bytes::from_static(b"oops")).is_err());
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
