//! The header that carries a deadline between services: its name and the
//! format of its value.
//!
//! The header holds the *remaining budget*, relative to the moment it is
//! sent, never an absolute time: two hosts' clocks do not agree, while a
//! duration needs only each host's own monotonic clock. gRPC's
//! `grpc-timeout` and Envoy's `x-envoy-upstream-rq-timeout-ms` make the same
//! choice.
//!
//! ```
//! use std::time::Duration;
//! use palisade_timeout::{DeadlineHeader, HeaderFormat};
//!
//! let header = DeadlineHeader::default();
//! assert_eq!(header.name(), "x-request-timeout-ms");
//!
//! let mut headers = http::HeaderMap::new();
//! header.write(&mut headers, Duration::from_millis(1500));
//! assert_eq!(headers["x-request-timeout-ms"], "1500");
//! assert_eq!(header.read(&headers), Some(Duration::from_millis(1500)));
//!
//! assert_eq!(HeaderFormat::Grpc.format(Duration::from_secs(2)), "2000000u");
//! assert_eq!(HeaderFormat::Seconds.parse(&"2.5".parse().unwrap()), Some(Duration::from_millis(2500)));
//! ```

use std::io::Write as _;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

/// The default header name, `x-request-timeout-ms`: whole milliseconds left.
pub const DEFAULT_HEADER_NAME: HeaderName = HeaderName::from_static("x-request-timeout-ms");

/// gRPC's timeout header, `grpc-timeout`.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// How a remaining budget is written in a header value.
///
/// Formatting rounds down, so a downstream service never believes it has
/// more time than the caller will wait. Parsing is strict and total: an empty,
/// signed, fractional-where-not-allowed, overlong or overflowing value gives
/// `None`, never a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum HeaderFormat {
    /// Whole milliseconds, for example `1500`. As Envoy's
    /// `x-envoy-upstream-rq-timeout-ms`. The default.
    #[default]
    Millis,
    /// Seconds with up to nine decimals, for example `1.5`. Written with
    /// millisecond precision.
    Seconds,
    /// gRPC's `grpc-timeout` format: at most eight digits and a unit, one of
    /// `H`, `M`, `S`, `m`, `u`, `n`, for example `1500m`. Written in the
    /// finest unit that fits in eight digits.
    Grpc,
}

impl HeaderFormat {
    /// Formats `budget` as a header value.
    pub fn format(self, budget: Duration) -> HeaderValue {
        match self {
            Self::Millis => {
                HeaderValue::from(u64::try_from(budget.as_millis()).unwrap_or(u64::MAX))
            }
            Self::Seconds => {
                let mut buf = [0u8; 32];
                let len = {
                    let mut w = &mut buf[..];
                    // 20 digits, a dot and 3 digits always fit in 32 bytes.
                    let _ = write!(w, "{}.{:03}", budget.as_secs(), budget.subsec_millis());
                    32 - w.len()
                };
                value_from_ascii(&buf[..len])
            }
            Self::Grpc => {
                const MAX: u128 = 99_999_999;
                let nanos = budget.as_nanos();
                let (value, unit) = [
                    (1u128, 'n'),
                    (1_000, 'u'),
                    (1_000_000, 'm'),
                    (1_000_000_000, 'S'),
                    (60_000_000_000, 'M'),
                    (3_600_000_000_000, 'H'),
                ]
                .into_iter()
                .map(|(per, unit)| (nanos / per, unit))
                .find(|(v, _)| *v <= MAX)
                .unwrap_or((MAX, 'H'));
                let mut buf = [0u8; 16];
                let len = {
                    let mut w = &mut buf[..];
                    let _ = write!(w, "{value}{unit}");
                    16 - w.len()
                };
                value_from_ascii(&buf[..len])
            }
        }
    }

