//! The one seam through which rustle-cross runs external programs (cargo,
//! rustc, rustup, ssh, qemu, wine): each child gets its own process group,
//! a deadline that kills the whole group, and captured output. With the
//! orphan reaper started ([`start_orphan_reaper`]), the groups die with
//! this process even when it is killed outright.
//!
//! On Windows there are no process groups: a child's "group" is its
//! process tree, killed with `taskkill /F /T`, and a lower priority is the
//! below-normal priority class; the orphan reaper is Linux only.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

#[cfg_attr(not(target_os = "linux"), path = "reaper_unsupported.rs")]
mod reaper;
pub mod report;

pub use reaper::{ReaperError, orphan_reaper_running, start_orphan_reaper};

/// How many nice levels below this process children run (see [`set_child_niceness`]).
static CHILD_NICENESS: AtomicI32 = AtomicI32::new(0);

/// Runs every child started from now on `increment` nice levels below this
/// process (0: at its priority; clamped to 0..=19). A build host's daemon
/// sets it so that its builds, however many cores they take, never delay
/// its own heartbeats and transfers. A program-wide policy, like the orphan
/// reaper: set it in `main`, not in a library.
pub fn set_child_niceness(increment: i32) {
    CHILD_NICENESS.store(increment.clamp(0, 19), Ordering::Relaxed);
}

/// Why a program could not be run to completion.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started.
    #[error("failed to start `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The program ran past its deadline; its process group was killed.
    #[error("`{program}` did not finish within {}s and was killed (with its child processes)", .timeout.as_secs())]
    TimedOut {
        /// The program.
        program: String,
        /// The deadline it had.
        timeout: Duration,
    },
    /// Reading its output or waiting for it failed.
    #[error("failed while running `{program}`: {source}")]
    Io {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A finished program.
#[derive(Debug, Clone)]
pub struct ProcessOutput {
    /// How it exited.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
    /// How long it ran.
    pub elapsed: Duration,
}

impl ProcessOutput {
    /// stdout as (lossy) UTF-8.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    /// stderr as (lossy) UTF-8.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// A program to run: what, with which arguments and environment, and for how
/// long at most.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    env_remove: Vec<OsString>,
    cwd: Option<PathBuf>,
    timeout: Duration,
    stdin: Option<Vec<u8>>,
}

impl ProcessSpec {
    /// A program with a default deadline of 60 s.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            cwd: None,
            timeout: Duration::from_secs(60),
            stdin: None,
        }
    }
    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }
    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
    /// Sets an environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
    /// Removes an inherited environment variable.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env_remove.push(key.into());
        self
    }
    /// Sets the working directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }
    /// Sets the deadline after which the process group is killed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Feeds these bytes to stdin (otherwise stdin is /dev/null).
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }
    /// The program.
    pub fn program(&self) -> &Path {
        &self.program
    }
    /// The arguments.
    pub fn get_args(&self) -> &[OsString] {
        &self.args
    }
    /// The environment set on top of the inherited one.
    pub fn get_envs(&self) -> &[(OsString, OsString)] {
        &self.env
    }

    fn display_name(&self) -> String {
        self.program.file_name().map_or_else(|| self.program.display().to_string(), |n| n.to_string_lossy().into())
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        for key in &self.env_remove {
            cmd.env_remove(key);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        #[cfg(unix)]
        cmd.process_group(0);
        cmd.kill_on_drop(true);
        lower_priority(&mut cmd, CHILD_NICENESS.load(Ordering::Relaxed));
        cmd.stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }

    /// The command this spec runs, for a caller that owns a long-running
    /// child itself (a daemon under test): the same program, arguments,
    /// environment, directory, process group and priority, stdin from
    /// /dev/null (or piped, with [`stdin`](Self::stdin)), stdout and stderr
    /// piped. It has no deadline, and its group is the caller's to end.
    pub fn std_command(&self) -> std::process::Command {
        self.command().into_std()
    }

    /// Runs to completion, capturing stdout and stderr.
    pub async fn output(&self) -> Result<ProcessOutput, ProcessError> {
        self.run_with_lines(|_| {}).await
    }

    /// Runs to completion, calling `on_stdout_line` for each stdout line as
    /// it arrives (cargo's JSON messages, for progress) while also capturing
    /// all output.
    pub async fn run_with_lines(&self, on_stdout_line: impl FnMut(&str)) -> Result<ProcessOutput, ProcessError> {
        self.run_streaming(on_stdout_line, |_| {}).await
    }

    /// Runs to completion, calling `on_stdout_line` and `on_stderr_line`
    /// for each line of either stream as it arrives (stdout lines in order,
    /// stderr lines in order), while also capturing all output.
    pub async fn run_streaming(
        &self,
        mut on_stdout_line: impl FnMut(&str),
        mut on_stderr_line: impl FnMut(&str),
    ) -> Result<ProcessOutput, ProcessError> {
        let program = self.display_name();
        let io_err = |source| ProcessError::Io { program: program.clone(), source };
        let start = Instant::now();
        let mut child =
            self.command().spawn().map_err(|source| ProcessError::Spawn { program: program.clone(), source })?;
        let guard = GroupGuard::new(&child);
        if let (Some(input), Some(mut stdin)) = (self.stdin.clone(), child.stdin.take()) {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                // A child that exits without reading its stdin is not an error here.
                let _ = stdin.write_all(&input).await;
            });
        }
        let stdout = child.stdout.take().ok_or_else(|| io_err(std::io::Error::other("no stdout pipe")))?;
        let stderr = child.stderr.take().ok_or_else(|| io_err(std::io::Error::other("no stderr pipe")))?;
        // stderr is read on its own task (so a child filling it never
        // blocks), which captures it whole and hands each line over.
        let (stderr_lines, mut stderr_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let stderr_task = tokio::spawn(read_all_lines(stderr, stderr_lines));
        let run = async {
            let mut lines = BufReader::new(stdout);
            let mut captured = Vec::new();
            // Kept across iterations: `read_until` appends, so a read cut
            // short by the other branch of the select loses nothing.
            let mut line = Vec::new();
            let mut stderr_open = true;
            loop {
                tokio::select! {
                    read = lines.read_until(b'\n', &mut line) => {
                        if read.map_err(io_err)? == 0 {
                            break;
                        }
                        on_stdout_line(String::from_utf8_lossy(&line).trim_end());
                        captured.extend_from_slice(&line);
                        line.clear();
                    }
                    next = stderr_rx.recv(), if stderr_open => match next {
                        Some(err_line) => on_stderr_line(&err_line),
                        None => stderr_open = false,
                    },
                }
            }
            let status = child.wait().await.map_err(io_err)?;
            Ok::<_, ProcessError>((status, captured))
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok(result) => {
                let (status, stdout) = result?;
                // The leader was reaped and its stdout closed: its pid may be
                // reused from here on, so the group must not be signalled.
                guard.disarm();
                let stderr = stderr_task.await.map_err(|e| io_err(std::io::Error::other(e)))?;
                while let Ok(err_line) = stderr_rx.try_recv() {
                    on_stderr_line(&err_line);
                }
                Ok(ProcessOutput { status, stdout, stderr, elapsed: start.elapsed() })
            }
            Err(_) => {
                drop(guard);
                stderr_task.abort();
                Err(ProcessError::TimedOut { program, timeout: self.timeout })
            }
        }
    }
}

