//! Loopback throughput: bare reqwest against palisade's default stack,
//! reqwest-middleware + reqwest-retry and tower-resilience's stack over
//! reqwest, over real HTTP/1.1 to a local hyper server
//! (`palisade_chaos::FlakyServer` answering `200 ok`), in one run.
//!
//! Each round sends `--requests` GETs (default 50 000) per client with
//! `--in-flight` (default 64) in flight: that many tasks on a multi-thread
//! runtime, each taking the next request number from a shared counter. The
//! clients take turns in slices of `--slice` requests (default 5 000), so
//! that the load other processes put on the machine, which drifts over
//! seconds, falls on every client alike; a client's throughput in a round is
//! its requests over the time its slices took. The median of `--rounds`
//! (default 5) rounds is reported, in requests per second and as a ratio to
//! bare reqwest built with the same pool settings as palisade's transport.
//!
//! The clients, with the key their results are written under:
//!
//! | client | key |
//! |---|---|
//! | bare reqwest with palisade's `PoolConfig` (the baseline) | `reqwest` |
//! | bare reqwest, `reqwest::Client::new()` | `reqwest_default` |
//! | `palisade_reqwest::ReqwestService` alone (tower adapter, no facade) | `reqwest_service` |
//! | palisade's standard layers in `ServiceBuilder` over `ReqwestService` | `stack_palisade` |
//! | `palisade::Client` with its default stack | `palisade` |
//! | `palisade::Client` with no layer (`StackConfig::bare()`) | `palisade_bare` |
//! | reqwest-middleware 0.5 + reqwest-retry 0.9 (3 retries) | `middleware` |
//! | tower-resilience 0.13's stack over reqwest | `resilience` |
//! | the same, its breaker reading the last 100 calls | `resilience_count` |
//!
//! tower-resilience's stack is retry (outermost), circuit breaker, bulkhead
//! and time limiter, in palisade's order and with palisade's defaults as far
//! as its settings reach (4 attempts, breaker at a 10 % failure ratio over
//! 30 s and at least 100 calls, 100 at once, 10 s per attempt: see
//! `resilience_stack`), over a `tower::service_fn` that sends with the same
//! pooled reqwest client as the baseline. Its retry needs `Req: Clone`,
//! which `http::Request<palisade::Body>` is not, so this stack takes
//! `http::Request<Bytes>`, which reqwest converts into its own request. Its
//! time-based breaker window keeps one record per call and scans the window
//! on every call, so its cost grows with the calls of the last 30 s; the
//! `resilience_count` row reads tower-resilience's default count-based
//! window instead.
//!
//! Run: `cargo run --release -p palisade-bench --bin loopback`
//! (`-- --requests 50000 --in-flight 64 --rounds 5 --slice 5000` to change
//! the workload, `--only NAME` to run only the clients whose name contains
//! `NAME`, besides the baseline). It prints a markdown table on stdout and
//! each round's figures on stderr, and writes `loopback.json` with
//! `palisade_bench::results::Results`, for each client that ran:
//!
//! - `<key>_rps`: median requests per second over the rounds;
//! - `<key>_ratio`: median over the rounds of its requests per second
//!   divided by bare reqwest's in the same round; `<key>_ratio_min`,
//!   `<key>_ratio_max`: the lowest and highest of those ratios;
//! - `<key>_errors`: requests that failed, over all rounds;
//! - `<key>_connections_per_1000`: new connections per 1 000 requests;
//!
//! and `requests` (per client per round), `in_flight`, `rounds`, `slice`,
//! and the texts `cmd` (the command that reproduces the figures) and
//! `resilience_note` (how tower-resilience was set up).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use palisade::breaker::BreakerLayer;
use palisade::concurrency::ConcurrencyLimitLayer;
use palisade::retry::RetryLayer;
use palisade::timeout::{AttemptTimeoutLayer, BodyTimeoutLayer, DeadlineLayer};
use palisade_bench::peers::{self, RESILIENCE_NOTE, Window};
use palisade_bench::results::{Results, load_average, median};
use palisade_chaos::{Behavior, FlakyServer, Script};
use palisade_core::Body;
use palisade_reqwest::{PoolConfig, ReqwestService};
use reqwest_retry::RetryTransientMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The clients compared. Each sends a GET and reads the body to its end.
#[derive(Clone)]
enum Peer {
    Reqwest(reqwest::Client),
    Middleware(reqwest_middleware::ClientWithMiddleware),
    Palisade(palisade::Client),
    /// A tower stack over `palisade_reqwest::ReqwestService`, without the
    /// facade: to tell the facade's cost from the layers' and the adapter's.
    Tower(Stack),
    /// tower-resilience's stack over reqwest.
    Resilience(ResilienceStack),
}

