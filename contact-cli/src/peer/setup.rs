//! Start-up: the server's address, the peer's ports, the input of a script, the history.

use std::io::{BufRead, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;

use contact_peer::{Peer, PortChoice};
use crossbeam_channel::Sender;

use super::Args;
use super::editor::Input;

/// The reference group's port range, where a peer looks for free ports by default.
const PORT_RANGE: std::ops::RangeInclusive<u16> = 22000..=22499;

/// How many lines of history are kept.
const HISTORY_LEN: usize = 1000;

/// The server's address from an IP or a host name: the first address the name resolves to.
pub(super) fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve the server's host name {host:?}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("the server's host name {host:?} has no address"))
}

/// An address for `register NAME HOST PORT`, of the server's IP version when there is one.
pub(super) fn resolve_ip(host: &str, v4: bool) -> Option<IpAddr> {
    let addrs: Vec<SocketAddr> = (host, 0).to_socket_addrs().ok()?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4() == v4)
        .or(addrs.first())
        .map(SocketAddr::ip)
}

/// Binds the peer; an error says which port is the problem and what to do.
pub(super) fn bind(args: &Args, servers: &[SocketAddr]) -> Result<Peer, String> {
    let server = servers[0];
    let ip = args.bind.unwrap_or(match server.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    let ports = match args.port {
        Some(p) => PortChoice::Fixed(p),
        None => {
            let start = if PORT_RANGE.contains(&server.port()) {
                server.port()
            } else {
                *PORT_RANGE.start()
            };
            PortChoice::FirstFree(start..=*PORT_RANGE.end())
        }
    };
    let config = contact_peer::PeerConfig::default().client(
        contact_peer::ClientConfig::default()
            .retry_window(std::time::Duration::from_secs(args.retry_window)),
    );
    Peer::bind_servers(ip, servers, ports.clone(), config).map_err(|e| match ports {
        PortChoice::Fixed(p) => {
            // Which of the two is the problem: try each alone.
            let culprit = [Some(p), p.checked_add(1)]
                .into_iter()
                .find(|port| port.is_none_or(|port| UdpSocket::bind((ip, port)).is_err()));
            let which = match culprit {
                Some(Some(port)) => format!("port {port} on {ip}"),
                Some(None) => format!("port {p} + 1 (there is no port {p} + 1)"),
                None => format!("ports {p} and {}", p.wrapping_add(1)),
            };
            format!(
                "cannot use {which} ({e}): the peer needs --port {p} and the port after it. \
                 Choose another --port, or leave --port out to take the first free pair."
            )
        }
        PortChoice::FirstFree(range) => format!(
            "no free pair of ports P, P+1 in {}-{} on {ip} ({e}); give one with --port P",
            range.start(),
            range.end()
        ),
        _ => format!("cannot bind the peer's ports on {ip}: {e}"),
    })
}

/// Reads piped lines on a thread of their own; the end of input is [`Input::End`].
pub(super) fn start_plain(lines: Sender<Input>) {
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if lines.send(Input::Line(line)).is_err() {
                return;
            }
        }
        let _ = lines.send(Input::End);
    });
}

/// The history file, one line per command.
pub(super) struct History {
    path: Option<PathBuf>,
}

impl History {
    pub(super) fn open(path: Option<PathBuf>) -> Self {
        let path = match path {
            Some(p) if p.as_os_str() == "-" => None,
            Some(p) => Some(p),
            None => std::env::var_os("XDG_DATA_HOME")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
                .map(|d| d.join("contact").join("history")),
        };
        Self { path }
    }

    pub(super) fn load(&self) -> Vec<String> {
        let Some(path) = &self.path else {
            return Vec::new();
        };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let skip = lines.len().saturating_sub(HISTORY_LEN);
        lines.into_iter().skip(skip).collect()
    }

    /// Appends a line; a history that cannot be written is not worth an error per line.
    pub(super) fn add(&self, line: &str) {
        let Some(path) = &self.path else { return };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}
