//! Shared helpers for palisade's reliability suite.
//!
//! # Overview
//!
//! The suite lives in `tests/tests/*.rs`, one binary per concern:
//!
//! | file | proves |
//! |---|---|
//! | `cancellation_storm.rs` | dropping requests at any point leaks no permit, probe slot, rate slot or upstream request |
//! | `exactly_once.rs` | a POST without a key reaches the server at most once; every attempt of a keyed one carries the same key |
//! | `retry_storm.rs` | during a full outage retries stay within the budget, and the breaker recovers within one break of the upstream's return |
//! | `bad_input.rs` | hostile headers, URLs and configurations give typed errors, never a panic |
//! | `security.rs` | credentials stay on their origin, TLS is verified by default, keyed state stays bounded |
//! | `tracing_secrets.rs` | secrets never reach captured tracing output or `Debug` |
//! | `soak.rs` | memory stays flat over 1 000 000 requests with random faults |
//! | `conformance_facade.rs` | against nginx and httpbin: credentials stay on their origin, redirects never corrupt a write, one deadline, compression, TLS, defaults that yield |
//!
//! [`servers`] starts the conformance suite's third-party servers: nginx
//! (Debian) and httpbin (PyPI), installed by `scripts/test.sh`.
//!
//! This crate holds what they share: [`MemoryUpstream`], an in-memory
//! upstream that runs on tokio's clock (so tests on a paused clock are
//! deterministic and fast) and counts what it sees, and [`rss_bytes`].
//!
//! Run it with `cargo test -p palisade-tests`.

pub mod servers;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::{Frame, SizeHint};
use palisade_core::{Body, BoxError, TransportError, TransportErrorKind};
use tokio::time::Sleep;

/// What [`MemoryUpstream`] does with one request.
///
/// Built with [`Reply::status`] or [`Reply::error`], then shaped with the
/// `with_*` methods.
#[derive(Debug, Clone)]
pub struct Reply {
    outcome: Result<StatusCode, TransportErrorKind>,
    headers: HeaderMap,
    latency: Duration,
    chunks: u32,
    chunk: Bytes,
    chunk_interval: Duration,
}

impl Reply {
    /// Answers `status` with an empty body.
    ///
    /// # Panics
    ///
    /// If `status` is not a valid status code: a test fixture should fail
    /// where the mistake is written.
    pub fn status(status: u16) -> Self {
        Self {
            outcome: Ok(StatusCode::from_u16(status).expect("a valid status code")),
            headers: HeaderMap::new(),
            latency: Duration::ZERO,
            chunks: 0,
            chunk: Bytes::new(),
            chunk_interval: Duration::ZERO,
        }
    }

    /// `200 OK` with an empty body.
    pub fn ok() -> Self {
        Self::status(200)
    }

    /// Fails with a [`TransportError`] of `kind`, as a transport would.
    pub fn error(kind: TransportErrorKind) -> Self {
        Self {
            outcome: Err(kind),
            ..Self::ok()
        }
    }

    /// Waits `latency` (tokio time) before the response head or the error.
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Adds a response header.
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Sends a body of `chunks` copies of `chunk`, `interval` apart (the
    /// first at once). The request counts as in flight until the body ends
    /// or is dropped.
    #[must_use]
    pub fn with_body(mut self, chunks: u32, chunk: impl Into<Bytes>, interval: Duration) -> Self {
        self.chunks = chunks;
        self.chunk = chunk.into();
        self.chunk_interval = interval;
        self
    }
}

/// One request as [`MemoryUpstream`] saw it (recorded only when built with
/// [`MemoryUpstream::recording`]).
#[derive(Debug, Clone)]
pub struct Seen {
    /// The method.
    pub method: Method,
    /// The full URI, authority included.
    pub uri: Uri,
    /// Every header the stack sent.
    pub headers: HeaderMap,
}

type Respond = dyn Fn(&Request<Body>) -> Reply + Send + Sync;

struct Shared {
    respond: Box<Respond>,
    record: bool,
    calls: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    per_path: Mutex<HashMap<String, u64>>,
    seen: Mutex<Vec<Seen>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A failed assertion on another task must not hide the counters.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An in-memory upstream: a `tower::Service<http::Request<Body>>` that
/// answers each request by a closure, waits on tokio's clock, and counts
/// calls, calls per path, requests in flight (head and body) and their
/// peak.
///
/// Clones share the counters. Give it to
/// [`ClientBuilder::transport`](palisade::ClientBuilder::transport): every
/// layer of the stack still applies.
#[derive(Clone)]
pub struct MemoryUpstream {
    shared: Arc<Shared>,
}

impl fmt::Debug for MemoryUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryUpstream")
            .field("calls", &self.calls())
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

impl MemoryUpstream {
    /// An upstream that answers each request with `respond(&request)`.
    pub fn new(respond: impl Fn(&Request<Body>) -> Reply + Send + Sync + 'static) -> Self {
        Self::build(Box::new(respond), false)
    }

    /// Like [`new`](Self::new), and also records every request's method,
    /// URI and headers ([`seen`](Self::seen)). Memory grows with every
    /// request: not for soaks.
    pub fn recording(respond: impl Fn(&Request<Body>) -> Reply + Send + Sync + 'static) -> Self {
        Self::build(Box::new(respond), true)
    }