    /// Parses a header value written in this format.
    pub fn parse(self, value: &HeaderValue) -> Option<Duration> {
        let s = value.to_str().ok()?.trim();
        match self {
            Self::Millis => parse_digits(s, 20).map(Duration::from_millis),
            Self::Seconds => {
                let (int, frac) = match s.split_once('.') {
                    Some((int, frac)) => (int, Some(frac)),
                    None => (s, None),
                };
                let secs = parse_digits(int, 20)?;
                let nanos = match frac {
                    None => 0,
                    Some(frac) => {
                        if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
                            return None;
                        }
                        // Digits past nanoseconds are dropped: rounding down.
                        let digits = &frac[..frac.len().min(9)];
                        let n = parse_digits(digits, 9)?;
                        u32::try_from(n * 10u64.pow(9 - digits.len() as u32)).ok()?
                    }
                };
                Some(Duration::new(secs, nanos))
            }
            Self::Grpc => {
                let unit = s.chars().last()?;
                let digits = &s[..s.len() - unit.len_utf8()];
                let v = parse_digits(digits, 8)?;
                Some(match unit {
                    'H' => Duration::from_secs(v * 3600),
                    'M' => Duration::from_secs(v * 60),
                    'S' => Duration::from_secs(v),
                    'm' => Duration::from_millis(v),
                    'u' => Duration::from_micros(v),
                    'n' => Duration::from_nanos(v),
                    _ => return None,
                })
            }
        }
    }
}

