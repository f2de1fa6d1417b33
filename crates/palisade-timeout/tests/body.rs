//! Response body timeouts, on a paused clock.

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use common::{ChannelBody, ReadyBody, poll_frame, trickle};
use http::{Request, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use palisade_core::error::find;
use palisade_core::{BoxError, Deadline};
use palisade_timeout::error::{BodyDeadlineExceeded, BodyIdleTimeout, DeadlineExceeded};
use palisade_timeout::{BodyTimeoutLayer, TimeoutBody};
use tokio::time::{Instant, advance};
use tower::{Layer, ServiceExt, service_fn};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Reads the body to its end, returning the bytes read and the error, if any.
async fn drain<B>(body: B) -> (usize, Option<BoxError>)
where
    B: http_body::Body<Data = Bytes, Error = BoxError>,
{
    // TimeoutBody keeps its timers inline, so it is !Unpin: pin it here.
    let mut body = std::pin::pin!(body);
    let mut read = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => read += f.into_data().map_or(0, |d| d.len()),
            Err(e) => return (read, Some(e)),
        }
    }
    (read, None)
}

#[tokio::test(start_paused = true)]
async fn idle_fires_at_its_bound_and_not_before() {
    let guard = Arc::new(());
    let (_tx, inner) = ChannelBody::new();
    let mut body = Box::pin(TimeoutBody::new(
        inner.with_guard(guard.clone()),
        Some(ms(1000)),
        None,
        None,
    ));
    assert!(poll_frame(&mut body).is_pending());
    advance(ms(999)).await;
    assert!(poll_frame(&mut body).is_pending(), "fired before its bound");
    advance(ms(1)).await;
    let Poll::Ready(Some(Err(err))) = poll_frame(&mut body) else {
        panic!("did not fire at its bound");
    };
    let idle = err.downcast_ref::<BodyIdleTimeout>().expect("idle error");
    assert_eq!(idle.idle(), ms(1000));
    // The half-read body is dropped at once, and the stream is over.
    assert_eq!(Arc::strong_count(&guard), 1);
    assert!(body.is_timed_out());
    assert!(body.is_end_stream());
    assert!(matches!(poll_frame(&mut body), Poll::Ready(None)));
}

#[tokio::test(start_paused = true)]
async fn idle_resets_on_every_frame() {
    let (tx, inner) = ChannelBody::new();
    trickle(tx, 20, 100, ms(900));
    let body = TimeoutBody::new(inner, Some(ms(1000)), None, None);
    let (read, err) = drain(body).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(read, 2000);
}

#[tokio::test(start_paused = true)]
async fn a_slow_trickle_fails_with_the_idle_error() {
    let (tx, inner) = ChannelBody::new();
    trickle(tx, 20, 100, ms(1100));
    let start = Instant::now();
    let (read, err) = drain(TimeoutBody::new(inner, Some(ms(1000)), None, None)).await;
    assert_eq!(read, 0);
    assert!(err.unwrap().is::<BodyIdleTimeout>());
    assert_eq!(start.elapsed(), ms(1000));
}

#[tokio::test(start_paused = true)]
async fn the_idle_clock_runs_only_while_the_reader_waits() {
    let (tx, inner) = ChannelBody::new();
    let mut body = Box::pin(TimeoutBody::new(inner, Some(ms(1000)), None, None));
    tx.send(Bytes::from_static(b"a")).await.unwrap();
    // The reader is busy for 5 s; the frame waits for it.
    advance(ms(5000)).await;
    assert!(matches!(poll_frame(&mut body), Poll::Ready(Some(Ok(_)))));
    // Only now does it wait, and only now does the clock start.
    assert!(poll_frame(&mut body).is_pending());
    advance(ms(999)).await;
    assert!(poll_frame(&mut body).is_pending());
    advance(ms(1)).await;
    assert!(
        matches!(poll_frame(&mut body), Poll::Ready(Some(Err(e))) if e.is::<BodyIdleTimeout>())
    );
}

#[tokio::test(start_paused = true)]
async fn the_total_bound_fires_even_when_frames_keep_coming() {
    let (tx, inner) = ChannelBody::new();
    trickle(tx, 10, 100, ms(400));
    let start = Instant::now();
    let (read, err) = drain(TimeoutBody::new(
        inner,
        Some(ms(1000)),
        Some(ms(3000)),
        None,
    ))
    .await;
    let err = err.expect("should not finish");
    let dl = err
        .downcast_ref::<BodyDeadlineExceeded>()
        .expect("body deadline error");
    assert!(!dl.is_request_deadline());
    assert!(find::<DeadlineExceeded>(&*err).is_none());
    assert_eq!(dl.elapsed(), ms(3000));
    assert_eq!(start.elapsed(), ms(3000));
    assert_eq!(read, 700, "chunks at 0.4 s to 2.8 s were delivered");
}

