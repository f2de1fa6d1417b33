//! How keyed layers partition their state.
//!
//! By default a [`Key`] is the request's origin: scheme, host (compared
//! case-insensitively) and port (the scheme's default when absent), so
//! `https://API.example.com` and `https://api.example.com:443` share state
//! while `http://api.example.com` does not. One failing or slow upstream then
//! never trips another upstream's breaker, limiter or queue.
//!
//! A [`KeyFn`] decides the key for a request. [`ByAuthority`] is the default;
//! [`Global`] puts every request under one key; any
//! `Fn(&http::Request<B>) -> Key` works too, for keys per route, tenant or API
//! key.
//!
//! ```
//! use palisade_core::key::{ByAuthority, Key, KeyFn};
//!
//! let a = http::Request::get("https://API.example.com/x").body(()).unwrap();
//! let b = http::Request::get("https://api.example.com:443/y").body(()).unwrap();
//! assert_eq!(ByAuthority.key(&a), ByAuthority.key(&b));
//!
//! let by_tenant = |req: &http::Request<()>| {
//!     req.headers().get("x-tenant").and_then(|v| v.to_str().ok()).map_or(Key::global(), Key::from)
//! };
//! assert_eq!(by_tenant.key(&a), Key::global());
//! ```

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};

use http::uri::{Authority, Scheme};

/// The partition of a keyed layer's state that a request belongs to.
///
/// Cheap to clone and to look up: an origin key holds the request's
/// `Authority` (a reference-counted buffer) and the position of its host, and
/// every key carries its hash, computed once when it is made with a
/// per-process random seed (so hosts an attacker chooses cannot collide on
/// purpose). Hashing a key is then one word, whatever the host's length.
#[derive(Clone)]
pub struct Key {
    repr: Repr,
    hash: u64,
}

#[derive(Clone)]
enum Repr {
    Global,
    Origin {
        https: bool,
        scheme: Option<Scheme>,
        authority: Authority,
        host: (u16, u16),
        port: u16,
    },
    Custom(Arc<str>),
    Static(&'static str),
}

fn seed() -> &'static foldhash::fast::RandomState {
    static SEED: OnceLock<foldhash::fast::RandomState> = OnceLock::new();
    SEED.get_or_init(foldhash::fast::RandomState::default)
}

fn hash_str(tag: u8, s: &str) -> u64 {
    let mut h = seed().build_hasher();
    h.write_u8(tag);
    h.write(s.as_bytes());
    h.finish()
}

impl Key {
    /// The single key every request shares.
    pub const fn global() -> Self {
        Self {
            repr: Repr::Global,
            hash: 0,
        }
    }

    /// A key from a static string, with no allocation.
    pub fn from_static(s: &'static str) -> Self {
        Self {
            repr: Repr::Static(s),
            hash: hash_str(2, s),
        }
    }

    fn custom(s: Arc<str>) -> Self {
        let hash = hash_str(2, &s);
        Self {
            repr: Repr::Custom(s),
            hash,
        }
    }

    /// The origin key of `uri`, or the global key when `uri` has no authority
    /// (a relative URI).
    pub fn origin(uri: &http::Uri) -> Self {
        let Some(authority) = uri.authority() else {
            return Self::global();
        };
        let scheme = uri.scheme();
        let https = scheme == Some(&Scheme::HTTPS);
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let scheme = match scheme {
            Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS => None,
            other => other.cloned(),
        };
        let full = authority.as_str();
        let host = authority.host();
        // `host` is a sub-slice of `full`; keep its position so that later
        // comparisons do not parse the authority again.
        let offset = (host.as_ptr() as usize).saturating_sub(full.as_ptr() as usize);
        let range = match (u16::try_from(offset), u16::try_from(offset + host.len())) {
            (Ok(a), Ok(b)) if full.get(usize::from(a)..usize::from(b)) == Some(host) => (a, b),
            // Authorities over 64 KiB cannot be sent anyway; key them whole.
            _ => (0, u16::try_from(full.len()).unwrap_or(u16::MAX)),
        };
        let mut h = seed().build_hasher();
        h.write_u64((1 << 56) | (u64::from(https) << 48) | (u64::from(port) << 32));
        if let Some(s) = &scheme {
            h.write(s.as_str().as_bytes());
        }
        let host = full
            .get(usize::from(range.0)..usize::from(range.1))
            .unwrap_or(full);
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            h.write(host.to_ascii_lowercase().as_bytes());
        } else {
            h.write(host.as_bytes());
        }
        Self {
            hash: h.finish(),
            repr: Repr::Origin {
                https,
                scheme,
                authority: authority.clone(),
                host: range,
                port,
            },
        }
    }

    fn host(&self) -> Option<&str> {
        match &self.repr {
            Repr::Origin {
                authority, host, ..
            } => authority
                .as_str()
                .get(usize::from(host.0)..usize::from(host.1)),
            _ => None,
        }
    }

    fn custom_str(&self) -> Option<&str> {
        match &self.repr {
            Repr::Custom(s) => Some(s),
            Repr::Static(s) => Some(s),
            _ => None,
        }
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Self::custom(Arc::from(s))
    }
}

