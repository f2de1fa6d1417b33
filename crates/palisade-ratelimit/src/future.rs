//! The response future of [`RateLimit`](crate::RateLimit).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use palisade_core::error::RateLimited;
use palisade_core::{BoxError, Deadline, Key};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use crate::backend::{Decision, RateLimitBackend};
use crate::config::Mode;
use crate::shared::{Entry, Shared, Slot, nanos};

pin_project! {
    /// The response future of [`RateLimit`](crate::RateLimit).
    ///
    /// It waits for a slot (in [`Mode::Wait`]), spends it, then sends the
    /// request through the inner service. A slot is spent only at the
    /// moment of sending: dropping the future while it waits spends nothing
    /// and gives its place in the queue back.
    pub struct ResponseFuture<S, B, Bk>
    where
        S: Service<Request<B>>,
        Bk: RateLimitBackend,
    {
        #[pin]
        state: State<Bk::Future, S::Future>,
        pending: Option<(S, Request<B>)>,
        shared: Arc<Shared<Bk>>,
        entry: Arc<Entry<Bk::KeyState>>,
        key: Key,
        // When this request first had to wait, and the latest it may be
        // sent: set on the slow path only, so the fast path reads no clock.
        window: Option<Window>,
        slot: Option<Slot>,
        slept: bool,
    }

    impl<S, B, Bk> PinnedDrop for ResponseFuture<S, B, Bk>
    where
        S: Service<Request<B>>,
        Bk: RateLimitBackend,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(slot) = this.slot.take() {
                this.entry.leave(&slot, false);
            }
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<D, F> {
        Start,
        Check { #[pin] decision: D },
        // Boxed: only waiting requests pay for a timer, and the future
        // stays small for the rest.
        Sleep { sleep: Pin<Box<Sleep>> },
        Call { #[pin] response: F },
        Done,
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    // Read by the `rate_limit_waited` event only.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    start: u64,
    limit: u64,
}

enum Step {
    Check,
    Send,
    /// Not before this clock reading.
    Limited {
        earliest: u64,
        server: bool,
    },
    Fail {
        retry_after: Option<u64>,
        server: bool,
    },
}

impl<S, B, Bk> ResponseFuture<S, B, Bk>
where
    S: Service<Request<B>>,
    Bk: RateLimitBackend,
{
    pub(crate) fn new(
        inner: S,
        req: Request<B>,
        shared: Arc<Shared<Bk>>,
        entry: Arc<Entry<Bk::KeyState>>,
        key: Key,
    ) -> Self {
        Self {
            state: State::Start,
            pending: Some((inner, req)),
            shared,
            entry,
            key,
            window: None,
            slot: None,
            slept: false,
        }
    }
}

impl<S, B, RB, Bk> Future for ResponseFuture<S, B, Bk>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    Bk: RateLimitBackend,
{
    type Output = Result<Response<RB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let step = match this.state.as_mut().project() {
                StateProj::Start => {
                    let paused = this.entry.paused_until();
                    let queue = matches!(this.shared.config.mode, Mode::Wait { .. })
                        && this.entry.has_waiters();
                    let now = if paused == 0 && !queue {
                        0
                    } else {
                        this.shared.now()
                    };
                    if paused > now {
                        Step::Limited {
                            earliest: paused,
                            server: true,
                        }
                    } else if queue {
                        // Requests already wait here: queue behind them
                        // rather than take the slot one of them waits for.
                        Step::Limited {
                            earliest: now,
                            server: false,
                        }
                    } else {
                        Step::Check
                    }
                }
                StateProj::Check { decision } => match ready!(decision.poll(cx)) {
                    Decision::Allow => Step::Send,
                    Decision::Wait(d) => Step::Limited {
                        earliest: this.shared.now().saturating_add(nanos(d)),
                        server: false,
                    },
                    Decision::Paused(d) => Step::Limited {
                        earliest: this.shared.now().saturating_add(nanos(d)),
                        server: true,
                    },
                    Decision::Refuse => Step::Fail {
                        retry_after: None,
                        server: false,
                    },
                },
                StateProj::Sleep { sleep } => {
                    ready!(sleep.as_mut().poll(cx));
                    *this.slept = true;
                    let now = this.shared.now();
                    let paused = this.entry.paused_until();
                    if paused > now {
                        // The server asked for a pause while we waited.
                        Step::Limited {
                            earliest: paused,
                            server: true,
                        }
                    } else {
                        Step::Check
                    }
                }
                StateProj::Call { response } => {
                    let res = ready!(response.poll(cx)).map_err(Into::into);
                    if let Ok(res) = &res {
                        this.shared
                            .observe(this.key, this.entry, res.status(), res.headers());
                    }
                    this.state.set(State::Done);
                    return Poll::Ready(res);
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            };

            match step {
                Step::Check => {
                    let decision = this.shared.backend.check(this.key, &this.entry.backend);
                    this.state.set(State::Check { decision });
                }
                Step::Send => {
                    if let Some(slot) = this.slot.take() {
                        this.entry.leave(&slot, true);
                    }
                    #[cfg(feature = "tracing")]
                    if let (true, Some(window)) = (*this.slept, *this.window) {
                        let waited = this.shared.now().saturating_sub(window.start);
                        tracing::debug!(
                            target: palisade_core::events::TARGET,
                            key = %this.key,
                            wait_ms = waited / 1_000_000,
                            "{}",
                            palisade_core::events::RATE_LIMIT_WAITED
                        );
                    }
                    #[cfg(feature = "metrics")]
                    if let (true, Some(window)) = (*this.slept, *this.window) {
                        let waited = this.shared.now().saturating_sub(window.start);
                        metrics::histogram!(
                            palisade_core::events::metrics::RATE_LIMIT_WAIT,
                            "server.address" => this.key.to_string()
                        )
                        .record(waited as f64 / 1e9);
                    }
                    let (mut inner, req) = this
                        .pending
                        .take()
                        .expect("the request is sent once, then the state is Call");
                    let response = inner.call(req);
                    this.state.set(State::Call { response });
                }
                Step::Limited { earliest, server } => {
                    let now = this.shared.now();
                    let wait_for = |at: u64| Some(at.saturating_sub(now));
                    let limit = match (*this.window, this.shared.config.mode) {
                        (Some(w), _) => w.limit,
                        (None, Mode::Reject) => now,
                        (None, Mode::Wait { max_wait }) => {
                            let req = &this.pending.as_ref().expect("not sent yet").1;
                            let budget = Deadline::clamp_for(req, max_wait);
                            let w = Window {
                                start: now,
                                limit: now.saturating_add(nanos(budget)),
                            };
                            *this.window = Some(w);
                            w.limit
                        }
                    };
                    let next = match this.shared.config.mode {
                        Mode::Reject => Err(wait_for(earliest)),
                        Mode::Wait { .. } => match this.slot {
                            None => {
                                match this.entry.reserve(earliest, this.shared.interval(), limit) {
                                    Ok(slot) => {
                                        let at = slot.at;
                                        *this.slot = Some(slot);
                                        Ok(at)
                                    }
                                    Err(at) => Err(wait_for(at)),
                                }
                            }
                            // Woken, but the slot went elsewhere (another
                            // instance, or a pause set meanwhile).
                            Some(slot) => this
                                .entry
                                .rewait(slot, earliest, this.shared.interval(), limit)
                                .map_err(wait_for),
                        },
                    };
                    match next {
                        Ok(at) if at <= now => {
                            let decision = this.shared.backend.check(this.key, &this.entry.backend);
                            this.state.set(State::Check { decision });
                        }
                        Ok(at) => {
                            let at = this.shared.clock.instant(governor::nanos::Nanos::new(at));
                            let sleep = Box::pin(tokio::time::sleep_until(at));
                            this.state.set(State::Sleep { sleep });
                        }
                        Err(retry_after) => {
                            return Poll::Ready(fail(
                                &mut this.state,
                                this.entry,
                                this.slot,
                                this.key,
                                retry_after,
                                server,
                            ));
                        }
                    }
                }
                Step::Fail {
                    retry_after,
                    server,
                } => {
                    return Poll::Ready(fail(
                        &mut this.state,
                        this.entry,
                        this.slot,
                        this.key,
                        retry_after,
                        server,
                    ));
                }
            }
        }
    }
}

fn fail<D, F, KS, T>(
    state: &mut Pin<&mut State<D, F>>,
    entry: &Entry<KS>,
    slot: &mut Option<Slot>,
    key: &Key,
    retry_after: Option<u64>,
    server: bool,
) -> Result<T, BoxError> {
    if let Some(slot) = slot.take() {
        entry.leave(&slot, false);
    }
    state.set(State::Done);
    let retry_after = retry_after.map(std::time::Duration::from_nanos);
    #[cfg(feature = "tracing")]
    tracing::info!(
        target: palisade_core::events::TARGET,
        key = %key,
        wait_ms = retry_after.map_or(0, |d| d.as_millis() as u64),
        source = if server { "server" } else { "local" },
        "{}",
        palisade_core::events::RATE_LIMITED
    );
    #[cfg(feature = "metrics")]
    metrics::counter!(
        palisade_core::events::metrics::RATE_LIMIT_REJECTED,
        "server.address" => key.to_string(),
        "source" => if server { "server" } else { "local" }
    )
    .increment(1);
    #[cfg(not(feature = "tracing"))]
    let _ = (key, server);
    Err(RateLimited::new(retry_after).into())
}
