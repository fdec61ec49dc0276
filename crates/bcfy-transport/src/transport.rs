//! The [`Transport`] trait every crate above this one talks to.

use std::sync::Arc;

use crate::error::TransportError;
use crate::request::Request;
use crate::response::Response;
use crate::session::SessionSlot;

/// Sends [`Request`]s with every transport rule applied (header template, session cookie,
/// Retry-After gate, rate budget, semaphores, decompression, timeouts).
///
/// Implemented by [`HttpTransport`](crate::HttpTransport) and, with the `mock` feature, by
/// `mock::MockTransport`. Crates above depend on [`SharedTransport`] so tests can swap one for
/// the other.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + std::fmt::Debug + 'static {
    /// Sends `req` and returns the response once its headers have arrived; the body streams.
    ///
    /// Any status is a response, except 429 (and 503 with `Retry-After`), which closes the
    /// gate and fails with [`TransportErrorKind::RateLimited`](crate::TransportErrorKind).
    async fn send(&self, req: Request) -> Result<Response, TransportError>;

    /// Where the current `bcfyuser1` token lives; shared by every clone of the transport.
    fn session(&self) -> &SessionSlot;
}

/// A transport shared by the crates of one client.
pub type SharedTransport = Arc<dyn Transport>;
