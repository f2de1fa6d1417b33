//! The server's response body: full, or generated chunk by chunk.

use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::Sleep;

use super::InFlight;
use super::script::{CHUNK, End};

/// Generated bodies are slices of this, so a GiB body allocates nothing per
/// chunk.
static PATTERN: [u8; CHUNK] = [b'.'; CHUNK];

/// Why the server cut a body short; hyper aborts the connection on it.
#[derive(Debug)]
pub(crate) struct Truncated;

impl fmt::Display for Truncated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("body truncated on purpose by palisade-chaos")
    }
}

impl std::error::Error for Truncated {}

pub(crate) struct ChaosBody {
    kind: Kind,
    /// Released when hyper drops the body: fully sent, or connection gone.
    _in_flight: Option<InFlight>,
}

enum Kind {
    Full(Option<Bytes>),
    Stream {
        remaining: u64,
        chunk: usize,
        interval: Option<Duration>,
        sleep: Option<Pin<Box<Sleep>>>,
        end: End,
        exact: bool,
        /// Whether an aborting body already yielded once so that hyper
        /// flushed what was sent before the abort.
        flushed: bool,
    },
}

impl ChaosBody {
    pub(crate) fn full(data: Bytes, in_flight: InFlight) -> Self {
        Self {
            kind: Kind::Full(Some(data)),
            _in_flight: Some(in_flight),
        }
    }

    pub(crate) fn stream(
        sent: u64,
        chunk: usize,
        interval: Option<Duration>,
        end: End,
        declared: bool,
        in_flight: InFlight,
    ) -> Self {
        Self {
            kind: Kind::Stream {
                remaining: sent,
                chunk,
                interval,
                sleep: None,
                end,
                // An exact hint makes hyper send a Content-Length: only for
                // a body that declares one and sends it all.
                exact: declared && end == End::Finish,
                flushed: false,
            },
            _in_flight: Some(in_flight),
        }
    }
}

impl http_body::Body for ChaosBody {
    type Data = Bytes;
    type Error = Truncated;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Truncated>>> {
        match &mut self.get_mut().kind {
            Kind::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::Stream {
                remaining,
                chunk,
                interval,
                sleep,
                end,
                flushed,
                ..
            } => {
                if *remaining == 0 {
                    return match end {
                        End::Finish => Poll::Ready(None),
                        // Nothing will ever wake this: the body hangs until
                        // the client or the server drops the connection.
                        End::Stall => Poll::Pending,
                        // hyper drops the connection on a body error without
                        // flushing; yielding once first makes it flush the
                        // head and the bytes sent, so the client sees a short
                        // body rather than no response.
                        End::Abort if !*flushed => {
                            *flushed = true;
                            cx.waker().wake_by_ref();
                            Poll::Pending
                        }
                        End::Abort => Poll::Ready(Some(Err(Truncated))),
                    };
                }
                if let Some(s) = sleep.as_mut()
                    && s.as_mut().poll(cx).is_pending()
                {
                    return Poll::Pending;
                }
                let n = usize::try_from(*remaining).map_or(*chunk, |r| r.min(*chunk));
                *remaining -= n as u64;
                if let Some(every) = *interval {
                    let deadline = tokio::time::Instant::now() + every;
                    match sleep {
                        Some(s) => s.as_mut().reset(deadline),
                        None => *sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                }
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&PATTERN[..n])))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(data) => data.is_none(),
            Kind::Stream { remaining, end, .. } => *remaining == 0 && *end == End::Finish,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Stream {
                remaining, exact, ..
            } if *exact => SizeHint::with_exact(*remaining),
            Kind::Stream { .. } => SizeHint::default(),
        }
    }
}