    fn build(respond: Box<Respond>, record: bool) -> Self {
        Self {
            shared: Arc::new(Shared {
                respond,
                record,
                calls: AtomicU64::new(0),
                in_flight: AtomicU64::new(0),
                max_in_flight: AtomicU64::new(0),
                per_path: Mutex::new(HashMap::new()),
                seen: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Requests received so far.
    pub fn calls(&self) -> u64 {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// Requests received on `path` so far.
    pub fn calls_to(&self, path: &str) -> u64 {
        lock(&self.shared.per_path).get(path).copied().unwrap_or(0)
    }

    /// Requests whose response (head or body) is not finished or dropped.
    pub fn in_flight(&self) -> u64 {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests in flight at once.
    pub fn max_in_flight(&self) -> u64 {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Every request recorded (see [`recording`](Self::recording)).
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.shared.seen).clone()
    }
}

/// Decrements the in-flight gauge when the request's response is finished
/// or dropped.
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl tower::Service<Request<Body>> for MemoryUpstream {
    type Response = Response<MemoryBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<MemoryBody>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let shared = &self.shared;
        shared.calls.fetch_add(1, Ordering::SeqCst);
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        *lock(&shared.per_path)
            .entry(req.uri().path().to_owned())
            .or_default() += 1;
        if shared.record {
            lock(&shared.seen).push(Seen {
                method: req.method().clone(),
                uri: req.uri().clone(),
                headers: req.headers().clone(),
            });
        }
        let guard = InFlight(shared.clone());
        let reply = (shared.respond)(&req);
        Box::pin(async move {
            if !reply.latency.is_zero() {
                tokio::time::sleep(reply.latency).await;
            }
            let status = match reply.outcome {
                Ok(status) => status,
                Err(kind) => {
                    drop(guard);
                    return Err(TransportError::new(kind, "memory upstream fault").into());
                }
            };
            let body = MemoryBody {
                left: reply.chunks,
                chunk: reply.chunk,
                interval: reply.chunk_interval,
                sleep: None,
                first: true,
                guard: Some(guard),
            };
            let mut res = Response::new(body);
            *res.status_mut() = status;
            *res.headers_mut() = reply.headers;
            Ok(res)
        })
    }
}

/// The response body of [`MemoryUpstream`]: chunks paced on tokio's clock.
pub struct MemoryBody {
    left: u32,
    chunk: Bytes,
    interval: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    first: bool,
    guard: Option<InFlight>,
}

impl fmt::Debug for MemoryBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBody")
            .field("chunks_left", &self.left)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryBody {
    /// An empty body that holds nothing in flight, for a response made up
    /// by a layer in between (such as a `ChaosLayer` status fault).
    fn default() -> Self {
        Self {
            left: 0,
            chunk: Bytes::new(),
            interval: Duration::ZERO,
            sleep: None,
            first: true,
            guard: None,
        }
    }
}

impl http_body::Body for MemoryBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.left == 0 {
            this.guard = None;
            return Poll::Ready(None);
        }
        if !this.first && !this.interval.is_zero() {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(this.interval)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        this.first = false;
        this.left -= 1;
        if this.left == 0 {
            this.guard = None;
        }
        Poll::Ready(Some(Ok(Frame::data(this.chunk.clone()))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(u64::from(self.left) * self.chunk.len() as u64)
    }
}

/// The resident set size of this process, from `VmRSS` in
/// `/proc/self/status`, or `None` where that file does not exist (not
/// Linux).
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[tokio::test(start_paused = true)]
    async fn memory_upstream_counts_and_paces_on_tokio_time() {
        let up = MemoryUpstream::new(|req| {
            if req.uri().path() == "/fail" {
                Reply::error(TransportErrorKind::Reset)
            } else {
                Reply::ok()
                    .with_latency(Duration::from_millis(100))
                    .with_body(3, "ab", Duration::from_millis(10))
            }
        });
        let start = tokio::time::Instant::now();
        let res = up
            .clone()
            .oneshot(Request::get("http://h/x").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        assert_eq!(up.in_flight(), 1, "the body is still to be read");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ababab");
        assert_eq!(start.elapsed(), Duration::from_millis(120));
        assert_eq!(up.in_flight(), 0);

        let err = up
            .clone()
            .oneshot(Request::get("http://h/fail").body(Body::empty()).unwrap())
            .await
            .unwrap_err();
        let t = palisade_core::error::find::<TransportError>(&*err).unwrap();
        assert_eq!(t.kind(), TransportErrorKind::Reset);
        assert_eq!((up.calls(), up.calls_to("/x"), up.in_flight()), (2, 1, 0));
        assert_eq!(up.max_in_flight(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_response_is_no_longer_in_flight() {
        let up = MemoryUpstream::new(|_| Reply::ok().with_latency(Duration::from_secs(1)));
        let fut = up
            .clone()
            .oneshot(Request::get("http://h/").body(Body::empty()).unwrap());
        let _ = tokio::time::timeout(Duration::from_millis(10), fut).await;
        assert_eq!(up.in_flight(), 0);
        assert_eq!(up.calls(), 1);
    }

    #[test]
    fn rss_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(rss_bytes().unwrap() > 0);
        }
    }
}
