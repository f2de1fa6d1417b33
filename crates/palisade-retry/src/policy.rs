//! The retry decision, shared by [`Retry`](crate::Retry) and by tower's own
//! `Retry` through [`RetryPolicy`]'s `tower::retry::Policy` implementation.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use palisade_core::{
    Body, BoxError, ByAuthority, Class, Classify, Deadline, HttpClassifier, Key, KeyFn,
    NotReplayable, RetryAfter, TransportErrorKind,
};
use rand::rngs::SmallRng;

use crate::backoff::{Backoff, BackoffState};
use crate::budget::Budget;
use crate::config::{Adaptive, RetryPolicyBuilder, StatusSet};
use crate::events;

/// A custom retry rule: see [`RetryPolicyBuilder::retry_if`].
pub(crate) type Predicate = Arc<dyn Fn(&Request<Body>, &Class) -> Option<bool> + Send + Sync>;

/// A request extension that declares a request safe to send more than once,
/// whatever its method: a `POST` that only reads (a search, a GraphQL query),
/// or one the server deduplicates by other means.
///
/// ```
/// let mut req = http::Request::post("https://api.example.com/search")
///     .body(palisade_core::Body::from("{\"q\":\"rust\"}"))
///     .unwrap();
/// req.extensions_mut().insert(palisade_retry::Idempotent);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Idempotent;

/// A response extension: how many attempts the logical request took.
///
/// The retry layer inserts it only when it made more than one attempt, so
/// that a first-time success costs no allocation; read it with
/// [`Attempts::of`], which says `1` when it is absent.
///
/// ```
/// use palisade_retry::Attempts;
///
/// let res = http::Response::new(());
/// assert_eq!(Attempts::of(&res), 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attempts(pub u32);

impl Attempts {
    /// The number of attempts `res` took: its extension, or `1`.
    pub fn of<B>(res: &Response<B>) -> u32 {
        res.extensions().get::<Attempts>().map_or(1, |a| a.0)
    }
}

/// The state every clone of a policy shares.
pub(crate) struct Shared<C, K> {
    pub(crate) classifier: C,
    pub(crate) key_fn: K,
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) max_retry_after: Duration,
    pub(crate) retry_statuses: StatusSet,
    pub(crate) retry_after_statuses: StatusSet,
    pub(crate) budget: Budget,
    pub(crate) idempotency_header: HeaderName,
    pub(crate) inject_key: bool,
    pub(crate) predicate: Option<Predicate>,
    pub(crate) rng: Mutex<SmallRng>,
    pub(crate) drain_cap: usize,
    pub(crate) adaptive: Option<Adaptive>,
}

/// Why retrying stopped. Its name is the `reason` of the
/// `retry_given_up` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GiveUp {
    /// The outcome is a failure no rule retries.
    NotRetryable,
    /// The request may have reached the server and is not safe to repeat.
    NotIdempotent,
    /// `max_attempts` were made.
    MaxAttempts,
    /// The server asked for a longer wait than `max_retry_after`.
    RetryAfterTooLong,
    /// The server asked for a wait past the deadline.
    RetryAfterPastDeadline,
    /// The backoff would end past the deadline.
    Deadline,
    /// The body cannot be sent again.
    BodyNotReplayable(NotReplayable),
}

impl GiveUp {
    pub(crate) const fn as_str(&self) -> &'static str {
        match self {
            Self::NotRetryable => "not_retryable",
            Self::NotIdempotent => "not_idempotent",
            Self::MaxAttempts => "max_attempts",
            Self::RetryAfterTooLong => "retry_after_too_long",
            Self::RetryAfterPastDeadline => "retry_after_past_deadline",
            Self::Deadline => "deadline",
            Self::BodyNotReplayable(_) => "body_not_replayable",
        }
    }
}

/// What to do with one attempt's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Decision {
    /// Return it: a success, or an outcome no rule is about (a 404).
    Return,
    /// Return it; retrying was considered and refused.
    GiveUp(GiveUp),
    /// Retry after `delay`, budget permitting.
    Retry {
        delay: Duration,
        reason: &'static str,
        retry_after: Option<Duration>,
    },
}

impl<C: Classify, K: KeyFn<Body>> Shared<C, K> {
    pub(crate) fn key(&self, req: &Request<Body>) -> Key {
        self.key_fn.key(req)
    }

