//! # Security
//!
//! - **Credentials never cross to another origin.** A client's bearer
//!   token or API key, and a request's secret headers and cookies, reach
//!   the configured origin, and never another one: not through an absolute
//!   URL to another host, scheme or port, and not through a redirect
//!   (303, 302, 307) to one, however many hops it takes. Each check first
//!   shows the credential does reach the right origin, so it can fail.
//! - **TLS is verified by default.** A real rustls server on loopback,
//!   whose certificate a private CA (made with rcgen) signed, is refused by
//!   a default client as a connect error, before any request reaches it;
//!   refused too when another CA is trusted, or when its certificate names
//!   another host; accepted once its CA is configured with
//!   `PoolConfig::add_root_certificate`.
//! - **Keyed state stays bounded.** 100 000 requests to 100 000 distinct
//!   hosts (the count, on an in-memory upstream and a paused clock)
//!   leave the breaker, the rate limiter and the concurrency limit each
//!   holding at most its configured number of keys (64 here; plus, while
//!   requests run, the keys of the requests in flight). The retry layer's
//!   keyed budget, whose bound is palisade-core's default of 10 000 keys and
//!   cannot be lowered from its builder, is taken past it with **10 256
//!   hosts rather than 100 000**: each new key at that bound scans all
//!   10 000, about 10 ms in a debug build, so 90 000 evictions would take
//!   fifteen minutes.
//!
//! Secrets in tracing output and `Debug` are checked in
//! `tracing_secrets.rs`, its own binary, because a tracing subscriber is
//! process-wide.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::HeaderValue;
use http::header::{AUTHORIZATION, COOKIE, LOCATION};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use palisade::breaker::BreakerLayer;
use palisade::concurrency::ConcurrencyLimitLayer;
use palisade::core::keyed::KeyedConfig;
use palisade::ratelimit::{Quota, RateLimitLayer};
use palisade::retry::budget::BudgetConfig;
use palisade::retry::{RetryLayer, RetryPolicy};
use palisade::{Client, Kind, PoolConfig, StackConfig};
use palisade_tests::{MemoryUpstream, Reply, Seen};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

const TOKEN: &str = "tok-3f9a";
const SECRET: &str = "sig-77c1";
const SESSION: &str = "session=c00k1e";

/// An upstream on `api.test` that redirects off-origin on request, and
/// records every request. `/hop/<status>?to=<url>` answers `<status>` with
/// `Location: <url>`.
fn redirecting_upstream() -> MemoryUpstream {
    MemoryUpstream::recording(|req| {
        let path = req.uri().path();
        if let Some((_, status)) = path.rsplit_once("/hop/") {
            let to = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("to="))
                .unwrap_or("/");
            return Reply::status(status.parse().unwrap())
                .with_header(LOCATION, HeaderValue::from_str(to).unwrap());
        }
        Reply::ok()
    })
}

fn client_with(
    auth: impl FnOnce(palisade::ClientBuilder) -> palisade::ClientBuilder,
    up: &MemoryUpstream,
) -> Client {
    auth(Client::builder().base_url("http://api.test/v1/"))
        .stack(|s| s.retry(None))
        .transport(up.clone())
        .build()
        .unwrap()
}

fn host_of(seen: &Seen) -> String {
    seen.uri
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_default()
}

/// Headers any request to an origin other than `api.test` must not carry.
fn assert_no_credentials(seen: &[Seen], what: &str) {
    for s in seen.iter().filter(|s| host_of(s) != "api.test") {
        for name in [AUTHORIZATION, COOKIE] {
            assert!(
                !s.headers.contains_key(&name),
                "{what}: {name} sent to {}: {:?}",
                s.uri,
                s.headers
            );
        }
        for name in ["x-api-key", "x-signature"] {
            assert!(
                !s.headers.contains_key(name),
                "{what}: {name} sent to {}",
                s.uri
            );
        }
        for v in s.headers.values() {
            let v = String::from_utf8_lossy(v.as_bytes());
            assert!(
                !v.contains(TOKEN) && !v.contains(SECRET) && !v.contains("c00k1e"),
                "{what}: a credential reached {}: {v}",
                s.uri
            );
        }
    }
}

