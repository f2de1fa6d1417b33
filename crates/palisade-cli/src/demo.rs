//! `palisade demo`: the transport and the classifier against a flaky
//! upstream.
//!
//! For now the requests go through the bare transport, so every fault shows
//! up as the caller would see it without resilience layers. The layers are
//! added here as they land.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use http_body_util::BodyExt;
use palisade_chaos::{Behavior, FlakyServer, Script};
use palisade_core::{Body, Class, Classify, HttpClassifier, TransportErrorKind};
use palisade_reqwest::{PoolConfig, ReqwestService};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

/// Options of `palisade demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How many requests to send (at most 10000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    requests: u32,
    /// Seed of the upstream's random latency, to replay a run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many requests are in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    concurrency: u32,
}

/// A route of the demo upstream and what it does.
struct Route {
    path: &'static str,
    what: &'static str,
    script: Script,
}

fn routes() -> Vec<Route> {
    let jitter =
        |b: Behavior| b.with_random_latency(Duration::from_millis(2), Duration::from_millis(20));
    vec![
        Route {
            path: "/stable",
            what: "always 200, 2-20 ms",
            script: Script::always(jitter(Behavior::ok("ok"))),
        },
        Route {
            path: "/flaky",
            what: "503 + Retry-After twice, then 200 (cycles)",
            script: Script::new()
                .then(Behavior::retry_after_secs(503, 1))
                .then(Behavior::retry_after_secs(503, 1))
                .then(jitter(Behavior::ok("ok")))
                .cycle(),
        },
        Route {
            path: "/throttled",
            what: "429 + Retry-After, then 200 x3 (cycles)",
            script: Script::new()
                .then(Behavior::retry_after_secs(429, 2))
                .times(3, jitter(Behavior::ok("ok")))
                .cycle(),
        },
        Route {
            path: "/resetting",
            what: "connection reset, then 200 x4 (cycles)",
            script: Script::new()
                .then(Behavior::reset())
                .times(4, jitter(Behavior::ok("ok")))
                .cycle(),
        },
        Route {
            path: "/slow",
            what: "200 after 50-150 ms; every 5th body stalls or is cut short",
            script: Script::new()
                .times(
                    3,
                    Behavior::ok("ok")
                        .with_random_latency(Duration::from_millis(50), Duration::from_millis(150)),
                )
                .then(Behavior::stall_mid_body(512))
                .then(Behavior::truncated(4096, 1024))
                .cycle(),
        },
    ]
}

/// Runs the demo and prints its summary.
pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let server = FlakyServer::builder()
        .seed(args.seed)
        .start()
        .await
        .context("cannot start the flaky upstream on 127.0.0.1")?;
    let routes = routes();
    for r in &routes {
        server.script(r.path, r.script.clone());
    }

    // A stalled body would hang forever without a read timeout; 500 ms is
    // far above the upstream's slowest healthy response.
    let client = PoolConfig::new()
        .client_builder()?
        .read_timeout(Duration::from_millis(500))
        .build()
        .context("cannot build the HTTP client")?;
    let transport = ReqwestService::new(client);

    println!(
        "palisade demo: {} requests to a flaky upstream at http://{} (seed {}, {} in flight)",
        args.requests,
        server.addr(),
        args.seed,
        args.concurrency
    );
    println!("layers: none yet (transport + classification only); retry, breaker, rate limit and");
    println!("concurrency layers are wired in as they land.\n");

    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(args.concurrency as usize));
    let mut tasks = JoinSet::new();
    for i in 0..args.requests as usize {
        let url = server.url(routes[i % routes.len()].path);
        let transport = transport.clone();
        let permit = permits.clone().acquire_owned().await?;
        tasks.spawn(async move {
            let class = send(transport, &url).await;
            drop(permit);
            class
        });
    }
    let mut outcomes: BTreeMap<String, u32> = BTreeMap::new();
    while let Some(class) = tasks.join_next().await {
        let class = class.context("a request task panicked")?;
        *outcomes.entry(describe(&class)).or_default() += 1;
    }
    let elapsed = started.elapsed();

    println!(
        "outcome summary ({} requests, {:.2} s)",
        args.requests,
        elapsed.as_secs_f64()
    );
    println!("  {:<40} {:>6}", "class", "count");
    for (class, count) in &outcomes {
        println!("  {class:<40} {count:>6}");
    }
    println!();
    println!("upstream counters");
    println!(
        "  {:<12} {:>8} {:>14}  behaviour",
        "route", "attempts", "max in flight"
    );
    for r in &routes {
        let s = server.stats(r.path);
        println!(
            "  {:<12} {:>8} {:>14}  {}",
            r.path, s.attempts, s.max_in_flight, r.what
        );
    }
    println!(
        "  total attempts {}, TCP connections accepted {}",
        server.total_attempts(),
        server.connections_accepted()
    );
    Ok(())
}

/// Sends one GET and classifies the whole outcome, body included.
async fn send(transport: ReqwestService, url: &str) -> Class {
    let classifier = HttpClassifier::new();
    let req = match http::Request::get(url).body(Body::empty()) {
        Ok(req) => req,
        Err(_) => return Class::Transport(TransportErrorKind::Request),
    };
    match transport.oneshot(req).await {
        Err(err) => classifier.classify_error(&err),
        Ok(res) => {
            let class = classifier.classify_response(&res);
            match res.into_body().collect().await {
                Ok(_) => class,
                Err(err) => classifier.classify_error(&err),
            }
        }
    }
}

fn describe(class: &Class) -> String {
    match class {
        Class::ServerError {
            status,
            retry_after,
        } => with_retry_after(format!("server_error ({})", status.as_u16()), *retry_after),
        Class::RateLimited { retry_after } => {
            with_retry_after("rate_limited (429)".to_owned(), *retry_after)
        }
        Class::ClientError(status) => format!("client_error ({})", status.as_u16()),
        Class::Transport(kind) => format!("transport ({})", kind_name(*kind)),
        other => other.as_str().to_owned(),
    }
}

fn with_retry_after(s: String, retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!("{s}, retry after {} s", d.as_secs()),
        None => s,
    }
}

fn kind_name(kind: TransportErrorKind) -> &'static str {
    match kind {
        TransportErrorKind::Connect => "connect",
        TransportErrorKind::Timeout => "timeout",
        TransportErrorKind::Reset => "reset",
        TransportErrorKind::Truncated => "truncated",
        TransportErrorKind::Request => "request",
        _ => "other",
    }
}
