//! `contact-cli`: the command-line front end of contact.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;

/// Group instant messaging over UDP: server, peer, demo and load generator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Measure a server's throughput and latency (like redis-benchmark).
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("contact-cli: {e}");
            ExitCode::FAILURE
        }
    }
}
