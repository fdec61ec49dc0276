//! [`Request`]: what a caller asks the transport to send.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use url::Url;

/// Which concurrency pool (and policy) a request belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RequestClass {
    /// A Broadcastify API call (login, live calls, archives): bounded by the API semaphore
    /// (`max_in_flight_api`) and subject to the rate budget.
    #[default]
    Api,
    /// An audio download from the calls CDN: bounded by the audio semaphore
    /// (`max_in_flight_audio`), not charged to the rate budget.
    Audio,
}

impl RequestClass {
    /// A stable lowercase name, for log fields.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Audio => "audio",
        }
    }
}

/// Whether the transport attaches the session cookie.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum CookiePolicy {
    /// Attach `Cookie: bcfyuser1=<token>` when the [`SessionSlot`](crate::SessionSlot) holds a
    /// token (the default).
    #[default]
    Session,
    /// Never attach a cookie (login, the CDN).
    None,
}

/// Headers the transport owns: a request that sets one fails with
/// [`TransportErrorKind::InvalidRequest`](crate::TransportErrorKind::InvalidRequest).
///
/// The browser template (User-Agent, Accept-Encoding, Accept-Language, Connection) and the
/// session cookie are applied by the transport alone; framing headers belong to hyper; and no
/// tracing header may reach Broadcastify (DESIGN: nothing a browser would not send).
pub const RESERVED_HEADERS: &[&str] = &[
    "user-agent",
    "accept-encoding",
    "accept-language",
    "connection",
    "cookie",
    "host",
    "content-length",
    "transfer-encoding",
    "te",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "traceparent",
    "tracestate",
];

/// A request for the transport: method, URL, per-request headers, body, class and cookie
/// policy. Built with [`Request::get`] / [`Request::post_form`] and the builder methods;
/// nothing is validated until [`Transport::send`](crate::Transport::send), which fails with
/// `InvalidRequest` on a bad header or one of the [`RESERVED_HEADERS`].
///
/// ```
/// use bcfy_transport::{Request, RequestClass, url::Url};
///
/// let url = Url::parse("https://www.broadcastify.com/calls/apis/live-calls").unwrap();
/// let req = Request::post_form(url, "pos=0&doInit=1".to_owned())
///     .header("x-requested-with", "XMLHttpRequest")
///     .class(RequestClass::Api);
/// assert_eq!(req.method(), "POST");
/// ```
#[derive(Clone)]
pub struct Request {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Bytes,
    class: RequestClass,
    cookie: CookiePolicy,
    timeout: Option<Duration>,
    invalid: Option<String>,
}

impl Request {
    /// A request with `method` to `url`, no body, class [`RequestClass::Api`] and cookie
    /// policy [`CookiePolicy::Session`].
    pub fn new(method: Method, url: Url) -> Self {
        Self {
            method,
            url,
            // Room for a few headers of the caller's, the template's and the cookie: the map is
            // allocated once, not grown on the way to the wire.
            headers: HeaderMap::with_capacity(12),
            body: Bytes::new(),
            class: RequestClass::default(),
            cookie: CookiePolicy::default(),
            timeout: None,
            invalid: None,
        }
    }

    /// A `GET` of `url`.
    pub fn get(url: Url) -> Self {
        Self::new(Method::GET, url)
    }

    /// A `POST` of an `application/x-www-form-urlencoded` body (build it with
    /// `url::form_urlencoded::Serializer`).
    pub fn post_form(url: Url, body: impl Into<String>) -> Self {
        Self::new(Method::POST, url)
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .body(body.into())
    }

    /// Replaces the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a per-request header (replacing an earlier value of the same name), e.g.
    /// `X-Requested-With`, `Referer`, `If-None-Match`, or `Accept` (which overrides the
    /// template's `Accept`). An unparsable name or value, or one of [`RESERVED_HEADERS`], makes
    /// [`Transport::send`](crate::Transport::send) fail with `InvalidRequest`; the value is
    /// never echoed in that error.
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        K: TryInto<HeaderName>,
        V: TryInto<HeaderValue>,
    {
        let Ok(name) = name.try_into() else {
            self.invalid
                .get_or_insert_with(|| "invalid header name".to_owned());
            return self;
        };
        if RESERVED_HEADERS.contains(&name.as_str()) {
            self.invalid
                .get_or_insert_with(|| format!("header `{name}` is set by the transport"));
            return self;
        }
        match value.try_into() {
            Ok(mut value) => {
                if is_sensitive(&name) {
                    value.set_sensitive(true);
                }
                self.headers.insert(name, value);
            }
            Err(_) => {
                self.invalid
                    .get_or_insert_with(|| format!("invalid value for header `{name}`"));
            }
        }
        self
    }

    /// Sets the request class (which semaphore, whether the rate budget applies).
    pub fn class(mut self, class: RequestClass) -> Self {
        self.class = class;
        self
    }

    /// Sets the cookie policy.
    pub fn cookie(mut self, policy: CookiePolicy) -> Self {
        self.cookie = policy;
        self
    }

    /// Overrides the transport's request timeout (time until the response headers) for this
    /// request.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The per-request headers (the template is not applied yet).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body.
    pub fn body_bytes(&self) -> &Bytes {
        &self.body
    }

    /// The request class.
    pub fn request_class(&self) -> RequestClass {
        self.class
    }

    /// The cookie policy.
    pub fn cookie_policy(&self) -> CookiePolicy {
        self.cookie
    }

    /// The per-request timeout override, if any.
    pub fn timeout_override(&self) -> Option<Duration> {
        self.timeout
    }

    /// Why the request is invalid, if a builder call failed.
    pub(crate) fn invalid_reason(&self) -> Option<&str> {
        self.invalid.as_deref()
    }

    pub(crate) fn into_parts(self) -> (Method, Url, HeaderMap, Bytes) {
        (self.method, self.url, self.headers, self.body)
    }
}

impl fmt::Debug for Request {
    /// Shows the method, scheme, host and path, header names and the body length: never the
    /// query, header values or the body, which may hold credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &redacted_url(&self.url))
            .field("headers", &HeaderNames(&self.headers))
            .field("body_len", &self.body.len())
            .field("class", &self.class)
            .field("cookie", &self.cookie)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// `scheme://host[:port]/path` without query, fragment or credentials.
pub(crate) fn redacted_url(url: &Url) -> String {
    let mut out = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        out.push(':');
        out.push_str(&port.to_string());
    }
    out.push_str(url.path());
    if url.query().is_some() {
        out.push_str("?…");
    }
    out
}

/// Headers whose values must not be logged or indexed by HPACK.
pub(crate) fn is_sensitive(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "cookie" | "set-cookie" | "authorization" | "proxy-authorization"
    )
}

/// Debug view of a header map with sensitive values redacted.
pub(crate) struct RedactedHeaders<'a>(pub(crate) &'a HeaderMap);

impl fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (name, value) in self.0 {
            if is_sensitive(name) || value.is_sensitive() {
                m.entry(&name.as_str(), &"[redacted]");
            } else {
                m.entry(&name.as_str(), &String::from_utf8_lossy(value.as_bytes()));
            }
        }
        m.finish()
    }
}

struct HeaderNames<'a>(&'a HeaderMap);

impl fmt::Debug for HeaderNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.keys().map(HeaderName::as_str))
            .finish()
    }
}
