//! The errors the timeout layers fail with, one type per timeout so that a
//! caller can tell them apart.
//!
//! | timeout | error | event `kind` |
//! |---|---|---|
//! | attempt timeout (its own bound) | [`Elapsed`] | `attempt` |
//! | the request's [`Deadline`](palisade_core::Deadline), before the response head | [`DeadlineExceeded`] | `deadline` |
//! | no body frame within the idle timeout | [`BodyIdleTimeout`] | `body_idle` |
//! | body not finished by its total bound or the request's deadline | [`BodyDeadlineExceeded`] | `body_deadline` |
//!
//! [`Elapsed`] and [`DeadlineExceeded`] are palisade-core's, shared with every
//! other layer and recognised by its classifier as timeouts. The two body
//! errors carry a source that the classifier also reads as a timeout: an
//! [`io::Error`] of kind [`TimedOut`](io::ErrorKind::TimedOut), or
//! [`DeadlineExceeded`] when the request's deadline was the bound that fired.
//!
//! Layers return them boxed; recover them with
//! [`palisade_core::error::find`], which walks the source chain.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::time::Duration;

pub use palisade_core::error::{BoxError, DeadlineExceeded, Elapsed};

/// The response body produced no frame for longer than its idle timeout.
///
/// The idle clock runs only while the reader waits: it starts when a poll of
/// the body finds no data ready, and stops when a frame arrives.
#[derive(Debug)]
pub struct BodyIdleTimeout {
    idle: Duration,
    source: io::Error,
}

impl BodyIdleTimeout {
    /// Creates the error for an idle timeout of `idle`.
    pub fn new(idle: Duration) -> Self {
        Self {
            idle,
            source: io::ErrorKind::TimedOut.into(),
        }
    }

    /// The idle timeout that fired.
    pub const fn idle(&self) -> Duration {
        self.idle
    }
}

impl fmt::Display for BodyIdleTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "response body idle: no data for {} ms",
            self.idle.as_millis()
        )
    }
}

impl StdError for BodyIdleTimeout {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.source)
    }
}

/// The response body did not finish by its deadline: the body's own total
/// bound, or the request's [`Deadline`](palisade_core::Deadline).
#[derive(Debug)]
pub struct BodyDeadlineExceeded {
    elapsed: Duration,
    cause: Cause,
}

#[derive(Debug)]
enum Cause {
    Body(io::Error),
    Request(DeadlineExceeded),
}

impl BodyDeadlineExceeded {
    /// The body's own total bound fired `elapsed` after the response head
    /// arrived.
    pub fn body(elapsed: Duration) -> Self {
        Self {
            elapsed,
            cause: Cause::Body(io::ErrorKind::TimedOut.into()),
        }
    }

    /// The request's deadline passed `elapsed` after the response head
    /// arrived, while the body was still streaming.
    pub const fn request(elapsed: Duration) -> Self {
        Self {
            elapsed,
            cause: Cause::Request(DeadlineExceeded),
        }
    }

    /// Time from the response head to the failure.
    pub const fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Whether the request's [`Deadline`](palisade_core::Deadline), rather
    /// than the body's own bound, was the one that fired. In that case the
    /// [`source`](StdError::source) is [`DeadlineExceeded`].
    pub const fn is_request_deadline(&self) -> bool {
        matches!(self.cause, Cause::Request(_))
    }
}

impl fmt::Display for BodyDeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let which = if self.is_request_deadline() {
            "request deadline"
        } else {
            "body deadline"
        };
        write!(
            f,
            "response body unfinished at its {which}, {} ms after the response head",
            self.elapsed.as_millis()
        )
    }
}

impl StdError for BodyDeadlineExceeded {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.cause {
            Cause::Body(io) => Some(io),
            Cause::Request(d) => Some(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::classify::{Class, classify_error};
    use palisade_core::error::find;

    #[test]
    fn displays_are_lowercase_and_informative() {
        let errs: Vec<BoxError> = vec![
            Elapsed.into(),
            DeadlineExceeded.into(),
            BodyIdleTimeout::new(Duration::from_secs(5)).into(),
            BodyDeadlineExceeded::body(Duration::from_millis(1500)).into(),
            BodyDeadlineExceeded::request(Duration::from_millis(1500)).into(),
        ];
        for e in &errs {
            let s = e.to_string();
            assert!(s.chars().next().unwrap().is_lowercase(), "{s:?}");
        }
        assert_eq!(
            errs[2].to_string(),
            "response body idle: no data for 5000 ms"
        );
        assert!(errs[3].to_string().contains("body deadline, 1500 ms"));
        assert!(errs[4].to_string().contains("request deadline"));
    }

    #[test]
    fn body_errors_classify_as_timeouts_and_stay_distinct() {
        let idle: BoxError = BodyIdleTimeout::new(Duration::from_secs(1)).into();
        let own: BoxError = BodyDeadlineExceeded::body(Duration::from_secs(1)).into();
        let req: BoxError = BodyDeadlineExceeded::request(Duration::from_secs(1)).into();
        for e in [&idle, &own, &req] {
            assert_eq!(classify_error(&**e), Class::Timeout);
        }
        assert!(find::<BodyIdleTimeout>(&*idle).is_some());
        assert!(find::<BodyDeadlineExceeded>(&*idle).is_none());
        assert!(find::<DeadlineExceeded>(&*own).is_none());
        assert!(find::<DeadlineExceeded>(&*req).is_some());
        assert!(
            !find::<BodyDeadlineExceeded>(&*own)
                .unwrap()
                .is_request_deadline()
        );
        assert!(
            find::<BodyDeadlineExceeded>(&*req)
                .unwrap()
                .is_request_deadline()
        );
    }
}