#[tokio::test(start_paused = true)]
async fn the_total_bound_does_not_fire_before_it_is_due() {
    let (_tx, inner) = ChannelBody::new();
    let mut body = Box::pin(TimeoutBody::new(inner, None, Some(ms(3000)), None));
    assert!(poll_frame(&mut body).is_pending());
    advance(ms(2999)).await;
    assert!(poll_frame(&mut body).is_pending());
    advance(ms(1)).await;
    assert!(
        matches!(poll_frame(&mut body), Poll::Ready(Some(Err(e))) if e.is::<BodyDeadlineExceeded>())
    );
}

#[tokio::test(start_paused = true)]
async fn the_request_deadline_bounds_the_body_through_the_layer() {
    let respond = |len: Option<u64>| {
        service_fn(move |_req: Request<()>| async move {
            let (tx, inner) = ChannelBody::new();
            trickle(tx, 10, 100, ms(450));
            let inner = match len {
                Some(len) => inner.with_len(len),
                None => inner,
            };
            Ok::<_, BoxError>(Response::new(inner))
        })
    };
    let mut req = Request::new(());
    Deadline::after(ms(2000)).apply(req.extensions_mut());
    let start = Instant::now();
    let res = BodyTimeoutLayer::default()
        .layer(respond(None))
        .oneshot(req)
        .await
        .unwrap();
    let (read, err) = drain(res.into_body()).await;
    let err = err.expect("the request deadline should end the body");
    let dl = err.downcast_ref::<BodyDeadlineExceeded>().unwrap();
    assert!(dl.is_request_deadline());
    assert!(
        find::<DeadlineExceeded>(&*err).is_some(),
        "source is the request deadline"
    );
    assert_eq!(start.elapsed(), ms(2000));
    assert_eq!(read, 400, "chunks at 0.45 s to 1.8 s were delivered");

    // Told to ignore the request deadline, the same body completes.
    let mut req = Request::new(());
    Deadline::after(ms(2000)).apply(req.extensions_mut());
    let layer = BodyTimeoutLayer::builder()
        .request_deadline(false)
        .build()
        .unwrap();
    let res = layer.layer(respond(Some(1000))).oneshot(req).await.unwrap();
    assert_eq!(
        res.body().size_hint().exact(),
        Some(1000),
        "size hint passes through"
    );
    let (read, err) = drain(res.into_body()).await;
    assert!(err.is_none());
    assert_eq!(read, 1000);
}

#[tokio::test(start_paused = true)]
async fn a_healthy_body_passes_untouched() {
    let body = TimeoutBody::new(
        ReadyBody(VecDeque::from([
            Bytes::from_static(b"he"),
            Bytes::from_static(b"llo"),
        ])),
        Some(ms(1)),
        Some(ms(1)),
        Some(Deadline::after(ms(1))),
    );
    let start = Instant::now();
    let bytes = body.collect().await.unwrap().to_bytes();
    assert_eq!(bytes, "hello");
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn inner_body_errors_pass_through() {
    let body = TimeoutBody::new(
        http_body_util::StreamBody::new(futures_util::stream::iter([
            Ok(http_body::Frame::data(Bytes::from_static(b"x"))),
            Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "truncated",
            )),
        ])),
        Some(ms(1000)),
        None,
        None,
    );
    let (read, err) = drain(body).await;
    assert_eq!(read, 1);
    let err = err.unwrap();
    assert_eq!(
        err.downcast_ref::<std::io::Error>().unwrap().kind(),
        std::io::ErrorKind::UnexpectedEof
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_body_drops_the_inner_body_and_its_timers() {
    let guard = Arc::new(());
    let (_tx, inner) = ChannelBody::new();
    let mut body = Box::pin(TimeoutBody::new(
        inner.with_guard(guard.clone()),
        Some(ms(1000)),
        Some(ms(5000)),
        None,
    ));
    assert!(poll_frame(&mut body).is_pending());
    assert_eq!(Arc::strong_count(&guard), 2);
    drop(body);
    assert_eq!(Arc::strong_count(&guard), 1);
    // Dropped timers do not fire into anything: time can pass freely.
    advance(ms(10_000)).await;
}

#[tokio::test(start_paused = true)]
async fn one_timer_serves_both_bounds_and_the_earlier_one_wins() {
    // The request deadline (500 ms) is due before the idle timeout (1 s).
    let (_tx, inner) = ChannelBody::new();
    let deadline = Deadline::after(ms(500));
    let start = Instant::now();
    let (_, err) = drain(TimeoutBody::new(
        inner,
        Some(ms(1000)),
        None,
        Some(deadline),
    ))
    .await;
    let err = err.unwrap();
    assert!(
        err.downcast_ref::<BodyDeadlineExceeded>()
            .unwrap()
            .is_request_deadline()
    );
    assert_eq!(start.elapsed(), ms(500));

    // The idle timeout (1 s) is due before the request deadline (5 s).
    let (_tx, inner) = ChannelBody::new();
    let deadline = Deadline::after(ms(5000));
    let start = Instant::now();
    let (_, err) = drain(TimeoutBody::new(
        inner,
        Some(ms(1000)),
        None,
        Some(deadline),
    ))
    .await;
    assert!(err.unwrap().is::<BodyIdleTimeout>());
    assert_eq!(start.elapsed(), ms(1000));
}
