//! Credentials scoped to the origin they were configured for.
//!
//! [`Auth`] attaches credentials to requests for one origin (scheme, host,
//! port) and never to any other: not to an absolute URL on another host, and
//! not after a redirect to another host, because the client follows redirects
//! itself and decides again for every hop.
//!
//! Three kinds of credentials:
//! - a static bearer token ([`Auth::bearer`]);
//! - an API key in a header of your choice ([`Auth::api_key`]);
//! - a [`TokenProvider`] whose tokens are cached and refreshed
//!   ([`Auth::provider`]), with OAuth2 client credentials built in
//!   ([`ClientCredentials`]).
//!
//! A provider's token is refreshed early, inside a margin before it expires
//! (default 30 s), with one refresh in flight however many requests need it.
//! A 401 invalidates the token the request carried, refreshes once, and
//! replays the request once when its body can be replayed.
//!
//! Secrets are stored as sensitive header values: they never appear in
//! `Debug` output, events or errors.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use palisade_core::{BoxError, Key};
use tokio::time::Instant;

use crate::error::{Error, Kind};

/// A token from a [`TokenProvider`].
#[derive(Clone)]
pub struct Token {
    value: HeaderValue,
    expires_at: Option<Instant>,
}

impl Token {
    /// A bearer token, sent as `Authorization: Bearer <token>`.
    pub fn bearer(token: &str) -> Result<Self, Error> {
        Ok(Self {
            value: sensitive(&format!("Bearer {token}"))?,
            expires_at: None,
        })
    }

    /// The token expires `ttl` from now.
    pub fn expires_in(mut self, ttl: Duration) -> Self {
        self.expires_at = Instant::now().checked_add(ttl);
        self
    }

    /// When the token expires, if it does.
    pub fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The boxed future a [`TokenProvider`] returns.
pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<Token, BoxError>> + Send + 'a>>;

/// Fetches a fresh token. The client caches it and decides when to call
/// again; an implementation just fetches.
pub trait TokenProvider: Send + Sync + 'static {
    /// Fetches a new token.
    fn fetch(&self) -> TokenFuture<'_>;
}

fn sensitive(v: &str) -> Result<HeaderValue, Error> {
    let mut value = HeaderValue::from_str(v)
        .map_err(|_| Error::config("credential contains characters not allowed in a header"))?;
    value.set_sensitive(true);
    Ok(value)
}

#[derive(Clone)]
enum Creds {
    Static {
        name: HeaderName,
        value: HeaderValue,
    },
    Provider(Arc<TokenCache>),
}

/// Credentials for one origin. See the [module docs](self).
#[derive(Clone)]
pub struct Auth {
    origin: Option<Key>,
    creds: Creds,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.creds {
            Creds::Static { name, .. } => format!("static header {name}"),
            Creds::Provider(_) => "token provider".to_owned(),
        };
        f.debug_struct("Auth")
            .field("origin", &self.origin)
            .field("credentials", &kind)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Auth {
    /// A static bearer token.
    pub fn bearer(token: &str) -> Result<Self, Error> {
        Ok(Self {
            origin: None,
            creds: Creds::Static {
                name: AUTHORIZATION,
                value: sensitive(&format!("Bearer {token}"))?,
            },
        })
    }

    /// An API key sent in `header`.
    pub fn api_key(header: &str, key: &str) -> Result<Self, Error> {
        let name = HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| Error::config(format!("invalid API key header name {header:?}")))?;
        Ok(Self {
            origin: None,
            creds: Creds::Static {
                name,
                value: sensitive(key)?,
            },
        })
    }

    /// Tokens from `provider`, refreshed `margin` before they expire.
    pub fn provider(provider: impl TokenProvider, margin: Duration) -> Self {
        Self {
            origin: None,
            creds: Creds::Provider(Arc::new(TokenCache {
                provider: Box::new(provider),
                margin,
                current: Mutex::new(None),
                refresh: tokio::sync::Mutex::new(()),
                refreshes: AtomicU64::new(0),
            })),
        }
    }

    /// Scopes these credentials to the origin of `url`. The client builder
    /// does this with its base URL; without a scope credentials go nowhere.
    pub fn scoped_to(mut self, url: &reqwest::Url) -> Self {
        let uri: Option<http::Uri> = url.as_str().parse().ok();
        self.origin = uri.as_ref().map(Key::origin);
        self
    }

