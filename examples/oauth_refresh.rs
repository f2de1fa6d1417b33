//! Run: `cargo run -p palisade --example oauth_refresh`
//!
//! OAuth2 client credentials: the token is fetched once for 20 concurrent
//! requests and sent only to the API's origin. (A 401 to a revoked token
//! refreshes it once and replays the request: see the facade's test
//! `a_401_refreshes_once_and_replays_the_request`.) The token endpoint and
//! the API are httpmock servers on loopback.

use httpmock::prelude::*;
use palisade::{Auth, Client, ClientCredentials};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let idp = MockServer::start_async().await;
    let api = MockServer::start_async().await;
    let token = idp
        .mock_async(|when, then| {
            when.method(POST)
                .path("/token")
                .body_includes("grant_type=client_credentials");
            then.status(200)
                .json_body(serde_json::json!({"access_token": "t-1", "expires_in": 3600}));
        })
        .await;
    let ok = api
        .mock_async(|when, then| {
            when.path("/me").header("authorization", "Bearer t-1");
            then.status(200).body("hello");
        })
        .await;

    let provider = ClientCredentials::new(&idp.url("/token"), "my-app", "my-secret")?;
    let client = Client::builder()
        .base_url(&api.base_url())
        .auth(Auth::provider(provider, Duration::from_secs(30)))
        .build()?;
    let calls = (0..20).map(|_| {
        let c = client.clone();
        async move { c.get("me").send().await.map(|r| r.status()) }
    });
    for status in futures_util::future::join_all(calls).await {
        assert_eq!(status?, 200);
    }
    println!(
        "20 concurrent requests: {} token request(s), {} API call(s)",
        token.calls_async().await,
        ok.calls_async().await
    );
    Ok(())
}
