//! Streaming downloads that resume, and streaming uploads.
//!
//! [`Client::download`] (or [`RequestBuilder::download`]) writes a response
//! body to an [`AsyncWrite`] or a file chunk by chunk, as it arrives: memory
//! stays flat whatever the size. The body passes through the stack's body
//! timeouts like any other response body: the idle timeout, and the
//! request's deadline, which covers the body too. For a large file, give the
//! request a deadline to match (`client.get(url).deadline(..).download()`).
//!
//! # Resume
//!
//! When the transfer breaks mid-body (a reset, a truncated body, a stalled
//! body cut by the body timeout) and the first response said
//! `Accept-Ranges: bytes` and carried a strong `ETag` or a `Last-Modified`,
//! the download asks for the rest: `Range: bytes=<received>-` with
//! `If-Range: <validator>`. It accepts a `206 Partial Content` only when its
//! `Content-Range` starts exactly at the bytes already written, so every byte
//! is written exactly once. A `200` instead means the resource changed (the
//! validator no longer matched): the download starts over, truncating the
//! file; a writer, which cannot be rewound, fails with an error saying so.
//! Without range support or a validator, a broken transfer is an error, and
//! so is a passed deadline, which is a spent time budget rather than a break.
//! Each resume is a new request through the whole stack, with its own
//! deadline; at most [`DEFAULT_MAX_RESUMES`] of them
//! ([`Download::max_resumes`]).
//!
//! # Uploads
//!
//! [`RequestBuilder::body_stream`] and [`RequestBuilder::body_reader`] send
//! a body from a `Stream` of chunks or an [`AsyncRead`] without buffering it.
//! Like every streaming [`Body`], it can be sent again (retried, redirected)
//! only while no more than its replay cap (64 KiB) has been sent; past that
//! the request is sent once and not retried.
//!
//! ```no_run
//! # async fn run() -> Result<(), palisade::Error> {
//! let client = palisade::Client::new()?;
//! let done = client
//!     .download("https://example.com/big.iso")
//!     .progress(|p| eprintln!("{} / {:?} bytes", p.done, p.total))
//!     .to_file("big.iso")
//!     .await?;
//! println!("{} bytes, {} resume(s)", done.bytes(), done.resumes());
//! # Ok(()) }
//! ```

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use http::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, ETAG, HeaderValue, IF_RANGE,
    LAST_MODIFIED, RANGE,
};
use http::{HeaderMap, StatusCode};
use http_body::Frame;
use palisade_core::{Body, BoxError};
use tokio::io::{AsyncRead, AsyncSeekExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::client::{Client, error_for_status};
use crate::error::{Error, Kind};
use crate::request::RequestBuilder;

/// How many times a download resumes (or starts over) after its transfer
/// breaks, unless told otherwise: 5. wget tries 20 times by default, but
/// each resume here is a request the stack already retries on its own.
pub const DEFAULT_MAX_RESUMES: u32 = 5;

/// How far a download has come: passed to the progress callback after every
/// chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Bytes written so far (back to 0 if the download starts over).
    pub done: u64,
    /// The size of the whole body, when the server said it.
    pub total: Option<u64>,
}

/// The outcome of a finished download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Downloaded {
    bytes: u64,
    total: Option<u64>,
    resumes: u32,
    restarts: u32,
}

impl Downloaded {
    /// Bytes written: the whole body.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The size the server announced, if it did.
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    /// How many times the transfer broke and was continued with a range
    /// request (or sent again).
    pub fn resumes(&self) -> u32 {
        self.resumes
    }

    /// How many times the download started over because the resource
    /// changed while it ran.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }
}

type ProgressFn = Box<dyn FnMut(Progress) + Send>;

/// A download being set up. Created by [`Client::download`] or
/// [`RequestBuilder::download`]; run by [`to_writer`](Self::to_writer) or
/// [`to_file`](Self::to_file). See the [module docs](self).
#[must_use = "a download does nothing until it is written somewhere"]
pub struct Download {
    request: RequestBuilder,
    progress: Option<ProgressFn>,
    resume: bool,
    max_resumes: u32,
}

