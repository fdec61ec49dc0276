//! Configuration structs, with the spec's defaults and validation.
//!
//! Every struct is `serde` with `#[serde(default, deny_unknown_fields)]`: a file may set any
//! subset of keys, and a misspelt key is an error that names it. Durations are written as
//! seconds (`f64`) in files. `validate()` rejects values that cannot work (zero intervals,
//! a jitter ratio outside `[0, 1)`, zero queue sizes, `max_backoff < initial_backoff`, ...)
//! with a [`ConfigError`] naming the key.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration `{key}`: {message}")]
pub struct ConfigError {
    /// The key (field name as in files).
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error for `key`.
    pub fn new(key: &'static str, message: impl Into<String>) -> Self {
        Self {
            key,
            message: message.into(),
        }
    }
}

fn positive(key: &'static str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        Err(ConfigError::new(key, "must be greater than zero seconds"))
    } else {
        Ok(())
    }
}

fn nonzero(key: &'static str, n: u64) -> Result<(), ConfigError> {
    if n == 0 {
        Err(ConfigError::new(key, "must be at least 1"))
    } else {
        Ok(())
    }
}

fn nonzero_opt(key: &'static str, n: Option<u32>) -> Result<(), ConfigError> {
    n.map_or(Ok(()), |n| nonzero(key, u64::from(n)))
}

fn backoff_order(key: &'static str, initial: Duration, max: Duration) -> Result<(), ConfigError> {
    if max < initial {
        Err(ConfigError::new(
            key,
            format!(
                "must be at least initial_backoff ({} s), got {} s",
                initial.as_secs_f64(),
                max.as_secs_f64()
            ),
        ))
    } else {
        Ok(())
    }
}

fn http_url(key: &'static str, u: &Url) -> Result<(), ConfigError> {
    if !matches!(u.scheme(), "http" | "https") || u.cannot_be_a_base() || u.host().is_none() {
        return Err(ConfigError::new(key, "must be an http(s) URL with a host"));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(ConfigError::new(key, "must not carry a query or fragment"));
    }
    Ok(())
}

fn header_value(key: &'static str, v: &str) -> Result<(), ConfigError> {
    if v.trim().is_empty() {
        return Err(ConfigError::new(key, "must not be empty"));
    }
    if !v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        return Err(ConfigError::new(
            key,
            "must be printable ASCII (it is sent as a header)",
        ));
    }
    Ok(())
}

/// `serde` for `Duration` as seconds (`f64`).
pub mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes seconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    /// Reads seconds; rejects negative, NaN and infinite values.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let f = f64::deserialize(d)?;
        Duration::try_from_secs_f64(f).map_err(|_| {
            serde::de::Error::custom(format!(
                "expected a non-negative, finite number of seconds, got {f}"
            ))
        })
    }
}

mod url_str {
    use serde::{Deserialize, Deserializer, Serializer};
    use url::Url;

    pub(super) fn serialize<S: Serializer>(u: &Url, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(u.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
        let s = String::deserialize(d)?;
        Url::parse(&s).map_err(|e| serde::de::Error::custom(format!("invalid URL: {e}")))
    }
}

mod opt_url_str {
    use serde::{Deserialize, Deserializer, Serializer};
    use url::Url;

