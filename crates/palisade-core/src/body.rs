//! The request body the stack carries, replayable so that retries and hedges
//! can send it again.
//!
//! - A buffered body ([`Body::from`] `Bytes`, `String`, `Vec<u8>`, `&'static
//!   str`) clones without copying its payload: `Bytes` is reference counted.
//! - A streaming body ([`Body::wrap`]) is replayable up to a cap, by default
//!   [`DEFAULT_REPLAY_CAP`] (64 KiB, as Linkerd's `ReplayBody`). While an
//!   attempt sends it, the chunks it sends are kept; a clone made later replays
//!   them and then continues from the source. Once more than the cap has been
//!   sent, the kept chunks are released and [`Body::try_clone`] fails with
//!   [`NotReplayable`], which says why; the request is then sent once and not
//!   retried.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::BodyExt;
//! use palisade_core::Body;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let body = Body::from(Bytes::from_static(b"{\"id\":1}"));
//! let retry = body.try_clone().expect("buffered bodies always clone");
//! assert_eq!(body.collect().await.unwrap().to_bytes(), "{\"id\":1}");
//! assert_eq!(retry.collect().await.unwrap().to_bytes(), "{\"id\":1}");
//! # }
//! ```

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;

use crate::error::BoxError;

/// The default replay cap for streaming bodies: 64 KiB, as Linkerd uses.
pub const DEFAULT_REPLAY_CAP: usize = 64 * 1024;

/// Why a body cannot be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotReplayable {
    /// More than `cap` bytes of a streaming body were sent, so the start of it
    /// is no longer kept.
    TooLarge {
        /// The replay cap in bytes.
        cap: usize,
    },
    /// The source stream failed while it was sent.
    StreamFailed,
}

impl fmt::Display for NotReplayable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { cap } => {
                write!(
                    f,
                    "body not replayable: more than {cap} bytes were streamed"
                )
            }
            Self::StreamFailed => f.write_str("body not replayable: the source stream failed"),
        }
    }
}

impl std::error::Error for NotReplayable {}

/// The request body type of the palisade stack. See the [module docs](self).
pub struct Body {
    kind: Kind,
}

enum Kind {
    Empty,
    Full { data: Bytes, sent: bool },
    Replay(Replay),
}

impl Body {
    /// An empty body.
    pub const fn empty() -> Self {
        Self { kind: Kind::Empty }
    }

    /// Wraps a streaming body, replayable up to [`DEFAULT_REPLAY_CAP`].
    pub fn wrap<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        Self::wrap_with_cap(body, DEFAULT_REPLAY_CAP)
    }

    /// Wraps a streaming body, replayable up to `cap` bytes. A cap of zero
    /// makes it never replayable once streaming has begun.
    pub fn wrap_with_cap<B>(body: B, cap: usize) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let size_hint = body.size_hint();
        let boxed = body.map_err(Into::into).boxed();
        Self {
            kind: Kind::Replay(Replay {
                shared: Arc::new(Shared {
                    state: Mutex::new(State {
                        chunks: Vec::new(),
                        buffered: 0,
                        cap,
                        broken: None,
                        source: Some(boxed),
                        source_done: false,
                        trailers: None,
                        waiting: Vec::new(),
                        size_hint,
                    }),
                }),
                pos: 0,
                source: None,
                trailers_sent: false,
            }),
        }
    }

    /// A copy of this body to send again, or why that is impossible.
    ///
    /// Buffered bodies always clone, without copying. A streaming body clones
    /// while no more than its cap has been streamed.
    pub fn try_clone(&self) -> Result<Body, NotReplayable> {
        let kind = match &self.kind {
            Kind::Empty => Kind::Empty,
            Kind::Full { data, .. } => Kind::Full {
                data: data.clone(),
                sent: false,
            },
            Kind::Replay(r) => {
                let state = r.shared.lock();
                if let Some(why) = state.broken {
                    return Err(why);
                }
                drop(state);
                Kind::Replay(Replay {
                    shared: r.shared.clone(),
                    pos: 0,
                    source: None,
                    trailers_sent: false,
                })
            }
        };
        Ok(Body { kind })
    }

    /// Whether [`try_clone`](Self::try_clone) would succeed now.
    pub fn is_replayable(&self) -> bool {
        match &self.kind {
            Kind::Replay(r) => r.shared.lock().broken.is_none(),
            _ => true,
        }
    }

    /// The payload of a buffered body; `None` for a streaming one.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match &self.kind {
            Kind::Empty => None,
            Kind::Full { data, .. } => Some(data),
            Kind::Replay(_) => None,
        }
    }

    /// Whether this is a streaming body.
    pub const fn is_streaming(&self) -> bool {
        matches!(self.kind, Kind::Replay(_))
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Empty => f.write_str("Body(empty)"),
            Kind::Full { data, .. } => write!(f, "Body({} bytes)", data.len()),
            Kind::Replay(_) => f.write_str("Body(streaming)"),
        }
    }
}

