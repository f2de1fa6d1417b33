//! [`RequestBuilder`]: one request, built fluently and sent through the stack.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use palisade_core::Body;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::Client;
use crate::error::{Error, Kind};

/// Per-request overrides of the client's settings, carried to the layers as a
/// request extension.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Attempt timeout for this request.
    pub attempt_timeout: Option<Duration>,
    /// Total deadline for this request, retries and waits included.
    pub deadline: Option<Duration>,
    /// Retries after the first attempt for this request (0 = no retry).
    pub retries: Option<u32>,
    /// The cap on buffered reads of this request's response body, in
    /// decoded bytes ([`ClientBuilder::max_body`](crate::ClientBuilder::max_body)).
    pub max_body: Option<u64>,
}

/// A request ready to send: what [`RequestBuilder::build`] returns, and what
/// [`Client::execute`] sends. It can be cloned for another send when its
/// body can ([`try_clone`](Self::try_clone)); pagination and resumed
/// downloads send their follow-up requests this way.
///
/// The headers set on it belong to the origin of the URL it was built for:
/// a follow-up to another origin (a redirect, a `Link: rel="next"` elsewhere)
/// leaves without their credentials.
pub struct Request {
    pub(crate) method: Method,
    pub(crate) url: reqwest::Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Body,
    pub(crate) overrides: Overrides,
    /// The origin the headers belong to, when it is not `url`'s own: the
    /// first request's, for a next page or a resumed download.
    pub(crate) headers_origin: Option<reqwest::Url>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &crate::redact::url(&self.url))
            .field("headers", &self.headers)
            .field("body", &self.body)
            .field("overrides", &self.overrides)
            .finish()
    }
}

impl Request {
    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The URL.
    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// The headers set on this request (the client's default headers and
    /// credentials are added when it is sent).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The headers, to change.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// The body.
    pub fn body(&self) -> &Body {
        &self.body
    }

    /// The per-request overrides.
    pub fn overrides(&self) -> &Overrides {
        &self.overrides
    }

    /// A copy to send again, or `None` when the body cannot be replayed (a
    /// stream past its replay cap), as `reqwest::Request::try_clone`.
    pub fn try_clone(&self) -> Option<Request> {
        Some(Request {
            method: self.method.clone(),
            url: self.url.clone(),
            headers: self.headers.clone(),
            body: self.body.try_clone().ok()?,
            overrides: self.overrides,
            headers_origin: self.headers_origin.clone(),
        })
    }

    /// The same request to `url` (a next page), its headers still belonging
    /// to this request's origin.
    pub(crate) fn follow_up(&self, url: &reqwest::Url) -> Result<Request, Error> {
        let body = self.body.try_clone().map_err(|why| {
            Error::new(Kind::InvalidRequest)
                .with_message("the request body cannot be sent again")
                .with_source(why)
                .with_url(Some(url.clone()))
        })?;
        Ok(Request {
            method: self.method.clone(),
            url: url.clone(),
            headers: self.headers.clone(),
            body,
            overrides: self.overrides,
            headers_origin: Some(self.headers_origin().clone()),
        })
    }

    /// The origin the request's own headers belong to.
    pub(crate) fn headers_origin(&self) -> &reqwest::Url {
        self.headers_origin.as_ref().unwrap_or(&self.url)
    }
}

/// A request being built. Created by [`Client::get`] and friends; sent with
/// [`send`](Self::send).
///
/// Errors in what is given (a malformed URL or header) are kept and returned
/// by `send`, as [`Kind::InvalidRequest`], so the chain never panics.
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    pub(crate) client: Client,
    pub(crate) method: Method,
    pub(crate) url: Result<reqwest::Url, Error>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Body,
    pub(crate) overrides: Overrides,
    pub(crate) error: Option<Error>,
}

impl fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RequestBuilder");
        d.field("method", &self.method);
        match &self.url {
            Ok(u) => d.field("url", &crate::redact::url(u)),
            Err(e) => d.field("url", e),
        };
        // HeaderMap's Debug prints sensitive values as "Sensitive".
        d.field("headers", &self.headers)
            .field("body", &self.body)
            .field("overrides", &self.overrides)
            .finish()
    }
}

impl RequestBuilder {
    pub(crate) fn new(client: Client, method: Method, url: Result<reqwest::Url, Error>) -> Self {
        Self {
            client,
            method,
            url,
            headers: HeaderMap::new(),
            body: Body::empty(),
            overrides: Overrides::default(),
            error: None,
        }
    }

    fn fail(&mut self, err: Error) {
        if self.error.is_none() {
            self.error = Some(err);
        }
    }

