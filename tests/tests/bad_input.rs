//! # Bad input
//!
//! Whatever a user or an upstream hands palisade, the answer is a typed
//! error or a working client, never a panic, a hang or a silent drop.
//! Property tests (proptest, shrinking to the smallest failing input) over:
//!
//! - **`Retry-After` and rate-limit header bytes** from the upstream
//!   (`Retry-After`, `RateLimit`, `RateLimit-Reset`, `RateLimit-Remaining`
//!   and their `X-` forms, with 429, 503 and 200), through the whole
//!   standard stack with a rate limiter listening to the server: the request
//!   ends, on tokio's paused clock, within its deadline (an absurd value is
//!   capped, not slept), with a response or an error of a known kind; and
//!   `palisade::error_for_status` reports a capped `retry_after`.
//! - **URLs given to the client**, absolute or relative, arbitrary text or
//!   URL-shaped: the request succeeds or fails with
//!   [`Kind::InvalidRequest`]; a base URL is accepted or refused with
//!   [`Kind::Config`]. Header names and values likewise.
//! - **Builder configurations** of every layer and of the stack, with zero,
//!   tiny, huge, inverted, NaN and infinite values: each builder returns its
//!   `ConfigError`, or the client builds (or fails with [`Kind::Config`])
//!   and then serves a request without panicking.
//!
//! The CLI's duration and URL arguments are not covered here: `palisade-cli`
//! is a binary with no library target to call; its own tests cover its
//! parsing.
//!
//! Case counts are kept small (96 or 128 per property) so that the whole
//! file runs in a few seconds of a debug build, and the generator is seeded,
//! so CI runs the same inputs every time; each case runs a fresh
//! current-thread runtime on a paused clock.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};
use palisade::breaker::{BreakerLayer, Window};
use palisade::concurrency::limit::{Aimd, Gradient2, Vegas};
use palisade::concurrency::{ConcurrencyLimitLayer, Limit};
use palisade::ratelimit::{Quota, RateLimitLayer};
use palisade::retry::budget::BudgetConfig;
use palisade::retry::{BackoffStrategy, RetryBudget, RetryLayer, RetryPolicy};
use palisade::timeout::{AttemptTimeoutLayer, BodyTimeoutLayer, DeadlineLayer};
use palisade::{Client, Kind, PoolConfig, StackConfig};
use palisade_core::RetryAfter;
use palisade_tests::{MemoryUpstream, Reply};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};

/// `cases` cases from a fixed seed, so that CI runs the same inputs every
/// time, and no regression file written into the source tree.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0xbad1),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A fresh current-thread runtime on a paused clock, as
/// `#[tokio::test(start_paused = true)]` makes, for one proptest case.
fn paused<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(f)
}

/// Durations from nothing to absurd: zero, a nanosecond, ordinary values,
/// and values whose addition to an instant overflows.
fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        (1u64..5_000).prop_map(Duration::from_millis),
        (1u64..100_000).prop_map(Duration::from_secs),
        Just(Duration::from_secs(u64::MAX / 4)),
        Just(Duration::MAX),
    ]
}

/// Floats including NaN, the infinities, negatives and out-of-range ones.
fn any_ratio() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.5),
        Just(1.0),
        0.0f64..=1.0,
        1.0f64..2000.0,
    ]
}

/// Bytes that make a valid header value: anything visible, spaces, tabs
/// and obs-text, in digit-heavy, date-like and free-form shapes.
fn header_value() -> impl Strategy<Value = HeaderValue> {
    let text = prop_oneof![
        "[0-9]{0,25}",
        "-?[0-9]{1,20}(\\.[0-9]{0,5})?",
        "(Mon|Sun|Xyz), [0-9]{1,2} (Jan|Feb|Dec) [0-9]{1,5} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT",
        "(limit|remaining|reset|r|t)=[0-9a-z-]{0,12}(, ?(r|t|reset|remaining)=[-0-9]{0,21})?",
        "[ -~]{0,40}",
    ]
    .prop_map(|s| s.into_bytes());
    let raw = proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![text, raw]
        .prop_filter_map("not a header value", |b| HeaderValue::from_bytes(&b).ok())
}

fn rate_header() -> impl Strategy<Value = HeaderName> {
    prop_oneof![
        Just("retry-after"),
        Just("ratelimit"),
        Just("ratelimit-reset"),
        Just("ratelimit-remaining"),
        Just("x-ratelimit-reset"),
        Just("x-ratelimit-remaining"),
    ]
    .prop_map(HeaderName::from_static)
}

