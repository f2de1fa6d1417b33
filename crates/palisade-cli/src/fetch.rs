//! `palisade fetch`: a resilient batch fetcher on the standard stack.
//!
//! Each URL is one logical request through a [`palisade::Client`] whose
//! layers are set from the flags. Rows go to stdout as requests complete;
//! the progress bar and the summary go to stderr.
//!
//! A batch is paced, not shed. The concurrency limit queues requests beyond
//! `-c` and the rate limiter makes requests beyond `--rate` wait, both for up
//! to the request's `--deadline`. So that requests late in a long batch do
//! not spend their deadline waiting behind the whole batch, the command hands
//! each host only a window of requests at a time (see [`host_window`]); the
//! next enters the stack when one finishes.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use palisade::breaker::{BreakerLayer, Window};
use palisade::concurrency::{ConcurrencyLimitLayer, limit::Limit};
use palisade::core::Key;
use palisade::core::events as ev;
use palisade::ratelimit::{Quota, RateLimitLayer};
use palisade::retry::RetryPolicy;
use palisade::{Client, PoolConfig, StackConfig};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use crate::args::{self, Header, Rate};
use crate::events::Tally;
use crate::progress;
use crate::save;

/// Requests in the stack at once across all hosts, whatever `-c` says:
/// each holds a socket and, with `--save`, a file, and this keeps the sum
/// below the usual default of 1024 open files.
const GLOBAL_WINDOW: usize = 512;

/// Options of `palisade fetch`.
#[derive(Debug, Args)]
#[command(after_help = "\
Each request ends as one JSON object on stdout, in completion order:
  {\"url\", \"method\", \"status\", \"attempts\", \"elapsed_ms\", \"bytes\", \"error\"}
with error null or {\"kind\", \"message\"}. Exit code: 0 when every request ended
2xx or 3xx, 1 when any failed, 2 for a usage error.")]
pub(crate) struct FetchArgs {
    /// URLs to fetch (absolute http or https).
    #[arg(value_name = "URL", value_parser = args::url)]
    urls: Vec<String>,

    /// URLs, one per line ('-' = stdin), in addition to URL args. Blank lines
    /// and lines starting with '#' are skipped; a malformed URL fails its own
    /// row (kind invalid_request) and the batch goes on.
    #[arg(short = 'i', long, value_name = "FILE")]
    input: Option<PathBuf>,

    /// The request method.
    #[arg(short = 'X', long, value_name = "METHOD", default_value = "GET", value_parser = args::method)]
    method: http::Method,

    /// Request body, sent as given; with a JSON content type if it parses as
    /// JSON (unless -H sets Content-Type).
    #[arg(short = 'd', long, value_name = "BODY")]
    data: Option<String>,

    /// A request header; repeatable.
    #[arg(short = 'H', long = "header", value_name = "'Name: value'", value_parser = args::header)]
    headers: Vec<Header>,

    /// Max requests in flight per host.
    #[arg(short = 'c', long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=100_000), allow_negative_numbers = true)]
    concurrency: u32,

    /// Rate limit per host (GCRA) [default: none].
    #[arg(short = 'r', long, value_name = "N/s|N/m", value_parser = args::rate)]
    rate: Option<Rate>,

    /// Burst for --rate [default: the rate's N].
    #[arg(long, value_name = "N", requires = "rate",
          value_parser = clap::value_parser!(u32).range(1..), allow_negative_numbers = true)]
    burst: Option<u32>,

    /// Retries after the first attempt.
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(0..=100), allow_negative_numbers = true)]
    retries: u32,

    /// Per-attempt timeout [default: 10s, or the deadline when shorter].
    #[arg(long, value_name = "DURATION", value_parser = args::duration)]
    timeout: Option<Duration>,

    /// Total per request, retries and waits included; reading the body too,
    /// so give a large download a long one.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = args::duration)]
    deadline: Duration,

    /// Base delay before a retry; later ones grow exponentially, with jitter
    /// (a Retry-After from the server takes precedence when longer).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = args::duration)]
    backoff: Duration,

    /// Open a host's breaker after N consecutive failures; 0 = no breaker
    /// [default: the library's standard ratio-based breaker].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    breaker_failures: Option<u32>,

    /// How long an opened breaker stays open before probing.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = args::duration)]
    breaker_cooldown: Duration,

    /// Add one Idempotency-Key per request to non-idempotent methods, so they
    /// may be retried.
    #[arg(long)]
    idempotency_key: bool,

    /// No progress bar (it is drawn on stderr only when stderr is a
    /// terminal).
    #[arg(long)]
    no_progress: bool,

    /// Trust the certificate authorities in this PEM file, besides the
    /// system's (curl's --cacert). The SSL_CERT_FILE environment variable
    /// names a bundle too. Verification itself is never turned off.
    #[arg(long, visible_alias = "cacert", value_name = "FILE")]
    ca_bundle: Option<PathBuf>,

    /// Refuse a response body past SIZE (decoded bytes, saved or not), e.g.
    /// 64MiB. Every body is streamed in flat memory, so there is no limit by
    /// default (as with curl's --max-filesize); a body that never ends is
    /// stopped by the deadline. A compressed body that decodes past 100:1 is
    /// refused either way (a decompression bomb).
    #[arg(long, value_name = "SIZE", default_value = "none", value_parser = args::size)]
    max_body: u64,

    /// What stdout carries.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Output::Ndjson)]
    output: Output,

    /// Write each response body to a file in DIR (named from the URL, never
    /// overwriting); rows then carry "file".
    #[arg(short = 'o', long, value_name = "DIR")]
    save: Option<PathBuf>,
}