/// tower-resilience's stack, boxed: it takes the cloneable
/// `http::Request<Bytes>` its retry needs.
type ResilienceStack = BoxCloneSyncService<http::Request<Bytes>, reqwest::Response, BoxError>;

type Stack = BoxCloneSyncService<
    http::Request<Body>,
    http::Response<UnsyncBoxBody<Bytes, BoxError>>,
    BoxError,
>;

impl Peer {
    async fn get(&self, url: &str) -> Result<(), BoxError> {
        let res = match self {
            Self::Reqwest(c) => c.get(url).send().await?,
            Self::Middleware(c) => c.get(url).send().await?,
            Self::Palisade(c) => c.get(url).send().await?,
            Self::Tower(stack) => {
                let req = http::Request::get(url).body(Body::empty())?;
                let res = stack.clone().oneshot(req).await?;
                if !res.status().is_success() {
                    return Err(format!("status {}", res.status()).into());
                }
                std::hint::black_box(res.into_body().collect().await?.to_bytes());
                return Ok(());
            }
            Self::Resilience(stack) => {
                let req = http::Request::get(url).body(Bytes::new())?;
                stack.clone().oneshot(req).await?
            }
        };
        if !res.status().is_success() {
            return Err(format!("status {}", res.status()).into());
        }
        std::hint::black_box(res.bytes().await?);
        Ok(())
    }
}

/// Boxes a stack whose response body is any `Bytes` body.
fn boxed<S, B>(svc: S) -> Stack
where
    S: Service<http::Request<Body>, Response = http::Response<B>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    BoxCloneSyncService::new(
        svc.map_err(Into::into)
            .map_response(|res: http::Response<B>| {
                res.map(|b| b.map_err(Into::into).boxed_unsync())
            }),
    )
}

/// tower-resilience 0.13's stack (`palisade_bench::peers` says how it is
/// set up) over a `tower::service_fn` sending with `client`.
fn resilience_stack(client: reqwest::Client, window: Window) -> ResilienceStack {
    let send = tower::service_fn(move |req: http::Request<Bytes>| {
        let client = client.clone();
        async move { client.execute(reqwest::Request::try_from(req)?).await }
    });
    let stack = peers::resilience_stack(send, window);
    BoxCloneSyncService::new(stack.map_err(BoxError::from))
}

#[derive(Clone, Copy)]
struct Args {
    requests: usize,
    in_flight: usize,
    rounds: usize,
    slice: usize,
    /// Only the clients whose name contains this (and the baseline), e.g. to
    /// profile one of them.
    only: Option<&'static str>,
}

const USAGE: &str =
    "usage: loopback [--requests N] [--in-flight N] [--rounds N] [--slice N] [--only NAME]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        requests: 50_000,
        in_flight: 64,
        rounds: 5,
        slice: 5_000,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let slot = match flag.as_str() {
            "--requests" => &mut args.requests,
            "--in-flight" => &mut args.in_flight,
            "--rounds" => &mut args.rounds,
            "--slice" => &mut args.slice,
            "--only" => {
                let name = it.next().ok_or("--only needs a value")?;
                args.only = Some(String::leak(name));
                continue;
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        };
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        *slot = value
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(format!("{flag} needs a positive integer, got {value:?}"))?;
    }
    args.slice = args.slice.min(args.requests);
    Ok(args)
}

/// What one slice measured.
struct Slice {
    elapsed: Duration,
    errors: usize,
    connections: u64,
}

