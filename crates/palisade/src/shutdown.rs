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
}

impl Shutdown {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            closed: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            cancel: watch::channel(false).0,
        })
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

    /// Stops admitting, waits up to `grace` for in-flight requests, then
    /// cancels the rest. Returns how many were cancelled.
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
        self.cancel.send_replace(true);
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