/// The format of stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// One JSON object per request, as each completes.
    Ndjson,
    /// One aligned table at the end.
    Table,
}

/// A usage error found after parsing: bad input that clap cannot see alone.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

/// One URL of the batch, as given.
#[derive(Debug)]
pub(crate) struct Target {
    url: String,
    /// Why the URL cannot be fetched, for a malformed `--input` line.
    invalid: Option<String>,
}

/// The lines of `--input`, as bytes: a line that is not UTF-8 is kept, so
/// that it fails its own row rather than the whole batch.
fn input_lines(mut reader: impl BufRead) -> std::io::Result<Vec<Vec<u8>>> {
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(lines);
        }
        lines.push(line);
    }
}

/// One `--input` line as a target: blank lines and comments are `None`.
fn target_of(line: &[u8]) -> Option<Target> {
    match std::str::from_utf8(line) {
        Ok(text) => {
            let url = text.trim();
            (!url.is_empty() && !url.starts_with('#')).then(|| Target {
                url: url.to_owned(),
                invalid: None,
            })
        }
        Err(e) => {
            let url = String::from_utf8_lossy(line).trim().to_owned();
            Some(Target {
                url,
                invalid: Some(format!("the line is not valid UTF-8: {e}")),
            })
        }
    }
}

/// Reads the URLs of the batch: the arguments, then `--input`. Done before
/// the runtime starts, so a bad `--input` path is a usage error.
pub(crate) fn targets(args: &FetchArgs) -> anyhow::Result<Vec<Target>> {
    let mut targets: Vec<Target> = args
        .urls
        .iter()
        .map(|url| Target {
            url: url.clone(),
            invalid: None,
        })
        .collect();
    if let Some(path) = &args.input {
        let lines = if path.as_os_str() == "-" {
            input_lines(std::io::stdin().lock())
                .map_err(|e| usage(format!("invalid value '-' for '--input <FILE>': {e}")))?
        } else {
            let file = std::fs::File::open(path).map_err(|e| {
                usage(format!(
                    "invalid value '{}' for '--input <FILE>': {e}",
                    path.display()
                ))
            })?;
            input_lines(std::io::BufReader::new(file)).map_err(|e| {
                usage(format!(
                    "invalid value '{}' for '--input <FILE>': {e}",
                    path.display()
                ))
            })?
        };
        targets.extend(lines.iter().filter_map(|l| target_of(l)));
    }
    if targets.is_empty() {
        return Err(usage(
            "no URL to fetch: give URLs as arguments or with '--input <FILE>'",
        ));
    }
    Ok(targets)
}

