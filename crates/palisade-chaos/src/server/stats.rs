//! Per-route counters.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

/// What one route of a [`FlakyServer`](crate::FlakyServer) has seen so far.
///
/// A snapshot: [`FlakyServer::stats`](crate::FlakyServer::stats) copies it
/// out, so it does not change under the caller.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RouteStats {
    /// Requests received (every attempt counts, whatever its fate).
    pub attempts: u64,
    /// Requests whose response is not finished yet: from the request head
    /// until the response body is fully sent or the connection drops.
    pub in_flight: u64,
    /// The highest `in_flight` seen.
    pub max_in_flight: u64,
    /// `Idempotency-Key` header values, in arrival order (requests without
    /// one add nothing).
    pub idempotency_keys: Vec<String>,
    /// When each request arrived, in arrival order (tokio time).
    pub timestamps: Vec<Instant>,
    /// The request bodies received, in arrival order, each cut to its first
    /// 64 KiB. Requests reset before their body was read record an empty one.
    pub bodies: Vec<Bytes>,
}

impl RouteStats {
    /// The number of distinct `Idempotency-Key` values seen: with retries
    /// that reuse the key, the number of logical requests.
    pub fn distinct_idempotency_keys(&self) -> usize {
        let mut keys: Vec<&str> = self.idempotency_keys.iter().map(String::as_str).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.len()
    }

    /// The gaps between consecutive arrivals, for example to check backoff.
    pub fn gaps(&self) -> Vec<Duration> {
        self.timestamps
            .windows(2)
            .map(|w| w[1].saturating_duration_since(w[0]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_keys_and_gaps() {
        let t = Instant::now();
        let stats = RouteStats {
            idempotency_keys: vec!["a".into(), "b".into(), "a".into()],
            timestamps: vec![
                t,
                t + Duration::from_millis(5),
                t + Duration::from_millis(15),
            ],
            ..RouteStats::default()
        };
        assert_eq!(stats.distinct_idempotency_keys(), 2);
        assert_eq!(
            stats.gaps(),
            vec![Duration::from_millis(5), Duration::from_millis(10)]
        );
    }
}
