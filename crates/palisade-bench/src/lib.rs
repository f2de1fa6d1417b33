//! Benchmarks for palisade (not published): every figure on
//! `docs/benchmarks.md`, measured side by side with the peers in one run and
//! rendered into that page by the `report` binary. `just bench`
//! (`scripts/bench.sh`) runs them all; each target below writes one results
//! file (see [`results`]) and prints the command that reproduces it.
//!
//! | target | measures | results |
//! |---|---|---|
//! | `benches/stack.rs` (criterion) | ns and heap allocations per call over an in-memory service: `palisade::Client`, the standard stack in `ServiceBuilder`, each layer alone, tower's `ConcurrencyLimit`/`Timeout`/`Retry`, tower-resilience's stack and layers | `micro` |
//! | `benches/layers.rs` | each layer's cost over a bare call in the same rounds, against the aim its issue set | `layers` |
//! | `bin/loopback` | requests per second over loopback HTTP, 64 in flight: bare reqwest, `palisade::Client`, reqwest-middleware + reqwest-retry, tower-resilience over reqwest; ratios to bare reqwest | `loopback` |
//! | `bin/pycompare` | aiohttp and httpx (plain and with stamina/aiobreaker/aiolimiter) on the same workload and server, steady and 1 000 at once | `python` |
//! | `bin/memory` | peak RSS streaming 1 GiB against bare reqwest; RSS across 1 000 000 requests | `memory` |
//! | `bin/behaviour` | outage amplification, adaptive against fixed concurrency under overload, hedging, rate-limit accuracy | `behaviour` |
//! | `bin/redis_decisions` | palisade-redis decisions per second over loopback (needs `redis-server`) | `redis` |
//! | `bin/report` | renders `report/benchmarks.md.in` into `docs/benchmarks.md` and `docs/benchmarks/*.svg` | — |
//!
//! The targets share [`upstream`] (the in-memory upstreams the per-call
//! figures are measured over), [`peers`] (tower-resilience set up as close
//! to palisade's defaults as it reaches) and [`results`].
//!
//! `docs/benchmarks/palisade-stack.md` and its siblings keep the method
//! notes and investigations behind the figures; the figures themselves live
//! only on the generated page.
//!
//! # Example
//!
//! The in-memory upstream the micro benchmarks measure against: the
//! standard stack's cost is what a `palisade::Client` adds on top of it.
//!
//! ```
//! use std::convert::Infallible;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), palisade::Error> {
//! let client = palisade::Client::builder()
//!     .base_url("http://bench.test/")
//!     .transport(tower::service_fn(|_req: http::Request<palisade::Body>| async {
//!         Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(
//!             bytes::Bytes::from_static(b"ok"),
//!         )))
//!     }))
//!     .build()?;
//! let res = client.get("items").send().await?;
//! assert_eq!(res.status(), 200);
//! # Ok(()) }
//! ```

pub mod peers;
pub mod upstream;

pub mod results {
    //! Machine-readable results: every benchmark binary and bench target
    //! writes one JSON file, `<results dir>/<name>.json`, and the `report`
    //! binary renders `docs/benchmarks.md` and its plots from them, so the
    //! published figures are always the last run's, never copied by hand.
    //!
    //! The results directory is `$PALISADE_BENCH_RESULTS` when set, else
    //! `target/palisade-bench/results` under the workspace root.
    //!
    //! A file holds named values (a number with its unit, or a text such as
    //! the command that produced it) and named series of `(x, y)` points for
    //! plots. In the report template, `{{name.key}}` is replaced by the value
    //! `key` of file `name`.

    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use serde::{Deserialize, Serialize};

    /// One value: a number, or a text.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(untagged)]
    pub enum Value {
        /// A measured number.
        Number(f64),
        /// A text: a command, a machine description, a verdict.
        Text(String),
    }

