//! A blocking client, for synchronous code and worker processes.
//!
//! [`Client`] is [`crate::Client`] driven by a runtime of its own, as
//! `reqwest::blocking` is: the same stack, the same defaults, the same
//! conveniences (batches, pagination, downloads), with calls that block the
//! calling thread until they finish. It fits a sync program, a CLI, or a
//! task-queue worker (Celery-style) that has no async runtime.
//!
//! # Not inside an async runtime
//!
//! Blocking a thread of an async runtime stalls every task on it, and
//! deadlocks when the request needs one of those tasks (a test server on a
//! `current_thread` runtime, say). So every blocking call first checks
//! whether the calling thread is in a tokio runtime context and, if so,
//! returns a [`Kind::InvalidRequest`] error that says so, instead of
//! blocking. This includes threads of `tokio::task::spawn_blocking`, which
//! carry the runtime's context: there, use the async [`crate::Client`], or
//! a thread of your own (`std::thread::spawn`).
//!
//! Dropping the client inside a runtime is allowed: its runtime then shuts
//! down in the background.
//!
//! ```no_run
//! # fn run() -> Result<(), palisade::Error> {
//! let client = palisade::blocking::Client::builder()
//!     .base_url("https://api.example.com/v1/")
//!     .build()?;
//! let res = client.get("items/1").send()?;
//! println!("{}: {}", res.status(), res.text()?);
//! for item in client.paginate::<serde_json::Value>(client.get("items"), palisade::Pagination::link()) {
//!     println!("{}", item?);
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::AsyncWrite;

use crate::auth::Auth;
use crate::batch::{FetchUnordered, Fetched};
use crate::error::{Error, Kind};
use crate::paginate::{Paginate as AsyncPaginate, Pagination};
use crate::stack::{Description, StackConfig};

/// The number of runtime worker threads by default: 2. They run the
/// connections and timers; the requests themselves run on the calling
/// threads.
pub const DEFAULT_WORKER_THREADS: usize = 2;

/// The client's runtime. It shuts down in the background when dropped
/// inside another runtime, where a blocking shutdown would panic.
struct Runtime(Option<tokio::runtime::Runtime>);

impl Runtime {
    fn block_on<F: Future>(&self, f: F) -> Result<F::Output, Error> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::new(Kind::InvalidRequest).with_message(
                "palisade::blocking::Client was called from inside an async runtime, \
                 where blocking would stall or deadlock it: use the async palisade::Client there, \
                 or call from a thread outside the runtime",
            ));
        }
        match &self.0 {
            Some(rt) => Ok(rt.block_on(f)),
            None => Err(Error::new(Kind::Shutdown).with_message("the blocking runtime is gone")),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            rt.shutdown_background();
        }
    }
}

/// A blocking HTTP client with palisade's standard stack. See the
/// [module docs](self).
///
/// Cloning is cheap, and clones share everything, the runtime included.
/// Calls may be made from many threads at once.
#[derive(Clone)]
pub struct Client {
    // Declared before the runtime, so the async client (and its connection
    // tasks) goes first when the last handle drops.
    inner: crate::Client,
    rt: Arc<Runtime>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("blocking::Client")
            .field(&self.inner)
            .finish()
    }
}

impl Client {
    /// A client with the standard stack and its production defaults.
    pub fn new() -> Result<Self, Error> {
        Self::builder().build()
    }

    /// A builder, starting from the standard stack's defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// A `GET` of `url`: a path relative to the base URL, or an absolute URL.
    pub fn get(&self, url: &str) -> RequestBuilder {
        self.wrap(self.inner.get(url))
    }

    /// A `POST`.
    pub fn post(&self, url: &str) -> RequestBuilder {
        self.wrap(self.inner.post(url))
    }

    /// A `PUT`.
    pub fn put(&self, url: &str) -> RequestBuilder {
        self.wrap(self.inner.put(url))
    }

    /// A `PATCH`.
    pub fn patch(&self, url: &str) -> RequestBuilder {
        self.wrap(self.inner.patch(url))
    }

    /// A `DELETE`.
    pub fn delete(&self, url: &str) -> RequestBuilder {
        self.wrap(self.inner.delete(url))
    }

    /// A `HEAD`.
    pub fn head(&self, url: &str) -> RequestBuilder {
        self.wrap(self.inner.head(url))
    }

