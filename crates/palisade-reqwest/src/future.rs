//! The response future of [`ReqwestService`](crate::ReqwestService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use palisade_core::TransportError;
use pin_project_lite::pin_project;

use crate::body::ResponseBody;
use crate::convert::from_reqwest_response;
use crate::error::transport_error;

/// reqwest's own response future, named through its `Service` impl.
type Pending = <reqwest::Client as tower_service::Service<reqwest::Request>>::Future;

pin_project! {
    /// The response future of [`ReqwestService`](crate::ReqwestService):
    /// reqwest's future, with its output converted.
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Sending {
            #[pin]
            fut: Pending,
        },
        Failed {
            err: Option<TransportError>,
        },
    }
}

impl ResponseFuture {
    pub(crate) const fn sending(fut: Pending) -> Self {
        Self {
            state: State::Sending { fut },
        }
    }

    pub(crate) const fn failed(err: TransportError) -> Self {
        Self {
            state: State::Failed { err: Some(err) },
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<ResponseBody>, TransportError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Sending { fut } => {
                let res = ready!(fut.poll(cx));
                Poll::Ready(res.map(from_reqwest_response).map_err(transport_error))
            }
            StateProj::Failed { err } => Poll::Ready(Err(err.take().unwrap_or_else(|| {
                TransportError::new(
                    palisade_core::TransportErrorKind::Other,
                    "response future polled after completion",
                )
            }))),
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
