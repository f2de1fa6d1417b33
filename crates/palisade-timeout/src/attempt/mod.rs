//! The attempt timeout: bounds the time from sending one attempt to
//! receiving its response head.
//!
//! The effective timeout is the smaller of the layer's own timeout and what
//! is left of the request's [`Deadline`](palisade_core::Deadline). When the
//! own timeout fires the attempt fails with [`Elapsed`](crate::error::Elapsed);
//! when the deadline was the tighter bound it fails with
//! [`DeadlineExceeded`](crate::error::DeadlineExceeded), so a retry layer
//! sees at once that another attempt cannot fit. A deadline already passed
//! fails at once without calling the inner service.
//!
//! On timeout the attempt's future is dropped there and then: with a
//! hyper-based transport that closes the connection rather than returning it
//! to the pool with a response still in flight. The error is an error, not a
//! synthetic `408` response.

mod layer;
mod service;

pub mod future;

pub use layer::AttemptTimeoutLayer;
pub use service::AttemptTimeout;
