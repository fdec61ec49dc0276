//! The two raw exchanges: the login form and the logout link.

use std::time::{Duration, SystemTime};

use bcfy_proto::SessionToken;
use bcfy_transport::{CookiePolicy, Request, SharedTransport};
use http::header::{LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, StatusCode};
use secrecy::ExposeSecret;
use url::Url;

use crate::credentials::Credentials;
use crate::error::{AuthError, AuthErrorKind};

/// The name of Broadcastify's session cookie.
pub const SESSION_COOKIE: &str = "bcfyuser1";

/// The outcome of a successful login.
#[derive(Clone, Debug)]
pub struct AuthResult {
    /// The session token (the `bcfyuser1` cookie's value). `Debug` redacts it.
    pub token: SessionToken,
    /// When the login answered.
    pub issued_at: SystemTime,
    /// When the cookie says it expires (`Max-Age` or `Expires`), if it says.
    pub expires_at: Option<SystemTime>,
    /// The login response's headers, with every `Set-Cookie` value reduced to
    /// `name=[redacted]`.
    pub headers: HeaderMap,
}

/// The login and logout exchanges, without any session management.
///
/// [`login`](Self::login) returns the token and does not store it anywhere; most users want
/// [`AuthManager`](crate::AuthManager), which does, and which keeps one login in flight at a
/// time.
#[derive(Clone, Debug)]
pub struct AuthClient {
    transport: SharedTransport,
    site: Url,
}

impl AuthClient {
    /// A client for the site at `site` (`https://www.broadcastify.com` in production).
    pub fn new(transport: SharedTransport, site: Url) -> Self {
        Self { transport, site }
    }

    /// The site base URL.
    pub fn site(&self) -> &Url {
        &self.site
    }

    /// The transport requests go through.
    pub fn transport(&self) -> &SharedTransport {
        &self.transport
    }

    /// Submit the login form: `POST {site}/login/` with `username`, `password`, `action=auth`
    /// and `redirect={site}`, without any session cookie. The transport never follows
    /// redirects, so the raw answer is inspected:
    ///
    /// - a `Location` carrying `failed=1` is [`AuthErrorKind::InvalidCredentials`];
    /// - a status of 400 or more is [`AuthErrorKind::Transport`] (with the status);
    /// - a status below 400 with a non-empty `bcfyuser1` cookie is a success;
    /// - anything else is [`AuthErrorKind::MissingCookie`].
    pub async fn login(&self, credentials: &Credentials) -> Result<AuthResult, AuthError> {
        let url = endpoint(&self.site, "login/")?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("username", &credentials.username)
            .append_pair("password", credentials.password.expose_secret())
            .append_pair("action", "auth")
            .append_pair("redirect", &site_base(&self.site))
            .finish();
        let request = Request::post_form(url.clone(), body).cookie(CookiePolicy::None);
        let response = self
            .transport
            .send(request)
            .await
            .map_err(|e| AuthError::transport("login request failed", e))?;
        interpret_login(
            &url,
            response.status(),
            response.headers(),
            SystemTime::now(),
        )
    }

    /// End the session: `GET {site}/account/?action=logout`, with the session cookie the
    /// transport holds. A status outside 2xx/3xx is an error. Clearing the transport's session
    /// slot is the caller's business ([`AuthManager::logout`](crate::AuthManager::logout) does).
    pub async fn logout(&self) -> Result<(), AuthError> {
        let mut url = endpoint(&self.site, "account/")?;
        url.set_query(Some("action=logout"));
        let response = self
            .transport
            .send(Request::get(url))
            .await
            .map_err(|e| AuthError::transport("logout request failed", e))?;
        let status = response.status();
        // A redirect after logout is how sites usually answer; only errors count as failure.
        if status.is_client_error() || status.is_server_error() {
            return Err(AuthError::new(
                AuthErrorKind::Transport,
                format!("logout failed with HTTP status {}", status.as_u16()),
            )
            .with_status(status));
        }
        Ok(())
    }
}

/// Whether an answer of a Broadcastify endpoint means the session is gone: a 401 or 403, or a
/// redirect to the login page. The other crates call this on every response and then
/// [`AuthManager::invalidate`](crate::AuthManager::invalidate) the token they sent.
pub fn is_logged_out(status: StatusCode, headers: &HeaderMap) -> bool {
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return true;
    }
    if status.is_redirection()
        && let Some(location) = headers.get(LOCATION).and_then(|v| v.to_str().ok())
    {
        let path = Url::parse(location).map_or_else(
            // A relative Location: its path is everything before the query.
            |_| location.split(['?', '#']).next().unwrap_or("").to_owned(),
            |u| u.path().to_owned(),
        );
        return path
            .split('/')
            .any(|segment| segment.eq_ignore_ascii_case("login"));
    }
    false
}