/// Checks the flags against each other, as the stack's builder would, so
/// that a bad combination is a usage error naming the flags.
fn check(args: &FetchArgs) -> anyhow::Result<()> {
    if let Some(timeout) = args.timeout
        && timeout > args.deadline
    {
        return Err(usage(format!(
            "'--timeout' ({}) must not exceed '--deadline' ({})",
            humantime::format_duration(timeout),
            humantime::format_duration(args.deadline)
        )));
    }
    if let Some(dir) = &args.save
        && dir.exists()
        && !dir.is_dir()
    {
        return Err(usage(format!(
            "invalid value '{}' for '--save <DIR>': not a directory",
            dir.display()
        )));
    }
    Ok(())
}

/// The layers built from the flags, kept to read their state at the end.
struct Stack {
    client: Client,
    breaker: Option<BreakerLayer>,
    concurrency: ConcurrencyLimitLayer,
}

/// The attempt timeout: `--timeout`, else 10 s clamped to the deadline (a
/// default yields to what the user set).
fn attempt_timeout(args: &FetchArgs) -> Duration {
    args.timeout
        .unwrap_or_else(|| DEFAULT_ATTEMPT_TIMEOUT.min(args.deadline))
}

/// The attempt timeout when `--timeout` is not given.
const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

fn build(args: &FetchArgs) -> anyhow::Result<Stack> {
    let deadline = args.deadline;
    let timeout = attempt_timeout(args);
    let retry = RetryPolicy::builder()
        .max_attempts(args.retries + 1)
        .base_delay(args.backoff)
        .max_delay(args.backoff.max(Duration::from_secs(30)))
        // Retry-After is honoured up to what is left of the deadline (the
        // policy gives up on a longer one), not capped below it.
        .max_retry_after(deadline)
        .inject_idempotency_key(args.idempotency_key)
        .build_layer()
        .map_err(|e| usage(format!("invalid retry settings: {e}")))?;

    // The breaker's window must hold at least two attempt timeouts, or
    // timeouts could not be sampled in it.
    let window = timeout.saturating_mul(2).max(Duration::from_secs(30));
    let max_break = args.breaker_cooldown.max(Duration::from_secs(60));
    let breaker = match args.breaker_failures {
        Some(0) => None,
        failures => {
            let mut b = BreakerLayer::builder();
            if let Some(n) = failures {
                b = b.consecutive_failures(n).without_failure_ratio();
            }
            let b = b
                .window(Window::time(window))
                .break_duration(args.breaker_cooldown)
                // The cooldown is the break, every time: no growth, no jitter.
                .break_multiplier(1.0)
                .jitter(0.0)
                .max_break_duration(max_break)
                .idle_timeout(window.max(max_break).max(Duration::from_secs(600)))
                .build()
                .map_err(|e| usage(format!("invalid breaker settings: {e}")))?;
            Some(b)
        }
    };

    let rate_limit = match args.rate {
        None => None,
        Some(rate) => {
            let quota = if rate.per_minute {
                Quota::per_minute(rate.n)
            } else {
                Quota::per_second(rate.n)
            };
            let quota = quota
                .and_then(|q| q.with_burst(args.burst.unwrap_or(rate.n)))
                .map_err(|e| usage(format!("invalid value '{rate}' for '--rate': {e}")))?;
            Some(
                RateLimitLayer::builder(quota)
                    .wait(deadline)
                    .build()
                    .map_err(|e| usage(format!("invalid value '{rate}' for '--rate': {e}")))?,
            )
        }
    };

    let concurrency = ConcurrencyLimitLayer::builder()
        .limit(Limit::Fixed(args.concurrency as usize))
        // Requests beyond -c wait their turn, within their deadline.
        .max_queue(1 << 20)
        .max_wait(deadline)
        .build()
        .map_err(|e| usage(format!("invalid value for '--concurrency': {e}")))?;

    let stack = StackConfig::default()
        .deadline(Some(deadline))
        .attempt_timeout(Some(timeout))
        .retry(Some(retry))
        .breaker(breaker.clone())
        .rate_limit(rate_limit)
        .concurrency(Some(concurrency.clone()));
    let stack = match &args.ca_bundle {
        None => stack,
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                usage(format!(
                    "invalid value '{}' for '--ca-bundle <FILE>': {e}",
                    path.display()
                ))
            })?;
            let pool = PoolConfig::default()
                .max_idle_per_host(args.concurrency as usize)
                .add_root_certificate(&pem)
                .map_err(|e| {
                    usage(format!(
                        "invalid value '{}' for '--ca-bundle <FILE>': {e}",
                        path.display()
                    ))
                })?;
            stack.pool(pool)
        }
    };
    // fetch streams every body: the cap applies to the stream.
    let client = Client::builder()
        .max_body(args.max_body)
        .cap_streams(true)
        .stack(|_| stack)
        .build()
        .map_err(|e| {
            if e.is_config() {
                usage(e.to_string())
            } else {
                anyhow::Error::new(e)
            }
        })?;
    Ok(Stack {
        client,
        breaker,
        concurrency,
    })
}

