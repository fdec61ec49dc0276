//! [`Response`], its streamed [`Body`] and [`BodyChunks`].

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use http::{HeaderMap, StatusCode, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;

use crate::error::{TransportError, TransportErrorKind};
use crate::request::RedactedHeaders;

/// The chunk size [`Response::into_chunks`] uses when asked for 0, and the spec's default for
/// audio (8 KiB).
pub const DEFAULT_CHUNK_SIZE: usize = 8 * 1024;

/// The body cap [`Response::bytes`] applies when the response was built without one (8 MiB,
/// the default of `TransportConfig::max_body_bytes`).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 8 * 1024 * 1024;

/// A streamed response body: frames arrive only as the reader polls.
///
/// Bodies of [`HttpTransport`](crate::HttpTransport) are already decompressed, time out when
/// no bytes arrive for the body idle timeout, and hold their concurrency permit until they end,
/// fail or are dropped.
pub struct Body {
    inner: BoxBody<Bytes, TransportError>,
}

impl Body {
    /// An empty body.
    pub fn empty() -> Self {
        Self::from_bytes(Bytes::new())
    }

    /// A body of one buffer.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        Self::new(http_body_util::Full::new(bytes.into()).map_err(|never| match never {}))
    }

    /// A body from a stream of chunks (polled only as the reader pulls).
    pub fn from_stream<S>(stream: S) -> Self
    where
        S: Stream<Item = Result<Bytes, TransportError>> + Send + Sync + 'static,
    {
        use futures::TryStreamExt;
        Self::new(http_body_util::StreamBody::new(stream.map_ok(Frame::data)))
    }

    /// Wraps any `http_body::Body` whose errors are [`TransportError`]s.
    pub fn new<B>(body: B) -> Self
    where
        B: HttpBody<Data = Bytes, Error = TransportError> + Send + Sync + 'static,
    {
        Self {
            inner: BoxBody::new(body),
        }
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = TransportError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, TransportError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body")
            .field("size_hint", &self.inner.size_hint())
            .finish_non_exhaustive()
    }
}

/// A response: status, version, headers and a streamed [`Body`].
///
/// Any status is returned as a response (3xx for login, 304 for archives, 401/403 for a lost
/// session) except the ones that close the Retry-After gate (429, 503 with `Retry-After`),
/// which [`Transport::send`](crate::Transport::send) turns into a `RateLimited` error.
/// `Debug` redacts `Set-Cookie` and `Cookie` values.
pub struct Response {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Body,
    max_body_bytes: u64,
}

