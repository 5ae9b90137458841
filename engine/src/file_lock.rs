//! An exclusive advisory lock on a file, waited for without blocking an async worker and for a bounded time: how processes sharing a cache dir take turns at a one-time set-up (a wine prefix, a C library built from source).

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

/// Why a lock could not be had.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The lock file could not be opened or locked.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The lock file.
        path: std::path::PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Another process held it for the whole wait.
    #[error("{} was still locked after {}s", .path.display(), .timeout.as_secs())]
    TimedOut {
        /// The lock file.
        path: std::path::PathBuf,
        /// How long it was waited for.
        timeout: Duration,
    },
}

/// Takes an exclusive advisory lock on `path` (created if missing),
/// polling so the wait is async and bounded. Released when the returned
/// file is dropped (or the process dies), so a crashed set-up never leaves
/// a stale lock.
pub async fn lock_exclusive(path: &Path, timeout: Duration) -> Result<File, LockError> {
    let io = |source| LockError::Io { path: path.to_path_buf(), source };
    let file = File::options().create(true).truncate(false).write(true).open(path).map_err(io)?;
    let deadline = Instant::now() + timeout;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LockError::TimedOut { path: path.to_path_buf(), timeout });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_lock_makes_the_next_taker_wait_and_then_time_out() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("set-up.lock");
        let held = lock_exclusive(&path, Duration::from_secs(1)).await.expect("free");
        let second = lock_exclusive(&path, Duration::from_millis(300)).await;
        assert!(matches!(second, Err(LockError::TimedOut { .. })), "{second:?}");
        drop(held);
        lock_exclusive(&path, Duration::from_secs(1)).await.expect("free again once dropped");
    }
}
