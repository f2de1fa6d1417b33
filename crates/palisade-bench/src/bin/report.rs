//! Renders `docs/benchmarks.md` and its SVG plots from the results files
//! that the benchmark programs wrote (`palisade_bench::results`), so that
//! every published figure is the last run's and none is copied by hand.
//!
//! Run: `cargo run --release -p palisade-bench --bin report` (after the
//! benchmarks; `just bench` runs them all, then this).
//!
//! Options:
//! - `--template PATH`: the template (default
//!   `crates/palisade-bench/report/benchmarks.md.in` under the workspace root);
//! - `--out PATH`: the markdown written (default `docs/benchmarks.md`);
//! - `--plots-dir DIR`: where the SVG files go, each under the file name of
//!   its `out` (default: each plot's `out` path, relative to the directory of
//!   `--out`, so `docs/benchmarks/`);
//! - `--allow-missing`: write `n/a` for a reference whose results file or
//!   key is missing, and draw plots from the data that is there, with a
//!   warning for each (for trying a template; never for the published page);
//! - `--list`: print every value and series of every results file, and exit.
//!
//! The results directory is `$PALISADE_BENCH_RESULTS`, else
//! `target/palisade-bench/results` under the workspace root.
//!
//! A missing results file or key is an error: the report lists every one and
//! exits with status 1 without writing anything, so no stale figure
//! survives. A mistake in the template (an unknown directive or option, a
//! format on a text, two plots with one `out`, a log axis over values ≤ 0)
//! is an error even with `--allow-missing`. Otherwise it writes the plots, removes the SVG files that an
//! earlier run generated in the same directories and this run did not (they
//! carry a marker comment; other files are never touched), then writes the
//! markdown.
//!
//! # Template language
//!
//! The template is markdown. A leading HTML comment (`<!-- ... -->` at the
//! very start) documents the template and is dropped from the output. Every
//! `{{ ... }}` is a directive, replaced as follows (`name` is a results file,
//! `<name>.json`, and `key` one of its values or series):
//!
//! - `{{name.key}}`: the value. A text is inserted as it is. A number is
//!   formatted: from 100 up, rounded to an integer, with digits grouped by
//!   a narrow no-break space from 10 000 up (`50 000`); below 100, three
//!   significant digits without trailing zeros (`4.14`, `0.593`, `12`).
//! - `{{name.key:.2}}`: a number with that many decimals (grouped likewise).
//! - `{{name.key:pct}}`: a fraction as a percentage, three significant
//!   digits (`0.0512` → `5.12 %`); `{{name.key:pct.1}}` with one decimal.
//! - `{{ratio name.a name.b}}`: `a / b` with two decimals; a format may
//!   follow the second operand (`{{ratio name.a name.b:pct}}`).
//! - `{{aim name.key <= 1.2}}`: `met` when the number compares so with the
//!   bound (`<`, `<=`, `>`, `>=`), else `**missed** by <|value − bound|>`:
//!   verdicts that follow the figures instead of going stale.
//! - `{{meta name}}`: `measured 2026-11-23 14:05 UTC on 2 CPUs, load
//!   3.10→4.20`, from the file's modification time and its `cpus`,
//!   `load_before` and `load_after` texts.
//! - `{{plot-bars out="benchmarks/x.svg" title="..." y="..." name.key="label" ...}}`:
//!   a bar chart of the numbers `name.key`, in the order given, each labelled
//!   by its `"label"` (the key when no label is given), with its value at the
//!   bar's end. `y` names the value axis. Bars are horizontal unless
//!   `horizontal=false`.
//! - `{{plot-lines out="benchmarks/x.svg" title="..." name.series="label" ...}}`:
//!   a line chart of the series, with a legend of their labels. `x` and `y`
//!   name the axes (default: the first series' own labels); `logx=true` and
//!   `logy=true` use log scales; `legend=` places the legend
//!   (`upper-left`, `upper-right` (default), `lower-left`, `lower-right`).
//!   A series of more than 1 000 points is thinned to the lowest and highest
//!   point of each of 500 buckets, so peaks survive.
//!
//! Both plots also take `ref=0.95 ref_label="aim"`: a dashed red reference
//! line at that value, named in the legend. A plot is written to its `out`
//! path (relative to the markdown's directory; it must end in `.svg`) and the
//! directive is replaced by `![title](out)` (by `*(plot “title”: n/a)*` when
//! `--allow-missing` left it no data at all). Option values are quoted with
//! `"` when they hold spaces; a quoted value cannot hold a `"`. Plots are
//! 800 pixels wide (bars 38 pixels a row, lines 420 high), with plotters'
//! SVG backend: text is SVG `<text>` in `sans-serif`, no font is embedded.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use palisade_bench::results::{self, Results, Series, Value};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, SegmentValue, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const DEFAULT_TEMPLATE: &str = "crates/palisade-bench/report/benchmarks.md.in";
const DEFAULT_OUT: &str = "docs/benchmarks.md";
/// The first line of every SVG file this program writes: what lets a later
/// run tell its own stale plots from anything else in the directory.
const SVG_MARKER: &str =
    "<!-- Generated by palisade-bench's report (`just bench`); do not edit. -->";
