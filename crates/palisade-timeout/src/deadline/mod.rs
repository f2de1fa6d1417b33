//! One deadline for the whole logical request, retries and waits included.
//!
//! [`DeadlineLayer`] sets the [`Deadline`](palisade_core::Deadline) request
//! extension from its total budget and fails with
//! [`DeadlineExceeded`](crate::error::DeadlineExceeded) when the inner
//! service (retries, backoffs, queues and all) has not produced a response by
//! then. Every waiting layer inside reads the extension and clamps its wait
//! to what is left.
//!
//! The deadline only ever tightens: one already in the request (set by an
//! outer layer or by the caller) is kept when it is earlier, and so is a
//! deadline [inherited](crate::inherit) from the request being served, so an
//! outbound call made while handling a request with 800 ms left gets at most
//! 800 ms. A deadline already passed fails at once without calling the inner
//! service.
//!
//! Optionally the remaining budget is written into a header (see
//! [`DeadlineHeader`](crate::DeadlineHeader)) so the upstream can stop work
//! its caller will not wait for.

mod layer;
mod service;

pub mod future;

pub use layer::DeadlineLayer;
pub use service::DeadlineTimeout;
