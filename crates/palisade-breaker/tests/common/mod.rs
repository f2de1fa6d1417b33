//! Shared test helpers: a scripted upstream and request builders.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response};
use palisade_breaker::error::CircuitOpen;
use palisade_breaker::{BreakerLayer, Builder};
use palisade_core::error::{RateLimited, TransportError, TransportErrorKind, find};
use palisade_core::{BoxError, Key};
use tower::{Service, ServiceExt, service_fn};

pub type Req = Request<()>;
pub type Res = Response<()>;

/// Seeded, jitter-free, so breaks are exact.
pub fn base() -> Builder {
    BreakerLayer::builder().jitter(0.0).seed(1)
}

pub fn req(host: &str) -> Req {
    req_with(host, 200)
}

pub fn req_with(host: &str, status: u16) -> Req {
    Request::get(format!("http://{host}/"))
        .header("x-status", status.to_string())
        .body(())
        .unwrap()
}

pub fn with_header(mut r: Req, name: &'static str, value: &str) -> Req {
    r.headers_mut().insert(name, value.parse().unwrap());
    r
}

pub fn key(host: &str) -> Key {
    Key::origin(&format!("http://{host}/").parse().unwrap())
}

/// An upstream scripted by request headers: `x-status`, `x-retry-after`,
/// `x-delay-ms` (a tokio sleep), `x-error` (`connect`, `reset`,
/// `rate_limited`). Counts the calls that reach it.
pub fn upstream() -> (
    impl Service<Req, Response = Res, Error = BoxError, Future: Send> + Clone + Send,
    Arc<AtomicUsize>,
) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let svc = service_fn(move |req: Req| {
        counter.fetch_add(1, Ordering::SeqCst);
        let h = req.headers();
        let get = |name: &str| h.get(name).map(|v| v.to_str().unwrap().to_owned());
        let status: u16 = get("x-status").map_or(200, |s| s.parse().unwrap());
        let retry_after = get("x-retry-after");
        let delay = get("x-delay-ms").map(|d| Duration::from_millis(d.parse().unwrap()));
        let error = get("x-error");
        async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            match error.as_deref() {
                Some("connect") => {
                    return Err(TransportError::new(
                        TransportErrorKind::Connect,
                        std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
                    )
                    .into());
                }
                Some("reset") => {
                    return Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into());
                }
                Some("rate_limited") => return Err(RateLimited::new(None).into()),
                _ => {}
            }
            let mut b = Response::builder().status(status);
            if let Some(ra) = retry_after {
                b = b.header("retry-after", ra);
            }
            Ok::<_, BoxError>(b.body(()).unwrap())
        }
    });
    (svc, hits)
}

pub async fn send<S>(svc: &mut S, r: Req) -> Result<Res, BoxError>
where
    S: Service<Req, Response = Res, Error = BoxError>,
{
    svc.ready().await?.call(r).await
}

pub fn open_error(r: &Result<Res, BoxError>) -> Option<CircuitOpen> {
    r.as_ref()
        .err()
        .and_then(|e| find::<CircuitOpen>(&**e))
        .copied()
}

pub fn hits(h: &AtomicUsize) -> usize {
    h.load(Ordering::SeqCst)
}