/// Groups the digits of large numbers: U+202F NARROW NO-BREAK SPACE.
const GROUP_SEP: char = '\u{202f}';
/// A series longer than this is thinned before it is drawn.
const MAX_POINTS: usize = 1000;
const FONT: &str = "sans-serif";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("report: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug)]
struct Args {
    template: PathBuf,
    out: PathBuf,
    plots_dir: Option<PathBuf>,
    allow_missing: bool,
    list: bool,
}

const USAGE: &str =
    "usage: report [--template PATH] [--out PATH] [--plots-dir DIR] [--allow-missing] [--list]";

fn parse_args() -> Result<Args, String> {
    let root = results::workspace_root();
    let mut args = Args {
        template: root.join(DEFAULT_TEMPLATE),
        out: root.join(DEFAULT_OUT),
        plots_dir: None,
        allow_missing: false,
        list: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut path = |name: &str| {
            it.next()
                .map(PathBuf::from)
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--template" => args.template = path("--template")?,
            "--out" => args.out = path("--out")?,
            "--plots-dir" => args.plots_dir = Some(path("--plots-dir")?),
            "--allow-missing" => args.allow_missing = true,
            "--list" => args.list = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(args)
}

fn run() -> Result<ExitCode, String> {
    let args = parse_args()?;
    let data = Data::load()?;
    if args.list {
        print!("{}", data.listing());
        return Ok(ExitCode::SUCCESS);
    }
    let template = std::fs::read_to_string(&args.template)
        .map_err(|e| format!("{}: {e}", args.template.display()))?;
    let out = render(&template, &data);
    for e in &out.errors {
        eprintln!("report: error: {e}");
    }
    if !out.errors.is_empty() {
        eprintln!(
            "report: {} error(s) in the template; nothing written",
            out.errors.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    if !out.missing.is_empty() {
        let level = if args.allow_missing {
            "warning"
        } else {
            "error"
        };
        for m in &out.missing {
            eprintln!("report: {level}: {m}");
        }
        if !args.allow_missing {
            eprintln!(
                "report: {} missing reference(s) (results dir {}); nothing written. \
                 Run the benchmarks that produce them, or pass --allow-missing to write n/a.",
                out.missing.len(),
                results_dir().display()
            );
            return Ok(ExitCode::FAILURE);
        }
    }
    write_output(&args, &template_label(&args.template), &out)?;
    Ok(ExitCode::SUCCESS)
}

/// The template's path as shown in the generated file's header: relative to
/// the workspace root when it is under it.
fn template_label(template: &Path) -> String {
    let root = results::workspace_root();
    let (Ok(t), Ok(r)) = (template.canonicalize(), root.canonicalize()) else {
        return template.display().to_string();
    };
    t.strip_prefix(&r)
        .map_or_else(|_| t.display().to_string(), |p| p.display().to_string())
}

fn write_output(args: &Args, template: &str, out: &Rendered) -> Result<(), String> {
    let md_dir = args.out.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut written = BTreeSet::new();
    let mut dirs = BTreeSet::new();
    if let Some(d) = &args.plots_dir {
        dirs.insert(d.clone());
    }
    for plot in &out.plots {
        let path = match &args.plots_dir {
            Some(d) => d.join(Path::new(&plot.out).file_name().unwrap_or_default()),
            None => md_dir.join(&plot.out),
        };
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(&path, &plot.svg).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("report: wrote {}", path.display());
        written.insert(path.canonicalize().unwrap_or(path));
        dirs.insert(dir);
    }
    for dir in &dirs {
        remove_stale(dir, &written);
    }
    let header = format!(
        "<!-- Generated by `just bench` (crates/palisade-bench/src/bin/report.rs) from {template}: \
         edit the template, not this file. -->\n\n"
    );
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(&args.out, format!("{header}{}", out.markdown))
        .map_err(|e| format!("{}: {e}", args.out.display()))?;
    eprintln!(
        "report: wrote {} ({} references, {} plots)",
        args.out.display(),
        out.references,
        out.plots.len()
    );
    Ok(())
}

/// Removes the SVG files in `dir` that carry this program's marker and were
/// not written by this run: plots the template no longer asks for.
fn remove_stale(dir: &Path, written: &BTreeSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "svg") {
            continue;
        }
        let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
        if written.contains(&canonical) {
            continue;
        }
        let ours = std::fs::read_to_string(&path).is_ok_and(|s| s.starts_with(SVG_MARKER));
        if ours {
            match std::fs::remove_file(&path) {
                Ok(()) => eprintln!("report: removed stale plot {}", path.display()),
                Err(e) => eprintln!("report: warning: cannot remove {}: {e}", path.display()),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Results

/// The results directory, without `..` when it exists (for messages).
fn results_dir() -> PathBuf {
    let dir = results::dir();
    dir.canonicalize().unwrap_or(dir)
}

/// One results file and when it was written.
#[derive(Debug)]
struct File {
    results: Results,
    /// The file's modification time: when the run that wrote it ended.
    modified: Option<SystemTime>,
}

/// Every results file, by name.
#[derive(Debug, Default)]
struct Data {
    files: BTreeMap<String, File>,
}

/// Why a reference could not be resolved.
#[derive(Debug, Clone, PartialEq)]
enum Problem {
    /// The data is not there: a missing file or key. Tolerated with
    /// `--allow-missing`.
    Missing(String),
    /// The template is wrong: always an error.
    Invalid(String),
}

impl Data {
    fn load() -> Result<Self, String> {
        let dir = results::dir();
        let all = Results::read_all().map_err(|e| format!("reading {}: {e}", dir.display()))?;
        let mut data = Self::default();
        for r in all {
            let modified = std::fs::metadata(dir.join(format!("{}.json", r.name)))
                .and_then(|m| m.modified())
                .ok();
            data.insert(r, modified);
        }
        Ok(data)
    }

    fn insert(&mut self, results: Results, modified: Option<SystemTime>) {
        self.files
            .insert(results.name.clone(), File { results, modified });
    }

    fn listing(&self) -> String {
        let mut s = String::new();
        if self.files.is_empty() {
            let _ = writeln!(s, "no results files in {}", results_dir().display());
        }
        for (name, f) in &self.files {
            let _ = writeln!(s, "# {name}");
            for (key, v) in &f.results.values {
                let v = match v {
                    Value::Number(n) => format!("{n} ({})", format_number(*n, Spec::Auto)),
                    Value::Text(t) => format!("{t:?}"),
                };
                let _ = writeln!(s, "{name}.{key} = {v}");
            }
            for (key, series) in &f.results.series {
                let _ = writeln!(
                    s,
                    "{name}.{key}: series of {} points, x: {}, y: {}",
                    series.points.len(),
                    series.x_label,
                    series.y_label
                );
            }
        }
        s
    }

    fn file(&self, name: &str) -> Result<&File, Problem> {
        self.files.get(name).ok_or_else(|| {
            Problem::Missing(format!(
                "no results file `{name}` ({})",
                results_dir().join(format!("{name}.json")).display()
            ))
        })
    }

    fn value(&self, r: &Ref) -> Result<&Value, Problem> {
        let f = self.file(&r.file)?;
        f.results.values.get(&r.key).ok_or_else(|| {
            let hint = if f.results.series.contains_key(&r.key) {
                " (it is a series: plot it with plot-lines)"
            } else {
                ""
            };
            Problem::Missing(format!(
                "no value `{}` in results `{}`{hint}",
                r.key, r.file
            ))
        })
    }

    fn number(&self, r: &Ref) -> Result<f64, Problem> {
        match self.value(r)? {
            Value::Number(n) => Ok(*n),
            Value::Text(t) => Err(Problem::Invalid(format!(
                "`{r}` is a text ({t:?}), not a number"
            ))),
        }
    }

    fn text(&self, r: &Ref) -> Result<&str, Problem> {
        match self.value(r)? {
            Value::Text(t) => Ok(t),
            Value::Number(n) => Err(Problem::Invalid(format!(
                "`{r}` is a number ({n}), not a text"
            ))),
        }
    }

    fn series(&self, r: &Ref) -> Result<&Series, Problem> {
        let f = self.file(&r.file)?;
        f.results.series.get(&r.key).ok_or_else(|| {
            let hint = if f.results.values.contains_key(&r.key) {
                " (it is a value: plot it with plot-bars)"
            } else {
                ""
            };
            Problem::Missing(format!(
                "no series `{}` in results `{}`{hint}",
                r.key, r.file
            ))
        })
    }

    /// `measured <date> on <cpus> CPUs, load <before>→<after>`.
    fn meta(&self, name: &str) -> Result<String, Problem> {
        let f = self.file(name)?;
        let text = |key: &str| {
            self.text(&Ref {
                file: name.to_owned(),
                key: key.to_owned(),
            })
        };
        let date = f
            .modified
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or_else(
                || "at an unknown time".to_owned(),
                |d| utc_minute(d.as_secs()),
            );
        Ok(format!(
            "measured {date} on {} CPUs, load {}→{}",
            text("cpus")?,
            text("load_before")?,
            text("load_after")?
        ))
    }
}

/// `YYYY-MM-DD HH:MM UTC` for seconds since the Unix epoch.
fn utc_minute(secs: u64) -> String {
    let (y, m, d) = civil_date(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// The Gregorian date of day `days` after 1970-01-01, computed in 400-year
/// cycles of 146 097 days counted from 0000-03-01 (so that the leap day
/// ends each year of the cycle).
fn civil_date(days: u64) -> (u64, u64, u64) {
    // 719 468 days from 0000-03-01 to 1970-01-01.
    let z = days + 719_468;
    let cycle = z / 146_097;
    let day_of_cycle = z % 146_097;
    // Years into the cycle: subtract the leap days before this day.
    let year_of_cycle =
        (day_of_cycle - day_of_cycle / 1460 + day_of_cycle / 36_524 - day_of_cycle / 146_096) / 365;
    let day_of_year =
        day_of_cycle - (365 * year_of_cycle + year_of_cycle / 4 - year_of_cycle / 100);
    // Months from March, in 153-day five-month runs.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = cycle * 400 + year_of_cycle + u64::from(month <= 2);
    (year, month, day)
}

// ---------------------------------------------------------------------------
// Number formatting

/// How a number is written.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Spec {
    /// Integers from 100 up, else three significant digits.
    Auto,
    /// That many decimals.
    Fixed(usize),
    /// A fraction as a percentage: `Auto`, or that many decimals.
    Pct(Option<usize>),
}

impl Spec {
    fn parse(s: &str) -> Result<Self, String> {
        let decimals = |d: &str| {
            d.parse::<usize>()
                .ok()
                .filter(|n| *n <= 9)
                .ok_or_else(|| format!("bad format `:{s}`: decimals are 0 to 9"))
        };
        if let Some(d) = s.strip_prefix('.') {
            return Ok(Self::Fixed(decimals(d)?));
        }
        match s {
            "pct" => Ok(Self::Pct(None)),
            _ => match s.strip_prefix("pct.") {
                Some(d) => Ok(Self::Pct(Some(decimals(d)?))),
                None => Err(format!(
                    "bad format `:{s}` (known: `:.N`, `:pct`, `:pct.N`)"
                )),
            },
        }
    }
}

fn format_number(v: f64, spec: Spec) -> String {
    match spec {
        Spec::Auto => auto(v),
        Spec::Fixed(n) => fixed(v, n),
        Spec::Pct(None) => format!("{} %", auto(v * 100.0)),
        Spec::Pct(Some(n)) => format!("{} %", fixed(v * 100.0, n)),
    }
}

fn auto(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    if a.round() >= 100.0 {
        return fixed(v, 0);
    }
    if a == 0.0 {
        return "0".to_owned();
    }
    // Three significant digits: 2 decimals for 1..10, 1 for 10..100, ...
    let decimals = (2 - a.log10().floor() as i64).clamp(0, 15) as usize;
    let s = fixed(v, decimals);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// `v` with `decimals` decimals, the integer part grouped from 10 000 up.
fn fixed(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    let (sign, digits) = match s.strip_prefix('-') {
        // `-0.00` is `0.00`.
        Some(rest) if rest.chars().any(|c| c.is_ascii_digit() && c != '0') => ("-", rest),
        Some(rest) => ("", rest),
        None => ("", s.as_str()),
    };
    let (int, frac) = digits.split_at(digits.find('.').unwrap_or(digits.len()));
    if int.len() < 5 || !int.bytes().all(|b| b.is_ascii_digit()) {
        return format!("{sign}{int}{frac}");
    }
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(GROUP_SEP);
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}{frac}")
}

// ---------------------------------------------------------------------------
// Directives

/// `file.key`: a value or series of a results file.
#[derive(Debug, Clone, PartialEq)]
struct Ref {
    file: String,
    key: String,
}

impl std::fmt::Display for Ref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.file, self.key)
    }
}

impl Ref {
    fn parse(s: &str) -> Result<Self, String> {
        let (file, key) = s
            .split_once('.')
            .ok_or_else(|| format!("`{s}` is not `name.key`"))?;
        let ok = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !ok(file) || !ok(key) {
            return Err(format!(
                "`{s}` is not `name.key` (letters, digits, `_` and `-`; no dot in a key)"
            ));
        }
        Ok(Self {
            file: file.to_owned(),
            key: key.to_owned(),
        })
    }

    /// `name.key` or `name.key:spec`.
    fn parse_with_spec(s: &str) -> Result<(Self, Option<Spec>), String> {
        match s.split_once(':') {
            Some((r, spec)) => Ok((Self::parse(r)?, Some(Spec::parse(spec)?))),
            None => Ok((Self::parse(s)?, None)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum PlotKind {
    Bars,
    Lines,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Legend {
    UpperLeft,
    UpperRight,
    LowerLeft,
    LowerRight,
}

/// A `plot-bars` or `plot-lines` directive.
#[derive(Debug, Clone, PartialEq)]
struct PlotSpec {
    kind: PlotKind,
    /// Where the SVG goes, relative to the markdown's directory.
    out: String,
    title: String,
    x: Option<String>,
    y: Option<String>,
    logx: bool,
    logy: bool,
    horizontal: bool,
    legend: Legend,
    reference: Option<(f64, String)>,
    /// The data, in order, with its labels.
    data: Vec<(Ref, String)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Directive {
    Value(Ref, Option<Spec>),
    Ratio(Ref, Ref, Spec),
    Meta(String),
    Aim(Ref, Cmp, f64),
    Plot(PlotSpec),
}

/// The comparison of an `aim`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Self::Lt => a < b,
            Self::Le => a <= b,
            Self::Gt => a > b,
            Self::Ge => a >= b,
        }
    }
}

/// Splits on whitespace, keeping `"..."` (which may follow `key=`) whole,
/// without its quotes.
fn tokenize(s: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut cur = String::new();
    let mut in_token = false;
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_token = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_token {
                    tokens.push(std::mem::take(&mut cur));
                    in_token = false;
                }
            }
            c => {
                cur.push(c);
                in_token = true;
            }
        }
    }
    if quoted {
        return Err("unclosed `\"`".to_owned());
    }
    if in_token {
        tokens.push(cur);
    }
    Ok(tokens)
}

fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("`{key}` is `true` or `false`, not `{v}`")),
    }
}

fn parse_directive(body: &str) -> Result<Directive, String> {
    let tokens = tokenize(body)?;
    let Some((head, rest)) = tokens.split_first() else {
        return Err("empty directive".to_owned());
    };
    match head.as_str() {
        "ratio" => {
            let [a, b] = rest else {
                return Err("`ratio` takes two references: `ratio name.a name.b`".to_owned());
            };
            let a = Ref::parse(a)?;
            let (b, spec) = Ref::parse_with_spec(b)?;
            Ok(Directive::Ratio(a, b, spec.unwrap_or(Spec::Fixed(2))))
        }
        "meta" => match rest {
            [name] if !name.contains('.') && !name.is_empty() => Ok(Directive::Meta(name.clone())),
            _ => Err("`meta` takes a results name: `meta name`".to_owned()),
        },
        "aim" => {
            let [r, op, bound] = rest else {
                return Err("`aim` is `aim name.key <= 1.2`".to_owned());
            };
            let op = match op.as_str() {
                "<" => Cmp::Lt,
                "<=" => Cmp::Le,
                ">" => Cmp::Gt,
                ">=" => Cmp::Ge,
                _ => return Err(format!("`aim` compares with <, <=, > or >=, not `{op}`")),
            };
            let bound = bound
                .parse::<f64>()
                .map_err(|_| format!("`aim` needs a number to compare with, not `{bound}`"))?;
            Ok(Directive::Aim(Ref::parse(r)?, op, bound))
        }
        "plot-bars" => parse_plot(PlotKind::Bars, rest).map(Directive::Plot),
        "plot-lines" => parse_plot(PlotKind::Lines, rest).map(Directive::Plot),
        _ if rest.is_empty() => {
            let (r, spec) = Ref::parse_with_spec(head)?;
            Ok(Directive::Value(r, spec))
        }
        other => Err(format!(
            "unknown directive `{other}` (known: `name.key`, `ratio`, `aim`, `meta`, `plot-bars`, `plot-lines`)"
        )),
    }
}

fn parse_plot(kind: PlotKind, args: &[String]) -> Result<PlotSpec, String> {
    let mut spec = PlotSpec {
        kind,
        out: String::new(),
        title: String::new(),
        x: None,
        y: None,
        logx: false,
        logy: false,
        horizontal: true,
        legend: Legend::UpperRight,
        reference: None,
        data: Vec::new(),
    };
    let mut ref_value = None;
    let mut ref_label = None;
    for arg in args {
        let (key, value) = match arg.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (arg.as_str(), None),
        };
        if key.contains('.') {
            let r = Ref::parse(key)?;
            let label = value.map_or_else(|| r.key.clone(), str::to_owned);
            spec.data.push((r, label));
            continue;
        }
        let Some(value) = value else {
            return Err(format!("`{key}` needs a value: `{key}=...`"));
        };
        match key {
            "out" => spec.out = value.to_owned(),
            "title" => spec.title = value.to_owned(),
            "x" => spec.x = Some(value.to_owned()),
            "y" => spec.y = Some(value.to_owned()),
            "logx" => spec.logx = parse_bool(key, value)?,
            "logy" => spec.logy = parse_bool(key, value)?,
            "horizontal" => spec.horizontal = parse_bool(key, value)?,
            "legend" => {
                spec.legend = match value {
                    "upper-left" => Legend::UpperLeft,
                    "upper-right" => Legend::UpperRight,
                    "lower-left" => Legend::LowerLeft,
                    "lower-right" => Legend::LowerRight,
                    _ => return Err(format!("bad legend `{value}`")),
                }
            }
            "ref" => {
                ref_value = Some(
                    value
                        .parse::<f64>()
                        .map_err(|_| format!("`ref` is a number, not `{value}`"))?,
                )
            }
            "ref_label" => ref_label = Some(value.to_owned()),
            _ => return Err(format!("unknown plot option `{key}`")),
        }
    }
    if spec.out.is_empty() || !spec.out.ends_with(".svg") {
        return Err("a plot needs `out=\"benchmarks/<name>.svg\"`".to_owned());
    }
    let out = Path::new(&spec.out);
    if out.is_absolute()
        || out
            .components()
            .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(format!(
            "`out` must be relative and inside the markdown's directory: `{}`",
            spec.out
        ));
    }
    if spec.title.is_empty() {
        return Err("a plot needs `title=\"...\"`".to_owned());
    }
    if spec.data.is_empty() {
        return Err("a plot needs at least one `name.key=\"label\"`".to_owned());
    }
    if kind == PlotKind::Bars && (spec.logx || spec.logy) {
        return Err("`logx`/`logy` are for plot-lines".to_owned());
    }
    match (ref_value, ref_label) {
        (Some(v), label) => spec.reference = Some((v, label.unwrap_or_else(|| format!("{v}")))),
        (None, Some(_)) => return Err("`ref_label` without `ref`".to_owned()),
        (None, None) => {}
    }
    Ok(spec)
}