    /// Whether `req` may be sent again after it may have reached the server.
    pub(crate) fn is_idempotent(&self, req: &Request<Body>) -> bool {
        req.method().is_idempotent()
            || req.extensions().get::<Idempotent>().is_some()
            || req.headers().contains_key(&self.idempotency_header)
    }

    /// Adds an idempotency key to `req` if configured and needed.
    pub(crate) fn inject_key(&self, req: &mut Request<Body>) {
        if self.inject_key
            && !req.method().is_idempotent()
            && req.extensions().get::<Idempotent>().is_none()
            && !req.headers().contains_key(&self.idempotency_header)
        {
            let mut buf = uuid::Uuid::encode_buffer();
            let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
            // A hyphenated UUID is always a valid header value.
            if let Ok(v) = HeaderValue::from_str(id) {
                req.headers_mut().insert(self.idempotency_header.clone(), v);
            }
        }
    }

    fn default_rule<B>(&self, outcome: Result<&Response<B>, &BoxError>, class: &Class) -> bool {
        match outcome {
            Ok(res) => self.retry_statuses.contains(res.status()),
            Err(_) => matches!(
                class,
                Class::Connect
                    | Class::Timeout
                    | Class::Transport(TransportErrorKind::Reset | TransportErrorKind::Truncated)
            ),
        }
    }

    fn retry_after<B>(&self, res: &Response<B>, class: &Class) -> Option<Duration> {
        if !self.retry_after_statuses.contains(res.status()) {
            return None;
        }
        class
            .retry_after()
            .or_else(|| retry_after_header(res.status(), res.headers()))
    }

    /// Decides what to do after attempt number `attempts` (1-based) produced
    /// `outcome`, drawing the next delay from `backoff`. The budget is not
    /// touched here: see [`admit`](Self::admit).
    pub(crate) fn decide<B>(
        &self,
        req: &Request<Body>,
        outcome: Result<&Response<B>, &BoxError>,
        attempts: u32,
        backoff: &mut BackoffState,
        key: Option<&Key>,
    ) -> Decision {
        let class = self.classifier.classify(outcome);
        if class.is_success() {
            return Decision::Return;
        }
        let retryable = self
            .predicate
            .as_ref()
            .and_then(|p| p(req, &class))
            .unwrap_or_else(|| self.default_rule(outcome, &class));
        if !retryable {
            let about_health = class.is_failure() || matches!(class, Class::RateLimited { .. });
            return if about_health {
                Decision::GiveUp(GiveUp::NotRetryable)
            } else {
                Decision::Return
            };
        }
        if !class.never_sent() && !self.is_idempotent(req) {
            return Decision::GiveUp(GiveUp::NotIdempotent);
        }
        // A per-request override of the retries replaces the policy's own.
        let max_attempts = palisade_core::overrides::MaxRetries::of(req)
            .map_or(self.max_attempts, |r| r.saturating_add(1));
        if attempts >= max_attempts {
            return Decision::GiveUp(GiveUp::MaxAttempts);
        }
        let deadline = Deadline::of(req);
        let retry_after = match outcome {
            Ok(res) => self.retry_after(res, &class),
            Err(_) => None,
        };
        if let Some(ra) = retry_after {
            if ra > self.max_retry_after {
                return Decision::GiveUp(GiveUp::RetryAfterTooLong);
            }
            if deadline.is_some_and(|d| ra >= d.remaining()) {
                return Decision::GiveUp(GiveUp::RetryAfterPastDeadline);
            }
        }
        let base = match (&self.adaptive, key) {
            (Some(a), Some(k)) => a.base(&self.backoff, k),
            _ => self.backoff.base(),
        };
        let jittered = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            self.backoff.next_delay_with_base(base, backoff, &mut *rng)
        };
        let delay = jittered.max(retry_after.unwrap_or(Duration::ZERO));
        if deadline.is_some_and(|d| delay >= d.remaining()) {
            return Decision::GiveUp(GiveUp::Deadline);
        }
        Decision::Retry {
            delay,
            reason: class.as_str(),
            retry_after,
        }
    }

    /// Spends one retry from the budget, emitting `budget_exhausted` when
    /// there is none.
    pub(crate) fn admit(&self, key: &Key, attempts: u32) -> bool {
        if self.budget.try_withdraw(Some(key)) {
            true
        } else {
            events::budget_exhausted(key, attempts, false);
            false
        }
    }

    /// Records an attempt's latency for the adaptive floor.
    pub(crate) fn record_latency(&self, key: Option<&Key>, latency: Duration) {
        if let (Some(a), Some(k)) = (&self.adaptive, key) {
            a.latencies.record(k, latency);
        }
    }

    pub(crate) const fn needs_key_per_call(&self) -> bool {
        self.budget.needs_key() || self.adaptive.is_some()
    }
}

