//! The secrets our server gave this peer's contacts, kept across runs (issue 10).
//!
//! Our server hands the peer that registers a contact a secret, and under `--auth` only
//! requests tagged with it act for the contact, a `register` of its name included: a peer
//! that forgot it (a crash, `kill -9`, `quit` without `exit`) could never have its name
//! back. So each secret received is written down, one file per server, and given back to
//! the next run ([`Peer::remember`]) before its first request.
//!
//! The file is a password file: created `0600` in a `0700` directory, written to a temporary
//! file (created `0600`) then renamed over the old one, so that it is never readable by
//! others nor half-written, even for a moment. As ssh does with keys, a file that others
//! may read or write, or that does not parse, is not used (nor overwritten): the peer warns
//! and keeps nothing for that run.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use contact_peer::Peer;
use contact_proto::ContactName;
use contact_proto::auth::Secret;

/// A file larger than this is not a secrets file (a few hundred names fit in 100 KB).
const MAX_LEN: u64 = 1 << 20;

/// Where the secrets of a server are kept, and what the file holds.
pub(super) struct Kept {
    path: PathBuf,
    /// Name -> 64 hex digits, as in the file.
    secrets: BTreeMap<String, String>,
    /// The names whose secret was given to the peer at start and has not been registered
    /// with since: the next `register` of one is tagged with it.
    offered: BTreeSet<String>,
}

