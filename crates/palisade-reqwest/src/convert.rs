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
    let (mut parts, body) = req.into_parts();
    if let Some(parsed) = parts.extensions.remove::<ParsedUrl>()
        && parsed.uri == parts.uri
    {
        // The URL the caller already parsed, for this very URI: reqwest's
        // own conversion would print the URI and parse it again. reqwest
        // keeps no public request extension, so none is lost.
        let mut out = reqwest::Request::new(parts.method, parsed.url);
        *out.headers_mut() = parts.headers;
        *out.version_mut() = parts.version;
        *out.body_mut() = Some(into_reqwest_body(body));
        return Ok(out);
    }
    let req = http::Request::from_parts(parts, body);
    reqwest::Request::try_from(req.map(into_reqwest_body)).map_err(transport_error)
}

/// A request's URL already parsed as a `reqwest::Url`, kept in the
/// request's extensions with the `Uri` it stands for, so that
/// [`into_reqwest_request`] (and so [`ReqwestService`](crate::ReqwestService))
/// does not print the URI and parse it again on every attempt. It is used
/// only while the request's URI is still `uri`: a layer that rewrites the
/// URI gets its new URI parsed as before.
///
/// ```
/// use palisade_reqwest::{ParsedUrl, into_reqwest_request};
///
/// let url = reqwest::Url::parse("https://api.example.com/items?page=2").unwrap();
/// let uri: http::Uri = url.as_str().parse().unwrap();
/// let mut req = http::Request::get(uri.clone()).body(palisade_core::Body::empty()).unwrap();
/// req.extensions_mut().insert(ParsedUrl::new(uri, url.clone()));
/// assert_eq!(into_reqwest_request(req).unwrap().url(), &url);
/// ```
#[derive(Debug, Clone)]
pub struct ParsedUrl {
    uri: http::Uri,
    url: reqwest::Url,
}

impl ParsedUrl {
    /// `url`, parsed for `uri` (which should be `url.as_str().parse()`).
    pub fn new(uri: http::Uri, url: reqwest::Url) -> Self {
        Self { uri, url }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, parsed: Option<(&str, &str)>) -> http::Request<palisade_core::Body> {
        let mut req = http::Request::get(uri)
            .header("x-a", "1")
            .body(palisade_core::Body::empty())
            .unwrap();
        if let Some((for_uri, url)) = parsed {
            req.extensions_mut().insert(ParsedUrl::new(
                for_uri.parse().unwrap(),
                reqwest::Url::parse(url).unwrap(),
            ));
        }
        req
    }

    #[test]
    fn a_parsed_url_for_the_same_uri_is_used_as_it_is() {
        // A URL that parsing the URI again could not give (its fragment
        // never reaches an http::Uri) shows that it was used, not parsed.
        let req = request(
            "http://a.test/x?q=1",
            Some(("http://a.test/x?q=1", "http://a.test/x?q=1#kept")),
        );
        let out = into_reqwest_request(req).unwrap();
        assert_eq!(out.url().as_str(), "http://a.test/x?q=1#kept");
        assert_eq!(out.headers()["x-a"], "1");
        assert_eq!(out.method(), http::Method::GET);
    }

    #[test]
    fn a_uri_rewritten_after_the_url_was_parsed_is_parsed_again() {
        let req = request(
            "http://b.test/y",
            Some(("http://a.test/x", "http://a.test/x")),
        );
        let out = into_reqwest_request(req).unwrap();
        assert_eq!(out.url().as_str(), "http://b.test/y");
        let out = into_reqwest_request(request("http://c.test/z", None)).unwrap();
        assert_eq!(out.url().as_str(), "http://c.test/z");
    }
}
