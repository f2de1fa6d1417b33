//! Graceful shutdown: stop admitting, drain, then cancel.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

#[derive(Debug)]
pub(crate) struct Shutdown {
    closed: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
    cancel: watch::Sender<bool>,
    /// Set, and `bodies` notified, when the grace period ran out: response
    /// bodies still streaming end with [`Cancelled`].
    cancelled: AtomicBool,
    bodies: Arc<Notify>,
}

impl Shutdown {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            closed: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            cancel: watch::channel(false).0,
            cancelled: AtomicBool::new(false),
            bodies: Arc::new(Notify::new()),
        })
    }

    /// Counts a response body in flight until it ends or is dropped, and
    /// cancels it when shutdown's grace period runs out. Its request was
    /// admitted, so this never refuses.
    pub(crate) fn guard_body<B>(self: &Arc<Self>, body: B) -> GuardedBody<B> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        GuardedBody {
            inner: body,
            cancel: self.bodies.clone().notified_owned(),
            guard: Some(BodyGuard {
                shutdown: self.clone(),
            }),
        }
    }

    /// Admits a request, or `None` once shutdown has begun.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<InFlight> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            self.release();
            return None;
        }
        Some(InFlight {
            shutdown: self.clone(),
            cancelled: self.cancel.subscribe(),
        })
    }

    fn release(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Stops admitting, waits up to `grace` for in-flight requests and
    /// response bodies still streaming, then cancels the rest. Returns how
    /// many were cancelled.
    pub(crate) async fn run(&self, grace: Duration) -> usize {
        self.closed.store(true, Ordering::SeqCst);
        let drained = tokio::time::timeout(grace, async {
            loop {
                let idle = self.idle.notified();
                if self.in_flight() == 0 {
                    return;
                }
                idle.await;
            }
        })
        .await;
        if drained.is_ok() {
            return 0;
        }
        let left = self.in_flight();
        self.cancelled.store(true, Ordering::SeqCst);
        self.cancel.send_replace(true);
        self.bodies.notify_waiters();
        left
    }
}

/// Held by an admitted request until it completes or is dropped.
#[derive(Debug)]
pub(crate) struct InFlight {
    shutdown: Arc<Shutdown>,
    cancelled: watch::Receiver<bool>,
}

impl InFlight {
    /// Resolves when shutdown's grace period ran out. The future holds the
    /// request in flight until it is dropped.
    pub(crate) async fn cancelled(mut self) {
        // An error means the sender is gone: the client is gone, so nothing
        // will cancel this request.
        if self.cancelled.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shutdown.release();
    }
}

/// Keeps a response body counted in flight.
#[derive(Debug)]
struct BodyGuard {
    shutdown: Arc<Shutdown>,
}

impl Drop for BodyGuard {
    fn drop(&mut self) {
        self.shutdown.release();
    }
}

/// A response body's read failed because shutdown's grace period ran out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("response body cancelled by shutdown after its grace period")
    }
}

impl std::error::Error for Cancelled {}

pin_project_lite::pin_project! {
    /// A response body counted in flight by [`Shutdown`] until it ends or
    /// is dropped, and failed with [`Cancelled`] when the grace period runs
    /// out.
    pub(crate) struct GuardedBody<B> {
        #[pin]
        inner: B,
        #[pin]
        cancel: tokio::sync::futures::OwnedNotified,
        guard: Option<BodyGuard>,
    }
}

impl<B> http_body::Body for GuardedBody<B>
where
    B: http_body::Body,
    B::Error: Into<palisade_core::BoxError>,
{
    type Data = B::Data;
    type Error = palisade_core::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::future::Future as _;
        use std::task::Poll;
        let this = self.project();
        let Some(guard) = this.guard.as_ref() else {
            return Poll::Ready(None);
        };
        if guard.shutdown.cancelled.load(Ordering::SeqCst) || this.cancel.poll(cx).is_ready() {
            *this.guard = None;
            return Poll::Ready(Some(Err(Cancelled.into())));
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(None) => {
                *this.guard = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                *this.guard = None;
                Poll::Ready(Some(Err(e.into())))
            }
            other => other.map(|f| f.map(|r| r.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drains_then_cancels() {
        let s = Shutdown::new();
        let quick = s.admit().unwrap();
        let slow = s.admit().unwrap();
        let s2 = s.clone();
        let handle = tokio::spawn(async move { s2.run(Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(s.admit().is_none(), "no new request once shutting down");
        drop(quick);
        let cancelled = tokio::spawn(async move {
            slow.cancelled().await;
        });
        assert_eq!(handle.await.unwrap(), 1, "the slow request is cancelled");
        cancelled.await.unwrap();
        assert_eq!(s.in_flight(), 0);
    }

    /// A body that never ends.
    struct Endless;

    impl http_body::Body for Endless {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
            std::task::Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_streaming_body_is_waited_for_then_cancelled() {
        use http_body_util::BodyExt;
        let s = Shutdown::new();
        let mut body = std::pin::pin!(s.guard_body(Endless));
        assert_eq!(s.in_flight(), 1, "a body still streaming is in flight");
        let s2 = s.clone();
        let handle = tokio::spawn(async move { s2.run(Duration::from_secs(5)).await });
        let err = body.as_mut().frame().await.unwrap().unwrap_err();
        assert!(err.is::<Cancelled>(), "{err}");
        assert_eq!(handle.await.unwrap(), 1);
        assert_eq!(s.in_flight(), 0, "the cancelled body released its count");

        // A body that ends releases its count at once.
        let s = Shutdown::new();
        let mut body = std::pin::pin!(
            s.guard_body(http_body_util::Full::new(bytes::Bytes::from_static(b"x")))
        );
        assert_eq!(s.in_flight(), 1);
        while body.as_mut().frame().await.is_some() {}
        assert_eq!(s.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn returns_early_when_drained() {
        let start = tokio::time::Instant::now();
        let s = Shutdown::new();
        let r = s.admit().unwrap();
        let s2 = s.clone();
        let handle = tokio::spawn(async move { s2.run(Duration::from_secs(60)).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(r);
        assert_eq!(handle.await.unwrap(), 0);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "did not wait out the grace"
        );
    }
}