    #[allow(clippy::ref_option)] // serde's `with` passes `&Option<T>`.
    pub(super) fn serialize<S: Serializer>(u: &Option<Url>, s: S) -> Result<S::Ok, S::Error> {
        match u {
            Some(u) => s.serialize_some(u.as_str()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| {
                Url::parse(&s).map_err(|e| serde::de::Error::custom(format!("invalid URL: {e}")))
            })
            .transpose()
    }
}

/// The live producer (spec §3.3, plus `history`, `max_init_backlog` and `dedup_capacity`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveProducerConfig {
    /// Seconds between polls when healthy (2.0).
    #[serde(with = "secs")]
    pub poll_interval: Duration,
    /// Fraction of `poll_interval` applied as ± jitter, in `[0, 1)` (0.1).
    pub jitter_ratio: f64,
    /// Calls waiting in the queue before the producer stops polling (256).
    pub queue_maxsize: usize,
    /// First retry delay after a failure (1.0 s).
    #[serde(with = "secs")]
    pub initial_backoff: Duration,
    /// Ceiling of the exponential backoff (30.0 s).
    #[serde(with = "secs")]
    pub max_backoff: Duration,
    /// Consecutive failures before `run` gives up; `None` retries forever.
    pub max_retry_attempts: Option<u32>,
    /// Poll budget per minute; `None` = only the cadence limits polls.
    pub rate_limit_per_minute: Option<u32>,
    /// Seconds between queue-depth metrics (60.0).
    #[serde(with = "secs")]
    pub metrics_interval: Duration,
    /// Resume cursor, epoch seconds; `None` starts at now − `history`.
    pub initial_position: Option<f64>,
    /// How far back a fresh session starts, like the page's now − 300 s (300 s).
    #[serde(with = "secs")]
    pub history: Duration,
    /// Most calls dispatched from the first poll of a session; older ones are skipped (1000).
    pub max_init_backlog: usize,
    /// Call ids remembered for deduplication across overlapping polls (4096); the ids of the
    /// cursor's own second are kept beyond it, so a busier second is never delivered twice.
    pub dedup_capacity: usize,
}

impl Default for LiveProducerConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(2),
            jitter_ratio: 0.1,
            queue_maxsize: 256,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_retry_attempts: None,
            rate_limit_per_minute: None,
            metrics_interval: Duration::from_mins(1),
            initial_position: None,
            history: Duration::from_mins(5),
            max_init_backlog: 1000,
            dedup_capacity: 4096,
        }
    }
}

impl LiveProducerConfig {
    /// Rejects values that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("poll_interval", self.poll_interval)?;
        if !(self.jitter_ratio.is_finite() && (0.0..1.0).contains(&self.jitter_ratio)) {
            return Err(ConfigError::new(
                "jitter_ratio",
                format!("must be in [0, 1), got {}", self.jitter_ratio),
            ));
        }
        nonzero("queue_maxsize", self.queue_maxsize as u64)?;
        positive("initial_backoff", self.initial_backoff)?;
        positive("max_backoff", self.max_backoff)?;
        backoff_order("max_backoff", self.initial_backoff, self.max_backoff)?;
        nonzero_opt("max_retry_attempts", self.max_retry_attempts)?;
        nonzero_opt("rate_limit_per_minute", self.rate_limit_per_minute)?;
        positive("metrics_interval", self.metrics_interval)?;
        if let Some(p) = self.initial_position
            && !(p.is_finite() && p >= 0.0)
        {
            return Err(ConfigError::new(
                "initial_position",
                format!("must be a finite, non-negative epoch time, got {p}"),
            ));
        }
        nonzero("dedup_capacity", self.dedup_capacity as u64)?;
        Ok(())
    }
}

/// Which transcription backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WhisperProvider {
    /// Any OpenAI-compatible `/v1/audio/transcriptions` (OpenAI, faster-whisper servers, ...).
    #[default]
    #[serde(rename = "openai_compatible", alias = "openai")]
    OpenAiCompatible,
}

/// Transcription (spec §3.5, plus `queue_size` and `request_timeout`).
///
/// `Debug` never shows the API key:
/// ```
/// let mut c = bcfy_proto::TranscriptionConfig::default();
/// c.api_key = Some("sk-secret-value".into());
/// assert!(!format!("{c:?}").contains("sk-secret-value"));
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscriptionConfig {
    /// Whether calls are transcribed (false).
    pub enabled: bool,
    /// The backend (OpenAI-compatible).
    pub provider: WhisperProvider,
    /// Model name ("whisper-1").
    pub model: String,
    /// API base (ending in `/v1`); `None` = OpenAI's.
    #[serde(with = "opt_url_str")]
    pub endpoint_url: Option<Url>,
    /// API key; never serialized, never shown by `Debug`.
    #[serde(skip_serializing)]
    pub api_key: Option<SecretString>,
    /// Language hint (Some("en")); `None` lets the model detect it.
    pub language: Option<String>,
    /// Transcriptions in flight (2).
    pub max_concurrency: usize,
    /// Audio payloads waiting for a transcription slot (64).
    pub queue_size: usize,
    /// Timeout of one transcription request (120 s).
    #[serde(with = "secs")]
    pub request_timeout: Duration,
}

