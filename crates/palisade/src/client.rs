//! [`Client`] and [`ClientBuilder`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use palisade_core::{Body, BoxError, Key};
use tower::ServiceExt;

use crate::auth::Auth;
use crate::credentials::Credentials;
use crate::error::{Error, Kind};
use crate::in_flight::Outcome;
use crate::request::{Request, RequestBuilder};
use crate::shutdown::Shutdown;
use crate::stack::{self, CustomLayer, Route, StackConfig};

/// The default number of redirects followed, as reqwest and httpx's
/// `follow_redirects=True` (20 in httpx, 10 in reqwest; we take reqwest's).
pub const DEFAULT_MAX_REDIRECTS: usize = 10;

/// The `User-Agent` a request carries when nothing else sets one.
pub const DEFAULT_USER_AGENT: &str = concat!("palisade/", env!("CARGO_PKG_VERSION"));

/// A resilient HTTP client: reqwest behind palisade's standard stack.
///
/// Cloning is cheap, and clones share everything: the connection pool, the
/// breakers, limiters, queues and budgets. Create one client per process (or
/// per upstream family) and clone it where needed.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) base_url: Option<reqwest::Url>,
    pub(crate) headers: HeaderMap,
    pub(crate) auth: Option<Auth>,
    pub(crate) credentials: Credentials,
    /// The `User-Agent` the hop loop adds when a request has none: only an
    /// explicit one, with a custom transport. The reqwest transport the
    /// client builds adds it itself (as a default header, so that it yields
    /// to the request's), which spares every request a header map.
    pub(crate) user_agent: Option<HeaderValue>,
    /// Whether the transport is a custom one, so that the hop loop sends the
    /// `Accept-Encoding` the reqwest transport sends as a default header.
    pub(crate) custom_transport: bool,
    default: Route,
    mounts: Vec<(String, Route)>,
    pub(crate) shutdown: Arc<Shutdown>,
    pub(crate) max_redirects: usize,
    pub(crate) limits: crate::limit::Limits,
    idempotency_header: HeaderName,
    description: stack::Description,
    #[cfg(feature = "metrics")]
    metric_keys: crate::telemetry::MetricKeys,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field(
                "base_url",
                &self.inner.base_url.as_ref().map(crate::redact::url),
            )
            .field("auth", &self.inner.auth)
            .field(
                "mounts",
                &self.inner.mounts.iter().map(|m| &m.0).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with the standard stack and its production defaults.
    pub fn new() -> Result<Self, Error> {
        Self::builder().build()
    }

    /// A builder, starting from the standard stack's defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// A `GET` of `url`: a path relative to the base URL, or an absolute URL.
    pub fn get(&self, url: &str) -> RequestBuilder {
        self.request(Method::GET, url)
    }

    /// A `POST`.
    pub fn post(&self, url: &str) -> RequestBuilder {
        self.request(Method::POST, url)
    }

    /// A `PUT`.
    pub fn put(&self, url: &str) -> RequestBuilder {
        self.request(Method::PUT, url)
    }

    /// A `PATCH`.
    pub fn patch(&self, url: &str) -> RequestBuilder {
        self.request(Method::PATCH, url)
    }

    /// A `DELETE`.
    pub fn delete(&self, url: &str) -> RequestBuilder {
        self.request(Method::DELETE, url)
    }

    /// A `HEAD`.
    pub fn head(&self, url: &str) -> RequestBuilder {
        self.request(Method::HEAD, url)
    }

    /// A request with any method.
    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let url = self.resolve(url);
        RequestBuilder::new(self.clone(), method, url)
    }

    fn resolve(&self, url: &str) -> Result<reqwest::Url, Error> {
        let parsed = match reqwest::Url::parse(url) {
            Ok(u) => Ok(u),
            Err(url::ParseError::RelativeUrlWithoutBase) => match &self.inner.base_url {
                Some(base) => base.join(url.trim_start_matches('/')),
                None => {
                    return Err(Error::invalid_request(format!(
                        "relative URL {url:?} but the client has no base URL"
                    )));
                }
            },
            Err(e) => Err(e),
        };
        let u =
            parsed.map_err(|e| Error::invalid_request(format!("malformed URL {url:?}: {e}")))?;
        match u.scheme() {
            "http" | "https" if u.host().is_some() => Ok(u),
            _ => Err(Error::invalid_request(format!(
                "unsupported URL {url:?}: only absolute http and https URLs can be fetched"
            ))),
        }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    pub(crate) fn idempotency_header(&self) -> &str {
        self.inner.idempotency_header.as_str()
    }

    /// The composed stack with every layer's settings, outermost first, for
    /// tests and debugging. Its `Display` is a readable table.
    pub fn describe(&self) -> &stack::Description {
        &self.inner.description
    }

    /// How many requests are in flight: sent and awaiting their response
    /// head, or with a response body still streaming.
    pub fn in_flight(&self) -> usize {
        self.inner.shutdown.in_flight()
    }

    /// Stops admitting requests (new calls fail with [`Kind::Shutdown`]),
    /// waits up to `grace` for in-flight requests and for response bodies
    /// still streaming (downloads included), then cancels the rest: a
    /// request fails with [`Kind::Shutdown`], a body's next read fails, and
    /// each releases everything it held. Returns how many were cancelled.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.inner.shutdown.run(grace).await
    }

    /// Whether [`shutdown`](Self::shutdown) has begun.
    pub fn is_shut_down(&self) -> bool {
        self.inner.shutdown.is_closed()
    }

    pub(crate) fn route(&self, url: &reqwest::Url) -> &Route {
        let s = url.as_str();
        self.inner
            .mounts
            .iter()
            .find(|(prefix, _)| s.starts_with(prefix.as_str()))
            .map_or(&self.inner.default, |(_, svc)| svc)
    }

    /// Sends a built [`Request`] (from [`RequestBuilder::build`]): one
    /// logical request, as `reqwest::Client::execute`.
    pub async fn execute(&self, request: Request) -> Result<reqwest::Response, Error> {
        let Some(in_flight) = self.inner.shutdown.admit() else {
            return Err(Error::new(Kind::Shutdown)
                .with_message("the client is shut down")
                .with_url(Some(request.url)));
        };
        let mut request = request;
        // Parsed once: the first hop's URI, for the span's and the metrics'
        // key and for the first hop itself.
        let uri = request.url.as_str().parse::<http::Uri>().ok();
        let key = uri.as_ref().map_or_else(Key::global, Key::origin);
        #[cfg(feature = "metrics")]
        let metric_keys = self.inner.metric_keys.origin(&key);
        #[cfg(feature = "metrics")]
        let _active = crate::telemetry::Active::new(&metric_keys);
        let method = request.method.clone();
        let span = tracing::info_span!(
            target: "palisade",
            "request",
            method = %method,
            url = %crate::redact::url(&request.url),
            key = %key,
            status = tracing::field::Empty,
            attempts = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let start = tokio::time::Instant::now();
        // One deadline for the whole logical request, every hop included.
        let deadline = crate::hop::entry_deadline(
            request.overrides.deadline,
            self.route(&request.url).deadline(),
        );
        let max_body = request
            .overrides
            .max_body
            .unwrap_or(self.inner.limits.max_body);
        // One expression: the hop loop's future is moved straight into
        // its wrapper, never held in a local, so this future does not keep
        // a second copy of it.
        let outcome = crate::in_flight::InFlightRequest::new(
            self.run(&mut request, uri, deadline),
            in_flight.cancelled(),
            span.clone(),
        )
        .await;
        let out = match outcome {
            Outcome::Done(Ok((res, redirected)), _) => {
                // The body is counted in flight by the route (`Route::send`).
                // A HEAD, a 204 and a 304 have no body to decode.
                let bodiless = method == Method::HEAD
                    || matches!(
                        res.status(),
                        http::StatusCode::NO_CONTENT | http::StatusCode::NOT_MODIFIED
                    );
                let negotiated = !bodiless && self.negotiated(&request);
                let limits = &self.inner.limits;
                let res = if crate::limit::needs_guard(&res, negotiated, limits) {
                    // Boxed: its future (tower-http's decoder) would
                    // otherwise size every call's.
                    Box::pin(crate::limit::guard(res, negotiated, limits, max_body)).await
                } else {
                    crate::limit::mark(res, max_body)
                };
                let url = redirected.unwrap_or(request.url);
                Ok(palisade_reqwest::to_reqwest_response(res, Some(url)))
            }
            Outcome::Done(Err(e), attempts) => Err(e.with_attempts(attempts)),
            Outcome::Cancelled => Err(Error::new(Kind::Shutdown)
                .with_message("cancelled by shutdown after its grace period")
                .with_url(Some(request.url))),
        };
        let elapsed = start.elapsed();
        span.record("duration_ms", elapsed.as_millis() as u64);
        #[cfg(feature = "metrics")]
        crate::telemetry::record_request(&metric_keys, &method, &out, elapsed);
        match &out {
            Ok(res) => {
                span.record("status", res.status().as_u16());
                span.record("attempts", crate::attempts(res));
            }
            Err(e) => {
                span.record("error", e.kind().as_str());
            }
        }
        out
    }
}