/// Sends `requests` GETs to `path` with `in_flight` of them in flight.
async fn slice(
    peer: &Peer,
    server: &FlakyServer,
    path: &str,
    requests: usize,
    in_flight: usize,
) -> Slice {
    server.script(path, Script::always(Behavior::ok("ok")));
    let url: Arc<str> = server.url(path).into();
    let next = Arc::new(AtomicUsize::new(0));
    let connections = server.connections_accepted();
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..in_flight.min(requests) {
        let (peer, url, next) = (peer.clone(), url.clone(), next.clone());
        tasks.spawn(async move {
            let mut errors = 0;
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                if peer.get(&url).await.is_err() {
                    errors += 1;
                }
            }
            errors
        });
    }
    let mut errors = 0;
    while let Some(res) = tasks.join_next().await {
        errors += res.expect("a load task panicked");
    }
    let elapsed = start.elapsed();
    let attempts = server.stats(path).attempts as usize;
    assert!(
        attempts >= requests - errors,
        "the server saw {attempts} requests for {requests} sent"
    );
    Slice {
        elapsed,
        errors,
        connections: server.connections_accepted() - connections,
    }
}

/// One client compared: its name in the table, its key in the results.
struct Client {
    name: &'static str,
    key: &'static str,
    peer: Peer,
}

fn clients(pool: &PoolConfig) -> Result<Vec<Client>, BoxError> {
    // The baseline: reqwest with the pool settings palisade's default stack
    // uses, and like palisade's transport following no redirects itself.
    let reqwest_pooled = || -> Result<reqwest::Client, BoxError> {
        Ok(pool
            .client_builder()?
            .redirect(reqwest::redirect::Policy::none())
            .build()?)
    };
    let retry = RetryTransientMiddleware::new_with_policy(
        ExponentialBackoff::builder().build_with_max_retries(3),
    );
    let middleware = reqwest_middleware::ClientBuilder::new(reqwest_pooled()?)
        .with(retry)
        .build();
    let secs = Duration::from_secs;
    let adapter = ReqwestService::new(reqwest_pooled()?);
    let standard = ServiceBuilder::new()
        .layer(DeadlineLayer::new(secs(30))?)
        .layer(RetryLayer::default())
        .layer(BreakerLayer::new())
        .layer(ConcurrencyLimitLayer::default())
        .layer(AttemptTimeoutLayer::new(secs(10))?)
        .layer(BodyTimeoutLayer::default())
        .service(ReqwestService::new(reqwest_pooled()?));
    let client = |name, key, peer| Client { name, key, peer };
    Ok(vec![
        client(
            "bare reqwest (palisade's PoolConfig)",
            "reqwest",
            Peer::Reqwest(reqwest_pooled()?),
        ),
        client(
            "bare reqwest (`reqwest::Client::new()`)",
            "reqwest_default",
            Peer::Reqwest(reqwest::Client::new()),
        ),
        client(
            "`ReqwestService` alone (tower adapter, no facade)",
            "reqwest_service",
            Peer::Tower(boxed(adapter)),
        ),
        client(
            "standard layers in `ServiceBuilder` over `ReqwestService`",
            "stack_palisade",
            Peer::Tower(boxed(standard)),
        ),
        client(
            "palisade default stack (`palisade::Client`)",
            "palisade",
            Peer::Palisade(palisade::Client::new()?),
        ),
        client(
            "palisade, no layer (`StackConfig::bare()`)",
            "palisade_bare",
            Peer::Palisade(
                palisade::Client::builder()
                    .stack(|_| palisade::StackConfig::bare())
                    .build()?,
            ),
        ),
        client(
            "reqwest-middleware 0.5 + reqwest-retry 0.9 (3 retries)",
            "middleware",
            Peer::Middleware(middleware),
        ),
        client(
            "tower-resilience 0.13 stack over reqwest",
            "resilience",
            Peer::Resilience(resilience_stack(reqwest_pooled()?, Window::Time)),
        ),
        client(
            "tower-resilience 0.13 stack over reqwest, count-based breaker window",
            "resilience_count",
            Peer::Resilience(resilience_stack(reqwest_pooled()?, Window::Count)),
        ),
    ])
}

