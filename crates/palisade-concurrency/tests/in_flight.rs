//! Never more than N in flight per key (nor more than the global limit in
//! all), whatever the arrivals, latencies, body handling and cancellations;
//! and nothing leaks once everyone is gone. A proptest on the paused clock.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use palisade_concurrency::error::{Overloaded, QueueTimeout};
use palisade_concurrency::{ConcurrencyLimitLayer, Limit};
use palisade_core::BoxError;
use proptest::prelude::*;
use tokio::time::Sleep;
use tower::{Layer, ServiceExt};

/// In-flight counters as the limiter defines "in flight".
#[derive(Default)]
struct Tracker {
    per_key: Mutex<[usize; 3]>,
    max_per_key: Mutex<[usize; 3]>,
    total: AtomicUsize,
    max_total: AtomicUsize,
}

struct Guard {
    tracker: Arc<Tracker>,
    key: usize,
}

impl Guard {
    fn new(tracker: Arc<Tracker>, key: usize) -> Self {
        {
            let mut cur = tracker.per_key.lock().unwrap();
            cur[key] += 1;
            let mut max = tracker.max_per_key.lock().unwrap();
            max[key] = max[key].max(cur[key]);
        }
        let t = tracker.total.fetch_add(1, Ordering::SeqCst) + 1;
        tracker.max_total.fetch_max(t, Ordering::SeqCst);
        Self { tracker, key }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.tracker.per_key.lock().unwrap()[self.key] -= 1;
        self.tracker.total.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One data frame after `delay`; the guard goes with the last frame.
struct SlowBody {
    sleep: Pin<Box<Sleep>>,
    data: Option<Bytes>,
    guard: Option<Guard>,
}

impl Body for SlowBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.data.is_none() {
            self.guard = None;
            return Poll::Ready(None);
        }
        ready!(self.sleep.as_mut().poll(cx));
        self.guard = None;
        Poll::Ready(self.data.take().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }
}

type Fut<T> = Pin<Box<dyn std::future::Future<Output = Result<T, BoxError>> + Send>>;

/// Boxes the call outside the spawned task's async block, where rustc
/// cannot prove `Send` through `Into<BoxError>` bounds (rust-lang/rust#102211).
fn send<S, R>(svc: S, req: R) -> Fut<S::Response>
where
    S: tower::Service<R, Error = BoxError> + Send + 'static,
    S::Future: Send,
    R: Send + 'static,
{
    Box::pin(svc.oneshot(req))
}

#[derive(Debug, Clone)]
struct Arrival {
    key: usize,
    at_ms: u64,
    latency_ms: u64,
    body_ms: u64,
    cancel_after_ms: Option<u64>,
    /// 0: read the body to the end; 1: drop it at once; 2: hold it, then drop.
    body: u8,
}

fn arrival() -> impl Strategy<Value = Arrival> {
    (
        0usize..3,
        0u64..60,
        0u64..30,
        0u64..30,
        proptest::option::of(0u64..80),
        0u8..3,
    )
        .prop_map(
            |(key, at_ms, latency_ms, body_ms, cancel_after_ms, body)| Arrival {
                key,
                at_ms,
                latency_ms,
                body_ms,
                cancel_after_ms,
                body,
            },
        )
}

#[derive(Debug, Default)]
struct Outcomes {
    ok: usize,
    overloaded: usize,
    queue_timeout: usize,
    cancelled: usize,
}

fn run(
    limit: usize,
    global: Option<usize>,
    max_queue: usize,
    max_wait_ms: u64,
    body_aware: bool,
    arrivals: Vec<Arrival>,
) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let tracker = Arc::new(Tracker::default());
        let mut builder = ConcurrencyLimitLayer::builder()
            .limit(Limit::fixed(limit))
            .max_queue(max_queue)
            .max_wait(Duration::from_millis(max_wait_ms))
            .body_aware(body_aware);
        if let Some(g) = global {
            builder = builder.global_limit(g);
        }
        let layer = builder.build().unwrap();
        let diag = layer.diagnostics();

