//! The guards that hold a permit or a place in a queue, and give it back on
//! drop whatever happens.

use std::fmt;
use std::sync::Arc;

use crate::gate::Waiter;
use crate::shared::Partition;

/// One permit of one partition, returned on drop.
pub(crate) struct Slot(Arc<Partition>);

impl Slot {
    /// Wraps a permit already counted in `part`'s gate.
    pub(crate) const fn new(part: Arc<Partition>) -> Self {
        Self(part)
    }

    pub(crate) fn partition(&self) -> &Arc<Partition> {
        &self.0
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.gate.release();
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Slot").field(&self.0.key).finish()
    }
}

/// Everything a request holds while it runs: its key's permit and, when a
/// global limit is set, a global one.
#[derive(Debug)]
pub(crate) struct Permit {
    pub(crate) key: Slot,
    // Held only to be released on drop.
    #[allow(dead_code)]
    pub(crate) global: Option<Slot>,
}

/// A place in a partition's queue. Dropping it leaves the queue, or passes
/// the permit on if one was granted in the meantime.
pub(crate) struct Ticket {
    part: Arc<Partition>,
    waiter: Option<Arc<Waiter>>,
}

impl Ticket {
    pub(crate) const fn new(part: Arc<Partition>, waiter: Arc<Waiter>) -> Self {
        Self {
            part,
            waiter: Some(waiter),
        }
    }

    pub(crate) fn partition(&self) -> &Arc<Partition> {
        &self.part
    }

    pub(crate) fn waiter(&self) -> &Waiter {
        self.waiter
            .as_deref()
            .expect("ticket used after it was redeemed")
    }

    /// Turns a granted ticket into the permit it was granted.
    pub(crate) fn redeem(mut self) -> Slot {
        self.waiter = None;
        Slot::new(self.part.clone())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(w) = self.waiter.take() {
            self.part.gate.cancel(&w);
        }
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("key", &self.part.key)
            .field("redeemed", &self.waiter.is_none())
            .finish()
    }
}
