//! [`FlakyServer`]: a real HTTP server on loopback that misbehaves on cue.

mod body;
mod script;
mod stats;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use body::ChaosBody;
pub use script::{Behavior, Script};
use script::{Kind, Latency};
pub use stats::RouteStats;

/// The default seed of the server's random latency.
pub const DEFAULT_SEED: u64 = 0x5eed;

/// How much of each request body the stats keep.
const BODY_KEEP: usize = 64 * 1024;

/// A real HTTP/1.1 and HTTP/2 (prior knowledge) server on `127.0.0.1`, on a
/// free port, that answers each route by its [`Script`] and counts what it
/// sees in [`RouteStats`].
///
/// It is the upstream for palisade's integration tests, the `palisade demo`
/// command, the examples and the benchmarks: it produces the faults a mock
/// cannot, such as a TCP reset, a stalled or truncated body, a slow trickle
/// and multi-GiB streams. It runs on the current tokio runtime and shuts down,
/// closing every connection, when dropped.
///
/// ```
/// use palisade_chaos::{Behavior, FlakyServer, Script};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// let server = FlakyServer::start().await?;
/// server.script(
///     "/flaky",
///     Script::new()
///         .then(Behavior::retry_after_secs(503, 1))
///         .then(Behavior::ok("fine")),
/// );
/// let url = server.url("/flaky");
/// assert!(url.starts_with("http://127.0.0.1:"));
/// // ... send requests to `url` ...
/// assert_eq!(server.stats("/flaky").attempts, 0);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FlakyServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

/// Configures a [`FlakyServer`] before it starts.
#[derive(Debug, Clone)]
pub struct FlakyServerBuilder {
    seed: u64,
}

impl Default for FlakyServerBuilder {
    fn default() -> Self {
        Self { seed: DEFAULT_SEED }
    }
}

impl FlakyServerBuilder {
    /// Seeds the generator behind [`Behavior::with_random_latency`], so a run
    /// is repeatable. Default: [`DEFAULT_SEED`].
    #[must_use]
    pub const fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// If the socket cannot be bound.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub async fn start(self) -> io::Result<FlakyServer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            routes: Mutex::new(HashMap::new()),
            rng: Mutex::new(SmallRng::seed_from_u64(self.seed)),
            connections: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(FlakyServer {
            addr,
            shared,
            accept,
        })
    }
}

impl FlakyServer {
    /// Starts a server with the default settings.
    ///
    /// # Errors
    ///
    /// If the socket cannot be bound.
    pub async fn start() -> io::Result<Self> {
        Self::builder().start().await
    }

    /// A builder, to set the seed.
    pub fn builder() -> FlakyServerBuilder {
        FlakyServerBuilder::default()
    }

