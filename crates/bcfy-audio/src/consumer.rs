//! The download loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bcfy_proto::{
    AudioConfig, AudioFailedEvent, AudioPayloadEvent, Call, CallId, LiveCallEnvelope, RetryHint,
    sniff_content_type,
};
use bcfy_transport::{Request, RequestClass, SharedTransport, TransportError, TransportErrorKind};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::StatusCode;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tracing::Instrument;
use url::Url;

use crate::error::{AudioError, AudioErrorKind};

/// Jitter applied to the retry backoff (a uniform factor in `[1 - r, 1 + r]`).
const BACKOFF_JITTER: f64 = 0.1;

/// The default deadline of one download attempt (request sent to last byte read).
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_mins(2);

/// Content types that say nothing about the audio: sniff the bytes instead.
const GENERIC_TYPES: [&str; 3] = [
    "application/octet-stream",
    "binary/octet-stream",
    "application/binary",
];

/// What became of one call's audio: the payload, or the failure after the retry budget.
///
/// Every envelope given to [`AudioConsumer::run`] yields exactly one outcome, in input order.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum AudioOutcome {
    /// The audio was downloaded.
    Ok(AudioPayloadEvent),
    /// The audio could not be had (`AudioDownloadError`); later calls are not held up by it.
    Failed(AudioFailedEvent),
}

impl AudioOutcome {
    /// The call this outcome is about.
    pub fn call_id(&self) -> &CallId {
        match self {
            Self::Ok(e) => &e.call_id,
            Self::Failed(e) => &e.call_id,
        }
    }

    /// The call's metadata.
    pub fn call(&self) -> &Arc<Call> {
        match self {
            Self::Ok(e) => &e.call,
            Self::Failed(e) => &e.call,
        }
    }

    /// Whether the audio was downloaded.
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok(_))
    }
}

/// A snapshot of an [`AudioConsumer`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AudioStats {
    /// Calls whose audio was downloaded.
    pub downloaded: u64,
    /// Calls reported as failed.
    pub failed: u64,
    /// Attempts retried after a retryable failure.
    pub retries: u64,
    /// Audio bytes delivered.
    pub bytes: u64,
    /// HTTP requests sent.
    pub requests: u64,
}

#[derive(Debug, Default)]
struct Counters {
    downloaded: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    bytes: AtomicU64,
    requests: AtomicU64,
}

