//! Three clients, as three processes of a fleet would be, share one quota of
//! 5 requests a second (burst 5) through Redis.
//!
//! ```text
//! cargo run -p palisade-redis --example fleet_quota
//! ```
//!
//! Uses the Redis at `REDIS_URL` when set; otherwise starts a throwaway
//! `redis-server` on a free loopback port (persistence off) and stops it at
//! the end. Each client has its own Redis connection and its own rate-limit
//! layer; only Redis is shared. Each sends 10 requests at once: the upstream
//! sees the first 5 at once, then 5 a second in total, whichever client they
//! come from.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::{Body, BoxError};
use palisade_ratelimit::{Quota, RateLimitLayer};
use palisade_redis::RedisBackend;
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// A throwaway redis-server, killed on drop.
struct LocalRedis(Child);

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn redis_url() -> Result<(String, Option<LocalRedis>), BoxError> {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return Ok((url, None));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "no REDIS_URL and could not start redis-server ({e}); \
                 install it with `apt-get install -y redis-server`"
            )
        })?;
    let guard = LocalRedis(child);
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok((format!("redis://127.0.0.1:{port}/"), Some(guard)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err("redis-server did not start".into())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (url, _redis) = redis_url().await?;
    let quota = Quota::per_second(5)?.with_burst(5)?;
    let start = Instant::now();
    // What the upstream saw: (client, time since start).
    let seen: Arc<Mutex<Vec<(usize, Duration)>>> = Arc::default();

    let mut clients = Vec::new();
    for id in 1..=3 {
        let backend = RedisBackend::builder(redis::Client::open(url.as_str())?)
            .namespace("fleet-quota-example")
            .build()?;
        backend.ping().await?;
        let limit = RateLimitLayer::builder(quota)
            .wait(Duration::from_secs(30))
            .backend(backend)
            .build()?;
        let seen = seen.clone();
        let upstream = service_fn(move |_req: http::Request<Body>| {
            seen.lock().unwrap().push((id, start.elapsed()));
            std::future::ready(Ok::<_, BoxError>(http::Response::new(Body::empty())))
        });
        clients.push((id, ServiceBuilder::new().layer(limit).service(upstream)));
    }

    let mut tasks = Vec::new();
    for (_, client) in &clients {
        for _ in 0..10 {
            let client = client.clone();
            let req = http::Request::get("https://api.example.com/items").body(Body::empty())?;
            tasks.push(tokio::spawn(client.oneshot(req)));
        }
    }
    for t in tasks {
        t.await??;
    }

    let seen = seen.lock().unwrap();
    println!("second | requests the upstream saw (client ids)");
    let last = seen.iter().map(|(_, t)| t.as_secs()).max().unwrap_or(0);
    for s in 0..=last {
        let ids: Vec<String> = seen
            .iter()
            .filter(|(_, t)| t.as_secs() == s)
            .map(|(id, _)| id.to_string())
            .collect();
        println!("{s:>6} | {:>2} [{}]", ids.len(), ids.join(" "));
    }
    let per_client: Vec<usize> = (1..=3)
        .map(|id| seen.iter().filter(|(c, _)| *c == id).count())
        .collect();
    let elapsed = seen.iter().map(|(_, t)| *t).max().unwrap_or_default();
    println!(
        "{} requests from 3 clients ({per_client:?} each) in {:.2} s: the burst of 5, then 5/s shared",
        seen.len(),
        elapsed.as_secs_f64()
    );
    let stats: Vec<_> = clients.iter().map(|(_, c)| c.backend().stats()).collect();
    println!(
        "redis decisions per client: {:?}",
        stats.iter().map(|s| s.decisions).collect::<Vec<_>>()
    );
    Ok(())
}
