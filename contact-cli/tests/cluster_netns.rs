//! The replicated registry across hosts: the seed's final demo (`contact-cli demo`, its
//! script and its checks) against three nodes on three hosts, its peers on two more, given
//! all three nodes' addresses; in the middle of the demo the leader's host loses its link
//! (`ip link set eth0 down`), and the demo's outcome is unchanged. Then the link comes back
//! and the old leader catches up.
//!
//! ```text
//!   cln1-PID 10.232.0.1   cln2-PID 10.232.0.2   cln3-PID 10.232.0.3   clh1-PID 10.232.0.11   clh2-PID 10.232.0.12
//!     eth0 (node 1)         eth0 (node 2)         eth0 (node 3)         eth0 (Me, Myself, I)   eth0 (Foo, Bar)
//!      └─ veth-n1 ────────── veth-n2 ─────[br0 in clsw-PID]────── veth-n3 ───── veth-h1 ──── veth-h2 ─┘
//! ```
//!
//! Needs root and iproute2: otherwise the test says so loudly on stderr and passes. The
//! namespaces are deleted by a guard (on panic too), and leftovers of crashed earlier runs
//! first.

#![allow(missing_docs)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command as Process, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use contact_peer::{Peer, PeerConfig, PortChoice};
use contact_proto::{Body, Command, Status};

use common::BIN;
use common::netns::{Hosts, delete_leftovers, ip};

const PREFIXES: [&str; 6] = ["clsw-", "cln1-", "cln2-", "cln3-", "clh1-", "clh2-"];
const H1_IP: &str = "10.232.0.11";
const H2_IP: &str = "10.232.0.12";
/// The demo pauses after this many commands: the registrations, creates and joins are done,
/// the instant messages (and every later request) are still to come.
const PAUSE_AFTER: usize = 21;

fn ns(prefix: &str, pid: u32) -> String {
    format!("{prefix}{pid}")
}

fn build(pid: u32) -> Result<Hosts, String> {
    let mut hosts = Hosts::default();
    let sw = ns("clsw-", pid);
    ip(&["netns", "add", &sw])?;
    hosts.names.push(sw.clone());
    ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &sw, "link", "set", "br0", "up"])?;
    for (host, addr) in [
        ("n1", "10.232.0.1"),
        ("n2", "10.232.0.2"),
        ("n3", "10.232.0.3"),
        ("h1", H1_IP),
        ("h2", H2_IP),
    ] {
        let name = ns(&format!("cl{host}-"), pid);
        ip(&["netns", "add", &name])?;
        hosts.names.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        let port = format!("veth-{host}");
        ip(&[
            "-n", &name, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &sw,
        ])?;
        ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &name, "link", "set", "eth0", "up"])?;
    }
    Ok(hosts)
}

/// A peer whose sockets live in namespace `name`.
fn peer_in(name: &str, addr: IpAddr, servers: &[SocketAddr]) -> Peer {
    let path = std::path::Path::new("/run/netns").join(name);
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = std::fs::File::open(&path)?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            Peer::bind_servers(addr, servers, PortChoice::Ephemeral, PeerConfig::default())
        })
        .join()
        .unwrap()
    })
    .unwrap()
}

fn lists(peer: &Peer) -> Option<Vec<String>> {
    match peer.request(Command::QueryLists).ok()?.body {
        Some(Body::Lists(l)) => Some(l.list_names.iter().map(|n| n.to_string()).collect()),
        _ => None,
    }
}

/// The leader's id, as node 2 (which stays on its link until the cut) sees it, asked from
/// the peers' host.
fn leader(pid: u32) -> u64 {
    let out = Process::new("ip")
        .args(["netns", "exec", &ns("clh1-", pid), BIN, "cluster", "status"])
        .args(["--node", "10.232.0.2:23000", "--json"])
        .output()
        .unwrap();
    let status: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("cluster status --json");
    status
        .as_array()
        .unwrap()
        .iter()
        .find_map(|n| n["status"]["leader"].as_u64())
        .expect("a leader")
}

