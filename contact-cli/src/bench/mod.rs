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
//! - `echo.rs`: the echo baselines, bare UDP echo loops (naive and batched) in this process.
//! - `ring.rs`: `--mix ring`, instant messages round a ring of in-process peers.
//! - `report.rs`: the figures of a measurement, printed or as JSON.

use std::io::{self, Write as _};
use std::net::SocketAddr;

use clap::{Args, ValueEnum};

mod echo;
mod load;
mod report;
mod ring;

use echo::{EchoKind, EchoServer};
use load::measure;
use report::{Report, ratio_json};

/// Measure a server: throughput, latency and losses.
///
/// The contacts it registers are removed at the end (`exit`), unless `--keep`; the lists it
/// creates stay (the protocol has no command to remove a list), with the same names on every
/// run, so running it again does not grow the server.
#[derive(Debug, Clone, Args)]
pub(crate) struct BenchArgs {
    /// The server to load (ours or the reference's).
    #[arg(long, default_value = "127.0.0.1:22000")]
    pub(crate) server: SocketAddr,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 8)]
    pub(crate) clients: usize,
    /// How long to run, in seconds (ignored with --requests); with --sweep, for each point.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) duration: f64,
    /// Stop after this many answered requests instead of after --duration.
    #[arg(long)]
    pub(crate) requests: Option<u64>,
    /// What the clients send.
    #[arg(long, value_enum, default_value_t = Mix::Query)]
    pub(crate) mix: Mix,
    /// Also drive two bare UDP echo loops started in this process, the same way: a naive one
    /// (one receive and one send per datagram) and a batched one (`recvmmsg`/`sendmmsg`, 32
    /// at a time); print the server's figures as a share of each. The three take turns in
    /// three slices of the duration, so that drift weighs on all alike.
    #[arg(long)]
    pub(crate) echo: bool,
    /// Measure only the in-process echo loops (no server needed).
    #[arg(long)]
    pub(crate) echo_only: bool,
    /// With --echo or --echo-only, also a durable echo loop whose file is in this directory
    /// (put it on the disk of the server's `--state`): the batched loop that writes each
    /// batch to the file and echoes it only once an `fdatasync` covers it, one sync at a
    /// time on a second thread (group commit). The ceiling of a server that makes every
    /// request durable before answering, on that disk.
    #[arg(long, value_name = "DIR")]
    pub(crate) durable_echo: Option<std::path::PathBuf>,
    /// How the cost grows: run with 1, 8, 64 and 256 clients (with --echo), or, with
    /// `--mix ring`, rings of 3, 20 and 100 peers; one report (or JSON line) per point.
    #[arg(long)]
    pub(crate) sweep: bool,
    /// Leave the contacts this run registered on the server.
    #[arg(long)]
    pub(crate) keep: bool,
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
    /// time from `im-start` to the message coming back, per ring and per hop, next to bare
    /// UDP baselines.
    Ring,
}