/// The command that reproduces this run.
fn command() -> String {
    let mut cmd = String::from("cargo run --release -p palisade-bench --bin loopback --");
    for arg in std::env::args().skip(1) {
        cmd.push(' ');
        cmd.push_str(&arg);
    }
    cmd
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let server = FlakyServer::start().await?;
    let mut peers = clients(&PoolConfig::default())?;
    if let Some(only) = args.only {
        let mut i = 0;
        peers.retain(|c| {
            i += 1;
            i == 1 || c.name.contains(only)
        });
    }
    let n = peers.len();
    let mut results = Results::new("loopback");

    // Warm-up: connections opened, code paged in, allocator settled.
    for (i, c) in peers.iter().enumerate() {
        let requests = (args.requests / 10).max(args.in_flight);
        slice(
            &c.peer,
            &server,
            &format!("/warm/{i}"),
            requests,
            args.in_flight,
        )
        .await;
    }

    let slices = args.requests.div_ceil(args.slice);
    let mut rps = vec![Vec::new(); n];
    let mut ratios = vec![Vec::new(); n];
    let mut conns = vec![0u64; n];
    let mut errors = vec![0; n];
    for round in 0..args.rounds {
        let mut elapsed = vec![Duration::ZERO; n];
        let mut sent = vec![0; n];
        for s in 0..slices {
            let requests = args.slice.min(args.requests - s * args.slice);
            for k in 0..n {
                // Rotate who goes first, so no client always follows another.
                let i = (round + s + k) % n;
                let path = format!("/r{round}/s{s}/c{i}");
                let r = slice(&peers[i].peer, &server, &path, requests, args.in_flight).await;
                elapsed[i] += r.elapsed;
                sent[i] += requests;
                conns[i] += r.connections;
                errors[i] += r.errors;
            }
        }
        let this: Vec<f64> = (0..n)
            .map(|i| sent[i] as f64 / elapsed[i].as_secs_f64())
            .collect();
        for i in 0..n {
            rps[i].push(this[i]);
            ratios[i].push(this[i] / this[0]);
            eprintln!(
                "round {round}: {:<70} {:>7.0} req/s, ratio {:.3}",
                peers[i].name, this[i], ratios[i][round]
            );
        }
    }

    let base = median(&rps[0]);
    println!(
        "Loopback, HTTP/1.1, {} requests per client per round in slices of {}, {} in flight, \
         {} rounds, medians; {} CPU(s), load average {} before and {} after.\n",
        args.requests,
        args.slice,
        args.in_flight,
        args.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        match results.values.get("load_before") {
            Some(palisade_bench::results::Value::Text(t)) => t.as_str(),
            _ => "?",
        },
        load_average(),
    );
    println!(
        "| client | median req/s | ratio to bare reqwest | median per-round ratio (min–max) | new connections per 1 000 requests | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let total = (args.requests * args.rounds) as f64;
    for (i, c) in peers.iter().enumerate() {
        let m = median(&rps[i]);
        let ratio = median(&ratios[i]);
        let lo = ratios[i].iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios[i].iter().copied().fold(0.0, f64::max);
        let per_1000 = conns[i] as f64 * 1000.0 / total;
        println!(
            "| {} | {m:.0} | {:.3} | {ratio:.3} ({lo:.3}–{hi:.3}) | {per_1000:.1} | {} |",
            c.name,
            m / base,
            errors[i],
        );
        results
            .number(&format!("{}_rps", c.key), m)
            .number(&format!("{}_ratio", c.key), ratio)
            .number(&format!("{}_ratio_min", c.key), lo)
            .number(&format!("{}_ratio_max", c.key), hi)
            .number(&format!("{}_errors", c.key), errors[i] as f64)
            .number(&format!("{}_connections_per_1000", c.key), per_1000);
    }
    results
        .number("requests", args.requests as f64)
        .number("in_flight", args.in_flight as f64)
        .number("rounds", args.rounds as f64)
        .number("slice", args.slice as f64)
        .text("cmd", command())
        .text("resilience_note", RESILIENCE_NOTE);
    let path = results.write()?;
    eprintln!("results written to {}", path.display());
    Ok(())
}