    /// A request with any method.
    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        self.wrap(self.inner.request(method, url))
    }

    fn wrap(&self, inner: crate::RequestBuilder) -> RequestBuilder {
        RequestBuilder {
            inner,
            rt: self.rt.clone(),
        }
    }

    /// `GET`s every path, at most
    /// [`DEFAULT_BATCH_CONCURRENCY`](crate::DEFAULT_BATCH_CONCURRENCY) at a
    /// time, and returns one result per path in input order. See
    /// [`crate::Client::get_many`].
    pub fn get_many<I>(&self, paths: I) -> Result<Vec<Result<Fetched, Error>>, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.rt.block_on(self.inner.get_many(paths))
    }

    /// `GET`s every path, all or nothing. See [`crate::Client::try_get_all`].
    pub fn try_get_all<I>(&self, paths: I) -> Result<Vec<Fetched>, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.rt.block_on(self.inner.try_get_all(paths))?
    }

    /// A batch with its own concurrency. See [`crate::Batch`].
    pub fn batch(&self) -> Batch {
        Batch {
            inner: self.inner.batch(),
            rt: self.rt.clone(),
        }
    }

    /// Sends every request, yielding `(index, result)` in completion order.
    /// See [`crate::Client::fetch_unordered`].
    pub fn fetch_unordered<I>(&self, requests: I) -> Unordered
    where
        I: IntoIterator<Item = RequestBuilder>,
        I::IntoIter: Send + 'static,
    {
        Unordered {
            inner: Some(
                self.inner
                    .fetch_unordered(requests.into_iter().map(|rb| rb.inner)),
            ),
            rt: self.rt.clone(),
        }
    }

    /// Every item of a paged listing, fetched a page at a time as the
    /// iterator advances. See [`crate::Client::paginate`].
    pub fn paginate<T>(&self, request: RequestBuilder, pagination: Pagination) -> Paginate<T>
    where
        T: DeserializeOwned + Send + 'static,
    {
        Paginate {
            inner: Some(self.inner.paginate(request.inner, pagination)),
            rt: self.rt.clone(),
        }
    }

    /// A streaming download of `url`, resumed if it breaks. See
    /// [`crate::Download`].
    pub fn download(&self, url: &str) -> Download {
        self.get(url).download()
    }

    /// The composed stack, outermost first.
    pub fn describe(&self) -> &Description {
        self.inner.describe()
    }

    /// Stops admitting requests, waits up to `grace` for those in flight,
    /// then cancels the rest. Returns how many were cancelled. See
    /// [`crate::Client::shutdown`].
    pub fn shutdown(&self, grace: Duration) -> Result<usize, Error> {
        self.rt.block_on(self.inner.shutdown(grace))
    }
}

/// Builds a blocking [`Client`]: the async [`crate::ClientBuilder`]'s
/// settings, and the runtime's.
pub struct ClientBuilder {
    inner: crate::ClientBuilder,
    worker_threads: usize,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("blocking::ClientBuilder")
            .field("inner", &self.inner)
            .field("worker_threads", &self.worker_threads)
            .finish()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl From<crate::ClientBuilder> for ClientBuilder {
    fn from(inner: crate::ClientBuilder) -> Self {
        Self {
            inner,
            worker_threads: DEFAULT_WORKER_THREADS,
        }
    }
}

impl ClientBuilder {
    /// A builder with the standard stack's production defaults.
    pub fn new() -> Self {
        crate::ClientBuilder::new().into()
    }

    /// See [`crate::ClientBuilder::base_url`].
    pub fn base_url(self, url: &str) -> Self {
        self.configure(|b| b.base_url(url))
    }

    /// See [`crate::ClientBuilder::default_header`].
    pub fn default_header(self, name: &str, value: &str) -> Self {
        self.configure(|b| b.default_header(name, value))
    }

    /// See [`crate::ClientBuilder::auth`].
    pub fn auth(self, auth: Auth) -> Self {
        self.configure(|b| b.auth(auth))
    }

    /// See [`crate::ClientBuilder::bearer_token`].
    pub fn bearer_token(self, token: &str) -> Self {
        self.configure(|b| b.bearer_token(token))
    }

    /// See [`crate::ClientBuilder::api_key`].
    pub fn api_key(self, header: &str, key: &str) -> Self {
        self.configure(|b| b.api_key(header, key))
    }