impl Mix {
    /// The mix as it is spelled on the command line (`query`, `mixed`, ...).
    pub(crate) fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// How many alternating slices a measurement with `--echo` is cut into.
const ECHO_SLICES: u64 = 3;

/// The client counts of `--sweep`.
const SWEEP_CLIENTS: [usize; 4] = [1, 8, 64, 256];

/// The ring sizes of `--mix ring --sweep`.
pub(super) const SWEEP_PEERS: [usize; 3] = [3, 20, 100];

/// Runs the benchmark described by `args` and prints its report. A reader that goes away
/// (`contact-cli bench | head`) ends it quietly.
pub(crate) fn run(args: &BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    match run_to_stdout(args) {
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

fn run_to_stdout(args: &BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    if args.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    if args.durable_echo.is_some()
        && (args.mix == Mix::Ring || !(args.echo || args.echo_only || args.sweep))
    {
        return Err("--durable-echo runs beside the echo loops: give --echo, --echo-only or --sweep (not with --mix ring)".into());
    }
    let mut out = io::stdout().lock();
    if !args.json {
        header(args, &mut out)?;
    }
    if args.mix == Mix::Ring {
        if args.sweep {
            for peers in SWEEP_PEERS {
                ring::run(
                    &BenchArgs {
                        peers,
                        ..args.clone()
                    },
                    &mut out,
                )?;
            }
            return Ok(());
        }
        return ring::run(args, &mut out);
    }
    if args.sweep {
        for clients in SWEEP_CLIENTS {
            let point = BenchArgs {
                clients,
                echo: !args.echo_only,
                ..args.clone()
            };
            if !args.json {
                writeln!(out, "\n{clients} client(s):")?;
            }
            one(&point, &mut out)?;
        }
        return Ok(());
    }
    one(args, &mut out)
}

/// What the run will do, before it starts: a person sees the settings with the figures.
fn header(args: &BenchArgs, out: &mut impl io::Write) -> io::Result<()> {
    let length = match args.requests {
        Some(n) => format!("{n} answered requests"),
        None => format!("{} s", args.duration),
    };
    if args.mix == Mix::Ring {
        let peers = if args.sweep {
            "rings of 3, 20 and 100 peers".to_owned()
        } else {
            format!("a ring of {} peers", args.peers)
        };
        return writeln!(
            out,
            "contact-cli bench: {peers} on loopback, server {}, {length}{}",
            args.server,
            if args.sweep { " each" } else { "" }
        );
    }
    let against = if args.echo_only {
        "the in-process echo loops only".to_owned()
    } else {
        format!("server {}", args.server)
    };
    let clients = if args.sweep {
        "1, 8, 64 and 256 clients".to_owned()
    } else {
        format!("{} client(s)", args.clients)
    };
    writeln!(
        out,
        "contact-cli bench: {} mix, {clients} (one request in flight each), {length}, against {against}",
        args.mix.name()
    )?;
    if args.echo || args.sweep {
        writeln!(
            out,
            "  beside a naive and a batched UDP echo loop in this process, taking turns in {ECHO_SLICES} slices"
        )?;
    }
    writeln!(
        out,
        "  timeout {} ms; registered contacts {}",
        args.timeout_ms,
        if args.keep {
            "kept (--keep)"
        } else {
            "removed at the end"
        }
    )
}

/// One measurement: the server alone, the echo loops alone, or the three side by side.
fn one(args: &BenchArgs, out: &mut impl io::Write) -> Result<(), Box<dyn std::error::Error>> {
    let mut reports: Vec<Report> = Vec::new();
    let echoes = || -> io::Result<Vec<(EchoKind, EchoServer)>> {
        let mut echoes = vec![
            (EchoKind::Naive, EchoServer::start_kind(EchoKind::Naive)?),
            (
                EchoKind::Batched,
                EchoServer::start_kind(EchoKind::Batched)?,
            ),
        ];
        if let Some(dir) = &args.durable_echo {
            echoes.push((EchoKind::Durable, EchoServer::start_durable(dir)?));
        }
        Ok(echoes)
    };
    if args.echo && !args.echo_only {
        // Side by side: the server and the echo loops take turns in short slices, so that a
        // drift of the machine (another tenant, frequency, the scheduler) weighs on all
        // alike rather than on whichever ran last.
        let echoes = echoes()?;
        let slices = ECHO_SLICES;
        let slice = BenchArgs {
            duration: args.duration / slices as f64,
            requests: args.requests.map(|n| n.div_ceil(slices)),
            ..args.clone()
        };
        let targets: Vec<(&str, SocketAddr)> = std::iter::once(("server", args.server))
            .chain(echoes.iter().map(|(kind, e)| (kind.target(), e.addr)))
            .collect();
        let mut acc: Vec<Option<Report>> = vec![None; targets.len()];
        for _ in 0..slices {
            for (slot, &(target, addr)) in acc.iter_mut().zip(&targets) {
                let r = measure(&slice, target, addr, args.mix)?;
                *slot = Some(match slot.take() {
                    Some(a) => a.merge(r)?,
                    None => r,
                });
            }
        }
        reports.extend(acc.into_iter().flatten());
    } else if args.echo_only {
        for (kind, echo) in echoes()? {
            reports.push(measure(args, kind.target(), echo.addr, args.mix)?);
        }
    } else {
        reports.push(measure(args, "server", args.server, args.mix)?);
    }
    if args.json {
        let parts: Vec<String> = reports.iter().map(Report::json).collect();
        writeln!(
            out,
            "{{\"mix\": \"{}\", \"clients\": {}, \"runs\": [{}]{}}}",
            args.mix.name(),
            args.clients,
            parts.join(", "),
            ratio_json(&reports)
        )?;
    } else {
        for r in &reports {
            r.print(out)?;
        }
        if let [server, naive, batched, ..] = &reports[..]
            && server.target == "server"
        {
            writeln!(
                out,
                "the server answered {:.2}x as many requests per second as a bare echo loop; its p99 latency is {:.2}x the echo's",
                server.ops() / naive.ops(),
                server.quantile_ms(0.99) / naive.quantile_ms(0.99)
            )?;
            writeln!(
                out,
                "the server answered {:.2}x as many requests per second as a batched echo loop (recvmmsg/sendmmsg, {} at a time); its p99 latency is {:.2}x that loop's",
                server.ops() / batched.ops(),
                echo::BATCH,
                server.quantile_ms(0.99) / batched.quantile_ms(0.99)
            )?;
        }
        let durable = reports
            .iter()
            .find(|r| r.target == EchoKind::Durable.target());
        if let (Some(first), Some(durable)) = (reports.first(), durable) {
            writeln!(
                out,
                "the {} answered {:.2}x as many requests per second as the durable echo loop (each batch synced before its echoes); its p99 latency is {:.2}x that loop's",
                if first.target == "server" {
                    "server"
                } else {
                    "naive echo loop"
                },
                first.ops() / durable.ops(),
                first.quantile_ms(0.99) / durable.quantile_ms(0.99)
            )?;
        }
    }
    out.flush()?;
    Ok(())
}
