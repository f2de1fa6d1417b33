//! One classification of an attempt's outcome, read by retry, the breaker,
//! adaptive concurrency and metrics alike.
//!
//! [`Classify`] turns `Result<&Response<B>, &Error>` into a [`Class`]. The
//! default, [`HttpClassifier`], follows HTTP semantics:
//!
//! | outcome | class | health failure? |
//! |---|---|---|
//! | 1xx, 2xx, 3xx | [`Class::Success`] | no |
//! | 429 | [`Class::RateLimited`] with its `Retry-After` | no: a rate signal |
//! | other 4xx | [`Class::ClientError`] | no |
//! | 5xx | [`Class::ServerError`] with any `Retry-After` | yes |
//! | attempt timeout, transport timeout | [`Class::Timeout`] | yes |
//! | connect failure | [`Class::Connect`]: the request never left | yes |
//! | reset, truncated body, other transport error | [`Class::Transport`] | yes |
//! | a palisade layer's own refusal (open circuit, shed, rate limited locally) | [`Class::Rejected`] | no |
//!
//! This mirrors tower-http's `ServerErrorsAsFailures`, which also treats 5xx
//! and errors as failures, but keeps the distinctions tower-http folds
//! together: a connect failure is safe to retry for any method, a reset after
//! the request was written is not.
//!
//! ```
//! use palisade_core::classify::{Class, Classify, HttpClassifier};
//!
//! let res = http::Response::builder()
//!     .status(429)
//!     .header("retry-after", "3")
//!     .body(())
//!     .unwrap();
//! let class = HttpClassifier::new().classify_response(&res);
//! assert_eq!(class.retry_after(), Some(std::time::Duration::from_secs(3)));
//! assert!(!class.is_failure());
//! ```

use std::error::Error as StdError;
use std::io;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Response, StatusCode};

use crate::error::{
    BoxError, BudgetExhausted, CircuitOpen, DeadlineExceeded, Elapsed, Overloaded, QueueTimeout,
    RateLimited, TransportError, TransportErrorKind,
};
use crate::retry_after::RetryAfter;

/// The class of one attempt's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Class {
    /// A response that is not an error (1xx, 2xx, 3xx).
    Success,
    /// A 4xx other than 429. The caller's mistake, not a health signal.
    ClientError(StatusCode),
    /// A 5xx: the upstream failed.
    ServerError {
        /// The status.
        status: StatusCode,
        /// The response's `Retry-After`, if it had one (uncapped).
        retry_after: Option<Duration>,
    },
    /// A 429: the upstream asks us to slow down. A rate signal, not a health signal.
    RateLimited {
        /// How long the upstream asked us to wait (uncapped).
        retry_after: Option<Duration>,
    },
    /// The attempt (or the transport) timed out after the request may have
    /// been sent.
    Timeout,
    /// The connection could not be established: the request never left, so
    /// resending it is safe for any method.
    Connect,
    /// Any other transport failure after the request may have reached the
    /// server: a reset, a truncated body, an I/O error.
    Transport(TransportErrorKind),
    /// A palisade layer refused the request locally (open circuit, rate
    /// limited, shed, queue timeout, budget). The request never left.
    Rejected,
}

impl Class {
    /// Whether the outcome is a success.
    pub const fn is_success(&self) -> bool {
        matches!(self, Self::Success)
    }

    /// Whether the outcome says the upstream is unhealthy: a server error, a
    /// timeout, a connect failure or another transport failure. Client errors,
    /// 429s and local rejections are not failures.
    pub const fn is_failure(&self) -> bool {
        match self {
            Self::ServerError { .. } | Self::Timeout | Self::Connect => true,
            Self::Transport(kind) => !matches!(kind, TransportErrorKind::Certificate),
            _ => false,
        }
    }

    /// Whether the outcome says nothing about the upstream's health, so a
    /// breaker neither counts it as a failure nor as a success: a local
    /// refusal ([`Rejected`](Self::Rejected)), or a TLS certificate the
    /// client refused ([`TransportErrorKind::Certificate`]), which is the
    /// client's trust setting, not the host's health.
    pub const fn is_neutral(&self) -> bool {
        matches!(
            self,
            Self::Rejected | Self::Transport(TransportErrorKind::Certificate)
        )
    }

    /// Whether the request certainly never reached the server, so that
    /// sending it again cannot duplicate a side effect.
    pub const fn never_sent(&self) -> bool {
        match self {
            Self::Connect | Self::Rejected => true,
            Self::Transport(kind) => kind.never_sent(),
            _ => false,
        }
    }