    /// See [`crate::ClientBuilder::max_redirects`].
    pub fn max_redirects(self, n: usize) -> Self {
        self.configure(|b| b.max_redirects(n))
    }

    /// See [`crate::ClientBuilder::max_body`].
    pub fn max_body(self, bytes: u64) -> Self {
        self.configure(|b| b.max_body(bytes))
    }

    /// See [`crate::ClientBuilder::stack`].
    pub fn stack(self, f: impl FnOnce(StackConfig) -> StackConfig) -> Self {
        self.configure(|b| b.stack(f))
    }

    /// See [`crate::ClientBuilder::mount`].
    pub fn mount(self, prefix: &str, config: StackConfig) -> Self {
        self.configure(|b| b.mount(prefix, config))
    }

    /// Any other setting of the async builder, e.g. a test transport.
    pub fn configure(
        mut self,
        f: impl FnOnce(crate::ClientBuilder) -> crate::ClientBuilder,
    ) -> Self {
        self.inner = f(self.inner);
        self
    }

    /// The runtime's worker threads (default [`DEFAULT_WORKER_THREADS`]);
    /// zero is a [`Kind::Config`] error.
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.worker_threads = n;
        self
    }

    /// Starts the runtime and builds the client, validating the whole
    /// configuration.
    pub fn build(self) -> Result<Client, Error> {
        if self.worker_threads == 0 {
            return Err(Error::config(
                "worker_threads must be at least 1: the runtime needs a thread for connections and timers",
            ));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.worker_threads)
            .thread_name("palisade-blocking")
            .enable_all()
            .build()
            .map_err(|e| {
                Error::config("could not start the blocking client's runtime").with_source(e)
            })?;
        // Layers may spawn or arm timers as they are built.
        let inner = {
            let _guard = rt.enter();
            self.inner.build()
        };
        let rt = Arc::new(Runtime(Some(rt)));
        // Built inside the runtime's context, an error may hold nothing
        // runtime-bound; the client, if any, is dropped before the runtime.
        Ok(Client { inner: inner?, rt })
    }
}

/// A request being built, sent with [`send`](Self::send) (blocking). See
/// [`crate::RequestBuilder`].
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    inner: crate::RequestBuilder,
    rt: Arc<Runtime>,
}

impl fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("blocking::RequestBuilder")
            .field(&self.inner)
            .finish()
    }
}

impl RequestBuilder {
    fn map(self, f: impl FnOnce(crate::RequestBuilder) -> crate::RequestBuilder) -> Self {
        Self {
            inner: f(self.inner),
            rt: self.rt,
        }
    }

    /// See [`crate::RequestBuilder::header`].
    pub fn header(self, name: &str, value: &str) -> Self {
        self.map(|r| r.header(name, value))
    }

    /// See [`crate::RequestBuilder::secret_header`].
    pub fn secret_header(self, name: &str, value: &str) -> Self {
        self.map(|r| r.secret_header(name, value))
    }

    /// See [`crate::RequestBuilder::query`].
    pub fn query<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> Self {
        self.map(|r| r.query(pairs))
    }

    /// See [`crate::RequestBuilder::json`].
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Self {
        self.map(|r| r.json(value))
    }

    /// See [`crate::RequestBuilder::body`].
    pub fn body(self, body: impl Into<crate::Body>) -> Self {
        self.map(|r| r.body(body))
    }

    /// See [`crate::RequestBuilder::bytes`].
    pub fn bytes(self, bytes: impl Into<Bytes>) -> Self {
        self.map(|r| r.bytes(bytes))
    }

    /// See [`crate::RequestBuilder::timeout`].
    pub fn timeout(self, attempt_timeout: Duration) -> Self {
        self.map(|r| r.timeout(attempt_timeout))
    }

    /// See [`crate::RequestBuilder::deadline`].
    pub fn deadline(self, deadline: Duration) -> Self {
        self.map(|r| r.deadline(deadline))
    }

    /// See [`crate::RequestBuilder::retries`].
    pub fn retries(self, retries: u32) -> Self {
        self.map(|r| r.retries(retries))
    }

    /// See [`crate::RequestBuilder::max_body`].
    pub fn max_body(self, bytes: u64) -> Self {
        self.map(|r| r.max_body(bytes))
    }

    /// See [`crate::RequestBuilder::idempotency_key`].
    pub fn idempotency_key(self, key: &str) -> Self {
        self.map(|r| r.idempotency_key(key))
    }

