//! An axum gateway whose handlers call an upstream through `palisade::Client`.
//!
//! Run: `cargo run --example axum_gateway`
//! (options: `-- --upstream http://host:port` to proxy a real upstream
//! instead of the built-in flaky one, `--serve` to keep serving until Ctrl-C
//! instead of running the demo and exiting, `--listen 127.0.0.1:3000` to
//! choose the gateway's address instead of a free port).
//!
//! What it shows:
//!
//! - **Outbound resilience.** `GET /api/{path}` forwards to the upstream's
//!   `/{path}` through a `palisade::Client` with the standard stack: a 503
//!   from the upstream is retried, a slow upstream times out.
//! - **Deadline propagation.** `InheritDeadlineLayer` on the router reads the
//!   caller's `x-request-timeout-ms` header; the client's deadline layer
//!   inherits it, so an outbound call never outlives the request that made
//!   it. A caller that allows 300 ms gets a `504` after 300 ms, not after the
//!   upstream's 2 s.
//! - **Router protection with palisade's keyed layers.** The same
//!   `ConcurrencyLimitLayer` and `RateLimitLayer` that protect upstreams in
//!   the client stack protect the router, keyed by the caller's `x-tenant`
//!   header: one tenant at its limit is shed (`503`) or rate limited (`429`)
//!   while the others are served. Both layers are generic over the request
//!   body, so they wrap axum's `Body` as they are. Their error type is
//!   `BoxError`, and axum requires infallible services, so
//!   `HandleErrorLayer` turns their refusals (`Overloaded`, `QueueTimeout`,
//!   `RateLimited`) into responses.
//!
//! Without `--serve`, it starts a `palisade_chaos::FlakyServer` as the
//! upstream, serves the gateway on a free port, sends a few requests to it,
//! prints what they got and exits.

use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use palisade::concurrency::ConcurrencyLimitLayer;
use palisade::concurrency::limit::Limit;
use palisade::core::error::{Overloaded, QueueTimeout, RateLimited, find};
use palisade::core::{BoxError, Key};
use palisade::ratelimit::{Quota, RateLimitLayer};
use palisade::timeout::InheritDeadlineLayer;
use serde_json::json;
use tower::ServiceBuilder;

/// The header that names the caller's tenant: the key of the router's limits.
pub(crate) const TENANT: &str = "x-tenant";

/// The gateway's settings.
#[derive(Debug, Clone)]
pub(crate) struct GatewayConfig {
    /// Requests in flight per tenant.
    pub(crate) concurrency_per_tenant: usize,
    /// Requests waiting for a slot per tenant; more are shed at once.
    pub(crate) queue_per_tenant: usize,
    /// How long a queued request waits at most (and never past its deadline).
    pub(crate) queue_wait: Duration,
    /// Each tenant's request rate; requests over it are refused at once.
    pub(crate) rate_per_tenant: Quota,
    /// The longest deadline a caller may ask for.
    pub(crate) max_deadline: Duration,
}

impl GatewayConfig {
    /// Production-like settings.
    pub(crate) fn new() -> Result<Self, BoxError> {
        Ok(Self {
            concurrency_per_tenant: 32,
            queue_per_tenant: 64,
            queue_wait: Duration::from_secs(1),
            rate_per_tenant: Quota::per_second(100)?.with_burst(50)?,
            max_deadline: Duration::from_secs(30),
        })
    }
}

/// The key of the router's limits: the caller's tenant, or one shared key
/// for callers that do not say.
fn tenant(req: &http::Request<axum::body::Body>) -> Key {
    req.headers()
        .get(TENANT)
        .and_then(|v| v.to_str().ok())
        .map_or_else(Key::global, Key::from)
}