impl fmt::Debug for Download {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Download")
            .field("request", &self.request)
            .field("progress", &self.progress.is_some())
            .field("resume", &self.resume)
            .field("max_resumes", &self.max_resumes)
            .finish()
    }
}

impl Client {
    /// A streaming `GET` of `url` (relative to the base URL, or absolute),
    /// written chunk by chunk and resumed if it breaks. See [`Download`].
    pub fn download(&self, url: &str) -> Download {
        self.get(url).download()
    }
}

impl RequestBuilder {
    /// Turns this request into a streaming download. See [`Download`].
    pub fn download(self) -> Download {
        Download {
            request: self,
            progress: None,
            resume: true,
            max_resumes: DEFAULT_MAX_RESUMES,
        }
    }

    /// Sets the body from a stream of chunks, sent as they come. It is
    /// replayable up to the 64 KiB cap and not retried beyond it.
    pub fn body_stream<S, E>(self, stream: S) -> Self
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.body(Body::wrap(StreamBody {
            stream: Mutex::new(Box::pin(stream)),
        }))
    }

    /// Sets the body from an [`AsyncRead`] (a file, a pipe), read in 64 KiB
    /// chunks as it is sent. It is replayable up to the 64 KiB cap and not
    /// retried beyond it.
    pub fn body_reader<R>(self, reader: R) -> Self
    where
        R: AsyncRead + Send + 'static,
    {
        self.body(Body::wrap(ReaderBody {
            reader: Mutex::new(Box::pin(reader)),
            buf: BytesMut::new(),
            done: false,
        }))
    }
}

impl Download {
    /// Calls `f` after every chunk with the bytes written and the total
    /// when known.
    pub fn progress(mut self, f: impl FnMut(Progress) + Send + 'static) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Whether a broken transfer resumes (default `true`).
    pub fn resume(mut self, enabled: bool) -> Self {
        self.resume = enabled;
        self
    }

    /// How many times a broken transfer resumes at most (default
    /// [`DEFAULT_MAX_RESUMES`]).
    pub fn max_resumes(mut self, n: u32) -> Self {
        self.max_resumes = n;
        self
    }

    /// Streams the body into `writer`, then flushes it.
    ///
    /// A writer cannot be rewound: if the resource changes after bytes were
    /// written, this fails ([`Kind::Body`]) instead of starting over; use
    /// [`to_file`](Self::to_file) for that.
    pub async fn to_writer<W>(self, writer: &mut W) -> Result<Downloaded, Error>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        self.run(&mut Dest::Writer(writer)).await
    }