/// `site` joined with `rel`, treating `site`'s path as a directory.
pub(crate) fn endpoint(site: &Url, rel: &str) -> Result<Url, AuthError> {
    bcfy_proto::base_dir(site).join(rel).map_err(|_| {
        AuthError::new(
            AuthErrorKind::Transport,
            "the site URL cannot be a base for the login and logout paths",
        )
    })
}

/// The site URL as the login form's `redirect` carries it: no trailing slash on a bare host.
fn site_base(site: &Url) -> String {
    let s = site.as_str();
    if site.path() == "/" && site.query().is_none() && site.fragment().is_none() {
        s.trim_end_matches('/').to_owned()
    } else {
        s.to_owned()
    }
}

fn interpret_login(
    login_url: &Url,
    status: StatusCode,
    headers: &HeaderMap,
    now: SystemTime,
) -> Result<AuthResult, AuthError> {
    if location_says_failed(login_url, headers) {
        return Err(AuthError::new(
            AuthErrorKind::InvalidCredentials,
            "login rejected: invalid username or password",
        )
        .with_status(status));
    }
    if status.as_u16() >= 400 {
        return Err(AuthError::new(
            AuthErrorKind::Transport,
            format!("login failed with HTTP status {}", status.as_u16()),
        )
        .with_status(status));
    }
    let Some(cookie) = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(parse_session_cookie)
    else {
        return Err(AuthError::new(
            AuthErrorKind::MissingCookie,
            format!(
                "login answered HTTP status {} without a {SESSION_COOKIE} cookie",
                status.as_u16()
            ),
        )
        .with_status(status));
    };
    let expires_at = cookie.expiry(now);
    let mut token = SessionToken::new(cookie.value);
    if let Some(at) = expires_at {
        token = token.with_expiry(at);
    }
    Ok(AuthResult {
        issued_at: token.issued_at(),
        token,
        expires_at,
        headers: sanitized_headers(headers),
    })
}

fn location_says_failed(login_url: &Url, headers: &HeaderMap) -> bool {
    let Some(location) = headers.get(LOCATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    match login_url.join(location) {
        Ok(url) => url.query_pairs().any(|(k, v)| k == "failed" && v == "1"),
        Err(_) => location.contains("failed=1"),
    }
}

struct SessionCookie<'a> {
    value: &'a str,
    max_age: Option<i64>,
    expires: Option<SystemTime>,
}

impl SessionCookie<'_> {
    fn expiry(&self, now: SystemTime) -> Option<SystemTime> {
        // Max-Age wins over Expires (RFC 6265 §5.3).
        match self.max_age {
            Some(secs) if secs > 0 => now.checked_add(Duration::from_secs(secs as u64)),
            Some(_) => Some(now),
            None => self.expires,
        }
    }
}

/// The `bcfyuser1` cookie of one `Set-Cookie` value: its value is the part before the first
/// `;`. An empty value or `deleted` (how sites clear a cookie) is no session.
fn parse_session_cookie(set_cookie: &str) -> Option<SessionCookie<'_>> {
    let mut parts = set_cookie.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    if name.trim() != SESSION_COOKIE {
        return None;
    }
    let value = value.trim().trim_matches('"');
    if value.is_empty() || value == "deleted" {
        return None;
    }
    let mut cookie = SessionCookie {
        value,
        max_age: None,
        expires: None,
    };
    for attr in parts {
        let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("max-age") {
            cookie.max_age = v.parse().ok();
        } else if k.eq_ignore_ascii_case("expires") {
            cookie.expires = parse_cookie_date(v);
        }
    }
    Some(cookie)
}

/// RFC 1123 dates, plus the `Thu, 26-Nov-2026 14:00:00 GMT` form PHP sends.
fn parse_cookie_date(v: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(v)
        .ok()
        .or_else(|| httpdate::parse_http_date(&v.replace('-', " ")).ok())
}