const DEADLINE: Duration = Duration::from_secs(20);

/// The kinds a request may end with against an upstream that only ever
/// says "slow down": each is a decision of a layer, typed.
fn allowed_under_pressure(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::RateLimited | Kind::CircuitOpen | Kind::DeadlineExceeded | Kind::BudgetExhausted
    )
}

proptest! {
    #![proptest_config(config(128))]

    /// Arbitrary bytes never panic the parser, and a capped read is capped.
    #[test]
    fn retry_after_bytes_parse_totally(
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
        value in header_value(),
        name in rate_header(),
    ) {
        let _ = RetryAfter::parse_value(&bytes, SystemTime::now());
        let mut headers = HeaderMap::new();
        headers.insert(name, value);
        let max = Duration::from_secs(60);
        if let Some(d) = RetryAfter::from_headers(&headers, max) {
            prop_assert!(d <= max);
        }
        let _ = RetryAfter::remaining(&headers);
        let _ = RetryAfter::reset_at(&headers, SystemTime::UNIX_EPOCH);
    }

    /// Hostile rate-limit headers through the whole stack: the request ends
    /// within its deadline with a response or a typed refusal.
    #[test]
    fn rate_limit_headers_through_the_stack_end_within_the_deadline(
        status in prop_oneof![Just(429u16), Just(503), Just(200)],
        headers in proptest::collection::vec((rate_header(), header_value()), 1..4),
    ) {
        paused(async move {
            let upstream = MemoryUpstream::new(move |_| {
                let mut reply = Reply::status(status);
                for (n, v) in &headers {
                    reply = reply.with_header(n.clone(), v.clone());
                }
                reply
            });
            let rate = RateLimitLayer::builder(Quota::per_second(100).unwrap())
                .wait(Duration::from_secs(5))
                .build()
                .unwrap();
            let client = Client::builder()
                .stack(|s| s.deadline(Some(DEADLINE)).rate_limit(Some(rate)))
                .transport(upstream)
                .build()
                .unwrap();
            // Twice: the second meets whatever pause the first set.
            for _ in 0..2 {
                let start = tokio::time::Instant::now();
                let res = client.get("http://hostile.test/x").send().await;
                let took = start.elapsed();
                prop_assert!(took <= DEADLINE + Duration::from_millis(1), "took {took:?}");
                match res {
                    Ok(res) => {
                        prop_assert_eq!(res.status().as_u16(), status);
                        if let Err(e) = palisade::error_for_status(res) {
                            prop_assert_eq!(e.kind(), Kind::Status);
                            if let Some(ra) = e.retry_after() {
                                prop_assert!(ra <= Duration::from_secs(24 * 3600));
                            }
                        }
                    }
                    Err(e) => prop_assert!(allowed_under_pressure(e.kind()), "{e:?}"),
                }
            }
            Ok(())
        })?;
    }

    /// Any text as a URL: a response, or `InvalidRequest`.
    #[test]
    fn urls_given_to_the_client_give_a_response_or_invalid_request(
        url in prop_oneof![
            any::<String>(),
            "(https?|ftp|file|HTTP|)(://|:/|:)[^/?#]{0,20}(:[0-9]{0,7})?(/[ -~]{0,20})?",
            "[ -~]{0,30}",
            "https?://(\\[[0-9a-f:]{0,12}\\]|[0-9.]{1,16}|[a-z.-]{1,20}|xn--[a-z0-9]{0,10}|\u{00e9}t\u{00e9}\\.fr)(:[0-9]{1,6})?/[^ ]{0,10}",
        ],
        relative in any::<bool>(),
    ) {
        paused(async move {
            let mut builder = Client::builder()
                .stack(|_| StackConfig::default())
                .transport(MemoryUpstream::new(|_| Reply::ok()));
            if relative {
                builder = builder.base_url("http://base.test/v1/");
            }
            let client = builder.build().unwrap();
            match client.get(&url).send().await {
                Ok(res) => prop_assert_eq!(res.status().as_u16(), 200),
                Err(e) => {
                    prop_assert_eq!(e.kind(), Kind::InvalidRequest, "{:?}", e);
                    prop_assert!(!e.to_string().is_empty());
                }
            }
            Ok(())
        })?;
    }

    /// Any body limits, and any body (plain or gzip, its length announced
    /// or not): the whole body, `BodyTooLarge`, or `Config` for a zero
    /// ratio; never a panic.
    #[test]
    fn body_limits_give_the_body_or_body_too_large(
        max_body in prop_oneof![Just(0u64), Just(u64::MAX), 0u64..20_000, any::<u64>()],
        ratio in prop_oneof![Just(0u32), Just(1), Just(u32::MAX), any::<u32>()],
        grace in prop_oneof![Just(0u64), Just(u64::MAX), 0u64..20_000],
        cap_streams in any::<bool>(),
        len in 0usize..12_000,
        gzipped in any::<bool>(),
        announce in any::<bool>(),
    ) {
        paused(async move {
            let plain = vec![b'a'; len];
            let wire = if gzipped {
                use std::io::Write as _;
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&plain).unwrap();
                e.finish().unwrap()
            } else {
                plain.clone()
            };
            let wire_len = wire.len();
            let body = bytes::Bytes::from(wire);
            let built = Client::builder()
                .stack(|_| StackConfig::bare())
                .max_body(max_body)
                .max_decompression_ratio(ratio)
                .decompression_ratio_after(grace)
                .cap_streams(cap_streams)
                .transport(MemoryUpstream::new(move |_| {
                    let mut r = Reply::ok().with_body(1, body.clone(), Duration::ZERO);
                    if gzipped {
                        r = r.with_header(
                            http::header::CONTENT_ENCODING,
                            HeaderValue::from_static("gzip"),
                        );
                    }
                    if announce {
                        r = r.with_header(http::header::CONTENT_LENGTH, wire_len.into());
                    }
                    r
                }))
                .build();
            let client = match built {
                Ok(c) => c,
                Err(e) => {
                    prop_assert_eq!(e.kind(), Kind::Config, "{:?}", e);
                    prop_assert_eq!(ratio, 0);
                    return Ok(());
                }
            };
            prop_assert!(ratio > 0);
            match client.get("http://up.test/x").send().await {
                Ok(res) => match palisade::ResponseExt::capped_bytes(res).await {
                    Ok(got) => {
                        prop_assert_eq!(got.len(), len);
                        prop_assert!(len as u64 <= max_body);
                    }
                    Err(e) => {
                        prop_assert_eq!(e.kind(), Kind::BodyTooLarge, "{:?}", e);
                        let too = e.body_too_large().unwrap();
                        prop_assert!(
                            too.is_decompression_bomb() || len as u64 > max_body,
                            "{}", too
                        );
                    }
                },
                Err(e) => prop_assert_eq!(e.kind(), Kind::BodyTooLarge, "{:?}", e),
            }
            Ok(())
        })?;
    }

    /// Any text as a base URL: a client, or `Config`.
    #[test]
    fn base_urls_give_a_client_or_a_config_error(
        base in prop_oneof![any::<String>(), "(https?://)?[ -~]{0,30}"],
    ) {
        match Client::builder().base_url(&base).build() {
            Ok(_) => {}
            Err(e) => prop_assert_eq!(e.kind(), Kind::Config, "{:?}", e),
        }
    }

    /// Any header name and value: sent, or `InvalidRequest` at `send`.
    #[test]
    fn headers_given_to_a_request_are_sent_or_refused(
        name in prop_oneof![any::<String>(), "[a-zA-Z0-9-]{1,20}"],
        value in prop_oneof![any::<String>(), "[ -~]{0,30}"],
        secret in any::<bool>(),
    ) {
        paused(async move {
            let client = Client::builder()
                .transport(MemoryUpstream::new(|_| Reply::ok()))
                .build()
                .unwrap();
            let rb = client.get("http://h.test/");
            let rb = if secret { rb.secret_header(&name, &value) } else { rb.header(&name, &value) };
            match rb.send().await {
                Ok(res) => prop_assert_eq!(res.status().as_u16(), 200),
                Err(e) => prop_assert_eq!(e.kind(), Kind::InvalidRequest, "{:?}", e),
            }
            match Client::builder().default_header(&name, &value).build() {
                Ok(_) => {}
                Err(e) => prop_assert_eq!(e.kind(), Kind::Config, "{:?}", e),
            }
            Ok(())
        })?;
    }
}

