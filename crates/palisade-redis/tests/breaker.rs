//! The circuit breaker's shared state on a real redis-server.

mod support;

use std::sync::Arc;
use std::time::Duration;

use palisade_breaker::{BreakerLayer, BreakerStateBackend, SharedState};
use palisade_core::error::{CircuitOpen, find};
use palisade_core::{BoxError, Key};
use palisade_redis::RedisBackend;
use support::RedisServer;
use tower::{Layer, ServiceExt};

fn backend(server: &RedisServer) -> RedisBackend {
    RedisBackend::builder(server.client())
        .namespace("test")
        .call_timeout(Duration::from_millis(100))
        .build()
        .unwrap()
}

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .expect("a backend call hung")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_state_published_by_one_instance_is_seen_by_another() {
    let server = RedisServer::start().await;
    let (a, b) = (backend(&server), backend(&server));
    let key = Key::origin(&"https://api.test/".parse().unwrap());
    let other = Key::origin(&"https://other.test/".parse().unwrap());

    assert_eq!(bounded(b.fetch(&key)).await.unwrap(), SharedState::Closed);
    bounded(a.publish(
        &key,
        SharedState::Open {
            remaining: Duration::from_secs(30),
        },
    ))
    .await
    .unwrap();
    match bounded(b.fetch(&key)).await.unwrap() {
        SharedState::Open { remaining } => assert!(
            remaining > Duration::from_secs(25) && remaining <= Duration::from_secs(30),
            "{remaining:?}"
        ),
        SharedState::Closed => panic!("B does not see A's open circuit"),
    }
    assert_eq!(bounded(b.fetch(&other)).await.unwrap(), SharedState::Closed);

    bounded(a.publish(&key, SharedState::Closed)).await.unwrap();
    assert_eq!(bounded(b.fetch(&key)).await.unwrap(), SharedState::Closed);

    // The state expires with the break.
    bounded(a.publish(
        &key,
        SharedState::Open {
            remaining: Duration::from_millis(50),
        },
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(bounded(b.fetch(&key)).await.unwrap(), SharedState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_an_error_not_a_hang() {
    let mut server = RedisServer::start().await;
    let a = backend(&server);
    let key = Key::from("k");
    bounded(a.fetch(&key)).await.unwrap();
    server.kill();
    assert!(bounded(a.fetch(&key)).await.is_err());
    assert!(
        bounded(a.publish(
            &key,
            SharedState::Open {
                remaining: Duration::from_secs(1)
            }
        ))
        .await
        .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opened_on_one_instance_opens_on_the_other() {
    let server = RedisServer::start().await;
    let layer = |backend: RedisBackend| {
        BreakerLayer::builder()
            .consecutive_failures(2)
            .break_duration(Duration::from_secs(30))
            .sync_interval(Duration::from_millis(10))
            .backend(Arc::new(backend))
            .build()
            .unwrap()
    };
    let status = |code: u16| {
        tower::service_fn(move |_req: http::Request<()>| {
            std::future::ready(Ok::<_, BoxError>(
                http::Response::builder().status(code).body(()).unwrap(),
            ))
        })
    };
    let a = layer(backend(&server)).layer(status(503));
    let b = layer(backend(&server)).layer(status(200));
    let get = || http::Request::get("https://api.test/").body(()).unwrap();

    for _ in 0..2 {
        let res = bounded(a.clone().oneshot(get())).await.unwrap();
        assert_eq!(res.status(), 503);
    }
    let err = bounded(a.clone().oneshot(get())).await.unwrap_err();
    assert!(find::<CircuitOpen>(&*err).is_some(), "A opened: {err:?}");

    // B's own calls succeed, but once it has synced it fails fast too.
    let mut opened = None;
    for _ in 0..200 {
        match bounded(b.clone().oneshot(get())).await {
            Ok(res) => assert_eq!(res.status(), 200),
            Err(e) => {
                opened = Some(e);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let err = opened.expect("B learned of A's open circuit through Redis");
    assert!(find::<CircuitOpen>(&*err).is_some(), "{err:?}");
}
