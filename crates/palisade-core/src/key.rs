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
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use http::uri::{Authority, Scheme};

/// The partition of a keyed layer's state that a request belongs to.
///
/// Cheap to clone: an origin key holds the request's `Authority` (a
/// reference-counted buffer), a custom key an `Arc<str>`.
#[derive(Clone)]
pub struct Key(Repr);

#[derive(Clone)]
enum Repr {
    Global,
    Origin {
        https: bool,
        scheme: Option<Scheme>,
        authority: Authority,
        port: u16,
    },
    Custom(Arc<str>),
    Static(&'static str),
}

impl Key {
    /// The single key every request shares.
    pub const fn global() -> Self {
        Self(Repr::Global)
    }

    /// A key from a static string, with no allocation.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Repr::Static(s))
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
        Self(Repr::Origin {
            https,
            scheme,
            authority: authority.clone(),
            port,
        })
    }

    fn host(&self) -> Option<&str> {
        match &self.0 {
            Repr::Origin { authority, .. } => Some(authority.host()),
            _ => None,
        }
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Self(Repr::Custom(Arc::from(s)))
    }
}

impl From<String> for Key {
    fn from(s: String) -> Self {
        Self(Repr::Custom(Arc::from(s)))
    }
}

impl From<Arc<str>> for Key {
    fn from(s: Arc<str>) -> Self {
        Self(Repr::Custom(s))
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
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

impl Key {
    fn custom_str(&self) -> Option<&str> {
        match &self.0 {
            Repr::Custom(s) => Some(s),
            Repr::Static(s) => Some(s),
            _ => None,
        }
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match &self.0 {
            Repr::Global => state.write_u8(0),
            Repr::Origin {
                https,
                scheme,
                authority,
                port,
            } => {
                state.write_u8(1);
                https.hash(state);
                scheme.as_ref().map(Scheme::as_str).hash(state);
                for b in authority.host().bytes() {
                    state.write_u8(b.to_ascii_lowercase());
                }
                state.write_u16(*port);
            }
            Repr::Custom(_) | Repr::Static(_) => {
                state.write_u8(2);
                self.custom_str().hash(state);
            }
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Global => f.write_str("*"),
            Repr::Origin {
                https,
                scheme,
                authority,
                port,
            } => {
                let scheme = match scheme {
                    Some(s) => s.as_str(),
                    None if *https => "https",
                    None => "http",
                };
                write!(
                    f,
                    "{scheme}://{}:{port}",
                    authority.host().to_ascii_lowercase()
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
    fn relative_uris_and_custom_keys() {
        assert_eq!(k("/just/a/path"), Key::global());
        assert_eq!(Key::from("tenant-a"), Key::from_static("tenant-a"));
        assert_eq!(h(&Key::from("tenant-a")), h(&Key::from_static("tenant-a")));
        assert_ne!(Key::from("tenant-a"), Key::global());
    }
}