impl Counters {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// Downloads each call's audio once from the calls CDN and emits the outcomes in call order.
///
/// Up to `max_concurrency` downloads run at once; their outcomes pass through an ordered buffer,
/// so a slow call holds back the publication of the calls after it (never their download), and
/// `calls.audio.raw` keeps the order of `calls.live`. Bodies are read in `chunk_size` chunks
/// into a buffer capped at `max_bytes`. When the output channel is full the consumer stops
/// pulling its downloads and its input: memory stays within about
/// `(max_concurrency + queue_size) × max_bytes`, whatever the number or size of calls.
///
/// Each request goes through the shared transport as [`RequestClass::Audio`] (the audio
/// semaphore, the browser header template and the session cookie) with
/// `Referer: {site}/calls/`. A truncated body (fewer bytes than `Content-Length`), an empty
/// body, a reset, a timeout, a 5xx, 408 or 429 is retried with exponential backoff (from
/// `initial_backoff` doubling to `max_backoff`, jittered, or the server's Retry-After) up to
/// `max_attempts` attempts; a 404/410, another 4xx, an oversized body or a call whose fields
/// cannot make a safe URL fails at once. A failure is emitted in order as
/// [`AudioOutcome::Failed`]: never skipped silently, never blocking later calls.
///
/// The content type is the server's, unless it is missing or generic
/// (`application/octet-stream`); then the bytes are sniffed (`ftyp` → `audio/mp4`, ...) and
/// `content_type_sniffed` is set.
///
/// ```no_run
/// # async fn demo(transport: bcfy_transport::SharedTransport) -> Result<(), Box<dyn std::error::Error>> {
/// use bcfy_audio::{AudioConsumer, AudioOutcome};
/// use bcfy_proto::AudioConfig;
///
/// let cdn = url::Url::parse("https://calls.broadcastify.com")?;
/// let site = url::Url::parse("https://www.broadcastify.com")?;
/// let consumer = AudioConsumer::new(transport, cdn, AudioConfig::default())?.with_site(&site);
/// let (envelopes_tx, envelopes_rx) = tokio::sync::mpsc::channel(64);
/// let (out_tx, mut out_rx) = tokio::sync::mpsc::channel(64);
/// tokio::spawn(async move { consumer.run(envelopes_rx, out_tx).await });
/// # drop(envelopes_tx);
/// while let Some(outcome) = out_rx.recv().await {
///     match outcome {
///         AudioOutcome::Ok(audio) => println!("{}: {} bytes", audio.call_id, audio.payload.len()),
///         AudioOutcome::Failed(failed) => eprintln!("{}: {}", failed.call_id, failed.error),
///     }
/// }
/// # Ok(()) }
/// ```
pub struct AudioConsumer {
    transport: SharedTransport,
    cdn: Url,
    /// Built once, shared by every request.
    referer: http::HeaderValue,
    config: AudioConfig,
    attempt_timeout: Duration,
    counters: Arc<Counters>,
    rng: std::sync::Mutex<SmallRng>,
}

impl std::fmt::Debug for AudioConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioConsumer")
            .field("cdn", &self.cdn.as_str())
            .field("referer", &self.referer)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AudioConsumer {
    /// A consumer downloading from the calls CDN at `cdn` (e.g.
    /// `https://calls.broadcastify.com`) through `transport`.
    ///
    /// The `Referer` defaults to `https://www.broadcastify.com/calls/`; set the site with
    /// [`with_site`](Self::with_site). Fails when `config` does not validate.
    pub fn new(
        transport: SharedTransport,
        cdn: Url,
        config: AudioConfig,
    ) -> Result<Self, bcfy_proto::ConfigError> {
        config.validate()?;
        Ok(Self {
            transport,
            cdn,
            referer: http::HeaderValue::from_static("https://www.broadcastify.com/calls/"),
            config,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            counters: Arc::new(Counters::default()),
            rng: std::sync::Mutex::new(SmallRng::from_rng(&mut rand::rng())),
        })
    }

    /// Sends `Referer: {site}/calls/` (the page that plays calls on that site).
    #[must_use]
    pub fn with_site(mut self, site: &Url) -> Self {
        // A URL's text is printable ASCII (everything else is percent-encoded), so this is
        // always a valid header value.
        if let Ok(value) =
            http::HeaderValue::from_str(&format!("{}calls/", bcfy_proto::base_dir(site)))
        {
            self.referer = value;
        }
        self
    }

    /// The deadline of one attempt (request sent to last byte read); an attempt past it is
    /// abandoned and retried. Default [`DEFAULT_ATTEMPT_TIMEOUT`].
    #[must_use]
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Seeds the backoff jitter, for reproducible timings.
    #[must_use]
    pub fn with_rng_seed(self, seed: u64) -> Self {
        if let Ok(mut rng) = self.rng.lock() {
            *rng = SmallRng::seed_from_u64(seed);
        }
        self
    }

    /// Running totals since the consumer was created.
    pub fn stats(&self) -> AudioStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AudioStats {
            downloaded: get(&self.counters.downloaded),
            failed: get(&self.counters.failed),
            retries: get(&self.counters.retries),
            bytes: get(&self.counters.bytes),
            requests: get(&self.counters.requests),
        }
    }

    /// Downloads the audio of every envelope from `input` and sends one outcome per envelope to
    /// `output`, in input order.
    ///
    /// Returns `Ok(())` once `input` is closed and drained and every outcome was sent, or an
    /// [`AudioErrorKind::OutputClosed`] error when `output`'s receiver goes away.
    pub async fn run(
        &self,
        input: mpsc::Receiver<LiveCallEnvelope>,
        output: mpsc::Sender<AudioOutcome>,
    ) -> Result<(), AudioError> {
        let envelopes = futures::stream::unfold(input, |mut rx| async move {
            rx.recv().await.map(|envelope| (envelope, rx))
        });
        // `buffered` keeps input order and only runs while this loop pulls from it, so a full
        // output channel pauses both the downloads and the intake.
        let outcomes = envelopes
            .map(|envelope| self.download(Arc::clone(&envelope.call)))
            .buffered(self.config.max_concurrency.max(1));
        tokio::pin!(outcomes);
        while let Some(outcome) = outcomes.next().await {
            output.send(outcome).await.map_err(|_| {
                AudioError::new(
                    AudioErrorKind::OutputClosed,
                    "the output channel's receiver was dropped",
                    RetryHint::Never,
                )
            })?;
        }
        Ok(())
    }