    /// Whether the outcome signals that the upstream is overloaded: a 429, a
    /// 503, a timeout or a reset. Adaptive concurrency limits drop on these.
    pub fn is_overload_signal(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Timeout => true,
            Self::ServerError { status, .. } => *status == StatusCode::SERVICE_UNAVAILABLE,
            Self::Transport(kind) => *kind == TransportErrorKind::Reset,
            _ => false,
        }
    }

    /// The `Retry-After` the upstream sent with this outcome, if any.
    pub const fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::ServerError { retry_after, .. } | Self::RateLimited { retry_after } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// Classifies a status code alone, with no `Retry-After`.
    pub fn from_status(status: StatusCode) -> Self {
        if status == StatusCode::TOO_MANY_REQUESTS {
            Self::RateLimited { retry_after: None }
        } else if status.is_server_error() {
            Self::ServerError {
                status,
                retry_after: None,
            }
        } else if status.is_client_error() {
            Self::ClientError(status)
        } else {
            Self::Success
        }
    }

    /// A short stable name for events and metrics.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::ClientError(_) => "client_error",
            Self::ServerError { .. } => "server_error",
            Self::RateLimited { .. } => "rate_limited",
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Transport(_) => "transport",
            Self::Rejected => "rejected",
        }
    }
}

/// Turns one attempt's outcome into a [`Class`].
///
/// Implement it to change what counts as a failure, for example to treat a
/// `200` that carries an error header as a server error. Layers hold the
/// classifier by value and clone it freely, so keep it cheap to clone.
pub trait Classify: Clone + Send + Sync + 'static {
    /// Classifies a response head.
    fn classify_response<B>(&self, res: &Response<B>) -> Class;

    /// Classifies an error returned instead of a response.
    fn classify_error(&self, err: &(dyn StdError + 'static)) -> Class;

    /// Classifies either.
    fn classify<B>(&self, outcome: Result<&Response<B>, &BoxError>) -> Class {
        match outcome {
            Ok(res) => self.classify_response(res),
            Err(err) => self.classify_error(&**err),
        }
    }
}

/// The default classifier. See the [module docs](self) for its table.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpClassifier {
    _priv: (),
}

impl HttpClassifier {
    /// Creates the default classifier.
    pub const fn new() -> Self {
        Self { _priv: () }
    }
}

impl Classify for HttpClassifier {
    fn classify_response<B>(&self, res: &Response<B>) -> Class {
        classify_head(res.status(), res.headers())
    }

    fn classify_error(&self, err: &(dyn StdError + 'static)) -> Class {
        classify_error(err)
    }
}

/// Classifies a status and its headers the way [`HttpClassifier`] does.
pub fn classify_head(status: StatusCode, headers: &HeaderMap) -> Class {
    match Class::from_status(status) {
        Class::RateLimited { .. } => Class::RateLimited {
            retry_after: RetryAfter::from_headers_at(headers, SystemTime::now(), Duration::MAX),
        },
        Class::ServerError { status, .. } => Class::ServerError {
            status,
            retry_after: RetryAfter::header_at(headers, SystemTime::now(), Duration::MAX),
        },
        other => other,
    }
}

/// Classifies an error the way [`HttpClassifier`] does, walking its source
/// chain for palisade's own errors, a [`TransportError`], and finally
/// [`std::io::Error`] kinds.
pub fn classify_error(err: &(dyn StdError + 'static)) -> Class {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    let mut io_kind = None;
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<TransportError>() {
            return match t.kind() {
                TransportErrorKind::Connect => Class::Connect,
                TransportErrorKind::Timeout => Class::Timeout,
                kind => Class::Transport(kind),
            };
        }
        if e.is::<Elapsed>() || e.is::<DeadlineExceeded>() {
            return Class::Timeout;
        }
        if e.is::<CircuitOpen>()
            || e.is::<RateLimited>()
            || e.is::<Overloaded>()
            || e.is::<QueueTimeout>()
            || e.is::<BudgetExhausted>()
        {
            return Class::Rejected;
        }
        if io_kind.is_none()
            && let Some(io) = e.downcast_ref::<io::Error>()
        {
            io_kind = Some(io.kind());
        }
        cur = e.source();
    }
    match io_kind {
        Some(io::ErrorKind::ConnectionRefused | io::ErrorKind::AddrNotAvailable) => Class::Connect,
        Some(io::ErrorKind::TimedOut) => Class::Timeout,
        Some(
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe,
        ) => Class::Transport(TransportErrorKind::Reset),
        Some(io::ErrorKind::UnexpectedEof) => Class::Transport(TransportErrorKind::Truncated),
        _ => Class::Transport(TransportErrorKind::Other),
    }
}

/// A classifier that asks a function first and falls back to [`HttpClassifier`].
///
/// ```
/// use palisade_core::classify::{Class, Classify, ClassifyFn};
///
/// // Treat a 200 that carries `x-error: 1` as a server failure.
/// let classify = ClassifyFn::new(|status: http::StatusCode, headers: &http::HeaderMap| {
///     headers.contains_key("x-error").then_some(Class::ServerError { status, retry_after: None })
/// });
/// let res = http::Response::builder().header("x-error", "1").body(()).unwrap();
/// assert!(classify.classify_response(&res).is_failure());
/// ```
#[derive(Clone, Copy)]
pub struct ClassifyFn<F> {
    f: F,
}

impl<F> ClassifyFn<F>
where
    F: Fn(StatusCode, &HeaderMap) -> Option<Class> + Clone + Send + Sync + 'static,
{
    /// Wraps `f`; when it returns `None` the default classification applies.
    pub const fn new(f: F) -> Self {
        Self { f }
    }
}

impl<F> std::fmt::Debug for ClassifyFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassifyFn").finish_non_exhaustive()
    }
}

