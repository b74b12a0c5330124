//! `contact-cli demo`: the final demo of the Python system this project replaces (the
//! project's seed), played and checked.
//!
//! A server (in this process, or one given with `--server`, which must be empty) and the
//! five peers of that demo (Me, Myself, I, Foo, Bar), each with its own two sockets. The demo is a script
//! of typed lines, exactly what a user would type at each peer's prompt, parsed with
//! [`contact_proto::parse_line`] and sent with [`Peer::request`](contact_peer::Peer::request); each line carries the status
//! the seed's comments promise. Instant messages go round through [`Peer::im_start`](contact_peer::Peer::im_start) and
//! [`ImStarted::send`](contact_peer::ImStarted::send), and what every member shows is read
//! from [`Peer::events`](contact_peer::Peer::events) with a timeout: nothing here sleeps. No protocol rule lives here:
//! the script only states outcomes.
//!
//! The engine, [`run`], writes a transcript to any `Write` and returns a [`DemoReport`] of
//! every check; the subcommand prints it and exits 0 only if every check held.
//!
//! # Layout
//! - `script.rs`: the seed's final demo as typed lines and promised outcomes.
//! - `cast.rs`: the server, the relays and the five peers, set up and torn down.
//! - `checks.rs`: the steps that check more than a status (an instant message, the saved file).
//! - `transcript.rs`: the transcript's layout and the report of every check.
//!
//! ```text
//! contact-cli demo                                  five peers and a server on loopback
//! contact-cli demo --loss 0.2 --seed 7              the same through lossy relays
//! contact-cli demo --server 10.0.0.1:22000 --data-dir DIR \
//!     --peer-ip 10.0.0.2 --peer-netns h1 ...        peers in network namespaces (Linux, root)
//! contact-cli demo --server A1,A2,A3 --data-dir D1 --data-dir D2 --data-dir D3
//!                                                   a replicated registry's three nodes
//! ```

use std::io::{self, IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use contact_proto::{Command, parse_line};

mod cast;
mod checks;
mod script;
mod transcript;

pub(crate) use transcript::DemoReport;

use cast::{ask, set_up, strays};
use checks::{check_body, check_saved, im};
use script::{NAMES, Step, script};
use transcript::Transcript;

/// How long to wait for one ring event before the check fails, on a clean network.
/// Through lossy relays, where hops are sent again, the ring's own deadline for the largest
/// ring of the demo ([`cast::lossy_ring_wait`]).
const WAIT: Duration = Duration::from_secs(2);

/// Options of `contact-cli demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// The directory the server saves `config.txt` into (default: a new temporary directory,
    /// removed at the end). With `--server`, the server's own data directory, to check the
    /// saved file; with several servers (the nodes of a cluster, each saving into its own
    /// directory), once per server, in the same order.
    #[arg(long = "data-dir", value_name = "DIR", num_args = 1)]
    data_dirs: Vec<PathBuf>,
    /// Put a relay in front of the server and of each peer's instant-message port that
    /// drops this fraction of datagrams (and duplicates half as many, and reorders).
    #[arg(long, value_name = "FRACTION", value_parser = parse_loss)]
    loss: Option<f64>,
    /// The seed of the relays' random decisions (with `--loss`).
    #[arg(long, default_value_t = 1, requires = "loss")]
    seed: u64,
    /// Play against this running server instead of starting one in this process. It must be
    /// empty (no list, none of the five contacts): the demo checks every answer. The nodes
    /// of a replicated registry (`server --cluster`) as ADDR,ADDR,ADDR: the peers move to
    /// the next one when one does not answer, as `peer IP1,IP2,IP3 PORT` does.
    #[arg(
        long,
        value_name = "ADDR[,ADDR...]",
        value_delimiter = ',',
        num_args = 1,
        conflicts_with = "server_ip"
    )]
    server: Vec<SocketAddr>,
    /// The address the demo's own server listens on.
    #[arg(long, value_name = "IP", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    server_ip: IpAddr,
    /// The address each peer binds and registers: once for all five, or five times (Me,
    /// Myself, I, Foo, Bar).
    #[arg(long = "peer-ip", value_name = "IP", num_args = 1)]
    peer_ips: Vec<IpAddr>,
    /// Linux, as root: bind each peer's sockets inside this network namespace (a name under
    /// /run/netns, as made by `ip netns add`): once for all five, or five times.
    #[arg(long = "peer-netns", value_name = "NAME", num_args = 1)]
    peer_netns: Vec<String>,
    /// Colour the transcript: auto (only on a terminal), always or never.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    color: ColorChoice,
    /// After the N-th command typed (a request or an `im-start`), print `paused after line
    /// N` and wait for a line on
    /// standard input before going on: a point to inject a fault (stop a server, cut a
    /// host off) and see the demo's outcome unchanged.
    #[arg(long, value_name = "N")]
    pause_after: Option<usize>,
}

