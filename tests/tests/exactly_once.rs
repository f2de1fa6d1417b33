//! # Exactly-once under chaos
//!
//! A `POST` has side effects, so sending it twice can charge a card twice.
//! Against the real loopback `FlakyServer`, where 20 % of attempts (seeded)
//! end with a TCP reset after the server has read the request head, so the
//! client cannot know whether the server acted:
//!
//! - **1 000 POSTs without an idempotency key**: no request ever reaches
//!   the server more than once (each request has its own route, so
//!   [`RouteStats::attempts`](palisade_chaos::RouteStats) counts one
//!   request's attempts), and a reset comes back to the caller as a
//!   transport error instead of being retried.
//! - **1 000 POSTs with a caller's key**: every attempt of a request
//!   carries that request's key, and the request is retried exactly until
//!   its first answer, so each ends as its script says.
//! - **200 POSTs with keys injected by the retry layer**: every attempt of a
//!   request carries the same generated key, and no two requests share one.
//!
//! The breaker is off here: 20 % failures would open it, and a refused
//! request proves nothing about duplicates. Retries use a 5 ms constant
//! backoff and no budget, so the counts depend only on the seeded scripts.
//! The counts are kept (1 000 + 1 000); they take about a second.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use palisade::retry::{BackoffStrategy, RetryLayer, RetryPolicy};
use palisade::{Client, Kind};
use palisade_chaos::{Behavior, FlakyServer, Script};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const SEED: u64 = 0x000e_01ce;
const MAX_ATTEMPTS: usize = 4;
const REQUESTS: usize = 1_000;

fn retry(inject: bool) -> RetryLayer {
    RetryPolicy::builder()
        .max_attempts(MAX_ATTEMPTS as u32)
        .backoff(BackoffStrategy::Constant)
        .base_delay(Duration::from_millis(5))
        .max_delay(Duration::from_millis(5))
        .no_budget()
        .inject_idempotency_key(inject)
        .seed(SEED)
        .build_layer()
        .unwrap()
}

fn client(server: &FlakyServer, inject: bool) -> Client {
    Client::builder()
        .base_url(&server.url("/"))
        .stack(|s| s.breaker(None).retry(Some(retry(inject))))
        .build()
        .unwrap()
}

/// A seeded script of `MAX_ATTEMPTS` answers, each a reset with
/// probability 0.2, else `201`. Returns the script and, per attempt,
/// whether it is a reset.
fn chaos_script(rng: &mut SmallRng) -> (Script, Vec<bool>) {
    let resets: Vec<bool> = (0..MAX_ATTEMPTS).map(|_| rng.random_bool(0.2)).collect();
    let script = resets
        .iter()
        .map(|&reset| {
            if reset {
                Behavior::reset()
            } else {
                Behavior::status(201)
            }
        })
        .collect();
    (script, resets)
}