/// Fails a response whose status is 4xx or 5xx with [`Kind::Status`],
/// carrying the status, the URL, the attempts and any `Retry-After`.
pub fn error_for_status(res: reqwest::Response) -> Result<reqwest::Response, Error> {
    let status = res.status();
    if status.is_client_error() || status.is_server_error() {
        let retry_after =
            palisade_core::RetryAfter::from_headers(res.headers(), Duration::from_secs(24 * 3600));
        return Err(Error::new(Kind::Status)
            .with_status(status)
            .with_retry_after(retry_after)
            .with_attempts(crate::attempts(&res))
            .with_url(Some(res.url().clone())));
    }
    Ok(res)
}

/// Builds a [`Client`]. Every setter has a documented default; `build`
/// validates the configuration as a whole and returns [`Kind::Config`]
/// errors that say what to change.
pub struct ClientBuilder {
    base_url: Option<String>,
    headers: Vec<(String, String, bool)>,
    keep_across_origins: Vec<String>,
    user_agent: Option<String>,
    auth: Option<Auth>,
    stack: StackConfig,
    mounts: Vec<(String, StackConfig)>,
    transport: Option<stack::TransportFactory>,
    custom: Vec<CustomLayer>,
    max_redirects: usize,
    limits: crate::limit::Limits,
    idempotency_header: Option<String>,
    error: Option<Error>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("auth", &self.auth)
            .field("stack", &self.stack)
            .field(
                "mounts",
                &self.mounts.iter().map(|m| &m.0).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientBuilder {
    /// A builder with the standard stack's production defaults.
    pub fn new() -> Self {
        Self {
            base_url: None,
            headers: Vec::new(),
            keep_across_origins: Vec::new(),
            user_agent: None,
            auth: None,
            stack: StackConfig::default(),
            mounts: Vec::new(),
            transport: None,
            custom: Vec::new(),
            max_redirects: DEFAULT_MAX_REDIRECTS,
            limits: crate::limit::Limits::default(),
            idempotency_header: None,
            error: None,
        }
    }

    /// The base URL relative paths are joined to. It must be absolute
    /// (`https://api.example.com/v1/`); credentials are scoped to its origin.
    pub fn base_url(mut self, url: &str) -> Self {
        self.base_url = Some(url.to_owned());
        self
    }

    /// A header sent with every request (a request's own header of the same
    /// name replaces it). A credential (see
    /// [`keep_across_origins`](Self::keep_across_origins) for the rule)
    /// belongs to the base URL's origin, or without a base URL to each
    /// request's first hop: it never follows a redirect or a link to another
    /// origin.
    pub fn default_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_owned(), value.to_owned(), false));
        self
    }

    /// A default header whose value is a secret: marked sensitive, so it
    /// never appears in `Debug` output or events, and treated as a
    /// credential whatever its name.
    pub fn default_secret_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned(), true));
        self
    }

    /// Lets the header `name` cross to other origins although its name
    /// makes it a credential (a tracing header such as `X-Trace-Token`).
    ///
    /// A credential is `Authorization`, `Proxy-Authorization`, `Cookie`,
    /// any header marked sensitive ([`RequestBuilder::secret_header`],
    /// [`default_secret_header`](Self::default_secret_header)), the API-key
    /// headers in common use (`X-Api-Key`, `Api-Key`, `X-Auth-Token`,
    /// `Private-Token`, `X-Goog-Api-Key`, `Ocp-Apim-Subscription-Key`,
    /// `X-Amz-Security-Token`, ...), and any header whose name contains
    /// `auth`, `token`, `secret`, `api-key`/`apikey`, `session`, `password`,
    /// `signature` or `credential`. Credentials are dropped from any hop to
    /// another origin: a redirect, a pagination link, a resumed download.
    /// A header marked sensitive is kept too when named here.
    pub fn keep_across_origins(mut self, name: &str) -> Self {
        self.keep_across_origins.push(name.to_owned());
        self
    }

    /// The `User-Agent` sent when a request sets none (default
    /// `palisade/<version>`; some APIs, GitHub's among them, refuse requests
    /// without one). A `User-Agent` set with
    /// [`default_header`](Self::default_header) or on a request wins.
    ///
    /// The reqwest transport the client builds sends it. A custom
    /// [`transport`](Self::transport) is the caller's own HTTP client and
    /// sends its own `User-Agent`, unless one is set here.
    pub fn user_agent(mut self, value: &str) -> Self {
        self.user_agent = Some(value.to_owned());
        self
    }

    /// Credentials, scoped to the base URL's origin. See [`Auth`].
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// A static bearer token, scoped to the base URL's origin.
    pub fn bearer_token(mut self, token: &str) -> Self {
        match Auth::bearer(token) {
            Ok(a) => self.auth = Some(a),
            Err(e) => self.error = self.error.or(Some(e)),
        }
        self
    }

    /// An API key in `header`, scoped to the base URL's origin.
    pub fn api_key(mut self, header: &str, key: &str) -> Self {
        match Auth::api_key(header, key) {
            Ok(a) => self.auth = Some(a),
            Err(e) => self.error = self.error.or(Some(e)),
        }
        self
    }

    /// How many redirects to follow (default [`DEFAULT_MAX_REDIRECTS`]; 0
    /// returns 3xx responses to the caller). The client follows redirects
    /// itself, so that every hop passes through the whole stack under its own
    /// key, and credentials never cross to another origin.
    pub fn max_redirects(mut self, n: usize) -> Self {
        self.max_redirects = n;
        self
    }

    /// The cap on every buffered read of a response body, in decoded bytes
    /// (default [`DEFAULT_MAX_BODY`](crate::DEFAULT_MAX_BODY), 64 MiB):
    /// `send_json`, pagination pages, batch results, the blocking client's
    /// `bytes`/`text`/`json` and [`ResponseExt`](crate::ResponseExt). A
    /// `Content-Length` over it fails at once; a body without one, or whose
    /// length lies, fails as soon as it passes it. A body over it is
    /// [`Kind::BodyTooLarge`]. 0 admits only empty bodies; `u64::MAX` is no
    /// cap. [`RequestBuilder::max_body`] overrides it for one request. See
    /// [`limit`](crate::limit).
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.limits.max_body = bytes;
        self
    }

    /// The bound on the decompression ratio (default
    /// [`DEFAULT_MAX_DECOMPRESSION_RATIO`](crate::limit::DEFAULT_MAX_DECOMPRESSION_RATIO),
    /// 100): past [`decompression_ratio_after`](Self::decompression_ratio_after)
    /// decoded bytes, a body that decodes to more than `ratio` bytes per byte
    /// received fails with [`Kind::BodyTooLarge`], however it is read. 0 is a
    /// [`Kind::Config`] error at `build`; `u32::MAX` in effect turns the
    /// bound off.
    pub fn max_decompression_ratio(mut self, ratio: u32) -> Self {
        self.limits.max_ratio = ratio;
        self
    }

    /// How many decoded bytes a body may produce before its decompression
    /// ratio is checked (default
    /// [`DEFAULT_RATIO_GRACE`](crate::limit::DEFAULT_RATIO_GRACE), 1 MiB), so
    /// that a small, very compressible answer is never refused.
    pub fn decompression_ratio_after(mut self, bytes: u64) -> Self {
        self.limits.ratio_grace = bytes;
        self
    }

    /// Applies the [`max_body`](Self::max_body) cap to streamed reads too:
    /// downloads, `chunk()` loops and the blocking client's `Read` and
    /// `copy_to` (default `false`: they run in flat memory, so only the
    /// decompression ratio bounds them).
    pub fn cap_streams(mut self, enabled: bool) -> Self {
        self.limits.cap_streams = enabled;
        self
    }

    /// The header that carries idempotency keys set with
    /// [`RequestBuilder::idempotency_key`] (default: the retry policy's,
    /// `Idempotency-Key`). It must be the header the retry policy recognises,
    /// or keyed requests would not be retried; `build` checks this.
    pub fn idempotency_header(mut self, name: &str) -> Self {
        self.idempotency_header = Some(name.to_owned());
        self
    }

    /// Adds a tower layer around the whole standard stack (outside the
    /// deadline), inside the client's own handling of credentials and
    /// redirects. Layers added first end up outermost. Any layer over
    /// `http::Request<palisade::Body>` fits, tower-http's included (trace,
    /// set-header): it sees each logical request once per redirect hop, with
    /// its credentials already attached. The client decodes compression
    /// itself, under the decompression ratio bound; a decompression layer
    /// here would decode first and escape it. Each added layer
    /// costs one boxing per call. It applies to the default stack and to
    /// every mount.
    pub fn layer<L, S, B>(mut self, layer: L) -> Self
    where
        L: tower::Layer<stack::HttpService, Service = S> + Send + Sync + 'static,
        S: tower::Service<http::Request<Body>, Response = http::Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        self.custom.push(Arc::new(move |svc: stack::HttpService| {
            stack::HttpService::new(
                layer
                    .layer(svc)
                    .map_err(Into::into)
                    .map_response(|res: http::Response<B>| res.map(reqwest::Body::wrap)),
            )
        }));
        self
    }

    /// Changes the default stack's configuration.
    pub fn stack(mut self, f: impl FnOnce(StackConfig) -> StackConfig) -> Self {
        self.stack = f(self.stack);
        self
    }

    /// Requests whose URL starts with `prefix` go through their own stack,
    /// built from `config`, with its own pool and its own layer state, so a
    /// slow upstream cannot starve the others (httpx's `mounts`, per layer).
    /// The longest matching prefix wins.
    pub fn mount(mut self, prefix: &str, config: StackConfig) -> Self {
        self.mounts.push((prefix.to_owned(), config));
        self
    }

    /// Replaces reqwest with any service over the stack's http types, for
    /// tests: a `tower::service_fn` stub or recorded responses. Every layer
    /// still applies. See `docs/testing.md`.
    pub fn transport<S, B>(mut self, service: S) -> Self
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        self.transport = Some(stack::TransportFactory::service(service));
        self
    }

    /// Builds the client, validating the whole configuration.
    pub fn build(self) -> Result<Client, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.limits.validate()?;
        let base_url = match &self.base_url {
            None => None,
            Some(s) => {
                let u = reqwest::Url::parse(s).map_err(|e| {
                    Error::config(format!("base_url {s:?} is not an absolute URL: {e}"))
                })?;
                if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
                    return Err(Error::config(format!(
                        "base_url {s:?} must be an absolute http or https URL"
                    )));
                }
                // Joining "items" to ".../v1" would drop "v1": make the base a directory.
                let mut u = u;
                if !u.path().ends_with('/') {
                    let p = format!("{}/", u.path());
                    u.set_path(&p);
                }
                Some(u)
            }
        };
        let mut headers = HeaderMap::new();
        for (name, value, secret) in &self.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::config(format!("invalid default header name {name:?}")))?;
            let mut v = HeaderValue::from_str(value)
                .map_err(|_| Error::config(format!("invalid value for default header {name:?}")))?;
            v.set_sensitive(*secret || crate::credentials::is_credential(&n));
            headers.append(n, v);
        }
        let mut keep = Vec::with_capacity(self.keep_across_origins.len());
        for name in &self.keep_across_origins {
            keep.push(HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                Error::config(format!(
                    "invalid header name {name:?} in keep_across_origins"
                ))
            })?);
        }
        let user_agent = match &self.user_agent {
            None => HeaderValue::from_static(DEFAULT_USER_AGENT),
            Some(ua) => HeaderValue::from_str(ua)
                .map_err(|_| Error::config(format!("invalid user_agent {ua:?}")))?,
        };
        // Per-request keys go in the header the retry policy recognises.
        let policy_header = self
            .stack
            .retry
            .as_ref()
            .map(|r| r.policy().idempotency_header().clone());
        let idempotency_header = match &self.idempotency_header {
            None => policy_header.unwrap_or_else(|| HeaderName::from_static("idempotency-key")),
            Some(name) => {
                let h = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    Error::config(format!("invalid idempotency header name {name:?}"))
                })?;
                if let Some(p) = policy_header.filter(|p| *p != h) {
                    return Err(Error::config(format!(
                        "idempotency header {h} differs from the retry policy's ({p}); \
                         configure the retry layer with the same header"
                    )));
                }
                h
            }
        };
        let auth = match (self.auth, &base_url) {
            (Some(a), Some(base)) => Some(a.scoped_to(base)),
            (Some(_), None) => {
                return Err(Error::config(
                    "credentials need a base_url: they are only ever sent to its origin",
                ));
            }
            (None, _) => None,
        };

        let (default, mut description) = stack::build(
            &self.stack,
            self.transport.as_ref(),
            &self.custom,
            &user_agent,
        )?;
        if !self.custom.is_empty() {
            description.layers.insert(
                0,
                ("custom".into(), format!("{} layer(s)", self.custom.len())),
            );
        }
        let mut mounts = Vec::with_capacity(self.mounts.len());
        for (prefix, cfg) in self.mounts {
            reqwest::Url::parse(&prefix).map_err(|e| {
                Error::config(format!(
                    "mount prefix {prefix:?} is not an absolute URL: {e}"
                ))
            })?;
            let (svc, desc) =
                stack::build(&cfg, self.transport.as_ref(), &self.custom, &user_agent)?;
            description.mounts.push((prefix.clone(), desc));
            mounts.push((prefix, svc));
        }
        // Longest prefix first, so the most specific mount wins.
        mounts.sort_by_key(|m| std::cmp::Reverse(m.0.len()));

        Ok(Client {
            inner: Arc::new(Inner {
                base_url,
                headers,
                auth,
                credentials: Credentials::new(keep),
                // With a custom transport, only an explicit User-Agent.
                user_agent: (self.transport.is_some() && self.user_agent.is_some())
                    .then_some(user_agent),
                custom_transport: self.transport.is_some(),
                default,
                mounts,
                shutdown: Shutdown::new(),
                max_redirects: self.max_redirects,
                limits: self.limits,
                idempotency_header,
                description,
                #[cfg(feature = "metrics")]
                metric_keys: crate::telemetry::MetricKeys::default(),
            }),
        })
    }
}
