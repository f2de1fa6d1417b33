//! [`PoolConfig`]: the connection pool and socket settings of the client.

use std::fmt;
use std::time::Duration;

use crate::error::ConfigError;

/// Default for [`PoolConfig::max_idle_per_host`]: 20.
pub const DEFAULT_MAX_IDLE_PER_HOST: usize = 20;
/// Default for [`PoolConfig::idle_timeout`]: 4 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Default for [`PoolConfig::connect_timeout`]: 5 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for [`PoolConfig::tcp_keepalive`]: 15 s.
pub const DEFAULT_TCP_KEEPALIVE: Duration = Duration::from_secs(15);

/// Connection pool, socket and protocol settings for the `reqwest::Client`
/// under a palisade stack, with defaults chosen for a long-lived client that
/// talks to a few APIs.
///
/// TLS is always rustls, with certificate and host name verification on:
/// there is no setting to turn it off; an upstream whose certificate a
/// private CA signed is trusted by adding that CA
/// ([`add_root_certificate`](Self::add_root_certificate)). Timeouts per request are not set
/// here; they belong to palisade's timeout layers, which see queueing and
/// retries.
///
/// | setting | default | reference |
/// |---|---|---|
/// | [`max_idle_per_host`](Self::max_idle_per_host) | 20 | httpx `max_keepalive_connections=20` |
/// | [`idle_timeout`](Self::idle_timeout) | 4 s | httpx `keepalive_expiry=5`, aiohttp `keepalive_timeout=15`; below the 5 s of Node.js and Apache httpd |
/// | [`connect_timeout`](Self::connect_timeout) | 5 s | httpx `Timeout(5.0)` |
/// | [`tcp_keepalive`](Self::tcp_keepalive) | 15 s | reqwest 0.13; aiohttp turns `SO_KEEPALIVE` on |
/// | [`tcp_nodelay`](Self::tcp_nodelay) | on | aiohttp `tcp_nodelay=True`, reqwest |
/// | [`http2_prior_knowledge`](Self::http2_prior_knowledge) | off | httpx `http2=False`; HTTPS negotiates HTTP/2 by ALPN anyway |
/// | [`http2_adaptive_window`](Self::http2_adaptive_window) | off | hyper's default |
///
/// ```no_run
/// use std::time::Duration;
/// use palisade_reqwest::PoolConfig;
///
/// # fn main() -> Result<(), palisade_reqwest::ConfigError> {
/// let client: reqwest::Client = PoolConfig::new()
///     .max_idle_per_host(50)
///     // The upstream's load balancer closes idle connections after 60 s.
///     .idle_timeout(Duration::from_secs(55))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PoolConfig {
    max_idle_per_host: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
    tcp_keepalive: Option<Duration>,
    tcp_nodelay: bool,
    http2_prior_knowledge: bool,
    http2_adaptive_window: bool,
    extra_roots: ExtraRoots,
}

/// Root certificates trusted besides the system's. reqwest's `Certificate`
/// has no `Debug`, so this prints only how many there are.
#[derive(Clone, Default)]
struct ExtraRoots(Vec<reqwest::Certificate>);

