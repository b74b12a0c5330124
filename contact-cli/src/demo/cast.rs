//! The cast: the server (started here or found), the relays of a lossy run and the five
//! peers, each with its own two sockets, and how a typed line reaches the server.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use contact_peer::relay::{Impairment, Relay};
use contact_peer::{Peer, PeerConfig, PortChoice, RingEvent, Server, ServerConfig, ServerHandle};
use contact_proto::{Answer, Body, Command, ContactName, ListName, parse_line};

use super::script::NAMES;
use super::transcript::Transcript;
use super::{DemoConfig, DemoError, ServerChoice, io_err};

/// The demo's peers and what runs them; dropped at the end (peers first).
pub(super) struct Cast {
    /// Me, Myself, I, Foo, Bar; `None` once exited.
    pub(super) peers: Vec<Option<Peer>>,
    /// The IP each peer registers.
    pub(super) ips: [IpAddr; 5],
    /// The port P each peer registers (with relays: the port below its relay's).
    pub(super) ports: [u16; 5],
    /// Where the server saves (each node of a cluster, into its own), when known.
    pub(super) data_dirs: Vec<PathBuf>,
    /// Relays in front of each peer's instant-message port (lossy runs), kept alive.
    _im_relays: Vec<Relay>,
    _server_relay: Option<Relay>,
    pub(super) server: Option<ServerHandle>,
    /// What exited peers were shown that no step expected.
    pub(super) stray: Vec<String>,
    _temp: Option<tempfile::TempDir>,
}

