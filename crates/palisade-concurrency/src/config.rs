//! Configuration of the concurrency limit, built and validated by [`Builder`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::keyed::KeyedConfig;
use palisade_core::{ByAuthority, Classify, HttpClassifier, Key};

use crate::layer::ConcurrencyLimitLayer;
use crate::limit::Limit;

/// A configuration value was invalid. The message says which and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// What was wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid concurrency limit configuration: {}",
            self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// A change of one key's adaptive limit, passed to
/// [`Builder::on_limit_change`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitChange {
    /// The limit before.
    pub from: usize,
    /// The limit now in force.
    pub to: usize,
}

pub(crate) type LimitCallback = Arc<dyn Fn(&Key, LimitChange) + Send + Sync>;

/// The validated settings shared by every service of one layer.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) limit: Limit,
    pub(crate) global_limit: Option<usize>,
    pub(crate) max_queue: usize,
    pub(crate) max_wait: Duration,
    pub(crate) body_aware: bool,
    pub(crate) keyed: KeyedConfig,
    pub(crate) on_limit_change: Option<LimitCallback>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("limit", &self.limit)
            .field("global_limit", &self.global_limit)
            .field("max_queue", &self.max_queue)
            .field("max_wait", &self.max_wait)
            .field("body_aware", &self.body_aware)
            .field("keyed", &self.keyed)
            .field("on_limit_change", &self.on_limit_change.is_some())
            .finish()
    }
}

/// The default [`Builder::max_queue`]: 1024 waiting requests per key, Envoy's
/// default `max_pending_requests`.
pub const DEFAULT_MAX_QUEUE: usize = 1024;

/// The default [`Builder::max_wait`]: 5 s, httpx's default pool timeout.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(5);

impl Default for Config {
    fn default() -> Self {
        Self {
            limit: Limit::default(),
            global_limit: None,
            max_queue: DEFAULT_MAX_QUEUE,
            max_wait: DEFAULT_MAX_WAIT,
            body_aware: true,
            keyed: KeyedConfig::default(),
            on_limit_change: None,
        }
    }
}

/// Builds a [`ConcurrencyLimitLayer`], validating every option.
///
/// ```
/// use std::time::Duration;
/// use palisade_concurrency::{ConcurrencyLimitLayer, limit::Vegas};
///
/// let layer = ConcurrencyLimitLayer::builder()
///     .limit(Vegas::new().max_limit(256))
///     .global_limit(512)
///     .max_queue(100)
///     .max_wait(Duration::from_secs(2))
///     .build()
///     .expect("valid configuration");
/// # let _ = layer;
/// assert!(ConcurrencyLimitLayer::builder().max_wait(Duration::ZERO).build().is_err());
/// ```
#[derive(Debug, Clone)]
pub struct Builder<K = ByAuthority, C = HttpClassifier> {
    config: Config,
    key_fn: K,
    classify: C,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// A builder with every default.
    pub fn new() -> Self {
        Self {
            config: Config::default(),
            key_fn: ByAuthority,
            classify: HttpClassifier::new(),
        }
    }
}

impl<K, C> Builder<K, C> {
    /// The limit of each key: [`Limit::Fixed`] or an adaptive algorithm.
    /// Default: fixed at 100 per key (httpx's and aiohttp's default
    /// connection limit).
    pub fn limit(mut self, limit: impl Into<Limit>) -> Self {
        self.config.limit = limit.into();
        self
    }

    /// A fixed cap on requests in flight across all keys, on top of the
    /// per-key limit. Default: none.
    ///
    /// A request takes its key's permit first and the global one second, so
    /// one slow key waiting in its own queue never holds global capacity.
    /// Use it to keep the total below the connection pool and the file
    /// descriptor limit; see `docs/tuning.md`.
    pub fn global_limit(mut self, n: usize) -> Self {
        self.config.global_limit = Some(n);
        self
    }

    /// How many requests may wait for a permit, per key (and for the global
    /// permit, if any). When the queue is full a request fails at once with
    /// [`Overloaded`](crate::error::Overloaded): load shedding. 0 means never
    /// wait. Default 1024 (Envoy's `max_pending_requests`).
    pub fn max_queue(mut self, n: usize) -> Self {
        self.config.max_queue = n;
        self
    }

    /// How long a request may wait for a permit before failing with
    /// [`QueueTimeout`](crate::error::QueueTimeout), clamped to what remains
    /// of the request's [`Deadline`](palisade_core::Deadline). This is the
    /// wait for a slot, distinct from the connect timeout, like httpx's pool
    /// timeout. Default 5 s (httpx's default pool timeout).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.config.max_wait = wait;
        self
    }

    /// Whether a permit is held until the response body ends or is dropped
    /// (`true`, the default) or released as soon as the response head
    /// arrives (`false`, as tower's `ConcurrencyLimit` does).
    ///
    /// With `true`, a streaming download counts against the limit for as
    /// long as it streams, which is what protects the upstream and the
    /// connection pool: the connection stays busy until the body is done.
    pub fn body_aware(mut self, yes: bool) -> Self {
        self.config.body_aware = yes;
        self
    }

    /// Bounds on how many keys are kept and for how long an idle key is
    /// kept. Default: [`KeyedConfig::default`] (10 000 keys, 10 minutes). A
    /// key with requests in flight or queued is never evicted.
    pub fn keyed(mut self, keyed: KeyedConfig) -> Self {
        self.config.keyed = keyed;
        self
    }

    /// Called whenever a key's adaptive limit changes, after the change.
    /// Keep it quick: it runs on the request's task. Each change is also a
    /// [`LIMIT_CHANGED`](palisade_core::events::LIMIT_CHANGED) event.
    pub fn on_limit_change(
        mut self,
        f: impl Fn(&Key, LimitChange) + Send + Sync + 'static,
    ) -> Self {
        self.config.on_limit_change = Some(Arc::new(f));
        self
    }

    /// How requests are partitioned. Default [`ByAuthority`]: one limit per
    /// origin. Use [`Global`](palisade_core::Global) for one limit in all.
    pub fn key_fn<K2>(self, key_fn: K2) -> Builder<K2, C> {
        Builder {
            config: self.config,
            key_fn,
            classify: self.classify,
        }
    }

    /// How outcomes are classified for adaptive limits. Default
    /// [`HttpClassifier`].
    pub fn classifier<C2: Classify>(self, classify: C2) -> Builder<K, C2> {
        Builder {
            config: self.config,
            key_fn: self.key_fn,
            classify,
        }
    }

    /// Validates the configuration and builds the layer, with its shared
    /// state.
    pub fn build(self) -> Result<ConcurrencyLimitLayer<K, C>, ConfigError> {
        let c = &self.config;
        c.limit.validate()?;
        if c.global_limit == Some(0) {
            return Err(ConfigError::new("global_limit must be at least 1"));
        }
        if c.max_wait.is_zero() {
            return Err(ConfigError::new(
                "max_wait must be greater than zero; use max_queue(0) to never wait",
            ));
        }
        if c.keyed.max_keys == 0 {
            return Err(ConfigError::new("keyed.max_keys must be at least 1"));
        }
        if c.keyed.idle_timeout.is_zero() {
            return Err(ConfigError::new(
                "keyed.idle_timeout must be greater than zero",
            ));
        }
        Ok(ConcurrencyLimitLayer::from_parts(
            self.config,
            self.key_fn,
            self.classify,
        ))
    }
}