    /// A series of points, for a plot.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct Series {
        /// What x measures, with its unit.
        pub x_label: String,
        /// What y measures, with its unit.
        pub y_label: String,
        /// The points, in order.
        pub points: Vec<(f64, f64)>,
    }

    /// The results of one benchmark run, written as one JSON file.
    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct Results {
        /// The file's name without `.json`: the prefix of its template keys.
        pub name: String,
        /// Named values, in key order.
        pub values: BTreeMap<String, Value>,
        /// Named series, in key order.
        pub series: BTreeMap<String, Series>,
    }

    impl Results {
        /// Empty results named `name`; the run's time and machine are
        /// recorded as `measured_at`, `cpus` and `load_before`.
        pub fn new(name: &str) -> Self {
            let mut r = Self {
                name: name.to_owned(),
                ..Self::default()
            };
            r.text(
                "cpus",
                std::thread::available_parallelism()
                    .map_or(0, |n| n.get())
                    .to_string(),
            );
            r.text("load_before", load_average());
            r
        }

        /// Records a number.
        pub fn number(&mut self, key: &str, value: f64) -> &mut Self {
            self.values.insert(key.to_owned(), Value::Number(value));
            self
        }

        /// Records a text.
        pub fn text(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
            self.values
                .insert(key.to_owned(), Value::Text(value.into()));
            self
        }

        /// Records a series of points.
        pub fn series(
            &mut self,
            key: &str,
            x_label: &str,
            y_label: &str,
            points: Vec<(f64, f64)>,
        ) -> &mut Self {
            self.series.insert(
                key.to_owned(),
                Series {
                    x_label: x_label.to_owned(),
                    y_label: y_label.to_owned(),
                    points,
                },
            );
            self
        }

        /// Writes `<dir>/<name>.json`, recording the load average after the
        /// run as `load_after`, and returns the path.
        pub fn write(&mut self) -> std::io::Result<PathBuf> {
            self.text("load_after", load_average());
            let dir = dir();
            std::fs::create_dir_all(&dir)?;
            let path = dir.join(format!("{}.json", self.name));
            let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
            std::fs::write(&path, json)?;
            Ok(path)
        }

        /// Reads every results file in the results directory.
        pub fn read_all() -> std::io::Result<Vec<Self>> {
            let mut all = Vec::new();
            let dir = dir();
            let Ok(entries) = std::fs::read_dir(&dir) else {
                return Ok(all);
            };
            for entry in entries {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "json") {
                    let text = std::fs::read_to_string(&path)?;
                    let r: Self = serde_json::from_str(&text)
                        .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
                    all.push(r);
                }
            }
            all.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(all)
        }
    }

    /// The results directory: `$PALISADE_BENCH_RESULTS`, else
    /// `target/palisade-bench/results` under the workspace root.
    pub fn dir() -> PathBuf {
        if let Some(d) = std::env::var_os("PALISADE_BENCH_RESULTS") {
            return PathBuf::from(d);
        }
        workspace_root().join("target/palisade-bench/results")
    }

    /// The workspace root: two levels above this crate's manifest.
    pub fn workspace_root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// The 1-minute load average, or `?` where `/proc/loadavg` is missing.
    pub fn load_average() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_owned))
            .unwrap_or_else(|| "?".to_owned())
    }

    /// The median of `v` (the mean of the middle two for an even count);
    /// NaN for an empty slice.
    pub fn median(v: &[f64]) -> f64 {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => v[n / 2],
            _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// The `q`-quantile (0.0..=1.0) of `v` by nearest rank; NaN when empty.
    pub fn quantile(v: &[f64], q: f64) -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = (q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize;
        v[rank.saturating_sub(1).min(v.len() - 1)]
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn median_of_odd_and_even_counts() {
            assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
            assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
            assert!(median(&[]).is_nan());
        }

        #[test]
        fn quantile_is_nearest_rank() {
            let v: Vec<f64> = (1..=100).map(f64::from).collect();
            assert_eq!(quantile(&v, 0.99), 99.0);
            assert_eq!(quantile(&v, 0.5), 50.0);
            assert_eq!(quantile(&v, 1.0), 100.0);
            assert_eq!(quantile(&v, 0.0), 1.0);
            assert!(quantile(&[], 0.5).is_nan());
        }

        #[test]
        fn results_round_trip_through_json() {
            let mut r = Results::new("unit");
            r.number("a_ns", 12.5).text("cmd", "cargo bench");
            let json = serde_json::to_string(&r).expect("serialises");
            let back: Results = serde_json::from_str(&json).expect("parses");
            assert_eq!(back.name, "unit");
            assert_eq!(back.values.get("a_ns"), Some(&Value::Number(12.5)));
            assert_eq!(
                back.values.get("cmd"),
                Some(&Value::Text("cargo bench".to_owned()))
            );
        }
    }
}