/// One stack configuration drawn from hostile values. Each layer's builder
/// either refuses (`None`, with the error checked to be non-empty) or
/// yields a layer.
#[derive(Debug, Clone)]
struct Hostile {
    deadline: Option<Duration>,
    attempt: Option<Duration>,
    breaker: (
        u32,
        f64,
        u32,
        Duration,
        Duration,
        f64,
        f64,
        u32,
        usize,
        bool,
    ),
    concurrency: (usize, u8, usize, Duration, Option<usize>),
    rate: (u32, Duration, u32, Duration, Duration, usize, bool),
    retry: (
        u32,
        Duration,
        Duration,
        Duration,
        Duration,
        u32,
        f64,
        Vec<u16>,
    ),
    body: (Duration, Duration),
    pool: (Duration, Duration, Option<Duration>),
}

fn hostile() -> impl Strategy<Value = Hostile> {
    let opt = || proptest::option::of(any_duration());
    let small = || prop_oneof![Just(0u32), Just(1), 2u32..200, Just(u32::MAX)];
    let size = || prop_oneof![Just(0usize), Just(1), 2usize..5_000, Just(usize::MAX)];
    (
        opt(),
        opt(),
        (
            small(),
            any_ratio(),
            small(),
            any_duration(),
            any_duration(),
            any_ratio(),
            any_ratio(),
            small(),
            size(),
            any::<bool>(),
        ),
        (
            size(),
            0u8..4,
            size(),
            any_duration(),
            proptest::option::of(size()),
        ),
        (
            small(),
            any_duration(),
            small(),
            any_duration(),
            any_duration(),
            size(),
            any::<bool>(),
        ),
        (
            small(),
            any_duration(),
            any_duration(),
            any_duration(),
            any_duration(),
            small(),
            any_ratio(),
            proptest::collection::vec(any::<u16>(), 0..4),
        ),
        (any_duration(), any_duration()),
        (any_duration(), any_duration(), opt()),
    )
        .prop_map(
            |(deadline, attempt, breaker, concurrency, rate, retry, body, pool)| Hostile {
                deadline,
                attempt,
                breaker,
                concurrency,
                rate,
                retry,
                body,
                pool,
            },
        )
}

