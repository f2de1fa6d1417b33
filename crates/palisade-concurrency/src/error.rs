//! The errors this layer fails with.
//!
//! Both are palisade-core's shared errors, returned boxed as
//! [`BoxError`]; find them with
//! [`palisade_core::error::find`] or `downcast_ref`. Both classify as
//! [`Class::Rejected`](palisade_core::Class::Rejected): the request never
//! left, so retrying it cannot duplicate a side effect.
//!
//! - [`Overloaded`]: the key's queue (or the global queue) was full, so the
//!   request was shed at once.
//! - [`QueueTimeout`]: the request waited its maximum wait, clamped by its
//!   [`Deadline`](palisade_core::Deadline), without getting a permit.
//!
//! Errors of the inner service pass through unchanged, boxed.

pub use palisade_core::error::{BoxError, Overloaded, QueueTimeout};
