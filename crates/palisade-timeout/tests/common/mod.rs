//! Helpers shared by the test files.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// Polls `fut` once with a no-op waker: the test drives time itself.
pub fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(fut).poll(&mut cx)
}

/// One poll of a body.
pub type FramePoll<B> = Poll<Option<Result<Frame<<B as Body>::Data>, <B as Body>::Error>>>;

/// Polls a body for one frame with a no-op waker.
pub fn poll_frame<B: Body + Unpin>(body: &mut B) -> FramePoll<B> {
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(body).poll_frame(&mut cx)
}

/// A body fed through a channel; holds `guard` so tests can see it dropped.
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
    len: Option<u64>,
    _guard: Option<Arc<()>>,
}

impl ChannelBody {
    pub fn new() -> (mpsc::Sender<Bytes>, Self) {
        let (tx, rx) = mpsc::channel(64);
        (
            tx,
            Self {
                rx,
                len: None,
                _guard: None,
            },
        )
    }

    pub fn with_len(mut self, len: u64) -> Self {
        self.len = Some(len);
        self
    }

    pub fn with_guard(mut self, guard: Arc<()>) -> Self {
        self._guard = Some(guard);
        self
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }

    fn size_hint(&self) -> SizeHint {
        self.len
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

/// Sends `chunks` chunks of `size` bytes with `gap` before each, then ends.
pub fn trickle(tx: mpsc::Sender<Bytes>, chunks: usize, size: usize, gap: Duration) {
    tokio::spawn(async move {
        for _ in 0..chunks {
            tokio::time::sleep(gap).await;
            if tx.send(Bytes::from(vec![b'x'; size])).await.is_err() {
                return;
            }
        }
    });
}

/// A body whose frames are all ready at once.
pub struct ReadyBody(pub VecDeque<Bytes>);

impl Body for ReadyBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}