/// When to colour the transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ColorChoice {
    /// Only when standard output is a terminal and `NO_COLOR` is not set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

fn parse_loss(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..1.0).contains(&v) {
        Ok(v)
    } else {
        Err("a fraction in 0.0..1.0".into())
    }
}

/// Where the demo's server is.
#[derive(Debug, Clone)]
pub(crate) enum ServerChoice {
    /// Start one in this process, listening on this IP (a free port).
    Start(IpAddr),
    /// Use a running server, or the nodes of a replicated one (never empty).
    External(Vec<SocketAddr>),
}

/// What [`run`] plays against.
#[derive(Debug, Clone)]
pub(crate) struct DemoConfig {
    /// The server.
    pub(crate) server: ServerChoice,
    /// The IP each peer binds and registers (Me, Myself, I, Foo, Bar).
    pub(crate) peer_ips: [IpAddr; 5],
    /// The network namespace each peer's sockets are made in, if any.
    pub(crate) peer_netns: [Option<String>; 5],
    /// Lossy relays: the fraction of datagrams dropped, and the seed.
    pub(crate) loss: Option<(f64, u64)>,
    /// The server's data directory (for `save`), or each node's, in the order of the
    /// servers; empty: a temporary one (or, with an external server, the saved file is not
    /// checked).
    pub(crate) data_dirs: Vec<PathBuf>,
    /// Colour the transcript.
    pub(crate) colour: bool,
    /// How long to wait for each ring event.
    pub(crate) wait: Duration,
    /// Wait for a line on standard input after this many typed lines.
    pub(crate) pause_after: Option<usize>,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            server: ServerChoice::Start(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            peer_ips: [IpAddr::V4(Ipv4Addr::LOCALHOST); 5],
            peer_netns: Default::default(),
            loss: None,
            data_dirs: Vec::new(),
            colour: false,
            wait: WAIT,
            pause_after: None,
        }
    }
}

/// Why the demo could not be played at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum DemoError {
    /// Sockets, files, threads.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The transcript could not be written.
    #[error("cannot write the transcript: {0}")]
    Output(#[from] io::Error),
    /// The server given with `--server` already holds lists or the demo's contacts.
    #[error(
        "the server at {0} is not empty: {1}. The demo creates list_1 to list_4, registers Me, Myself, I, Foo and Bar and checks every answer, so it needs a server with nothing in it: start a new one, or leave out --server to let the demo start its own"
    )]
    NotEmpty(String, String),
    /// A line of the script could not be parsed (a bug of the script).
    #[error("the script line `{0}` does not parse: {1}")]
    Script(String, String),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> DemoError {
    let context = context.into();
    move |source| DemoError::Io { context, source }
}