/// How many requests of one host are handed to the stack at once: `-c`,
/// and with `--rate`, no more than an eighth of a deadline's worth of slots.
///
/// Requests beyond it wait here, before the stack, not in the concurrency
/// limit's queue: the breaker admits a request when it enters the stack, so
/// one admitted while the circuit was closed and then queued would be sent
/// after the circuit opened. An eighth of the deadline leaves a request that
/// waits for a rate slot room to spare when it has to wait more than one
/// turn, and still sustains the rate while responses take less than that
/// eighth.
fn host_window(args: &FetchArgs) -> usize {
    let by_concurrency = args.concurrency as usize;
    match args.rate {
        None => by_concurrency,
        Some(rate) => {
            let period = if rate.per_minute { 60.0 } else { 1.0 };
            let per_sec = f64::from(rate.n) / period;
            let eighth_deadline = per_sec * args.deadline.as_secs_f64() / 8.0;
            let burst = args.burst.unwrap_or(rate.n) as usize;
            // At least one, and a burst is always usable at once.
            let by_rate = (eighth_deadline as usize)
                .max(burst.min(by_concurrency))
                .max(1);
            by_concurrency.min(by_rate)
        }
    }
}

/// The error part of a row.
#[derive(Debug, Clone, Serialize)]
struct RowError {
    kind: &'static str,
    message: String,
}

/// One request's row.
#[derive(Debug, Clone, Serialize)]
struct Row {
    url: String,
    method: String,
    status: Option<u16>,
    attempts: u32,
    elapsed_ms: u64,
    bytes: u64,
    error: Option<RowError>,
    /// Only with `--save`: the file written, or null.
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<Option<String>>,
}

/// An error and its sources, on one line (a source already quoted by the
/// error above it is not repeated).
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = err.to_string();
    let mut next = err.source();
    while let Some(source) = next {
        let text = source.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        next = source.source();
    }
    msg
}

/// What every request of the batch shares.
struct Ctx {
    client: Client,
    method: http::Method,
    headers: Vec<(String, String)>,
    body: Option<Bytes>,
    save: Option<PathBuf>,
}

