//! The limiter's behaviour, all on tokio's paused clock.

mod support;

use std::time::{Duration, SystemTime};

use futures_util::future::join_all;
use palisade_core::{Deadline, Key};
use palisade_ratelimit::{Quota, RateLimitLayer};
use support::{Upstream, get, manual, ms, rate_limited, response};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

fn quota(per_second: u32, burst: u32) -> Quota {
    Quota::per_second(per_second)
        .unwrap()
        .with_burst(burst)
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn burst_then_one_per_interval_in_reject_mode() {
    let up = Upstream::new();
    let layer = RateLimitLayer::builder(quota(10, 3))
        .reject()
        .build()
        .unwrap();
    let svc = layer.layer(up.service());

    for _ in 0..3 {
        svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    }
    let err = svc
        .clone()
        .oneshot(get("http://a.test/"))
        .await
        .unwrap_err();
    assert_eq!(rate_limited(&err).retry_after, Some(ms(100)));
    assert_eq!(
        up.calls(),
        3,
        "a refused request never reaches the upstream"
    );

    tokio::time::advance(ms(99)).await;
    let err = svc
        .clone()
        .oneshot(get("http://a.test/"))
        .await
        .unwrap_err();
    assert_eq!(rate_limited(&err).retry_after, Some(ms(1)));
    tokio::time::advance(ms(1)).await;
    svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    assert!(svc.clone().oneshot(get("http://a.test/")).await.is_err());

    // A full refill gives exactly the burst again, no more.
    tokio::time::advance(Duration::from_secs(10)).await;
    for _ in 0..3 {
        svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    }
    assert!(svc.clone().oneshot(get("http://a.test/")).await.is_err());
    assert_eq!(up.calls(), 7);
}

#[tokio::test(start_paused = true)]
async fn sustained_rate_takes_n_minus_burst_over_r() {
    // 25 concurrent requests at 10/s with a burst of 5: the last leaves at
    // (25 - 5) / 10 = 2 s, and the i-th after the burst at (i - 5) / 10 s.
    let up = Upstream::new();
    let svc = RateLimitLayer::new(quota(10, 5)).layer(up.service());
    let start = Instant::now();
    let sent = join_all((0..25).map(|_| {
        let svc = svc.clone();
        async move {
            svc.oneshot(get("http://a.test/")).await.unwrap();
            Instant::now() - start
        }
    }))
    .await;
    let mut sent = sent;
    sent.sort();
    for (i, at) in sent.iter().enumerate() {
        let expected = ms(100 * i.saturating_sub(4) as u64);
        assert_eq!(*at, expected, "request {i}");
    }
    assert_eq!(*sent.last().unwrap(), Duration::from_secs(2));
    assert_eq!(up.calls(), 25);
}

#[tokio::test(start_paused = true)]
async fn sequential_requests_keep_the_exact_rate() {
    // 1 000/s with a burst of 10: 2 010 requests one after another take 2 s.
    let up = Upstream::new();
    let mut svc = RateLimitLayer::new(quota(1_000, 10)).layer(up.service());
    let start = Instant::now();
    for _ in 0..2_010 {
        svc.ready()
            .await
            .unwrap()
            .call(get("http://a.test/"))
            .await
            .unwrap();
    }
    assert_eq!(Instant::now() - start, Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_wait_longer_than_max_wait_fails_at_once() {
    let up = Upstream::new();
    let layer = RateLimitLayer::builder(quota(1, 1))
        .wait(ms(500))
        .build()
        .unwrap();
    let svc = layer.layer(up.service());
    svc.clone().oneshot(get("http://a.test/")).await.unwrap();

    let before = Instant::now();
    let err = svc
        .clone()
        .oneshot(get("http://a.test/"))
        .await
        .unwrap_err();
    assert_eq!(Instant::now(), before, "failed without waiting");
    assert_eq!(rate_limited(&err).retry_after, Some(Duration::from_secs(1)));
    assert_eq!(up.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn queued_requests_past_max_wait_fail_at_once_while_the_rest_wait() {
    // 1/s, max wait 2.5 s: behind one sent request, two can wait (1 s and
    // 2 s); the third would wait 3 s and fails at once.
    let up = Upstream::new();
    let layer = RateLimitLayer::builder(quota(1, 1))
        .wait(ms(2_500))
        .build()
        .unwrap();
    let svc = layer.layer(up.service());
    let start = Instant::now();
    let outcomes = join_all((0..4).map(|i| {
        let svc = svc.clone();
        async move {
            // Arrive in order, all at t = 0.
            tokio::task::yield_now().await;
            let res = svc.oneshot(get("http://a.test/")).await;
            (i, res.map_err(|e| rate_limited(&e)), Instant::now() - start)
        }
    }))
    .await;
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    for (_, res, at) in outcomes {
        match res {
            Ok(_) => ok.push(at),
            Err(e) => refused.push((e, at)),
        }
    }
    ok.sort();
    assert_eq!(ok, vec![ms(0), ms(1_000), ms(2_000)]);
    assert_eq!(refused.len(), 1);
    let (err, at) = refused[0];
    assert_eq!(at, ms(0), "the request that cannot make it fails at once");
    assert_eq!(err.retry_after, Some(ms(3_000)));
}

#[tokio::test(start_paused = true)]
async fn the_deadline_clamps_the_wait() {
    let up = Upstream::new();
    let svc = RateLimitLayer::new(quota(1, 1)).layer(up.service());
    svc.clone().oneshot(get("http://a.test/")).await.unwrap();

    let mut req = get("http://a.test/");
    Deadline::after(ms(300)).apply(req.extensions_mut());
    let before = Instant::now();
    let err = svc.clone().oneshot(req).await.unwrap_err();
    assert_eq!(
        Instant::now(),
        before,
        "failed at once, not at the deadline"
    );
    assert_eq!(rate_limited(&err).retry_after, Some(Duration::from_secs(1)));

    // With room in the deadline it waits and goes.
    let mut req = get("http://a.test/");
    Deadline::after(ms(1_500)).apply(req.extensions_mut());
    svc.clone().oneshot(req).await.unwrap();
    assert_eq!(Instant::now() - before, Duration::from_secs(1));
    assert_eq!(up.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_seconds_pauses_the_key() {
    let up = Upstream::new();
    up.then(response(429, &[("retry-after", "5")]));
    let svc = RateLimitLayer::new(quota(100, 100)).layer(up.service());
    let key = Key::origin(&"http://a.test/".parse().unwrap());

    let res = svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(svc.paused_for(&key), Some(Duration::from_secs(5)));

    // The next request waits out the pause instead of hitting the server.
    let start = Instant::now();
    svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    assert_eq!(Instant::now() - start, Duration::from_secs(5));
    assert_eq!(up.calls(), 2);
    assert_eq!(svc.paused_for(&key), None);
}

#[tokio::test(start_paused = true)]
async fn a_429_with_an_http_date_pauses_the_key_in_reject_mode() {
    let up = Upstream::new();
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    up.then(response(429, &[("retry-after", at.as_str())]));
    let layer = RateLimitLayer::builder(quota(100, 100))
        .reject()
        .build()
        .unwrap();
    let svc = layer.layer(up.service());

    svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    let err = svc
        .clone()
        .oneshot(get("http://a.test/"))
        .await
        .unwrap_err();
    // HTTP-dates have whole seconds: the pause is between 29 and 30 s.
    let wait = rate_limited(&err).retry_after.unwrap();
    assert!(
        wait > Duration::from_secs(29) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );
    assert_eq!(
        up.calls(),
        1,
        "the refused request never reached the server"
    );
    tokio::time::advance(Duration::from_secs(30)).await;
    svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    assert_eq!(up.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn ratelimit_remaining_zero_pauses_until_the_reset() {
    let up = Upstream::new();
    up.then(response(
        200,
        &[("ratelimit-remaining", "0"), ("ratelimit-reset", "3")],
    ));
    let svc = RateLimitLayer::new(quota(100, 100)).layer(up.service());
    let res = svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    assert_eq!(res.status(), 200);
    let start = Instant::now();
    svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    assert_eq!(Instant::now() - start, Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn x_ratelimit_headers_pause_too_and_plenty_left_does_not() {
    let up = Upstream::new();
    up.then(response(
        200,
        &[("x-ratelimit-remaining", "4"), ("x-ratelimit-reset", "9")],
    ))
    .then(response(
        200,
        &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "7")],
    ));
    let svc = RateLimitLayer::new(quota(100, 100)).layer(up.service());
    let key = Key::origin(&"http://a.test/".parse().unwrap());
    svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    assert_eq!(svc.paused_for(&key), None, "requests remain: no pause");
    svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    assert_eq!(svc.paused_for(&key), Some(Duration::from_secs(7)));
}

#[tokio::test(start_paused = true)]
async fn server_pauses_are_capped_and_can_be_ignored() {
    let up = Upstream::new();
    up.then(response(429, &[("retry-after", "86400")]));
    let layer = RateLimitLayer::builder(quota(100, 100))
        .max_server_pause(Duration::from_secs(60))
        .build()
        .unwrap();
    let svc = layer.layer(up.service());
    let key = Key::origin(&"http://a.test/".parse().unwrap());
    svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    assert_eq!(svc.paused_for(&key), Some(Duration::from_secs(60)));

    let up = Upstream::new();
    up.then(response(429, &[("retry-after", "5")]));
    let layer = RateLimitLayer::builder(quota(100, 100))
        .listen_to_server(false)
        .build()
        .unwrap();
    let svc = layer.layer(up.service());
    svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    assert_eq!(svc.paused_for(&key), None);
}

#[tokio::test(start_paused = true)]
async fn a_pause_longer_than_max_wait_fails_at_once() {
    let up = Upstream::new();
    up.then(response(429, &[("retry-after", "20")]));
    let svc = RateLimitLayer::new(quota(100, 100)).layer(up.service());
    svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    let before = Instant::now();
    let err = svc
        .clone()
        .oneshot(get("http://a.test/"))
        .await
        .unwrap_err();
    assert_eq!(Instant::now(), before);
    assert_eq!(
        rate_limited(&err).retry_after,
        Some(Duration::from_secs(20))
    );
}

#[tokio::test(start_paused = true)]
async fn keys_are_isolated() {
    let up = Upstream::new();
    up.then(response(429, &[("retry-after", "30")]));
    let layer = RateLimitLayer::builder(quota(1, 2))
        .reject()
        .build()
        .unwrap();
    let svc = layer.layer(up.service());
    // a.test gets a 429 and spends its burst...
    svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    assert!(svc.clone().oneshot(get("http://a.test/")).await.is_err());
    // ...b.test, and a.test on another port, are untouched.
    for uri in ["http://b.test/", "http://b.test/x", "http://a.test:8080/"] {
        svc.clone().oneshot(get(uri)).await.unwrap();
    }
    assert_eq!(svc.key_count(), 3);

    // A custom key: per API key, across hosts.
    let layer = RateLimitLayer::builder(quota(1, 1))
        .reject()
        .key_fn(|req: &http::Request<()>| {
            req.headers()
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .map_or(Key::global(), Key::from)
        })
        .build()
        .unwrap();
    let svc = layer.layer(Upstream::new().service());
    let with_key = |uri: &str, k: &str| {
        http::Request::get(uri)
            .header("x-api-key", k)
            .body(())
            .unwrap()
    };
    svc.clone()
        .oneshot(with_key("http://a.test/", "alice"))
        .await
        .unwrap();
    assert!(
        svc.clone()
            .oneshot(with_key("http://b.test/", "alice"))
            .await
            .is_err()
    );
    svc.clone()
        .oneshot(with_key("http://a.test/", "bob"))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn idle_keys_are_evicted_and_the_key_count_is_bounded() {
    let layer = RateLimitLayer::builder(quota(10, 10))
        .idle_timeout(Duration::from_secs(60))
        .max_keys(50)
        .build()
        .unwrap();
    let svc = layer.layer(Upstream::new().service());
    for i in 0..500 {
        svc.clone()
            .oneshot(get(&format!("http://host-{i}.test/")))
            .await
            .unwrap();
        assert!(svc.key_count() <= 50);
    }
    assert_eq!(svc.key_count(), 50);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(svc.evict_idle(), 0, "nothing idle for 60 s yet");
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(svc.evict_idle(), 50);
    assert_eq!(svc.key_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_key_with_a_waiting_request_is_not_evicted() {
    let layer = RateLimitLayer::builder(quota(1, 1))
        .wait(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let up = Upstream::new();
    let svc = layer.layer(up.service());
    svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    let waiting = tokio::spawn(svc.clone().oneshot(get("http://a.test/")));
    tokio::task::yield_now().await;
    tokio::time::advance(ms(1_000)).await;
    assert_eq!(svc.evict_idle(), 0, "the waiting request holds the key");
    waiting.await.unwrap().unwrap();
    assert_eq!(up.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiting_request_spends_no_slot() {
    let up = Upstream::new();
    let svc = RateLimitLayer::new(quota(1, 1)).layer(up.service());
    svc.clone().oneshot(get("http://a.test/")).await.unwrap();

    // This one waits for the slot at t = 1 s, then is dropped at 0.5 s.
    let mut waiting = manual(svc.clone().oneshot(get("http://a.test/")));
    assert!(waiting.poll().is_pending());
    tokio::time::advance(ms(500)).await;
    assert!(waiting.poll().is_pending());
    drop(waiting);

    // The next request takes the slot at 1 s (not 2 s): the dropped one
    // gave its place back and spent nothing.
    let start = Instant::now();
    svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    assert_eq!(Instant::now() - start, ms(500));
    tokio::time::advance(Duration::from_secs(1)).await;
    svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    assert_eq!(
        Instant::now() - start,
        ms(1_500),
        "one slot per second, none lost"
    );
    assert_eq!(up.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_gives_its_place_back_to_later_arrivals() {
    let up = Upstream::new();
    let svc = RateLimitLayer::new(quota(1, 1)).layer(up.service());
    svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    // B waits for 1 s, C for 2 s; C is dropped.
    let b = tokio::spawn(svc.clone().oneshot(get("http://a.test/")));
    let mut c = manual(svc.clone().oneshot(get("http://a.test/")));
    tokio::task::yield_now().await;
    assert!(c.poll().is_pending());
    drop(c);
    // D takes C's place at 2 s, not a third slot at 3 s.
    let start = Instant::now();
    svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    assert_eq!(Instant::now() - start, Duration::from_secs(2));
    b.await.unwrap().unwrap();
    assert_eq!(up.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_newcomer_does_not_take_the_slot_of_a_waiter_that_wakes_late() {
    // One slot per 1.5 ms. B waits for the slot at 1.5 ms, but tokio's timer
    // wakes it later, at a millisecond tick. C arrives at 1.7 ms, when the slot is free: it must
    // queue behind B rather than take B's slot.
    let up = Upstream::new();
    let every = Quota::every(Duration::from_micros(1_500)).unwrap();
    let svc = RateLimitLayer::new(every).layer(up.service());
    let start = Instant::now();
    svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    let sent_at = |svc: palisade_ratelimit::RateLimit<_>| async move {
        svc.oneshot(get("http://a.test/")).await.unwrap();
        Instant::now() - start
    };
    let b = tokio::spawn(sent_at(svc.clone()));
    tokio::task::yield_now().await;
    tokio::time::advance(Duration::from_micros(1_700)).await;
    let c = tokio::spawn(sent_at(svc.clone()));
    let (b, c) = (b.await.unwrap(), c.await.unwrap());
    assert!(
        b < c,
        "B ({b:?}) waited first and goes first, C went at {c:?}"
    );
    // Each a slot apart: C keeps to one slot per 1.5 ms behind B.
    assert!(c >= Duration::from_micros(3_000), "{c:?}");
}

#[tokio::test(start_paused = true)]
async fn waiters_woken_late_keep_their_place_in_the_queue() {
    // Regression: tokio wakes a sleeper on a millisecond tick, so at 3/s
    // (an interval of 333.33 ms) every waiter wakes up to 1 ms after its
    // slot, finds that governor's schedule moved by the previous sender's
    // lateness, and used to be sent to the back of the queue. Ten waiters
    // then took far longer than 9 intervals and ran out of their wait.
    let up = Upstream::new();
    let layer = RateLimitLayer::builder(quota(3, 1))
        .wait(ms(3_100))
        .build()
        .unwrap();
    let svc = layer.layer(up.service());
    let start = Instant::now();
    let results = join_all((0..10).map(|_| {
        let svc = svc.clone();
        async move {
            svc.oneshot(get("http://a.test/"))
                .await
                .map(|_| Instant::now() - start)
        }
    }))
    .await;
    let mut sent: Vec<Duration> = results
        .into_iter()
        .map(|r| r.expect("every waiter is sent within its wait"))
        .collect();
    sent.sort();
    assert_eq!(up.calls(), 10);
    // Nine intervals of 333.33 ms, plus at most a tick of lateness each.
    assert!(
        *sent.last().unwrap() <= ms(3_010),
        "last sent at {:?}",
        sent.last()
    );
}
