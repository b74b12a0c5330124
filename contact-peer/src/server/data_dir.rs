//! [`DataDir`]: where the server's `save FILE` may write, and how: confined to a data
//! directory, written atomically. (The file's contents, the registry's saved format, are
//! `contact_registry`'s business; this is only the place and the manner of writing.)
//!
//! The reference writes any path on the server's host that a client names. Our server
//! writes only inside its data directory: an absolute path, a path with a `..` component, or
//! one that resolves (through a symbolic link) outside the directory is refused with
//! [`Status::PathRefused`] (471). The file is written to
//! a temporary file in the same directory (created exclusively, with an unpredictable name,
//! so that nobody can plant a symbolic link where it will be written), flushed to disk, then
//! renamed over the target, and the directory is flushed: a crash mid-save leaves the old file or the new one, never half
//! of one.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Component, Path, PathBuf};

use contact_proto::{SavePath, Status};
use thiserror::Error;

/// Why a save failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SaveError {
    /// The path would leave the data directory.
    #[error("the path {0:?} is outside the data directory")]
    Refused(String),
    /// The data directory holds as many files or bytes as it may
    /// ([`DataDir::with_limits`]).
    #[error("the data directory is full: {0}")]
    Full(String),
    /// The file system refused.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl SaveError {
    /// The status the server answers this failure with: 471, 477 or 462.
    pub fn status(&self) -> Status {
        match self {
            Self::Refused(_) => Status::PathRefused,
            Self::Full(_) => Status::SaveLimit,
            Self::Io { .. } => Status::SaveFailed,
        }
    }
}

/// The directory `save` writes into.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
    max_files: u64,
    max_bytes: u64,
}

impl DataDir {
    /// The directory at `root` (which need not exist yet: saves fail with 462 until it does),
    /// without limits.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            max_files: u64::MAX,
            max_bytes: u64::MAX,
        }
    }

    /// The same directory, holding at most `max_files` files and `max_bytes` bytes once a
    /// save is written (its subdirectories included); a save beyond is refused with
    /// [`SaveError::Full`] (477). A save that replaces a file counts only what it adds.
    pub fn with_limits(self, max_files: u64, max_bytes: u64) -> Self {
        Self {
            max_files,
            max_bytes,
            ..self
        }
    }

    /// Writes `file` atomically with `bytes`, within the directory's limits.
    pub fn save_bytes(&self, file: &SavePath, bytes: &[u8]) -> Result<PathBuf, SaveError> {
        let target = self.resolve(file)?;
        if self.max_files != u64::MAX || self.max_bytes != u64::MAX {
            let (files, total) = usage(&self.root, self.max_files.saturating_add(1));
            let old = fs::symlink_metadata(&target).ok().filter(|m| m.is_file());
            let files = files + u64::from(old.is_none());
            let total = (total + bytes.len() as u64).saturating_sub(old.map_or(0, |m| m.len()));
            if files > self.max_files {
                return Err(SaveError::Full(format!(
                    "more than {} files",
                    self.max_files
                )));
            }
            if total > self.max_bytes {
                return Err(SaveError::Full(format!(
                    "more than {} bytes",
                    self.max_bytes
                )));
            }
        }
        self.save(file, |w| w.write_all(bytes))
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `file` would be written, or why it may not be.
    ///
    /// ```
    /// use contact_peer::DataDir;
    /// let dir = DataDir::new("/srv/contact");
    /// assert!(dir.resolve(&"config.txt".parse().unwrap()).is_ok());
    /// assert!(dir.resolve(&"sub/config.txt".parse().unwrap()).is_ok());
    /// for bad in ["/etc/passwd", "../x", "a/../../x", "a/..", ".", "sub/"] {
    ///     assert!(dir.resolve(&bad.parse().unwrap()).is_err(), "{bad}");
    /// }
    /// ```
    pub fn resolve(&self, file: &SavePath) -> Result<PathBuf, SaveError> {
        let refused = || SaveError::Refused(file.as_str().into());
        let relative = Path::new(file.as_str());
        if file.as_str().ends_with('/') || file.as_str().ends_with('\\') {
            return Err(refused());
        }
        let mut clean = PathBuf::new();
        for component in relative.components() {
            match component {
                Component::Normal(part) => clean.push(part),
                Component::CurDir => {}
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                    return Err(refused());
                }
            }
        }
        if clean.as_os_str().is_empty() {
            return Err(refused());
        }
        Ok(self.root.join(clean))
    }

    /// Writes `file` atomically with what `write` produces. The parent directory must exist
    /// and, once symbolic links are resolved, be inside the data directory.
    pub fn save(
        &self,
        file: &SavePath,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<PathBuf, SaveError> {
        let target = self.resolve(file)?;
        let io_err = |source| SaveError::Io {
            path: target.clone(),
            source,
        };
        let parent = target.parent().unwrap_or(&self.root).to_path_buf();
        let root = fs::canonicalize(&self.root).map_err(io_err)?;
        let real_parent = fs::canonicalize(&parent).map_err(io_err)?;
        if !real_parent.starts_with(&root) {
            return Err(SaveError::Refused(file.as_str().into()));
        }
        if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
            return Err(io_err(io::Error::other("a directory is in the way")));
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // An exclusive temporary file with an unpredictable name (`O_EXCL`, so a symbolic
        // link planted in the directory is never followed), renamed over the target.
        let result = (|| {
            let temp = tempfile::Builder::new()
                .prefix(&format!(".{name}."))
                .suffix(".tmp")
                .tempfile_in(&real_parent)?;
            let mut out = BufWriter::new(temp);
            write(&mut out)?;
            let temp = out.into_inner().map_err(io::IntoInnerError::into_error)?;
            temp.as_file().sync_all()?;
            // On failure the temporary file is removed when dropped.
            temp.persist(real_parent.join(&name)).map_err(|e| e.error)?;
            // The rename is durable once the directory is.
            if let Ok(dir) = File::open(&real_parent) {
                let _ = dir.sync_all();
            }
            Ok(())
        })();
        result.map_err(io_err)?;
        Ok(target)
    }
}