/// Sends one request and streams its body to its end (into a file with
/// `--save`), never holding it whole.
async fn fetch_one(ctx: &Ctx, url: String) -> (Row, Duration) {
    let start = Instant::now();
    let mut rb = ctx.client.request(ctx.method.clone(), &url);
    for (name, value) in &ctx.headers {
        rb = rb.header(name, value);
    }
    if let Some(body) = &ctx.body {
        rb = rb.bytes(body.clone());
    }
    let sent = rb.send().await;
    let mut row = Row {
        url,
        method: ctx.method.to_string(),
        status: None,
        attempts: 0,
        elapsed_ms: 0,
        bytes: 0,
        error: None,
        file: ctx.save.as_ref().map(|_| None),
    };
    match sent {
        Err(e) => {
            row.attempts = e.attempts();
            // The row already has the URL and the attempts: the message is
            // the cause, from the error's source when it has one.
            let message = match std::error::Error::source(&e) {
                Some(source) => chain(source),
                None => e.to_string(),
            };
            row.error = Some(RowError {
                kind: e.kind().as_str(),
                message,
            });
        }
        Ok(mut res) => {
            row.attempts = palisade::attempts(&res);
            let status = res.status();
            row.status = Some(status.as_u16());
            let mut file = match &ctx.save {
                None => None,
                Some(dir) => match save::create(dir, &row.url).await {
                    Ok((path, f)) => {
                        Some((path, tokio::io::BufWriter::with_capacity(256 * 1024, f)))
                    }
                    Err(e) => {
                        row.error = Some(RowError {
                            kind: "body",
                            message: format!("cannot create a file in {}: {e}", dir.display()),
                        });
                        None
                    }
                },
            };
            let mut failed = row.error.is_some();
            while !failed {
                match res.chunk().await {
                    Ok(Some(chunk)) => {
                        row.bytes += chunk.len() as u64;
                        if let Some((path, w)) = &mut file
                            && let Err(e) = w.write_all(&chunk).await
                        {
                            row.error = Some(RowError {
                                kind: "body",
                                message: format!("cannot write {}: {e}", path.display()),
                            });
                            failed = true;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let too_large =
                            palisade::core::error::find::<palisade::BodyTooLarge>(&e).is_some();
                        row.error = Some(RowError {
                            kind: if too_large {
                                palisade::Kind::BodyTooLarge.as_str()
                            } else {
                                "body"
                            },
                            message: chain(&e),
                        });
                        failed = true;
                    }
                }
            }
            if let Some((path, mut w)) = file {
                let flushed = if failed { Ok(()) } else { w.flush().await };
                drop(w);
                match (failed, flushed) {
                    (false, Ok(())) => row.file = Some(Some(path.display().to_string())),
                    (false, Err(e)) => {
                        row.error = Some(RowError {
                            kind: "body",
                            message: format!("cannot write {}: {e}", path.display()),
                        });
                        let _ = tokio::fs::remove_file(&path).await;
                    }
                    // A partial body is not kept: it would pass for the whole.
                    (true, _) => {
                        let _ = tokio::fs::remove_file(&path).await;
                    }
                }
            }
            if row.error.is_none() && !(status.is_success() || status.is_redirection()) {
                row.error = Some(RowError {
                    kind: "status",
                    message: format!("the server answered {status}"),
                });
            }
        }
    }
    let elapsed = start.elapsed();
    row.elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    (row, elapsed)
}

/// Runs the batch. Returns whether every request ended 2xx or 3xx.
pub(crate) async fn run(args: FetchArgs, urls: Vec<Target>, tally: Tally) -> anyhow::Result<bool> {
    check(&args)?;
    if let Some(dir) = &args.save {
        tokio::fs::create_dir_all(dir)
            .await
            .with_context(|| format!("cannot create the --save directory {}", dir.display()))?;
    }
    let Stack {
        client,
        breaker,
        concurrency,
    } = build(&args)?;

    let mut headers: Vec<(String, String)> = args
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                h.value.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let body = args
        .data
        .as_ref()
        .map(|d| Bytes::from(d.clone().into_bytes()));
    if let Some(d) = &args.data
        && serde_json::from_str::<serde::de::IgnoredAny>(d).is_ok()
        && !args
            .headers
            .iter()
            .any(|h| h.name == http::header::CONTENT_TYPE)
    {
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
    }
    let ctx = Arc::new(Ctx {
        client,
        method: args.method.clone(),
        headers,
        body,
        save: args.save.clone(),
    });

    // Group by host, keeping the input order within each host.
    let targets: Vec<Target> = urls
        .into_iter()
        .map(|t| {
            let invalid = t.invalid.or_else(|| args::check_url(&t.url).err());
            Target {
                url: t.url,
                invalid,
            }
        })
        .collect();
    let total = targets.len();
    let mut by_host: Vec<(Key, Vec<String>)> = Vec::new();
    let mut index: HashMap<Key, usize> = HashMap::new();
    let mut invalid = Vec::new();
    for t in targets {
        match t.invalid {
            Some(why) => invalid.push((t.url, why)),
            None => {
                let key = t
                    .url
                    .parse::<http::Uri>()
                    .map_or_else(|_| Key::global(), |u| Key::origin(&u));
                let i = *index.entry(key.clone()).or_insert_with(|| {
                    by_host.push((key, Vec::new()));
                    by_host.len() - 1
                });
                by_host[i].1.push(t.url);
            }
        }
    }

    let show = !args.no_progress && std::io::stderr().is_terminal();
    let bar = progress::bar(total as u64, show);
    let (tx, mut rx) = mpsc::unbounded_channel::<(Row, Option<Duration>)>();

    for (url, why) in invalid {
        let row = Row {
            url,
            method: args.method.to_string(),
            status: None,
            attempts: 0,
            elapsed_ms: 0,
            bytes: 0,
            error: Some(RowError {
                kind: "invalid_request",
                message: why,
            }),
            file: args.save.as_ref().map(|_| None),
        };
        let _ = tx.send((row, None));
    }

    let started = Instant::now();
    let window = host_window(&args);
    let global = Arc::new(Semaphore::new(GLOBAL_WINDOW));
    for (_key, urls) in by_host {
        let host = Arc::new(Semaphore::new(window));
        let global = global.clone();
        let ctx = ctx.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            for url in urls {
                let (Ok(h), Ok(g)) = (
                    host.clone().acquire_owned().await,
                    global.clone().acquire_owned().await,
                ) else {
                    return;
                };
                let ctx = ctx.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let (row, elapsed) = fetch_one(&ctx, url).await;
                    drop((h, g));
                    let _ = tx.send((row, Some(elapsed)));
                });
            }
        });
    }
    drop(tx);

    let mut summary = Summary::default();
    let mut rows = Vec::new();
    let stdout = std::io::stdout();
    while let Some((row, elapsed)) = rx.recv().await {
        summary.add(&row, elapsed);
        bar.inc(1);
        bar.set_message(format!("{} ok, {} failed", summary.ok, summary.failed()));
        match args.output {
            Output::Ndjson => {
                let line = serde_json::to_string(&row)?;
                // A closed stdout (`| head`) must not stop the batch.
                bar.suspend(|| {
                    let _ = writeln!(stdout.lock(), "{line}");
                });
            }
            Output::Table => rows.push(row),
        }
    }
    bar.finish_and_clear();
    if args.output == Output::Table {
        let _ = write_table(&mut stdout.lock(), &rows);
    }
    let _ = stdout.lock().flush();

    summary.elapsed = started.elapsed();
    summary.breaker_openings = breaker.map(|b| {
        b.handle()
            .snapshot()
            .iter()
            .map(|(_, s)| s.opened)
            .sum::<u64>()
    });
    summary.queue_waits = concurrency
        .diagnostics()
        .keys()
        .iter()
        .map(|k| k.admitted() - k.wait.immediate())
        .sum();
    let counts = tally.snapshot();
    summary.rate_waits = counts.get(ev::RATE_LIMIT_WAITED);
    eprint!("{}", summary.render(total));
    Ok(summary.failed() == 0)
}