impl From<Bytes> for Body {
    fn from(data: Bytes) -> Self {
        if data.is_empty() {
            return Self::empty();
        }
        Self {
            kind: Kind::Full { data, sent: false },
        }
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Bytes::from(s).into()
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Bytes::from(v).into()
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Bytes::from_static(s.as_bytes()).into()
    }
}

impl From<&'static [u8]> for Body {
    fn from(s: &'static [u8]) -> Self {
        Bytes::from_static(s).into()
    }
}

impl From<()> for Body {
    fn from((): ()) -> Self {
        Self::empty()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full { data, sent } => {
                if *sent {
                    Poll::Ready(None)
                } else {
                    *sent = true;
                    Poll::Ready(Some(Ok(Frame::data(data.clone()))))
                }
            }
            Kind::Replay(r) => r.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full { sent, .. } => *sent,
            Kind::Replay(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full { data, sent } => {
                SizeHint::with_exact(if *sent { 0 } else { data.len() as u64 })
            }
            Kind::Replay(r) => {
                if r.pos == 0 && r.source.is_none() {
                    r.shared.lock().size_hint
                } else {
                    SizeHint::default()
                }
            }
        }
    }
}

type Source = BoxBody<Bytes, BoxError>;

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state torn in a way
        // that matters more than losing the body, so recover rather than panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct State {
    /// The chunks sent so far, while within the cap.
    chunks: Vec<Bytes>,
    buffered: usize,
    cap: usize,
    /// Set once replay became impossible.
    broken: Option<NotReplayable>,
    /// The source body, when no clone is streaming from it.
    source: Option<Source>,
    source_done: bool,
    trailers: Option<HeaderMap>,
    /// Clones waiting for the source to be handed back.
    waiting: Vec<Waker>,
    size_hint: SizeHint,
}

struct Replay {
    shared: Arc<Shared>,
    /// How many kept chunks this clone has yielded.
    pos: usize,
    /// The source, while this clone streams from it.
    source: Option<Source>,
    trailers_sent: bool,
}

