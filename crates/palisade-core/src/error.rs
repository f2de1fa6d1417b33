//! The errors palisade layers fail with, shared so that every layer, the
//! classifier and the facade agree on them.
//!
//! Each error is small, has a lowercase [`Display`](std::fmt::Display) and
//! widens to [`BoxError`]. Layers return them boxed; callers recover them with
//! [`downcast_ref`](std::error::Error#method.downcast_ref) or, more simply, with
//! [`find`], which walks the source chain.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// The boxed error type every palisade layer returns, as tower does.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Finds the first error of type `E` in `err` or its [`source`](StdError::source) chain.
pub fn find<'a, E: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        cur = e.source();
    }
    None
}

macro_rules! unit_error {
    ($(#[$m:meta])* $name:ident, $msg:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name;

        impl $name {
            /// Creates the error.
            pub const fn new() -> Self {
                Self
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($msg)
            }
        }

        impl StdError for $name {}
    };
}

unit_error!(
    /// An attempt did not produce a response head within its attempt timeout.
    Elapsed,
    "attempt timed out"
);
unit_error!(
    /// The logical request ran past its [`Deadline`](crate::Deadline), waits and
    /// retries included.
    DeadlineExceeded,
    "deadline exceeded"
);
unit_error!(
    /// A concurrency limit's queue was full, so the request was shed at once.
    Overloaded,
    "overloaded: concurrency queue is full"
);
unit_error!(
    /// A request waited in a concurrency queue for its maximum wait without
    /// getting a permit.
    QueueTimeout,
    "timed out waiting for a concurrency permit"
);
unit_error!(
    /// The retry budget had no retries left. Retry layers normally return the
    /// last outcome instead; this error exists for layers that have none.
    BudgetExhausted,
    "retry budget exhausted"
);

/// The circuit for this request's key is open: the call failed fast without
/// reaching the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitOpen {
    /// How long until the breaker lets a probe through, when known.
    pub retry_after: Option<Duration>,
}

impl CircuitOpen {
    /// Creates the error.
    pub const fn new(retry_after: Option<Duration>) -> Self {
        Self { retry_after }
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.retry_after {
            Some(d) => write!(f, "circuit open; retry after {} ms", d.as_millis()),
            None => f.write_str("circuit open"),
        }
    }
}

impl StdError for CircuitOpen {}

/// The rate limiter had no slot for this request within the time it may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    /// How long until a slot frees, when known.
    pub retry_after: Option<Duration>,
}

impl RateLimited {
    /// Creates the error.
    pub const fn new(retry_after: Option<Duration>) -> Self {
        Self { retry_after }
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.retry_after {
            Some(d) => write!(f, "rate limited; retry after {} ms", d.as_millis()),
            None => f.write_str("rate limited"),
        }
    }
}

impl StdError for RateLimited {}

/// An invalid layer configuration: which component, which option, and what
/// to change. Builders return it instead of building a layer that cannot
/// work.
///
/// ```
/// use palisade_core::error::ConfigError;
///
/// let err = ConfigError::new("breaker", "failure_ratio", "must be in (0, 1], got 1.5");
/// assert_eq!(err.option(), "failure_ratio");
/// assert_eq!(
///     err.to_string(),
///     "invalid breaker configuration: failure_ratio: must be in (0, 1], got 1.5"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    component: &'static str,
    option: &'static str,
    reason: std::borrow::Cow<'static, str>,
}

impl ConfigError {
    /// `option` of `component` is invalid because of `reason`.
    pub fn new(
        component: &'static str,
        option: &'static str,
        reason: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Self {
        Self {
            component,
            option,
            reason: reason.into(),
        }
    }

    /// The component whose configuration is invalid, e.g. `"breaker"`.
    pub const fn component(&self) -> &'static str {
        self.component
    }

    /// The option at fault, as its builder method is named.
    pub const fn option(&self) -> &'static str {
        self.option
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} configuration: {}: {}",
            self.component, self.option, self.reason
        )
    }
}

impl StdError for ConfigError {}

/// What kind of transport failure a [`TransportError`] is.
///
/// The distinction that matters most is [`Connect`](Self::Connect): the
/// request never left this process, so sending it again is safe for any
/// method. Every other kind may have reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The connection could not be established (DNS, refused, TLS handshake,
    /// connect timeout). The request was not sent.
    Connect,
    /// The transport's own timeout fired after the request may have been sent.
    Timeout,
    /// The connection was reset or closed before the response completed.
    Reset,
    /// The response body ended before its declared length.
    Truncated,
    /// The request could not be built (bad URL, header, body).
    Request,
    /// Any other failure after the request may have reached the server.
    Other,
    /// The server's TLS certificate was refused: an unknown issuer, a wrong
    /// name, an expired or revoked certificate. The request was not sent,
    /// and sending it again cannot succeed until the client trusts the
    /// certificate, so it is never retried and says nothing about the
    /// upstream's health.
    Certificate,
}

impl TransportErrorKind {
    /// Whether the request certainly never reached the server.
    pub const fn never_sent(self) -> bool {
        matches!(self, Self::Connect | Self::Request | Self::Certificate)
    }

    const fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Reset => "connection reset",
            Self::Truncated => "truncated body",
            Self::Request => "invalid request",
            Self::Other => "transport",
            Self::Certificate => "certificate refused",
        }
    }
}

/// A transport failure, classified by the transport that saw it, with the
/// original error (for example the `reqwest::Error`) kept as its
/// [`source`](StdError::source), never stringified.
#[derive(Debug)]
pub struct TransportError {
    kind: TransportErrorKind,
    source: BoxError,
}

impl TransportError {
    /// Wraps `source` as a transport failure of `kind`.
    pub fn new(kind: TransportErrorKind, source: impl Into<BoxError>) -> Self {
        Self {
            kind,
            source: source.into(),
        }
    }

    /// The kind of failure.
    pub const fn kind(&self) -> TransportErrorKind {
        self.kind
    }

    /// The original error.
    pub fn get_ref(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.source
    }

    /// Returns the original error.
    pub fn into_inner(self) -> BoxError {
        self.source
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error", self.kind.as_str())
    }
}

impl StdError for TransportError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_are_lowercase() {
        let errs: Vec<BoxError> = vec![
            Elapsed.into(),
            DeadlineExceeded.into(),
            Overloaded.into(),
            QueueTimeout.into(),
            BudgetExhausted.into(),
            CircuitOpen::new(Some(Duration::from_millis(1500))).into(),
            RateLimited::new(None).into(),
            TransportError::new(TransportErrorKind::Reset, "boom").into(),
        ];
        for e in errs {
            let s = e.to_string();
            let first = s.chars().next().unwrap();
            assert!(first.is_lowercase(), "{s:?} should start lowercase");
        }
        assert_eq!(
            CircuitOpen::new(Some(Duration::from_millis(1500))).to_string(),
            "circuit open; retry after 1500 ms"
        );
    }

    #[test]
    fn find_walks_the_source_chain() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let err: BoxError = TransportError::new(TransportErrorKind::Reset, inner).into();
        let io = find::<std::io::Error>(&*err).expect("io error in chain");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
        assert!(find::<Elapsed>(&*err).is_none());
    }
}