// ---------------------------------------------------------------------------
// Rendering

/// A plot ready to be written.
#[derive(Debug)]
struct Plot {
    out: String,
    svg: String,
}

/// The result of rendering a template.
#[derive(Debug, Default)]
struct Rendered {
    markdown: String,
    plots: Vec<Plot>,
    /// Unresolved references: fatal unless `--allow-missing`.
    missing: Vec<String>,
    /// Template errors: always fatal.
    errors: Vec<String>,
    /// How many directives were replaced.
    references: usize,
}

/// Drops a leading `<!-- ... -->` (the template's own documentation).
fn strip_doc_comment(template: &str) -> &str {
    let trimmed = template.trim_start();
    if let Some(rest) = trimmed.strip_prefix("<!--")
        && let Some(end) = rest.find("-->")
    {
        return rest[end + 3..].trim_start_matches(['\r', '\n']);
    }
    template
}

fn render(template: &str, data: &Data) -> Rendered {
    let body = strip_doc_comment(template);
    let mut out = Rendered::default();
    let mut outs = BTreeSet::new();
    let mut rest = body;
    // Line numbers in messages are the template file's.
    let mut line = 1 + template[..template.len() - body.len()]
        .matches('\n')
        .count();
    while let Some(start) = rest.find("{{") {
        out.markdown.push_str(&rest[..start]);
        line += rest[..start].matches('\n').count();
        let Some(len) = rest[start + 2..].find("}}") else {
            out.errors
                .push(format!("line {line}: `{{{{` without `}}}}`"));
            rest = &rest[start..];
            break;
        };
        let body = &rest[start + 2..start + 2 + len];
        let at = format!("line {line}: `{{{{{}}}}}`", body.trim());
        line += body.matches('\n').count();
        rest = &rest[start + 2 + len + 2..];
        out.references += 1;
        let directive = match parse_directive(body) {
            Ok(d) => d,
            Err(e) => {
                out.errors.push(format!("{at}: {e}"));
                continue;
            }
        };
        let mut problems = Vec::new();
        let text = match &directive {
            Directive::Plot(spec) => {
                if !outs.insert(spec.out.clone()) {
                    out.errors
                        .push(format!("{at}: a second plot writes `{}`", spec.out));
                    continue;
                }
                match render_plot(spec, data, &mut problems) {
                    Some(svg) => {
                        out.plots.push(Plot {
                            out: spec.out.clone(),
                            svg,
                        });
                        format!("![{}]({})", spec.title, spec.out)
                    }
                    None => format!("*(plot “{}”: n/a)*", spec.title),
                }
            }
            d => match resolve(d, data) {
                Ok(s) => s,
                Err(p) => {
                    problems.extend(p);
                    "n/a".to_owned()
                }
            },
        };
        for p in problems {
            match p {
                Problem::Missing(m) => out.missing.push(format!("{at}: {m}")),
                Problem::Invalid(m) => out.errors.push(format!("{at}: {m}")),
            }
        }
        out.markdown.push_str(&text);
    }
    out.markdown.push_str(rest);
    out
}

