//! Build processes that do not outlive the program that started them, even
//! when it is killed outright (`kill -9`, the OOM killer).
//!
//! A killed process cannot clean up, and its children's process groups
//! (cargo with its rustc, linkers and build scripts) would run on. The
//! [`start_orphan_reaper`] call forks a small watcher process while the
//! program is still single-threaded (a fork, not an exec of the program: a
//! program run by qemu-user without binfmt_misc cannot exec itself). The program keeps the write end of a
//! pipe to it and tells it, one fixed-size record per event, which process
//! group each child it spawns leads and when that group is gone. The kernel
//! closes the pipe when the program dies, however it dies: the watcher reads
//! end-of-file, kills every group still registered and exits.
//!
//! The write end is close-on-exec, so no child holds the pipe open. The
//! watcher ignores SIGINT, SIGTERM and SIGHUP (a terminal's Ctrl-C or a
//! service manager's stop reach the program, which drains and exits; the
//! watcher follows when the pipe closes) and holds nothing else open.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::sync::{Mutex, OnceLock};

/// The pipe to the watcher, once started.
static WATCHER: OnceLock<Mutex<std::fs::File>> = OnceLock::new();

/// One record: an event byte and a process group id (little endian).
const RECORD_LEN: usize = 5;
/// "This group is mine now."
const WATCH: u8 = b'+';
/// "This group is gone" (reaped, or killed by its guard).
const UNWATCH: u8 = b'-';

/// Why the watcher could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ReaperError {
    /// `pipe2` or `fork` failed.
    #[error("failed to start the orphan reaper: {0}")]
    Os(#[source] std::io::Error),
    /// It was started before.
    #[error("the orphan reaper was already started")]
    AlreadyStarted,
}

/// Forks the watcher (see the module docs). From then on every child
/// spawned by [`ProcessSpec`](crate::ProcessSpec) is killed, with its
/// process group, if this process dies before it ends.
///
/// # Safety
/// No other thread of this program may be running: call it first thing in
/// `main`, before any runtime, logger thread or pool starts. (An emulator's
/// own threads, such as qemu-user's, do not count: the emulator makes the
/// fork safe for itself, and the program's memory is not theirs. This is
/// also why the thread count is not checked here: under qemu it is never 1.)
#[expect(unsafe_code, reason = "forking is sound only before any other thread of the program runs")]
pub unsafe fn start_orphan_reaper() -> Result<(), ReaperError> {
    if WATCHER.get().is_some() {
        return Err(ReaperError::AlreadyStarted);
    }
    let (read_end, write_end) = pipe().map_err(ReaperError::Os)?;
    match fork().map_err(ReaperError::Os)? {
        Forked::Child => {
            drop(write_end);
            watch_until_parent_dies(read_end)
        }
        Forked::Parent => {
            drop(read_end);
            let _ = WATCHER.set(Mutex::new(std::fs::File::from(write_end)));
            Ok(())
        }
    }
}

/// Whether the watcher runs (children are killed if this process dies).
pub fn orphan_reaper_running() -> bool {
    WATCHER.get().is_some()
}

/// Registers `pgid` with the watcher, if one runs.
pub(crate) fn watch(pgid: i32) {
    send(WATCH, pgid);
}

/// Tells the watcher `pgid` is gone, if one runs.
pub(crate) fn unwatch(pgid: i32) {
    send(UNWATCH, pgid);
}

fn send(event: u8, pgid: i32) {
    let Some(watcher) = WATCHER.get() else { return };
    let record = encode(event, pgid);
    // One write of 5 bytes to a pipe is atomic (below PIPE_BUF). A watcher
    // that died cannot be helped here; the build goes on unwatched.
    let mut pipe = watcher.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let _ = pipe.write_all(&record);
}

fn encode(event: u8, pgid: i32) -> [u8; RECORD_LEN] {
    let id = pgid.to_le_bytes();
    [event, id[0], id[1], id[2], id[3]]
}

/// The groups still registered after `records` (whole records only; a
/// torn tail is kept for the next read by the caller).
fn apply(groups: &mut BTreeSet<i32>, records: &[u8]) {
    for record in records.chunks_exact(RECORD_LEN) {
        let pgid = i32::from_le_bytes([record[1], record[2], record[3], record[4]]);
        match record[0] {
            WATCH => {
                groups.insert(pgid);
            }
            UNWATCH => {
                groups.remove(&pgid);
            }
            _ => {}
        }
    }
}

enum Forked {
    Parent,
    Child,
}

#[expect(unsafe_code, reason = "pipe2 has no safe wrapper in std")]
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are open descriptors owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[expect(unsafe_code, reason = "fork has no safe wrapper in std")]
fn fork() -> std::io::Result<Forked> {
    // SAFETY: `start_orphan_reaper`'s caller guarantees that no other thread
    // of the program runs, so the child gets a consistent copy (no lock
    // held by another thread).
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        _ => Ok(Forked::Parent),
    }
}

/// The watcher's whole life: read records until end-of-file, then kill
/// every group still registered and exit without running the parent's
/// destructors.
#[expect(unsafe_code, reason = "signal dispositions, stdio redirection, killpg and _exit have no safe wrappers")]
fn watch_until_parent_dies(read_end: OwnedFd) -> ! {
    // SAFETY: plain syscalls on this (single-threaded) process's own state.
    unsafe {
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
            libc::signal(signal, libc::SIG_IGN);
        }
        libc::prctl(libc::PR_SET_NAME, c"rustle-reaper".as_ptr() as libc::c_ulong, 0, 0, 0);
        // Hold no terminal or log pipe open on the parent's behalf.
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
        }
    }
    let mut pipe = std::fs::File::from(read_end);
    let mut groups = BTreeSet::new();
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match std::io::Read::read(&mut pipe, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                let whole = pending.len() - pending.len() % RECORD_LEN;
                apply(&mut groups, &pending[..whole]);
                pending.drain(..whole);
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    for pgid in groups {
        // SAFETY: killpg only sends a signal; a group already gone gives ESRCH.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
    // SAFETY: ends this process at once, as a forked child must.
    unsafe { libc::_exit(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_register_and_release_groups_in_order() {
        let mut groups = BTreeSet::new();
        let mut stream = Vec::new();
        for (event, pgid) in [(WATCH, 10), (WATCH, 70_000), (UNWATCH, 10), (WATCH, 12), (b'?', 99)] {
            stream.extend_from_slice(&encode(event, pgid));
        }
        apply(&mut groups, &stream);
        assert_eq!(groups.into_iter().collect::<Vec<_>>(), [12, 70_000]);
    }
}
