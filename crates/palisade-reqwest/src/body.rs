//! The response body the transport returns, and the request body conversion.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use palisade_core::{Body, TransportError};

use crate::error::transport_error;

/// The streaming response body of [`ReqwestService`](crate::ReqwestService).
///
/// Frames come straight from reqwest, never buffered. A failure mid-body
/// (a reset, a truncated body, reqwest's read timeout) is a
/// [`TransportError`] of the matching kind whose source is the
/// `reqwest::Error`. [`Default`] is an empty body.
#[derive(Default)]
pub struct ResponseBody {
    inner: reqwest::Body,
}

impl ResponseBody {
    /// Wraps a reqwest body.
    pub fn new(inner: reqwest::Body) -> Self {
        Self { inner }
    }

    /// Returns the reqwest body.
    pub fn into_inner(self) -> reqwest::Body {
        self.inner
    }
}

impl From<reqwest::Body> for ResponseBody {
    fn from(inner: reqwest::Body) -> Self {
        Self::new(inner)
    }
}

impl From<ResponseBody> for reqwest::Body {
    fn from(body: ResponseBody) -> Self {
        body.inner
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = TransportError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, TransportError>>> {
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map(|f| f.map(|r| r.map_err(transport_error)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Turns the stack's request [`Body`] into a `reqwest::Body`.
///
/// A buffered body is handed over as `Bytes`, without copying, and sent
/// with its `Content-Length`. A streaming body is streamed (and, being a
/// palisade [`Body`], keeps what it sends for a replay up to its cap).
pub fn into_reqwest_body(body: Body) -> reqwest::Body {
    if let Some(bytes) = body.as_bytes() {
        return reqwest::Body::from(bytes.clone());
    }
    if body.is_streaming() {
        return reqwest::Body::wrap(body);
    }
    reqwest::Body::default()
}