fn resolve(d: &Directive, data: &Data) -> Result<String, Vec<Problem>> {
    match d {
        Directive::Value(r, None) => match data.value(r) {
            Ok(Value::Number(n)) => Ok(format_number(*n, Spec::Auto)),
            Ok(Value::Text(t)) => Ok(t.clone()),
            Err(p) => Err(vec![p]),
        },
        Directive::Value(r, Some(spec)) => data
            .number(r)
            .map(|n| format_number(n, *spec))
            .map_err(|p| vec![p]),
        Directive::Ratio(a, b, spec) => match (data.number(a), data.number(b)) {
            (Ok(_), Ok(0.0)) => Err(vec![Problem::Missing(format!("`{b}` is 0"))]),
            (Ok(a), Ok(b)) => Ok(format_number(a / b, *spec)),
            // Both are reported when both are missing.
            (a, b) => Err(a.err().into_iter().chain(b.err()).collect()),
        },
        Directive::Meta(name) => data.meta(name).map_err(|p| vec![p]),
        Directive::Aim(r, op, bound) => match data.number(r) {
            Ok(v) if op.holds(v, *bound) => Ok("met".to_owned()),
            Ok(v) => Ok(format!(
                "**missed** by {}",
                format_number((v - bound).abs(), Spec::Auto)
            )),
            Err(p) => Err(vec![p]),
        },
        Directive::Plot(_) => unreachable!("plots are rendered by render_plot"),
    }
}

