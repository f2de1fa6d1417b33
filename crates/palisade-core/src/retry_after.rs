//! Reading how long an upstream asks us to wait.
//!
//! [`RetryAfter`] parses `Retry-After` in both of its forms, delta-seconds
//! (`120`) and HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`, through the
//! `httpdate` crate), and the rate-limit headers APIs send instead:
//! `RateLimit-Reset` and `RateLimit: ...;t=N` (IETF draft), and
//! `X-RateLimit-Reset` (delta seconds, or a Unix timestamp as GitHub sends).
//!
//! Every function is total: garbage, negative values and overflow give
//! `None`, a date in the past gives zero, and results are capped at the
//! caller's maximum. None of them panics, whatever the header bytes.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use palisade_core::RetryAfter;
//!
//! let mut headers = http::HeaderMap::new();
//! headers.insert("retry-after", "120".parse().unwrap());
//! let wait = RetryAfter::from_headers(&headers, Duration::from_secs(60));
//! assert_eq!(wait, Some(Duration::from_secs(60))); // capped
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use http::header::RETRY_AFTER;

/// Values of `X-RateLimit-Reset` at or above this are Unix timestamps
/// (2001-09-09), below it they are delta-seconds.
const EPOCH_THRESHOLD: u64 = 1_000_000_000;

/// Parses `Retry-After` and rate-limit reset headers. See the [module docs](self).
#[derive(Debug, Clone, Copy)]
pub struct RetryAfter {
    _priv: (),
}

impl RetryAfter {
    /// Parses one `Retry-After` value as delta-seconds or an HTTP-date, as
    /// seen at `now`. Returns `None` for anything malformed.
    pub fn parse_value(value: &[u8], now: SystemTime) -> Option<Duration> {
        let s = std::str::from_utf8(value).ok()?.trim();
        if s.is_empty() {
            return None;
        }
        if s.as_bytes()[0].is_ascii_digit() {
            return parse_seconds(s);
        }
        let at = httpdate::parse_http_date(s).ok()?;
        Some(at.duration_since(now).unwrap_or(Duration::ZERO))
    }

    /// The `Retry-After` header alone, as seen at `now`, capped at `max`.
    pub fn header_at(headers: &HeaderMap, now: SystemTime, max: Duration) -> Option<Duration> {
        let v = headers.get(RETRY_AFTER)?;
        Self::parse_value(v.as_bytes(), now).map(|d| d.min(max))
    }

    /// How long the upstream asks us to wait, as seen at `now`, capped at
    /// `max`: `Retry-After` first, then `RateLimit-Reset`, the `t`/`reset`
    /// parameter of `RateLimit`, and `X-RateLimit-Reset`.
    pub fn from_headers_at(
        headers: &HeaderMap,
        now: SystemTime,
        max: Duration,
    ) -> Option<Duration> {
        if let Some(d) = Self::header_at(headers, now, max) {
            return Some(d);
        }
        Self::reset_at(headers, now).map(|d| d.min(max))
    }

    /// [`from_headers_at`](Self::from_headers_at) with the current wall-clock time.
    pub fn from_headers(headers: &HeaderMap, max: Duration) -> Option<Duration> {
        Self::from_headers_at(headers, SystemTime::now(), max)
    }

    /// The rate-limit window reset alone (not `Retry-After`), as seen at `now`, uncapped.
    pub fn reset_at(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
        if let Some(v) = header_str(headers, "ratelimit-reset")
            && let Some(d) = parse_seconds(v)
        {
            return Some(d);
        }
        if let Some(v) = header_str(headers, "ratelimit")
            && let Some(d) = structured_param(v, &["t", "reset"]).and_then(parse_seconds)
        {
            return Some(d);
        }
        let v = header_str(headers, "x-ratelimit-reset")?;
        let d = parse_seconds(v)?;
        if d.as_secs() >= EPOCH_THRESHOLD {
            let at = UNIX_EPOCH.checked_add(d)?;
            Some(at.duration_since(now).unwrap_or(Duration::ZERO))
        } else {
            Some(d)
        }
    }

