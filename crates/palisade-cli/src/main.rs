//! The `palisade` command.
//!
//! - `palisade fetch`: a resilient batch fetcher on palisade's standard
//!   stack. One JSON row per request on stdout, a summary on stderr; exit 0
//!   when every request ended 2xx or 3xx, 1 when any failed, 2 for a usage
//!   error.
//! - `palisade demo`: starts a flaky upstream in-process and runs scenarios
//!   through the standard stack, showing what each layer did.

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

mod args;
mod demo;
mod events;
mod fetch;
mod progress;
mod save;
mod transport;

/// palisade: resilience middleware for HTTP clients.
#[derive(Debug, Parser)]
#[command(name = "palisade", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fetch URLs through palisade's standard stack: retries, per-host
    /// breakers, rate and concurrency limits, timeouts and one deadline.
    Fetch(Box<fetch::FetchArgs>),
    /// Run scenarios against an in-process flaky upstream through the
    /// standard stack and show what each layer did. Needs no network.
    Demo(demo::DemoArgs),
}

/// Exit code of a usage error, as clap's own.
const USAGE: u8 = 2;

/// clap's error on one line: the line naming the argument, and any detail
/// clap puts on the following lines, without the usage and tip lines.
fn one_line(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let parts: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("Usage:")
                && !l.starts_with("For more information")
                && !l.starts_with("tip:")
        })
        .collect();
    parts.join(" ")
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            return match err.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = err.print();
                    ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(USAGE))
                }
                _ => {
                    eprintln!("{}", one_line(&err));
                    ExitCode::from(USAGE)
                }
            };
        }
    };
    let fail = |e: anyhow::Error| {
        if let Some(usage) = e.downcast_ref::<fetch::UsageError>() {
            eprintln!("error: {usage}");
            ExitCode::from(USAGE)
        } else {
            eprintln!("palisade: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Input is read before the runtime starts: a bad --input is a usage
    // error, and stdin is read once, whole.
    let urls = match &cli.command {
        Command::Fetch(args) => match fetch::targets(args.as_ref()) {
            Ok(urls) => Some(urls),
            Err(e) => return fail(e),
        },
        Command::Demo(_) => None,
    };
    let tally = events::install();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("palisade: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Fetch(args) => {
            runtime.block_on(fetch::run(*args, urls.unwrap_or_default(), tally))
        }
        Command::Demo(args) => runtime.block_on(demo::run(args, tally)).map(|()| true),
    };
    // Nothing left running matters once the result is known.
    runtime.shutdown_background();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => fail(e),
    }
}