fn write_table(out: &mut impl Write, rows: &[Row]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<6} {:>8} {:>10} {:>12}  {:<18} URL",
        "STATUS", "ATTEMPTS", "ELAPSED", "BYTES", "ERROR"
    )?;
    for r in rows {
        let status = r.status.map_or_else(|| "-".to_owned(), |s| s.to_string());
        let error = r.error.as_ref().map_or("-", |e| e.kind);
        writeln!(
            out,
            "{:<6} {:>8} {:>8}ms {:>12}  {:<18} {}",
            status, r.attempts, r.elapsed_ms, r.bytes, error, r.url
        )?;
    }
    Ok(())
}

/// The tallies behind the summary on stderr.
#[derive(Debug, Default)]
struct Summary {
    ok: u64,
    by_status_class: [u64; 6],
    by_kind: std::collections::BTreeMap<&'static str, u64>,
    latencies: Vec<Duration>,
    attempts: u64,
    retries: u64,
    elapsed: Duration,
    breaker_openings: Option<u64>,
    queue_waits: u64,
    rate_waits: u64,
}

impl Summary {
    fn add(&mut self, row: &Row, elapsed: Option<Duration>) {
        match &row.error {
            None => {
                self.ok += 1;
                if let Some(s) = row.status {
                    self.by_status_class[usize::from(s / 100).min(5)] += 1;
                }
            }
            Some(e) => *self.by_kind.entry(e.kind).or_default() += 1,
        }
        if let Some(d) = elapsed {
            self.latencies.push(d);
        }
        self.attempts += u64::from(row.attempts);
        self.retries += u64::from(row.attempts.saturating_sub(1));
    }