    /// Adds a header. A malformed name or value fails the request at `send`.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(mut v)) => {
                // Credentials stay out of Debug output and events however
                // they were set.
                v.set_sensitive(crate::credentials::is_credential(&n));
                self.headers.append(n, v);
            }
            (Err(_), _) => self.fail(Error::invalid_request(format!(
                "invalid header name {name:?}"
            ))),
            (_, Err(_)) => self.fail(Error::invalid_request(format!(
                "invalid value for header {name:?}"
            ))),
        }
        self
    }

    /// Adds a header whose value is a secret: it is marked sensitive, so it
    /// never appears in `Debug` output or events.
    pub fn secret_header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(mut v)) => {
                v.set_sensitive(true);
                self.headers.append(n, v);
            }
            _ => self.fail(Error::invalid_request(format!(
                "invalid secret header {name:?}"
            ))),
        }
        self
    }

    /// Appends query parameters, URL-encoded.
    pub fn query<K: AsRef<str>, V: AsRef<str>>(mut self, pairs: &[(K, V)]) -> Self {
        if let Ok(url) = &mut self.url {
            let mut q = url.query_pairs_mut();
            for (k, v) in pairs {
                q.append_pair(k.as_ref(), v.as_ref());
            }
        }
        self
    }

    /// Sends `value` as a JSON body, with `Content-Type: application/json`.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(v) => {
                self.body = Body::from(v);
                self.headers
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            Err(e) => self.fail(
                Error::new(Kind::InvalidRequest)
                    .with_message("could not serialise the JSON body")
                    .with_source(e),
            ),
        }
        self
    }

    /// Sets the body: bytes, a string, or a streaming [`Body`] (replayable up
    /// to its cap, and not retried beyond it).
    pub fn body(mut self, body: impl Into<Body>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a buffered body from bytes.
    pub fn bytes(self, bytes: impl Into<Bytes>) -> Self {
        self.body(Body::from(bytes.into()))
    }

    /// Overrides the attempt timeout for this request.
    pub fn timeout(mut self, attempt_timeout: Duration) -> Self {
        self.overrides.attempt_timeout = Some(attempt_timeout);
        self
    }

    /// Overrides the total deadline for this request.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.overrides.deadline = Some(deadline);
        self
    }

    /// Overrides how many retries this request may make after its first
    /// attempt (0 disables retries for it).
    pub fn retries(mut self, retries: u32) -> Self {
        self.overrides.retries = Some(retries);
        self
    }

    /// Overrides the cap on buffered reads of this request's response body
    /// (`send_json`, and [`ResponseExt`](crate::ResponseExt) on the response
    /// of `send`), in decoded bytes. See
    /// [`ClientBuilder::max_body`](crate::ClientBuilder::max_body).
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.overrides.max_body = Some(bytes);
        self
    }

    /// Sends this idempotency key (in the client's idempotency header,
    /// `Idempotency-Key` by default), which also makes a non-idempotent
    /// request safe to retry.
    pub fn idempotency_key(self, key: &str) -> Self {
        let name = self.client.idempotency_header().to_owned();
        self.header(&name, key)
    }

    /// The request, built: an error kept from the chain (a malformed URL or
    /// header) is returned here.
    pub fn build(self) -> Result<Request, Error> {
        self.split().1
    }

    /// The client and the built request.
    pub(crate) fn split(self) -> (Client, Result<Request, Error>) {
        let request = match (self.error, self.url) {
            (Some(e), url) => Err(e.with_url(url.ok())),
            (None, Err(e)) => Err(e),
            (None, Ok(url)) => Ok(Request {
                method: self.method,
                url,
                headers: self.headers,
                body: self.body,
                overrides: self.overrides,
                headers_origin: None,
            }),
        };
        (self.client, request)
    }

    /// A copy of this builder, or `None` when its body cannot be replayed
    /// (as `reqwest::RequestBuilder::try_clone`).
    pub fn try_clone(&self) -> Option<RequestBuilder> {
        Some(RequestBuilder {
            client: self.client.clone(),
            method: self.method.clone(),
            url: match &self.url {
                Ok(u) => Ok(u.clone()),
                Err(e) => Err(e.clone_kind()),
            },
            headers: self.headers.clone(),
            body: self.body.try_clone().ok()?,
            overrides: self.overrides,
            error: self.error.as_ref().map(Error::clone_kind),
        })
    }

    /// Sends the request through the client's stack.
    pub async fn send(self) -> Result<reqwest::Response, Error> {
        let (client, request) = self.split();
        client.execute(request?).await
    }

    /// Sends the request, fails on a non-success status with [`Kind::Status`],
    /// and decodes the body as JSON. The body is read up to its cap
    /// ([`max_body`](Self::max_body)); past it, [`Kind::BodyTooLarge`].
    pub async fn send_json<T: DeserializeOwned>(self) -> Result<T, Error> {
        let res = crate::client::error_for_status(self.send().await?)?;
        let url = res.url().clone();
        let bytes = crate::limit::read(res, None, 0).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::from_body(e.into(), true).with_url(Some(url)))
    }
}