/// Renders a plot from the data that is there, recording in `problems`
/// every reference that is not; `None` when nothing at all can be drawn.
fn render_plot(spec: &PlotSpec, data: &Data, problems: &mut Vec<Problem>) -> Option<String> {
    let result = match spec.kind {
        PlotKind::Bars => {
            let mut bars = Vec::new();
            for (r, label) in &spec.data {
                match data.number(r) {
                    Ok(v) if v.is_finite() => bars.push((label.clone(), v)),
                    Ok(v) => problems.push(Problem::Missing(format!("`{r}` is {v}"))),
                    Err(p) => problems.push(p),
                }
            }
            if bars.is_empty() {
                return None;
            }
            draw_bars(spec, &bars)
        }
        PlotKind::Lines => {
            let mut lines = Vec::new();
            for (r, label) in &spec.data {
                match data.series(r) {
                    Ok(s) if s.points.is_empty() => {
                        problems.push(Problem::Missing(format!("series `{r}` has no points")));
                    }
                    Ok(s) => lines.push((label.clone(), s)),
                    Err(p) => problems.push(p),
                }
            }
            if lines.is_empty() {
                return None;
            }
            draw_lines(spec, &lines)
        }
    };
    match result {
        Ok(svg) => Some(format!("{SVG_MARKER}\n{svg}")),
        Err(e) => {
            problems.push(Problem::Invalid(e));
            None
        }
    }
}

// ---------------------------------------------------------------------------
// Plots

const WIDTH: u32 = 800;
const BAR_COLOR: RGBColor = RGBColor(70, 120, 180);
/// Distinct line colours (Okabe–Ito, readable by colour-blind readers).
const LINE_COLORS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(0, 0, 0),
];

fn err(e: impl std::fmt::Display) -> String {
    format!("drawing the plot: {e}")
}

/// Pixels a label of `len` characters takes at `size` (plotters' own
/// estimate for SVG, which has no font metrics).
fn text_px(len: usize, size: f64) -> u32 {
    (size / 1.24 / 1.24 * 0.7 * len as f64).ceil() as u32
}

fn legend_position(l: Legend) -> SeriesLabelPosition {
    match l {
        Legend::UpperLeft => SeriesLabelPosition::UpperLeft,
        Legend::UpperRight => SeriesLabelPosition::UpperRight,
        Legend::LowerLeft => SeriesLabelPosition::LowerLeft,
        Legend::LowerRight => SeriesLabelPosition::LowerRight,
    }
}