/// Asserts that a builder's error says something.
fn refused<E: std::fmt::Display>(e: E) {
    assert!(!e.to_string().is_empty(), "an error with no message");
}

/// Whether governor can represent the quota: its burst window
/// (`interval × burst`) must fit in `u64` nanoseconds, about 584 years.
fn governor_can_hold(q: &Quota) -> bool {
    q.replenish_interval()
        .checked_mul(q.burst())
        .is_some_and(|w| w.as_nanos() <= u128::from(u64::MAX))
}

impl Hostile {
    fn breaker(&self) -> Option<BreakerLayer> {
        let (n, ratio, min, brk, max, mult, jitter, probes, keys, count) = self.breaker;
        let window = if count {
            Window::count(min.saturating_mul(2))
        } else {
            Window::time(max)
        };
        BreakerLayer::builder()
            .consecutive_failures(n)
            .failure_ratio(ratio)
            .minimum_throughput(min)
            .window(window)
            .break_duration(brk)
            .max_break_duration(max)
            .break_multiplier(mult)
            .jitter(jitter)
            .half_open_probes(probes)
            .max_keys(keys)
            .build()
            .map_err(refused)
            .ok()
    }

    fn concurrency(&self) -> Option<ConcurrencyLimitLayer> {
        let (n, algo, queue, wait, global) = self.concurrency;
        let limit: Limit = match algo {
            0 => Limit::fixed(n),
            1 => Aimd::new().initial_limit(n).max_limit(n / 2).into(),
            2 => Gradient2::new().min_limit(n).into(),
            _ => Vegas::new().initial_limit(n).into(),
        };
        let mut b = ConcurrencyLimitLayer::builder()
            .limit(limit)
            .max_queue(queue)
            .max_wait(wait);
        if let Some(g) = global {
            b = b.global_limit(g);
        }
        b.build().map_err(refused).ok()
    }

    fn rate(&self) -> Option<RateLimitLayer> {
        let (n, period, burst, wait, pause, keys, reject) = self.rate;
        let quota = Quota::per_period(n, period)
            .and_then(|q| q.with_burst(burst))
            .map_err(refused)
            .ok()?;
        if !governor_can_hold(&quota) {
            // Accepted, then a panic at the first request: see
            // `a_quota_beyond_584_years_is_refused_instead_of_panicking`.
            return None;
        }
        let b = RateLimitLayer::builder(quota)
            .max_server_pause(pause)
            .max_keys(keys);
        let b = if reject { b.reject() } else { b.wait(wait) };
        b.build().map_err(refused).ok()
    }

