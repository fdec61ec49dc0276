//! The browser header template and the session cookie: the one place they are applied.

use bytes::Bytes;
use http::Uri;
use http::header::{
    ACCEPT, ACCEPT_ENCODING, ACCEPT_LANGUAGE, CONNECTION, COOKIE, HeaderMap, HeaderValue,
    USER_AGENT,
};
use url::Url;

use bcfy_proto::TransportConfig;

use crate::error::{TransportError, TransportErrorKind};
use crate::request::{CookiePolicy, Request};
use crate::session::SessionSlot;

/// The `Accept` header of the template (the spec's browser value). A request may override it
/// (XHR calls send a JSON `Accept`).
pub const DEFAULT_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

/// The `Accept-Encoding` the transport sends; the decompression layer decodes all three.
pub const ACCEPT_ENCODING_VALUE: &str = "gzip, deflate, br";

/// The name of Broadcastify's session cookie.
pub const SESSION_COOKIE: &str = "bcfyuser1";

/// The browser header template of the spec, built once from a [`TransportConfig`]:
/// `User-Agent` and `Accept-Language` from the config, the spec's `Accept`,
/// `Connection: keep-alive` and `Accept-Encoding: gzip, deflate, br`.
///
/// Both [`HttpTransport`](crate::HttpTransport) and the mock apply it through this type
/// only, after the per-request headers, so no caller can forget or bypass it. Over HTTP/2 hyper drops `Connection` (a connection-specific header is illegal
/// there); every other template header is sent on both versions.
///
/// ```
/// use bcfy_proto::TransportConfig;
/// use bcfy_transport::HeaderTemplate;
///
/// let t = HeaderTemplate::new(&TransportConfig::default()).unwrap();
/// assert_eq!(t.headers()["accept-encoding"], "gzip, deflate, br");
/// assert_eq!(t.headers()["connection"], "keep-alive");
/// assert!(t.headers()["user-agent"].to_str().unwrap().contains("Chrome/126"));
/// ```
#[derive(Debug, Clone)]
pub struct HeaderTemplate {
    headers: HeaderMap,
}

impl HeaderTemplate {
    /// Builds the template; fails with `Config` when the configured User-Agent or
    /// Accept-Language is not a valid header value.
    pub fn new(config: &TransportConfig) -> Result<Self, TransportError> {
        let value = |what: &str, v: &str| {
            HeaderValue::from_str(v).map_err(|_| {
                TransportError::new(
                    TransportErrorKind::Config,
                    format!("{what} is not a valid header value"),
                )
            })
        };
        let mut headers = HeaderMap::with_capacity(5);
        headers.insert(USER_AGENT, value("user_agent", &config.user_agent)?);
        headers.insert(ACCEPT, HeaderValue::from_static(DEFAULT_ACCEPT));
        headers.insert(
            ACCEPT_LANGUAGE,
            value("accept_language", &config.accept_language)?,
        );
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
        headers.insert(
            ACCEPT_ENCODING,
            HeaderValue::from_static(ACCEPT_ENCODING_VALUE),
        );
        Ok(Self { headers })
    }

    /// The template headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Turns a [`Request`] into the HTTP request that goes on the wire: validates it, applies
    /// the per-request headers, then the template (which wins, except that a per-request
    /// `Accept` is kept), then the session cookie per the request's [`CookiePolicy`].
    pub(crate) fn apply(
        &self,
        req: Request,
        session: &SessionSlot,
    ) -> Result<http::Request<Bytes>, TransportError> {
        if let Some(reason) = req.invalid_reason() {
            return Err(TransportError::new(
                TransportErrorKind::InvalidRequest,
                reason,
            ));
        }
        let policy = req.cookie_policy();
        let (method, url, mut headers, body) = req.into_parts();
        let uri = to_uri(&url)?;
        for (name, value) in &self.headers {
            if name == ACCEPT && headers.contains_key(ACCEPT) {
                continue;
            }
            headers.insert(name.clone(), value.clone());
        }
        headers.remove(COOKIE);
        if policy == CookiePolicy::Session
            && let Some(token) = session.get()
        {
            let mut cookie =
                HeaderValue::try_from(format!("{SESSION_COOKIE}={}", token.expose_secret()))
                    .map_err(|_| {
                        TransportError::new(
                            TransportErrorKind::InvalidRequest,
                            "the session token is not a valid cookie value",
                        )
                    })?;
            cookie.set_sensitive(true);
            headers.insert(COOKIE, cookie);
        }
        let mut out = http::Request::new(body);
        *out.method_mut() = method;
        *out.uri_mut() = uri;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

/// Converts a `Url` to a hyper `Uri` (http/https only, fragment dropped).
fn to_uri(url: &Url) -> Result<Uri, TransportError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TransportError::new(
            TransportErrorKind::InvalidRequest,
            format!("unsupported URL scheme `{}`", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(TransportError::new(
            TransportErrorKind::InvalidRequest,
            "URL has no host",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TransportError::new(
            TransportErrorKind::InvalidRequest,
            "URL must not carry credentials",
        ));
    }
    // The fragment never goes on the wire; slicing it off needs no copy of the URL.
    url[..url::Position::AfterQuery]
        .parse::<Uri>()
        .map_err(|_| {
            TransportError::new(TransportErrorKind::InvalidRequest, "URL is not a valid URI")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uri_keeps_path_and_query_and_drops_the_fragment() {
        let uri = |u: &str| to_uri(&Url::parse(u).unwrap()).unwrap().to_string();
        assert_eq!(
            uri("https://calls.example/h/1/f.m4a?a=1#frag"),
            "https://calls.example/h/1/f.m4a?a=1"
        );
        assert_eq!(uri("http://127.0.0.1:8080/x#"), "http://127.0.0.1:8080/x");
        assert_eq!(uri("http://127.0.0.1:8080/x"), "http://127.0.0.1:8080/x");
        assert!(to_uri(&Url::parse("https://u:p@calls.example/").unwrap()).is_err());
        assert!(to_uri(&Url::parse("ftp://calls.example/").unwrap()).is_err());
    }
}
