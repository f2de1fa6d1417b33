//! The response future of [`Chaos`](crate::Chaos).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use palisade_core::{BoxError, TransportError, TransportErrorKind};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use crate::error::InjectedFault;

pin_project! {
    /// The response future of [`Chaos`](crate::Chaos).
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Delayed {
            #[pin]
            sleep: Sleep,
            svc: Option<S>,
            req: Option<Req>,
        },
        Called {
            #[pin]
            fut: S::Future,
            abort: bool,
        },
        Ready {
            result: Option<Result<S::Response, BoxError>>,
        },
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    pub(crate) const fn called(fut: S::Future, abort: bool) -> Self {
        Self {
            state: State::Called { fut, abort },
        }
    }

    pub(crate) fn delayed(delay: Duration, svc: S, req: Req) -> Self {
        Self {
            state: State::Delayed {
                sleep: tokio::time::sleep(delay),
                svc: Some(svc),
                req: Some(req),
            },
        }
    }

    pub(crate) const fn ready(result: Result<S::Response, BoxError>) -> Self {
        Self {
            state: State::Ready {
                result: Some(result),
            },
        }
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Delayed { sleep, svc, req } => {
                    ready!(sleep.poll(cx));
                    let (Some(mut svc), Some(req)) = (svc.take(), req.take()) else {
                        return Poll::Ready(Err("chaos future polled after completion".into()));
                    };
                    let fut = svc.call(req);
                    this.state.set(State::Called { fut, abort: false });
                }
                StateProj::Called { fut, abort } => {
                    let res = ready!(fut.poll(cx)).map_err(Into::into);
                    if *abort && res.is_ok() {
                        // The response head arrived and is thrown away: the
                        // server did the work, the caller sees a reset.
                        return Poll::Ready(Err(TransportError::new(
                            TransportErrorKind::Reset,
                            InjectedFault::Abort,
                        )
                        .into()));
                    }
                    return Poll::Ready(res);
                }
                StateProj::Ready { result } => {
                    return Poll::Ready(
                        result
                            .take()
                            .unwrap_or_else(|| Err("chaos future polled after completion".into())),
                    );
                }
            }
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