    fn retry(&self) -> Option<RetryLayer> {
        let (attempts, base, max, after, ttl, per_sec, ratio, statuses) = self.retry.clone();
        let budget = BudgetConfig::new(ttl, per_sec, ratio)
            .map_err(refused)
            .ok()?;
        RetryPolicy::builder()
            .max_attempts(attempts)
            .backoff(BackoffStrategy::DecorrelatedJitter)
            .base_delay(base)
            .max_delay(max)
            .max_retry_after(after)
            .budget(RetryBudget::new(budget))
            .retry_statuses(statuses)
            .seed(1)
            .build_layer()
            .map_err(refused)
            .ok()
    }

    fn body(&self) -> Option<BodyTimeoutLayer> {
        BodyTimeoutLayer::builder()
            .idle(self.body.0)
            .total(self.body.1)
            .build()
            .map_err(refused)
            .ok()
    }

    fn pool(&self) -> PoolConfig {
        PoolConfig::new()
            .idle_timeout(self.pool.0)
            .connect_timeout(self.pool.1)
            .tcp_keepalive(self.pool.2)
    }
}

proptest! {
    #![proptest_config(config(96))]

    /// Every layer's builder, and the client's, with hostile values: a
    /// typed error or a client that serves a request, never a panic.
    #[test]
    fn hostile_configurations_give_typed_errors_or_working_clients(h in hostile()) {
        // The standalone timeout layers refuse what the stack would refuse.
        for d in [h.deadline, h.attempt].into_iter().flatten() {
            let _ = DeadlineLayer::new(d).map_err(refused);
            let _ = AttemptTimeoutLayer::new(d).map_err(refused);
        }
        let _ = h.pool().build().map_err(refused);

        let stack = StackConfig::default()
            .pool(h.pool())
            .deadline(h.deadline)
            .attempt_timeout(h.attempt)
            .breaker(h.breaker())
            .concurrency(h.concurrency())
            .rate_limit(h.rate())
            .retry(h.retry())
            .body_timeout(h.body());
        let upstream = MemoryUpstream::new(|_| Reply::ok().with_body(2, "ok", Duration::from_millis(1)));
        let built = Client::builder()
            .stack(|_| stack.clone())
            .transport(upstream)
            .build();
        let client = match built {
            Ok(c) => c,
            Err(e) => {
                prop_assert_eq!(e.kind(), Kind::Config, "{:?}", e);
                prop_assert!(!e.to_string().is_empty());
                return Ok(());
            }
        };
        // Without a transport override the real reqwest client is built too.
        match Client::builder().stack(|_| stack.clone()).build() {
            Ok(_) => {}
            Err(e) => prop_assert_eq!(e.kind(), Kind::Config, "{:?}", e),
        }
        paused(async move {
            let res = tokio::time::timeout(
                Duration::from_secs(3600),
                client.get("http://config.test/").send(),
            )
            .await;
            match res {
                Err(_) => prop_assert!(false, "a request hung for an hour (virtual)"),
                Ok(Ok(res)) => {
                    prop_assert_eq!(res.status().as_u16(), 200);
                    let _ = res.bytes().await;
                }
                // A tiny timeout or budget may fail the request: typed, and
                // never a configuration error discovered this late.
                Ok(Err(e)) => prop_assert_ne!(e.kind(), Kind::Config, "{:?}", e),
            }
            Ok(())
        })?;
    }
}

/// A quota whose burst window (`interval × burst`) does not fit in
/// governor's 584-year range of `u64` nanoseconds: `Quota::with_burst`,
/// `per_period` and the builder accept it, and the first request then
/// panics inside governor (an integer overflow, or "Duration is longer than
/// 584 years"), killing the caller's task. It should be a `ConfigError`.
#[tokio::test(start_paused = true)]
async fn a_quota_beyond_584_years_is_refused_instead_of_panicking() {
    let cases = [
        Quota::per_period(1, Duration::from_secs(5)).and_then(|q| q.with_burst(u32::MAX)),
        Quota::every(Duration::from_secs(u64::MAX / 4)),
    ];
    for quota in cases {
        let Ok(quota) = quota else { continue };
        let Ok(layer) = RateLimitLayer::builder(quota).build() else {
            continue;
        };
        let client = Client::builder()
            .stack(|s| s.rate_limit(Some(layer)))
            .transport(MemoryUpstream::new(|_| Reply::ok()))
            .build()
            .unwrap();
        let sent = tokio::spawn(async move {
            client
                .get("http://q.test/")
                .send()
                .await
                .map(|r| r.status())
        })
        .await;
        assert!(
            sent.is_ok(),
            "{quota:?} was accepted, then the request panicked"
        );
    }
}