    /// Streams the body into the file at `path`, created (or truncated)
    /// once the first response arrives, so a failed request leaves no file
    /// behind. If the resource changes mid-way the file is truncated and the
    /// download starts over.
    pub async fn to_file(self, path: impl AsRef<Path>) -> Result<Downloaded, Error> {
        let mut dest: Dest<'_, tokio::fs::File> = Dest::File {
            path: path.as_ref().to_owned(),
            file: None,
        };
        self.run(&mut dest).await
    }

    async fn run<W>(self, dest: &mut Dest<'_, W>) -> Result<Downloaded, Error>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let Download {
            request,
            mut progress,
            resume,
            max_resumes,
        } = self;
        let (client, template) = request.split();
        let template = template?;
        let mut report = |p: Progress| {
            if let Some(f) = progress.as_mut() {
                f(p);
            }
        };
        let mut done: u64 = 0;
        let mut total: Option<u64> = None;
        let mut validator: Option<HeaderValue> = None;
        let mut ranges = false;
        let mut resumes = 0;
        let mut restarts = 0;

        loop {
            let mut req = template.follow_up(&template.url)?;
            let resuming = done > 0;
            if let (true, Some(v)) = (resuming, &validator) {
                req.headers.insert(RANGE, range_from(done));
                req.headers.insert(IF_RANGE, v.clone());
            }
            // Byte offsets and lengths are of the bytes on the wire: a
            // download is never decoded, so a resumed range lines up.
            if !req.headers.contains_key(ACCEPT_ENCODING) {
                req.headers
                    .insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
            }
            let res = client.execute(req).await?;
            let url = res.url().clone();
            let res = if resuming && res.status() == StatusCode::PARTIAL_CONTENT {
                let same = match (&validator, res.headers().get(ETAG)) {
                    (Some(v), Some(etag)) if is_strong_etag(v) => v == etag,
                    _ => true,
                };
                if !same {
                    // The server ignored If-Range; splicing two versions
                    // would corrupt the result.
                    restart(dest, &url, &mut done, &mut restarts).await?;
                    report(Progress { done, total });
                    continue;
                }
                let (start, len) = content_range(res.headers()).ok_or_else(|| {
                    Error::new(Kind::Body)
                        .with_message("206 Partial Content without a valid Content-Range")
                        .with_url(Some(url.clone()))
                })?;
                if start != done || (len.is_some() && total.is_some() && len != total) {
                    return Err(Error::new(Kind::Body)
                        .with_message(format!(
                            "asked to resume at byte {done} of {total:?} but got a range from byte {start} of {len:?}"
                        ))
                        .with_url(Some(url)));
                }
                total = total.or(len);
                res
            } else {
                let res = error_for_status(res)?;
                if res.status() == StatusCode::PARTIAL_CONTENT {
                    return Err(Error::new(Kind::Body)
                        .with_message("206 Partial Content to a request without Range")
                        .with_url(Some(url)));
                }
                if done > 0 {
                    // A full body where the rest was asked for: the
                    // validator no longer matched, the resource changed.
                    restart(dest, &url, &mut done, &mut restarts).await?;
                }
                dest.open().await.map_err(|e| write_error(e, &url))?;
                let headers = res.headers();
                total = content_length(headers);
                validator = validator_of(headers);
                ranges = accepts_ranges(headers);
                report(Progress { done, total });
                res
            };
            match stream_body(res, dest, &mut done, total, &mut report).await {
                Ok(()) => {
                    dest.finish().await.map_err(|e| write_error(e, &url))?;
                    return Ok(Downloaded {
                        bytes: done,
                        total,
                        resumes,
                        restarts,
                    });
                }
                Err(Broken::Write(e)) => return Err(e),
                Err(Broken::Read(e)) => {
                    // With nothing written, sending the request again is
                    // always safe; otherwise only a range request continues
                    // exactly where the bytes stopped.
                    let can_continue = done == 0 || (ranges && validator.is_some());
                    // A passed deadline is the caller's time budget spent,
                    // not a broken transfer.
                    let spent = e.kind() == Kind::DeadlineExceeded;
                    if spent || !(resume && can_continue && resumes < max_resumes) {
                        return Err(e);
                    }
                    resumes += 1;
                }
            }
        }
    }
}

enum Broken {
    /// Reading the body failed: a candidate for resuming.
    Read(Error),
    /// Writing to the destination failed: final.
    Write(Error),
}

async fn stream_body<W>(
    mut res: reqwest::Response,
    dest: &mut Dest<'_, W>,
    done: &mut u64,
    total: Option<u64>,
    report: &mut impl FnMut(Progress),
) -> Result<(), Broken>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let url = res.url().clone();
    loop {
        match res.chunk().await {
            Ok(Some(chunk)) => {
                dest.write(&chunk)
                    .await
                    .map_err(|e| Broken::Write(write_error(e, &url)))?;
                *done += chunk.len() as u64;
                report(Progress { done: *done, total });
            }
            Ok(None) => break,
            Err(e) => return Err(Broken::Read(read_error(e, &url))),
        }
    }
    match total {
        Some(t) if *done < t => Err(Broken::Read(
            Error::new(Kind::Body)
                .with_message(format!("the body ended after {done} of {t} bytes"))
                .with_url(Some(url)),
        )),
        Some(t) if *done > t => Err(Broken::Write(
            Error::new(Kind::Body)
                .with_message(format!("the body is longer than its {t} bytes"))
                .with_url(Some(url)),
        )),
        _ => Ok(()),
    }
}