impl Default for TranscriptionConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            provider: WhisperProvider::OpenAiCompatible,
            model: "whisper-1".to_owned(),
            endpoint_url: None,
            api_key: None,
            language: Some("en".to_owned()),
            max_concurrency: 2,
            queue_size: 64,
            request_timeout: Duration::from_mins(2),
        }
    }
}

impl TranscriptionConfig {
    /// Rejects values that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.model.trim().is_empty() {
            return Err(ConfigError::new("model", "must not be empty"));
        }
        if let Some(u) = &self.endpoint_url {
            http_url("endpoint_url", u)?;
        }
        if let Some(l) = &self.language
            && (l.trim().is_empty()
                || l.len() > 16
                || !l.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-'))
        {
            return Err(ConfigError::new(
                "language",
                "must be a language code such as \"en\" (or absent to auto-detect)",
            ));
        }
        nonzero("max_concurrency", self.max_concurrency as u64)?;
        nonzero("queue_size", self.queue_size as u64)?;
        positive("request_timeout", self.request_timeout)?;
        Ok(())
    }
}

/// Audio downloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudioConfig {
    /// Downloads in flight (4).
    pub max_concurrency: usize,
    /// Read buffer size in bytes (8192).
    pub chunk_size: usize,
    /// Attempts per call before giving up (4).
    pub max_attempts: u32,
    /// First retry delay (0.5 s).
    #[serde(with = "secs")]
    pub initial_backoff: Duration,
    /// Ceiling of the retry delay (10 s).
    #[serde(with = "secs")]
    pub max_backoff: Duration,
    /// Largest accepted audio file (32 MiB).
    pub max_bytes: u64,
    /// Calls waiting for a download slot (64).
    pub queue_size: usize,
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            max_concurrency: 4,
            chunk_size: 8192,
            max_attempts: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            max_bytes: 32 * 1024 * 1024,
            queue_size: 64,
        }
    }
}

impl AudioConfig {
    /// Rejects values that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        nonzero("max_concurrency", self.max_concurrency as u64)?;
        nonzero("chunk_size", self.chunk_size as u64)?;
        nonzero("max_attempts", u64::from(self.max_attempts))?;
        positive("initial_backoff", self.initial_backoff)?;
        positive("max_backoff", self.max_backoff)?;
        backoff_order("max_backoff", self.initial_backoff, self.max_backoff)?;
        nonzero("max_bytes", self.max_bytes)?;
        nonzero("queue_size", self.queue_size as u64)?;
        Ok(())
    }
}

/// The spec's browser User-Agent (Chrome 126 on macOS).
pub const DEFAULT_USER_AGENT: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";

/// The spec's `Accept` header.
pub const DEFAULT_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

/// The one HTTP client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportConfig {
    /// `Accept-Language` ("en-US,en;q=0.9").
    pub accept_language: String,
    /// `User-Agent` (the spec's Chrome 126 string).
    pub user_agent: String,
    /// API requests in flight (4).
    pub max_in_flight_api: usize,
    /// Audio downloads in flight (8).
    pub max_in_flight_audio: usize,
    /// TCP + TLS connect timeout (10 s).
    #[serde(with = "secs")]
    pub connect_timeout: Duration,
    /// Whole-request timeout (30 s).
    #[serde(with = "secs")]
    pub request_timeout: Duration,
    /// Idle pooled connections are closed after this (90 s).
    #[serde(with = "secs")]
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host (16; 0 disables reuse).
    pub pool_max_idle_per_host: usize,
    /// API requests per minute, shared by every producer of the client; `None` = no budget.
    pub rate_limit_per_minute: Option<u32>,
    /// Largest body read into memory by `Response::bytes` (8 MiB).
    pub max_body_bytes: u64,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            accept_language: "en-US,en;q=0.9".to_owned(),
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            max_in_flight_api: 4,
            max_in_flight_audio: 8,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 16,
            rate_limit_per_minute: None,
            max_body_bytes: 8 * 1024 * 1024,
        }
    }
}