/// Parses 1 to `max_len` ASCII digits, with no sign and no overflow.
fn parse_digits(s: &str, max_len: usize) -> Option<u64> {
    if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn value_from_ascii(bytes: &[u8]) -> HeaderValue {
    // Only digits, a dot and unit letters reach here, all valid in a header.
    HeaderValue::from_bytes(bytes).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// A header carrying the remaining budget: its name and [`HeaderFormat`].
///
/// The default is `x-request-timeout-ms` in whole milliseconds. Use
/// [`DeadlineHeader::grpc`] to talk to gRPC services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlineHeader {
    name: HeaderName,
    format: HeaderFormat,
}

impl Default for DeadlineHeader {
    fn default() -> Self {
        Self::new(DEFAULT_HEADER_NAME, HeaderFormat::Millis)
    }
}

impl DeadlineHeader {
    /// A header `name` whose value is written in `format`.
    pub const fn new(name: HeaderName, format: HeaderFormat) -> Self {
        Self { name, format }
    }

    /// A header `name` holding whole milliseconds.
    pub const fn millis(name: HeaderName) -> Self {
        Self::new(name, HeaderFormat::Millis)
    }

    /// gRPC's `grpc-timeout` header in gRPC's format.
    pub const fn grpc() -> Self {
        Self::new(GRPC_TIMEOUT, HeaderFormat::Grpc)
    }

    /// The header name.
    pub const fn name(&self) -> &HeaderName {
        &self.name
    }

    /// The value format.
    pub const fn format(&self) -> HeaderFormat {
        self.format
    }

    /// Writes `remaining` into `headers`, replacing any value already there.
    pub fn write(&self, headers: &mut HeaderMap, remaining: Duration) {
        headers.insert(self.name.clone(), self.format.format(remaining));
    }

    /// Reads the budget from `headers`. When the header appears more than
    /// once, the smallest valid value wins, since a deadline only tightens.
    /// Values that do not parse are ignored.
    pub fn read(&self, headers: &HeaderMap) -> Option<Duration> {
        headers
            .get_all(&self.name)
            .iter()
            .filter_map(|v| self.format.parse(v))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn formats_known_values() {
        let d = Duration::from_millis(1500);
        assert_eq!(HeaderFormat::Millis.format(d), "1500");
        assert_eq!(HeaderFormat::Seconds.format(d), "1.500");
        assert_eq!(HeaderFormat::Grpc.format(d), "1500000u");
        assert_eq!(
            HeaderFormat::Grpc.format(Duration::from_millis(50)),
            "50000000n"
        );
        assert_eq!(
            HeaderFormat::Grpc.format(Duration::from_secs(1000)),
            "1000000m"
        );
        assert_eq!(
            HeaderFormat::Grpc.format(Duration::from_secs(200_000)),
            "200000S"
        );
        assert_eq!(HeaderFormat::Grpc.format(Duration::MAX), "99999999H");
        assert_eq!(
            HeaderFormat::Millis.format(Duration::MAX),
            u64::MAX.to_string().as_str()
        );
        // Sub-millisecond remainders round down: never promise more than is left.
        assert_eq!(HeaderFormat::Millis.format(Duration::from_micros(999)), "0");
    }

    #[test]
    fn parses_known_values_and_rejects_malformed_ones() {
        use HeaderFormat::*;
        assert_eq!(Millis.parse(&hv("250")), Some(Duration::from_millis(250)));
        assert_eq!(Millis.parse(&hv(" 250 ")), Some(Duration::from_millis(250)));
        assert_eq!(Seconds.parse(&hv("3")), Some(Duration::from_secs(3)));
        assert_eq!(Seconds.parse(&hv("0.25")), Some(Duration::from_millis(250)));
        assert_eq!(
            Seconds.parse(&hv("1.0000000019")),
            Some(Duration::new(1, 1))
        );
        assert_eq!(Grpc.parse(&hv("2H")), Some(Duration::from_secs(7200)));
        assert_eq!(Grpc.parse(&hv("3M")), Some(Duration::from_secs(180)));
        assert_eq!(Grpc.parse(&hv("7n")), Some(Duration::from_nanos(7)));
        for bad in [
            "",
            "-1",
            "+1",
            "1.5",
            "abc",
            "1e3",
            "99999999999999999999999",
        ] {
            assert_eq!(Millis.parse(&hv(bad)), None, "millis {bad:?}");
        }
        for bad in ["", ".5", "1.", "-1", "1.-5", "NaN", "inf", "1,5"] {
            assert_eq!(Seconds.parse(&hv(bad)), None, "seconds {bad:?}");
        }
        for bad in ["", "m", "100", "123456789m", "10x", "-5S", "1.5S", "5é"] {
            assert_eq!(
                Grpc.parse(&HeaderValue::from_bytes(bad.as_bytes()).unwrap()),
                None,
                "grpc {bad:?}"
            );
        }
    }

    #[test]
    fn read_takes_the_tightest_valid_value() {
        let h = DeadlineHeader::default();
        let mut headers = HeaderMap::new();
        headers.append(h.name().clone(), hv("900"));
        headers.append(h.name().clone(), hv("garbage"));
        headers.append(h.name().clone(), hv("300"));
        assert_eq!(h.read(&headers), Some(Duration::from_millis(300)));
        assert_eq!(h.read(&HeaderMap::new()), None);
        h.write(&mut headers, Duration::from_secs(2));
        assert_eq!(headers.get_all(h.name()).iter().count(), 1);
        assert_eq!(h.read(&headers), Some(Duration::from_secs(2)));
    }

    proptest! {
        #[test]
        fn round_trip_never_grows_the_budget(nanos in any::<u64>(), secs in 0u64..400_000_000) {
            let d = Duration::new(secs, (nanos % 1_000_000_000) as u32);
            for f in [HeaderFormat::Millis, HeaderFormat::Seconds, HeaderFormat::Grpc] {
                let back = f.parse(&f.format(d)).expect("own output parses");
                prop_assert!(back <= d, "{f:?}: {back:?} > {d:?}");
            }
            // Millisecond formats lose less than a millisecond.
            let ms = HeaderFormat::Millis.parse(&HeaderFormat::Millis.format(d)).unwrap();
            prop_assert!(d - ms < Duration::from_millis(1));
        }

        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(32u8..127, 0..40)) {
            if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                for f in [HeaderFormat::Millis, HeaderFormat::Seconds, HeaderFormat::Grpc] {
                    let _ = f.parse(&v);
                }
            }
        }
    }
}