async fn restart<W>(
    dest: &mut Dest<'_, W>,
    url: &reqwest::Url,
    done: &mut u64,
    restarts: &mut u32,
) -> Result<(), Error>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    match dest.rewind().await {
        Ok(true) => {
            *done = 0;
            *restarts += 1;
            Ok(())
        }
        Ok(false) => Err(Error::new(Kind::Body)
            .with_message(format!(
                "the resource changed after {done} bytes were written, and a writer cannot be rewound to start over (download to a file instead)"
            ))
            .with_url(Some(url.clone()))),
        Err(e) => Err(write_error(e, url)),
    }
}

/// Reading a response body failed. reqwest labels every failure of
/// `chunk()` and `bytes()` as "decode", so the kind is read from the cause
/// instead: a timeout or a passed deadline anywhere in the chain, else
/// [`Kind::Body`] (a reset, a truncation, a stream error).
pub(crate) fn read_error(e: reqwest::Error, url: &reqwest::Url) -> Error {
    Error::from_body(e.into(), false).with_url(Some(url.clone()))
}

fn write_error(e: io::Error, url: &reqwest::Url) -> Error {
    Error::new(Kind::Body)
        .with_message("could not write the download to its destination")
        .with_source(e)
        .with_url(Some(url.clone()))
}

fn range_from(done: u64) -> HeaderValue {
    // Digits, a dash and the "bytes=" prefix are always a valid value.
    HeaderValue::from_str(&format!("bytes={done}-"))
        .unwrap_or_else(|_| HeaderValue::from_static("bytes=0-"))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn accepts_ranges(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT_RANGES)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|unit| unit.trim().eq_ignore_ascii_case("bytes"))
}

fn is_strong_etag(v: &HeaderValue) -> bool {
    v.as_bytes().first() == Some(&b'"')
}

/// The validator for `If-Range`: a strong `ETag`, else `Last-Modified`. A
/// weak `ETag` cannot be used (RFC 9110 section 13.1.5).
fn validator_of(headers: &HeaderMap) -> Option<HeaderValue> {
    headers
        .get(ETAG)
        .filter(|v| is_strong_etag(v))
        .or_else(|| headers.get(LAST_MODIFIED))
        .cloned()
}

/// `Content-Range: bytes <first>-<last>/<length or *>` as `(first, length)`.
fn content_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let v = headers.get(CONTENT_RANGE)?.to_str().ok()?.trim();
    let (unit, rest) = v.split_once(' ')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (range, len) = rest.trim().split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let first: u64 = first.trim().parse().ok()?;
    let last: u64 = last.trim().parse().ok()?;
    let len = match len.trim() {
        "*" => None,
        n => Some(n.parse::<u64>().ok()?),
    };
    if last < first || len.is_some_and(|l| last >= l) {
        return None;
    }
    Some((first, len))
}

/// Where a download goes.
enum Dest<'a, W: ?Sized> {
    Writer(&'a mut W),
    File {
        path: PathBuf,
        file: Option<tokio::fs::File>,
    },
}