impl TransportConfig {
    /// Rejects values that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        header_value("accept_language", &self.accept_language)?;
        header_value("user_agent", &self.user_agent)?;
        nonzero("max_in_flight_api", self.max_in_flight_api as u64)?;
        nonzero("max_in_flight_audio", self.max_in_flight_audio as u64)?;
        positive("connect_timeout", self.connect_timeout)?;
        positive("request_timeout", self.request_timeout)?;
        positive("pool_idle_timeout", self.pool_idle_timeout)?;
        nonzero_opt("rate_limit_per_minute", self.rate_limit_per_minute)?;
        nonzero("max_body_bytes", self.max_body_bytes)?;
        Ok(())
    }
}

/// Base URLs: how tests and the simulator point the real code elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Endpoints {
    /// The site: login, logout, live calls, archives (`https://www.broadcastify.com`).
    #[serde(with = "url_str")]
    pub site: Url,
    /// The calls CDN (`https://calls.broadcastify.com`).
    #[serde(with = "url_str")]
    pub calls_cdn: Url,
}

/// The real site.
pub const DEFAULT_SITE: &str = "https://www.broadcastify.com";
/// The real calls CDN.
pub const DEFAULT_CALLS_CDN: &str = "https://calls.broadcastify.com";

impl Default for Endpoints {
    fn default() -> Self {
        // Both constants are valid absolute URLs.
        let parse = |s| Url::parse(s).unwrap_or_else(|_| unreachable!("constant URL"));
        Self {
            site: parse(DEFAULT_SITE),
            calls_cdn: parse(DEFAULT_CALLS_CDN),
        }
    }
}

impl Endpoints {
    /// Rejects non-http(s) URLs and URLs with a query or fragment.
    pub fn validate(&self) -> Result<(), ConfigError> {
        http_url("site", &self.site)?;
        http_url("calls_cdn", &self.calls_cdn)?;
        Ok(())
    }

    /// `path` under the site, keeping any base path: `site_url("calls/apis/live-calls")`,
    /// `site_url("login/")` (a trailing `/` is kept).
    ///
    /// ```
    /// let e = bcfy_proto::Endpoints::default();
    /// assert_eq!(e.site_url("login/").as_str(), "https://www.broadcastify.com/login/");
    /// ```
    pub fn site_url(&self, path: &str) -> Url {
        let mut url = self.site.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty();
            segments.extend(path.trim_start_matches('/').split('/'));
        }
        url
    }
}

/// `base` with its path treated as a directory (a trailing `/`, no query or fragment), so
/// `Url::join` appends to it rather than replacing its last segment: the one way every crate
/// turns a configured site URL (which may carry a path prefix) into a base.
///
/// ```
/// let site = url::Url::parse("http://h/prefix").unwrap();
/// let base = bcfy_proto::base_dir(&site);
/// assert_eq!(base.join("calls/").unwrap().as_str(), "http://h/prefix/calls/");
/// ```
pub fn base_dir(base: &Url) -> Url {
    let mut dir = base.clone();
    if !dir.path().ends_with('/') {
        let path = format!("{}/", dir.path());
        dir.set_path(&path);
    }
    dir.set_query(None);
    dir.set_fragment(None);
    dir
}

/// The archive cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// How long a cached archive block stays fresh (3600 s).
    #[serde(with = "secs")]
    pub ttl: Duration,
    /// Entries kept by the memory cache (1024).
    pub max_entries: u64,
    /// Directory of the filesystem cache; `None` = memory only.
    pub directory: Option<PathBuf>,
    /// Whether cached calls keep their uploader `metadata` (true).
    pub retain_metadata: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_hours(1),
            max_entries: 1024,
            directory: None,
            retain_metadata: true,
        }
    }
}

impl CacheConfig {
    /// Rejects values that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("ttl", self.ttl)?;
        nonzero("max_entries", self.max_entries)?;
        if self
            .directory
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(ConfigError::new(
                "directory",
                "must not be empty (omit it for memory only)",
            ));
        }
        Ok(())
    }
}