/// Sends `n` POSTs to `/{prefix}/{i}`, 32 at a time; `key(i)` gives the
/// caller's idempotency key, if any. Returns each request's status or
/// error kind, in order.
async fn post_all(
    client: &Client,
    prefix: &str,
    n: usize,
    key: impl Fn(usize) -> Option<String>,
) -> Vec<Result<u16, Kind>> {
    let requests = (0..n).map(|i| {
        let mut rb = client
            .post(&format!("{prefix}/{i}"))
            .body(format!("order {i}"));
        if let Some(k) = key(i) {
            rb = rb.idempotency_key(&k);
        }
        async move {
            match rb.send().await {
                Ok(res) => Ok(res.status().as_u16()),
                Err(e) => Err(e.kind()),
            }
        }
    });
    futures_util::stream::iter(requests)
        .buffered(32)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_without_keys_reach_the_server_at_most_once_each() {
    let server = FlakyServer::start().await.unwrap();
    let mut rng = SmallRng::seed_from_u64(SEED);
    let mut first_is_reset = Vec::new();
    for i in 0..REQUESTS {
        let (script, resets) = chaos_script(&mut rng);
        server.script(&format!("/plain/{i}"), script);
        first_is_reset.push(resets[0]);
    }
    let resets = first_is_reset.iter().filter(|r| **r).count();
    assert!((150..250).contains(&resets), "about 20 % resets: {resets}");

    let results = post_all(&client(&server, false), "plain", REQUESTS, |_| None).await;

    for (i, result) in results.iter().enumerate() {
        let stats = server.stats(&format!("/plain/{i}"));
        assert_eq!(
            stats.attempts, 1,
            "request {i} reached the server {} times",
            stats.attempts
        );
        assert!(stats.idempotency_keys.is_empty());
        if first_is_reset[i] {
            assert_eq!(
                *result,
                Err(Kind::Transport),
                "request {i} was reset: the caller must learn it, not get a retry"
            );
        } else {
            assert_eq!(*result, Ok(201), "request {i}");
            assert_eq!(stats.bodies[0], format!("order {i}").as_bytes());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_of_a_keyed_post_carries_its_key() {
    let server = FlakyServer::start().await.unwrap();
    let mut rng = SmallRng::seed_from_u64(SEED ^ 1);
    let mut scripts = Vec::new();
    for i in 0..REQUESTS {
        let (script, resets) = chaos_script(&mut rng);
        server.script(&format!("/keyed/{i}"), script);
        scripts.push(resets);
    }

    let results = post_all(&client(&server, false), "keyed", REQUESTS, |i| {
        Some(format!("order-{i}"))
    })
    .await;

    let mut retried = 0;
    for (i, result) in results.iter().enumerate() {
        let stats = server.stats(&format!("/keyed/{i}"));
        let key = format!("order-{i}");
        assert_eq!(
            stats.idempotency_keys.len() as u64,
            stats.attempts,
            "request {i}: an attempt went without its key"
        );
        assert!(
            stats.idempotency_keys.iter().all(|k| *k == key),
            "request {i}: {:?}",
            stats.idempotency_keys
        );
        // Retried exactly until the first answer, within the attempts allowed.
        let answered = scripts[i].iter().position(|reset| !reset);
        let expected_attempts = answered.map_or(MAX_ATTEMPTS, |n| n + 1);
        assert_eq!(stats.attempts, expected_attempts as u64, "request {i}");
        retried += usize::from(expected_attempts > 1);
        match answered {
            Some(n) => {
                assert_eq!(*result, Ok(201), "request {i}");
                assert_eq!(stats.bodies[n], key.replace("order-", "order ").as_bytes());
            }
            None => assert_eq!(*result, Err(Kind::Transport), "request {i}"),
        }
    }
    assert!(retried > 150, "the chaos made requests retry: {retried}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_keys_are_stable_across_attempts_and_unique_across_requests() {
    let server = FlakyServer::start().await.unwrap();
    let mut rng = SmallRng::seed_from_u64(SEED ^ 2);
    let n = 200;
    for i in 0..n {
        server.script(&format!("/injected/{i}"), chaos_script(&mut rng).0);
    }

    let results = post_all(&client(&server, true), "injected", n, |_| None).await;

    let mut seen = HashSet::new();
    let mut attempts = 0;
    for (i, result) in results.iter().enumerate() {
        let stats = server.stats(&format!("/injected/{i}"));
        attempts += stats.attempts;
        assert_eq!(stats.idempotency_keys.len() as u64, stats.attempts, "{i}");
        let first = &stats.idempotency_keys[0];
        assert!(stats.idempotency_keys.iter().all(|k| k == first), "{i}");
        assert!(seen.insert(first.clone()), "request {i} reused key {first}");
        assert!(
            matches!(result, Ok(201) | Err(Kind::Transport)),
            "{result:?}"
        );
    }
    assert!(attempts > n as u64, "some requests were retried");
}
