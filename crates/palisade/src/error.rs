//! [`Error`]: one error type for every way a request can fail.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use http::StatusCode;
use palisade_core::error::{
    BudgetExhausted, CircuitOpen, DeadlineExceeded, Elapsed, Overloaded, QueueTimeout, RateLimited,
};
use palisade_core::{BoxError, NotReplayable, TransportError, TransportErrorKind};

/// What went wrong, in one word. Stable: the names are those of
/// [`Kind::as_str`], used in events and by the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// An attempt got no response head within its attempt timeout.
    Timeout,
    /// The whole request, retries and waits included, ran past its deadline.
    DeadlineExceeded,
    /// The circuit for the request's origin was open.
    CircuitOpen,
    /// A rate limit (local, or the server's) had no slot in time.
    RateLimited,
    /// The concurrency queue was full.
    Overloaded,
    /// No concurrency permit within the maximum wait.
    QueueTimeout,
    /// The retry budget was exhausted.
    BudgetExhausted,
    /// The connection could not be established; the request was not sent.
    Connect,
    /// The server's TLS certificate was refused (an unknown issuer, a wrong
    /// name, an expired certificate): the request was not sent, and is not
    /// retried. Trust the issuer with
    /// [`PoolConfig::add_root_certificate`](crate::PoolConfig::add_root_certificate)
    /// (the CLI's `--ca-bundle`).
    Certificate,
    /// The connection failed after the request may have been sent.
    Transport,
    /// The server answered with an error status (from `error_for_status`).
    Status,
    /// The response body could not be decoded (JSON).
    Decode,
    /// Reading the response body failed or stalled.
    Body,
    /// The response body passed its size cap, or decoded past the
    /// decompression ratio bound (a decompression bomb). Its
    /// [`BodyTooLarge`](crate::limit::BodyTooLarge)
    /// ([`Error::body_too_large`]) names the limit and how far the read got.
    /// Never retried, and never a breaker failure: the response had already
    /// been counted a success.
    BodyTooLarge,
    /// The request could not be built: a malformed URL, header or body.
    InvalidRequest,
    /// The client's configuration is invalid.
    Config,
    /// The client is shut down and admits no new request.
    Shutdown,
}