    /// Sends the request through the client's stack and waits for the
    /// response head; the body is read from the [`Response`].
    pub fn send(self) -> Result<Response, Error> {
        let res = self.rt.block_on(self.inner.send())??;
        Ok(Response {
            inner: res,
            rt: self.rt,
            pending: Bytes::new(),
        })
    }

    /// Sends the request, fails on a status of 400 or above, and decodes
    /// the body as JSON. See [`crate::RequestBuilder::send_json`].
    pub fn send_json<T: DeserializeOwned>(self) -> Result<T, Error> {
        self.rt.block_on(self.inner.send_json())?
    }

    /// Turns this request into a streaming download. See
    /// [`crate::Download`].
    pub fn download(self) -> Download {
        Download {
            inner: self.inner.download(),
            rt: self.rt,
        }
    }
}

/// A response whose body is read on demand (blocking), also through
/// [`std::io::Read`].
pub struct Response {
    inner: reqwest::Response,
    rt: Arc<Runtime>,
    /// A chunk partly consumed by `Read`.
    pending: Bytes,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("blocking::Response")
            .field(&self.inner)
            .finish()
    }
}

impl Response {
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The final URL, after redirects.
    pub fn url(&self) -> &reqwest::Url {
        self.inner.url()
    }

    /// The body's length, when the server announced it.
    pub fn content_length(&self) -> Option<u64> {
        self.inner.content_length()
    }

    /// How many attempts the stack made for this response.
    pub fn attempts(&self) -> u32 {
        crate::attempts(&self.inner)
    }

    /// Fails with [`Kind::Status`] on a status of 400 or above. See
    /// [`crate::error_for_status`].
    pub fn error_for_status(self) -> Result<Self, Error> {
        let Self { inner, rt, pending } = self;
        Ok(Self {
            inner: crate::error_for_status(inner)?,
            rt,
            pending,
        })
    }

    /// The whole body, up to its cap
    /// ([`ClientBuilder::max_body`](crate::ClientBuilder::max_body)); past it,
    /// [`Kind::BodyTooLarge`].
    pub fn bytes(self) -> Result<Bytes, Error> {
        let Self { inner, rt, pending } = self;
        let rest = rt.block_on(crate::limit::read(inner, None, pending.len() as u64))??;
        if pending.is_empty() {
            return Ok(rest);
        }
        let mut all = Vec::with_capacity(pending.len() + rest.len());
        all.extend_from_slice(&pending);
        all.extend_from_slice(&rest);
        Ok(all.into())
    }

    /// The whole body as text (invalid UTF-8 is replaced), up to its cap.
    pub fn text(self) -> Result<String, Error> {
        let bytes = self.bytes()?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The whole body decoded from JSON, up to its cap.
    pub fn json<T: DeserializeOwned>(self) -> Result<T, Error> {
        let url = self.inner.url().clone();
        let bytes = self.bytes()?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::from_body(e.into(), true).with_url(Some(url)))
    }

    /// Copies the body into `w` chunk by chunk; returns the bytes copied.
    pub fn copy_to<W: io::Write + ?Sized>(&mut self, w: &mut W) -> Result<u64, Error> {
        let url = self.inner.url().clone();
        let mut n = 0;
        loop {
            let chunk = if self.pending.is_empty() {
                match self
                    .rt
                    .block_on(self.inner.chunk())?
                    .map_err(|e| crate::download::read_error(e, &url))?
                {
                    Some(c) => c,
                    None => return Ok(n),
                }
            } else {
                std::mem::take(&mut self.pending)
            };
            w.write_all(&chunk).map_err(|e| {
                Error::new(Kind::Body)
                    .with_message("could not write the body to its destination")
                    .with_source(e)
                    .with_url(Some(url.clone()))
            })?;
            n += chunk.len() as u64;
        }
    }
}

impl io::Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pending.is_empty() {
            let next = self
                .rt
                .block_on(self.inner.chunk())
                .map_err(io::Error::other)?
                .map_err(io::Error::other)?;
            match next {
                Some(c) => self.pending = c,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        Ok(n)
    }
}

/// A batch with its own settings (blocking). See [`crate::Batch`].
#[derive(Clone)]
pub struct Batch {
    inner: crate::Batch,
    rt: Arc<Runtime>,
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("blocking::Batch").field(&self.inner).finish()
    }
}

