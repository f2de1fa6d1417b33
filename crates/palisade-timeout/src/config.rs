//! Validating builders for every layer in this crate, and their defaults.
//!
//! Each builder starts from the defaults below and returns
//! `Result<_, ConfigError>` from `build`, rejecting zero durations,
//! inverted bounds and layers that would bound nothing.
//!
//! | option | default | source |
//! |---|---|---|
//! | attempt timeout | [`DEFAULT_ATTEMPT_TIMEOUT`], 10 s | Polly's standard resilience handler, `AttemptTimeout` |
//! | total budget | [`DEFAULT_TOTAL_BUDGET`], 30 s | Polly's standard resilience handler, `TotalRequestTimeout` |
//! | inherit the caller's deadline | on | gRPC and Finagle propagate deadlines by default |
//! | body idle timeout | [`DEFAULT_BODY_IDLE_TIMEOUT`], 30 s | see the constant |
//! | body total bound | none | downloads may rightly take long; the request's deadline still applies |
//! | body honours the request's deadline | on | the deadline covers the whole logical request |
//! | deadline header | none sent; [`DeadlineHeader::default`] read by the server layer | |

use std::time::Duration;

use palisade_core::ByAuthority;

use crate::attempt::AttemptTimeoutLayer;
use crate::body::BodyTimeoutLayer;
use crate::deadline::DeadlineLayer;
use crate::header::DeadlineHeader;
use crate::inherit::InheritDeadlineLayer;

/// Default attempt timeout: 10 s, the `AttemptTimeout` of Polly's standard
/// resilience handler (Microsoft.Extensions.Http.Resilience).
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default total budget of a logical request: 30 s, the
/// `TotalRequestTimeout` of Polly's standard resilience handler.
pub const DEFAULT_TOTAL_BUDGET: Duration = Duration::from_secs(30);

/// Default response body idle timeout: 30 s.
///
/// httpx uses 5 s for its read timeout, which suits small JSON bodies but
/// cuts off slow streams; server-sent events are advised to send a keep-alive
/// comment "every 15 seconds or so" (WHATWG HTML, server-sent events,
/// authoring notes), so 30 s tolerates one
/// missed keep-alive while still freeing a half-open socket in bounded time.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

pub use palisade_core::error::ConfigError;

/// A [`ConfigError`] of this crate's component.
pub(crate) fn config_error(
    option: &'static str,
    reason: impl Into<std::borrow::Cow<'static, str>>,
) -> ConfigError {
    ConfigError::new("timeout", option, reason)
}

fn positive(option: &'static str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        Err(config_error(option, "must be greater than zero"))
    } else {
        Ok(d)
    }
}

/// Builds an [`AttemptTimeoutLayer`]. See [`AttemptTimeoutLayer::builder`].
#[derive(Debug, Clone)]
pub struct AttemptTimeoutBuilder<K = ByAuthority> {
    timeout: Duration,
    header: Option<DeadlineHeader>,
    key_fn: K,
}

impl Default for AttemptTimeoutBuilder {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_ATTEMPT_TIMEOUT,
            header: None,
            key_fn: ByAuthority,
        }
    }
}

impl<K> AttemptTimeoutBuilder<K> {
    /// The longest an attempt may wait for its response head. Default
    /// [`DEFAULT_ATTEMPT_TIMEOUT`] (10 s). Must be greater than zero.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Writes each attempt's effective timeout, the smaller of the attempt
    /// timeout and what is left of the deadline, into `header`. Default: no
    /// header. This is the value to send downstream when retries sit outside
    /// this layer, since it is computed afresh for every attempt.
    pub fn send_header(mut self, header: DeadlineHeader) -> Self {
        self.header = Some(header);
        self
    }

    /// How the `key` field of events is chosen. Default [`ByAuthority`].
    pub fn key_fn<K2>(self, key_fn: K2) -> AttemptTimeoutBuilder<K2> {
        AttemptTimeoutBuilder {
            timeout: self.timeout,
            header: self.header,
            key_fn,
        }
    }

    /// Validates and builds the layer.
    pub fn build(self) -> Result<AttemptTimeoutLayer<K>, ConfigError> {
        Ok(AttemptTimeoutLayer {
            timeout: positive("attempt timeout", self.timeout)?,
            header: self.header,
            key_fn: self.key_fn,
        })
    }
}