/// `Retry-After` for a status, read as the classifier would: rate-limit
/// reset headers count for 429.
fn retry_after_header(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    if status == StatusCode::TOO_MANY_REQUESTS {
        RetryAfter::from_headers_at(headers, SystemTime::now(), Duration::MAX)
    } else {
        RetryAfter::header_at(headers, SystemTime::now(), Duration::MAX)
    }
}

/// Emits the event for a give-up.
pub(crate) fn emit_given_up<B>(
    key: &Key,
    attempts: u32,
    why: GiveUp,
    outcome: Result<&Response<B>, &BoxError>,
) {
    let status = outcome.ok().map(|r| r.status().as_u16());
    match why {
        GiveUp::BodyNotReplayable(n) => {
            events::retry_given_up(key, attempts, why.as_str(), Some(&n), status);
        }
        _ => events::retry_given_up(key, attempts, why.as_str(), None, status),
    }
}

/// Splits `req` into a template to replay from and the request to send now,
/// with why the template has an empty body if the body cannot be replayed.
/// Moves the parts rather than rebuilding them: this is the per-call path.
pub(crate) fn split(req: Request<Body>) -> (Request<Body>, Request<Body>, Option<NotReplayable>) {
    let (parts, body) = req.into_parts();
    let (copy, why) = match body.try_clone() {
        Ok(copy) => (copy, None),
        Err(why) => (Body::empty(), Some(why)),
    };
    (
        Request::from_parts(parts.clone(), copy),
        Request::from_parts(parts, body),
        why,
    )
}

/// A copy of `template` to send, or why its body cannot be sent again.
pub(crate) fn replay(template: &Request<Body>) -> Result<Request<Body>, NotReplayable> {
    Ok(copy_with_body(template, template.body().try_clone()?))
}

/// `template`'s method, URI, version, headers and extensions around `body`.
pub(crate) fn copy_with_body(template: &Request<Body>, body: Body) -> Request<Body> {
    let mut req = Request::new(body);
    *req.method_mut() = template.method().clone();
    *req.uri_mut() = template.uri().clone();
    *req.version_mut() = template.version();
    *req.headers_mut() = template.headers().clone();
    *req.extensions_mut() = template.extensions().clone();
    req
}

/// The retry policy: which outcomes are retried, how long to wait, and the
/// budget. See the [crate docs](crate) for the rules.
///
/// Clones share the configuration, the budget, the random number generator
/// and the latency windows: they live behind an `Arc`. A policy also keeps
/// the per-request state tower's `Retry` needs (attempts made, backoff
/// state), which is fresh in every policy built or cloned from the layer.
///
/// # Use with tower's `Retry`
///
/// `RetryPolicy` implements [`tower::retry::Policy`] for
/// `http::Request<palisade_core::Body>`, any response body and
/// [`BoxError`], so it can drive `tower::retry::Retry` directly:
///
/// ```
/// use palisade_retry::RetryPolicy;
/// use tower::ServiceBuilder;
/// # fn upstream() -> impl tower::Service<http::Request<palisade_core::Body>, Response = http::Response<String>, Error = palisade_core::BoxError, Future = std::future::Ready<Result<http::Response<String>, palisade_core::BoxError>>> + Clone {
/// #     tower::service_fn(|_req| std::future::ready(Ok(http::Response::new(String::new()))))
/// # }
///
/// let policy = RetryPolicy::builder().max_attempts(3).build().unwrap();
/// let svc = ServiceBuilder::new()
///     .layer(tower::retry::RetryLayer::new(policy))
///     .service(upstream());
/// # drop(svc);
/// ```
///
/// Two things differ from [`RetryLayer`](crate::RetryLayer): tower sends the
/// original request before the policy sees it, so idempotency keys cannot
/// be injected (set them before tower's `Retry`), and tower drops a retried
/// response unread instead of draining it for connection reuse.
pub struct RetryPolicy<C = HttpClassifier, K = ByAuthority> {
    pub(crate) shared: Arc<Shared<C, K>>,
    attempts: u32,
    backoff: BackoffState,
}