    /// Downloads one call's audio, retrying within the budget; never fails, it reports.
    pub async fn download(&self, call: Arc<Call>) -> AudioOutcome {
        let call_id = call.call_id();
        let span = tracing::info_span!("audio_download", call_id = %call_id);
        async {
            let url = match call.audio_url(&self.cdn) {
                Ok(url) => url,
                Err(e) => {
                    let err = AudioError::new(
                        AudioErrorKind::InvalidUrl,
                        format!("no safe audio URL: {e}"),
                        RetryHint::Never,
                    );
                    return self.failed(call_id, call, 0, &err);
                }
            };
            let max_attempts = self.config.max_attempts.max(1);
            let mut attempt: u32 = 0;
            loop {
                attempt += 1;
                let result =
                    match tokio::time::timeout(self.attempt_timeout, self.attempt(&url)).await {
                        Ok(r) => r,
                        Err(_) => Err(AudioError::new(
                            AudioErrorKind::Timeout,
                            format!("attempt exceeded {:?}", self.attempt_timeout),
                            RetryHint::Backoff,
                        )),
                    };
                match result {
                    Ok((payload, server_type)) => {
                        return self.succeeded(call_id, call, payload, server_type.as_deref());
                    }
                    Err(err) => {
                        let hint = err.retry_hint();
                        if !hint.is_retryable() || attempt >= max_attempts {
                            return self.failed(call_id, call, attempt, &err);
                        }
                        let wait = match hint {
                            RetryHint::After(d) => d,
                            _ => self.backoff(attempt),
                        };
                        Counters::add(&self.counters.retries, 1);
                        tracing::warn!(
                            name: "audio_consumer.retry",
                            attempt,
                            wait_secs = wait.as_secs_f64(),
                            error = %err,
                            "audio download failed; retrying"
                        );
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(31);
        let base = self
            .config
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.config.max_backoff);
        let factor = match self.rng.lock() {
            Ok(mut rng) => 1.0 + rng.random_range(-BACKOFF_JITTER..=BACKOFF_JITTER),
            Err(_) => 1.0,
        };
        Duration::from_secs_f64(base.as_secs_f64() * factor).min(self.config.max_backoff)
    }

    /// One request: the body, and the server's `Content-Type` if any.
    async fn attempt(&self, url: &Url) -> Result<(Bytes, Option<String>), AudioError> {
        let request = Request::get(url.clone())
            .class(RequestClass::Audio)
            .header(http::header::REFERER, self.referer.clone());
        Counters::add(&self.counters.requests, 1);
        let response = self
            .transport
            .send(request)
            .await
            .map_err(transport_error)?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Err(AudioError::new(
                AudioErrorKind::NotFound,
                format!("CDN answered HTTP {status}"),
                RetryHint::Never,
            )
            .with_status(status));
        }
        if !status.is_success() {
            let hint = if status.is_server_error()
                || status == StatusCode::REQUEST_TIMEOUT
                || status == StatusCode::TOO_MANY_REQUESTS
            {
                RetryHint::Backoff
            } else {
                RetryHint::Never
            };
            return Err(AudioError::new(
                AudioErrorKind::Status,
                format!("CDN answered HTTP {status}"),
                hint,
            )
            .with_status(status));
        }
        let max_bytes = usize::try_from(self.config.max_bytes).unwrap_or(usize::MAX);
        let expected = response.content_length();
        if let Some(len) = expected
            && len > self.config.max_bytes
        {
            return Err(too_large(max_bytes, Some(len)));
        }
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty());
        let initial = expected.map_or(self.config.chunk_size, |len| {
            usize::try_from(len).unwrap_or(usize::MAX)
        });
        let mut buf = BytesMut::with_capacity(initial.min(max_bytes));
        let mut chunks = response.into_chunks(self.config.chunk_size.max(1));
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(transport_error)?;
            if buf.len() + chunk.len() > max_bytes {
                return Err(too_large(max_bytes, expected));
            }
            buf.extend_from_slice(&chunk);
        }
        if let Some(len) = expected
            && (buf.len() as u64) < len
        {
            return Err(AudioError::new(
                AudioErrorKind::Truncated,
                format!("body ended after {} of {len} bytes", buf.len()),
                RetryHint::Backoff,
            ));
        }
        if buf.is_empty() {
            return Err(AudioError::new(
                AudioErrorKind::Empty,
                "the CDN answered an empty body",
                RetryHint::Backoff,
            ));
        }
        Ok((buf.freeze(), content_type))
    }

