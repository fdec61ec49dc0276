//! What tests read back: recorded requests and served calls.

use std::fmt;
use std::time::SystemTime;

use http::{HeaderMap, Method, StatusCode, Version};

use crate::faults::Endpoint;

/// One request as the simulator received it, with the status it answered.
///
/// `Debug` redacts secrets (the `password` form field, `Cookie`, `Authorization` and
/// `Set-Cookie` values, the `bcfyuser1` token); the fields themselves hold the real values so
/// tests can assert what the client sent.
#[derive(Clone)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// Which endpoint the request was routed to.
    pub endpoint: Endpoint,
    /// Request method.
    pub method: Method,
    /// Path, without the query.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Form pairs: the urlencoded body, or the text fields of a multipart upload (the `file`
    /// field appears as `("file", "<N bytes>")`).
    pub form: Vec<(String, String)>,
    /// Request headers as received.
    pub headers: HeaderMap,
    /// The `bcfyuser1` cookie value, if the request carried one.
    pub cookie: Option<String>,
    /// Wall-clock time the request arrived.
    pub time: SystemTime,
    /// Simulated epoch seconds when the request arrived.
    pub sim_time: f64,
    /// Per-listener-accept connection number (same number = same connection).
    pub connection_id: u64,
    /// HTTP version (`HTTP/1.1` or `HTTP/2.0`).
    pub version: Version,
    /// Status the simulator answered.
    pub status: StatusCode,
    /// Wall-clock time the answer's headers were ready (after any slow-headers fault).
    pub answered_at: SystemTime,
    /// The answer's `Retry-After`, in seconds, when it carried one (delta or HTTP-date).
    pub retry_after: Option<f64>,
    /// The answer said the session is gone: the logged-out body of live-calls, or a 401/403.
    pub logged_out: bool,
}

impl RecordedRequest {
    /// The first value of a form field.
    pub fn form_value(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a (repeated) form field, in order.
    pub fn form_values(&self, name: &str) -> Vec<&str> {
        self.form
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A header value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter value.
    pub fn query_value(&self, name: &str) -> Option<String> {
        let q = self.query.as_deref()?;
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

const SECRET_HEADERS: [&str; 4] = [
    "cookie",
    "authorization",
    "set-cookie",
    "proxy-authorization",
];

impl fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let form: Vec<(&str, &str)> = self
            .form
            .iter()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("password") {
                    "[redacted]"
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let v = if SECRET_HEADERS.contains(&k.as_str()) {
                    "[redacted]"
                } else {
                    v.to_str().unwrap_or("[binary]")
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("RecordedRequest")
            .field("endpoint", &self.endpoint)
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("form", &form)
            .field("headers", &headers)
            .field("cookie", &self.cookie.as_ref().map(|_| "[redacted]"))
            .field("time", &self.time)
            .field("sim_time", &self.sim_time)
            .field("connection_id", &self.connection_id)
            .field("version", &self.version)
            .field("status", &self.status)
            .field("answered_at", &self.answered_at)
            .field("retry_after", &self.retry_after)
            .field("logged_out", &self.logged_out)
            .finish()
    }
}

/// A call the live-calls endpoint served (first time it appeared intact in an answer).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ServedCall {
    /// `"{systemId}-{filename}-{hash}"`, or `"{systemId}-{filename}"` without a hash: the
    /// client's `CallId`.
    pub call_id: String,
    /// The group key `"{sid}-{call_tg}"` (the payload's `id`).
    pub group: String,
    /// RadioReference system id (`sid`).
    pub sid: u64,
    /// Talkgroup (`call_tg`).
    pub talkgroup: u64,
    /// Upload node (`systemId`).
    pub node: u64,
    /// `"{meta_starttime}-{call_tg}"`.
    pub filename: String,
    /// 8 lowercase alphanumerics, or `None` for a hashless call.
    pub hash: Option<String>,
    /// Ingest time, epoch seconds.
    pub ts: i64,
    /// `meta_starttime`.
    pub start_time: i64,
    /// Lowercase hex SHA-256 of the call's audio as the CDN serves it.
    pub audio_sha256: String,
    /// Audio length in bytes.
    pub audio_len: u64,
    /// The transcript the Whisper endpoint returns for this audio.
    pub transcript: String,
    /// This call is a second node's upload of the transmission with this call id.
    pub dual_of: Option<String>,
    /// The call was ingested late, with a `ts` equal to the largest one already ingested.
    pub late: bool,
    /// The call object exactly as live-calls serialises it.
    pub payload: serde_json::Value,
}
