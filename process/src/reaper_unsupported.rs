//! The orphan reaper where it is not built (it needs Linux's `pipe2` and
//! `prctl`): starting it says so, and children are guarded by their process
//! group and deadline only.

/// Why the watcher could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ReaperError {
    /// Not on this operating system.
    #[error("the orphan reaper is only built for Linux; a killed program's builds run until they end")]
    Unsupported,
}

/// Refuses: see the module docs.
///
/// # Safety
/// None needed here; `unsafe` only to match the Linux version's contract.
#[expect(unsafe_code, reason = "the same signature as the Linux version")]
pub unsafe fn start_orphan_reaper() -> Result<(), ReaperError> {
    Err(ReaperError::Unsupported)
}

/// Never runs here.
pub fn orphan_reaper_running() -> bool {
    false
}

pub(crate) fn watch(_pgid: i32) {}

pub(crate) fn unwatch(_pgid: i32) {}