    fn succeeded(
        &self,
        call_id: CallId,
        call: Arc<Call>,
        payload: Bytes,
        server_type: Option<&str>,
    ) -> AudioOutcome {
        let (content_type, content_type_sniffed) = content_type_for(server_type, &payload);
        Counters::add(&self.counters.downloaded, 1);
        Counters::add(&self.counters.bytes, payload.len() as u64);
        tracing::info!(
            name: "audio_consumer.downloaded",
            bytes = payload.len() as u64,
            content_type = %content_type,
            content_type_sniffed,
            "audio_consumer.downloaded"
        );
        let end_offset = call.duration_secs.unwrap_or(0.0);
        AudioOutcome::Ok(AudioPayloadEvent {
            call_id,
            call,
            sequence: 0,
            start_offset: 0.0,
            end_offset,
            payload,
            content_type,
            content_type_sniffed,
        })
    }

    fn failed(
        &self,
        call_id: CallId,
        call: Arc<Call>,
        attempts: u32,
        err: &AudioError,
    ) -> AudioOutcome {
        Counters::add(&self.counters.failed, 1);
        tracing::warn!(
            name: "audio_consumer.failed",
            attempts,
            kind = %err.kind(),
            error = %err,
            "audio_consumer.failed"
        );
        AudioOutcome::Failed(AudioFailedEvent {
            call_id,
            call,
            attempts,
            error: err.to_string(),
        })
    }
}

/// The content type to report, and whether it was sniffed rather than the server's.
fn content_type_for(server_type: Option<&str>, payload: &[u8]) -> (String, bool) {
    let generic = server_type.is_none_or(|t| {
        let essence = t.split(';').next().unwrap_or("").trim();
        GENERIC_TYPES
            .iter()
            .any(|g| essence.eq_ignore_ascii_case(g))
    });
    match (server_type, generic) {
        (Some(t), false) => (t.to_owned(), false),
        _ => match sniff_content_type(payload) {
            Some(t) => (t.to_owned(), true),
            None => match server_type {
                Some(t) => (t.to_owned(), false),
                None => ("application/octet-stream".to_owned(), true),
            },
        },
    }
}

fn too_large(max: usize, len: Option<u64>) -> AudioError {
    let what = len.map_or_else(|| "more".to_owned(), |l| l.to_string());
    AudioError::new(
        AudioErrorKind::TooLarge,
        format!("body of {what} bytes exceeds max_bytes = {max}"),
        RetryHint::Never,
    )
}

fn transport_error(e: TransportError) -> AudioError {
    // A reset, a cut body or a timeout is worth another attempt whatever the transport's
    // generic hint says; a refused request or an oversized body is not.
    let (kind, hint) = match e.kind() {
        TransportErrorKind::Connect
        | TransportErrorKind::Timeout
        | TransportErrorKind::Body
        | TransportErrorKind::Decode => (AudioErrorKind::Transport, RetryHint::Backoff),
        TransportErrorKind::TooLarge => (AudioErrorKind::TooLarge, RetryHint::Never),
        _ => (AudioErrorKind::Transport, e.retry_hint()),
    };
    let status = e.status();
    let mut err = AudioError::new(kind, e.to_string(), hint).with_source(e);
    if let Some(s) = status {
        err = err.with_status(s);
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_prefers_the_server_unless_generic() {
        let m4a = b"\0\0\0\x18ftypM4A \0\0\0\0";
        assert_eq!(
            content_type_for(Some("audio/aac"), m4a),
            ("audio/aac".into(), false)
        );
        assert_eq!(content_type_for(None, m4a), ("audio/mp4".into(), true));
        assert_eq!(
            content_type_for(Some("application/octet-stream"), m4a),
            ("audio/mp4".into(), true)
        );
        assert_eq!(
            content_type_for(Some("application/octet-stream"), b"??"),
            ("application/octet-stream".into(), false)
        );
        assert_eq!(
            content_type_for(None, b"??"),
            ("application/octet-stream".into(), true)
        );
    }
}