/// The gateway: `GET /api/{path}` forwarded to `client`'s base URL, behind
/// per-tenant concurrency and rate limits, with the caller's deadline
/// inherited by the outbound calls.
pub(crate) fn router(client: palisade::Client, config: &GatewayConfig) -> Result<Router, BoxError> {
    let protect = ServiceBuilder::new()
        // axum needs infallible services: refusals become responses here.
        .layer(HandleErrorLayer::new(refused))
        // Outside the concurrency limit, so a request over its rate holds no slot.
        .layer(
            RateLimitLayer::builder(config.rate_per_tenant)
                .reject()
                .key_fn(tenant)
                .build()?,
        )
        .layer(
            ConcurrencyLimitLayer::builder()
                .limit(Limit::fixed(config.concurrency_per_tenant))
                .max_queue(config.queue_per_tenant)
                .max_wait(config.queue_wait)
                .key_fn(tenant)
                .build()?,
        );
    Ok(Router::new()
        .route("/api/{*path}", get(forward))
        .with_state(client)
        .layer(protect)
        // Outermost, so the queue wait above is clamped to the caller's
        // deadline too, and the handler runs in the deadline's scope.
        .layer(
            InheritDeadlineLayer::builder()
                .max(config.max_deadline)
                .build()?,
        ))
}

/// Forwards the request to the upstream through the palisade client.
async fn forward(State(client): State<palisade::Client>, Path(path): Path<String>) -> Response {
    // Read for the response only: the client's deadline layer picks the
    // inherited deadline up by itself.
    let budget_ms = palisade::timeout::inherit::current().map(|d| d.remaining().as_millis() as u64);
    match client.get(&path).send().await {
        Ok(res) => {
            let status = res.status().as_u16();
            let attempts = palisade::attempts(&res);
            match res.text().await {
                Ok(body) => (
                    StatusCode::OK,
                    axum::Json(json!({
                        "upstream_status": status,
                        "attempts": attempts,
                        "budget_ms": budget_ms,
                        "body": body,
                    })),
                )
                    .into_response(),
                Err(e) => error_response(StatusCode::BAD_GATEWAY, "body", &e.to_string(), None),
            }
        }
        Err(e) => {
            use palisade::Kind;
            let status = match e.kind() {
                Kind::DeadlineExceeded | Kind::Timeout => StatusCode::GATEWAY_TIMEOUT,
                Kind::CircuitOpen
                | Kind::RateLimited
                | Kind::Overloaded
                | Kind::QueueTimeout
                | Kind::BudgetExhausted
                | Kind::Shutdown => StatusCode::SERVICE_UNAVAILABLE,
                Kind::InvalidRequest => StatusCode::BAD_REQUEST,
                _ => StatusCode::BAD_GATEWAY,
            };
            error_response(status, e.kind().as_str(), &e.to_string(), e.retry_after())
        }
    }
}

/// The router's own refusals, from its keyed limits.
async fn refused(err: BoxError) -> Response {
    let err: &(dyn std::error::Error + 'static) = &*err;
    if let Some(e) = find::<RateLimited>(err) {
        error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            &e.to_string(),
            e.retry_after,
        )
    } else if let Some(e) = find::<Overloaded>(err) {
        error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            &e.to_string(),
            None,
        )
    } else if let Some(e) = find::<QueueTimeout>(err) {
        error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_timeout",
            &e.to_string(),
            None,
        )
    } else {
        error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &err.to_string(),
            None,
        )
    }
}

