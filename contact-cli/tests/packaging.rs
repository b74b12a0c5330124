//! The binary as a packaged tool: shell completions and man pages, generated from the same
//! clap definitions as `--help`.

#![allow(missing_docs)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_contact-cli");

fn run(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    assert!(out.stderr.is_empty(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completions_for_every_shell_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = run(&["completions", shell]);
        for sub in ["server", "peer", "demo", "bench", "completions", "man"] {
            assert!(script.contains(sub), "{shell}: no {sub}");
        }
    }
    let bash = run(&["completions", "bash"]);
    assert!(bash.contains("complete -F _contact__cli"), "{bash}");
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = Command::new(BIN)
        .args(["completions", "cmd.exe"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn the_man_page_is_roff_with_every_subcommand() {
    let page = run(&["man"]);
    assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{page}");
    assert!(page.contains(".TH contact-cli 1"), "{page}");
    for sub in ["server", "peer", "demo", "bench"] {
        assert!(page.contains(sub), "no {sub}");
    }
}

#[test]
fn man_dir_writes_one_page_per_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    run(&["man", "--dir", dir.path().to_str().unwrap()]);
    for page in [
        "contact-cli.1",
        "contact-cli-server.1",
        "contact-cli-peer.1",
        "contact-cli-demo.1",
        "contact-cli-bench.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}");
    }
}
