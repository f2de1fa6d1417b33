//! What a route does: a [`Script`] of [`Behavior`]s.

use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

/// A sequence of behaviours for one route.
///
/// The n-th request to the route gets the n-th behaviour. Once the script
/// runs out, its last behaviour repeats, or, after [`Script::cycle`], the
/// script starts over. An empty script, like a route that was never scripted,
/// answers `200 ok`.
///
/// ```
/// use palisade_chaos::{Behavior, Script};
///
/// // Two 503s, then success for every later request.
/// let script = Script::new()
///     .then(Behavior::status(503))
///     .then(Behavior::status(503))
///     .then(Behavior::ok("done"));
/// assert_eq!(script.len(), 3);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Script {
    steps: Vec<Behavior>,
    cycle: bool,
}

impl Script {
    /// An empty script: every request is answered `200 ok`.
    pub const fn new() -> Self {
        Self {
            steps: Vec::new(),
            cycle: false,
        }
    }

    /// A script that answers every request with `behavior`.
    pub fn always(behavior: Behavior) -> Self {
        Self::new().then(behavior)
    }

    /// Appends a behaviour.
    #[must_use]
    pub fn then(mut self, behavior: Behavior) -> Self {
        self.steps.push(behavior);
        self
    }

    /// Appends `behavior` `times` times.
    #[must_use]
    pub fn times(mut self, times: usize, behavior: Behavior) -> Self {
        self.steps.extend(std::iter::repeat_n(behavior, times));
        self
    }

    /// Starts the script over once it runs out, instead of repeating its last
    /// behaviour.
    #[must_use]
    pub const fn cycle(mut self) -> Self {
        self.cycle = true;
        self
    }

    /// The number of behaviours in the script.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether the script has no behaviour (and so answers `200 ok`).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The behaviour for the `n`-th request (0-based).
    pub(crate) fn step(&self, n: u64) -> Option<&Behavior> {
        let len = self.steps.len();
        if len == 0 {
            return None;
        }
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let i = if self.cycle { n % len } else { n.min(len - 1) };
        self.steps.get(i)
    }
}

impl FromIterator<Behavior> for Script {
    fn from_iter<I: IntoIterator<Item = Behavior>>(iter: I) -> Self {
        Self {
            steps: iter.into_iter().collect(),
            cycle: false,
        }
    }
}

/// One response the server gives (or fails to give).
///
/// Constructors pick the fault; the `with_*` methods add latency before the
/// response head and extra headers.
///
/// # Panics
///
/// Constructors panic on arguments that describe no valid response (a status
/// outside `100..=999`, a zero trickle chunk, a "truncated" body that is not
/// shorter than it declares): this is a test fixture, and a script with a
/// mistake in it should fail loudly where it is written.
#[derive(Clone)]
pub struct Behavior {
    pub(crate) kind: Kind,
    pub(crate) latency: Latency,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// A full response.
    Full { status: StatusCode, body: Bytes },
    /// The connection is reset (TCP RST) before any response byte.
    Reset,
    /// A generated streaming body.
    Stream {
        /// The Content-Length sent, if any.
        declared: Option<u64>,
        /// Bytes actually sent.
        sent: u64,
        chunk: usize,
        interval: Option<Duration>,
        end: End,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The body ends normally.
    Finish,
    /// The body never ends and never sends another byte.
    Stall,
    /// The connection is closed mid-body.
    Abort,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Latency {
    None,
    Fixed(Duration),
    Random { min: Duration, max: Duration },
}

/// The chunk size of generated bodies.
pub(crate) const CHUNK: usize = 64 * 1024;

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status)
        .unwrap_or_else(|_| panic!("palisade-chaos: {status} is not a valid HTTP status"))
}

impl Behavior {
    const fn new(kind: Kind) -> Self {
        Self {
            kind,
            latency: Latency::None,
            headers: Vec::new(),
        }
    }

    /// Answers `status` with an empty body.
    pub fn status(status: u16) -> Self {
        Self::new(Kind::Full {
            status: status_code(status),
            body: Bytes::new(),
        })
    }

    /// Answers `200` with `body`.
    pub fn ok(body: impl Into<Bytes>) -> Self {
        Self::new(Kind::Full {
            status: StatusCode::OK,
            body: body.into(),
        })
    }

    /// Answers `status` (typically 429 or 503) with `Retry-After: secs`.
    pub fn retry_after_secs(status: u16, secs: u64) -> Self {
        Self::status(status).with_header("retry-after", secs.to_string())
    }

    /// Answers `status` with `Retry-After` as an HTTP-date.
    pub fn retry_after_date(status: u16, at: SystemTime) -> Self {
        Self::status(status).with_header("retry-after", httpdate::fmt_http_date(at))
    }

    /// Resets the connection (TCP RST) without sending any response byte.
    ///
    /// Over HTTP/2 this resets the whole connection, and with it every other
    /// request in flight on it.
    pub const fn reset() -> Self {
        Self::new(Kind::Reset)
    }

    /// Answers `200` with a chunked body, sends `sent_bytes` of it and then
    /// stalls: no more bytes, no end, until the client gives up.
    pub const fn stall_mid_body(sent_bytes: u64) -> Self {
        Self::new(Kind::Stream {
            declared: None,
            sent: sent_bytes,
            chunk: CHUNK,
            interval: None,
            end: End::Stall,
        })
    }