impl Kept {
    /// The default file for `servers`: `contact/secrets/ADDR` in the user's data directory
    /// (`$XDG_DATA_HOME`, or `~/.local/share`), as the history; `None` without a home.
    pub(super) fn default_path(servers: &[SocketAddr]) -> Option<PathBuf> {
        let dir = std::env::var_os("XDG_DATA_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
        Some(dir.join("contact").join("secrets").join(file_name(servers)))
    }

    /// Reads the file at `path` (none yet is an empty one); an unsafe or damaged file is
    /// the warning to show, and nothing is kept this run.
    pub(super) fn open(path: PathBuf) -> Result<Self, String> {
        let secrets = match read(&path) {
            Ok(Some(text)) => parse(&text).map_err(|e| {
                format!(
                    "warning: the secrets file {} is damaged ({e}): not used, and no secret is \
                     kept this run; move it away (or fix it) to keep them again",
                    path.display()
                )
            })?,
            Ok(None) => BTreeMap::new(),
            Err(e) => return Err(format!("warning: {e}; no secret is kept this run")),
        };
        Ok(Self {
            path,
            secrets,
            offered: BTreeSet::new(),
        })
    }

    /// The file.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Gives every kept secret to the peer; the names, for a note.
    pub(super) fn give(&mut self, peer: &Peer) -> Vec<String> {
        for (name, hex) in &self.secrets {
            if let (Ok(contact), Some(secret)) =
                (name.parse::<ContactName>(), Secret::from_hex(hex))
            {
                peer.remember(contact, secret);
                self.offered.insert(name.clone());
            }
        }
        self.offered.iter().cloned().collect()
    }

    /// Whether the next `register` of `name` is tagged with the secret from the file.
    pub(super) fn offered(&self, name: &str) -> bool {
        self.offered.contains(name)
    }

    /// Writes down what the peer holds for `name` now (after a `register` or an `exit`):
    /// the new secret, or the entry removed. A failure is the warning to show.
    pub(super) fn update(&mut self, name: &str, secret: Option<Secret>) -> Result<(), String> {
        self.offered.remove(name);
        let hex = secret.map(|s| s.to_hex());
        // Another peer of the same user and server may have written it since: its entries
        // stay (two terminals, alice and bob). A file that became unsafe or damaged since
        // is left as it is.
        let lost = |e: String| format!("warning: {e}; not updated for {name}");
        let dir = parent(&self.path);
        private_dir(dir).map_err(|e| lost(format!("cannot create {}: {e}", dir.display())))?;
        // Read, change and write under a lock on the directory: two peers updating at
        // once would otherwise each write the file without the other's change.
        let _lock =
            lock_dir(dir).map_err(|e| lost(format!("cannot lock {}: {e}", dir.display())))?;
        if let Some(text) = read(&self.path).map_err(lost)? {
            self.secrets = parse(&text).map_err(|e| {
                lost(format!(
                    "the secrets file {} is damaged ({e})",
                    self.path.display()
                ))
            })?;
        }
        if self.secrets.get(name) == hex.as_ref() {
            return Ok(());
        }
        match hex {
            Some(hex) => self.secrets.insert(name.to_owned(), hex),
            None => self.secrets.remove(name),
        };
        self.write().map_err(|e| {
            format!(
                "warning: cannot write the secrets file {}: {e}; the secret of {name} will be \
                 lost when this peer stops",
                self.path.display()
            )
        })
    }

    /// Replaces the file atomically (an empty set removes it).
    fn write(&self) -> std::io::Result<()> {
        if self.secrets.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let dir = parent(&self.path);
        let text = serde_json::to_string_pretty(&self.secrets).map_err(std::io::Error::other)?;
        // `tempfile` creates it 0600 (O_EXCL): never readable by others, even empty.
        let mut tmp = tempfile::Builder::new()
            .prefix(".secrets")
            .tempfile_in(dir)?;
        tmp.write_all(text.as_bytes())?;
        tmp.write_all(b"\n")?;
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        // The rename is in the directory: synced, it survives a crash of the host.
        std::fs::File::open(dir)?.sync_all()
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// An exclusive `flock` on `dir`, held until dropped (advisory: between our peers). On a
/// system without it, no lock.
#[cfg(target_os = "linux")]
fn lock_dir(dir: &Path) -> std::io::Result<nix::fcntl::Flock<std::fs::File>> {
    nix::fcntl::Flock::lock(
        std::fs::File::open(dir)?,
        nix::fcntl::FlockArg::LockExclusive,
    )
    .map_err(|(_, e)| std::io::Error::from(e))
}

#[cfg(not(target_os = "linux"))]
fn lock_dir(_: &Path) -> std::io::Result<()> {
    Ok(())
}

/// One file per server: `IP_PORT` (the nodes', comma-separated, for a cluster), an IPv6
/// address's colons written `-` (and `::1` as `0::1`, so that no name starts with `-`).
fn file_name(servers: &[SocketAddr]) -> String {
    let mut addrs: Vec<String> = servers
        .iter()
        .map(|a| {
            let ip = a.ip().to_string();
            let ip = if ip.starts_with(':') {
                format!("0{ip}")
            } else {
                ip
            };
            format!("{}_{}", ip.replace(':', "-"), a.port())
        })
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs.join(",")
}

/// The file's text, `None` if there is none; an error if others may read or write it.
fn read(path: &Path) -> Result<Option<String>, String> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "cannot read the secrets file {}: {e}",
                path.display()
            ));
        }
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read the secrets file {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("the secrets file {} is not a file", path.display()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "the secrets file {} may be read or changed by others (mode {mode:04o}): not \
                 used. Whoever reads it can act for its contacts; if it was exposed, `exit` \
                 them and register again, then `chmod 600` it",
                path.display()
            ));
        }
    }
    let mut text = String::new();
    file.take(MAX_LEN + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read the secrets file {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_LEN {
        return Err(format!(
            "the secrets file {} is larger than {MAX_LEN} bytes: not a secrets file",
            path.display()
        ));
    }
    Ok(Some(text))
}

/// `{"NAME": "HEX", ...}`, every name a valid contact name and every secret 64 hex digits.
fn parse(text: &str) -> Result<BTreeMap<String, String>, String> {
    let secrets: BTreeMap<String, String> =
        serde_json::from_str(text).map_err(|e| format!("not a JSON object of names: {e}"))?;
    for (name, hex) in &secrets {
        if name.parse::<ContactName>().is_err() {
            return Err(format!(
                "{:?} is not a contact name",
                contact_proto::escape_controls(name)
            ));
        }
        if Secret::from_hex(hex).is_none() {
            return Err(format!("the secret of {name:?} is not 64 hex digits"));
        }
    }
    Ok(secrets)
}

/// Creates `dir` (and its parents) if missing, those it creates `0700`.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: u8) -> String {
        Secret([b; 32]).to_hex()
    }

    #[test]
    fn kept_secrets_round_trip_in_a_private_file_and_the_last_exit_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep/secrets/127.0.0.1_22000");
        let mut kept = Kept::open(path.clone()).unwrap();
        kept.update("alice", Some(Secret([1; 32]))).unwrap();
        kept.update("bob", Some(Secret([2; 32]))).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().unwrap()), 0o700);
        }
        let again = Kept::open(path.clone()).unwrap();
        assert_eq!(again.secrets.get("alice"), Some(&hex(1)));
        assert_eq!(again.secrets.get("bob"), Some(&hex(2)));
        kept.update("alice", None).unwrap();
        assert_eq!(Kept::open(path.clone()).unwrap().secrets.len(), 1);
        // Another peer of the same user writes carol meanwhile: bob's exit keeps her.
        let mut other = Kept::open(path.clone()).unwrap();
        other.update("carol", Some(Secret([3; 32]))).unwrap();
        kept.update("bob", None).unwrap();
        let left = Kept::open(path.clone()).unwrap().secrets;
        assert_eq!(left.keys().collect::<Vec<_>>(), ["carol"]);
        kept.update("carol", None).unwrap();
        assert!(!path.exists());
        // No temporary file left behind.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            0
        );
    }

    #[test]
    fn two_peers_updating_at_once_keep_each_other_s_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets/127.0.0.1_22000");
        let threads: Vec<_> = (0..2u8)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let name = format!("peer{t}");
                    let mut kept = Kept::open(path).unwrap();
                    for i in 0..200u8 {
                        let secret = (i % 2 == 0).then_some(Secret([i; 32]));
                        kept.update(&name, secret).unwrap();
                    }
                    kept.update(&name, Some(Secret([t + 1; 32]))).unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Without the lock, one peer's read-change-write often undid the other's.
        let left = Kept::open(path).unwrap().secrets;
        assert_eq!(left.get("peer0"), Some(&hex(1)));
        assert_eq!(left.get("peer1"), Some(&hex(2)));
    }

    #[test]
    fn a_damaged_or_exposed_file_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let write = |text: &str| {
            std::fs::write(&path, text).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
        };
        for bad in [
            "",
            "alice 00",
            "[1, 2]",
            &format!("{{\"alice\": \"{}\"}}", &hex(1)[1..]),
            &format!("{{\" alice\": \"{}\"}}", hex(1)),
            &format!("{{\"alice\": \"{}\"}}", "zz".repeat(32)),
        ] {
            write(bad);
            let e = Kept::open(path.clone()).err().expect(bad);
            assert!(e.contains("damaged"), "{bad}: {e}");
        }
        write(&format!("{{\"alice\": \"{}\"}}", hex(1)));
        assert!(Kept::open(path.clone()).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for mode in [0o640, 0o604, 0o620] {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
                let e = Kept::open(path.clone()).err().expect("exposed");
                assert!(e.contains("may be read or changed by others"), "{e}");
                assert!(e.contains(&format!("{mode:04o}")), "{e}");
            }
        }
    }

    #[test]
    fn one_file_per_server_whatever_the_order_of_the_nodes() {
        let a: SocketAddr = "127.0.0.1:22000".parse().unwrap();
        let b: SocketAddr = "[::1]:22000".parse().unwrap();
        assert_eq!(file_name(&[a]), "127.0.0.1_22000");
        assert_eq!(file_name(&[b, a]), file_name(&[a, b]));
        assert_eq!(file_name(&[b]), "0--1_22000");
        assert_eq!(file_name(&[b, a]), "0--1_22000,127.0.0.1_22000");
    }
}