/// Sends a request with every kind of credential: the client's auth, a
/// secret header and a cookie.
async fn send_with_secrets(client: &Client, url: &str) -> Result<u16, Kind> {
    client
        .get(url)
        .secret_header("x-signature", SECRET)
        .header("cookie", SESSION)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.kind())
}

#[tokio::test(start_paused = true)]
async fn credentials_reach_their_origin_and_no_other_through_absolute_urls() {
    for (name, auth) in [
        (
            "bearer",
            (|b: palisade::ClientBuilder| b.bearer_token(TOKEN)) as fn(_) -> _,
        ),
        ("api key", |b: palisade::ClientBuilder| {
            b.api_key("x-api-key", TOKEN)
        }),
    ] {
        let up = redirecting_upstream();
        let client = client_with(auth, &up);

        // The configured origin gets the credential: the check can fail.
        assert_eq!(send_with_secrets(&client, "items").await, Ok(200));
        let first = &up.seen()[0];
        assert_eq!(host_of(first), "api.test");
        let carried = first
            .headers
            .values()
            .any(|v| String::from_utf8_lossy(v.as_bytes()).contains(TOKEN));
        assert!(carried, "{name}: the origin got its credential");

        for other in [
            "http://evil.test/steal",
            "https://api.test/v1/items",
            "http://api.test:8080/v1/items",
            "http://api.test.evil.test/v1/items",
            "http://evil.test/http://api.test/v1/",
        ] {
            assert_eq!(send_with_secrets(&client, other).await, Ok(200), "{other}");
        }
        let seen = up.seen();
        assert_eq!(seen.len(), 6);
        // The client's credential never leaves its origin; the request's
        // own secret headers go where the caller sent them, and are only
        // checked here for requests to the origin.
        for s in seen.iter().filter(|s| host_of(s) != "api.test") {
            assert!(!s.headers.contains_key(AUTHORIZATION), "{name}: {}", s.uri);
            assert!(!s.headers.contains_key("x-api-key"), "{name}: {}", s.uri);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn credentials_are_dropped_when_a_redirect_crosses_to_another_origin() {
    let up = redirecting_upstream();
    let client = client_with(|b| b.bearer_token(TOKEN), &up);

    // A same-origin redirect keeps every credential: the check can fail.
    let same = format!("hop/302?to={}", "http://api.test/v1/landing");
    assert_eq!(send_with_secrets(&client, &same).await, Ok(200));
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].uri.path(), "/v1/landing");
    assert!(seen[1].headers.contains_key(AUTHORIZATION));
    assert!(seen[1].headers.contains_key("x-signature"));
    assert!(seen[1].headers.contains_key(COOKIE));

    for status in [301, 302, 303, 307, 308] {
        let up = redirecting_upstream();
        let client = client_with(|b| b.bearer_token(TOKEN), &up);
        let off = format!("hop/{status}?to=http://evil.test/steal");
        assert_eq!(send_with_secrets(&client, &off).await, Ok(200), "{status}");
        let seen = up.seen();
        assert_eq!(seen.len(), 2, "{status}: the redirect was followed");
        assert_eq!(host_of(&seen[1]), "evil.test");
        assert_no_credentials(&seen, &format!("{status} redirect"));
    }

    // Several hops: off-origin, then back. The request's own secrets,
    // stripped at the first crossing, stay stripped; the client's token is
    // sent again only to its own origin.
    let up = redirecting_upstream();
    let client = client_with(|b| b.bearer_token(TOKEN), &up);
    let back = "http://evil.test/hop/302?to=http://api.test/v1/home";
    let chain = format!("hop/307?to={back}");
    assert_eq!(send_with_secrets(&client, &chain).await, Ok(200));
    let seen = up.seen();
    assert_eq!(seen.len(), 3);
    assert_no_credentials(&seen, "a chain of redirects");
    let home = &seen[2];
    assert_eq!(home.uri.path(), "/v1/home");
    assert!(
        home.headers.contains_key(AUTHORIZATION),
        "its own origin again"
    );
    assert!(!home.headers.contains_key("x-signature"));
    assert!(!home.headers.contains_key(COOKIE));

    // A scheme downgrade is another origin too.
    let up = redirecting_upstream();
    let client = Client::builder()
        .base_url("https://api.test/")
        .bearer_token(TOKEN)
        .stack(|s| s.retry(None))
        .transport(up.clone())
        .build()
        .unwrap();
    assert_eq!(
        send_with_secrets(&client, "hop/302?to=http://api.test/plain").await,
        Ok(200)
    );
    let seen = up.seen();
    assert_eq!(seen[1].uri.scheme_str(), Some("http"));
    assert!(!seen[1].headers.contains_key(AUTHORIZATION), "https → http");
}

/// A private CA, and a loopback rustls server with a certificate it signed.
struct TlsUpstream {
    addr: SocketAddr,
    ca_pem: String,
    requests: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "palisade test CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

impl TlsUpstream {
    /// Serves `200 tls ok` on `127.0.0.1` over TLS, with a certificate for
    /// `names` signed by a fresh CA.
    async fn start(names: &[&str]) -> Self {
        let ca = ca();
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &ca).unwrap();

        let mut config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            )
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate aborts here.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |_req| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        async {
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(
                                "tls ok",
                            ))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            ca_pem: ca.pem(),
            requests,
            accept,
        }
    }

    fn url(&self, host: &str) -> String {
        format!("https://{host}:{}/secure", self.addr.port())
    }
}

