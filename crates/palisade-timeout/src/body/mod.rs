//! Response body timeouts: an idle timeout per frame and a deadline for the
//! whole body.
//!
//! The attempt timeout ends when the response head arrives; a body can then
//! still stall on a half-open socket and hang its reader for ever.
//! [`BodyTimeoutLayer`] wraps each response body in a [`TimeoutBody`] that
//! fails the stream with a clear error instead:
//!
//! - **idle** ([`BodyIdleTimeout`](crate::error::BodyIdleTimeout)): the
//!   reader waited longer than the idle timeout for the next frame. The clock
//!   runs only while the reader waits, from the first poll that finds no data
//!   to the next frame, so a reader that is slow to poll is never blamed on
//!   the server.
//! - **deadline** ([`BodyDeadlineExceeded`](crate::error::BodyDeadlineExceeded)):
//!   the body had not ended by its total bound, counted from the response
//!   head, or by the request's [`Deadline`](palisade_core::Deadline),
//!   whichever is earlier. It is checked whenever the reader has to wait for
//!   data.
//!
//! On either timeout the inner body is dropped at once, which closes the
//! connection instead of leaving it half read; later polls return `None`.
//! `size_hint` and `is_end_stream` pass through, so content lengths survive
//! the wrapper.
//!
//! # Why not tower-http's body timeouts
//!
//! tower-http 0.6's `ResponseBodyTimeoutLayer` and `TimeoutBody` were
//! evaluated for the client side and not reused:
//!
//! - they have one idle timeout and no bound on the whole body, and cannot
//!   see the request's [`Deadline`](palisade_core::Deadline), which a
//!   response body must honour for "one deadline for the whole request" to
//!   hold (0.7 adds a `DeadlineBody`, but it too counts from construction
//!   and ignores the extension);
//! - its timer is polled before the body and restarted only after a frame,
//!   so a reader that pauses between frames (writing each chunk to disk, say)
//!   gets a timeout even when the next frame is already buffered;
//! - one `TimeoutError` for every case, so a body stall cannot be told from
//!   a deadline, and no event or key;
//! - `TimeoutBody` does not forward `size_hint` or `is_end_stream`, losing
//!   the content length for whatever reads the body next.
//!
//! The wrapper here is small, keeps the same error-not-response contract, and
//! composes with tower-http's other layers unchanged.

mod layer;
mod service;
mod timeout_body;

pub mod future;

pub use layer::BodyTimeoutLayer;
pub use service::BodyTimeout;
pub use timeout_body::TimeoutBody;
