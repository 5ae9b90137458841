//! Keeps the agent's certificate revocation list current while it runs: the configured `crl` file is re-read when it changes (checked every [`POLL_INTERVAL`]) or on SIGHUP, and handed to the listener, so a revocation takes effect without a restart.
//!
//! A file that cannot be used (half written, another CA's, deleted) keeps
//! the list in force, with a warning: a broken update never lets a revoked
//! coordinator back in, and never locks the whole fleet out.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustle_transport::{RevocationList, RevocationReloader};

/// How often the file's identity is compared.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What tells a changed file from an unchanged one without reading it: its
/// size, modification time and inode (an atomic replace, as Ansible's copy
/// does, gives a new inode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl FileStamp {
    /// The stamp of the file at `path` now, `None` when it cannot be read.
    pub fn of(path: &Path) -> Option<Self> {
        let metadata = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
        #[cfg(not(unix))]
        let inode = 0;
        Some(Self { len: metadata.len(), modified: metadata.modified().ok(), inode })
    }
}

/// Watches `path` (the list the agent started with, stamped `loaded`) until
/// the returned future is dropped, reloading the listener's list on each change.
pub async fn watch(path: PathBuf, loaded: Option<FileStamp>, reloader: RevocationReloader) {
    let mut last = loaded;
    let mut hangup = Hangup::new();
    loop {
        let forced = tokio::select! {
            () = tokio::time::sleep(POLL_INTERVAL) => false,
            () = hangup.recv() => true,
        };
        let stamp = FileStamp::of(&path);
        if !forced && stamp == last {
            continue;
        }
        last = stamp;
        match RevocationList::load(&path) {
            Ok(list) => match reloader.reload(list) {
                Ok(reload) => {
                    let closed = if reload.closed.is_empty() {
                        String::new()
                    } else {
                        format!("; closed the connections of revoked coordinator(s) {}", reload.closed.join(", "))
                    };
                    tracing::info!(
                        "reloaded the certificate revocation list {}: {} certificate(s) revoked{closed}",
                        path.display(),
                        reload.revoked
                    );
                }
                Err(error) => tracing::warn!("kept the revocation list in force: {error}"),
            },
            Err(error) => tracing::warn!("kept the revocation list in force: {error}"),
        }
    }
}

/// SIGHUP, where there is one: "re-read the list now".
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn new() -> Self {
        #[cfg(unix)]
        {
            Self { signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok() }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal {
            signal.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_has_a_new_stamp_and_an_untouched_one_the_same() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("crl.pem");
        std::fs::write(&path, "one").expect("write");
        let first = FileStamp::of(&path).expect("stamp");
        assert_eq!(FileStamp::of(&path), Some(first.clone()));
        // Same length, replaced by rename as Ansible's copy does.
        let next = dir.path().join("crl.pem.new");
        std::fs::write(&next, "two").expect("write");
        std::fs::rename(&next, &path).expect("rename");
        assert_ne!(FileStamp::of(&path), Some(first));
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(FileStamp::of(&path), None);
    }
}