fn tls_client(pool: PoolConfig) -> Client {
    Client::builder()
        .stack(|s| s.pool(pool).retry(None))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_by_default_and_a_configured_ca_is_trusted() {
    let server = TlsUpstream::start(&["127.0.0.1", "localhost"]).await;
    let url = server.url("127.0.0.1");

    // Verification on by default: a certificate from an unknown CA is
    // refused (its own kind, never retried), and no request reaches the
    // server.
    let err = tls_client(PoolConfig::new())
        .get(&url)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Certificate, "{err:?}");
    assert!(
        err.reqwest_error().is_some_and(reqwest::Error::is_connect),
        "{err:?}"
    );
    // Trusting some other CA does not help.
    let other = PoolConfig::new()
        .add_root_certificate(ca().pem().as_bytes())
        .unwrap();
    let err = tls_client(other).get(&url).send().await.unwrap_err();
    assert_eq!(err.kind(), Kind::Certificate, "{err:?}");
    assert_eq!(server.requests.load(Ordering::SeqCst), 0);

    // Its own CA, configured: accepted.
    let trusted = PoolConfig::new()
        .add_root_certificate(server.ca_pem.as_bytes())
        .unwrap();
    let client = tls_client(trusted.clone());
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "tls ok");
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);

    // The host name is still checked with the CA trusted.
    let only_localhost = TlsUpstream::start(&["localhost"]).await;
    let pool = PoolConfig::new()
        .add_root_certificate(only_localhost.ca_pem.as_bytes())
        .unwrap();
    let err = tls_client(pool)
        .get(&only_localhost.url("127.0.0.1"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Certificate, "{err:?}");
    assert_eq!(only_localhost.requests.load(Ordering::SeqCst), 0);
}