    /// How many times the provider has been asked for a token.
    pub fn refreshes(&self) -> u64 {
        match &self.creds {
            Creds::Provider(c) => c.refreshes.load(Ordering::Relaxed),
            Creds::Static { .. } => 0,
        }
    }

    pub(crate) fn applies_to(&self, uri: &http::Uri) -> bool {
        self.origin.as_ref().is_some_and(|o| *o == Key::origin(uri))
    }

    pub(crate) fn can_refresh(&self) -> bool {
        matches!(self.creds, Creds::Provider(_))
    }

    /// The header to send, fetching or refreshing a token if needed.
    pub(crate) async fn header(&self) -> Result<(HeaderName, HeaderValue), Error> {
        match &self.creds {
            Creds::Static { name, value } => Ok((name.clone(), value.clone())),
            Creds::Provider(cache) => Ok((AUTHORIZATION, cache.get().await?)),
        }
    }

    /// Forgets `used`, which the server rejected, unless it was already replaced.
    pub(crate) fn invalidate(&self, used: &HeaderValue) {
        if let Creds::Provider(cache) = &self.creds {
            let mut cur = cache.current.lock().unwrap_or_else(|e| e.into_inner());
            if cur.as_ref().is_some_and(|t| t.value == *used) {
                *cur = None;
            }
        }
    }
}

struct TokenCache {
    provider: Box<dyn TokenProvider>,
    margin: Duration,
    current: Mutex<Option<Token>>,
    /// Held while a refresh is in flight, so there is only ever one.
    refresh: tokio::sync::Mutex<()>,
    refreshes: AtomicU64,
}

impl TokenCache {
    fn fresh(&self) -> Option<HeaderValue> {
        let cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let t = cur.as_ref()?;
        match t.expires_at {
            Some(at)
                if palisade_core::deadline::saturating_after(Instant::now(), self.margin) >= at =>
            {
                None
            }
            _ => Some(t.value.clone()),
        }
    }

    async fn get(&self) -> Result<HeaderValue, Error> {
        if let Some(v) = self.fresh() {
            return Ok(v);
        }
        // Cancellation-safe: dropping this future releases the lock, and the
        // next waiter refreshes instead.
        let _one_refresh = self.refresh.lock().await;
        if let Some(v) = self.fresh() {
            return Ok(v);
        }
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        let token = self.provider.fetch().await.map_err(|e| {
            Error::new(Kind::InvalidRequest)
                .with_message("token provider failed")
                .with_source(e)
        })?;
        let value = token.value.clone();
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(token);
        Ok(value)
    }
}

/// How long [`ClientCredentials`] waits to connect to the token endpoint.
pub const TOKEN_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`ClientCredentials`] waits for the token endpoint's whole
/// answer. A request waiting for a token is also bounded by its own
/// deadline, whichever comes first.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// OAuth2 client credentials (RFC 6749 §4.4) as a [`TokenProvider`].
///
/// Its requests to the token endpoint connect within
/// [`TOKEN_CONNECT_TIMEOUT`] and finish within [`TOKEN_TIMEOUT`]; a request
/// that waits for the token is bounded by its own deadline too, so a token
/// endpoint that never answers fails the waiting requests, and frees the
/// single refresh slot, in time.
///
/// Posts `grant_type=client_credentials` (and `scope`, when set) to the token
/// endpoint with HTTP Basic client authentication, and reads `access_token`
/// and `expires_in` from the JSON answer.
pub struct ClientCredentials {
    token_url: reqwest::Url,
    client_id: String,
    client_secret: String,
    scope: Option<String>,
    http: reqwest::Client,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &crate::redact::url(&self.token_url))
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scope", &self.scope)
            .finish()
    }
}

impl ClientCredentials {
    /// Client credentials for `token_url`.
    pub fn new(token_url: &str, client_id: &str, client_secret: &str) -> Result<Self, Error> {
        let token_url = reqwest::Url::parse(token_url)
            .map_err(|e| Error::config(format!("invalid token URL {token_url:?}: {e}")))?;
        Ok(Self {
            token_url,
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            scope: None,
            http: reqwest::Client::builder()
                .connect_timeout(TOKEN_CONNECT_TIMEOUT)
                .timeout(TOKEN_TIMEOUT)
                .build()
                .map_err(|e| Error::config("could not build the token client").with_source(e))?,
        })
    }

