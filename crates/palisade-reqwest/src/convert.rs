//! Conversions between palisade's `http` types and reqwest's.

use bytes::Bytes;
use palisade_core::{BoxError, TransportError};
use reqwest::ResponseBuilderExt as _;

use crate::body::{ResponseBody, into_reqwest_body};
use crate::error::transport_error;

/// Turns an `http::Request<palisade_core::Body>` into a `reqwest::Request`.
///
/// # Errors
///
/// A [`TransportError`] of kind `Request` when the URI is not a URL reqwest
/// accepts; the `reqwest::Error` is its source.
pub fn into_reqwest_request(
    req: http::Request<palisade_core::Body>,
) -> Result<reqwest::Request, TransportError> {
    reqwest::Request::try_from(req.map(into_reqwest_body)).map_err(transport_error)
}

/// Turns a `reqwest::Response` into the `http::Response<ResponseBody>` the
/// transport returns. The final URL (after redirects) is kept as a
/// `reqwest::Url` in the response's extensions.
pub fn from_reqwest_response(res: reqwest::Response) -> http::Response<ResponseBody> {
    let url = res.url().clone();
    let mut res: http::Response<reqwest::Body> = res.into();
    res.extensions_mut().insert(url);
    res.map(ResponseBody::new)
}

/// Turns the transport's response back into a `reqwest::Response`, so
/// that code written against reqwest (`.json()`, `.text()`,
/// `.error_for_status()`, `.url()`) keeps working. The URL is the one the
/// transport recorded (see [`from_reqwest_response`]), if any.
pub fn into_reqwest_response(res: http::Response<ResponseBody>) -> reqwest::Response {
    let (parts, body) = res.into_parts();
    rebuild(parts, body.into_inner())
}

/// Like [`into_reqwest_response`] for a response whose body a layer wrapped
/// (a concurrency permit, a body timeout): the body's errors stay in the
/// `reqwest::Error`'s source chain, so they still classify.
pub fn wrap_reqwest_response<B>(res: http::Response<B>) -> reqwest::Response
where
    B: http_body::Body + Send + Sync + 'static,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
{
    let (parts, body) = res.into_parts();
    rebuild(parts, reqwest::Body::wrap(body))
}

fn rebuild(mut parts: http::response::Parts, body: reqwest::Body) -> reqwest::Response {
    let url = parts.extensions.remove::<reqwest::Url>();
    to_reqwest_response(http::Response::from_parts(parts, body), url)
}

/// Turns an `http::Response<reqwest::Body>` into a `reqwest::Response`
/// whose [`url()`](reqwest::Response::url) is `url` (reqwest keeps the URL
/// in a private extension that only its builder can set). Nothing is
/// copied: the head moves, the body is not wrapped again.
pub fn to_reqwest_response(
    res: http::Response<reqwest::Body>,
    url: Option<reqwest::Url>,
) -> reqwest::Response {
    let mut res = res;
    if let Some(url) = url {
        // reqwest reads the URL from its own private extension, which only
        // its builder extension trait can set.
        let mut builder = http::Response::builder().url(url);
        if let Some(ext) = builder.extensions_mut() {
            res.extensions_mut().extend(std::mem::take(ext));
        }
    }
    reqwest::Response::from(res)
}
