//! Run: `cargo run -p palisade --example pagination`
//!
//! A lazy stream over a paged listing that follows `Link: <...>; rel="next"`
//! (RFC 8288). Each page is fetched, through the whole stack, only when the
//! consumer asks for its first item; the upstream fails page 2 once and the
//! retry layer recovers it.

use futures_util::StreamExt;
use palisade::{Client, Pagination};
use palisade_chaos::{Behavior, FlakyServer, Script};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let upstream = FlakyServer::start().await?;
    let next = |path: &str| format!("<{}>; rel=\"next\"", upstream.url(path));
    upstream.script(
        "/users",
        Script::always(
            Behavior::ok(r#"[{"id":1},{"id":2}]"#).with_header("link", &next("/users/p2")),
        ),
    );
    upstream.script(
        "/users/p2",
        Script::new()
            .then(Behavior::retry_after_secs(503, 0))
            .then(Behavior::ok(r#"[{"id":3},{"id":4}]"#).with_header("link", &next("/users/p3"))),
    );
    upstream.script("/users/p3", Script::always(Behavior::ok(r#"[{"id":5}]"#)));

    let client = Client::builder().base_url(&upstream.url("/")).build()?;
    let mut users = client.paginate::<serde_json::Value>(client.get("users"), Pagination::link());
    while let Some(user) = users.next().await {
        let user = user?;
        println!(
            "user {} (upstream requests so far: {})",
            user["id"],
            upstream.total_attempts()
        );
    }
    Ok(())
}