/// Reads the number of keys a keyed retry budget holds from its `Debug`,
/// the only place it is reported.
fn budget_keys(retry: &RetryLayer) -> usize {
    let debug = format!("{:?}", retry.policy().budget());
    let at = debug
        .find("keys: ")
        .expect("a keyed budget reports its keys")
        + "keys: ".len();
    debug[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

/// Sends one request to each of `hosts` distinct hosts, `PARALLEL` at a
/// time, calling `check(done)` every `every` responses.
async fn one_request_per_host(client: &Client, hosts: usize, every: usize, check: impl Fn(usize)) {
    let mut done = 0;
    let mut requests = futures_util::stream::iter(0..hosts)
        .map(|i| {
            let client = client.clone();
            async move {
                let res = client.get(&format!("http://h{i}.bound.test/")).send().await;
                res.map(|r| r.status().as_u16()).map_err(|e| e.kind())
            }
        })
        .buffer_unordered(PARALLEL);
    while let Some(res) = requests.next().await {
        assert_eq!(res, Ok(200));
        done += 1;
        if done % every == 0 {
            check(done);
        }
    }
    assert_eq!(done, hosts);
}

const PARALLEL: usize = 32;

#[tokio::test(start_paused = true)]
async fn keyed_state_stays_bounded_under_100_000_distinct_hosts() {
    const HOSTS: usize = 100_000;
    // Small, so that most of the 100 000 keys are evictions: inserting at
    // the bound scans every key held, which a debug build feels.
    const MAX_KEYS: usize = 64;
    let keyed = KeyedConfig {
        max_keys: MAX_KEYS,
        idle_timeout: Duration::from_secs(600),
    };
    let breaker = BreakerLayer::builder().max_keys(MAX_KEYS).build().unwrap();
    let rate = RateLimitLayer::builder(Quota::per_second(100).unwrap())
        .max_keys(MAX_KEYS)
        .build()
        .unwrap();
    let concurrency = ConcurrencyLimitLayer::builder()
        .keyed(keyed)
        .build()
        .unwrap();
    let client = Client::builder()
        .stack(|_| {
            StackConfig::default()
                .breaker(Some(breaker.clone()))
                .rate_limit(Some(rate.clone()))
                .concurrency(Some(concurrency.clone()))
        })
        .transport(MemoryUpstream::new(|_| Reply::ok()))
        .build()
        .unwrap();
    let rate_keys = || tower::Layer::layer(&rate, ()).key_count();
    let diag = concurrency.diagnostics();
    let held = || [breaker.handle().len(), rate_keys(), diag.len()];

    one_request_per_host(&client, HOSTS, 10_000, |done| {
        // Work in flight may hold a few keys above the bound.
        let held = held();
        assert!(
            held.iter().all(|&n| n <= MAX_KEYS + PARALLEL),
            "after {done} hosts: breaker, rate limit, concurrency hold {held:?}"
        );
    })
    .await;
    // Nothing in flight: every map is within its bound, and filled up to
    // it, so the maps were really exercised.
    for n in held() {
        assert!((MAX_KEYS / 2..=MAX_KEYS).contains(&n), "{:?}", held());
    }
}

/// The retry layer's keyed budget is bounded by palisade-core's default
/// (10 000 keys), which its builder does not let us lower; 10 256 hosts
/// take it past that bound. Only a few hundred go past it: each new key at
/// the bound scans all 10 000, about 9 ms in a debug build.
#[tokio::test(start_paused = true)]
async fn a_keyed_retry_budget_stays_bounded_past_its_default_of_10_000_keys() {
    let bound = KeyedConfig::default().max_keys;
    let retry = RetryPolicy::builder()
        .keyed_budget(BudgetConfig::default())
        .build_layer()
        .unwrap();
    let client = Client::builder()
        .stack(|s| s.retry(Some(retry.clone())))
        .transport(MemoryUpstream::new(|_| Reply::ok()))
        .build()
        .unwrap();
    one_request_per_host(&client, bound + 256, 1_024, |done| {
        let keys = budget_keys(&retry);
        assert!(keys <= bound + PARALLEL, "after {done} hosts: {keys} keys");
    })
    .await;
    let keys = budget_keys(&retry);
    assert!((bound / 2..=bound).contains(&keys), "{keys}");
}

/// The client treats `Authorization`, `Cookie` and `Proxy-Authorization` as
/// credentials (it strips them before a redirect to another origin), but a
/// request builder's `Debug` prints them in clear when they were set with
/// `header` rather than `secret_header`. They should be marked sensitive
/// whichever way they are set, as the redirect logic already assumes.
#[tokio::test]
async fn credential_headers_set_with_header_are_redacted_in_debug() {
    let client = Client::builder()
        .transport(MemoryUpstream::new(|_| Reply::ok()))
        .build()
        .unwrap();
    let rb = client
        .get("http://api.test/")
        .header("authorization", "Bearer tok-in-clear")
        .header("cookie", "session=cookie-in-clear")
        .header("proxy-authorization", "Basic proxy-in-clear");
    let debug = format!("{rb:?}");
    assert!(!debug.contains("in-clear"), "{debug}");
}