    /// The address the server listens on.
    pub const fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` followed by `path` (a leading `/` is added if
    /// missing).
    pub fn url(&self, path: &str) -> String {
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("http://{}{slash}{path}", self.addr)
    }

    /// Sets the script of the route `path` (the URL path, without query).
    /// It replaces any earlier script and starts from its first behaviour;
    /// the route's stats are kept.
    pub fn script(&self, path: &str, script: Script) {
        let mut routes = self.shared.lock_routes();
        let route = routes.entry(path.to_owned()).or_default();
        route.script = script;
        route.served = 0;
    }

    /// A snapshot of the route's counters (all zero for a route never hit).
    pub fn stats(&self, path: &str) -> RouteStats {
        self.shared
            .lock_routes()
            .get(path)
            .map(|r| r.stats.clone())
            .unwrap_or_default()
    }

    /// Requests received on every route together.
    pub fn total_attempts(&self) -> u64 {
        self.shared
            .lock_routes()
            .values()
            .map(|r| r.stats.attempts)
            .sum()
    }

    /// TCP connections accepted so far. With a pooling client this stays
    /// far below the number of requests.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }
}

impl Drop for FlakyServer {
    fn drop(&mut self) {
        // Dropping the accept task drops its JoinSet, which aborts every
        // connection task and so closes every socket.
        self.accept.abort();
    }
}

#[derive(Debug)]
struct Shared {
    routes: Mutex<HashMap<String, Route>>,
    rng: Mutex<SmallRng>,
    connections: AtomicU64,
}

#[derive(Debug, Default)]
struct Route {
    script: Script,
    served: u64,
    stats: RouteStats,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide the server's counters from the
    // assertions that follow.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn lock_routes(&self) -> MutexGuard<'_, HashMap<String, Route>> {
        lock(&self.routes)
    }

    /// Records the arrival and picks the behaviour. Returns the index of the
    /// stats' body slot to fill.
    fn begin(
        self: &Arc<Self>,
        path: &str,
        idempotency_key: Option<String>,
    ) -> (Option<Behavior>, InFlight, usize) {
        let mut routes = self.lock_routes();
        let route = routes.entry(path.to_owned()).or_default();
        let behavior = route.script.step(route.served).cloned();
        route.served += 1;
        let s = &mut route.stats;
        s.attempts += 1;
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        s.timestamps.push(Instant::now());
        if let Some(k) = idempotency_key {
            s.idempotency_keys.push(k);
        }
        s.bodies.push(Bytes::new());
        let slot = s.bodies.len() - 1;
        let guard = InFlight {
            shared: self.clone(),
            path: path.to_owned(),
        };
        (behavior, guard, slot)
    }

    fn record_body(&self, path: &str, slot: usize, body: Bytes) {
        if let Some(b) = self
            .lock_routes()
            .get_mut(path)
            .and_then(|r| r.stats.bodies.get_mut(slot))
        {
            *b = body;
        }
    }

    fn latency(&self, latency: Latency) -> Duration {
        match latency {
            Latency::None => Duration::ZERO,
            Latency::Fixed(d) => d,
            Latency::Random { min, max } => {
                let (lo, hi) = (min.as_nanos() as u64, max.as_nanos() as u64);
                Duration::from_nanos(lock(&self.rng).random_range(lo..=hi))
            }
        }
    }
}

/// One request in flight on a route; decrements the gauge when dropped.
pub(crate) struct InFlight {
    shared: Arc<Shared>,
    path: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(r) = self.shared.lock_routes().get_mut(&self.path) {
            r.stats.in_flight = r.stats.in_flight.saturating_sub(1);
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of file descriptors and the like: keep serving the
            // connections we have and try again shortly.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        shared.connections.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        conns.spawn(serve_connection(stream, shared.clone()));
    }
}

/// Per-connection state shared with the request handlers.
#[derive(Debug, Default)]
struct Conn {
    reset: AtomicBool,
    reset_now: Notify,
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let conn = Arc::new(Conn::default());
    let io = TokioIo::new(ResettableIo {
        stream,
        conn: conn.clone(),
    });
    let handler_conn = conn.clone();
    let service =
        hyper::service::service_fn(move |req| handle(shared.clone(), handler_conn.clone(), req));
    let builder = auto::Builder::new(TokioExecutor::new());
    let serving = builder.serve_connection(io, service);
    tokio::select! {
        _ = serving => {}
        // Dropping the connection drops the socket, which the reset flag
        // turned into an abortive close.
        () = conn.reset_now.notified() => {}
    }
}

async fn handle(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Result<Response<ChaosBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let key = req
        .headers()
        .get("idempotency-key")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let (behavior, in_flight, slot) = shared.begin(&path, key);
    let behavior = behavior.unwrap_or_else(|| Behavior::ok("ok"));

    let latency = shared.latency(behavior.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let (status, body, declared) = match behavior.kind {
        Kind::Reset => {
            conn.reset.store(true, Ordering::SeqCst);
            conn.reset_now.notify_one();
            drop(in_flight);
            // The connection task drops this future along with the socket.
            return std::future::pending().await;
        }
        Kind::Full { status, body } => (status, ChaosBody::full(body, in_flight), None),
        Kind::Stream {
            declared,
            sent,
            chunk,
            interval,
            end,
        } => (
            StatusCode::OK,
            ChaosBody::stream(sent, chunk, interval, end, declared.is_some(), in_flight),
            declared,
        ),
    };

    // Read the request body so that the client's upload completes and the
    // stats can show what arrived.
    let mut kept = BytesMut::new();
    let mut incoming = req.into_body();
    while let Some(frame) = incoming.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            let room = BODY_KEEP.saturating_sub(kept.len());
            kept.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    if !kept.is_empty() {
        shared.record_body(&path, slot, kept.freeze());
    }

    let mut res = Response::new(body);
    *res.status_mut() = status;
    if let Some(len) = declared {
        res.headers_mut().insert(header::CONTENT_LENGTH, len.into());
    }
    for (name, value) in behavior.headers {
        res.headers_mut().append(name, value);
    }
    Ok(res)
}

/// The connection's socket; closes with a TCP RST instead of a FIN once a
/// handler asked for a reset.
struct ResettableIo {
    stream: TcpStream,
    conn: Arc<Conn>,
}

impl Drop for ResettableIo {
    fn drop(&mut self) {
        if self.conn.reset.load(Ordering::SeqCst) {
            // A zero linger never blocks: it makes close() send RST at once.
            #[allow(deprecated)]
            let _ = self.stream.set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for ResettableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(seed: u64) -> Shared {
        Shared {
            routes: Mutex::new(HashMap::new()),
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
            connections: AtomicU64::new(0),
        }
    }

    #[test]
    fn random_latency_is_seeded_and_bounded() {
        let (min, max) = (Duration::from_millis(10), Duration::from_millis(50));
        let draw = |s: &Shared| -> Vec<Duration> {
            (0..32)
                .map(|_| s.latency(Latency::Random { min, max }))
                .collect()
        };
        let a = draw(&shared(1));
        assert_eq!(a, draw(&shared(1)), "same seed, same latencies");
        assert_ne!(a, draw(&shared(2)), "another seed, other latencies");
        assert!(a.iter().all(|d| (min..=max).contains(d)));
        assert_eq!(
            shared(1).latency(Latency::Fixed(min)),
            min,
            "fixed latency is exact"
        );
    }
}