impl<F> Classify for ClassifyFn<F>
where
    F: Fn(StatusCode, &HeaderMap) -> Option<Class> + Clone + Send + Sync + 'static,
{
    fn classify_response<B>(&self, res: &Response<B>) -> Class {
        (self.f)(res.status(), res.headers())
            .unwrap_or_else(|| classify_head(res.status(), res.headers()))
    }

    fn classify_error(&self, err: &(dyn StdError + 'static)) -> Class {
        classify_error(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(status: u16, headers: &[(&str, &str)]) -> Response<()> {
        let mut b = Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn statuses_map_to_classes() {
        let c = HttpClassifier::new();
        assert_eq!(c.classify_response(&res(200, &[])), Class::Success);
        assert_eq!(c.classify_response(&res(304, &[])), Class::Success);
        assert_eq!(
            c.classify_response(&res(404, &[])),
            Class::ClientError(StatusCode::NOT_FOUND)
        );
        assert_eq!(
            c.classify_response(&res(429, &[("retry-after", "7")])),
            Class::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        let five = c.classify_response(&res(503, &[("retry-after", "2")]));
        assert!(five.is_failure());
        assert!(five.is_overload_signal());
        assert_eq!(five.retry_after(), Some(Duration::from_secs(2)));
        assert!(!c.classify_response(&res(500, &[])).is_overload_signal());
        assert!(!c.classify_response(&res(429, &[])).is_failure());
        assert!(!c.classify_response(&res(400, &[])).is_failure());
    }

    #[test]
    fn connect_is_distinct_from_after_send_failures() {
        let c = HttpClassifier::new();
        let connect: BoxError = TransportError::new(TransportErrorKind::Connect, "refused").into();
        let reset: BoxError = TransportError::new(TransportErrorKind::Reset, "reset").into();
        assert_eq!(c.classify::<()>(Err(&connect)), Class::Connect);
        assert!(c.classify::<()>(Err(&connect)).never_sent());
        let r = c.classify::<()>(Err(&reset));
        assert_eq!(r, Class::Transport(TransportErrorKind::Reset));
        assert!(!r.never_sent());
        assert!(r.is_failure());
    }

    #[test]
    fn io_errors_in_the_chain_are_recognised() {
        #[derive(Debug)]
        struct Wrapper(io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("wrapper")
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let refused = Wrapper(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(classify_error(&refused), Class::Connect);
        let eof = Wrapper(io::Error::from(io::ErrorKind::UnexpectedEof));
        assert_eq!(
            classify_error(&eof),
            Class::Transport(TransportErrorKind::Truncated)
        );
        let other = Wrapper(io::Error::other("x"));
        assert_eq!(
            classify_error(&other),
            Class::Transport(TransportErrorKind::Other)
        );
    }

    #[test]
    fn palisade_errors_are_timeouts_or_rejections() {
        assert_eq!(classify_error(&Elapsed), Class::Timeout);
        assert_eq!(classify_error(&DeadlineExceeded), Class::Timeout);
        assert_eq!(classify_error(&CircuitOpen::new(None)), Class::Rejected);
        assert_eq!(classify_error(&Overloaded), Class::Rejected);
        assert!(classify_error(&RateLimited::new(None)).never_sent());
    }
}