fn draw_bars(spec: &PlotSpec, bars: &[(String, f64)]) -> Result<String, String> {
    let n = bars.len();
    let ref_v = spec.reference.as_ref().map(|r| r.0);
    let values = bars.iter().map(|b| b.1).chain(ref_v);
    let (lo, hi) = values.fold((0.0_f64, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    // Room for the value written at each bar's end, and for the legend
    // above vertical bars.
    let pad = if !spec.horizontal && ref_v.is_some() {
        1.4
    } else {
        1.18
    };
    let (lo, hi) = if hi == lo {
        (0.0, 1.0)
    } else {
        (lo * pad, hi * pad)
    };
    let longest = bars.iter().map(|b| b.0.chars().count()).max().unwrap_or(0);
    let value_axis = spec.y.clone().unwrap_or_default();
    let label_style = (FONT, 14);
    // Horizontal bars: the first on top, and an empty row above them for
    // the legend when there is one.
    let rows = if spec.horizontal {
        n + usize::from(ref_v.is_some())
    } else {
        n
    };
    let row_of = |i: usize| if spec.horizontal { n - 1 - i } else { i };
    // `0..k` holds `k + 1` segments (plotters counts both ends), and
    // `0..0` draws nothing: one bar gets an empty second row.
    let slots = rows.max(2);
    let segments = (0..slots - 1).into_segmented();
    // The far edge of row `r`: `Exact(r + 1)`, or `Last` for the last row.
    let end_of = |r: usize| {
        if r + 1 == slots {
            SegmentValue::Last
        } else {
            SegmentValue::Exact(r + 1)
        }
    };
    let category = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(r) | SegmentValue::Exact(r) if *r < n => bars[row_of(*r)].0.clone(),
        _ => String::new(),
    };
    let mut svg = String::new();
    {
        let (w, h) = if spec.horizontal {
            (WIDTH, (110 + 38 * slots as u32).clamp(240, 900))
        } else {
            (WIDTH.max(120 + 90 * n as u32).min(1400), 420)
        };
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(&spec.title, (FONT, 20))
            .margin(14)
            .margin_right(40);
        if spec.horizontal {
            let mut chart = builder
                .x_label_area_size(44)
                .y_label_area_size(text_px(longest, 14.0) + 16)
                .build_cartesian_2d(lo..hi, segments)
                .map_err(err)?;
            chart
                .configure_mesh()
                .disable_y_mesh()
                .y_labels(slots)
                .y_label_formatter(&category)
                .x_label_formatter(&|v| auto(*v))
                .x_desc(value_axis)
                .label_style(label_style)
                .axis_desc_style((FONT, 15))
                .light_line_style(BLACK.mix(0.04))
                .bold_line_style(BLACK.mix(0.12))
                .draw()
                .map_err(err)?;
            chart
                .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                    let r = row_of(i);
                    let mut rect = Rectangle::new(
                        [(0.0, SegmentValue::Exact(r)), (*v, end_of(r))],
                        BAR_COLOR.filled(),
                    );
                    rect.set_margin(5, 5, 0, 0);
                    rect
                }))
                .map_err(err)?;
            if let Some((v, label)) = &spec.reference {
                let line = [(*v, SegmentValue::Exact(0)), (*v, SegmentValue::Last)];
                draw_reference(&mut chart, line, label, spec.legend)?;
            }
            // The values last, on a white ground, over the reference line.
            let style =
                TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
            chart
                .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                    let text = auto(*v);
                    let w = text_px(text.chars().count(), 13.0) as i32;
                    EmptyElement::at((*v, SegmentValue::CenterOf(row_of(i))))
                        + Rectangle::new([(3, -8), (w + 8, 8)], WHITE.filled())
                        + Text::new(text, (5, 0), style.clone())
                }))
                .map_err(err)?;
        } else {
            let mut chart = builder
                .x_label_area_size(44)
                .y_label_area_size(64)
                .build_cartesian_2d(segments, lo..hi)
                .map_err(err)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(slots)
                .x_label_formatter(&category)
                .y_label_formatter(&|v| auto(*v))
                .y_desc(value_axis)
                .label_style(label_style)
                .axis_desc_style((FONT, 15))
                .light_line_style(BLACK.mix(0.04))
                .bold_line_style(BLACK.mix(0.12))
                .draw()
                .map_err(err)?;
            chart
                .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                    let mut rect = Rectangle::new(
                        [(SegmentValue::Exact(i), 0.0), (end_of(i), *v)],
                        BAR_COLOR.filled(),
                    );
                    rect.set_margin(0, 0, 10, 10);
                    rect
                }))
                .map_err(err)?;
            if let Some((v, label)) = &spec.reference {
                let line = [(SegmentValue::Exact(0), *v), (SegmentValue::Last, *v)];
                draw_reference(&mut chart, line, label, spec.legend)?;
            }
            let style =
                TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
            chart
                .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                    let text = auto(*v);
                    let w = text_px(text.chars().count(), 13.0) as i32;
                    EmptyElement::at((SegmentValue::CenterOf(i), *v))
                        + Rectangle::new([(-w / 2 - 3, -19), (w / 2 + 3, -3)], WHITE.filled())
                        + Text::new(text, (0, -4), style.clone())
                }))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// A dashed red line through `points`, named `label` in the legend.
fn draw_reference<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    points: [(X::ValueType, Y::ValueType); 2],
    label: &str,
    legend: Legend,
) -> Result<(), String>
where
    X: Ranged,
    Y: Ranged,
    X::ValueType: Clone + 'static,
    Y::ValueType: Clone + 'static,
{
    let style = RED.stroke_width(2);
    chart
        .draw_series(DashedLineSeries::new(points, 8, 5, style))
        .map_err(err)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    chart
        .configure_series_labels()
        .position(legend_position(legend))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 14))
        .draw()
        .map_err(err)
}

/// At most `MAX_POINTS` points: the lowest and highest of each bucket, in
/// order, so that a peak is never thinned away.
fn thin(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let buckets = MAX_POINTS / 2;
    let size = points.len().div_ceil(buckets);
    let mut out = Vec::with_capacity(MAX_POINTS);
    for chunk in points.chunks(size) {
        let lo = chunk
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.1.total_cmp(&b.1.1));
        let hi = chunk
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.1.total_cmp(&b.1.1));
        if let (Some((i, &l)), Some((j, &h))) = (lo, hi) {
            match i.cmp(&j) {
                std::cmp::Ordering::Less => out.extend([l, h]),
                std::cmp::Ordering::Greater => out.extend([h, l]),
                std::cmp::Ordering::Equal => out.push(l),
            }
        }
    }
    out
}

/// The range of `values`, widened when it is a single value, and on a linear
/// axis from 0 when every value is positive (so flat looks flat).
fn axis_range(
    values: impl Iterator<Item = f64>,
    log: bool,
    pad_top: bool,
) -> Result<(f64, f64), String> {
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return Err("a series holds a value that is not finite".to_owned());
    }
    if log {
        if lo <= 0.0 {
            return Err(format!("a log axis needs values above 0, and {lo} is not"));
        }
        if hi / lo >= 10.0 {
            return Ok((lo, if pad_top { hi * 1.3 } else { hi }));
        }
        // Less than a decade: widen to whole decades, so that the axis has
        // labelled ticks.
        let lo = 10_f64.powf(lo.log10().floor());
        let hi = 10_f64.powf(hi.log10().ceil());
        return Ok((lo, if lo == hi { hi * 10.0 } else { hi }));
    }
    if pad_top && lo > 0.0 {
        lo = 0.0;
    }
    if lo == hi {
        let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return Ok((lo - d, hi + d));
    }
    if pad_top {
        hi += (hi - lo) * 0.12;
    }
    Ok((lo, hi))
}