impl<W: AsyncWrite + Unpin + ?Sized> Dest<'_, W> {
    async fn open(&mut self) -> io::Result<()> {
        if let Dest::File { path, file } = self
            && file.is_none()
        {
            *file = Some(tokio::fs::File::create(&*path).await?);
        }
        Ok(())
    }

    async fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Dest::Writer(w) => w.write_all(buf).await,
            Dest::File { file: Some(f), .. } => f.write_all(buf).await,
            Dest::File { file: None, .. } => Err(io::Error::other("file not opened")),
        }
    }

    /// Back to an empty destination; `false` when that is impossible.
    async fn rewind(&mut self) -> io::Result<bool> {
        match self {
            Dest::Writer(_) => Ok(false),
            Dest::File { file: Some(f), .. } => {
                f.flush().await?;
                f.set_len(0).await?;
                f.seek(io::SeekFrom::Start(0)).await?;
                Ok(true)
            }
            Dest::File { file: None, .. } => Ok(true),
        }
    }

    async fn finish(&mut self) -> io::Result<()> {
        self.open().await?;
        match self {
            Dest::Writer(w) => w.flush().await,
            Dest::File { file: Some(f), .. } => f.flush().await,
            Dest::File { file: None, .. } => Ok(()),
        }
    }
}

/// A `Stream` of chunks as an `http_body::Body`. The mutex is never locked
/// (only `get_mut`): it makes the body `Sync`, as [`Body::wrap`] requires,
/// without asking the stream to be.
struct StreamBody<S> {
    stream: Mutex<Pin<Box<S>>>,
}

impl<S, E> http_body::Body for StreamBody<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let stream = self
            .get_mut()
            .stream
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match stream.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

const READ_CHUNK: usize = 64 * 1024;

/// An `AsyncRead` as an `http_body::Body`, read `READ_CHUNK` bytes at a
/// time.
struct ReaderBody<R> {
    reader: Mutex<Pin<Box<R>>>,
    buf: BytesMut,
    done: bool,
}

impl<R: AsyncRead> http_body::Body for ReaderBody<R> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let reader = this
            .reader
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if this.buf.capacity() < READ_CHUNK {
            this.buf.reserve(READ_CHUNK);
        }
        this.buf.resize(READ_CHUNK, 0);
        let mut rb = ReadBuf::new(&mut this.buf);
        match reader.as_mut().poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == 0 {
                    this.done = true;
                    this.buf = BytesMut::new();
                    return Poll::Ready(None);
                }
                this.buf.truncate(n);
                Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))))
            }
            Poll::Ready(Err(e)) => {
                this.done = true;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn content_range_is_parsed_and_checked() {
        let cr = |v| content_range(&headers(&[("content-range", v)]));
        assert_eq!(cr("bytes 100-999/1000"), Some((100, Some(1000))));
        assert_eq!(cr("bytes 0-0/*"), Some((0, None)));
        assert_eq!(cr("bytes 100-99/1000"), None, "inverted");
        assert_eq!(cr("bytes 100-1000/1000"), None, "past the end");
        assert_eq!(cr("items 1-2/3"), None, "other unit");
        assert_eq!(cr("bytes */1000"), None, "unsatisfied-range form");
        assert_eq!(content_range(&HeaderMap::new()), None);
    }

    #[test]
    fn weak_etags_are_not_validators_for_if_range() {
        let strong = headers(&[("etag", "\"v1\""), ("last-modified", "x")]);
        assert_eq!(validator_of(&strong).unwrap(), "\"v1\"");
        let weak = headers(&[("etag", "W/\"v1\""), ("last-modified", "Tue, 1 Jan")]);
        assert_eq!(validator_of(&weak).unwrap(), "Tue, 1 Jan");
        assert!(validator_of(&headers(&[("etag", "W/\"v1\"")])).is_none());
    }

    #[test]
    fn accept_ranges_needs_the_bytes_unit() {
        assert!(accepts_ranges(&headers(&[("accept-ranges", "bytes")])));
        assert!(accepts_ranges(&headers(&[(
            "accept-ranges",
            "none, Bytes"
        )])));
        assert!(!accepts_ranges(&headers(&[("accept-ranges", "none")])));
        assert!(!accepts_ranges(&HeaderMap::new()));
    }

    #[test]
    fn range_header_asks_for_the_rest() {
        assert_eq!(range_from(1234), "bytes=1234-");
    }
}
