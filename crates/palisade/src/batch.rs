//! Batches: many requests at once, with bounded concurrency.
//!
//! - [`Client::get_many`]: one result per path, in input order; a failure
//!   fails only its own entry (`asyncio.gather(..., return_exceptions=True)`).
//! - [`Client::try_get_all`]: all or nothing; the first failure cancels the
//!   requests still in flight, which release whatever they hold (permits,
//!   rate tokens, connections), and is returned (a `TaskGroup`).
//! - [`Client::fetch_unordered`]: a stream of results in completion order
//!   (`asyncio.as_completed`), each tagged with its input index.
//!
//! Each batch keeps at most its concurrency ([`DEFAULT_BATCH_CONCURRENCY`],
//! or [`Batch::concurrency`]) requests in flight, and pulls the next input
//! only when one finishes: a batch of 100 000 paths never holds more than
//! that many request futures. The client's own limits apply on top: each
//! request still passes the per-host concurrency limit, rate limiter and
//! breaker of the stack, so the effective concurrency is the smaller of the
//! two.
//!
//! Results are [`Fetched`]: the status, headers and the whole body, read
//! before the entry counts as done, so no finished entry holds a connection
//! or a concurrency permit while the rest of the batch runs. A status of 400
//! or above is a failure ([`Kind::Status`]) unless
//! [`Batch::error_for_status`] says otherwise.
//!
//! ```no_run
//! # async fn run() -> Result<(), palisade::Error> {
//! let client = palisade::Client::builder().base_url("https://api.example.com/").build()?;
//! let ids = (1..=500).map(|id| format!("items/{id}"));
//! for (id, result) in (1..).zip(client.batch().concurrency(16)?.get_many(ids).await) {
//!     match result {
//!         Ok(item) => println!("{id}: {} bytes", item.body().len()),
//!         Err(e) => eprintln!("{id}: {e}"),
//!     }
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use futures_util::stream::{self, StreamExt};
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::client::{Client, error_for_status};
use crate::error::{Error, Kind};
use crate::request::RequestBuilder;

/// How many requests a batch keeps in flight unless told otherwise: 32.
///
/// A third of the default connection-pool limit of httpx
/// (`max_connections=100`) and of aiohttp's `TCPConnector` (`limit=100`), so
/// one batch leaves room for the client's other traffic. The client's
/// per-host concurrency limit applies on top.
pub const DEFAULT_BATCH_CONCURRENCY: usize = 32;

/// One finished request of a batch: status, headers and the whole body.
#[derive(Debug, Clone)]
pub struct Fetched {
    url: reqwest::Url,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Fetched {
    /// Reads the whole body of `res`, up to its cap
    /// ([`ClientBuilder::max_body`](crate::ClientBuilder::max_body)); past it,
    /// [`Kind::BodyTooLarge`].
    pub async fn from_response(res: reqwest::Response) -> Result<Self, Error> {
        let url = res.url().clone();
        let status = res.status();
        let headers = res.headers().clone();
        let body = crate::limit::read(res, None, 0).await?;
        Ok(Self {
            url,
            status,
            headers,
            body,
        })
    }

    /// The final URL, after redirects.
    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// The response status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body, by value (no copy).
    pub fn into_body(self) -> Bytes {
        self.body
    }

    /// The body as UTF-8 text; invalid UTF-8 is a [`Kind::Decode`] error.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body).map_err(|e| {
            Error::new(Kind::Decode)
                .with_source(e)
                .with_url(Some(self.url.clone()))
        })
    }

    /// The body decoded from JSON; a mismatch is a [`Kind::Decode`] error.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::from_body(e.into(), true).with_url(Some(self.url.clone())))
    }
}

/// Settings for a batch: its concurrency and what counts as a failure.
/// Created by [`Client::batch`]; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Batch {
    client: Client,
    concurrency: usize,
    error_for_status: bool,
}

impl Client {
    /// A batch over this client, with [`DEFAULT_BATCH_CONCURRENCY`].
    pub fn batch(&self) -> Batch {
        Batch {
            client: self.clone(),
            concurrency: DEFAULT_BATCH_CONCURRENCY,
            error_for_status: true,
        }
    }

    /// `GET`s every path (relative to the base URL, or absolute) with
    /// [`DEFAULT_BATCH_CONCURRENCY`], and returns one result per path in
    /// input order. See [`Batch::get_many`].
    pub async fn get_many<I>(&self, paths: I) -> Vec<Result<Fetched, Error>>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.batch().get_many(paths).await
    }

    /// `GET`s every path, all or nothing. See [`Batch::try_get_all`].
    pub async fn try_get_all<I>(&self, paths: I) -> Result<Vec<Fetched>, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.batch().try_get_all(paths).await
    }

    /// Sends every request, yielding results as they complete. See
    /// [`Batch::fetch_unordered`].
    pub fn fetch_unordered<I>(&self, requests: I) -> FetchUnordered
    where
        I: IntoIterator<Item = RequestBuilder>,
        I::IntoIter: Send + 'static,
    {
        self.batch().fetch_unordered(requests)
    }
}