fn draw_lines(spec: &PlotSpec, lines: &[(String, &Series)]) -> Result<String, String> {
    let thinned: Vec<(String, Vec<(f64, f64)>)> = lines
        .iter()
        .map(|(label, s)| (label.clone(), thin(&s.points)))
        .collect();
    let xs = thinned.iter().flat_map(|l| l.1.iter().map(|p| p.0));
    let ys = thinned
        .iter()
        .flat_map(|l| l.1.iter().map(|p| p.1))
        .chain(spec.reference.as_ref().map(|r| r.0));
    let (x0, x1) = axis_range(xs, spec.logx, false)?;
    let (y0, y1) = axis_range(ys, spec.logy, true)?;
    let first = lines[0].1;
    let x_desc = spec.x.clone().unwrap_or_else(|| first.x_label.clone());
    let y_desc = spec.y.clone().unwrap_or_else(|| first.y_label.clone());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let axes = (&x_desc, &y_desc);
        match (spec.logx, spec.logy) {
            (false, false) => lines_chart(&root, spec, &thinned, x0..x1, y0..y1, axes),
            (true, false) => lines_chart(&root, spec, &thinned, (x0..x1).log_scale(), y0..y1, axes),
            (false, true) => lines_chart(&root, spec, &thinned, x0..x1, (y0..y1).log_scale(), axes),
            (true, true) => lines_chart(
                &root,
                spec,
                &thinned,
                (x0..x1).log_scale(),
                (y0..y1).log_scale(),
                axes,
            ),
        }?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn lines_chart<X, Y>(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    spec: &PlotSpec,
    lines: &[(String, Vec<(f64, f64)>)],
    x: X,
    y: Y,
    (x_desc, y_desc): (&String, &String),
) -> Result<(), String>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(&spec.title, (FONT, 20))
        .margin(14)
        .margin_right(40)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_label_formatter(&|v| auto(*v))
        .y_label_formatter(&|v| auto(*v))
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .light_line_style(BLACK.mix(0.05))
        .bold_line_style(BLACK.mix(0.12))
        .draw()
        .map_err(err)?;
    for (i, (label, points)) in lines.iter().enumerate() {
        let color = LINE_COLORS[i % LINE_COLORS.len()];
        let style = color.stroke_width(2);
        let marker = if points.len() <= 40 { 3 } else { 0 };
        chart
            .draw_series(LineSeries::new(points.iter().copied(), style).point_size(marker))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    if let Some((v, label)) = &spec.reference {
        let style = RED.stroke_width(2);
        let (x0, x1) = lines
            .iter()
            .flat_map(|l| l.1.iter().map(|p| p.0))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
                (lo.min(x), hi.max(x))
            });
        chart
            .draw_series(DashedLineSeries::new([(x0, *v), (x1, *v)], 8, 5, style))
            .map_err(err)?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(legend_position(spec.legend))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 14))
        .draw()
        .map_err(err)
}

// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Data {
        let mut d = Data::default();
        let mut r = Results {
            name: "loopback".to_owned(),
            ..Results::default()
        };
        r.number("reqwest_rps", 51_234.6)
            .number("palisade_rps", 30_000.0)
            .number("palisade_ratio", 0.5861)
            .number("zero", 0.0)
            .text(
                "cmd",
                "cargo run --release -p palisade-bench --bin loopback",
            )
            .text("cpus", "2")
            .text("load_before", "3.10")
            .text("load_after", "4.20")
            .series(
                "rss",
                "requests",
                "RSS (MiB)",
                vec![(0.0, 10.0), (1e6, 11.0)],
            )
            .series("empty", "x", "y", vec![]);
        // 2023-11-14 22:13:20 UTC.
        d.insert(
            r,
            Some(UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)),
        );
        d
    }

    #[test]
    fn numbers_are_formatted() {
        assert_eq!(auto(51_234.6), "51\u{202f}235");
        assert_eq!(auto(1_234_567.0), "1\u{202f}234\u{202f}567");
        assert_eq!(auto(9_999.0), "9999");
        assert_eq!(auto(167.4), "167");
        assert_eq!(auto(99.96), "100");
        assert_eq!(auto(12.0), "12");
        assert_eq!(auto(4.137), "4.14");
        assert_eq!(auto(0.59312), "0.593");
        assert_eq!(auto(0.000_123_45), "0.000123");
        assert_eq!(auto(0.0), "0");
        assert_eq!(auto(-42_000.0), "-42\u{202f}000");
        assert_eq!(auto(-1.5), "-1.5");
        assert_eq!(auto(f64::NAN), "NaN");
        assert_eq!(format_number(0.5855, Spec::Fixed(2)), "0.59");
        assert_eq!(format_number(-0.001, Spec::Fixed(2)), "0.00");
        assert_eq!(format_number(12_345.678, Spec::Fixed(1)), "12\u{202f}345.7");
        assert_eq!(format_number(0.0512, Spec::Pct(None)), "5.12 %");
        assert_eq!(format_number(0.5, Spec::Pct(Some(1))), "50.0 %");
        assert_eq!(format_number(1.0, Spec::Pct(None)), "100 %");
    }

    #[test]
    fn specs_parse() {
        assert_eq!(Spec::parse(".2"), Ok(Spec::Fixed(2)));
        assert_eq!(Spec::parse("pct"), Ok(Spec::Pct(None)));
        assert_eq!(Spec::parse("pct.1"), Ok(Spec::Pct(Some(1))));
        assert!(Spec::parse(".x").is_err());
        assert!(Spec::parse(".12").is_err());
        assert!(Spec::parse("percent").is_err());
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_minute(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_minute(951_868_799), "2000-02-29 23:59 UTC");
        assert_eq!(utc_minute(951_868_800), "2000-03-01 00:00 UTC");
        assert_eq!(utc_minute(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(utc_minute(4_107_542_400), "2100-03-01 00:00 UTC");
        assert_eq!(utc_minute(1_735_689_599), "2024-12-31 23:59 UTC");
    }

    #[test]
    fn values_ratios_and_meta_are_substituted() {
        let t = "<!-- doc: {{nothing.here}} -->\n\n# B\n\
                 rps {{loopback.reqwest_rps}}, ratio {{loopback.palisade_ratio:.2}} \
                 ({{loopback.palisade_ratio:pct}}), {{ratio loopback.palisade_rps loopback.reqwest_rps}}× \
                 {{ ratio loopback.palisade_rps loopback.reqwest_rps:pct.0 }}\n\
                 `{{loopback.cmd}}`, {{meta loopback}}.\n";
        let out = render(t, &data());
        assert_eq!(out.errors, Vec::<String>::new());
        assert_eq!(out.missing, Vec::<String>::new());
        assert_eq!(
            out.markdown,
            "# B\nrps 51\u{202f}235, ratio 0.59 (58.6 %), 0.59× 59 %\n\
             `cargo run --release -p palisade-bench --bin loopback`, \
             measured 2023-11-14 22:13 UTC on 2 CPUs, load 3.10→4.20.\n"
        );
        assert_eq!(out.references, 7);
    }

    #[test]
    fn aims_are_judged() {
        let t = "{{aim loopback.palisade_ratio >= 0.95}} {{aim loopback.palisade_ratio < 0.6}} \
                 {{aim loopback.zero <= 0}} {{aim loopback.zero > 0}}";
        let out = render(t, &data());
        assert!(out.errors.is_empty() && out.missing.is_empty());
        assert_eq!(out.markdown, "**missed** by 0.364 met met **missed** by 0");
        for bad in [
            "{{aim loopback.zero}}",
            "{{aim loopback.zero == 0}}",
            "{{aim loopback.zero < x}}",
        ] {
            assert_eq!(render(bad, &data()).errors.len(), 1, "{bad}");
        }
    }

    #[test]
    fn missing_references_are_all_listed() {
        let t = "<!--\n{{doc}}\n-->\na {{loopback.nope}} b {{python.x_rps}}\nc {{ratio loopback.nope2 micro.y}} \
                 {{meta memory}} {{loopback.rss}}";
        let out = render(t, &data());
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.missing.len(), 6, "{:#?}", out.missing);
        assert!(out.missing[0].starts_with("line 4: `{{loopback.nope}}`: no value `nope`"));
        assert!(out.missing[1].contains("no results file `python`"));
        assert!(out.missing[2].starts_with("line 5:"));
        assert!(out.missing[5].contains("it is a series"));
        assert_eq!(out.markdown, "a n/a b n/a\nc n/a n/a n/a");
    }

    #[test]
    fn template_errors_are_fatal() {
        let cases = [
            "{{loopback.cmd:.2}}",
            "{{loopback.reqwest_rps:wat}}",
            "{{ratio loopback.zero}}",
            "{{loopback}}",
            "{{frobnicate a b}}",
            "{{meta}}",
            "{{plot-bars title=\"t\" loopback.reqwest_rps}}",
            "{{plot-bars out=\"../x.svg\" title=t loopback.reqwest_rps}}",
            "{{plot-bars out=x.svg title=t}}",
            "{{plot-bars out=x.svg title=t logy=true loopback.reqwest_rps}}",
            "{{plot-lines out=x.svg title=\"unclosed loopback.rss}}",
            "{{plot-lines out=x.svg title=t colour=red loopback.rss}}",
            "{{plot-lines out=x.svg title=t loopback.rss}} {{plot-lines out=x.svg title=u loopback.rss}}",
            "text {{loopback.cmd",
        ];
        for t in cases {
            let out = render(t, &data());
            assert_eq!(out.errors.len(), 1, "{t}: {:?}", out.errors);
        }
    }

    #[test]
    fn plot_directives_parse() {
        let d = parse_directive(
            r#"plot-bars out="benchmarks/loopback.svg" title="Loopback, 64 in flight"
               y="requests/s" loopback.reqwest_rps="bare reqwest" loopback.palisade_rps
               ref=0.95 ref_label="aim" horizontal=false"#,
        )
        .unwrap();
        let Directive::Plot(p) = d else {
            panic!("{d:?}")
        };
        assert_eq!(p.kind, PlotKind::Bars);
        assert_eq!(p.out, "benchmarks/loopback.svg");
        assert_eq!(p.title, "Loopback, 64 in flight");
        assert_eq!(p.y.as_deref(), Some("requests/s"));
        assert!(!p.horizontal);
        assert_eq!(p.reference, Some((0.95, "aim".to_owned())));
        assert_eq!(
            p.data,
            vec![
                (
                    Ref::parse("loopback.reqwest_rps").unwrap(),
                    "bare reqwest".to_owned()
                ),
                (
                    Ref::parse("loopback.palisade_rps").unwrap(),
                    "palisade_rps".to_owned()
                ),
            ]
        );
        let d = parse_directive("plot-lines out=benchmarks/rss.svg title=RSS logx=true legend=lower-left memory.rss=stack").unwrap();
        let Directive::Plot(p) = d else {
            panic!("{d:?}")
        };
        assert_eq!(p.kind, PlotKind::Lines);
        assert!(p.logx && !p.logy);
        assert_eq!(p.legend, Legend::LowerLeft);
        assert_eq!(p.x, None);
    }

    #[test]
    fn plots_render_to_svg() {
        let t = "{{plot-bars out=\"benchmarks/b.svg\" title=\"Loopback throughput\" y=\"requests/s\" \
                 loopback.reqwest_rps=\"bare reqwest\" loopback.palisade_rps=palisade ref=40000 ref_label=aim}}\n\
                 {{plot-bars out=\"benchmarks/v.svg\" title=\"Vertical\" horizontal=false \
                 loopback.reqwest_rps=\"bare reqwest\" loopback.palisade_rps=palisade}}\n\
                 {{plot-lines out=\"benchmarks/l.svg\" title=\"RSS\" loopback.rss=\"stack\" logy=true}}\n";
        let out = render(t, &data());
        assert!(
            out.errors.is_empty() && out.missing.is_empty(),
            "{:?} {:?}",
            out.errors,
            out.missing
        );
        assert_eq!(
            out.markdown,
            "![Loopback throughput](benchmarks/b.svg)\n![Vertical](benchmarks/v.svg)\n![RSS](benchmarks/l.svg)\n"
        );
        assert_eq!(out.plots.len(), 3);
        let bars = &out.plots[0].svg;
        assert!(bars.starts_with(SVG_MARKER));
        for text in [
            "Loopback throughput",
            "requests/s",
            "bare reqwest",
            "palisade",
            "aim",
            "51\u{202f}235",
        ] {
            assert!(bars.contains(text), "{text} missing from {bars}");
        }
        let lines = &out.plots[2].svg;
        for text in ["RSS", "requests", "RSS (MiB)", "stack"] {
            assert!(lines.contains(text), "{text} missing");
        }
    }

    #[test]
    fn one_bar_renders() {
        for dir in ["true", "false"] {
            let t = format!(
                "{{{{plot-bars out=o.svg title=One horizontal={dir} loopback.reqwest_rps}}}}"
            );
            let out = render(&t, &data());
            assert!(out.errors.is_empty(), "{:?}", out.errors);
            assert!(out.plots[0].svg.contains("reqwest_rps"));
        }
    }

    #[test]
    fn plots_with_missing_data_are_reported() {
        let t = "{{plot-bars out=b.svg title=T loopback.reqwest_rps loopback.nope}}\
                 {{plot-lines out=l.svg title=L micro.x loopback.empty}}";
        let out = render(t, &data());
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.missing.len(), 3, "{:?}", out.missing);
        // The bars that are there are drawn; a plot with nothing is n/a.
        assert_eq!(out.plots.len(), 1);
        assert_eq!(out.markdown, "![T](b.svg)*(plot “L”: n/a)*");
    }

    #[test]
    fn log_axes_need_positive_values() {
        let t = "{{plot-lines out=l.svg title=L logx=true loopback.rss}}";
        let out = render(t, &data());
        assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
        assert!(out.errors[0].contains("above 0"));
    }

    #[test]
    fn long_series_keep_their_peaks() {
        let mut points: Vec<(f64, f64)> = (0..100_000).map(|i| (f64::from(i), 1.0)).collect();
        points[54_321].1 = 9.0;
        points[77_777].1 = -3.0;
        let t = thin(&points);
        assert!(t.len() <= MAX_POINTS);
        assert!(t.contains(&(54_321.0, 9.0)) && t.contains(&(77_777.0, -3.0)));
        assert!(t.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn doc_comment_is_stripped_only_at_the_start() {
        assert_eq!(strip_doc_comment("<!-- a -->\n\n# T\n"), "# T\n");
        assert_eq!(strip_doc_comment("# T\n<!-- a -->\n"), "# T\n<!-- a -->\n");
    }

    #[test]
    fn tokens_keep_quoted_spaces() {
        assert_eq!(
            tokenize(r#" a title="x y" b.c="d e"  f "#).unwrap(),
            vec!["a", "title=x y", "b.c=d e", "f"]
        );
        assert!(tokenize(r#"a="b"#).is_err());
    }
}
