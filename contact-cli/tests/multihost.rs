//! The seed's final demo across hosts: the server and the peers in different network
//! namespaces, joined by veth pairs and a bridge, with addresses of a private test subnet that
//! exists only inside them.
//!
//! ```text
//!   contact-h1-PID (10.231.0.2)        contact-srv-PID (10.231.0.1 on br0)       contact-h2-PID (10.231.0.3)
//!   Me, Myself, I       eth0 <-veth-> veth-h1 -[br0]- veth-h2 <-veth-> eth0      Foo, Bar
//!                                     contact-cli server
//! ```
//!
//! The server is the built binary under `ip netns exec`; the peers are one `contact-cli demo`
//! process whose peers' sockets are made inside the two host namespaces (`--peer-netns`), so
//! every datagram between server and peer, and between Me's host and Foo's, crosses a veth.
//! The namespaces are always deleted (a guard's `Drop`, which runs on panic too), and leftovers
//! of crashed earlier runs are deleted first. Needs root and iproute2: otherwise the test says
//! so loudly on stderr and passes; CI runs it as root.

#![allow(missing_docs)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::BIN;
use common::netns::{Hosts, delete_leftovers, ip};

const PREFIXES: [&str; 3] = ["contact-srv-", "contact-h1-", "contact-h2-"];
const SERVER_IP: &str = "10.231.0.1";
const H1_IP: &str = "10.231.0.2";
const H2_IP: &str = "10.231.0.3";

/// Builds the three hosts; `Err` when namespaces cannot be made here.
fn build_hosts(pid: u32) -> Result<Hosts, String> {
    let [srv, h1, h2] = PREFIXES.map(|p| format!("{p}{pid}"));
    let mut hosts = Hosts::default();
    for name in [&srv, &h1, &h2] {
        ip(&["netns", "add", name])?;
        hosts.names.push(name.clone());
        ip(&["-n", name, "link", "set", "lo", "up"])?;
    }
    ip(&["-n", &srv, "link", "add", "br0", "type", "bridge"])?;
    ip(&[
        "-n",
        &srv,
        "addr",
        "add",
        &format!("{SERVER_IP}/24"),
        "dev",
        "br0",
    ])?;
    ip(&["-n", &srv, "link", "set", "br0", "up"])?;
    for (host, addr, port) in [(&h1, H1_IP, "veth-h1"), (&h2, H2_IP, "veth-h2")] {
        ip(&[
            "-n", host, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", &srv,
        ])?;
        ip(&["-n", &srv, "link", "set", port, "master", "br0", "up"])?;
        ip(&[
            "-n",
            host,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", host, "link", "set", "eth0", "up"])?;
    }
    Ok(hosts)
}

/// Packets a veth port of the bridge has received, read from the server host's sysfs.
fn rx_packets(srv: &str, port: &str) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", srv, "cat"])
        .arg(format!("/sys/class/net/{port}/statistics/rx_packets"))
        .output()
        .expect("ip netns exec runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn the_final_demo_across_three_hosts() {
    let pid = std::process::id();
    delete_leftovers(&PREFIXES);
    let mut hosts = match build_hosts(pid) {
        Ok(h) => h,
        Err(reason) => {
            eprintln!();
            eprintln!("==================================================================");
            eprintln!("SKIPPED: multi-host test needs root and iproute2 ({reason})");
            eprintln!("==================================================================");
            return;
        }
    };
    let [srv, h1, h2] = PREFIXES.map(|p| format!("{p}{pid}"));
    let data = tempfile::tempdir().unwrap();

    let mut server = Command::new("ip")
        .args([
            "netns", "exec", &srv, BIN, "-q", "server", "--bind", SERVER_IP,
        ])
        .args(["--port", "22000", "--data-dir"])
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ip netns exec runs");
    let stdout = server.stdout.take().unwrap();
    hosts.children.push(server);
    // The server prints its address once it listens: wait for that line, not for a time.
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    assert!(
        first.starts_with(&format!("contact server listening on {SERVER_IP}:22000")),
        "{first:?}"
    );

    let before = (rx_packets(&srv, "veth-h1"), rx_packets(&srv, "veth-h2"));
    let server_addr = format!("{SERVER_IP}:22000");
    let mut demo = Command::new(BIN);
    demo.args(["demo", "--server", &server_addr, "--data-dir"])
        .arg(data.path());
    for (ip, ns) in [
        (H1_IP, &h1),
        (H1_IP, &h1),
        (H1_IP, &h1),
        (H2_IP, &h2),
        (H2_IP, &h2),
    ] {
        demo.args(["--peer-ip", ip, "--peer-netns", ns]);
    }
    let started = std::time::Instant::now();
    let out = demo.output().expect("contact-cli demo runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    for line in [
        &format!("Me     on {H1_IP}:"),
        &format!("in namespace {h1}"),
        &format!("Foo    on {H2_IP}:"),
        &format!("in namespace {h2}"),
        "Foo    saw: [list_1] Me: Hello",
        "Me     saw: [list_2] Myself: Hi list_2",
        "Bar    saw: [list_3] Foo: Hi Bar",
        "ok: config.txt holds the registry, Me missing from list_1",
        "demo passed",
    ] {
        assert!(text.contains(line), "`{line}` missing in:\n{text}");
    }
    let after = (rx_packets(&srv, "veth-h1"), rx_packets(&srv, "veth-h2"));
    // Every request and every ring hop between hosts went over the veths: from h1, Me's 18
    // requests, Myself's 7, I's 4 and the 2 hops I -> Foo; from h2, Foo's 9, Bar's 6 and the
    // 2 hops Bar -> Me (ARP and neighbour discovery add a few more).
    assert!(after.0 >= before.0 + 31, "{before:?} -> {after:?}");
    assert!(after.1 >= before.1 + 17, "{before:?} -> {after:?}");
    let summary = text.lines().last().unwrap_or_default();
    eprintln!(
        "multi-host demo: server in {srv} ({SERVER_IP}), Me/Myself/I in {h1} ({H1_IP}), \
         Foo/Bar in {h2} ({H2_IP}); packets into the bridge from h1 {}, from h2 {}; {summary}",
        after.0 - before.0,
        after.1 - before.1
    );
    drop(hosts);
    let left = ip(&["netns", "list"]).unwrap_or_default();
    assert!(!left.contains(&format!("-{pid}")), "{left}");
}