impl Kind {
    /// The kind's stable lowercase name, e.g. `"circuit_open"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::CircuitOpen => "circuit_open",
            Self::RateLimited => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::QueueTimeout => "queue_timeout",
            Self::BudgetExhausted => "budget_exhausted",
            Self::Connect => "connect",
            Self::Certificate => "certificate",
            Self::Transport => "transport",
            Self::Status => "status",
            Self::Decode => "decode",
            Self::Body => "body",
            Self::BodyTooLarge => "body_too_large",
            Self::InvalidRequest => "invalid_request",
            Self::Config => "config",
            Self::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of every palisade client call.
///
/// It says what went wrong ([`kind`](Self::kind)), for which URL, after how
/// many attempts, and keeps the original error as its
/// [`source`](StdError::source): a `reqwest::Error` stays reachable with
/// `downcast_ref`, never flattened to a string.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: Kind,
    source: Option<BoxError>,
    url: Option<reqwest::Url>,
    status: Option<StatusCode>,
    retry_after: Option<Duration>,
    attempts: u32,
    message: Option<String>,
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                source: None,
                url: None,
                status: None,
                retry_after: None,
                attempts: 0,
                message: None,
            }),
        }
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    pub(crate) fn with_message(mut self, message: impl Into<String>) -> Self {
        self.inner.message = Some(message.into());
        self
    }

    pub(crate) fn with_url(mut self, url: Option<reqwest::Url>) -> Self {
        if self.inner.url.is_none() {
            self.inner.url = url;
        }
        self
    }

    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.inner.status = Some(status);
        self
    }

    pub(crate) fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        if retry_after.is_some() {
            self.inner.retry_after = retry_after;
        }
        self
    }

    pub(crate) fn with_attempts(mut self, attempts: u32) -> Self {
        self.inner.attempts = attempts;
        self
    }

    /// A copy with the kind, message, URL, status and attempts, but not the
    /// source (errors are not `Clone`); for a builder copied before it was
    /// sent.
    pub(crate) fn clone_kind(&self) -> Self {
        let i = &self.inner;
        let mut e = Self::new(i.kind)
            .with_url(i.url.clone())
            .with_retry_after(i.retry_after)
            .with_attempts(i.attempts);
        e.inner.status = i.status;
        e.inner.message = i
            .message
            .clone()
            .or_else(|| i.source.as_ref().map(|s| s.to_string()));
        e
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(Kind::Config).with_message(message)
    }

    pub(crate) fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(Kind::InvalidRequest).with_message(message)
    }

    /// Classifies an error that came out of the stack.
    pub(crate) fn from_stack(err: BoxError) -> Self {
        use palisade_core::error::find;
        let e: &(dyn StdError + 'static) = &*err;
        let (kind, retry_after) = if let Some(c) = find::<CircuitOpen>(e) {
            (Kind::CircuitOpen, c.retry_after)
        } else if let Some(r) = find::<RateLimited>(e) {
            (Kind::RateLimited, r.retry_after)
        } else if find::<DeadlineExceeded>(e).is_some() {
            (Kind::DeadlineExceeded, None)
        } else if find::<Elapsed>(e).is_some() {
            (Kind::Timeout, None)
        } else if find::<Overloaded>(e).is_some() {
            (Kind::Overloaded, None)
        } else if find::<QueueTimeout>(e).is_some() {
            (Kind::QueueTimeout, None)
        } else if find::<BudgetExhausted>(e).is_some() {
            (Kind::BudgetExhausted, None)
        } else if find::<NotReplayable>(e).is_some() {
            (Kind::InvalidRequest, None)
        } else if let Some(t) = find::<TransportError>(e) {
            let kind = match t.kind() {
                TransportErrorKind::Connect => Kind::Connect,
                TransportErrorKind::Certificate => Kind::Certificate,
                TransportErrorKind::Timeout => Kind::Timeout,
                TransportErrorKind::Request => Kind::InvalidRequest,
                _ => Kind::Transport,
            };
            (kind, None)
        } else if let Some(r) = find::<reqwest::Error>(e) {
            (Self::reqwest_kind(r), None)
        } else {
            (Kind::Transport, None)
        };
        Self::new(kind)
            .with_retry_after(retry_after)
            .with_source(err)
    }

    fn reqwest_kind(r: &reqwest::Error) -> Kind {
        if r.is_connect() {
            Kind::Connect
        } else if r.is_timeout() {
            Kind::Timeout
        } else if r.is_builder() || r.is_request() && r.url().is_none() {
            Kind::InvalidRequest
        } else if r.is_decode() {
            Kind::Decode
        } else if r.is_body() {
            Kind::Body
        } else if r.is_status() {
            Kind::Status
        } else {
            Kind::Transport
        }
    }

    /// Wraps an error from reading (`decode == false`) or decoding
    /// (`decode == true`) a response body. reqwest labels every body failure
    /// as a decode error, so a read failure is classified by its cause: the
    /// deadline, a timeout (attempt, transport or body idle), or else a body
    /// failure.
    pub(crate) fn from_body(err: BoxError, decode: bool) -> Self {
        use palisade_core::error::find;
        use std::io;
        let kind = if decode {
            Kind::Decode
        } else {
            let cause: &(dyn StdError + 'static) = &*err;
            if find::<crate::shutdown::Cancelled>(cause).is_some() {
                Kind::Shutdown
            } else if let Some(too) = find::<crate::limit::BodyTooLarge>(cause) {
                // Named in the message: reqwest's own wrapper says only
                // "error decoding response body".
                return Self::new(Kind::BodyTooLarge)
                    .with_message(too.to_string())
                    .with_source(err);
            } else if find::<DeadlineExceeded>(cause).is_some() {
                Kind::DeadlineExceeded
            } else if find::<Elapsed>(cause).is_some()
                || find::<TransportError>(cause)
                    .is_some_and(|t| t.kind() == TransportErrorKind::Timeout)
                || find::<io::Error>(cause).is_some_and(|e| e.kind() == io::ErrorKind::TimedOut)
            {
                Kind::Timeout
            } else {
                Kind::Body
            }
        };
        Self::new(kind).with_source(err)
    }

    /// What went wrong.
    pub fn kind(&self) -> Kind {
        self.inner.kind
    }

    /// The URL of the request, when known.
    pub fn url(&self) -> Option<&reqwest::Url> {
        self.inner.url.as_ref()
    }

    /// The response status, for [`Kind::Status`].
    pub fn status(&self) -> Option<StatusCode> {
        self.inner.status
    }

    /// How long the server or a palisade layer asked to wait before trying
    /// again, when known (open circuit, rate limited, a status with
    /// `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// How many attempts were handed to the transport before this error,
    /// redirect hops and a token-refresh replay included (0 if none left the
    /// client: a malformed request, an open circuit, a full queue).
    pub fn attempts(&self) -> u32 {
        self.inner.attempts
    }

    /// Whether the kind is [`Kind::Timeout`] or [`Kind::DeadlineExceeded`].
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind(), Kind::Timeout | Kind::DeadlineExceeded)
    }

    /// Whether the kind is [`Kind::DeadlineExceeded`].
    pub fn is_deadline_exceeded(&self) -> bool {
        self.kind() == Kind::DeadlineExceeded
    }

    /// Whether the kind is [`Kind::CircuitOpen`].
    pub fn is_circuit_open(&self) -> bool {
        self.kind() == Kind::CircuitOpen
    }

    /// Whether the kind is [`Kind::RateLimited`].
    pub fn is_rate_limited(&self) -> bool {
        self.kind() == Kind::RateLimited
    }

    /// Whether the kind is [`Kind::Overloaded`] or [`Kind::QueueTimeout`].
    pub fn is_overloaded(&self) -> bool {
        matches!(self.kind(), Kind::Overloaded | Kind::QueueTimeout)
    }

    /// Whether the kind is [`Kind::Connect`].
    pub fn is_connect(&self) -> bool {
        self.kind() == Kind::Connect
    }

    /// Whether the kind is [`Kind::Certificate`]: the server's TLS
    /// certificate was refused.
    pub fn is_certificate(&self) -> bool {
        self.kind() == Kind::Certificate
    }

    /// Whether the kind is [`Kind::Status`].
    pub fn is_status(&self) -> bool {
        self.kind() == Kind::Status
    }

    /// Whether the kind is [`Kind::Config`].
    pub fn is_config(&self) -> bool {
        self.kind() == Kind::Config
    }

    /// For [`Kind::BodyTooLarge`]: the limit the body passed and how far the
    /// read got.
    pub fn body_too_large(&self) -> Option<&crate::limit::BodyTooLarge> {
        let source = self.inner.source.as_deref()?;
        palisade_core::error::find::<crate::limit::BodyTooLarge>(source)
    }

    /// The underlying `reqwest::Error`, if the failure came from reqwest.
    pub fn reqwest_error(&self) -> Option<&reqwest::Error> {
        let source = self.inner.source.as_deref()?;
        palisade_core::error::find::<reqwest::Error>(source)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("palisade::Error");
        d.field("kind", &self.inner.kind);
        if let Some(url) = &self.inner.url {
            d.field("url", &crate::redact::url(url));
        }
        if let Some(s) = self.inner.status {
            d.field("status", &s);
        }
        if self.inner.attempts > 0 {
            d.field("attempts", &self.inner.attempts);
        }
        if let Some(r) = self.inner.retry_after {
            d.field("retry_after", &r);
        }
        if let Some(m) = &self.inner.message {
            d.field("message", m);
        }
        if let Some(s) = &self.inner.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = match (self.inner.kind, self.inner.status) {
            (Kind::Status, Some(s)) => format!("status {s}"),
            (kind, _) => kind.as_str().replace('_', " "),
        };
        f.write_str(&head)?;
        if let Some(m) = &self.inner.message {
            write!(f, ": {m}")?;
        } else if let Some(s) = &self.inner.source {
            // "deadline exceeded: deadline exceeded" says nothing twice.
            let detail = s.to_string();
            if detail != head {
                write!(f, ": {detail}")?;
            }
        }
        if let Some(url) = &self.inner.url {
            write!(f, " ({})", crate::redact::url(url))?;
        }
        if self.inner.attempts > 1 {
            write!(f, " after {} attempts", self.inner.attempts)?;
        }
        Ok(())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_errors_map_to_kinds() {
        let cases: Vec<(BoxError, Kind)> = vec![
            (Elapsed.into(), Kind::Timeout),
            (DeadlineExceeded.into(), Kind::DeadlineExceeded),
            (
                CircuitOpen::new(Some(Duration::from_secs(2))).into(),
                Kind::CircuitOpen,
            ),
            (RateLimited::new(None).into(), Kind::RateLimited),
            (Overloaded.into(), Kind::Overloaded),
            (QueueTimeout.into(), Kind::QueueTimeout),
            (BudgetExhausted.into(), Kind::BudgetExhausted),
            (
                TransportError::new(TransportErrorKind::Connect, "refused").into(),
                Kind::Connect,
            ),
            (
                TransportError::new(TransportErrorKind::Reset, "reset").into(),
                Kind::Transport,
            ),
        ];
        for (err, kind) in cases {
            assert_eq!(Error::from_stack(err).kind(), kind);
        }
        let open = Error::from_stack(CircuitOpen::new(Some(Duration::from_secs(2))).into());
        assert_eq!(open.retry_after(), Some(Duration::from_secs(2)));
        assert!(open.is_circuit_open());
    }

    #[test]
    fn body_read_errors_are_classified_by_cause_not_as_decode() {
        let timeout: BoxError = TransportError::new(TransportErrorKind::Timeout, "slow").into();
        assert_eq!(Error::from_body(timeout, false).kind(), Kind::Timeout);
        let deadline: BoxError = Box::new(DeadlineExceeded);
        assert_eq!(
            Error::from_body(deadline, false).kind(),
            Kind::DeadlineExceeded
        );
        let reset: BoxError = TransportError::new(
            TransportErrorKind::Reset,
            std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        )
        .into();
        assert_eq!(Error::from_body(reset, false).kind(), Kind::Body);
        let json: BoxError = serde_json::from_str::<u8>("x").unwrap_err().into();
        assert_eq!(Error::from_body(json, true).kind(), Kind::Decode);
    }

    #[test]
    fn display_does_not_repeat_the_kind() {
        let err = Error::from_stack(DeadlineExceeded.into());
        assert_eq!(err.to_string(), "deadline exceeded");
        let err = Error::from_stack(CircuitOpen::new(Some(Duration::from_secs(2))).into());
        assert_eq!(
            err.to_string(),
            "circuit open: circuit open; retry after 2000 ms"
        );
    }

    #[test]
    fn source_chain_is_kept() {
        let err = Error::from_stack(
            TransportError::new(
                TransportErrorKind::Reset,
                std::io::Error::from(std::io::ErrorKind::ConnectionReset),
            )
            .into(),
        );
        let io = palisade_core::error::find::<std::io::Error>(&err).expect("io error reachable");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
    }

    #[test]
    fn display_is_lowercase_and_redacts_query() {
        let err = Error::new(Kind::Status)
            .with_status(StatusCode::SERVICE_UNAVAILABLE)
            .with_url(Some(
                "https://api.example.com/x?token=secret".parse().unwrap(),
            ))
            .with_attempts(3);
        let s = err.to_string();
        assert_eq!(
            s,
            "status 503 Service Unavailable (https://api.example.com/x?<redacted>) after 3 attempts"
        );
        assert!(!format!("{err:?}").contains("secret"));
    }
}