impl From<String> for Key {
    fn from(s: String) -> Self {
        Self::custom(Arc::from(s))
    }
}

impl From<Arc<str>> for Key {
    fn from(s: Arc<str>) -> Self {
        Self::custom(s)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        if self.hash != other.hash {
            return false;
        }
        match (&self.repr, &other.repr) {
            (Repr::Global, Repr::Global) => true,
            (
                Repr::Origin {
                    https: h1,
                    scheme: s1,
                    port: p1,
                    ..
                },
                Repr::Origin {
                    https: h2,
                    scheme: s2,
                    port: p2,
                    ..
                },
            ) => {
                h1 == h2
                    && p1 == p2
                    && s1 == s2
                    && self
                        .host()
                        .unwrap_or_default()
                        .eq_ignore_ascii_case(other.host().unwrap_or_default())
            }
            (Repr::Custom(_) | Repr::Static(_), Repr::Custom(_) | Repr::Static(_)) => {
                self.custom_str() == other.custom_str()
            }
            _ => false,
        }
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// A hasher for maps keyed by [`Key`]: a key already carries a seeded hash,
/// so the map takes it as it is instead of hashing it again.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached for `Key`; stay correct for anything else.
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Global => f.write_str("*"),
            Repr::Origin {
                https,
                scheme,
                port,
                ..
            } => {
                let scheme = match scheme {
                    Some(s) => s.as_str(),
                    None if *https => "https",
                    None => "http",
                };
                write!(
                    f,
                    "{scheme}://{}:{port}",
                    self.host().unwrap_or_default().to_ascii_lowercase()
                )
            }
            Repr::Custom(s) => f.write_str(s),
            Repr::Static(s) => f.write_str(s),
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

/// Chooses the [`Key`] a request belongs to.
pub trait KeyFn<B>: Clone + Send + Sync + 'static {
    /// The key for `req`.
    fn key(&self, req: &http::Request<B>) -> Key;
}

/// Keys requests by origin: scheme, host and port. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByAuthority;

impl<B> KeyFn<B> for ByAuthority {
    fn key(&self, req: &http::Request<B>) -> Key {
        Key::origin(req.uri())
    }
}

/// Puts every request under one key: a single, unkeyed limit or breaker.
#[derive(Debug, Clone, Copy, Default)]
pub struct Global;

impl<B> KeyFn<B> for Global {
    fn key(&self, _req: &http::Request<B>) -> Key {
        Key::global()
    }
}

impl<B, F> KeyFn<B> for F
where
    F: Fn(&http::Request<B>) -> Key + Clone + Send + Sync + 'static,
{
    fn key(&self, req: &http::Request<B>) -> Key {
        self(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;

    fn k(uri: &str) -> Key {
        Key::origin(&uri.parse().unwrap())
    }

    fn h(key: &Key) -> u64 {
        let mut s = DefaultHasher::new();
        key.hash(&mut s);
        s.finish()
    }

    #[test]
    fn default_ports_and_case_are_normalised() {
        assert_eq!(k("https://Example.COM/a"), k("https://example.com:443/b"));
        assert_eq!(
            h(&k("https://Example.COM/a")),
            h(&k("https://example.com:443/b"))
        );
        assert_eq!(k("http://example.com"), k("http://example.com:80"));
        assert_ne!(k("http://example.com"), k("https://example.com"));
        assert_ne!(k("http://example.com:8080"), k("http://example.com"));
        assert_ne!(k("http://a.example.com"), k("http://b.example.com"));
        assert_eq!(
            k("https://Example.com").to_string(),
            "https://example.com:443"
        );
    }

    #[test]
    fn long_hosts_hash_case_insensitively() {
        let long = "a".repeat(150);
        let upper = format!("https://{}.Example.COM/", long.to_uppercase());
        let lower = format!("https://{long}.example.com:443/");
        assert_eq!(k(&upper), k(&lower));
        assert_eq!(h(&k(&upper)), h(&k(&lower)));
        assert_ne!(h(&k(&lower)), h(&k("https://b.example.com/")));
    }

    #[test]
    fn relative_uris_and_custom_keys() {
        assert_eq!(k("/just/a/path"), Key::global());
        assert_eq!(Key::from("tenant-a"), Key::from_static("tenant-a"));
        assert_eq!(h(&Key::from("tenant-a")), h(&Key::from_static("tenant-a")));
        assert_ne!(Key::from("tenant-a"), Key::global());
    }
}
