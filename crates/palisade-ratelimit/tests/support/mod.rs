//! Shared test helpers: an upstream that counts calls and answers from a script.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use palisade_core::BoxError;
use palisade_core::error::{RateLimited, find};

/// An upstream that counts the requests it receives and answers each with
/// the next scripted response, then 200 once the script runs out.
#[derive(Clone, Default)]
pub struct Upstream {
    calls: Arc<AtomicUsize>,
    script: Arc<Mutex<VecDeque<Response<()>>>>,
}

impl Upstream {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn then(&self, res: Response<()>) -> &Self {
        self.script.lock().unwrap().push_back(res);
        self
    }

    pub fn service(
        &self,
    ) -> impl tower::Service<
        Request<()>,
        Response = Response<()>,
        Error = Infallible,
        Future = std::future::Ready<Result<Response<()>, Infallible>>,
    > + Clone
    + Send
    + 'static {
        let this = self.clone();
        tower::service_fn(move |_req: Request<()>| {
            this.calls.fetch_add(1, Ordering::SeqCst);
            let res = this
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| Response::new(()));
            std::future::ready(Ok(res))
        })
    }
}

pub fn response(status: u16, headers: &[(&str, &str)]) -> Response<()> {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

pub fn get(uri: &str) -> Request<()> {
    Request::get(uri).body(()).unwrap()
}

/// The `RateLimited` in `err`, or a panic naming what the error was.
pub fn rate_limited(err: &BoxError) -> RateLimited {
    *find::<RateLimited>(&**err).unwrap_or_else(|| panic!("expected RateLimited, got {err:?}"))
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Polls a future by hand, outside any task, to hold it at a given state
/// and drop it there.
pub fn manual<F: std::future::Future>(f: F) -> Manual<F> {
    Manual(Box::pin(f))
}

pub struct Manual<F>(std::pin::Pin<Box<F>>);

impl<F: std::future::Future> Manual<F> {
    pub fn poll(&mut self) -> std::task::Poll<F::Output> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        self.0.as_mut().poll(&mut cx)
    }
}