impl Batch {
    /// How many requests of the batch are in flight at most (default
    /// [`DEFAULT_BATCH_CONCURRENCY`]). The client's per-host concurrency
    /// limit applies on top. Zero is a [`Kind::Config`] error.
    pub fn concurrency(mut self, n: usize) -> Result<Self, Error> {
        if n == 0 {
            return Err(Error::config(
                "batch concurrency must be at least 1 (0 would never send anything)",
            ));
        }
        self.concurrency = n;
        Ok(self)
    }

    /// Whether a response with a status of 400 or above is a failure
    /// ([`Kind::Status`], the default) or a result like any other.
    pub fn error_for_status(mut self, enabled: bool) -> Self {
        self.error_for_status = enabled;
        self
    }

    async fn fetch(rb: RequestBuilder, error_for: bool) -> Result<Fetched, Error> {
        let mut res = rb.send().await?;
        if error_for {
            res = error_for_status(res)?;
        }
        Fetched::from_response(res).await
    }

    /// `GET`s every path and returns one result per path, in input order.
    /// A failure fails only its own entry. Paths are taken from the iterator
    /// only as slots free up.
    pub async fn get_many<I>(self, paths: I) -> Vec<Result<Fetched, Error>>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let client = self.client.clone();
        let requests = paths.into_iter().map(move |p| client.get(p.as_ref()));
        self.send_many(requests).await
    }

    /// Sends every request and returns one result per request, in input
    /// order, like [`get_many`](Self::get_many).
    pub async fn send_many<I>(self, requests: I) -> Vec<Result<Fetched, Error>>
    where
        I: IntoIterator<Item = RequestBuilder>,
    {
        let error_for = self.error_for_status;
        stream::iter(requests)
            .map(|rb| Self::fetch(rb, error_for))
            .buffered(self.concurrency)
            .collect()
            .await
    }

    /// `GET`s every path, all or nothing: every response in input order, or
    /// the first failure. On the first failure the requests still in flight
    /// are cancelled (dropped), which releases their permits, tokens and
    /// connections, and no further path is sent.
    pub async fn try_get_all<I>(self, paths: I) -> Result<Vec<Fetched>, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let client = self.client.clone();
        let requests = paths.into_iter().map(move |p| client.get(p.as_ref()));
        self.try_send_all(requests).await
    }

    /// Sends every request, all or nothing, like
    /// [`try_get_all`](Self::try_get_all).
    pub async fn try_send_all<I>(self, requests: I) -> Result<Vec<Fetched>, Error>
    where
        I: IntoIterator<Item = RequestBuilder>,
    {
        let error_for = self.error_for_status;
        let mut done: Vec<Option<Fetched>> = Vec::new();
        let mut in_flight = stream::iter(requests.into_iter().enumerate())
            .map(|(i, rb)| async move { (i, Self::fetch(rb, error_for).await) })
            .buffer_unordered(self.concurrency);
        while let Some((i, result)) = in_flight.next().await {
            // Returning drops `in_flight`, and with it every sibling.
            let fetched = result?;
            if done.len() <= i {
                done.resize_with(i + 1, || None);
            }
            done[i] = Some(fetched);
        }
        // The stream ended without a failure, so every slot is filled.
        Ok(done.into_iter().flatten().collect())
    }

    /// Sends every request and yields `(index, result)` in completion order,
    /// `index` being the request's position in `requests`. Requests are
    /// taken from the iterator only as slots free up; dropping the stream
    /// cancels those in flight.
    pub fn fetch_unordered<I>(self, requests: I) -> FetchUnordered
    where
        I: IntoIterator<Item = RequestBuilder>,
        I::IntoIter: Send + 'static,
    {
        let error_for = self.error_for_status;
        let inner = stream::iter(requests.into_iter().enumerate())
            .map(move |(i, rb)| async move { (i, Self::fetch(rb, error_for).await) })
            .buffer_unordered(self.concurrency)
            .boxed();
        FetchUnordered { inner }
    }
}

/// Results in completion order, each with its input index. Created by
/// [`Client::fetch_unordered`].
#[must_use = "streams do nothing unless polled"]
pub struct FetchUnordered {
    inner: Pin<Box<dyn Stream<Item = Indexed> + Send>>,
}

type Indexed = (usize, Result<Fetched, Error>);

impl fmt::Debug for FetchUnordered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchUnordered").finish_non_exhaustive()
    }
}

impl Stream for FetchUnordered {
    type Item = (usize, Result<Fetched, Error>);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}
