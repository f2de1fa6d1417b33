//! The failure policy and the validating builder.

use std::sync::Arc;
use std::time::Duration;

use palisade_ratelimit::Quota;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::backend::{Inner, RedisBackend};

/// What a decision does when Redis cannot answer within the call timeout
/// (unreachable, erroring, or slow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailurePolicy {
    /// Decide with a limiter local to this process, on the layer's quota or
    /// on [`RedisBackendBuilder::fallback_quota`]. The upstream keeps being
    /// served, each instance within its own limit, so the fleet as a whole
    /// may exceed the shared quota until Redis is back. The default, as
    /// Envoy's rate limit filter (`failure_mode_deny: false`).
    FailOpen,
    /// Refuse: the request fails with
    /// [`RateLimited`](palisade_core::error::RateLimited) and no
    /// `retry_after`. The shared quota is never exceeded, at the price of
    /// availability.
    FailClosed,
}

impl FailurePolicy {
    /// The policy's name in events: `fail_open` or `fail_closed`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::FailOpen => "fail_open",
            Self::FailClosed => "fail_closed",
        }
    }
}

/// The default namespace every key starts with: `palisade`.
pub const DEFAULT_NAMESPACE: &str = "palisade";

/// The default Redis call timeout: 20 ms, Envoy's rate limit filter's
/// default `timeout`. A loopback or same-zone Redis answers in well under a
/// millisecond; past 20 ms the policy decides instead.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_millis(20);

/// How long decisions skip Redis after a failed call, by default: 1 second.
/// During an outage only one request a second pays the call timeout; the
/// others go straight to the policy. The connection itself reconnects in
/// the background.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(1);

pub use palisade_core::error::ConfigError;

/// A [`ConfigError`] of this crate's component.
pub(crate) fn config_error(
    option: &'static str,
    reason: impl Into<std::borrow::Cow<'static, str>>,
) -> ConfigError {
    ConfigError::new("redis backend", option, reason)
}

/// Builds a [`RedisBackend`]. Start from [`RedisBackend::builder`] or
/// [`RedisBackendBuilder::from_url`].
#[derive(Debug, Clone)]
pub struct RedisBackendBuilder {
    client: redis::Client,
    namespace: String,
    call_timeout: Duration,
    retry_interval: Duration,
    policy: FailurePolicy,
    fallback_quota: Option<Quota>,
}

impl RedisBackendBuilder {
    pub(crate) fn new(client: redis::Client) -> Self {
        Self {
            client,
            namespace: DEFAULT_NAMESPACE.to_owned(),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            retry_interval: DEFAULT_RETRY_INTERVAL,
            policy: FailurePolicy::FailOpen,
            fallback_quota: None,
        }
    }

    /// A builder for the Redis at `url` (`redis://host:port/db`). The URL is
    /// only parsed here; nothing connects until the backend is first used.
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let client = redis::Client::open(url)
            .map_err(|e| config_error("url", format!("{url:?} is not a Redis URL: {e}")))?;
        Ok(Self::new(client))
    }

    /// The prefix of every key, so that several applications (or several
    /// quotas) share one Redis. Default [`DEFAULT_NAMESPACE`]. Instances that
    /// must share a quota must use the same namespace and the same quota.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The longest one decision waits for Redis before the failure policy
    /// decides instead. Default [`DEFAULT_CALL_TIMEOUT`] (20 ms, Envoy's).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// How long decisions go straight to the failure policy after a failed
    /// call, before Redis is tried again. Default [`DEFAULT_RETRY_INTERVAL`]
    /// (1 s).
    pub fn retry_interval(mut self, interval: Duration) -> Self {
        self.retry_interval = interval;
        self
    }

    /// What to do when Redis cannot answer. Default [`FailurePolicy::FailOpen`].
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Shorthand for [`FailurePolicy::FailOpen`].
    pub fn fail_open(self) -> Self {
        self.failure_policy(FailurePolicy::FailOpen)
    }

    /// Shorthand for [`FailurePolicy::FailClosed`].
    pub fn fail_closed(self) -> Self {
        self.failure_policy(FailurePolicy::FailClosed)
    }

    /// The quota each instance keeps locally while it fails open. Default:
    /// the layer's own quota. A fleet of N instances may set the shared
    /// quota divided by N, so that the fleet stays near the quota during an
    /// outage.
    pub fn fallback_quota(mut self, quota: Quota) -> Self {
        self.fallback_quota = Some(quota);
        self
    }

    /// Validates the settings and builds the backend. The connection is made
    /// lazily, on first use, and remade in the background after a failure,
    /// so this succeeds while Redis is down. Must be called within a tokio
    /// runtime.
    pub fn build(self) -> Result<RedisBackend, ConfigError> {
        if self.namespace.is_empty() {
            return Err(config_error("namespace", "must not be empty"));
        }
        if self.namespace.contains(['{', '}']) {
            return Err(config_error(
                "namespace",
                "must not contain '{' or '}': the backend adds its own Redis Cluster hash tag",
            ));
        }
        if self.call_timeout.is_zero() {
            return Err(config_error("call_timeout", "must be longer than zero"));
        }
        if self.retry_interval.is_zero() {
            return Err(config_error("retry_interval", "must be longer than zero"));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(config_error(
                "runtime",
                "build() must be called within a tokio runtime",
            ));
        }
        // Reconnect quickly after a Redis restart: a few attempts, at most a
        // second apart; a later call starts a new round if they all fail.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_lazy_with_config(self.client, config)
            .map_err(|e| config_error("client", e.to_string()))?;
        Ok(RedisBackend::from_inner(Arc::new(Inner::new(
            conn,
            self.namespace,
            self.call_timeout,
            self.retry_interval,
            self.policy,
            self.fallback_quota,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn invalid_settings_are_rejected_with_the_field() {
        let b = || RedisBackendBuilder::from_url("redis://127.0.0.1:1").unwrap();
        assert_eq!(b().namespace("").build().unwrap_err().option(), "namespace");
        assert_eq!(
            b().namespace("a{b}").build().unwrap_err().option(),
            "namespace"
        );
        assert_eq!(
            b().call_timeout(Duration::ZERO)
                .build()
                .unwrap_err()
                .option(),
            "call_timeout"
        );
        assert_eq!(
            b().retry_interval(Duration::ZERO)
                .build()
                .unwrap_err()
                .option(),
            "retry_interval"
        );
        let err = RedisBackendBuilder::from_url("not a url").unwrap_err();
        assert_eq!(err.option(), "url");
        assert!(
            err.to_string()
                .starts_with("invalid redis backend configuration: url:")
        );
        // Building connects to nothing, so an unreachable Redis is fine.
        assert!(b().build().is_ok());
    }

    #[test]
    fn building_outside_a_runtime_is_an_error_not_a_panic() {
        let err = RedisBackendBuilder::from_url("redis://127.0.0.1:1")
            .unwrap()
            .build()
            .unwrap_err();
        assert_eq!(err.option(), "runtime");
    }
}
