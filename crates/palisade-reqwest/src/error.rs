//! How a `reqwest::Error` becomes a [`TransportError`], and the pool
//! configuration's errors.

use std::error::Error as StdError;
use std::fmt;
use std::io;

use palisade_core::{TransportError, TransportErrorKind};

/// Wraps a `reqwest::Error` as a [`TransportError`] of the right
/// [`kind`](transport_error_kind), keeping the `reqwest::Error` itself as
/// the source, so that `is_connect()`, `is_timeout()`, `url()` and the rest
/// stay reachable with [`palisade_core::error::find`].
pub fn transport_error(err: reqwest::Error) -> TransportError {
    TransportError::new(transport_error_kind(&err), err)
}

/// The [`TransportErrorKind`] of a `reqwest::Error`:
///
/// | the error | kind |
/// |---|---|
/// | `is_builder()`: bad URL, scheme, header | `Request`: never sent |
/// | a TLS certificate refused (rustls `InvalidCertificate`, `UnknownIssuer`, a wrong name, expired) | `Certificate`: never sent, permanent |
/// | `is_connect()`: DNS, refused, TLS handshake, connect timeout | `Connect`: never sent |
/// | `is_timeout()`: reqwest's own timeouts | `Timeout` |
/// | connection reset, aborted, broken pipe in the source chain | `Reset` |
/// | the connection closed before the response head | `Reset` |
/// | the connection closed mid-body, unexpected EOF | `Truncated` |
/// | anything else | `Other` |
///
/// The order matters: a connect timeout is a connect failure, because the
/// request certainly never left.
pub fn transport_error_kind(err: &reqwest::Error) -> TransportErrorKind {
    if err.is_builder() {
        return TransportErrorKind::Request;
    }
    if err.is_connect() {
        if certificate_refused(err) {
            return TransportErrorKind::Certificate;
        }
        return TransportErrorKind::Connect;
    }
    if err.is_timeout() {
        return TransportErrorKind::Timeout;
    }
    let mut incomplete = false;
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe => return TransportErrorKind::Reset,
                io::ErrorKind::UnexpectedEof => return TransportErrorKind::Truncated,
                io::ErrorKind::TimedOut => return TransportErrorKind::Timeout,
                _ => {}
            }
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_timeout() {
                return TransportErrorKind::Timeout;
            }
            incomplete |= h.is_incomplete_message();
        }
        cur = e.source();
    }
    if incomplete {
        // hyper says "connection closed before message completed" both for
        // a head that never came and for a body cut short.
        return if err.is_body() || err.is_decode() {
            TransportErrorKind::Truncated
        } else {
            TransportErrorKind::Reset
        };
    }
    TransportErrorKind::Other
}

/// Whether rustls refused the server's certificate somewhere in `err`'s
/// source chain (possibly inside an `io::Error`).
fn certificate_refused(err: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if rustls_refused(e) {
            return true;
        }
        cur = e.source();
    }
    false
}

/// `io::Error::source` skips the error it wraps, so wrapped `io::Error`s
/// (hyper-util nests rustls's error two deep) are opened with `get_ref`.
fn rustls_refused(mut e: &(dyn StdError + 'static)) -> bool {
    loop {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return matches!(
                tls,
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::InvalidCertRevocationList(_)
                    | rustls::Error::NoCertificatesPresented
            );
        }
        match e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => e = inner,
            None => return false,
        }
    }
}

/// An invalid [`PoolConfig`](crate::PoolConfig), or a client reqwest could
/// not build.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The idle timeout is zero. To disable pooling, set
    /// `max_idle_per_host(0)` instead.
    ZeroIdleTimeout,
    /// The connect timeout is zero.
    ZeroConnectTimeout,
    /// The TCP keepalive interval is zero. To leave it off, pass `None`.
    ZeroTcpKeepalive,
    /// reqwest failed to build the client (for example, the TLS backend
    /// could not load its root certificates). The `reqwest::Error` is the
    /// [`source`](StdError::source).
    Client(reqwest::Error),
    /// The PEM given to
    /// [`PoolConfig::add_root_certificate`](crate::PoolConfig::add_root_certificate)
    /// holds no `CERTIFICATE` block.
    NoCertificate,
    /// A PEM block given to
    /// [`PoolConfig::add_root_certificate`](crate::PoolConfig::add_root_certificate)
    /// could not be decoded. The `reqwest::Error` is the
    /// [`source`](StdError::source).
    Certificate(reqwest::Error),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroIdleTimeout => f.write_str(
                "pool idle timeout must be above zero; use max_idle_per_host(0) to disable pooling",
            ),
            Self::ZeroConnectTimeout => f.write_str("connect timeout must be above zero"),
            Self::ZeroTcpKeepalive => {
                f.write_str("tcp keepalive must be above zero; pass None to leave it off")
            }
            Self::Client(_) => f.write_str("failed to build the reqwest client"),
            Self::NoCertificate => f.write_str("root certificate PEM holds no certificate"),
            Self::Certificate(_) => f.write_str("root certificate PEM could not be decoded"),
        }
    }
}

impl StdError for ConfigError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Client(e) | Self::Certificate(e) => Some(e),
            _ => None,
        }
    }
}