        let t = tracker.clone();
        let upstream = tower::service_fn(move |req: Request<(usize, u64, u64)>| {
            let (key, latency_ms, body_ms) = *req.body();
            let guard = Guard::new(t.clone(), key);
            async move {
                tokio::time::sleep(Duration::from_millis(latency_ms)).await;
                // Without body-aware permits "in flight" ends at the head.
                let guard = body_aware.then_some(guard);
                let body = SlowBody {
                    sleep: Box::pin(tokio::time::sleep(Duration::from_millis(body_ms))),
                    data: Some(Bytes::from_static(b"payload")),
                    guard,
                };
                Ok::<_, BoxError>(Response::new(body))
            }
        });
        let svc = layer.layer(upstream);

        let outcomes = Arc::new(Mutex::new(Outcomes::default()));
        let mut tasks = Vec::new();
        for a in arrivals {
            let svc = svc.clone();
            let outcomes = outcomes.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(a.at_ms)).await;
                let req = Request::get(format!("http://k{}.test/", a.key))
                    .body((a.key, a.latency_ms, a.body_ms))
                    .unwrap();
                let work = async {
                    let res = match send(svc, req).await {
                        Ok(res) => res,
                        Err(e) => return Err(e),
                    };
                    match a.body {
                        0 => {
                            res.into_body().collect().await?;
                        }
                        1 => drop(res),
                        _ => {
                            tokio::time::sleep(Duration::from_millis(a.body_ms)).await;
                            drop(res);
                        }
                    }
                    Ok::<_, BoxError>(())
                };
                let res = match a.cancel_after_ms {
                    Some(ms) => tokio::time::timeout(Duration::from_millis(ms), work).await,
                    None => Ok(work.await),
                };
                let mut o = outcomes.lock().unwrap();
                match res {
                    Err(_) => o.cancelled += 1,
                    Ok(Ok(())) => o.ok += 1,
                    Ok(Err(e)) if e.is::<Overloaded>() => o.overloaded += 1,
                    Ok(Err(e)) if e.is::<QueueTimeout>() => o.queue_timeout += 1,
                    Ok(Err(e)) => panic!("unexpected error: {e}"),
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }

        let max = *tracker.max_per_key.lock().unwrap();
        for (k, m) in max.iter().enumerate() {
            prop_assert!(*m <= limit, "key {k}: {m} in flight > limit {limit}");
        }
        if let Some(g) = global {
            let m = tracker.max_total.load(Ordering::SeqCst);
            prop_assert!(m <= g, "{m} in flight in all > global limit {g}");
        }
        // Nothing leaked: no permit held, no waiter left behind.
        for s in diag.keys() {
            prop_assert_eq!(
                (s.key.to_string(), s.in_flight, s.queued),
                (s.key.to_string(), 0, 0)
            );
            prop_assert!(s.peak_in_flight <= limit);
        }
        if let Some(g) = diag.global() {
            prop_assert_eq!((g.in_flight, g.queued), (0, 0));
        }
        let o = outcomes.lock().unwrap();
        prop_assert!(o.ok + o.overloaded + o.queue_timeout + o.cancelled > 0);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn never_more_than_n_in_flight_under_random_arrivals_and_cancellations(
        limit in 1usize..5,
        global in proptest::option::of(1usize..8),
        max_queue in 0usize..6,
        max_wait_ms in 1u64..60,
        body_aware in any::<bool>(),
        arrivals in proptest::collection::vec(arrival(), 1..60),
    ) {
        run(limit, global, max_queue, max_wait_ms, body_aware, arrivals)?;
    }
}

#[test]
fn a_burst_on_one_key_is_capped_and_fully_drained() {
    let arrivals = (0..40)
        .map(|i| Arrival {
            key: 0,
            at_ms: 0,
            latency_ms: 5 + i % 7,
            body_ms: 3,
            cancel_after_ms: (i % 5 == 0).then_some(4),
            body: (i % 3) as u8,
        })
        .collect();
    run(3, Some(5), 100, 1_000, true, arrivals).unwrap();
}
