//! `contact-cli bench`: a load generator for any server that speaks the reference's protocol,
//! in the manner of `redis-benchmark`.
//!
//! Every client is a UDP socket with one request in flight; all of them are driven from one
//! thread through epoll (`mio`), so that the generator stays cheaper than what it measures.
//! Requests are encoded once, before the clock starts. An answer that does not come within
//! the timeout counts as a loss and the client moves on to its next request.

//!
//! # Layout
//! - `load.rs`: the load generator and the request mixes' set-up.
//! - `echo.rs`: the echo baseline, a bare UDP echo loop in this process.
//! - `ring.rs`: `--mix ring`, instant messages round a ring of in-process peers.
//! - `report.rs`: the figures of a measurement, printed or as JSON.

use std::io::{self, Write as _};
use std::net::SocketAddr;

use clap::{Args, ValueEnum};

mod echo;
mod load;
mod report;
mod ring;

use echo::EchoServer;
use load::measure;
use report::{Report, ratio_json};

/// Measure a server: throughput, latency and losses.
#[derive(Debug, Clone, Args)]
pub(crate) struct BenchArgs {
    /// The server to load (ours or the reference's).
    #[arg(long, default_value = "127.0.0.1:22000")]
    pub(crate) server: SocketAddr,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 8)]
    pub(crate) clients: usize,
    /// How long to run, in seconds (ignored with --requests).
    #[arg(long, default_value_t = 5.0)]
    pub(crate) duration: f64,
    /// Stop after this many answered requests instead of after --duration.
    #[arg(long)]
    pub(crate) requests: Option<u64>,
    /// What the clients send.
    #[arg(long, value_enum, default_value_t = Mix::Query)]
    pub(crate) mix: Mix,
    /// Also drive a bare UDP echo loop started in this process, the same way, and print the
    /// server's figures as ratios of the echo's: the kernel's ceiling on this machine.
    /// The two take turns in three slices of the duration, so that drift weighs on both.
    #[arg(long)]
    pub(crate) echo: bool,
    /// Measure only the in-process echo loop (no server needed).
    #[arg(long)]
    pub(crate) echo_only: bool,
    /// Milliseconds after which an unanswered request counts as lost.
    #[arg(long, default_value_t = 1000)]
    pub(crate) timeout_ms: u64,
    /// Print one JSON line instead of the report.
    #[arg(long)]
    pub(crate) json: bool,
    /// With `--mix ring`: the members of the ring (in-process peers on loopback).
    #[arg(long, default_value_t = 20)]
    pub(crate) peers: usize,
}

/// The request mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mix {
    /// Only `query-lists`, after registering a few contacts and lists.
    Query,
    /// Each client its own contact and list, cycling `im-start`, `im-complete`, `leave`,
    /// `join`, `query-lists`: every answer is 200 on a correct server.
    Mixed,
    /// `register` with fresh names (start the server with a high contact limit).
    Register,
    /// `--peers N` peers in one list, one instant message at a time around the ring: the
    /// time from `im-start` to the message coming back, per ring and per hop, next to a
    /// ring of bare UDP forwarders.
    Ring,
}

/// How many alternating slices a measurement with `--echo` is cut into.
const ECHO_SLICES: u64 = 3;

/// Runs the benchmark described by `args` and prints its report.
pub(crate) fn run(args: &BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    if args.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    if args.mix == Mix::Ring {
        return ring::run(args);
    }
    let mut reports = Vec::new();
    if args.echo && !args.echo_only {
        // Side by side: the server and the echo loop take turns in short slices, so that a
        // drift of the machine (another tenant, frequency, the scheduler) weighs on both
        // alike rather than on whichever ran second.
        let echo = EchoServer::start()?;
        let slices = ECHO_SLICES;
        let slice = BenchArgs {
            duration: args.duration / slices as f64,
            requests: args.requests.map(|n| n.div_ceil(slices)),
            ..args.clone()
        };
        let (mut server, mut ceiling): (Option<Report>, Option<Report>) = (None, None);
        for _ in 0..slices {
            let r = measure(&slice, "server", args.server, args.mix)?;
            server = Some(match server {
                Some(acc) => acc.merge(r)?,
                None => r,
            });
            let r = measure(&slice, "echo", echo.addr, args.mix)?;
            ceiling = Some(match ceiling {
                Some(acc) => acc.merge(r)?,
                None => r,
            });
        }
        reports.extend(server);
        reports.extend(ceiling);
    } else if args.echo_only {
        let echo = EchoServer::start()?;
        reports.push(measure(args, "echo", echo.addr, args.mix)?);
    } else {
        reports.push(measure(args, "server", args.server, args.mix)?);
    }
    let mut out = io::stdout().lock();
    if args.json {
        let parts: Vec<String> = reports.iter().map(Report::json).collect();
        let ratio = ratio_json(&reports);
        writeln!(
            out,
            "{{\"mix\": \"{:?}\", \"clients\": {}, \"runs\": [{}]{}}}",
            args.mix,
            args.clients,
            parts.join(", "),
            ratio
        )?;
    } else {
        for r in &reports {
            r.print(&mut out)?;
        }
        if let [server, echo] = &reports[..] {
            writeln!(
                out,
                "server/echo: ops {:.2}, p99 latency {:.2}",
                server.ops() / echo.ops(),
                server.quantile_ms(0.99) / echo.quantile_ms(0.99)
            )?;
        }
    }
    Ok(())
}
