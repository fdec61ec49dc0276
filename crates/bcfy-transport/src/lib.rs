//! The one HTTP transport of bcfy.
//!
//! Every request the library makes goes through a [`Transport`]. The real one,
//! [`HttpTransport`], is a policy stack over hyper-util's pooled client: the browser
//! [`HeaderTemplate`] and `bcfyuser1` session cookie are applied in one place (so no caller can
//! forget them), then a shared [`RetryAfterGate`] (a 429 or a 503 with `Retry-After` pauses
//! every caller), a [`RateBudget`] token bucket for API requests, and one semaphore per
//! [`RequestClass`] (API polls never wait behind audio downloads; a download's permit lives in
//! its body until it is read). Below, tower-http decompresses gzip, deflate and br, and
//! hyper-rustls speaks TLS through an explicitly passed rustls crypto provider, offering h2 and
//! http/1.1 by ALPN over pooled keep-alive connections. Bodies are streams:
//! [`Response::into_chunks`] reads buffered chunks only as fast as the caller pulls them, so a
//! slow consumer slows the server down instead of filling memory. Errors are
//! [`TransportError`]s with a kind and a retry hint and never contain the session token.
//!
//! With the `mock` feature, `mock::MockTransport` replays scripted responses and records every
//! request after the template is applied, for tests of the crates above.

mod budget;
mod client;
mod error;
mod gate;
#[cfg(feature = "mock")]
pub mod mock;
mod request;
mod response;
mod session;
mod template;
mod transport;

pub use budget::{GovernorBudget, RateBudget, UnlimitedBudget};
pub use client::{
    DEFAULT_BODY_IDLE_TIMEOUT, DEFAULT_HTTP2_KEEP_ALIVE, DEFAULT_HTTP2_KEEP_ALIVE_TIMEOUT,
    HttpTransport, HttpTransportBuilder,
};
pub use error::{TransportError, TransportErrorKind};
pub use gate::{DEFAULT_RETRY_AFTER, MAX_RETRY_AFTER, RetryAfterGate, parse_retry_after};
pub use request::{CookiePolicy, RESERVED_HEADERS, Request, RequestClass};
pub use response::{Body, BodyChunks, DEFAULT_CHUNK_SIZE, DEFAULT_MAX_BODY_BYTES, Response};
pub use session::SessionSlot;
pub use template::{ACCEPT_ENCODING_VALUE, DEFAULT_ACCEPT, HeaderTemplate, SESSION_COOKIE};
pub use transport::{SharedTransport, Transport};

pub use bcfy_proto::{RetryHint, SessionToken, TransportConfig};
pub use bytes::Bytes;
pub use http;
pub use rustls;
pub use url;
