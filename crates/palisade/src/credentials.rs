//! The one credential policy: which headers authenticate, and which of them
//! may leave for a hop to another origin.
//!
//! Every path a request takes to another origin (a redirect, a pagination
//! link, a resumed download, an SSE reconnect) goes through
//! [`Credentials::filter`], so the rule lives here once.

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE, HeaderName, PROXY_AUTHORIZATION};

/// API-key and token headers in common use, by exact (lowercase) name.
const KNOWN: &[&str] = &[
    "x-api-key",
    "api-key",
    "apikey",
    "x-apikey",
    "x-auth-token",
    "x-access-token",
    "x-refresh-token",
    "x-session-token",
    "private-token",
    "job-token",
    "x-goog-api-key",
    "ocp-apim-subscription-key",
    "x-amz-security-token",
    "x-csrf-token",
    "x-xsrf-token",
    "x-vault-token",
    "x-figma-token",
    "x-shopify-access-token",
];

/// Fragments whose presence in a header name makes it a credential: a
/// conservative rule for the vendor headers no list can keep up with.
const FRAGMENTS: &[&str] = &[
    "auth",
    "token",
    "secret",
    "api-key",
    "apikey",
    "api_key",
    "session",
    "password",
    "passwd",
    "signature",
    "credential",
];

/// Whether a header carries a credential by its name alone: `Authorization`,
/// `Proxy-Authorization`, `Cookie`, the API-key headers in common use, and
/// any name containing `auth`, `token`, `secret`, `api-key`/`apikey`,
/// `session`, `password`, `signature` or `credential`.
pub(crate) fn is_credential(name: &HeaderName) -> bool {
    if *name == AUTHORIZATION || *name == COOKIE || *name == PROXY_AUTHORIZATION {
        return true;
    }
    let n = name.as_str();
    KNOWN.contains(&n) || FRAGMENTS.iter().any(|f| n.contains(f))
}

/// The client's credential policy: the rule above, minus the headers the
/// user chose to keep across origins.
#[derive(Debug, Clone, Default)]
pub(crate) struct Credentials {
    keep: Vec<HeaderName>,
}

impl Credentials {
    pub(crate) fn new(keep: Vec<HeaderName>) -> Self {
        Self { keep }
    }

    /// Whether the header `name: value` must not leave its origin.
    pub(crate) fn stays_home(&self, name: &HeaderName, value: &http::HeaderValue) -> bool {
        (value.is_sensitive() || is_credential(name)) && !self.keep.contains(name)
    }

    /// Removes every credential from `headers`, for a hop to an origin they
    /// do not belong to.
    pub(crate) fn filter(&self, headers: &mut HeaderMap) {
        // Collected first: a HeaderMap cannot drop entries while iterated.
        let drop: Vec<HeaderName> = headers
            .iter()
            .filter(|(k, v)| self.stays_home(k, v))
            .map(|(k, _)| k.clone())
            .collect();
        for name in drop {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn api_key_headers_and_the_name_rule_are_credentials() {
        for n in [
            "authorization",
            "proxy-authorization",
            "cookie",
            "x-api-key",
            "api-key",
            "private-token",
            "x-goog-api-key",
            "ocp-apim-subscription-key",
            "x-amz-security-token",
            "x-my-vendor-token",
            "x-client-secret",
            "x-session-id",
            "x-auth-user",
        ] {
            assert!(is_credential(&HeaderName::from_static(n)), "{n}");
        }
        for n in [
            "accept",
            "user-agent",
            "idempotency-key",
            "content-type",
            "x-request-id",
        ] {
            assert!(!is_credential(&HeaderName::from_static(n)), "{n}");
        }
    }

    #[test]
    fn filter_drops_credentials_and_sensitive_values_but_keeps_what_is_kept() {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("k"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        h.insert("x-trace-token", HeaderValue::from_static("t"));
        let mut secret = HeaderValue::from_static("s");
        secret.set_sensitive(true);
        h.insert("x-custom", secret);
        let policy = Credentials::new(vec![HeaderName::from_static("x-trace-token")]);
        policy.filter(&mut h);
        assert!(!h.contains_key("x-api-key"));
        assert!(!h.contains_key("x-custom"));
        assert!(h.contains_key("accept"));
        assert!(h.contains_key("x-trace-token"), "kept by the user's choice");
    }
}
