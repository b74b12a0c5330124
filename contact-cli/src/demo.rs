//! `contact-cli demo`: the seed's final demo, played and checked.
//!
//! A server (in this process, or one given with `--server`) and the five peers of the seed's
//! final demo (Me, Myself, I, Foo, Bar), each with its own two sockets. The demo is a script
//! of typed lines, exactly what a user would type at each peer's prompt, parsed with
//! [`contact_proto::parse_line`] and sent with [`Peer::request`]; each line carries the status
//! the seed's comments promise. Instant messages go round through [`Peer::start_im`], and
//! what every member shows is read from [`Peer::events`] with a timeout: nothing here sleeps.
//! No protocol rule lives here: the script only states outcomes.
//!
//! The engine, [`run`], writes a transcript to any `Write` and returns a [`DemoReport`] of
//! every check; the subcommand prints it and exits 0 only if every check held.
//!
//! ```text
//! contact-cli demo                                  five peers and a server on loopback
//! contact-cli demo --loss 0.2 --seed 7              the same through lossy relays
//! contact-cli demo --server 10.0.0.1:22000 --data-dir DIR \
//!     --peer-ip 10.0.0.2 --peer-netns h1 ...        peers in network namespaces (Linux, root)
//! ```

use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use contact_peer::relay::{Impairment, Relay};
use contact_peer::{
    ClientConfig, Peer, PeerConfig, PortChoice, RingConfig, RingEvent, Server, ServerConfig,
    ServerHandle,
};
use contact_proto::{Answer, Body, Command, ImStartBody, ListName, Status, parse_line};

/// The peers of the seed's final demo, in the order they register.
pub(crate) const NAMES: [&str; 5] = ["Me", "Myself", "I", "Foo", "Bar"];

/// How long to wait for one ring event before the check fails, on a clean network.
const WAIT: Duration = Duration::from_secs(2);
/// The same through lossy relays, where requests are retried.
const LOSSY_WAIT: Duration = Duration::from_secs(5);

/// Options of `contact-cli demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// The directory the server saves `config.txt` into (default: a new temporary directory,
    /// removed at the end). With `--server`, the server's own data directory, to check the
    /// saved file.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Put a relay in front of the server and of each peer's instant-message port that
    /// drops this fraction of datagrams (and duplicates half as many, and reorders).
    #[arg(long, value_name = "FRACTION", value_parser = parse_loss)]
    loss: Option<f64>,
    /// The seed of the relays' random decisions (with `--loss`).
    #[arg(long, default_value_t = 1, requires = "loss")]
    seed: u64,
    /// Play against this running server instead of starting one in this process.
    #[arg(long, value_name = "ADDR", conflicts_with = "server_ip")]
    server: Option<SocketAddr>,
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
    /// Use a running server.
    External(SocketAddr),
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
    /// The server's data directory (for `save`); `None`: a temporary one (or, with an
    /// external server, the saved file is not checked).
    pub(crate) data_dir: Option<PathBuf>,
    /// Colour the transcript.
    pub(crate) colour: bool,
    /// How long to wait for each ring event.
    pub(crate) wait: Duration,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            server: ServerChoice::Start(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            peer_ips: [IpAddr::V4(Ipv4Addr::LOCALHOST); 5],
            peer_netns: Default::default(),
            loss: None,
            data_dir: None,
            colour: false,
            wait: WAIT,
        }
    }
}

/// One documented outcome and whether it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Check {
    /// What was expected.
    pub(crate) what: String,
    /// Whether it held; if not, what happened instead.
    pub(crate) failure: Option<String>,
}

/// Every check of a run.
#[derive(Debug, Default)]
pub(crate) struct DemoReport {
    /// In the order they were made.
    pub(crate) checks: Vec<Check>,
    /// How long the demo took.
    pub(crate) elapsed: Duration,
}

