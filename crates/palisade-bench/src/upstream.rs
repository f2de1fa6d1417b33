//! The in-memory upstreams the per-call benchmarks measure against: what a
//! layer or a stack costs is its time over one of these alone.

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use palisade::Body;
use tower::{Service, service_fn};

/// The upstream's response: `200 ok`, its body in memory.
pub type Res = Response<Full<Bytes>>;

/// `200 ok`.
pub fn ok() -> Res {
    Response::new(Full::new(Bytes::from_static(b"ok")))
}

/// Answers at the first poll: the layers' fast path, where a timeout layer
/// may never register its timer.
pub fn ready() -> impl Service<
    Request<Body>,
    Response = Res,
    Error = Infallible,
    Future = impl Future<Output = Result<Res, Infallible>> + Send,
> + Clone
+ Send
+ Sync {
    service_fn(|_req: Request<Body>| std::future::ready(Ok::<_, Infallible>(ok())))
}

/// Yields once before answering, as any real upstream does, so every timer
/// a layer sets is really registered.
pub fn pending() -> impl Service<
    Request<Body>,
    Response = Res,
    Error = Infallible,
    Future = impl Future<Output = Result<Res, Infallible>> + Send,
> + Clone
+ Send
+ Sync {
    service_fn(|_req: Request<Body>| async {
        tokio::task::yield_now().await;
        Ok::<_, Infallible>(ok())
    })
}
