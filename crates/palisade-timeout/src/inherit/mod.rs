//! Deadline propagation: a server reads its caller's budget, and the
//! outbound calls it makes while handling that request inherit it.
//!
//! A fan-out that ignores its caller's deadline keeps working, and keeps
//! upstreams busy, long after the caller has given up. Propagation takes two
//! pieces:
//!
//! 1. On the server, [`InheritDeadlineLayer`] reads the incoming deadline
//!    header (see [`DeadlineHeader`](crate::DeadlineHeader)), stores a
//!    [`Deadline`] in the request's extensions (for handlers that want to
//!    read it) and runs the rest of the request, the handler included, in a
//!    task-local [`scope`] holding that deadline.
//! 2. On the client, [`DeadlineLayer`](crate::DeadlineLayer) tightens its
//!    own deadline with the [inherited](current) one. Nothing else is
//!    needed: every outbound call awaited inside the handler sees the
//!    caller's budget, and, with a header configured, passes what is left
//!    further down.
//!
//! The scope is a [tokio task-local](tokio::task_local), so it follows the
//! handler's future but not a task it spawns: wrap spawned work with
//! [`carry`] (or [`scope`] with a deadline taken from the extension). For the
//! same reason the client's `DeadlineLayer` must sit above any
//! `tower::buffer::Buffer`, whose worker runs in a task of its own.
//!
//! # With axum
//!
//! ```ignore
//! use std::time::Duration;
//! use axum::{Extension, Router, extract::State, routing::get};
//! use palisade_core::{Body, Deadline};
//! use palisade_reqwest::{PoolConfig, ReqwestService};
//! use palisade_timeout::{DeadlineHeader, DeadlineLayer, InheritDeadlineLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! // The outbound client. Its DeadlineLayer tightens its own 30 s budget
//! // with the deadline inherited from the request being served, and tells
//! // the next hop what is left.
//! let client = ServiceBuilder::new()
//!     .layer(
//!         DeadlineLayer::builder()
//!             .budget(Duration::from_secs(30))
//!             .send_header(DeadlineHeader::default())
//!             .build()?,
//!     )
//!     .service(ReqwestService::from_pool(&PoolConfig::new())?);
//!
//! async fn handler<C>(State(client): State<C>, deadline: Option<Extension<Deadline>>) -> String
//! where
//!     C: tower::Service<http::Request<Body>> + Clone,
//! {
//!     // This call gets min(30 s, what the caller has left).
//!     let req = http::Request::get("http://inventory.internal/items").body(Body::empty()).unwrap();
//!     let outcome = client.oneshot(req).await;
//!     format!("ok: {}, {:?} left", outcome.is_ok(), deadline.map(|d| d.remaining()))
//! }
//!
//! let app = Router::new()
//!     .route("/", get(handler))
//!     .with_state(client)
//!     // Reads `x-request-timeout-ms`, capped at 60 s.
//!     .layer(InheritDeadlineLayer::builder().max(Duration::from_secs(60)).build()?);
//! ```
//!
//! `InheritDeadline` never fails a request itself (axum needs infallible
//! layers), and forwards the inner service's response and error unchanged.
//! The same works with any tower-based server; the example below, which is
//! compiled, does it with plain `tower` services:
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::Deadline;
//! use palisade_timeout::{inherit, DeadlineLayer, InheritDeadlineLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let server = ServiceBuilder::new()
//!     .layer(InheritDeadlineLayer::default())
//!     .service_fn(|_req: http::Request<()>| async move {
//!         // An outbound call made while handling the request.
//!         let client = ServiceBuilder::new()
//!             .layer(DeadlineLayer::new(Duration::from_secs(30))?)
//!             .service_fn(|req: http::Request<()>| async move {
//!                 Ok::<_, std::convert::Infallible>(Deadline::of(&req).unwrap().remaining())
//!             });
//!         client.oneshot(http::Request::new(())).await
//!     });
//!
//! let req = http::Request::get("/").header("x-request-timeout-ms", "800").body(())?;
//! let outbound_budget = server.oneshot(req).await?;
//! assert_eq!(outbound_budget, Duration::from_millis(800));
//! assert_eq!(inherit::current(), None); // the scope ended with the request
//! # Ok(()) }
//! ```

use std::future::Future;

use palisade_core::Deadline;

mod layer;
mod service;

pub mod future;

pub use future::Scoped;
pub use layer::InheritDeadlineLayer;
pub use service::InheritDeadline;

tokio::task_local! {
    static INHERITED: Option<Deadline>;
}

/// The deadline inherited by the task running now, if it runs inside a
/// [`scope`].
pub fn current() -> Option<Deadline> {
    INHERITED.try_with(|d| *d).ok().flatten()
}

/// Runs `fut` with `deadline` inherited by every [`DeadlineLayer`](crate::DeadlineLayer)
/// it calls through. Inside another scope the earlier deadline wins.
pub fn scope<F: Future>(deadline: Deadline, fut: F) -> Scoped<F> {
    scope_opt(Some(deadline), fut)
}

/// Runs `fut` with the deadline inherited by the current task, if any: for
/// work handed to [`tokio::spawn`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use palisade_core::Deadline;
/// use palisade_timeout::inherit;
///
/// let d = Deadline::after(Duration::from_secs(2));
/// inherit::scope(d, async move {
///     let seen = tokio::spawn(inherit::carry(async { inherit::current() })).await.unwrap();
///     assert_eq!(seen, Some(d));
/// }).await;
/// # }
/// ```
pub fn carry<F: Future>(fut: F) -> Scoped<F> {
    scope_opt(None, fut)
}

/// `deadline` tightened by the one the current task inherits.
pub(crate) fn effective(deadline: Option<Deadline>) -> Option<Deadline> {
    match (deadline, current()) {
        (Some(d), Some(outer)) => Some(d.tighten(outer)),
        (d, outer) => d.or(outer),
    }
}

pub(crate) fn scope_opt<F: Future>(deadline: Option<Deadline>, fut: F) -> Scoped<F> {
    Scoped::new(INHERITED.scope(effective(deadline), fut))
}

/// Runs `f` and then `fut` in the scope of `deadline`, tightened once.
pub(crate) fn call_in_scope<F: Future>(
    deadline: Option<Deadline>,
    f: impl FnOnce() -> F,
) -> Scoped<F> {
    let deadline = effective(deadline);
    let fut = INHERITED.sync_scope(deadline, f);
    Scoped::new(INHERITED.scope(deadline, fut))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn nested_scopes_keep_the_earlier_deadline() {
        let outer = Deadline::after(Duration::from_secs(1));
        let looser = Deadline::after(Duration::from_secs(5));
        let tighter = Deadline::after(Duration::from_millis(200));
        assert_eq!(current(), None);
        scope(outer, async move {
            assert_eq!(current(), Some(outer));
            scope(looser, async move { assert_eq!(current(), Some(outer)) }).await;
            scope(tighter, async move { assert_eq!(current(), Some(tighter)) }).await;
            assert_eq!(current(), Some(outer));
        })
        .await;
        assert_eq!(current(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn spawned_tasks_inherit_only_when_carried() {
        let d = Deadline::after(Duration::from_secs(1));
        scope(d, async move {
            let plain = tokio::spawn(async { current() }).await.unwrap();
            let carried = tokio::spawn(carry(async { current() })).await.unwrap();
            assert_eq!(plain, None);
            assert_eq!(carried, Some(d));
        })
        .await;
    }
}
