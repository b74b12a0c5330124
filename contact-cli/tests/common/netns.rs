//! Network namespaces for the multi-host tests: `ip`, the guard that deletes what a run
//! made (on panic too), and the clean-up of crashed earlier runs.

use std::process::{Child, Command};

/// Runs `ip ARGS`; `Err` with its stderr when it fails.
pub(crate) fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespaces of a run and the processes started in them; all gone when dropped.
#[derive(Default)]
pub(crate) struct Hosts {
    pub(crate) names: Vec<String>,
    pub(crate) children: Vec<Child>,
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in &self.names {
            if let Err(e) = ip(&["netns", "delete", name]) {
                eprintln!("warning: {e}");
            }
        }
    }
}

/// Deletes namespaces named `PREFIX` + a process id, left by earlier runs whose process is
/// gone.
pub(crate) fn delete_leftovers(prefixes: &[&str]) {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = prefixes.iter().find_map(|p| name.strip_prefix(p)) else {
            continue;
        };
        let alive = pid.parse::<u32>().is_ok_and(|pid| {
            pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
        if !alive {
            eprintln!("deleting leftover network namespace {name}");
            let _ = ip(&["netns", "delete", name]);
        }
    }
}
