//! Bounded bodies: a size cap on every buffered read, and a bound on the
//! decompression ratio.
//!
//! A hostile or broken upstream must not be able to make a client allocate
//! until the process dies: a 20 GB JSON page, a body with no
//! `Content-Length` that never ends, a 10 MB gzip body that decodes to
//! 10 GB.
//!
//! - **Buffered reads are capped** ([`DEFAULT_MAX_BODY`], 64 MiB, unless
//!   [`ClientBuilder::max_body`](crate::ClientBuilder::max_body) or
//!   [`RequestBuilder::max_body`](crate::RequestBuilder::max_body) says
//!   otherwise): `send_json`, pagination pages, batch results
//!   ([`Fetched`](crate::Fetched)), the blocking client's `bytes`, `text`
//!   and `json`, and [`ResponseExt`] for a response from `send()`. A
//!   `Content-Length` above the cap fails at once, before any of the body is
//!   read; without one, or when it lies, the read fails as soon as it passes
//!   the cap. The cap counts decoded bytes.
//! - **Decompression is bounded.** Once past
//!   [`DEFAULT_RATIO_GRACE`] (1 MiB) of decoded bytes, a body that decodes
//!   to more than [`DEFAULT_MAX_DECOMPRESSION_RATIO`] (100) times the bytes
//!   it arrived as fails: a decompression bomb is refused after about 1 MiB,
//!   whatever reads it, in flat memory.
//! - **Streaming is not capped** by default: a download to a writer or a
//!   `chunk()` loop already runs in flat memory.
//!   [`ClientBuilder::cap_streams`](crate::ClientBuilder::cap_streams)
//!   applies the cap to them too.
//!
//! Both failures are [`Kind::BodyTooLarge`], with a [`BodyTooLarge`] as the
//! error's source ([`Error::body_too_large`]). They happen after the stack
//! returned a response, so they are never retried and never count as a
//! breaker failure of the host.
//!
//! ```no_run
//! # async fn run() -> Result<(), palisade::Error> {
//! use palisade::limit::ResponseExt as _;
//!
//! let client = palisade::Client::builder().max_body(8 << 20).build()?;
//! // A larger cap for one request, read through `send()`.
//! let res = client.get("https://example.com/big.json").max_body(256 << 20).send().await?;
//! let body = res.capped_bytes().await?;
//! # let _ = body; Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use http_body::{Body as HttpBody, Frame, SizeHint};
use palisade_core::BoxError;
use pin_project_lite::pin_project;
use serde::de::DeserializeOwned;
use tower_http::decompression::{Decompression, DecompressionBody};

use crate::error::{Error, Kind};

/// The default cap on a buffered body: 64 MiB of decoded bytes.
///
/// Large enough for any JSON document an API sends in one response (GitHub
/// and Stripe pages are well under 10 MiB), small enough that a few dozen
/// concurrent reads of a hostile upstream cannot exhaust an ordinary
/// container. Larger payloads belong in a streaming download.
pub const DEFAULT_MAX_BODY: u64 = 64 << 20;

/// The default bound on the decompression ratio: 100 decoded bytes per byte
/// on the wire.
///
/// Ordinary content compresses far less (JSON and HTML 3–20:1, logs up to
/// about 50:1), while a gzip bomb decodes at about 1000:1 and brotli or zstd
/// bombs at much more.
pub const DEFAULT_MAX_DECOMPRESSION_RATIO: u32 = 100;

/// How many decoded bytes a body may produce before the ratio is checked:
/// 1 MiB, so a small, very compressible answer (a page of zeros, a
/// repetitive JSON array) is never refused.
pub const DEFAULT_RATIO_GRACE: u64 = 1 << 20;

/// What `Accept-Encoding` a request carries when it sets none: every coding
/// the client decodes.
pub(crate) const ACCEPT_ENCODING: &str = "gzip, br, zstd, deflate";

/// The client's body limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_body: u64,
    pub(crate) max_ratio: u32,
    pub(crate) ratio_grace: u64,
    pub(crate) cap_streams: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: DEFAULT_MAX_BODY,
            max_ratio: DEFAULT_MAX_DECOMPRESSION_RATIO,
            ratio_grace: DEFAULT_RATIO_GRACE,
            cap_streams: false,
        }
    }
}

impl Limits {
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.max_ratio == 0 {
            return Err(Error::config(
                "max_decompression_ratio must be at least 1 (1 allows no growth at all past \
                 the grace; u32::MAX in effect turns the bound off)",
            ));
        }
        Ok(())
    }
}

/// The cap a response's buffered reads apply, carried in its extensions:
/// the request's own, else the client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MaxBody(u64);

/// What made a body too large.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// `Content-Length` announced more than the cap.
    Announced(u64),
    /// The bytes read passed the cap.
    Read,
    /// The body decoded to more than `ratio` times its wire bytes.
    Ratio { ratio: u32, wire: u64 },
}