fn error_response(
    status: StatusCode,
    kind: &str,
    message: &str,
    retry_after: Option<Duration>,
) -> Response {
    let mut res = (
        status,
        axum::Json(json!({ "error": kind, "message": message })),
    )
        .into_response();
    if let Some(after) = retry_after {
        // Whole seconds, rounded up: `Retry-After` has no finer unit.
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    res
}

/// The gateway's outbound client. Its retries start at 100 ms rather than
/// the default 2 s so the demo stays short; everything else is the default
/// stack, whose deadline layer inherits the caller's deadline.
pub(crate) fn client(upstream: &str) -> Result<palisade::Client, BoxError> {
    let base = if upstream.ends_with('/') {
        upstream.to_owned()
    } else {
        format!("{upstream}/")
    };
    let retry = palisade::retry::RetryLayer::builder()
        .base_delay(Duration::from_millis(100))
        .build_layer()?;
    Ok(palisade::Client::builder()
        .base_url(&base)
        .stack(|s| s.retry(Some(retry)))
        .build()?)
}

/// Scripts the built-in upstream: a healthy route, a flaky one and a slow one.
pub(crate) fn script_upstream(server: &palisade_chaos::FlakyServer) {
    use palisade_chaos::{Behavior, Script};
    server.script(
        "/items",
        Script::always(Behavior::ok(r#"{"items":[1,2,3]}"#)),
    );
    server.script(
        "/flaky",
        Script::new()
            .then(Behavior::status(503))
            .then(Behavior::ok("recovered")),
    );
    server.script(
        "/slow",
        Script::always(Behavior::ok("slow").with_latency(Duration::from_secs(2))),
    );
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut upstream = None;
    let mut serve = false;
    let mut listen = "127.0.0.1:0".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--upstream" => upstream = Some(args.next().ok_or("--upstream needs a URL")?),
            "--serve" => serve = true,
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }

    // Kept alive for as long as the gateway runs.
    let mut flaky = None;
    let upstream = match upstream {
        Some(u) => u,
        None => {
            let server = palisade_chaos::FlakyServer::start().await?;
            script_upstream(&server);
            let url = server.url("/");
            flaky = Some(server);
            url
        }
    };

    let mut config = GatewayConfig::new()?;
    if !serve {
        // Small enough for the demo to show shedding with three requests.
        config.concurrency_per_tenant = 2;
        config.queue_per_tenant = 0;
    }
    let app = router(client(&upstream)?, &config)?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let addr = listener.local_addr()?;
    println!("gateway on http://{addr}/api/{{path}} -> {upstream}{{path}}");

    if serve {
        println!("serving until Ctrl-C");
        axum::serve(listener, app).await?;
        return Ok(());
    }
    tokio::spawn(async move { axum::serve(listener, app).await });

    let caller = reqwest::Client::new();
    let base = format!("http://{addr}/api");
    let show = |what: &str, res: Result<reqwest::Response, reqwest::Error>| {
        let what = what.to_owned();
        async move {
            match res {
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    println!("{what:<58} -> {status} {body}");
                }
                Err(e) => println!("{what:<58} -> error: {e}"),
            }
        }
    };

    show(
        "GET /api/items",
        caller.get(format!("{base}/items")).send().await,
    )
    .await;
    show(
        "GET /api/flaky (503, then 200: retried)",
        caller.get(format!("{base}/flaky")).send().await,
    )
    .await;
    show(
        "GET /api/items with x-request-timeout-ms: 5000",
        caller
            .get(format!("{base}/items"))
            .header("x-request-timeout-ms", "5000")
            .send()
            .await,
    )
    .await;
    show(
        "GET /api/slow with x-request-timeout-ms: 300",
        caller
            .get(format!("{base}/slow"))
            .header("x-request-timeout-ms", "300")
            .send()
            .await,
    )
    .await;

    // Three at once from one tenant, over its limit of two: one is shed.
    let calls = (0..3).map(|_| {
        caller
            .get(format!("{base}/slow"))
            .header(TENANT, "acme")
            .send()
    });
    let other = caller
        .get(format!("{base}/items"))
        .header(TENANT, "globex")
        .send();
    let (acme, globex) = tokio::join!(futures_util::future::join_all(calls), other);
    for (i, res) in acme.into_iter().enumerate() {
        show(&format!("GET /api/slow, tenant acme, #{}", i + 1), res).await;
    }
    show("GET /api/items, tenant globex, meanwhile", globex).await;

    if let Some(server) = &flaky {
        println!(
            "upstream saw: /items {} request(s), /flaky {}, /slow {}",
            server.stats("/items").attempts,
            server.stats("/flaky").attempts,
            server.stats("/slow").attempts,
        );
    }
    Ok(())
}