/// Builds a [`DeadlineLayer`]. See [`DeadlineLayer::builder`].
#[derive(Debug, Clone)]
pub struct DeadlineBuilder<K = ByAuthority> {
    budget: Option<Duration>,
    inherit: bool,
    header: Option<DeadlineHeader>,
    key_fn: K,
}

impl Default for DeadlineBuilder {
    fn default() -> Self {
        Self {
            budget: Some(DEFAULT_TOTAL_BUDGET),
            inherit: true,
            header: None,
            key_fn: ByAuthority,
        }
    }
}

impl<K> DeadlineBuilder<K> {
    /// The total budget of one logical request, retries and waits included.
    /// Default [`DEFAULT_TOTAL_BUDGET`] (30 s). Must be greater than zero.
    pub fn budget(mut self, budget: Duration) -> Self {
        self.budget = Some(budget);
        self
    }

    /// No budget of this layer's own: it enforces only a deadline already in
    /// the request or inherited from the caller.
    pub fn no_budget(mut self) -> Self {
        self.budget = None;
        self
    }

    /// Whether to tighten the deadline with one inherited from the request
    /// being served (see [`inherit`](crate::inherit)). Default on.
    pub fn inherit(mut self, inherit: bool) -> Self {
        self.inherit = inherit;
        self
    }

    /// Writes the remaining budget into `header` as the request passes this
    /// layer. Default: no header. With retries inside this layer, prefer
    /// [`AttemptTimeoutBuilder::send_header`], which is fresh per attempt.
    pub fn send_header(mut self, header: DeadlineHeader) -> Self {
        self.header = Some(header);
        self
    }

    /// How the `key` field of events is chosen. Default [`ByAuthority`].
    pub fn key_fn<K2>(self, key_fn: K2) -> DeadlineBuilder<K2> {
        DeadlineBuilder {
            budget: self.budget,
            inherit: self.inherit,
            header: self.header,
            key_fn,
        }
    }

    /// Validates and builds the layer.
    pub fn build(self) -> Result<DeadlineLayer<K>, ConfigError> {
        let budget = self
            .budget
            .map(|b| positive("total budget", b))
            .transpose()?;
        if budget.is_none() && !self.inherit {
            // It could still enforce a deadline set further out, but then
            // the outer layer already does: almost certainly a mistake.
            return Err(config_error(
                "total budget",
                "no budget and not inheriting: the layer would set no deadline",
            ));
        }
        Ok(DeadlineLayer {
            budget,
            inherit: self.inherit,
            header: self.header,
            key_fn: self.key_fn,
        })
    }
}

/// Builds a [`BodyTimeoutLayer`]. See [`BodyTimeoutLayer::builder`].
#[derive(Debug, Clone)]
pub struct BodyTimeoutBuilder<K = ByAuthority> {
    idle: Option<Duration>,
    total: Option<Duration>,
    request_deadline: bool,
    key_fn: K,
}

impl Default for BodyTimeoutBuilder {
    fn default() -> Self {
        Self {
            idle: Some(DEFAULT_BODY_IDLE_TIMEOUT),
            total: None,
            request_deadline: true,
            key_fn: ByAuthority,
        }
    }
}

impl<K> BodyTimeoutBuilder<K> {
    /// The longest the reader may wait for the next frame. Default
    /// [`DEFAULT_BODY_IDLE_TIMEOUT`] (30 s). Must be greater than zero.
    pub fn idle(mut self, idle: Duration) -> Self {
        self.idle = Some(idle);
        self
    }

    /// No idle timeout.
    pub fn no_idle(mut self) -> Self {
        self.idle = None;
        self
    }

    /// The longest the whole body may take, from the response head to its
    /// end. Default: none. Must be greater than zero and not shorter than
    /// the idle timeout.
    pub fn total(mut self, total: Duration) -> Self {
        self.total = Some(total);
        self
    }

    /// Whether the body must also finish by the request's
    /// [`Deadline`](palisade_core::Deadline). Default on.
    pub fn request_deadline(mut self, on: bool) -> Self {
        self.request_deadline = on;
        self
    }

    /// How the `key` field of events is chosen. Default [`ByAuthority`].
    pub fn key_fn<K2>(self, key_fn: K2) -> BodyTimeoutBuilder<K2> {
        BodyTimeoutBuilder {
            idle: self.idle,
            total: self.total,
            request_deadline: self.request_deadline,
            key_fn,
        }
    }