#[test]
fn the_leaders_host_cut_off_mid_demo_changes_nothing() {
    let pid = std::process::id();
    delete_leftovers(&PREFIXES);
    let mut hosts = match build(pid) {
        Ok(h) => h,
        Err(reason) => {
            eprintln!("\n==================================================================");
            eprintln!("SKIPPED: cluster namespaces test needs root and iproute2 ({reason})");
            eprintln!("==================================================================");
            return;
        }
    };
    let data = tempfile::tempdir().unwrap();
    let cluster = "1=10.232.0.1:23000,2=10.232.0.2:23000,3=10.232.0.3:23000";
    for i in 1..=3 {
        let mut child = Process::new("ip")
            .args(["netns", "exec", &ns(&format!("cln{i}-"), pid), BIN])
            .args(["-q", "server", "--bind", &format!("10.232.0.{i}")])
            .args(["--port", "22000", "--data-dir"])
            .arg(data.path().join(format!("n{i}")))
            .args(["--node-id", &i.to_string(), "--cluster", cluster])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        hosts.children.push(child);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert!(line.contains("listening on"), "{line:?}");
    }
    let servers: Vec<SocketAddr> = (1..=3)
        .map(|i| format!("10.232.0.{i}:22000").parse().unwrap())
        .collect();
    let (h1, h2) = (ns("clh1-", pid), ns("clh2-", pid));
    // The cluster starts once the nodes meet: until then, "try later".
    {
        let probe = peer_in(&h1, H1_IP.parse().unwrap(), &servers);
        let deadline = Instant::now() + Duration::from_secs(30);
        while probe.request(Command::QueryLists).map(|a| a.status) != Ok(Status::Ok) {
            assert!(Instant::now() < deadline, "the cluster did not start");
        }
    }

    // The demo, its peers in the two hosts, given the three nodes; each node saves into
    // its own directory.
    let addrs = servers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut demo = Process::new(BIN);
    demo.args(["demo", "--color", "never", "--server", &addrs])
        .args(["--pause-after", &PAUSE_AFTER.to_string()]);
    for i in 1..=3 {
        demo.arg("--data-dir")
            .arg(data.path().join(format!("n{i}")));
    }
    for (ip, ns) in [
        (H1_IP, &h1),
        (H1_IP, &h1),
        (H1_IP, &h1),
        (H2_IP, &h2),
        (H2_IP, &h2),
    ] {
        demo.args(["--peer-ip", ip, "--peer-netns", ns]);
    }
    let mut demo = demo
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("contact-cli demo runs");
    let mut stdin = demo.stdin.take().unwrap();
    let stdout = demo.stdout.take().unwrap();
    hosts.children.push(demo);
    // The transcript, line by line with the time each arrived.
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut text = String::new();
    let next = |text: &mut String| -> Option<(Instant, String)> {
        let left = deadline.saturating_duration_since(Instant::now());
        let (at, line) = lines.recv_timeout(left).ok()?;
        text.push_str(&line);
        text.push('\n');
        Some((at, line))
    };
    loop {
        let (_, line) = next(&mut text).unwrap_or_else(|| panic!("no pause in:\n{text}"));
        if line.starts_with(&format!("paused after line {PAUSE_AFTER}")) {
            break;
        }
    }

    // Cut the leader's host off, then let the demo go on.
    let leader = leader(pid);
    let leader_ns = ns(&format!("cln{leader}-"), pid);
    ip(&["-n", &leader_ns, "link", "set", "eth0", "down"]).unwrap();
    let cut = Instant::now();
    stdin.write_all(b"\n").unwrap();
    drop(stdin);
    let mut recovery = None;
    while let Some((at, line)) = next(&mut text) {
        // The first answer of the cluster after the cut (the next im-start's).
        if recovery.is_none() && line.trim_start().starts_with("[200]") {
            recovery = Some(at.duration_since(cut));
        }
    }
    let status = hosts.children.last_mut().unwrap().wait().unwrap();
    assert!(status.success(), "{text}");
    for line in [
        &format!("in namespace {h1}"),
        &format!("in namespace {h2}"),
        "Foo    saw: [list_1] Me: Hello",
        "Me     saw: [list_2] Myself: Hi list_2",
        "Bar    saw: [list_3] Foo: Hi Bar",
        "ok: config.txt holds the registry, Me missing from list_1",
        "demo passed",
    ] {
        assert!(text.contains(line), "`{line}` missing in:\n{text}");
    }
    let recovery = recovery.expect("an answer after the cut");
    assert!(recovery < Duration::from_secs(10), "{recovery:?}");

    // The link back: the old leader follows and holds what the others acknowledged.
    ip(&["-n", &leader_ns, "link", "set", "eth0", "up"]).unwrap();
    let old = peer_in(
        &h1,
        H1_IP.parse().unwrap(),
        &servers[leader as usize - 1..][..1],
    );
    let want = ["list_1", "list_2", "list_3", "list_4"];
    let deadline = Instant::now() + Duration::from_secs(30);
    while lists(&old).as_deref() != Some(&want.map(String::from)[..]) {
        assert!(
            Instant::now() < deadline,
            "node {leader} did not catch up: {:?}",
            lists(&old)
        );
    }
    eprintln!(
        "the demo across hosts: leader node {leader}'s host cut off after {PAUSE_AFTER} commands; \
         the next answer came {recovery:?} later; {}",
        text.lines().last().unwrap_or_default()
    );
    drop(old);
    drop(hosts);
    let left = ip(&["netns", "list"]).unwrap_or_default();
    assert!(!left.contains(&format!("-{pid}")), "{left}");
}
