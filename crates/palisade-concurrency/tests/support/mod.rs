//! Test helpers: a hand-driven upstream and a one-poll helper.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::Full;
use palisade_core::BoxError;
use tokio::sync::oneshot;
use tower::Service;

pub type Reply = Result<Response<Full<Bytes>>, BoxError>;

/// One call the upstream received and has not answered yet.
#[derive(Debug)]
pub struct Call {
    pub uri: Uri,
    reply: oneshot::Sender<Reply>,
}

impl Call {
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    pub fn ok(self, body: &'static str) {
        let _ = self
            .reply
            .send(Ok(Response::new(Full::new(Bytes::from_static(
                body.as_bytes(),
            )))));
    }

    pub fn status(self, code: u16) {
        let res = Response::builder()
            .status(code)
            .body(Full::new(Bytes::from_static(b"x")))
            .unwrap();
        let _ = self.reply.send(Ok(res));
    }

    pub fn err(self, e: impl Into<BoxError>) {
        let _ = self.reply.send(Err(e.into()));
    }
}

/// An upstream whose every call waits until the test answers it.
#[derive(Clone, Default)]
pub struct Upstream {
    calls: Arc<Mutex<VecDeque<Call>>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn service(&self) -> UpstreamService {
        UpstreamService {
            calls: self.calls.clone(),
            seen: self.seen.clone(),
        }
    }

    /// The oldest unanswered call.
    pub fn next(&self) -> Call {
        self.calls
            .lock()
            .unwrap()
            .pop_front()
            .expect("the upstream has no pending call")
    }

    /// How many calls wait for an answer.
    pub fn pending(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// Every path received, in order.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// The service side of an [`Upstream`].
#[derive(Clone)]
pub struct UpstreamService {
    calls: Arc<Mutex<VecDeque<Call>>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Service<Request<()>> for UpstreamService {
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Reply> + Send>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<()>) -> Self::Future {
        let (tx, rx) = oneshot::channel();
        self.seen.lock().unwrap().push(req.uri().path().to_owned());
        self.calls.lock().unwrap().push_back(Call {
            uri: req.uri().clone(),
            reply: tx,
        });
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err("upstream call dropped".into()))
        })
    }
}

pub fn req(uri: &str) -> Request<()> {
    Request::get(uri).body(()).unwrap()
}

/// Polls `fut` once with the current task's waker.
pub async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

/// Lets spawned tasks and wakeups run without moving the paused clock.
pub async fn settle() {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}

pub mod sim;
