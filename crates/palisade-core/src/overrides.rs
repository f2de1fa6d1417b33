//! Per-request overrides of layer settings.
//!
//! A caller (the `palisade` client's request builder, or your own code) puts
//! one of these in a request's extensions to change one layer's setting for
//! that request alone. The layer that owns the setting reads it; every other
//! layer ignores it.
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::overrides::{AttemptTimeout, MaxRetries};
//!
//! let mut req = http::Request::new(());
//! req.extensions_mut().insert(AttemptTimeout(Duration::from_secs(2)));
//! req.extensions_mut().insert(MaxRetries(0)); // this request is never retried
//! assert_eq!(MaxRetries::of(&req), Some(0));
//! ```

use std::time::Duration;

/// The attempt timeout for this request, instead of the layer's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptTimeout(pub Duration);

/// The total budget for this request, instead of the deadline layer's own.
/// Unlike setting a [`Deadline`](crate::Deadline) directly, this may also
/// lengthen the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotalTimeout(pub Duration);

/// The most retries after the first attempt for this request (0 = none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxRetries(pub u32);

macro_rules! getter {
    ($t:ty, $inner:ty) => {
        impl $t {
            /// The override in `req`, if set.
            pub fn of<B>(req: &http::Request<B>) -> Option<$inner> {
                req.extensions().get::<Self>().map(|o| o.0)
            }
        }
    };
}

getter!(AttemptTimeout, Duration);
getter!(TotalTimeout, Duration);
getter!(MaxRetries, u32);