impl fmt::Debug for ExtraRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} extra root certificate(s)", self.0.len())
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl PoolConfig {
    /// The defaults in the table above.
    pub const fn new() -> Self {
        Self {
            max_idle_per_host: DEFAULT_MAX_IDLE_PER_HOST,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tcp_keepalive: Some(DEFAULT_TCP_KEEPALIVE),
            tcp_nodelay: true,
            http2_prior_knowledge: false,
            http2_adaptive_window: false,
            extra_roots: ExtraRoots(Vec::new()),
        }
    }

    /// The most idle connections kept open per host. Default: 20, httpx's
    /// `max_keepalive_connections` (reqwest keeps any number). Enough for a
    /// client with tens of requests in flight per upstream to reuse its
    /// connections, without holding hundreds of sockets open after a burst.
    /// Zero disables pooling: every request opens a new connection.
    #[must_use]
    pub const fn max_idle_per_host(mut self, max: usize) -> Self {
        self.max_idle_per_host = max;
        self
    }

    /// How long an idle connection stays in the pool. Default: 4 s.
    ///
    /// **Keep it shorter than the server's keep-alive timeout.** Otherwise
    /// the server may close a connection just as the client reuses it, and
    /// the request fails with a reset that says nothing about the upstream's
    /// health. httpx uses 5 s (`keepalive_expiry`) and aiohttp 15 s
    /// (`keepalive_timeout`); palisade uses 4 s, just under the 5 s of
    /// Node.js and Apache httpd, the shortest common server default (nginx
    /// uses 75 s, AWS load balancers 60 s). Raise it when the upstream is
    /// known to keep connections longer.
    #[must_use]
    pub const fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long to wait for the TCP connection and the TLS handshake.
    /// Default: 5 s, httpx's connect timeout (aiohttp waits 30 s). A
    /// connect failure is always safe to retry, so a short wait here costs
    /// little.
    #[must_use]
    pub const fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The idle time before TCP keepalive probes start, or `None` to leave
    /// `SO_KEEPALIVE` off. Default: 15 s, reqwest 0.13's own default. httpx
    /// leaves keepalive off and aiohttp turns it on with the system's
    /// timing (2 hours on Linux), too slow to notice a peer that vanished
    /// behind a NAT or load balancer during a long response.
    #[must_use]
    pub const fn tcp_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.tcp_keepalive = idle;
        self
    }

    /// Sets `TCP_NODELAY`. Default: on, as aiohttp and reqwest: requests are
    /// small writes that Nagle's algorithm would only delay.
    #[must_use]
    pub const fn tcp_nodelay(mut self, on: bool) -> Self {
        self.tcp_nodelay = on;
        self
    }

    /// Speaks HTTP/2 without negotiation, including over plain TCP (h2c).
    /// Default: off, as httpx (`http2=False`). Over HTTPS, HTTP/2 is
    /// negotiated by ALPN whatever this says; turn it on only for an
    /// upstream known to speak h2c.
    #[must_use]
    pub const fn http2_prior_knowledge(mut self, on: bool) -> Self {
        self.http2_prior_knowledge = on;
        self
    }

    /// Sizes HTTP/2 flow-control windows from measured bandwidth-delay
    /// product. Default: off, hyper's default. It speeds up large
    /// downloads on long links, but it sends PING frames, which some
    /// servers count against a ping budget and answer with `GOAWAY`.
    #[must_use]
    pub const fn http2_adaptive_window(mut self, on: bool) -> Self {
        self.http2_adaptive_window = on;
        self
    }

    /// Trusts the certificate authorities in `pem`, one or more PEM
    /// `CERTIFICATE` blocks, in addition to the system's roots: for an
    /// upstream whose certificate a private or test CA signed. Verification
    /// of the chain and of the host name stays on. Default: none.
    ///
    /// # Errors
    ///
    /// [`ConfigError::NoCertificate`] when `pem` holds no certificate, and
    /// [`ConfigError::Certificate`] when a block cannot be decoded.
    pub fn add_root_certificate(mut self, pem: &[u8]) -> Result<Self, ConfigError> {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(ConfigError::Certificate)?;
        if certs.is_empty() {
            return Err(ConfigError::NoCertificate);
        }
        self.extra_roots.0.extend(certs);
        Ok(self)
    }

    /// Validates the settings and returns a `reqwest::ClientBuilder` with
    /// them applied, to add reqwest options palisade does not cover (default
    /// headers, a proxy, extra root certificates).
    ///
    /// # Errors
    ///
    /// A zero idle timeout, connect timeout or keepalive.
    pub fn client_builder(&self) -> Result<reqwest::ClientBuilder, ConfigError> {
        if self.idle_timeout.is_zero() {
            return Err(ConfigError::ZeroIdleTimeout);
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::ZeroConnectTimeout);
        }
        if self.tcp_keepalive.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::ZeroTcpKeepalive);
        }
        let mut builder = reqwest::Client::builder()
            .tls_backend_rustls()
            .pool_max_idle_per_host(self.max_idle_per_host)
            .pool_idle_timeout(self.idle_timeout)
            .connect_timeout(self.connect_timeout)
            .tcp_keepalive(self.tcp_keepalive)
            .tcp_nodelay(self.tcp_nodelay)
            .http2_adaptive_window(self.http2_adaptive_window);
        if self.http2_prior_knowledge {
            builder = builder.http2_prior_knowledge();
        }
        if !self.extra_roots.0.is_empty() {
            builder = builder.tls_certs_merge(self.extra_roots.0.iter().cloned());
        }
        Ok(builder)
    }

    /// Validates the settings and builds the client.
    ///
    /// # Errors
    ///
    /// A zero idle timeout, connect timeout or keepalive; or reqwest failing
    /// to build the client (for example, no root certificates).
    pub fn build(&self) -> Result<reqwest::Client, ConfigError> {
        self.client_builder()?.build().map_err(ConfigError::Client)
    }

    /// See [`max_idle_per_host`](Self::max_idle_per_host).
    pub const fn get_max_idle_per_host(&self) -> usize {
        self.max_idle_per_host
    }

    /// See [`idle_timeout`](Self::idle_timeout).
    pub const fn get_idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// See [`connect_timeout`](Self::connect_timeout).
    pub const fn get_connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// See [`tcp_keepalive`](Self::tcp_keepalive).
    pub const fn get_tcp_keepalive(&self) -> Option<Duration> {
        self.tcp_keepalive
    }

    /// How many root certificates [`add_root_certificate`](Self::add_root_certificate)
    /// added.
    pub fn get_extra_root_certificates(&self) -> usize {
        self.extra_roots.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_values_are_rejected_with_clear_messages() {
        let err = PoolConfig::new()
            .idle_timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::ZeroIdleTimeout));
        assert!(err.to_string().contains("max_idle_per_host(0)"));
        assert!(matches!(
            PoolConfig::new().connect_timeout(Duration::ZERO).build(),
            Err(ConfigError::ZeroConnectTimeout)
        ));
        assert!(matches!(
            PoolConfig::new()
                .tcp_keepalive(Some(Duration::ZERO))
                .build(),
            Err(ConfigError::ZeroTcpKeepalive)
        ));
    }

    /// A self-signed CA made with `openssl req -x509 -newkey ec -pkeyopt
    /// ec_paramgen_curve:P-256 -days 36500 -subj /CN=palisade-test-ca`; only
    /// parsed here, never used for a handshake.
    const TEST_CA: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBjDCCATOgAwIBAgIUbgIsiBffyjd2gLFZQQS2i0QH4LEwCgYIKoZIzj0EAwIw\n\
