//! `contact-cli bench`, the built binary, against a server in this process: what it leaves
//! behind and how its JSON spells the mixes.

#![allow(missing_docs)]

use std::net::SocketAddr;
use std::process::Command;

use contact_peer::{Server, ServerConfig, ServerHandle};

const BIN: &str = env!("CARGO_BIN_EXE_contact-cli");

fn server(dir: &tempfile::TempDir) -> (ServerHandle, SocketAddr) {
    // The load comes from one host: trusted, as `scripts/perf.sh` does (`--trust`), or the
    // per-source limits would measure themselves.
    let config = ServerConfig::default()
        .data_dir(dir.path().to_path_buf())
        .trust(vec!["127.0.0.1".parse().unwrap()]);
    let handle = Server::bind("127.0.0.1:0".parse().unwrap(), config)
        .and_then(Server::spawn)
        .expect("a server on loopback");
    let addr = handle.local_addr();
    (handle, addr)
}

/// Runs the bench against `addr` (a few hundred requests, bounded) and returns its stdout.
fn bench(addr: SocketAddr, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["bench", "--server", &addr.to_string(), "--clients", "4"])
        .args([
            "--requests",
            "400",
            "--duration",
            "10",
            "--timeout-ms",
            "2000",
        ])
        .args(args)
        .output()
        .expect("contact-cli runs");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_contacts_it_registers_are_removed_afterwards() {
    for mix in ["query", "mixed", "register"] {
        let dir = tempfile::tempdir().unwrap();
        let (handle, addr) = server(&dir);
        let out = bench(addr, &["--mix", mix, "--json"]);
        assert!(
            out.contains(&format!("{{\"mix\": \"{mix}\", \"clients\": 4, ")),
            "{out}"
        );
        let registry = handle.shutdown().unwrap();
        let left: Vec<String> = registry.contacts().map(|c| format!("{c:?}")).collect();
        assert!(left.is_empty(), "{mix}: contacts left: {left:?}");
    }
}

#[test]
fn keep_leaves_them_registered() {
    let dir = tempfile::tempdir().unwrap();
    let (handle, addr) = server(&dir);
    bench(addr, &["--mix", "mixed", "--keep"]);
    let registry = handle.shutdown().unwrap();
    assert_eq!(registry.contacts().count(), 4);
}

#[test]
fn the_report_says_its_settings_and_its_ratios_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let (handle, addr) = server(&dir);
    let out = bench(addr, &["--mix", "query", "--echo"]);
    assert!(
        out.starts_with("contact-cli bench: query mix, 4 client(s) (one request in flight each)"),
        "{out}"
    );
    assert!(
        out.contains("as many requests per second as a bare echo loop; its p99 latency is"),
        "{out}"
    );
    assert!(
        out.contains("as a batched echo loop (recvmmsg/sendmmsg, 32 at a time)"),
        "{out}"
    );
    assert!(!out.to_lowercase().contains("target"), "{out}");
    // Not a terminal: no progress line.
    drop(handle);
}

#[test]
fn echo_json_has_both_baselines_and_both_ratios() {
    let dir = tempfile::tempdir().unwrap();
    let (handle, addr) = server(&dir);
    let out = bench(addr, &["--mix", "mixed", "--echo", "--json"]);
    for field in [
        "\"mix\": \"mixed\"",
        "\"target\": \"server\"",
        "\"target\": \"echo\"",
        "\"target\": \"batched-echo\"",
        "\"ratio\": {\"ops\": ",
        "\"ratio_batched\": {\"ops\": ",
    ] {
        assert!(out.contains(field), "{field} missing in {out}");
    }
    assert_eq!(out.lines().count(), 1, "{out}");
    let registry = handle.shutdown().unwrap();
    assert_eq!(registry.contacts().count(), 0);
}

/// `--durable-echo DIR`: the durable echo loop takes its turn beside the others, its ratio
/// is printed, and its file (unnamed) leaves nothing in the directory.
#[cfg(target_os = "linux")]
#[test]
fn the_durable_echo_loop_takes_its_turn_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let (handle, addr) = server(&dir);
    let echo_dir = tempfile::tempdir().unwrap();
    let echo_path = echo_dir.path().to_str().unwrap();
    let out = bench(
        addr,
        &[
            "--mix",
            "mixed",
            "--echo",
            "--durable-echo",
            echo_path,
            "--json",
        ],
    );
    for field in [
        "\"target\": \"durable-echo\"",
        "\"ratio_batched\": {\"ops\": ",
        "\"ratio_durable\": {\"ops\": ",
    ] {
        assert!(out.contains(field), "{field} missing in {out}");
    }
    let out = bench(addr, &["--echo-only", "--durable-echo", echo_path]);
    assert!(
        out.contains("as many requests per second as the durable echo loop"),
        "{out}"
    );
    assert_eq!(std::fs::read_dir(echo_dir.path()).unwrap().count(), 0);
    // Alone it would be ignored: refused, saying what it needs.
    let alone = Command::new(BIN)
        .args([
            "bench",
            "--server",
            &addr.to_string(),
            "--durable-echo",
            echo_path,
        ])
        .output()
        .unwrap();
    assert!(!alone.status.success());
    assert!(
        String::from_utf8_lossy(&alone.stderr)
            .contains("--durable-echo runs beside the echo loops"),
        "{}",
        String::from_utf8_lossy(&alone.stderr)
    );
    drop(handle);
}

/// `contact-cli bench | head`: a reader that goes away ends the bench quietly.
#[cfg(unix)]
#[test]
fn a_reader_that_goes_away_ends_it_quietly() {
    use std::process::Stdio;

    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    let out = Command::new(BIN)
        .args([
            "bench",
            "--echo-only",
            "--requests",
            "200",
            "--duration",
            "10",
        ])
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(out.status.success());
}