    fn failed(&self) -> u64 {
        self.by_kind.values().sum()
    }

    fn render(&mut self, total: usize) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let secs = self.elapsed.as_secs_f64();
        let _ = write!(
            s,
            "palisade fetch: {total} request(s) in {secs:.2} s: {} succeeded",
            self.ok
        );
        let classes: Vec<String> = (2..=3)
            .filter(|c| self.by_status_class[*c] > 0)
            .map(|c| format!("{c}xx {}", self.by_status_class[c]))
            .collect();
        if !classes.is_empty() {
            let _ = write!(s, " ({})", classes.join(", "));
        }
        let _ = write!(s, ", {} failed", self.failed());
        if !self.by_kind.is_empty() {
            let kinds: Vec<String> = self
                .by_kind
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            let _ = write!(s, " ({})", kinds.join(", "));
        }
        s.push('\n');
        self.latencies.sort_unstable();
        let p = |q: f64| percentile(&self.latencies, q);
        let _ = writeln!(
            s,
            "latency: p50 {}, p95 {}, p99 {}",
            ms(p(0.50)),
            ms(p(0.95)),
            ms(p(0.99))
        );
        let openings = self
            .breaker_openings
            .map_or_else(|| "no breaker".to_owned(), |n| n.to_string());
        let _ = writeln!(
            s,
            "attempts: {} (retries: {}); breaker openings: {openings}; limiter waits: {} \
             (rate limit: {}, concurrency queue: {})",
            self.attempts,
            self.retries,
            self.rate_waits + self.queue_waits,
            self.rate_waits,
            self.queue_waits
        );
        s
    }
}

/// The nearest-rank `q` quantile of sorted durations.
pub(crate) fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A duration in milliseconds, for people.
pub(crate) fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&d, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&d, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&d, 1.0), Duration::from_millis(100));
        assert_eq!(percentile(&d[..1], 0.99), Duration::from_millis(1));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