/// The regular files under `dir` and their bytes, counting at most `cap` files (the server's
/// temporary files included, since they take room too).
fn usage(dir: &Path, cap: u64) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                dirs.push(e.path());
            } else if meta.is_file() {
                files += 1;
                bytes += meta.len();
                if files >= cap {
                    return (files, bytes);
                }
            }
        }
    }
    (files, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> SavePath {
        s.parse().unwrap()
    }

    #[test]
    fn writes_inside_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        data.save(&path("a.txt"), |w| w.write_all(b"one")).unwrap();
        data.save(&path("./a.txt"), |w| w.write_all(b"two"))
            .unwrap();
        assert_eq!(fs::read(dir.path().join("a.txt")).unwrap(), b"two");
        // A failing writer leaves the old file and no temporary file behind.
        let err = data
            .save(&path("a.txt"), |w| {
                w.write_all(b"half")?;
                Err(io::Error::other("boom"))
            })
            .unwrap_err();
        assert_eq!(err.status(), Status::SaveFailed);
        assert_eq!(fs::read(dir.path().join("a.txt")).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        fs::create_dir(data.root()).unwrap();
        for bad in ["/tmp/x", "../x", "a/../../x", "..", "sub/../../x"] {
            let err = data.save(&path(bad), |w| w.write_all(b"x")).unwrap_err();
            assert_eq!(err.status(), Status::PathRefused, "{bad}");
        }
        // A symbolic link out of the directory is refused too.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path(), data.root().join("out")).unwrap();
            let err = data
                .save(&path("out/x"), |w| w.write_all(b"x"))
                .unwrap_err();
            assert_eq!(err.status(), Status::PathRefused);
        }
        assert!(!dir.path().join("x").exists());
        // A missing subdirectory is a write failure, not a refusal.
        let err = data
            .save(&path("nope/x"), |w| w.write_all(b"x"))
            .unwrap_err();
        assert_eq!(err.status(), Status::SaveFailed);
    }

    #[cfg(unix)]
    #[test]
    fn temporary_files_are_not_predictable_and_follow_no_link() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        // A link planted at the name the old code used.
        let planted = dir
            .path()
            .join(format!(".a.txt.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        // Record the temporary names the writes see (their own file, through /proc).
        let mut seen = Vec::new();
        for _ in 0..3 {
            data.save(&path("a.txt"), |w| {
                w.write_all(b"saved")?;
                let names: Vec<_> = fs::read_dir(dir.path())?
                    .map(|e| e.map(|e| e.file_name()))
                    .collect::<Result<_, _>>()?;
                seen.extend(
                    names
                        .into_iter()
                        .map(|n| n.to_string_lossy().into_owned())
                        .filter(|n| n.starts_with(".a.txt.") && n.ends_with(".tmp"))
                        .filter(|n| *n != planted.file_name().unwrap().to_string_lossy()),
                );
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read(dir.path().join("a.txt")).unwrap(), b"saved");
        assert_eq!(seen.len(), 3, "{seen:?}");
        seen.sort();
        seen.dedup();
        assert_eq!(
            seen.len(),
            3,
            "three saves, three different names: {seen:?}"
        );
    }
}