    /// Requests `scope`.
    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = Some(scope.to_owned());
        self
    }
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenProvider for ClientCredentials {
    fn fetch(&self) -> TokenFuture<'_> {
        Box::pin(async move {
            let mut form = vec![("grant_type", "client_credentials")];
            if let Some(s) = &self.scope {
                form.push(("scope", s));
            }
            let res = self
                .http
                .post(self.token_url.clone())
                .basic_auth(&self.client_id, Some(&self.client_secret))
                .form(&form)
                .send()
                .await?
                .error_for_status()?;
            let body: TokenResponse = serde_json::from_slice(&res.bytes().await?)?;
            let mut token = Token::bearer(&body.access_token)?;
            if let Some(secs) = body.expires_in {
                token = token.expires_in(Duration::from_secs(secs));
            }
            Ok(token)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    struct Counting {
        n: Arc<AtomicU32>,
        ttl: Duration,
    }

    impl TokenProvider for Counting {
        fn fetch(&self) -> TokenFuture<'_> {
            Box::pin(async move {
                let n = self.n.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(Token::bearer(&format!("t{n}"))?.expires_in(self.ttl))
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn fifty_concurrent_requests_share_one_refresh() {
        let n = Arc::new(AtomicU32::new(0));
        let auth = Auth::provider(
            Counting {
                n: n.clone(),
                ttl: Duration::from_secs(300),
            },
            Duration::from_secs(30),
        );
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let a = auth.clone();
                tokio::spawn(async move { a.header().await.unwrap().1 })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), "Bearer t1");
        }
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert_eq!(auth.refreshes(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_early_inside_the_margin() {
        let n = Arc::new(AtomicU32::new(0));
        let auth = Auth::provider(
            Counting {
                n: n.clone(),
                ttl: Duration::from_secs(100),
            },
            Duration::from_secs(30),
        );
        assert_eq!(auth.header().await.unwrap().1, "Bearer t1");
        tokio::time::advance(Duration::from_secs(69)).await;
        assert_eq!(
            auth.header().await.unwrap().1,
            "Bearer t1",
            "outside the margin"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            auth.header().await.unwrap().1,
            "Bearer t2",
            "inside the margin"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_margin_of_duration_max_refreshes_every_time_without_panicking() {
        let n = Arc::new(AtomicU32::new(0));
        let auth = Auth::provider(
            Counting {
                n: n.clone(),
                ttl: Duration::from_secs(100),
            },
            Duration::MAX,
        );
        assert_eq!(auth.header().await.unwrap().1, "Bearer t1");
        // Every token is inside a margin that long: each call refreshes.
        assert_eq!(auth.header().await.unwrap().1, "Bearer t2");
        assert_eq!(n.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn invalidate_only_drops_the_rejected_token() {
        let n = Arc::new(AtomicU32::new(0));
        let auth = Auth::provider(
            Counting {
                n: n.clone(),
                ttl: Duration::from_secs(300),
            },
            Duration::ZERO,
        );
        let (_, t1) = auth.header().await.unwrap();
        auth.invalidate(&t1);
        let (_, t2) = auth.header().await.unwrap();
        assert_eq!(t2, "Bearer t2");
        auth.invalidate(&t1); // stale: t2 stays
        assert_eq!(auth.header().await.unwrap().1, "Bearer t2");
    }

    #[test]
    fn scope_is_by_origin() {
        let auth = Auth::bearer("s3cret")
            .unwrap()
            .scoped_to(&"https://api.example.com/v1/".parse().unwrap());
        assert!(auth.applies_to(&"https://api.example.com:443/other".parse().unwrap()));
        assert!(!auth.applies_to(&"https://evil.example.com/v1/".parse().unwrap()));
        assert!(!auth.applies_to(&"http://api.example.com/v1/".parse().unwrap()));
        let unscoped = Auth::bearer("s3cret").unwrap();
        assert!(!unscoped.applies_to(&"https://api.example.com/".parse().unwrap()));
    }

    #[test]
    fn secrets_never_in_debug() {
        let auth = Auth::api_key("x-api-key", "s3cret").unwrap();
        assert!(!format!("{auth:?}").contains("s3cret"));
        let cc = ClientCredentials::new("https://id.example.com/token", "id", "s3cret").unwrap();
        assert!(!format!("{cc:?}").contains("s3cret"));
        let t = Token::bearer("s3cret").unwrap();
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