/// A copy of `headers` where each `Set-Cookie` keeps only its cookie name.
fn sanitized_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if name == SET_COOKIE {
            let cookie_name = value
                .to_str()
                .ok()
                .and_then(|v| v.split_once('='))
                .map_or("cookie", |(n, _)| n.trim());
            let redacted = HeaderValue::from_str(&format!("{cookie_name}=[redacted]"))
                .unwrap_or_else(|_| HeaderValue::from_static("[redacted]"));
            out.append(name.clone(), redacted);
        } else {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn login_url() -> Url {
        Url::parse("https://www.broadcastify.com/login/").unwrap()
    }

    #[test]
    fn success_takes_only_bcfyuser1_before_semicolon() {
        let h = headers(&[
            ("location", "https://www.broadcastify.com"),
            ("set-cookie", "PHPSESSID=abc; path=/"),
            (
                "set-cookie",
                "bcfyuser1=tok-123; path=/; domain=.broadcastify.com; secure; HttpOnly",
            ),
            ("set-cookie", "other=1"),
        ]);
        let r = interpret_login(&login_url(), StatusCode::FOUND, &h, SystemTime::now()).unwrap();
        assert_eq!(r.token.expose_secret(), "tok-123");
        assert_eq!(r.expires_at, None);
        let cookies: Vec<_> = r.headers.get_all(SET_COOKIE).iter().collect();
        assert_eq!(cookies.len(), 3);
        assert_eq!(cookies[1], "bcfyuser1=[redacted]");
        assert!(!format!("{r:?}").contains("tok-123"));
    }

    #[test]
    fn failed_redirect_is_invalid_credentials() {
        let h = headers(&[("location", "https://www.broadcastify.com/login/?failed=1")]);
        let e =
            interpret_login(&login_url(), StatusCode::FOUND, &h, SystemTime::now()).unwrap_err();
        assert_eq!(e.kind(), AuthErrorKind::InvalidCredentials);
        assert_eq!(e.retry_hint(), bcfy_proto::RetryHint::Never);
        // relative Location too
        let h = headers(&[("location", "/login/?failed=1")]);
        let e =
            interpret_login(&login_url(), StatusCode::FOUND, &h, SystemTime::now()).unwrap_err();
        assert_eq!(e.kind(), AuthErrorKind::InvalidCredentials);
        // failed=10 is not failed=1
        let h = headers(&[("location", "/login/?failed=10")]);
        let e =
            interpret_login(&login_url(), StatusCode::FOUND, &h, SystemTime::now()).unwrap_err();
        assert_eq!(e.kind(), AuthErrorKind::MissingCookie);
    }

    #[test]
    fn no_cookie_or_cleared_cookie_is_missing_cookie() {
        for h in [
            headers(&[("location", "https://www.broadcastify.com")]),
            headers(&[("set-cookie", "bcfyuser1=; path=/")]),
            headers(&[(
                "set-cookie",
                "bcfyuser1=deleted; expires=Thu, 01-Jan-1970 00:00:01 GMT",
            )]),
            headers(&[("set-cookie", "xbcfyuser1=abc")]),
        ] {
            let e = interpret_login(&login_url(), StatusCode::FOUND, &h, SystemTime::now())
                .unwrap_err();
            assert_eq!(e.kind(), AuthErrorKind::MissingCookie);
        }
    }

    #[test]
    fn error_status_is_transport() {
        let h = headers(&[("set-cookie", "bcfyuser1=abc")]);
        let e = interpret_login(
            &login_url(),
            StatusCode::INTERNAL_SERVER_ERROR,
            &h,
            SystemTime::now(),
        )
        .unwrap_err();
        assert_eq!(e.kind(), AuthErrorKind::Transport);
        assert_eq!(e.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(!e.to_string().contains("abc"));
    }

    #[test]
    fn cookie_expiry_from_max_age_and_expires() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let h = headers(&[(
            "set-cookie",
            "bcfyuser1=a; Max-Age=3600; Expires=Thu, 01 Jan 2099 00:00:00 GMT",
        )]);
        let r = interpret_login(&login_url(), StatusCode::FOUND, &h, now).unwrap();
        assert_eq!(r.expires_at, Some(now + Duration::from_hours(1)));
        assert_eq!(r.token.expires_at(), r.expires_at);
        let h = headers(&[(
            "set-cookie",
            "bcfyuser1=a; expires=Thu, 26-Nov-2026 14:00:00 GMT",
        )]);
        let r = interpret_login(&login_url(), StatusCode::FOUND, &h, now).unwrap();
        assert_eq!(
            r.expires_at,
            Some(SystemTime::UNIX_EPOCH + Duration::from_hours(498_806))
        );
    }

    #[test]
    fn logged_out_detection() {
        let none = HeaderMap::new();
        assert!(is_logged_out(StatusCode::UNAUTHORIZED, &none));
        assert!(is_logged_out(StatusCode::FORBIDDEN, &none));
        assert!(!is_logged_out(StatusCode::OK, &none));
        assert!(!is_logged_out(StatusCode::FOUND, &none));
        assert!(is_logged_out(
            StatusCode::FOUND,
            &headers(&[("location", "https://www.broadcastify.com/login/?r=1")])
        ));
        assert!(is_logged_out(
            StatusCode::SEE_OTHER,
            &headers(&[("location", "/login")])
        ));
        assert!(!is_logged_out(
            StatusCode::FOUND,
            &headers(&[("location", "https://www.broadcastify.com/calls/?x=login")])
        ));
        assert!(!is_logged_out(
            StatusCode::OK,
            &headers(&[("location", "/login/")])
        ));
    }

    #[test]
    fn endpoints_and_redirect_value() {
        let site = Url::parse("https://www.broadcastify.com").unwrap();
        assert_eq!(site_base(&site), "https://www.broadcastify.com");
        assert_eq!(
            endpoint(&site, "login/").unwrap().as_str(),
            "https://www.broadcastify.com/login/"
        );
        let prefixed = Url::parse("http://127.0.0.1:8080/bcfy").unwrap();
        assert_eq!(
            endpoint(&prefixed, "account/").unwrap().as_str(),
            "http://127.0.0.1:8080/bcfy/account/"
        );
    }
}