    /// Answers `200` with `Content-Length: declared_len`, sends only
    /// `sent_len` bytes and closes the connection.
    ///
    /// # Panics
    ///
    /// If `sent_len >= declared_len`.
    pub fn truncated(declared_len: u64, sent_len: u64) -> Self {
        assert!(
            sent_len < declared_len,
            "palisade-chaos: a truncated body sends fewer bytes ({sent_len}) than it declares ({declared_len})"
        );
        Self::new(Kind::Stream {
            declared: Some(declared_len),
            sent: sent_len,
            chunk: CHUNK,
            interval: None,
            end: End::Abort,
        })
    }

    /// Answers `200` with a `total`-byte body sent `chunk` bytes at a time,
    /// `interval` apart (the first chunk at once).
    ///
    /// # Panics
    ///
    /// If `chunk` is zero. Chunks above 64 KiB are sent as 64 KiB pieces.
    pub fn trickle(total: u64, chunk: usize, interval: Duration) -> Self {
        assert!(
            chunk > 0,
            "palisade-chaos: a trickle chunk must not be empty"
        );
        Self::new(Kind::Stream {
            declared: Some(total),
            sent: total,
            chunk: chunk.min(CHUNK),
            interval: Some(interval),
            end: End::Finish,
        })
    }

    /// Answers `200` with a `total_bytes` body generated 64 KiB at a time and
    /// never held in memory: gibibytes are fine.
    pub const fn large(total_bytes: u64) -> Self {
        Self::new(Kind::Stream {
            declared: Some(total_bytes),
            sent: total_bytes,
            chunk: CHUNK,
            interval: None,
            end: End::Finish,
        })
    }

    /// Answers `200` with a chunked body that never ends: no
    /// `Content-Length`, 64 KiB chunks sent as fast as the client reads
    /// them, generated without buffering, until the client stops reading.
    pub const fn endless() -> Self {
        Self::new(Kind::Stream {
            declared: None,
            sent: u64::MAX,
            chunk: CHUNK,
            interval: None,
            end: End::Finish,
        })
    }

    /// Answers `200` with `body` as given, labelled `Content-Encoding:
    /// coding` (`gzip`, `br`, `zstd`, `deflate`): pre-compressed bytes, a
    /// decompression bomb among them, served as they are.
    pub fn encoded(coding: &'static str, body: impl Into<Bytes>) -> Self {
        Self::ok(body).with_header(http::header::CONTENT_ENCODING, coding)
    }

    /// Waits `latency` before the response head (or the reset).
    #[must_use]
    pub const fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = Latency::Fixed(latency);
        self
    }

    /// Waits a uniformly random time in `min..=max` before the response head.
    /// The draw comes from the server's seeded generator (see
    /// [`FlakyServerBuilder::seed`](crate::FlakyServerBuilder::seed)).
    ///
    /// # Panics
    ///
    /// If `min > max`.
    #[must_use]
    pub fn with_random_latency(mut self, min: Duration, max: Duration) -> Self {
        assert!(
            min <= max,
            "palisade-chaos: random latency min {min:?} is above max {max:?}"
        );
        self.latency = Latency::Random { min, max };
        self
    }

    /// Adds a response header.
    ///
    /// # Panics
    ///
    /// If `name` or `value` is not a valid header name or value.
    #[must_use]
    pub fn with_header<K, V>(mut self, name: K, value: V) -> Self
    where
        K: TryInto<HeaderName>,
        K::Error: fmt::Debug,
        V: TryInto<HeaderValue>,
        V::Error: fmt::Debug,
    {
        let name = name
            .try_into()
            .expect("palisade-chaos: invalid header name");
        let value = value
            .try_into()
            .expect("palisade-chaos: invalid header value");
        self.headers.push((name, value));
        self
    }

    /// Replaces the body of a [`status`](Self::status) or [`ok`](Self::ok)
    /// response; other behaviours are left as they are.
    #[must_use]
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        if let Kind::Full { body: b, .. } = &mut self.kind {
            *b = body.into();
        }
        self
    }
}

impl fmt::Debug for Behavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Behavior");
        match &self.kind {
            Kind::Full { status, body } => d.field("status", status).field("body_len", &body.len()),
            Kind::Reset => d.field("reset", &true),
            Kind::Stream {
                declared,
                sent,
                interval,
                end,
                ..
            } => d
                .field("declared_len", declared)
                .field("sent_len", sent)
                .field("interval", interval)
                .field("end", end),
        };
        d.field("latency", &self.latency)
            .field("headers", &self.headers)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_behaviour_repeats() {
        let s = Script::new()
            .then(Behavior::status(503))
            .then(Behavior::status(200));
        let st = |n| match &s.step(n).unwrap().kind {
            Kind::Full { status, .. } => status.as_u16(),
            _ => 0,
        };
        assert_eq!([st(0), st(1), st(2), st(100)], [503, 200, 200, 200]);
    }

    #[test]
    fn cycle_starts_over() {
        let s = Script::new()
            .then(Behavior::status(503))
            .then(Behavior::status(200))
            .cycle();
        let st = |n| match &s.step(n).unwrap().kind {
            Kind::Full { status, .. } => status.as_u16(),
            _ => 0,
        };
        assert_eq!([st(0), st(1), st(2), st(3)], [503, 200, 503, 200]);
    }

    #[test]
    fn empty_script_has_no_step() {
        assert!(Script::new().step(0).is_none());
        assert_eq!(Script::new().times(3, Behavior::reset()).len(), 3);
    }

    #[test]
    #[should_panic(expected = "fewer bytes")]
    fn truncated_must_be_shorter_than_declared() {
        let _ = Behavior::truncated(10, 10);
    }

    #[test]
    #[should_panic(expected = "not a valid HTTP status")]
    fn invalid_status_panics() {
        let _ = Behavior::status(42);
    }
}
