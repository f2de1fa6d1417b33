//! Value parsers for the command line. Each returns a message clap prints
//! after naming the argument, so every usage error is one line that says
//! which argument is wrong and why.

use std::fmt;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};

/// A positive humantime duration: `500ms`, `2s`, `1m`, `1h 30m`.
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e} (expected a duration such as 500ms, 2s or 1m)"))?;
    if d.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    Ok(d)
}

/// A rate: `N/s` or `N/m`, with N at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    /// Requests per period.
    pub(crate) n: u32,
    /// Whether the period is a minute (otherwise a second).
    pub(crate) per_minute: bool,
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.n, if self.per_minute { "m" } else { "s" })
    }
}

/// Parses `N/s` or `N/m` (also `N/sec`, `N/min`).
pub(crate) fn rate(s: &str) -> Result<Rate, String> {
    let (n, period) = s
        .trim()
        .split_once('/')
        .ok_or_else(|| "expected N/s or N/m, such as 10/s or 600/m".to_owned())?;
    let per_minute = match period.trim() {
        "s" | "sec" | "second" => false,
        "m" | "min" | "minute" => true,
        other => return Err(format!("unknown period {other:?}: expected s or m")),
    };
    let n: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("{n:?} is not a whole number of requests"))?;
    if n == 0 {
        return Err("the rate must be at least 1 request per period".to_owned());
    }
    Ok(Rate { n, per_minute })
}

/// A size in bytes: `1048576`, `512KiB`, `64MiB`, `1GiB` (binary), `10kB`,
/// `5MB`, `2GB` (decimal); `none` for no limit (`u64::MAX`).
pub(crate) fn size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("none") {
        return Ok(u64::MAX);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| {
        format!("{s:?} is not a size: expected bytes such as 1048576, 64MiB or none")
    })?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown unit {other:?}: expected B, KiB, MiB, GiB, kB, MB or GB"
            ));
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{s:?} is too large; use none for no limit"))
}

/// A request header, `Name: value`.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    /// The name, validated.
    pub(crate) name: HeaderName,
    /// The value, validated.
    pub(crate) value: HeaderValue,
}

/// Parses `Name: value` (the value may be empty; surrounding blanks are
/// trimmed, as curl does).
pub(crate) fn header(s: &str) -> Result<Header, String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| "expected 'Name: value'".to_owned())?;
    let name = name.trim();
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a valid header name"))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of {name} contains characters not allowed in a header"))?;
    Ok(Header { name, value })
}

/// An HTTP method, upper-cased (`-X post` sends `POST`).
pub(crate) fn method(s: &str) -> Result<http::Method, String> {
    http::Method::from_bytes(s.trim().to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("{s:?} is not a valid HTTP method"))
}

/// Checks that `s` is an absolute http or https URL, as the client will
/// require, and returns it unchanged (rows report the URL as given).
pub(crate) fn url(s: &str) -> Result<String, String> {
    check_url(s).map(|()| s.to_owned())
}

/// Why `s` is not a URL the client can fetch, if it is not.
pub(crate) fn check_url(s: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(s).map_err(|e| format!("malformed URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!(
            "unsupported scheme {:?}: only http and https URLs can be fetched",
            u.scheme()
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".to_owned());
    }
    // The stack works on `http::Uri`; a URL it cannot hold would fail later.
    u.as_str()
        .parse::<http::Uri>()
        .map_err(|e| format!("malformed URL: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(duration("1m"), Ok(Duration::from_secs(60)));
        assert!(duration("0s").unwrap_err().contains("greater than zero"));
        assert!(duration("soon").is_err());
        assert!(duration("10").is_err(), "a unit is required");
    }

    #[test]
    fn sizes() {
        assert_eq!(size("1048576"), Ok(1 << 20));
        assert_eq!(size("64MiB"), Ok(64 << 20));
        assert_eq!(size("64M"), Ok(64 << 20));
        assert_eq!(size("10kB"), Ok(10_000));
        assert_eq!(size("0"), Ok(0));
        assert_eq!(size("none"), Ok(u64::MAX));
        assert!(size("lots").is_err());
        assert!(size("5 parsecs").unwrap_err().contains("unknown unit"));
        assert!(size("99999999999GiB").unwrap_err().contains("too large"));
        assert!(size("-1").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(
            rate("10/s"),
            Ok(Rate {
                n: 10,
                per_minute: false
            })
        );
        assert_eq!(
            rate("600/m"),
            Ok(Rate {
                n: 600,
                per_minute: true
            })
        );
        assert_eq!(rate("600/m").unwrap().to_string(), "600/m");
        assert!(rate("0/s").unwrap_err().contains("at least 1"));
        assert!(rate("10").is_err());
        assert!(rate("10/h").unwrap_err().contains("unknown period"));
        assert!(rate("-1/s").is_err());
        assert!(rate("x/s").is_err());
    }

    #[test]
    fn headers() {
        let h = header("X-Trace:  abc ").unwrap();
        assert_eq!(h.name, "x-trace");
        assert_eq!(h.value, "abc");
        let empty = header("X-Empty:").unwrap();
        assert_eq!(empty.value, "");
        assert!(header("no colon").is_err());
        assert!(header("bad name: v").unwrap_err().contains("header name"));
        assert!(header("X-Bad: a\u{7f}b").is_err());
    }

    #[test]
    fn methods_and_urls() {
        assert_eq!(method("post"), Ok(http::Method::POST));
        assert!(method("GE T").is_err());
        assert!(url("http://127.0.0.1:8080/x?y=1").is_ok());
        assert!(url("https://example.com").is_ok());
        assert!(url("example.com/x").is_err());
        assert!(url("ftp://example.com/x").unwrap_err().contains("scheme"));
        assert!(url("http://").is_err());
    }
}
