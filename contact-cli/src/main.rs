//! `contact-cli`: the command-line front end of contact: a server and an interactive peer.
//!
//! ```text
//! contact-cli server [PORT] [--bind ADDR] [--port PORT] [--data-dir DIR] [--load FILE] [-q|-v]
//! contact-cli peer SERVER SERVER_PORT [--port P] [--bind IP] [--keep-going] [-v]
//! contact-cli server ... --data-dir DIR --node-id 1 --cluster 1=IP1:23000,2=IP2:23000,3=IP3:23000
//! contact-cli cluster status --node IP:23000 [--json]
//! contact-cli bench ...                      (see `contact-cli bench --help`)
//! contact-cli demo [--loss F --seed N] [--data-dir DIR] [--server ADDR] [--peer-ip IP]...
//! contact-cli state check FILE | state repair FILE [--in-place]
//! contact-cli completions SHELL              (bash, zsh, fish, elvish, powershell)
//! contact-cli man [--dir DIR]                (the man page, or every page into DIR)
//! ```
//!
//! Exit status: 0 on success; 1 when the program cannot start (a port is busy, a file cannot
//! be loaded), or for a peer reading a script, when a line failed; 2 for a usage error.
//! `demo`: 0 when every check held, 1 otherwise.
//!
//! # Layout
//! - `server.rs`: the `server` subcommand, a thin shell around `contact_peer::Server`.
//! - `peer/`: the `peer` subcommand: input lines in (a line editor on a terminal), requests
//!   out, answers and messages printed.
//! - `bench/`: the `bench` subcommand: the load generator, the ring measurement, the echo
//!   baseline and the report.
//! - `demo/`: the `demo` subcommand, the final demo of the Python system this project
//!   replaces, played and checked: the script, the cast of peers, the checks and the
//!   transcript.
//! - `state.rs`: the `state` subcommand, the operator's tools for a server's journal.
//! - `cluster.rs`: the `cluster` subcommand (`cluster status`).
//! - `completions` and `man` are generated from the clap definitions below (`clap_complete`,
//!   `clap_mangen`), so they cannot drift from `--help`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod bench;
mod cluster;
mod demo;
mod peer;
mod server;
mod state;

/// Group instant messaging over UDP: a contact server and its peers, compatible with the
/// reference Python implementation.
#[derive(Debug, Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    /// Log less: warnings and errors only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Log more (-v: debug, -vv: trace). RUST_LOG, when set, overrides both flags.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a contact server.
    Server(server::Args),
    /// Run an interactive peer: type commands, see answers and messages.
    Peer(peer::Args),
    /// Measure a server's throughput and latency (like redis-benchmark).
    Bench(bench::BenchArgs),
    /// Inspect a replicated cluster (`server --cluster`).
    #[command(subcommand)]
    Cluster(cluster::Cmd),
    /// Watch it work: a server and five peers (Me, Myself, I, Foo, Bar) register, make lists
    /// and send instant messages, every outcome checked; exit 0 only if all held.
    Demo(demo::DemoArgs),
    /// Check or repair a server's journal (`server --state FILE`).
    State(state::Args),
    /// Print a shell completion script to standard output, e.g.
    /// `contact-cli completions bash > /etc/bash_completion.d/contact-cli`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to standard output, e.g. `contact-cli man | man -l -`; with
    /// `--dir`, write it and one page per subcommand there instead.
    Man {
        /// Write `contact-cli.1` and `contact-cli-SUBCOMMAND.1` into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

/// Generates the completions or the man pages: no logging, no network.
fn generate(cmd: &Cmd) -> std::io::Result<()> {
    let mut command = Cli::command();
    match cmd {
        Cmd::Completions { shell } => {
            clap_complete::generate(*shell, &mut command, "contact-cli", &mut std::io::stdout());
            Ok(())
        }
        Cmd::Man { dir: Some(dir) } => {
            std::fs::create_dir_all(dir)?;
            clap_mangen::generate_to(command, dir)
        }
        Cmd::Man { dir: None } => clap_mangen::Man::new(command).render(&mut std::io::stdout()),
        _ => Ok(()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Completions { .. } | Cmd::Man { .. } = cli.command {
        return match generate(&cli.command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("contact-cli: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // A server logs its start, a summary every 10 s while busy, warnings and its stop at
    // info (each request at debug, -v); a peer prints what matters itself, so it logs
    // nothing unless asked.
    let default = match (&cli.command, cli.quiet, cli.verbose) {
        (_, true, _) => "warn",
        (_, _, 1) => "debug",
        (_, _, v) if v >= 2 => "trace",
        (Cmd::Server(_), ..) => "info",
        // A person at the peer's prompt reads sentences, not log lines: only with -v.
        (Cmd::Peer(_), ..) => "off",
        (Cmd::Bench(_) | Cmd::Demo(_) | Cmd::State(_) | Cmd::Cluster(_), ..) => "warn",
        (Cmd::Completions { .. } | Cmd::Man { .. }, ..) => "warn",
    };
    // openraft reports every failed heartbeat to a dead node as a warning, ten a second:
    // only its errors, unless asked for more (-v or RUST_LOG).
    let default = match cli.verbose {
        0 => format!("{default},openraft=error"),
        _ => default.to_string(),
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal());
    match cli.command {
        // At a terminal, the peer's log lines go above the prompt, not into it.
        Cmd::Peer(_) => logs.with_writer(peer::log_writer).init(),
        _ => logs.with_writer(std::io::stderr).init(),
    }
    match cli.command {
        Cmd::Server(args) => server::run(args),
        Cmd::Peer(args) => peer::run(args),
        Cmd::Demo(args) => demo::main(args),
        Cmd::State(args) => state::run(args),
        Cmd::Cluster(cmd) => cluster::run(cmd),
        Cmd::Bench(args) => match bench::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("contact-cli: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Completions { .. } | Cmd::Man { .. } => unreachable!("handled above"),
    }
}
