//! `palisade-ratelimit`: placeholder. This crate has no functionality yet; it lands with its own issue.