impl Replay {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.source.is_none() {
            let mut state = self.shared.lock();
            if let Some(chunk) = state.chunks.get(self.pos) {
                self.pos += 1;
                return Poll::Ready(Some(Ok(Frame::data(chunk.clone()))));
            }
            if let Some(why) = state.broken {
                // This clone has not seen what was streamed past the cap.
                if self.pos != usize::MAX {
                    return Poll::Ready(Some(Err(why.into())));
                }
            }
            if state.source_done {
                if !self.trailers_sent {
                    self.trailers_sent = true;
                    if let Some(t) = state.trailers.clone() {
                        return Poll::Ready(Some(Ok(Frame::trailers(t))));
                    }
                }
                return Poll::Ready(None);
            }
            match state.source.take() {
                Some(src) => self.source = Some(src),
                None => {
                    // Another clone is streaming from the source; wait until it
                    // finishes or is dropped.
                    state.waiting.push(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        }
        let src = self.source.as_mut().expect("source taken above");
        let frame = match http_body::Body::poll_frame(Pin::new(src), cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(f) => f,
        };
        let mut state = self.shared.lock();
        match frame {
            None => {
                state.source_done = true;
                self.source = None;
                wake_all(&mut state);
                Poll::Ready(None)
            }
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    if state.broken.is_none() {
                        if state.buffered.saturating_add(data.len()) <= state.cap {
                            state.buffered += data.len();
                            state.chunks.push(data.clone());
                            self.pos = state.chunks.len();
                        } else {
                            let cap = state.cap;
                            state.broken = Some(NotReplayable::TooLarge { cap });
                            state.chunks = Vec::new();
                            // Marks this clone as the one that streamed past the cap.
                            self.pos = usize::MAX;
                        }
                    }
                } else if let Some(t) = frame.trailers_ref() {
                    state.trailers = Some(t.clone());
                    state.source_done = true;
                    self.trailers_sent = true;
                    self.source = None;
                    wake_all(&mut state);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                state.broken = Some(NotReplayable::StreamFailed);
                state.chunks = Vec::new();
                state.source_done = true;
                self.source = None;
                wake_all(&mut state);
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

fn wake_all(state: &mut State) {
    for w in state.waiting.drain(..) {
        w.wake();
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        if let Some(src) = self.source.take() {
            let mut state = self.shared.lock();
            state.source = Some(src);
            wake_all(&mut state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;
    use http_body::Body as _;
    use http_body_util::StreamBody;

    fn streaming(chunks: &[&'static str]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect();
        Body::wrap(StreamBody::new(stream::iter(frames)))
    }

    async fn read_all(body: Body) -> Result<Bytes, BoxError> {
        Ok(body.collect().await?.to_bytes())
    }

    #[tokio::test]
    async fn buffered_clone_shares_the_payload() {
        let data = Bytes::from(vec![7u8; 1024]);
        let body = Body::from(data.clone());
        let copy = body.try_clone().unwrap();
        assert_eq!(copy.as_bytes().unwrap().as_ptr(), data.as_ptr(), "no copy");
        assert_eq!(read_all(body).await.unwrap(), data);
        assert_eq!(read_all(copy).await.unwrap(), data);
    }

    #[tokio::test]
    async fn streaming_body_replays_within_the_cap() {
        let template = streaming(&["hello ", "wor", "ld"]);
        let first = template.try_clone().unwrap();
        assert_eq!(read_all(first).await.unwrap(), "hello world");
        let second = template.try_clone().unwrap();
        assert_eq!(read_all(second).await.unwrap(), "hello world");
        assert_eq!(read_all(template).await.unwrap(), "hello world");
    }

    #[tokio::test]
    async fn partially_sent_body_replays_then_continues() {
        let template = streaming(&["a", "b", "c"]);
        let mut first = template.try_clone().unwrap();
        let f = first.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "a");
        drop(first); // the attempt was cancelled after one chunk
        let second = template.try_clone().unwrap();
        assert_eq!(read_all(second).await.unwrap(), "abc");
    }

    #[tokio::test]
    async fn past_the_cap_cloning_fails_with_a_reason() {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = (0..4)
            .map(|_| Ok(Frame::data(Bytes::from(vec![0u8; 10]))))
            .collect();
        let template = Body::wrap_with_cap(StreamBody::new(stream::iter(frames)), 25);
        let first = template.try_clone().unwrap();
        assert_eq!(
            read_all(first).await.unwrap().len(),
            40,
            "the first send is whole"
        );
        let err = template.try_clone().unwrap_err();
        assert_eq!(err, NotReplayable::TooLarge { cap: 25 });
        assert!(err.to_string().contains("25 bytes"));
        assert!(!template.is_replayable());
        // The template itself cannot be sent again either: it errors, never
        // sends a body with its start missing.
        assert!(read_all(template).await.is_err());
    }

    #[tokio::test]
    async fn a_failed_stream_is_not_replayable() {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"x"))),
            Err("disk gone".into()),
        ];
        let template = Body::wrap(StreamBody::new(stream::iter(frames)));
        assert!(read_all(template.try_clone().unwrap()).await.is_err());
        assert_eq!(
            template.try_clone().unwrap_err(),
            NotReplayable::StreamFailed
        );
    }

    #[tokio::test]
    async fn trailers_are_replayed() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", "abc".parse().unwrap());
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"x"))),
            Ok(Frame::trailers(trailers.clone())),
        ];
        let template = Body::wrap(StreamBody::new(stream::iter(frames)));
        let a = template.try_clone().unwrap().collect().await.unwrap();
        assert_eq!(a.trailers(), Some(&trailers));
        let b = template.try_clone().unwrap().collect().await.unwrap();
        assert_eq!(b.trailers(), Some(&trailers));
        assert_eq!(b.to_bytes(), "x");
    }

    #[tokio::test]
    async fn size_hint_is_kept_for_fresh_clones() {
        let body = Body::wrap(http_body_util::Full::new(Bytes::from_static(b"12345")));
        assert_eq!(body.try_clone().unwrap().size_hint().exact(), Some(5));
        assert_eq!(Body::from("abc").size_hint().exact(), Some(3));
    }
}