impl Response {
    /// A response with HTTP/1.1 and the default body cap ([`DEFAULT_MAX_BODY_BYTES`]); for
    /// fakes and tests of crates built on the transport.
    pub fn new(status: StatusCode, headers: HeaderMap, body: Body) -> Self {
        Self {
            status,
            version: Version::HTTP_11,
            headers,
            body,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// Sets the HTTP version.
    #[must_use]
    pub fn with_version(mut self, version: Version) -> Self {
        self.version = version;
        self
    }

    /// Sets the cap [`bytes`](Self::bytes) applies.
    #[must_use]
    pub fn with_max_body_bytes(mut self, max: u64) -> Self {
        self.max_body_bytes = max;
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The HTTP version the response came over (`HTTP_2` when ALPN chose h2).
    pub fn version(&self) -> Version {
        self.version
    }

    /// The headers (after decompression: `Content-Encoding` and `Content-Length` of an encoded
    /// body are removed).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body length if known: `Content-Length`, else an exact size hint of the body.
    pub fn content_length(&self) -> Option<u64> {
        self.headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .or_else(|| self.body.size_hint().exact())
    }

    /// The cap [`bytes`](Self::bytes) applies.
    pub fn max_body_bytes(&self) -> u64 {
        self.max_body_bytes
    }

    /// Turns a non-2xx status into a [`TransportErrorKind::Status`] error (retry hint: back off
    /// for 5xx and 408, never otherwise). The body is dropped.
    pub fn error_for_status(self) -> Result<Self, TransportError> {
        let status = self.status;
        if status.is_success() {
            return Ok(self);
        }
        let hint = if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
            bcfy_proto::RetryHint::Backoff
        } else {
            bcfy_proto::RetryHint::Never
        };
        Err(TransportError::new(
            TransportErrorKind::Status,
            format!("server answered {status}"),
        )
        .with_status(status)
        .with_retry_hint(hint))
    }

    /// Reads the whole body, up to the response's cap (`TransportConfig::max_body_bytes`);
    /// a longer body fails with `TooLarge` without reading the rest.
    pub async fn bytes(self) -> Result<Bytes, TransportError> {
        let max = self.max_body_bytes;
        self.bytes_limited(max).await
    }

    /// Reads the whole body, failing with `TooLarge` as soon as it exceeds `max` bytes (or at
    /// once when `Content-Length` says it will).
    pub async fn bytes_limited(self, max: u64) -> Result<Bytes, TransportError> {
        let too_large = || {
            TransportError::new(
                TransportErrorKind::TooLarge,
                format!("response body exceeds {max} bytes"),
            )
        };
        if self.content_length().is_some_and(|n| n > max) {
            return Err(too_large());
        }
        let mut body = self.body;
        let mut first: Option<Bytes> = None;
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            let total = first.as_ref().map_or(0, Bytes::len) + buf.len() + data.len();
            if total as u64 > max {
                return Err(too_large());
            }
            // One frame is returned as is; more are gathered in one buffer.
            match first.take() {
                None if buf.is_empty() => first = Some(data),
                Some(f) => {
                    buf.extend_from_slice(&f);
                    buf.extend_from_slice(&data);
                }
                None => buf.extend_from_slice(&data),
            }
        }
        Ok(first.unwrap_or_else(|| buf.freeze()))
    }

    /// The body as a stream of chunks of `chunk_size` bytes (the last one may be shorter;
    /// 0 means [`DEFAULT_CHUNK_SIZE`]). The body is polled only when the stream is, so a slow
    /// consumer slows the download down to its own pace (TCP / HTTP/2 flow control push back
    /// on the server). No cap applies: the caller counts.
    pub fn into_chunks(self, chunk_size: usize) -> BodyChunks {
        let chunk_size = if chunk_size == 0 {
            DEFAULT_CHUNK_SIZE
        } else {
            chunk_size
        };
        BodyChunks {
            body: self.body,
            pending: Bytes::new(),
            buf: BytesMut::new(),
            chunk_size,
            state: ChunkState::Reading,
        }
    }

    /// The body, to read frames directly.
    pub fn into_body(self) -> Body {
        self.body
    }

    /// Status, version, headers and body, taken apart.
    pub fn into_parts(self) -> (StatusCode, Version, HeaderMap, Body) {
        (self.status, self.version, self.headers, self.body)
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("version", &self.version)
            .field("headers", &RedactedHeaders(&self.headers))
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
enum ChunkState {
    Reading,
    Ended,
    /// The body failed; the error is yielded after the bytes buffered before it.
    Failing(Option<TransportError>),
}

/// A stream of buffered body chunks, made by [`Response::into_chunks`]. If the body fails,
/// the bytes received before the failure come first (as a short chunk), then
/// `Err(TransportError)` once, then the stream ends.
pub struct BodyChunks {
    body: Body,
    /// The rest of the last frame: whole chunks are cut from it without a copy.
    pending: Bytes,
    /// A chunk being gathered from several frames (never more than `chunk_size`).
    buf: BytesMut,
    chunk_size: usize,
    state: ChunkState,
}

impl BodyChunks {
    /// The chunk size.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }
}

impl Stream for BodyChunks {
    type Item = Result<Bytes, TransportError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.buf.is_empty() && this.pending.len() >= this.chunk_size {
                return Poll::Ready(Some(Ok(this.pending.split_to(this.chunk_size))));
            }
            if !this.pending.is_empty() {
                let n = (this.chunk_size - this.buf.len()).min(this.pending.len());
                this.buf.extend_from_slice(&this.pending.split_to(n));
            }
            if this.buf.len() >= this.chunk_size {
                return Poll::Ready(Some(Ok(this.buf.split_to(this.chunk_size).freeze())));
            }
            // `pending` is empty here: what was left of it is in `buf`.
            match &mut this.state {
                ChunkState::Reading => {}
                _ if !this.buf.is_empty() => {
                    return Poll::Ready(Some(Ok(this.buf.split().freeze())));
                }
                ChunkState::Ended => return Poll::Ready(None),
                ChunkState::Failing(err) => return Poll::Ready(err.take().map(Err)),
            }
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        this.pending = data;
                    }
                }
                Some(Err(e)) => this.state = ChunkState::Failing(Some(e)),
                None => this.state = ChunkState::Ended,
            }
        }
    }
}

impl fmt::Debug for BodyChunks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyChunks")
            .field("chunk_size", &self.chunk_size)
            .field("buffered", &(self.buf.len() + self.pending.len()))
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    /// A response whose body arrives as `frames`, then fails when `fail` is set.
    fn response(frames: &[&[u8]], fail: bool) -> Response {
        let mut items: Vec<Result<Bytes, TransportError>> = frames
            .iter()
            .map(|f| Ok(Bytes::copy_from_slice(f)))
            .collect();
        if fail {
            items.push(Err(TransportError::new(TransportErrorKind::Body, "reset")));
        }
        Response::new(
            StatusCode::OK,
            HeaderMap::new(),
            Body::from_stream(futures::stream::iter(items)),
        )
    }

    #[tokio::test]
    async fn chunks_are_whole_whatever_the_frames() {
        let data: Vec<u8> = (0..=255u8).cycle().take(100).collect();
        // Frames smaller, larger and much larger than a chunk, empty ones, one frame.
        let splits: [&[usize]; 5] = [
            &[3, 20, 1, 7, 0, 16, 53],
            &[100],
            &[8; 12],
            &[0, 9, 91],
            &[1; 100],
        ];
        for sizes in splits {
            let mut frames = Vec::new();
            let mut at = 0;
            for &n in sizes {
                let n = n.min(data.len() - at);
                frames.push(&data[at..at + n]);
                at += n;
            }
            frames.push(&data[at..]);
            for fail in [false, true] {
                let chunks: Vec<_> = response(&frames, fail).into_chunks(8).collect().await;
                let (ok, err): (Vec<_>, Vec<_>) = chunks.into_iter().partition(Result::is_ok);
                let ok: Vec<Bytes> = ok.into_iter().map(Result::unwrap).collect();
                assert_eq!(err.len(), usize::from(fail), "{sizes:?}");
                assert!(ok[..ok.len() - 1].iter().all(|c| c.len() == 8), "{sizes:?}");
                assert_eq!(ok.last().map(Bytes::len), Some(4), "{sizes:?}");
                assert_eq!(ok.concat(), data, "{sizes:?}");
            }
        }
    }
}