    /// Validates and builds the layer.
    pub fn build(self) -> Result<BodyTimeoutLayer<K>, ConfigError> {
        let idle = self
            .idle
            .map(|d| positive("body idle timeout", d))
            .transpose()?;
        let total = self
            .total
            .map(|d| positive("body total timeout", d))
            .transpose()?;
        if let (Some(idle), Some(total)) = (idle, total)
            && total < idle
        {
            return Err(config_error(
                "body total timeout",
                "shorter than the idle timeout, which could then never fire",
            ));
        }
        if idle.is_none() && total.is_none() && !self.request_deadline {
            return Err(config_error(
                "body timeouts",
                "no idle timeout, no total bound and the request deadline ignored: nothing to enforce",
            ));
        }
        Ok(BodyTimeoutLayer {
            idle,
            total,
            request_deadline: self.request_deadline,
            key_fn: self.key_fn,
        })
    }
}

/// Builds an [`InheritDeadlineLayer`]. See [`InheritDeadlineLayer::builder`].
#[derive(Debug, Clone, Default)]
pub struct InheritDeadlineBuilder {
    header: DeadlineHeader,
    max: Option<Duration>,
}

impl InheritDeadlineBuilder {
    /// The header to read. Default [`DeadlineHeader::default`]
    /// (`x-request-timeout-ms`, milliseconds).
    pub fn header(mut self, header: DeadlineHeader) -> Self {
        self.header = header;
        self
    }

    /// Caps an incoming budget, so a caller cannot ask this server to keep
    /// working longer than it wants to. Default: no cap. Must be greater than
    /// zero.
    pub fn max(mut self, max: Duration) -> Self {
        self.max = Some(max);
        self
    }

    /// Validates and builds the layer.
    pub fn build(self) -> Result<InheritDeadlineLayer, ConfigError> {
        let max = self
            .max
            .map(|d| positive("inherited budget cap", d))
            .transpose()?;
        Ok(InheritDeadlineLayer {
            header: self.header,
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_build() {
        assert!(AttemptTimeoutLayer::builder().build().is_ok());
        assert!(DeadlineLayer::builder().build().is_ok());
        assert!(BodyTimeoutLayer::builder().build().is_ok());
        assert!(InheritDeadlineLayer::builder().build().is_ok());
    }

    #[test]
    fn zero_durations_are_rejected_with_the_option_named() {
        let e = AttemptTimeoutLayer::new(Duration::ZERO).unwrap_err();
        assert_eq!(e.option(), "attempt timeout");
        assert_eq!(
            e.to_string(),
            "invalid timeout configuration: attempt timeout: must be greater than zero"
        );
        assert_eq!(
            DeadlineLayer::new(Duration::ZERO).unwrap_err().option(),
            "total budget"
        );
        assert_eq!(
            BodyTimeoutLayer::builder()
                .idle(Duration::ZERO)
                .build()
                .unwrap_err()
                .option(),
            "body idle timeout"
        );
        assert_eq!(
            BodyTimeoutLayer::builder()
                .total(Duration::ZERO)
                .build()
                .unwrap_err()
                .option(),
            "body total timeout"
        );
        assert!(
            InheritDeadlineLayer::builder()
                .max(Duration::ZERO)
                .build()
                .is_err()
        );
    }

    #[test]
    fn inverted_and_empty_configurations_are_rejected() {
        let e = BodyTimeoutLayer::builder()
            .idle(Duration::from_secs(10))
            .total(Duration::from_secs(5))
            .build()
            .unwrap_err();
        assert!(e.reason().contains("shorter than the idle timeout"));
        assert!(
            BodyTimeoutLayer::builder()
                .no_idle()
                .request_deadline(false)
                .build()
                .is_err()
        );
        assert!(
            BodyTimeoutLayer::builder()
                .no_idle()
                .total(Duration::from_secs(1))
                .request_deadline(false)
                .build()
                .is_ok()
        );
        assert!(
            DeadlineLayer::builder()
                .no_budget()
                .inherit(false)
                .build()
                .is_err()
        );
        assert!(DeadlineLayer::builder().no_budget().build().is_ok());
    }
}