/// A body refused for its size: the source of a [`Kind::BodyTooLarge`]
/// error ([`Error::body_too_large`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyTooLarge {
    limit: u64,
    read: u64,
    cause: Cause,
}

impl BodyTooLarge {
    /// The cap the body passed: the size cap in bytes, or for a
    /// decompression bomb the ratio bound ([`max_ratio`](Self::max_ratio)).
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// How many (decoded) bytes had been read when the body was refused; 0
    /// when its `Content-Length` refused it before reading.
    pub fn read(&self) -> u64 {
        self.read
    }

    /// The `Content-Length` that refused the body before it was read.
    pub fn content_length(&self) -> Option<u64> {
        match self.cause {
            Cause::Announced(n) => Some(n),
            _ => None,
        }
    }

    /// For a decompression bomb: the ratio bound it passed.
    pub fn max_ratio(&self) -> Option<u32> {
        match self.cause {
            Cause::Ratio { ratio, .. } => Some(ratio),
            _ => None,
        }
    }

    /// For a decompression bomb: how many bytes had arrived on the wire.
    pub fn wire_bytes(&self) -> Option<u64> {
        match self.cause {
            Cause::Ratio { wire, .. } => Some(wire),
            _ => None,
        }
    }

    /// Whether the body was refused as a decompression bomb.
    pub fn is_decompression_bomb(&self) -> bool {
        matches!(self.cause, Cause::Ratio { .. })
    }
}

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cause {
            Cause::Announced(n) => write!(
                f,
                "the body's Content-Length of {n} bytes is over the limit of {} bytes",
                self.limit
            ),
            Cause::Read => write!(
                f,
                "the body is over the limit of {} bytes ({} bytes read)",
                self.limit, self.read
            ),
            Cause::Ratio { ratio, wire } => write!(
                f,
                "decompression bomb: {} bytes decoded from {wire} bytes on the wire, over the \
                 ratio limit of {ratio}:1",
                self.read
            ),
        }
    }
}

impl std::error::Error for BodyTooLarge {}

fn too_large(limit: u64, read: u64) -> BodyTooLarge {
    BodyTooLarge {
        limit,
        read,
        cause: Cause::Read,
    }
}

impl Error {
    fn too_large(err: BodyTooLarge, url: &reqwest::Url) -> Self {
        Error::new(Kind::BodyTooLarge)
            .with_source(err)
            .with_url(Some(url.clone()))
    }
}