impl DemoReport {
    /// The checks that did not hold.
    pub(crate) fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.failure.is_some())
    }

    /// Whether every check held.
    pub(crate) fn passed(&self) -> bool {
        self.failures().next().is_none()
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
    let server = match args.server {
        Some(addr) => ServerChoice::External(addr),
        None => ServerChoice::Start(args.server_ip),
    };
    let default_ip = match &server {
        ServerChoice::Start(ip) => *ip,
        ServerChoice::External(addr) if addr.ip().is_loopback() => addr.ip(),
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
        data_dir: args.data_dir,
        colour,
        wait: if args.loss.is_some() {
            LOSSY_WAIT
        } else {
            WAIT
        },
    })
}

/// One line of the script.
#[derive(Debug, Clone)]
enum Step {
    /// A comment of the seed's script: a heading of the transcript.
    Heading(&'static str),
    /// Peer `who` types `line`; the answer must have `expect`.
    Type {
        who: usize,
        line: String,
        expect: Status,
    },
    /// Peer `who` types `im-start LIST NAME`, then `text`: the server answers 200 with a
    /// ring of `ring` (in that order), every other member shows the message, and the
    /// initiator is told it went round.
    Im {
        who: usize,
        list: &'static str,
        text: &'static str,
        ring: &'static [usize],
    },
    /// The saved `config.txt` holds exactly what the registry held.
    CheckSaved,
}

const ME: usize = 0;
const MYSELF: usize = 1;
const I: usize = 2;
const FOO: usize = 3;
const BAR: usize = 4;

/// The seed's final demo. `ports[i]` is the port peer `i` registers.
fn script(ips: &[IpAddr; 5], ports: &[u16; 5]) -> Vec<Step> {
    use Step::{CheckSaved, Heading, Im};
    let ty = |who: usize, line: &str, expect: Status| Step::Type {
        who,
        line: line.to_owned(),
        expect,
    };
    let ok = |who: usize, line: &str| ty(who, line, Status::Ok);
    let mut s = vec![Heading(
        "each peer registers with its own address and port P",
    )];
    for who in 0..5 {
        s.push(ok(
            who,
            &format!("register {} {} {}", NAMES[who], ips[who], ports[who]),
        ));
    }
    s.extend([
        Heading("contains all five contacts"),
        ok(ME, "create list_1"),
        Heading("contains Me, Myself, and I"),
        ok(ME, "create list_2"),
        Heading("contains Foo and Bar"),
        ok(ME, "create list_3"),
        Heading("contains Foo"),
        ok(ME, "create list_4"),
        Heading("run on any client terminal"),
        ok(ME, "query-lists"),
        ok(ME, "join list_1 Me"),
        ok(ME, "join list_2 Me"),
        ok(MYSELF, "join list_1 Myself"),
        ok(MYSELF, "join list_2 Myself"),
        ok(I, "join list_1 I"),
        ok(I, "join list_2 I"),
        ok(FOO, "join list_1 Foo"),
        ok(FOO, "join list_3 Foo"),
        ok(FOO, "join list_4 Foo"),
        ok(BAR, "join list_1 Bar"),
        ok(BAR, "join list_3 Bar"),
        Heading(
            "demonstrates use of same group list across multiple im's\n\
             also demonstrates intersecting contact list",
        ),
        Im {
            who: ME,
            list: "list_1",
            text: "Hello",
            ring: &[ME, MYSELF, I, FOO, BAR],
        },
        Im {
            who: ME,
            list: "list_1",
            text: "World",
            ring: &[ME, MYSELF, I, FOO, BAR],
        },
        Heading(
            "demonstrates that contacts can receive message from different groups\n\
             also demonstrates disjoint contact list",
        ),
        Im {
            who: MYSELF,
            list: "list_2",
            text: "Hi list_2",
            ring: &[MYSELF, ME, I],
        },
        Heading("show that leave can't be executed due to ongoing im"),
        ty(ME, "leave list_1 Me", Status::ImOngoing),
        Heading("show that for each im-start there must be a corresponding im-complete"),
        ok(ME, "im-complete list_1 Me"),
        ok(ME, "im-complete list_1 Me"),
        Heading("show that each im-complete must correspond to an im-start"),
        ty(ME, "im-complete list_1 Me", Status::NoImPending),
        Heading("show that leave function works after executing required im-complete's"),
        ok(ME, "leave list_1 Me"),
        Heading("demonstrate disjoint contact list"),
        Im {
            who: FOO,
            list: "list_3",
            text: "Hi Bar",
            ring: &[FOO, BAR],
        },
        Im {
            who: BAR,
            list: "list_3",
            text: "Hi Foo",
            ring: &[BAR, FOO],
        },
        ok(FOO, "im-complete list_3 Foo"),
        ok(BAR, "im-complete list_3 Bar"),
        Heading(
            "demonstrate im-start on contact list with only one contact \
             (no machine should receive the message)",
        ),
        Im {
            who: FOO,
            list: "list_4",
            text: "Anyone here?",
            ring: &[FOO],
        },
        Heading("show that join can't be executed due to ongoing im"),
        ty(ME, "join list_4 Me", Status::ImOngoing),
        ok(FOO, "im-complete list_4 Foo"),
        Heading("save current config to file\nparticularly, Me should be missing from list_1"),
        ok(ME, "save config.txt"),
        CheckSaved,
        Heading("show that exit can't be executed due to ongoing im"),
        ty(MYSELF, "exit Myself", Status::ImOngoing),
        ok(MYSELF, "im-complete list_2 Myself"),
        Heading("show that Myself can now execute exit after completing im"),
        ok(MYSELF, "exit Myself"),
        ok(ME, "exit Me"),
        ok(I, "exit I"),
        ok(FOO, "exit Foo"),
        ok(BAR, "exit Bar"),
    ]);
    s
}

/// The file `save config.txt` must write at that point of the script: Me is missing from
/// list_1.
fn expected_saved(ips: &[IpAddr; 5], ports: &[u16; 5]) -> String {
    let line = |i: usize| format!("{} {} {}\n", NAMES[i], ips[i], ports[i]);
    let mut s = String::from("5\n");
    (0..5).for_each(|i| s.push_str(&line(i)));
    s.push_str("4\n");
    let lists: [(&str, &[usize]); 4] = [
        ("list_1", &[MYSELF, I, FOO, BAR]),
        ("list_2", &[ME, MYSELF, I]),
        ("list_3", &[FOO, BAR]),
        ("list_4", &[FOO]),
    ];
    for (name, members) in lists {
        let _ = writeln!(s, "{name}\n{}", members.len());
        members.iter().for_each(|&i| s.push_str(&line(i)));
    }
    s
}

/// The demo's peers and what runs them; dropped at the end (peers first).
struct Cast {
    /// Me, Myself, I, Foo, Bar; `None` once exited.
    peers: Vec<Option<Peer>>,
    /// The IP each peer registers.
    ips: [IpAddr; 5],
    /// The port P each peer registers (with relays: the port below its relay's).
    ports: [u16; 5],
    /// Where the server saves, when known.
    data_dir: Option<PathBuf>,
    /// Relays in front of each peer's instant-message port (lossy runs), kept alive.
    _im_relays: Vec<Relay>,
    _server_relay: Option<Relay>,
    server: Option<ServerHandle>,
    /// What exited peers were shown that no step expected.
    stray: Vec<String>,
    _temp: Option<tempfile::TempDir>,
}

/// Plays the seed's final demo as `config` says, writing the transcript to `out`.
///
/// `Err` only when the demo cannot be set up or its output cannot be written; a documented
/// outcome that does not hold is a failed [`Check`] in the report, and the demo goes on.
pub(crate) fn run(config: &DemoConfig, out: &mut impl Write) -> Result<DemoReport, DemoError> {
    let started = Instant::now();
    let mut t = Transcript {
        out,
        colour: config.colour,
        report: DemoReport::default(),
    };
    let mut cast = set_up(config, &mut t)?;
    let (ips, ports) = (cast.ips, cast.ports);

    for step in script(&ips, &ports) {
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
                check_saved(&mut t, cast.data_dir.as_deref(), &ips, &ports)?;
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

/// Starts the server (or finds it), the relays of a lossy run and the five peers, and says
/// where they are.
fn set_up(config: &DemoConfig, t: &mut Transcript<'_, impl Write>) -> Result<Cast, DemoError> {
    let (data_dir, temp) = match (&config.data_dir, &config.server) {
        (Some(dir), _) => (Some(dir.clone()), None),
        (None, ServerChoice::Start(_)) => {
            let temp = tempfile::Builder::new()
                .prefix("contact-demo-")
                .tempdir()
                .map_err(io_err("cannot make a temporary data directory"))?;
            (Some(temp.path().to_path_buf()), Some(temp))
        }
        (None, ServerChoice::External(_)) => (None, None),
    };
    let (server, server_addr) = match &config.server {
        ServerChoice::Start(ip) => {
            let server_config = ServerConfig {
                data_dir: data_dir.clone().unwrap_or_default(),
                ..ServerConfig::default()
            };
            let addr = SocketAddr::new(*ip, 0);
            let handle = Server::bind(addr, server_config)
                .and_then(Server::spawn)
                .map_err(io_err(format!("cannot start a server on {addr}")))?;
            let addr = handle.local_addr();
            (Some(handle), addr)
        }
        ServerChoice::External(addr) => (None, *addr),
    };
    t.info(&format!(
        "server {server_addr}{}",
        if server.is_some() {
            " (in this process)"
        } else {
            ""
        }
    ))?;
    match (&data_dir, &temp) {
        (Some(dir), Some(_)) => t.info(&format!(
            "data directory {} (temporary: removed at the end; --data-dir keeps it)",
            dir.display()
        ))?,
        (Some(dir), None) => t.info(&format!("data directory {}", dir.display()))?,
        (None, _) => t.info("data directory of the external server unknown: the saved file is not checked (give --data-dir)")?,
    }

    // Relays: one in front of the server for every peer, one in front of each peer's
    // instant-message port. A peer registers the port just below its relay's, because
    // instant messages go to the registered port + 1.
    let server_relay = match config.loss {
        Some((loss, seed)) => {
            let r = Relay::start(
                SocketAddr::new(server_addr.ip(), 0),
                server_addr,
                Impairment::lossy(loss, seed),
            )
            .map_err(io_err("cannot start the server's relay"))?;
            t.info(&format!(
                "lossy network: {:.0}% loss (seed {seed}); peers talk to the server through {}",
                loss * 100.0,
                r.addr()
            ))?;
            Some(r)
        }
        None => None,
    };
    let peer_server = server_relay.as_ref().map_or(server_addr, Relay::addr);
    let peer_config = if config.loss.is_some() {
        // More patience than the defaults, so that one run at 20% loss in each direction
        // all but never gives up on a request or skips a ring member.
        PeerConfig {
            client: ClientConfig {
                initial_timeout: Duration::from_millis(100),
                max_timeout: Duration::from_millis(400),
                max_sends: 16,
                ..ClientConfig::default()
            },
            ring: RingConfig {
                initial_timeout: Duration::from_millis(100),
                max_timeout: Duration::from_millis(500),
                max_sends: 12,
                ..RingConfig::default()
            },
        }
    } else {
        PeerConfig::default()
    };
    let mut peers = Vec::new();
    let mut im_relays = Vec::new();
    let mut registered = [(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0u16); 5];
    for i in 0..5 {
        let ip = config.peer_ips[i];
        let peer = match &config.peer_netns[i] {
            None => Peer::bind_with(ip, peer_server, PortChoice::Ephemeral, peer_config.clone())
                .map_err(io_err(format!("cannot bind {}'s ports on {ip}", NAMES[i])))?,
            Some(ns) => netns::bind_peer(ns, ip, peer_server, peer_config.clone()).map_err(
                io_err(format!(
                    "cannot bind {}'s ports on {ip} in network namespace {ns}",
                    NAMES[i]
                )),
            )?,
        };
        let mut port = peer.control_addr().port();
        let mut via = String::new();
        if let Some((loss, seed)) = config.loss {
            let r = Relay::start(
                SocketAddr::new(ip, 0),
                peer.im_addr(),
                Impairment::lossy(loss, seed.wrapping_add(1 + i as u64)),
            )
            .map_err(io_err(format!("cannot start {}'s relay", NAMES[i])))?;
            port = r.addr().port() - 1;
            via = format!(", messages through a relay on {}", r.addr());
            im_relays.push(r);
        }
        registered[i] = (ip, port);
        t.info(&format!(
            "{:<6} on {} (P) and {} (P+1){}{via}",
            NAMES[i],
            peer.control_addr(),
            peer.im_addr().port(),
            config.peer_netns[i]
                .as_ref()
                .map(|ns| format!(" in namespace {ns}"))
                .unwrap_or_default(),
        ))?;
        peers.push(Some(peer));
    }
    Ok(Cast {
        peers,
        ips: registered.map(|(ip, _)| ip),
        ports: registered.map(|(_, p)| p),
        data_dir,
        _im_relays: im_relays,
        _server_relay: server_relay,
        server,
        stray: Vec::new(),
        _temp: temp,
    })
}

/// What peer `who` was shown that no step waited for.
fn strays(who: usize, peer: &Peer) -> Vec<String> {
    peer.events()
        .try_iter()
        .filter(|e| !matches!(e, RingEvent::Invalid { .. }))
        .map(|e| format!("{}: {e:?}", NAMES[who]))
        .collect()
}

/// Sends one typed line from peer `who`.
fn ask(cast: &Cast, who: usize, line: &str) -> Result<Result<Answer, String>, DemoError> {
    let parsed = parse_line(line)
        .map_err(|e| DemoError::Script(line.into(), e.to_string()))?
        .ok_or_else(|| DemoError::Script(line.into(), "empty".into()))?;
    let Some(peer) = &cast.peers[who] else {
        return Ok(Err(format!("{} has exited", NAMES[who])));
    };
    Ok(peer.request(parsed.command).map_err(|e| e.to_string()))
}

/// Checks the body of answers that carry one: `query-lists` lists the four lists.
fn check_body(t: &mut Transcript<'_, impl Write>, cmd: &Command, a: &Answer) -> io::Result<()> {
    if let (Command::QueryLists, Some(Body::Lists(lists))) = (cmd, &a.body) {
        let got: Vec<&str> = lists.list_names.iter().map(ListName::as_str).collect();
        let want = ["list_1", "list_2", "list_3", "list_4"];
        t.check(
            format!("query-lists lists {}", want.join(", ")),
            (got != want).then(|| format!("got {}", got.join(", "))),
        )?;
    }
    Ok(())
}

/// An `im-start` step: the answer, the ring, every member's display, the completion.
fn im(
    t: &mut Transcript<'_, impl Write>,
    cast: &mut Cast,
    wait: Duration,
    (who, list, text, ring): (usize, &str, &str, &[usize]),
) -> Result<bool, DemoError> {
    let line = format!("im-start {list} {}", NAMES[who]);
    t.typed(who, &line)?;
    t.typed(who, &format!("  {text}"))?;
    let answer = ask(cast, who, &line)?;
    t.answer(who, &line, Status::Ok, answer.as_ref())?;
    let body: ImStartBody = match answer {
        Ok(Answer {
            body: Some(Body::ImStart(body)),
            ..
        }) => body,
        Ok(_) => return Ok(true),
        Err(e) => {
            t.check("the server answers".into(), Some(e))?;
            return Ok(false);
        }
    };
    let got: Vec<&str> = body.contact_list.iter().map(|m| m.name.as_str()).collect();
    let want: Vec<&str> = ring.iter().map(|&i| NAMES[i]).collect();
    t.check(
        format!(
            "the ring of {list} from {} is {}",
            NAMES[who],
            want.join(", ")
        ),
        (got != want).then(|| format!("it is {}", got.join(", "))),
    )?;
    let list_name: ListName = list
        .parse()
        .map_err(|e: contact_proto::NameError| DemoError::Script(list.into(), e.to_string()))?;
    let Some(initiator) = &cast.peers[who] else {
        return Ok(true);
    };
    if let Err(e) = initiator.start_im(Some(list_name.clone()), body, text) {
        t.check(
            format!("{} sends the message", NAMES[who]),
            Some(e.to_string()),
        )?;
        return Ok(true);
    }
    // Once a member has not seen the message, the ring is broken there: the members after
    // it are only looked at, not waited for.
    let mut wait = wait;
    for &member in &ring[1..] {
        let Some(peer) = &cast.peers[member] else {
            continue;
        };
        let (seen, others) = wait_for(peer, wait, |e| {
            matches!(e, RingEvent::Message { sender, list: Some(l), text: got }
                if sender.as_str() == NAMES[who] && *l == list_name && got == text)
        });
        unexpected(t, &mut cast.stray, member, others)?;
        if seen.is_some() {
            t.saw(member, &format!("[{list}] {}: {text}", NAMES[who]), true)?;
        } else {
            wait = Duration::ZERO;
            t.saw(member, "nothing", false)?;
        }
        t.check_quiet(
            format!("{} sees [{list}] {}: {text}", NAMES[member], NAMES[who]),
            seen.is_none().then(|| "it did not arrive".to_owned()),
        );
    }
    // A list of one sends nothing: the completion is there as soon as `start_im` returns.
    let wait = if ring.len() == 1 {
        Duration::ZERO
    } else {
        wait
    };
    let (done, others) = wait_for(initiator, wait, |e| {
        matches!(e, RingEvent::Completed { initiator, list: Some(l), members, skipped, .. }
            if initiator.as_str() == NAMES[who] && *l == list_name && *members == ring.len()
                && skipped.is_empty())
    });
    unexpected(t, &mut cast.stray, who, others)?;
    let hint = if done.is_some() {
        format!(
            "your message has gone round {} member(s): send `im-complete {list} {}`",
            ring.len(),
            NAMES[who]
        )
    } else {
        "nothing: the message did not come back".to_owned()
    };
    t.told(who, &hint, done.is_some())?;
    t.check_quiet(
        format!("{}'s message on {list} goes round", NAMES[who]),
        done.is_none().then(|| "it did not come back".to_owned()),
    );
    Ok(true)
}

/// Waits up to `wait` for the ring event `want` accepts; returns it (if it came) and every
/// other event that came first (skipped datagrams aside).
fn wait_for(
    peer: &Peer,
    wait: Duration,
    want: impl Fn(&RingEvent) -> bool,
) -> (Option<RingEvent>, Vec<RingEvent>) {
    let deadline = Instant::now() + wait;
    let mut others = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match peer.events().recv_timeout(left) {
            Ok(RingEvent::Invalid { from, reason }) => {
                tracing::debug!(%from, %reason, "skipped datagram");
            }
            Ok(e) if want(&e) => return (Some(e), others),
            Ok(e) => others.push(e),
            Err(_) => return (None, others),
        }
    }
}

/// Shows events no step expected (a message shown twice, or to a non-member) and keeps them
/// for the final check.
fn unexpected(
    t: &mut Transcript<'_, impl Write>,
    stray: &mut Vec<String>,
    who: usize,
    events: Vec<RingEvent>,
) -> io::Result<()> {
    for e in events {
        let shown = match &e {
            RingEvent::Message { sender, list, text } => {
                let list = list.as_ref().map_or("?", ListName::as_str);
                format!("[{list}] {sender}: {text}   (not expected here)")
            }
            other => format!("{other:?}   (not expected here)"),
        };
        t.saw(who, &shown, false)?;
        stray.push(format!("{}: {e:?}", NAMES[who]));
    }
    Ok(())
}

fn check_saved(
    t: &mut Transcript<'_, impl Write>,
    dir: Option<&Path>,
    ips: &[IpAddr; 5],
    ports: &[u16; 5],
) -> io::Result<()> {
    let Some(dir) = dir else {
        return t.info("(the saved file is not checked: its directory is unknown)");
    };
    let path = dir.join("config.txt");
    let want = expected_saved(ips, ports);
    match std::fs::read_to_string(&path) {
        Ok(got) => {
            t.info(&format!("{}:", path.display()))?;
            for line in got.lines() {
                t.info(&format!("  | {line}"))?;
            }
            t.check(
                "config.txt holds the registry, Me missing from list_1".into(),
                (got != want).then(|| format!("expected:\n{want}got:\n{got}")),
            )
        }
        Err(e) => t.check(
            "config.txt holds the registry, Me missing from list_1".into(),
            Some(format!("cannot read {}: {e}", path.display())),
        ),
    }
}

/// The transcript's layout, and the report it fills.
struct Transcript<'a, W: Write> {
    out: &'a mut W,
    colour: bool,
    report: DemoReport,
}

/// The widest name, for alignment.
const NAME_WIDTH: usize = 6;
const INDENT: &str = "          ";

impl<W: Write> Transcript<'_, W> {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    fn info(&mut self, text: &str) -> io::Result<()> {
        writeln!(self.out, "{}", self.paint("2", text))
    }

    fn heading(&mut self, text: &str) -> io::Result<()> {
        writeln!(self.out)?;
        for line in text.lines() {
            let line = self.paint("1", &format!("# {line}"));
            writeln!(self.out, "{line}")?;
        }
        Ok(())
    }

    fn typed(&mut self, who: usize, line: &str) -> io::Result<()> {
        let name = self.paint("36", &format!("{:>NAME_WIDTH$}>", NAMES[who]));
        writeln!(self.out, "{name} {line}")
    }

    /// The answer to `line`, checked against `expect`.
    fn answer(
        &mut self,
        who: usize,
        line: &str,
        expect: Status,
        answer: Result<&Answer, &String>,
    ) -> io::Result<()> {
        let what = format!("{}> {line}: {}", NAMES[who], expect);
        let (shown, failure) = match answer {
            Ok(a) => {
                let mut shown = a.status.to_string();
                if let Some(Body::Lists(lists)) = &a.body {
                    let names: Vec<&str> = lists.list_names.iter().map(ListName::as_str).collect();
                    let _ = write!(shown, ": {}", names.join(", "));
                }
                if let Some(Body::ImStart(body)) = &a.body {
                    let names: Vec<&str> =
                        body.contact_list.iter().map(|m| m.name.as_str()).collect();
                    let _ = write!(shown, "  ring of {}: {}", names.len(), names.join(", "));
                }
                let failure = (a.status != expect).then(|| format!("got {}", a.status));
                (shown, failure)
            }
            Err(e) => (format!("error: {e}"), Some(e.clone())),
        };
        let mark = self.mark(failure.is_none());
        let shown = if failure.is_none() {
            shown
        } else {
            format!("{shown}   (expected {expect})")
        };
        writeln!(self.out, "{INDENT}{mark}{shown}")?;
        self.check_quiet(what, failure);
        Ok(())
    }

    /// What peer `who` showed.
    fn saw(&mut self, who: usize, text: &str, ok: bool) -> io::Result<()> {
        let mark = self.mark(ok);
        writeln!(
            self.out,
            "{INDENT}{mark}{:<NAME_WIDTH$} saw: {text}",
            NAMES[who]
        )
    }

    /// What peer `who` was told about its own message.
    fn told(&mut self, who: usize, text: &str, ok: bool) -> io::Result<()> {
        let mark = self.mark(ok);
        writeln!(
            self.out,
            "{INDENT}{mark}{:<NAME_WIDTH$} was told: {text}",
            NAMES[who]
        )
    }

    fn mark(&self, ok: bool) -> String {
        if ok {
            "  ".into()
        } else {
            self.paint("31;1", "! ")
        }
    }

    /// A check printed as its own line.
    fn check(&mut self, what: String, failure: Option<String>) -> io::Result<()> {
        let line = match &failure {
            None => self.paint("32", &format!("ok: {what}")),
            Some(f) => self.paint("31;1", &format!("FAILED: {what}: {f}")),
        };
        writeln!(self.out, "{INDENT}{line}")?;
        self.check_quiet(what, failure);
        Ok(())
    }

    /// A check already shown by the line that printed it.
    fn check_quiet(&mut self, what: String, failure: Option<String>) {
        self.report.checks.push(Check { what, failure });
    }

    fn summary(&mut self) -> io::Result<()> {
        writeln!(self.out)?;
        let total = self.report.checks.len();
        let failed: Vec<Check> = self.report.failures().cloned().collect();
        let secs = self.report.elapsed.as_secs_f64();
        if failed.is_empty() {
            let line = format!("demo passed: all {total} checks held ({secs:.2} s)");
            let line = self.paint("32;1", &line);
            writeln!(self.out, "{line}")
        } else {
            let line = format!(
                "demo FAILED: {} of {total} checks did not hold ({secs:.2} s):",
                failed.len()
            );
            let line = self.paint("31;1", &line);
            writeln!(self.out, "{line}")?;
            for c in failed {
                writeln!(
                    self.out,
                    "  - {}: {}",
                    c.what,
                    c.failure.unwrap_or_default()
                )?;
            }
            Ok(())
        }
    }
}

