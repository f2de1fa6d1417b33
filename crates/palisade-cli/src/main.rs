//! The `palisade` command.
//!
//! - `palisade demo`: starts a flaky upstream in-process and sends a batch
//!   of requests through the palisade transport, then prints what happened.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;

/// palisade: resilience middleware for HTTP clients.
#[derive(Debug, Parser)]
#[command(name = "palisade", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send a batch of requests to an in-process flaky upstream and summarise
    /// the outcomes. Needs no network and finishes in a few seconds.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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
        Command::Demo(args) => runtime.block_on(demo::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("palisade: {e:#}");
            ExitCode::FAILURE
        }
    }
}