/// Starts the server (or finds it), the relays of a lossy run and the five peers, and says
/// where they are.
pub(super) fn set_up(
    config: &DemoConfig,
    t: &mut Transcript<'_, impl Write>,
) -> Result<Cast, DemoError> {
    let (data_dirs, temp) = match (config.data_dirs.is_empty(), &config.server) {
        (false, _) => (config.data_dirs.clone(), None),
        (true, ServerChoice::Start(_)) => {
            let temp = tempfile::Builder::new()
                .prefix("contact-demo-")
                .tempdir()
                .map_err(io_err("cannot make a temporary data directory"))?;
            (vec![temp.path().to_path_buf()], Some(temp))
        }
        (true, ServerChoice::External(_)) => (Vec::new(), None),
    };
    let data_dir = data_dirs.first().cloned();
    let (server, servers) = match &config.server {
        ServerChoice::Start(ip) => {
            let server_config =
                ServerConfig::default().data_dir(data_dir.clone().unwrap_or_default());
            let addr = SocketAddr::new(*ip, 0);
            let handle = Server::bind(addr, server_config)
                .and_then(Server::spawn)
                .map_err(io_err(format!("cannot start a server on {addr}")))?;
            let addr = handle.local_addr();
            (Some(handle), vec![addr])
        }
        ServerChoice::External(addrs) => (None, addrs.clone()),
    };
    let server_addr = servers[0];
    t.info(&format!(
        "{} {}{}",
        if servers.len() > 1 {
            "servers (the nodes of one registry)"
        } else {
            "server"
        },
        super::servers_text(&servers),
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
        (Some(_), None) => {
            for dir in &data_dirs {
                t.info(&format!("data directory {}", dir.display()))?;
            }
        }
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
    // With a relay there is one server (`--loss` takes one).
    let peer_servers = match &server_relay {
        Some(r) => vec![r.addr()],
        None => servers.clone(),
    };
    let peer_config = if config.loss.is_some() {
        quick(PeerConfig::default(), LOSSY_SPEED_UP)
    } else {
        PeerConfig::default()
    };
    let mut peers = Vec::new();
    let mut im_relays = Vec::new();
    let mut registered = [(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0u16); 5];
    for i in 0..5 {
        let ip = config.peer_ips[i];
        let peer = match &config.peer_netns[i] {
            None => Peer::bind_servers(
                ip,
                &peer_servers,
                PortChoice::Ephemeral,
                peer_config.clone(),
            )
            .map_err(io_err(format!("cannot bind {}'s ports on {ip}", NAMES[i])))?,
            Some(ns) => netns::bind_peer(ns, ip, &peer_servers, peer_config.clone()).map_err(
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
            "{:<6} on {} (port P, requests) and {} (P+1, instant messages){}{via}",
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
        data_dirs,
        _im_relays: im_relays,
        _server_relay: server_relay,
        server,
        stray: Vec::new(),
        _temp: temp,
    })
}

/// How much faster than the defaults the peers of a lossy run retry: loopback answers in
/// microseconds, so the defaults' pauses (sized for real networks) would only make the run
/// last minutes.
const LOSSY_SPEED_UP: u32 = 5;

/// `config` with every timeout `factor` times shorter and the same number of sends: the
/// defaults' patience, which survives 30% loss each way (one send in two answered), in a
/// fraction of the time.
fn quick(mut config: PeerConfig, factor: u32) -> PeerConfig {
    let (client, ring) = (&mut config.client, &mut config.ring);
    client.initial_timeout /= factor;
    client.max_timeout /= factor;
    client.retry_window /= factor;
    ring.initial_timeout /= factor;
    ring.max_timeout /= factor;
    ring.completion_timeout /= factor;
    config
}

/// The longest a message can take round a ring of `members` before the initiator reports
/// it not confirmed, with a lossy run's configuration: what the demo waits for a member's
/// display at most, so that a slow but live ring is never taken for a broken one.
pub(super) fn lossy_ring_wait(members: usize) -> Duration {
    let ring = quick(PeerConfig::default(), LOSSY_SPEED_UP).ring;
    ring.completion_timeout + ring.give_up_after() * u32::try_from(members).unwrap_or(u32::MAX)
}

/// What peer `who` was shown that no step waited for.
pub(super) fn strays(who: usize, peer: &Peer) -> Vec<String> {
    peer.events()
        .try_iter()
        .filter(|e| !matches!(e, RingEvent::Invalid { .. }))
        .map(|e| format!("{}: {e:?}", NAMES[who]))
        .collect()
}

/// `Err(why)` if the server already holds a list or one of the demo's contacts: the demo's
/// promised answers (200 to `create list_1`, to `register Me`, the lists `query-lists` shows)
/// hold only on an empty server. Asked by Me before any step: `query-lists`, then, for each
/// name, `leave` of a list that does not exist, which answers 459 for an unknown contact and
/// 460 for a known one, and changes nothing.
pub(super) fn check_empty(cast: &Cast) -> Result<(), String> {
    let Some(me) = cast.peers.first().and_then(Option::as_ref) else {
        return Ok(());
    };
    let lists = me
        .request(Command::QueryLists)
        .map_err(|e| format!("it does not answer `query-lists` ({e})"))?;
    if let Some(Body::Lists(body)) = &lists.body
        && !body.list_names.is_empty()
    {
        let names: Vec<String> = body
            .list_names
            .iter()
            .take(5)
            .map(ToString::to_string)
            .collect();
        let more = match body.list_names.len() {
            n if n > 5 => format!(" and {} more", n - 5),
            _ => String::new(),
        };
        return Err(format!(
            "it already has the lists {}{more}",
            names.join(", ")
        ));
    }
    let nowhere = ListName::try_from("demo-check-no-such-list").map_err(|e| e.to_string())?;
    let mut known = Vec::new();
    for name in NAMES {
        let name = ContactName::try_from(name).map_err(|e| e.to_string())?;
        let answer = me.request(Command::Leave {
            list: nowhere.clone(),
            name: name.clone(),
        });
        if matches!(answer, Ok(a) if a.status.code() == 460) {
            known.push(name.to_string());
        }
    }
    if known.is_empty() {
        Ok(())
    } else {
        Err(format!("{} already registered", known.join(", ")))
    }
}

/// Sends one typed line from peer `who`.
pub(super) fn ask(
    cast: &Cast,
    who: usize,
    line: &str,
) -> Result<Result<Answer, String>, DemoError> {
    let parsed = parse_line(line)
        .map_err(|e| DemoError::Script(line.into(), e.to_string()))?
        .ok_or_else(|| DemoError::Script(line.into(), "empty".into()))?;
    let Some(peer) = &cast.peers[who] else {
        return Ok(Err(format!("{} has exited", NAMES[who])));
    };
    Ok(peer.request(parsed.command).map_err(|e| e.to_string()))
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
        servers: &[SocketAddr],
        config: PeerConfig,
    ) -> io::Result<Peer> {
        let path = std::path::Path::new("/run/netns").join(name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = std::fs::File::open(&path)?;
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::from)?;
                Peer::bind_servers(ip, servers, PortChoice::Ephemeral, config)
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
        })
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn bind_peer(
        _name: &str,
        _ip: IpAddr,
        _servers: &[SocketAddr],
        _config: PeerConfig,
    ) -> io::Result<Peer> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "network namespaces are Linux only",
        ))
    }
}