/// Binding a peer's sockets inside a network namespace.
mod netns {
    use std::io;
    use std::net::{IpAddr, SocketAddr};

    use contact_peer::{Peer, PeerConfig, PortChoice};

    /// Makes the peer on a thread that has entered namespace `name` (`/run/netns/NAME`):
    /// its sockets, and so every datagram it sends or receives, belong to that namespace.
    /// The thread ends; the sockets keep their namespace.
    #[cfg(target_os = "linux")]
    pub(super) fn bind_peer(
        name: &str,
        ip: IpAddr,
        server: SocketAddr,
        config: PeerConfig,
    ) -> io::Result<Peer> {
        let path = std::path::Path::new("/run/netns").join(name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = std::fs::File::open(&path)?;
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::from)?;
                Peer::bind_with(ip, server, PortChoice::Ephemeral, config)
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
        })
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn bind_peer(
        _name: &str,
        _ip: IpAddr,
        _server: SocketAddr,
        _config: PeerConfig,
    ) -> io::Result<Peer> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "network namespaces are Linux only",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_parses_and_follows_the_seed() {
        let ips = [IpAddr::V4(Ipv4Addr::LOCALHOST); 5];
        let steps = script(&ips, &[22000, 22002, 22004, 22006, 22008]);
        for step in &steps {
            if let Step::Type { line, .. } = step {
                assert!(matches!(parse_line(line), Ok(Some(_))), "{line}");
            }
        }
        let ims = steps
            .iter()
            .filter(|s| matches!(s, Step::Im { .. }))
            .count();
        assert_eq!(ims, 6);
        let refused: Vec<&str> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Type { line, expect, .. } if !expect.is_ok() => Some(line.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            refused,
            [
                "leave list_1 Me",
                "im-complete list_1 Me",
                "join list_4 Me",
                "exit Myself"
            ]
        );
    }

    #[test]
    fn the_expected_file_misses_me_from_list_1() {
        let ips = [IpAddr::V4(Ipv4Addr::LOCALHOST); 5];
        let text = expected_saved(&ips, &[1, 3, 5, 7, 9]);
        assert!(text.starts_with("5\nMe 127.0.0.1 1\n"));
        assert!(text.contains("list_1\n4\nMyself 127.0.0.1 3\n"));
        assert!(text.ends_with("list_4\n1\nFoo 127.0.0.1 7\n"));
    }

    #[test]
    fn the_transcript_aligns_names_and_colours_only_when_asked() {
        for colour in [false, true] {
            let mut buf = Vec::new();
            let mut t = Transcript {
                out: &mut buf,
                colour,
                report: DemoReport::default(),
            };
            t.typed(MYSELF, "exit Myself").unwrap();
            t.typed(I, "exit I").unwrap();
            t.saw(FOO, "[list_1] Me: Hello", true).unwrap();
            let text = String::from_utf8(buf).unwrap();
            assert_eq!(text.contains('\x1b'), colour);
            if !colour {
                assert_eq!(
                    text,
                    "Myself> exit Myself\n     I> exit I\n            Foo    saw: [list_1] Me: Hello\n"
                );
            }
        }
    }

    #[test]
    fn a_failed_check_is_reported_and_fails_the_report() {
        let mut buf = Vec::new();
        let mut t = Transcript {
            out: &mut buf,
            colour: false,
            report: DemoReport::default(),
        };
        t.check("one".into(), None).unwrap();
        t.check("two".into(), Some("no".into())).unwrap();
        t.summary().unwrap();
        assert!(!t.report.passed());
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.contains("demo FAILED: 1 of 2 checks did not hold"),
            "{text}"
        );
        assert!(text.contains("  - two: no"), "{text}");
    }
}