impl Batch {
    /// See [`crate::Batch::concurrency`].
    pub fn concurrency(self, n: usize) -> Result<Self, Error> {
        Ok(Self {
            inner: self.inner.concurrency(n)?,
            rt: self.rt,
        })
    }

    /// See [`crate::Batch::error_for_status`].
    pub fn error_for_status(self, enabled: bool) -> Self {
        Self {
            inner: self.inner.error_for_status(enabled),
            rt: self.rt,
        }
    }

    /// See [`crate::Batch::get_many`].
    pub fn get_many<I>(self, paths: I) -> Result<Vec<Result<Fetched, Error>>, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.rt.block_on(self.inner.get_many(paths))
    }

    /// See [`crate::Batch::try_get_all`].
    pub fn try_get_all<I>(self, paths: I) -> Result<Vec<Fetched>, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.rt.block_on(self.inner.try_get_all(paths))?
    }
}

/// Results in completion order (blocking iterator). Created by
/// [`Client::fetch_unordered`]. Called inside an async runtime, it yields one
/// error, with the index `usize::MAX`, and ends.
pub struct Unordered {
    inner: Option<FetchUnordered>,
    rt: Arc<Runtime>,
}

impl fmt::Debug for Unordered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("blocking::Unordered")
            .finish_non_exhaustive()
    }
}

impl Iterator for Unordered {
    type Item = (usize, Result<Fetched, Error>);

    fn next(&mut self) -> Option<Self::Item> {
        let stream = self.inner.as_mut()?;
        match self.rt.block_on(stream.next()) {
            Ok(item) => item,
            Err(e) => {
                self.inner = None;
                // No index to give: the error is about the call, not about
                // one of the requests.
                Some((usize::MAX, Err(e)))
            }
        }
    }
}

/// Every item of a paged listing (blocking iterator). Created by
/// [`Client::paginate`].
pub struct Paginate<T> {
    inner: Option<AsyncPaginate<T>>,
    rt: Arc<Runtime>,
}

impl<T> fmt::Debug for Paginate<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("blocking::Paginate").finish_non_exhaustive()
    }
}

impl<T> Iterator for Paginate<T> {
    type Item = Result<T, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let stream = self.inner.as_mut()?;
        match self.rt.block_on(stream.next()) {
            Ok(item) => item,
            Err(e) => {
                self.inner = None;
                Some(Err(e))
            }
        }
    }
}

/// A streaming download (blocking). See [`crate::Download`].
pub struct Download {
    inner: crate::Download,
    rt: Arc<Runtime>,
}

impl fmt::Debug for Download {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("blocking::Download")
            .field(&self.inner)
            .finish()
    }
}

impl Download {
    /// See [`crate::Download::progress`].
    pub fn progress(self, f: impl FnMut(crate::Progress) + Send + 'static) -> Self {
        Self {
            inner: self.inner.progress(f),
            rt: self.rt,
        }
    }

    /// See [`crate::Download::resume`].
    pub fn resume(self, enabled: bool) -> Self {
        Self {
            inner: self.inner.resume(enabled),
            rt: self.rt,
        }
    }

    /// See [`crate::Download::max_resumes`].
    pub fn max_resumes(self, n: u32) -> Self {
        Self {
            inner: self.inner.max_resumes(n),
            rt: self.rt,
        }
    }

    /// Streams the body into `writer`. See [`crate::Download::to_writer`].
    pub fn to_writer<W: io::Write + ?Sized>(
        self,
        writer: &mut W,
    ) -> Result<crate::Downloaded, Error> {
        let mut w = SyncWriter(writer);
        self.rt.block_on(self.inner.to_writer(&mut w))?
    }

    /// Streams the body into a file. See [`crate::Download::to_file`].
    pub fn to_file(self, path: impl AsRef<Path>) -> Result<crate::Downloaded, Error> {
        self.rt.block_on(self.inner.to_file(path))?
    }
}

/// A `std::io::Write` as an `AsyncWrite`. Writing blocks the polling thread,
/// which is the caller's own thread inside `block_on`, never a runtime
/// worker.
struct SyncWriter<'a, W: ?Sized>(&'a mut W);

impl<W: io::Write + ?Sized> AsyncWrite for SyncWriter<'_, W> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.get_mut().0.write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.get_mut().0.flush())
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}