    /// The remaining requests in the current window, from `RateLimit-Remaining`,
    /// the `r`/`remaining` parameter of `RateLimit`, or `X-RateLimit-Remaining`.
    pub fn remaining(headers: &HeaderMap) -> Option<u64> {
        let int = |s: &str| -> Option<u64> {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        if let Some(n) = header_str(headers, "ratelimit-remaining").and_then(int) {
            return Some(n);
        }
        if let Some(n) = header_str(headers, "ratelimit")
            .and_then(|v| structured_param(v, &["r", "remaining"]))
            .and_then(int)
        {
            return Some(n);
        }
        header_str(headers, "x-ratelimit-remaining").and_then(int)
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

/// Non-negative decimal seconds, `"3"` or `"1.5"`; `None` on anything else or
/// on overflow.
fn parse_seconds(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = int.parse().ok()?;
    let nanos = match frac {
        None => 0,
        Some(f) if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) => return None,
        Some(f) => {
            // Keep nanosecond precision; ignore digits beyond it.
            let digits = &f[..f.len().min(9)];
            let n: u32 = digits.parse().ok()?;
            n * 10u32.pow(9 - digits.len() as u32)
        }
    };
    Some(Duration::new(secs, nanos))
}

/// Finds `name=value` among `;`/`,`-separated parameters of a structured
/// header such as `RateLimit: "default";r=0;t=30` or `limit=10, remaining=0, reset=5`.
fn structured_param<'a>(v: &'a str, names: &[&str]) -> Option<&'a str> {
    v.split([';', ',']).find_map(|part| {
        let (k, val) = part.split_once('=')?;
        let k = k.trim();
        names
            .iter()
            .any(|n| k.eq_ignore_ascii_case(n))
            .then(|| val.trim().trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const NOW: u64 = 1_445_412_480; // Wed, 21 Oct 2015 07:28:00 GMT

    #[test]
    fn delta_seconds() {
        assert_eq!(
            RetryAfter::parse_value(b"120", at(NOW)),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            RetryAfter::parse_value(b" 0 ", at(NOW)),
            Some(Duration::ZERO)
        );
        assert_eq!(
            RetryAfter::parse_value(b"1.5", at(NOW)),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn http_date_in_future_and_past() {
        let v = b"Wed, 21 Oct 2015 07:28:10 GMT";
        assert_eq!(
            RetryAfter::parse_value(v, at(NOW)),
            Some(Duration::from_secs(10))
        );
        // A date in the past means zero.
        assert_eq!(
            RetryAfter::parse_value(v, at(NOW + 60)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn garbage_negative_and_overflow_are_none() {
        for v in [
            &b""[..],
            b"soon",
            b"-5",
            b"+5",
            b"1e3",
            b"99999999999999999999999",
            b"1.",
            b".5",
            b"Wed, 99 Oct 2015 07:28:00 GMT",
            b"\xff\xfe",
        ] {
            assert_eq!(RetryAfter::parse_value(v, at(NOW)), None, "{v:?}");
        }
    }

    #[test]
    fn capped_by_caller_maximum() {
        let h = headers(&[("retry-after", "3600")]);
        assert_eq!(
            RetryAfter::header_at(&h, at(NOW), Duration::from_secs(60)),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn rate_limit_reset_headers() {
        let h = headers(&[("ratelimit-reset", "30"), ("ratelimit-remaining", "0")]);
        assert_eq!(
            RetryAfter::from_headers_at(&h, at(NOW), Duration::MAX),
            Some(Duration::from_secs(30))
        );
        assert_eq!(RetryAfter::remaining(&h), Some(0));

        let h = headers(&[("ratelimit", "\"default\";r=0;t=12")]);
        assert_eq!(
            RetryAfter::reset_at(&h, at(NOW)),
            Some(Duration::from_secs(12))
        );
        assert_eq!(RetryAfter::remaining(&h), Some(0));

        let h = headers(&[("ratelimit", "limit=10, remaining=3, reset=5")]);
        assert_eq!(
            RetryAfter::reset_at(&h, at(NOW)),
            Some(Duration::from_secs(5))
        );
        assert_eq!(RetryAfter::remaining(&h), Some(3));

        // X-RateLimit-Reset as a Unix timestamp (GitHub) and as delta seconds.
        let epoch = format!("{}", NOW + 42);
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset", epoch.parse().unwrap());
        h.insert("x-ratelimit-remaining", "0".parse().unwrap());
        assert_eq!(
            RetryAfter::reset_at(&h, at(NOW)),
            Some(Duration::from_secs(42))
        );
        assert_eq!(RetryAfter::remaining(&h), Some(0));
        let h = headers(&[("x-ratelimit-reset", "9")]);
        assert_eq!(
            RetryAfter::reset_at(&h, at(NOW)),
            Some(Duration::from_secs(9))
        );
    }

    #[test]
    fn retry_after_wins_over_reset() {
        let h = headers(&[("retry-after", "2"), ("ratelimit-reset", "30")]);
        assert_eq!(
            RetryAfter::from_headers_at(&h, at(NOW), Duration::MAX),
            Some(Duration::from_secs(2))
        );
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64), now in any::<u64>()) {
            let now = UNIX_EPOCH.checked_add(Duration::from_secs(now % (1 << 40))).unwrap();
            let _ = RetryAfter::parse_value(&bytes, now);
            if let Ok(v) = http::HeaderValue::from_bytes(&bytes) {
                let mut h = HeaderMap::new();
                for name in ["retry-after", "ratelimit-reset", "ratelimit", "x-ratelimit-reset", "ratelimit-remaining"] {
                    h.insert(name, v.clone());
                }
                let cap = Duration::from_secs(60);
                if let Some(d) = RetryAfter::from_headers_at(&h, now, cap) {
                    prop_assert!(d <= cap);
                }
                let _ = RetryAfter::reset_at(&h, now);
                let _ = RetryAfter::remaining(&h);
            }
        }

        #[test]
        fn delta_seconds_round_trip(secs in 0u64..u64::MAX / 2) {
            let s = secs.to_string();
            prop_assert_eq!(RetryAfter::parse_value(s.as_bytes(), at(NOW)), Some(Duration::from_secs(secs)));
        }
    }
}