GzEZMBcGA1UEAwwQcGFsaXNhZGUtdGVzdC1jYTAgFw0yNjExMjMxODI0MzlaGA8y\n\
MTI2MTAzMDE4MjQzOVowGzEZMBcGA1UEAwwQcGFsaXNhZGUtdGVzdC1jYTBZMBMG\n\
ByqGSM49AgEGCCqGSM49AwEHA0IABD8pF0SqtdbdzsSRmY+D/Yl0P8/I5r5T/ei6\n\
1ZGz+5bn4IGhsT1KZu2QFnxFtYLBGHN8g9usl6YU8ieyOvmkbE2jUzBRMB0GA1Ud\n\
DgQWBBSW41/OHGht/5sWmqBuiX8YtEWckzAfBgNVHSMEGDAWgBSW41/OHGht/5sW\n\
mqBuiX8YtEWckzAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIDb3\n\
ykiH2Sl2OBfaURPRUmLRMMRYM0rbYERg4UexxUMQAiBwBdR/+o3VBGRyBBGYBCLp\n\
T7NsJaTbzsOP2Vg0EIDLcg==\n\
-----END CERTIFICATE-----\n\
";

    #[test]
    fn root_certificates_are_parsed_or_refused_with_a_clear_error() {
        let c = PoolConfig::new()
            .add_root_certificate(TEST_CA.as_bytes())
            .unwrap();
        assert_eq!(c.get_extra_root_certificates(), 1);
        assert!(format!("{c:?}").contains("1 extra root certificate(s)"));
        assert!(c.build().is_ok());
        let two = format!("{TEST_CA}{TEST_CA}");
        let c = PoolConfig::new()
            .add_root_certificate(two.as_bytes())
            .unwrap();
        assert_eq!(c.get_extra_root_certificates(), 2);

        let err = PoolConfig::new()
            .add_root_certificate(b"not a pem")
            .unwrap_err();
        assert!(matches!(err, ConfigError::NoCertificate), "{err:?}");
        assert!(err.to_string().contains("no certificate"), "{err}");
        let broken = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        let err = PoolConfig::new()
            .add_root_certificate(broken.as_bytes())
            .unwrap_err();
        assert!(matches!(err, ConfigError::Certificate(_)), "{err:?}");
        assert_eq!(PoolConfig::default().get_extra_root_certificates(), 0);
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = PoolConfig::default();
        assert_eq!(c.get_max_idle_per_host(), 20);
        assert_eq!(c.get_idle_timeout(), Duration::from_secs(4));
        assert_eq!(c.get_connect_timeout(), Duration::from_secs(5));
        assert_eq!(c.get_tcp_keepalive(), Some(Duration::from_secs(15)));
        assert!(PoolConfig::new().tcp_keepalive(None).build().is_ok());
        assert!(PoolConfig::new().max_idle_per_host(0).build().is_ok());
    }
}