impl<C, K> Clone for RetryPolicy<C, K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            attempts: self.attempts,
            backoff: self.backoff,
        }
    }
}

impl<C, K> fmt::Debug for RetryPolicy<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.shared.max_attempts)
            .field("backoff", &self.shared.backoff)
            .field("max_retry_after", &self.shared.max_retry_after)
            .field("retry_statuses", &self.shared.retry_statuses)
            .field("retry_after_statuses", &self.shared.retry_after_statuses)
            .field("budget", &self.shared.budget)
            .field("idempotency_header", &self.shared.idempotency_header)
            .field("inject_idempotency_key", &self.shared.inject_key)
            .field("drain_cap", &self.shared.drain_cap)
            .field(
                "adaptive_floor",
                &self.shared.adaptive.as_ref().map(|a| a.config),
            )
            .finish_non_exhaustive()
    }
}

impl Default for RetryPolicy {
    /// The default policy. See [`RetryPolicyBuilder`] for each default.
    fn default() -> Self {
        RetryPolicyBuilder::new()
            .build()
            .expect("the default retry configuration is valid")
    }
}

impl RetryPolicy {
    /// A builder, starting from every default.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder::new()
    }
}

impl<C, K> RetryPolicy<C, K> {
    pub(crate) const fn from_shared(shared: Arc<Shared<C, K>>) -> Self {
        Self {
            shared,
            attempts: 0,
            backoff: BackoffState::new(),
        }
    }

    /// The most attempts per logical request.
    pub fn max_attempts(&self) -> u32 {
        self.shared.max_attempts
    }

    /// The backoff.
    pub fn backoff(&self) -> &Backoff {
        &self.shared.backoff
    }

    /// The budget retries spend. Clone a [`Budget::Shared`]'s handle to
    /// share it with a [`HedgeLayer`](crate::HedgeLayer).
    pub fn budget(&self) -> &Budget {
        &self.shared.budget
    }

    /// The longest `Retry-After` honoured.
    pub fn max_retry_after(&self) -> Duration {
        self.shared.max_retry_after
    }

    /// The idempotency-key header.
    pub fn idempotency_header(&self) -> &HeaderName {
        &self.shared.idempotency_header
    }
}

impl<C: Classify, K: KeyFn<Body>> RetryPolicy<C, K> {
    /// Whether `req` is safe to send again after it may have reached the
    /// server: an idempotent method, the [`Idempotent`] extension, or an
    /// idempotency-key header.
    pub fn is_idempotent(&self, req: &Request<Body>) -> bool {
        self.shared.is_idempotent(req)
    }
}

impl<C, K, B> tower::retry::Policy<Request<Body>, Response<B>, BoxError> for RetryPolicy<C, K>
where
    C: Classify,
    K: KeyFn<Body>,
{
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut Request<Body>,
        result: &mut Result<Response<B>, BoxError>,
    ) -> Option<Self::Future> {
        let shared = &*self.shared;
        let needs_key = shared.needs_key_per_call();
        let mut key = needs_key.then(|| shared.key(req));
        if self.attempts == 0 {
            // tower's Retry calls this once per attempt, so the first call
            // stands for the logical request.
            shared.budget.deposit(key.as_ref());
        }
        self.attempts = self.attempts.saturating_add(1);
        let outcome = result.as_ref();
        let decision = shared.decide(req, outcome, self.attempts, &mut self.backoff, key.as_ref());
        match decision {
            Decision::Return => None,
            Decision::GiveUp(why) => {
                let key = key.get_or_insert_with(|| shared.key(req));
                emit_given_up(key, self.attempts, why, outcome);
                None
            }
            Decision::Retry {
                delay,
                reason,
                retry_after,
            } => {
                let key = key.get_or_insert_with(|| shared.key(req));
                // tower sends this very request next: it must still replay.
                if let Err(why) = req.body().try_clone() {
                    emit_given_up(key, self.attempts, GiveUp::BodyNotReplayable(why), outcome);
                    return None;
                }
                if !shared.admit(key, self.attempts) {
                    return None;
                }
                let status = outcome.ok().map(|r| r.status().as_u16());
                events::retry_scheduled(key, self.attempts, delay, reason, status, retry_after);
                Some(tokio::time::sleep(delay))
            }
        }
    }

    fn clone_request(&mut self, req: &Request<Body>) -> Option<Request<Body>> {
        replay(req).ok()
    }
}