/// `contact-cli demo`.
pub(crate) fn main(args: DemoArgs) -> ExitCode {
    let config = match config_from(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match run(&config, &mut out) {
        Ok(report) if report.passed() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        // The reader went away (`contact-cli demo | head`): what it wanted, it has.
        Err(DemoError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let _ = out.flush();
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn config_from(args: DemoArgs) -> Result<DemoConfig, String> {
    /// One value for all five peers, or one each.
    fn five<T: Clone>(v: Vec<T>, default: T, what: &str) -> Result<[T; 5], String> {
        match v.as_slice() {
            [] => Ok([(); 5].map(|()| default.clone())),
            [one] => Ok([(); 5].map(|()| one.clone())),
            _ => <[T; 5]>::try_from(v).map_err(|v| {
                format!(
                    "{what} is given {} times: give it once or five times",
                    v.len()
                )
            }),
        }
    }
    let server = if args.server.is_empty() {
        ServerChoice::Start(args.server_ip)
    } else {
        ServerChoice::External(args.server)
    };
    let default_ip = match &server {
        ServerChoice::Start(ip) => *ip,
        ServerChoice::External(addrs) if addrs.iter().all(|a| a.ip().is_loopback()) => {
            addrs[0].ip()
        }
        ServerChoice::External(_) => {
            if args.peer_ips.is_empty() {
                return Err("with a server that is not on loopback, give --peer-ip".into());
            }
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
    };
    let peer_netns = five(
        args.peer_netns.into_iter().map(Some).collect(),
        None,
        "--peer-netns",
    )?;
    if args.loss.is_some() && peer_netns.iter().any(Option::is_some) {
        return Err("--loss and --peer-netns cannot be combined".into());
    }
    let servers = match &server {
        ServerChoice::Start(_) => 1,
        ServerChoice::External(addrs) => addrs.len(),
    };
    if args.loss.is_some() && servers > 1 {
        return Err("--loss takes one server: its relay stands in front of it".into());
    }
    if !args.data_dirs.is_empty() && args.data_dirs.len() != servers {
        return Err(format!(
            "--data-dir is given {} times for {servers} server(s): give it once per server",
            args.data_dirs.len()
        ));
    }
    let colour = match args.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    Ok(DemoConfig {
        server,
        peer_ips: five(args.peer_ips, default_ip, "--peer-ip")?,
        peer_netns,
        loss: args.loss.map(|l| (l, args.seed)),
        data_dirs: args.data_dirs,
        colour,
        wait: if args.loss.is_some() {
            cast::lossy_ring_wait(NAMES.len())
        } else {
            WAIT
        },
        pause_after: args.pause_after,
    })
}

/// `A1` or `A1,A2,A3`.
fn servers_text(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `--pause-after`: says so, then waits for a line on standard input (or its end).
fn pause(t: &mut Transcript<'_, impl Write>, typed: usize) -> Result<(), DemoError> {
    t.info(&format!("paused after line {typed}: press Enter to go on"))?;
    t.out.flush()?;
    let mut line = String::new();
    io::stdin()
        .read_line(&mut line)
        .map_err(io_err("cannot read standard input"))?;
    Ok(())
}

/// Plays the final demo as `config` says, writing the transcript to `out`.
///
/// `Err` only when the demo cannot be set up or its output cannot be written; a documented
/// outcome that does not hold is a failed [`Check`](transcript::Check) in the report, and the demo goes on.
pub(crate) fn run(config: &DemoConfig, out: &mut impl Write) -> Result<DemoReport, DemoError> {
    let started = Instant::now();
    let mut t = Transcript {
        out,
        colour: config.colour,
        report: DemoReport::default(),
    };
    let mut cast = set_up(config, &mut t)?;
    if let ServerChoice::External(addrs) = &config.server {
        cast::check_empty(&cast).map_err(|why| DemoError::NotEmpty(servers_text(addrs), why))?;
    }
    let (ips, ports) = (cast.ips, cast.ports);
    let mut typed = 0;

    for step in script(&ips, &ports) {
        // A command typed at a peer's prompt: a request, or an `im-start` and its text.
        if matches!(step, Step::Type { .. } | Step::Im { .. }) {
            if config.pause_after == Some(typed) && typed > 0 {
                pause(&mut t, typed)?;
            }
            typed += 1;
        }
        match step {
            Step::Heading(text) => t.heading(text)?,
            Step::Type { who, line, expect } => {
                t.typed(who, &line)?;
                let answer = ask(&cast, who, &line)?;
                t.answer(who, &line, expect, answer.as_ref())?;
                if let Err(e) = &answer {
                    // The server does not answer (after the client's retries): every
                    // further step would wait as long.
                    t.check("the server answers".into(), Some(e.clone()))?;
                    break;
                }
                if let (Ok(a), Ok(Some(parsed))) = (&answer, parse_line(&line)) {
                    check_body(&mut t, &parsed.command, a)?;
                    if matches!(parsed.command, Command::Exit { .. }) && a.status.is_ok() {
                        // The program of a peer that exited ends: drop it, after a look at
                        // what it was shown and no step expected.
                        if let Some(peer) = cast.peers[who].take() {
                            cast.stray.extend(strays(who, &peer));
                        }
                    }
                }
            }
            Step::Im {
                who,
                list,
                text,
                ring,
            } => {
                if !im(&mut t, &mut cast, config.wait, (who, list, text, ring))? {
                    break;
                }
            }
            Step::CheckSaved => {
                check_saved(&mut t, &cast.data_dirs, &ips, &ports)?;
            }
        }
    }
    t.heading("nobody saw anything else")?;
    let mut stray = std::mem::take(&mut cast.stray);
    for (i, peer) in cast.peers.iter().enumerate() {
        if let Some(peer) = peer {
            stray.extend(strays(i, peer));
        }
    }
    t.check(
        "no peer received a message it was not meant to, or twice".into(),
        if stray.is_empty() {
            None
        } else {
            Some(stray.join("; "))
        },
    )?;
    cast.peers.clear();
    if let Some(server) = cast.server.take() {
        match server.shutdown() {
            Ok(registry) => {
                let left = registry.contacts().count();
                t.check(
                    "the server's registry holds no contact after every exit".into(),
                    (left != 0).then(|| format!("{left} contact(s) left")),
                )?;
            }
            Err(e) => t.check("the server shuts down cleanly".into(), Some(e.to_string()))?,
        }
    }
    t.report.elapsed = started.elapsed();
    t.summary()?;
    Ok(t.report)
}