/// Reads a stream to its end, returning all of it and sending each line.
async fn read_all_lines(reader: impl AsyncRead + Unpin, lines: tokio::sync::mpsc::UnboundedSender<String>) -> Vec<u8> {
    let mut reader = BufReader::new(reader);
    let mut all = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        // A read error ends the capture; the exit status still tells the outcome.
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                all.extend_from_slice(&line);
                // Nobody listening any more is fine: the capture goes on.
                let _ = lines.send(String::from_utf8_lossy(&line).trim_end().to_owned());
            }
        }
    }
    all
}

/// Kills the child's whole process group when dropped or asked to, so a
/// timed-out or abandoned cargo takes its rustc, linker and build scripts
/// with it.
struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    /// Guards the group `child` leads, and registers it with the orphan
    /// reaper (when one runs) so the group dies with this process too.
    fn new(child: &Child) -> Self {
        let pgid = child.id().and_then(|id| i32::try_from(id).ok());
        if let Some(pgid) = pgid {
            reaper::watch(pgid);
        }
        Self { pgid }
    }

    fn disarm(mut self) {
        if let Some(pgid) = self.pgid.take() {
            reaper::unwatch(pgid);
        }
    }

    fn kill_group(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            kill_process_group(pgid);
            reaper::unwatch(pgid);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// Makes the child run `increment` nice levels below its parent.
#[cfg(unix)]
#[expect(unsafe_code, reason = "a pre-exec hook is unsafe in std and tokio")]
fn lower_priority(cmd: &mut Command, increment: i32) {
    if increment > 0 {
        // SAFETY: the hook only calls nice(2), which is async-signal-safe and
        // touches nothing of the parent's state. Failing to lower the
        // priority is not worth failing the build for.
        unsafe {
            cmd.pre_exec(move || {
                libc::nice(increment);
                Ok(())
            });
        }
    }
}

/// Windows has priority classes, not nice levels: any increment runs the
/// child below normal.
#[cfg(windows)]
fn lower_priority(cmd: &mut Command, increment: i32) {
    /// `BELOW_NORMAL_PRIORITY_CLASS`, a process creation flag.
    const BELOW_NORMAL_PRIORITY_CLASS: u32 = 0x0000_4000;
    if increment > 0 {
        cmd.creation_flags(BELOW_NORMAL_PRIORITY_CLASS);
    }
}

#[cfg(not(any(unix, windows)))]
fn lower_priority(_cmd: &mut Command, _increment: i32) {}

#[cfg(unix)]
#[expect(unsafe_code, reason = "killpg has no safe wrapper in std")]
fn kill_process_group(pgid: i32) {
    // SAFETY: killpg only sends a signal; an already-gone group yields ESRCH,
    // which is fine.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

/// Kills the process tree `pid` leads (Windows has no process groups).
/// Started, not waited for: this runs in a guard's drop. The child itself
/// is also killed by `kill_on_drop`, should `taskkill` be missing.
#[cfg(windows)]
fn kill_process_group(pid: i32) {
    let _ = std::process::Command::new("taskkill")
        .args(["/F", "/T", "/PID", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

#[cfg(not(any(unix, windows)))]
fn kill_process_group(_pgid: i32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn captures_output_and_status() {
        let out = ProcessSpec::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]).output().await.unwrap();
        assert_eq!(out.stdout_text(), "out\n");
        assert_eq!(out.stderr_text(), "err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[tokio::test]
    async fn streams_lines_and_feeds_stdin() {
        let mut seen = Vec::new();
        let out = ProcessSpec::new("sh")
            .args(["-c", "while read l; do echo \"got $l\"; done"])
            .stdin("a\nb\n")
            .run_with_lines(|l| seen.push(l.to_owned()))
            .await
            .unwrap();
        assert!(out.status.success());
        assert_eq!(seen, ["got a", "got b"]);
    }

    #[tokio::test]
    async fn streams_stderr_lines_in_order_and_captures_both() {
        let mut out_lines = Vec::new();
        let mut err_lines = Vec::new();
        let out = ProcessSpec::new("sh")
            .args(["-c", "echo o1; echo e1 >&2; echo o2; echo e2 >&2; echo e3 >&2"])
            .run_streaming(|l| out_lines.push(l.to_owned()), |l| err_lines.push(l.to_owned()))
            .await
            .unwrap();
        assert_eq!(out_lines, ["o1", "o2"]);
        assert_eq!(err_lines, ["e1", "e2", "e3"]);
        assert_eq!(out.stdout_text(), "o1\no2\n");
        assert_eq!(out.stderr_text(), "e1\ne2\ne3\n");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let err = ProcessSpec::new("sh")
            .args(["-c", &script])
            .timeout(Duration::from_millis(500))
            .output()
            .await
            .unwrap_err();
        assert!(matches!(err, ProcessError::TimedOut { .. }), "{err}");
        assert!(err.to_string().contains("did not finish within"), "{err}");
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        // The grandchild (sleep) must be gone: poll until the kernel reaped it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z")
        {
            assert!(Instant::now() < deadline, "grandchild {pid} survived the timeout");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[tokio::test]
    async fn children_run_at_the_niceness_asked_for() {
        let niceness = || async {
            // Field 19 of /proc/PID/stat is the nice value (after the command's parenthesis).
            let out = ProcessSpec::new("sh").args(["-c", "cat /proc/$$/stat"]).output().await.unwrap();
            let stat = out.stdout_text();
            let after = stat.rsplit_once(") ").unwrap().1.to_owned();
            after.split(' ').nth(16).unwrap().parse::<i32>().unwrap()
        };
        let base = niceness().await;
        set_child_niceness(7);
        let lowered = niceness().await;
        set_child_niceness(0);
        assert_eq!(lowered, (base + 7).min(19));
        assert_eq!(niceness().await, base);
    }

    #[tokio::test]
    async fn missing_program_names_it() {
        let err = ProcessSpec::new("/nonexistent/tool").output().await.unwrap_err();
        assert!(err.to_string().contains("failed to start `tool`"), "{err}");
    }
}