/// Reads `res`'s whole body, up to `limit` decoded bytes (the response's
/// own limit when `None`); `already` bytes of it were read before.
pub(crate) async fn read(
    mut res: reqwest::Response,
    limit: Option<u64>,
    already: u64,
) -> Result<Bytes, Error> {
    let limit = limit.unwrap_or_else(|| max_body(&res));
    let url = res.url().clone();
    // A decoded body has no Content-Length left (the decoder removes it);
    // the read below still counts its decoded bytes.
    let announced = res
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if let Some(n) = announced
        && n.saturating_add(already) > limit
    {
        return Err(Error::too_large(
            BodyTooLarge {
                limit,
                read: 0,
                cause: Cause::Announced(n),
            },
            &url,
        ));
    }
    // Preallocated from the announced length, but never more than 1 MiB:
    // a length that lies must not reserve the cap up front.
    let hint = announced.unwrap_or(0).min(limit).min(1 << 20);
    let mut buf = BytesMut::with_capacity(usize::try_from(hint).unwrap_or(0));
    let mut read = already;
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| crate::download::read_error(e, &url))?
    {
        read = read.saturating_add(chunk.len() as u64);
        if read > limit {
            return Err(Error::too_large(too_large(limit, read), &url));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The limit on `res`'s buffered reads: the one its request or client set,
/// else [`DEFAULT_MAX_BODY`].
pub fn max_body(res: &reqwest::Response) -> u64 {
    res.extensions()
        .get::<MaxBody>()
        .map_or(DEFAULT_MAX_BODY, |m| m.0)
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for reqwest::Response {}
}

/// Buffered reads of a `reqwest::Response` from
/// [`RequestBuilder::send`](crate::RequestBuilder::send), capped at the response's
/// [`max_body`]: the request's own cap, else the client's. Use these in
/// place of reqwest's `bytes()`, `text()` and `json()`, which read without
/// a bound.
pub trait ResponseExt: sealed::Sealed + Sized {
    /// The whole body, or [`Kind::BodyTooLarge`] past the cap.
    fn capped_bytes(self) -> impl Future<Output = Result<Bytes, Error>> + Send;

    /// The whole body as text (invalid UTF-8 is replaced), or
    /// [`Kind::BodyTooLarge`] past the cap.
    fn capped_text(self) -> impl Future<Output = Result<String, Error>> + Send;

    /// The whole body decoded from JSON, or [`Kind::BodyTooLarge`] past the
    /// cap, or [`Kind::Decode`].
    fn capped_json<T: DeserializeOwned>(self) -> impl Future<Output = Result<T, Error>> + Send;
}

impl ResponseExt for reqwest::Response {
    fn capped_bytes(self) -> impl Future<Output = Result<Bytes, Error>> + Send {
        read(self, None, 0)
    }

    async fn capped_text(self) -> Result<String, Error> {
        let bytes = read(self, None, 0).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn capped_json<T: DeserializeOwned>(self) -> Result<T, Error> {
        let url = self.url().clone();
        let bytes = read(self, None, 0).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::from_body(e.into(), true).with_url(Some(url)))
    }
}

pin_project! {
    /// A body that counts the bytes it yields: the wire bytes under the
    /// decoder.
    struct Counted<B> {
        #[pin]
        inner: B,
        bytes: u64,
    }
}

impl<B> HttpBody for Counted<B>
where
    B: HttpBody<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(Ok(f)) = &frame
            && let Some(d) = f.data_ref()
        {
            *this.bytes = this.bytes.saturating_add(d.len() as u64);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// The body a caller reads: decoded (or not), with the ratio bound and,
    /// when streams are capped, the size cap.
    struct Guarded {
        #[pin]
        inner: DecompressionBody<Counted<reqwest::Body>>,
        decoding: bool,
        decoded: u64,
        max_ratio: u32,
        ratio_grace: u64,
        cap: Option<u64>,
        done: bool,
    }
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if let Some(Ok(f)) = &frame
            && let Some(d) = f.data_ref()
        {
            *this.decoded = this.decoded.saturating_add(d.len() as u64);
            let wire = this.inner.get_ref().bytes;
            let refused = if *this.decoding
                && *this.decoded > *this.ratio_grace
                && *this.decoded > wire.saturating_mul(u64::from(*this.max_ratio))
            {
                Some(BodyTooLarge {
                    limit: u64::from(*this.max_ratio),
                    read: *this.decoded,
                    cause: Cause::Ratio {
                        ratio: *this.max_ratio,
                        wire,
                    },
                })
            } else {
                this.cap
                    .filter(|cap| *this.decoded > *cap)
                    .map(|cap| too_large(cap, *this.decoded))
            };
            if let Some(err) = refused {
                // The decoder and what it holds are released with the
                // body; nothing more is read.
                *this.done = true;
                return Poll::Ready(Some(Err(err.into())));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Decodes the final response of a logical request when the client
/// negotiated its coding (`negotiated`), bounds the ratio, caps streams when
/// asked, and records `max_body` for buffered reads.
/// Whether `res` needs [`guard`]'s decoder or stream cap; otherwise
/// [`mark`] is all it needs, with no future to await.
pub(crate) fn needs_guard(
    res: &http::Response<reqwest::Body>,
    negotiated: bool,
    limits: &Limits,
) -> bool {
    limits.cap_streams || (negotiated && res.headers().contains_key(CONTENT_ENCODING))
}

/// Records `max_body` on `res` for [`ResponseExt`]'s reads. The default
/// needs no extension (`max_body` falls back to it), which spares the
/// common response an allocation.
pub(crate) fn mark(
    mut res: http::Response<reqwest::Body>,
    max_body: u64,
) -> http::Response<reqwest::Body> {
    if max_body != DEFAULT_MAX_BODY {
        res.extensions_mut().insert(MaxBody(max_body));
    }
    res
}

pub(crate) async fn guard(
    res: http::Response<reqwest::Body>,
    negotiated: bool,
    limits: &Limits,
    max_body: u64,
) -> http::Response<reqwest::Body> {
    let cap = limits.cap_streams.then_some(max_body);
    let encoded = negotiated && res.headers().contains_key(CONTENT_ENCODING);
    let res = if encoded || cap.is_some() {
        // tower-http's decompression, the decoder reqwest runs internally,
        // applied to a response already received: a one-shot service hands
        // it over. Without negotiation every coding is off, so the body
        // passes through as it came.
        let mut once = Some(res.map(|b| Counted { inner: b, bytes: 0 }));
        let decode = Decompression::new(tower::service_fn(move |_: http::Request<()>| {
            std::future::ready(once.take().ok_or("the response was already taken"))
        }))
        .gzip(negotiated)
        .br(negotiated)
        .zstd(negotiated)
        .deflate(negotiated);
        match tower::ServiceExt::oneshot(decode, http::Request::new(())).await {
            Ok(decoded) => {
                // tower-http removes Content-Encoding when it decodes, and
                // keeps it for a coding it does not know.
                let decoding = encoded && !decoded.headers().contains_key(CONTENT_ENCODING);
                decoded.map(|inner| {
                    reqwest::Body::wrap(Guarded {
                        inner,
                        decoding,
                        decoded: 0,
                        max_ratio: limits.max_ratio,
                        ratio_grace: limits.ratio_grace,
                        cap,
                        done: false,
                    })
                })
            }
            // Unreachable: the service answers exactly once.
            Err(_) => http::Response::new(reqwest::Body::from(Bytes::new())),
        }
    } else {
        res
    };
    mark(res, max_body)
}
