//! Test harness for sshd "hosts" in network namespaces, started by
//! scripts/netns-hosts.sh: shared by rustle-detect's probe tests and the
//! rustle-cross CLI tests (included there by path).

#![allow(dead_code, reason = "each test file uses a different subset")]

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustle_detect::{InventoryFormat, ParsedInventory};

/// The script that creates, blackholes and removes the hosts.
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/netns-hosts.sh");
/// Held by whoever uses the hosts, from before `up` until after `down`
/// (documented in the script).
pub const SESSION_LOCK: &str = "/tmp/rustle-netns-hosts.session.lock";
/// How many hosts each test starts.
pub const HOSTS: usize = 3;
/// The longest a test waits for another one to finish with the hosts.
pub const LOCK_WAIT: Duration = Duration::from_secs(300);
/// The longest `up` / `down` may take (both take well under 5 s here).
pub const SCRIPT_WAIT: Duration = Duration::from_secs(120);

/// A finished child process.
pub struct Finished {
    /// How it exited.
    pub status: ExitStatus,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

/// Runs `command` to its end or kills it after `limit`. Output goes to
/// temporary files, so a chatty child never blocks on a full pipe.
pub fn run_bounded(command: &mut Command, limit: Duration) -> Result<Finished, String> {
    let files = (tempfile::tempfile(), tempfile::tempfile());
    let (Ok(mut out), Ok(mut err)) = files else { return Err("cannot create temporary files".into()) };
    let stdio = |file: &File| file.try_clone().map(Stdio::from).map_err(|e| e.to_string());
    let mut child = command
        .stdin(Stdio::null())
        .stdout(stdio(&out)?)
        .stderr(stdio(&err)?)
        .spawn()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{command:?} did not finish within {limit:?} and was killed"));
            }
            Err(e) => return Err(format!("waiting for {command:?}: {e}")),
        }
    };
    let read = |file: &mut File| {
        let mut text = String::new();
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_string(&mut text))
            .map(|_| text)
            .map_err(|e| e.to_string())
    };
    Ok(Finished { status, stdout: read(&mut out)?, stderr: read(&mut err)? })
}

/// Waits (bounded) for the exclusive session lock.
pub fn session_lock() -> File {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(SESSION_LOCK)
        .unwrap_or_else(|e| panic!("cannot open {SESSION_LOCK} (the session lock of scripts/netns-hosts.sh): {e}"));
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return file,
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(TryLockError::WouldBlock) => {
                panic!("another user of scripts/netns-hosts.sh held {SESSION_LOCK} for {LOCK_WAIT:?}")
            }
            Err(TryLockError::Error(e)) => panic!("cannot lock {SESSION_LOCK}: {e}"),
        }
    }
}

/// One namespace host.
pub struct Host {
    /// Its namespace and hostname, `rustle-hI`.
    pub name: String,
    /// Its own address, `10.200.I.2`.
    pub address: String,
}

impl Host {
    /// The root namespace's end of its veth pair, where connections to it come from.
    pub fn peer_address(&self) -> String {
        self.address.strip_suffix(".2").map(|net| format!("{net}.1")).expect("10.200.I.2")
    }
}

/// The hosts of one test; dropping it takes them down and frees the lock.
pub struct NetnsHosts {
    /// Where the script keeps keys, configs and logs.
    pub dir: PathBuf,
    /// `ssh -F` file with a `Host rustle-hI 10.200.I.2` entry per host.
    pub config: PathBuf,
    /// The hosts, in order.
    pub hosts: Vec<Host>,
    /// Released after `down` (fields drop after `Drop::drop`).
    _session: File,
}

impl NetnsHosts {
    /// Starts [`HOSTS`] hosts; `None` (after saying so) with RUSTLE_SKIP_NETNS_TESTS=1.
    pub fn up() -> Option<Self> {
        if std::env::var("RUSTLE_SKIP_NETNS_TESTS").is_ok_and(|v| v == "1") {
            eprintln!("SKIPPED: network namespace ssh tests skipped because RUSTLE_SKIP_NETNS_TESTS=1");
            return None;
        }
        let session = session_lock();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rustle-detect-netns");
        let started = Instant::now();
        let result =
            run_bounded(Command::new("bash").arg(SCRIPT).arg("up").arg(&dir).arg(HOSTS.to_string()), SCRIPT_WAIT);
        let finished = result.unwrap_or_else(|e| panic!("scripts/netns-hosts.sh up: {e}"));
        if !finished.status.success() {
            // Take down whatever was made before failing.
            let _ = run_bounded(Command::new("bash").arg(SCRIPT).arg("down"), SCRIPT_WAIT);
            panic!(
                "scripts/netns-hosts.sh up {} {HOSTS} failed ({}); it creates the network namespace ssh hosts \
                 (exit 77: this machine cannot create network namespaces; run it by hand to see why, or set \
                 RUSTLE_SKIP_NETNS_TESTS=1 to skip these tests):\n{}",
                dir.display(),
                finished.status,
                finished.stderr
            );
        }
        eprintln!("netns hosts up in {:?}", started.elapsed());
        let hosts: Vec<Host> = finished
            .stdout
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .map(|(name, address)| Host { name: name.to_owned(), address: address.to_owned() })
            .collect();
        assert_eq!(hosts.len(), HOSTS, "hosts.tsv: {}", finished.stdout);
        Some(Self { config: dir.join("ssh_config"), dir, hosts, _session: session })
    }

    /// Makes host `index` (1-based) drop every packet.
    pub fn blackhole(&self, index: usize) {
        let finished =
            run_bounded(Command::new("bash").arg(SCRIPT).arg("blackhole").arg(index.to_string()), SCRIPT_WAIT)
                .unwrap_or_else(|e| panic!("scripts/netns-hosts.sh blackhole: {e}"));
        assert!(finished.status.success(), "scripts/netns-hosts.sh blackhole {index}: {}", finished.stderr);
    }

    /// Runs `command` on `target` with the hosts' ssh config (bounded).
    pub fn ssh(&self, target: &str, command: &str) -> String {
        let finished = run_bounded(
            Command::new("ssh").arg("-F").arg(&self.config).args(["-o", "ConnectTimeout=5", target, command]),
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| panic!("ssh {target}: {e}"));
        assert!(finished.status.success(), "ssh {target} {command}: {}{}", finished.stdout, finished.stderr);
        finished.stdout
    }

    /// The host's sshd log (LogLevel INFO: one `Accepted publickey` line per login).
    pub fn log(&self, host: &Host) -> String {
        std::fs::read_to_string(self.dir.join(&host.name).join("sshd.log")).unwrap_or_default()
    }

    /// An INI inventory with the hosts as node1..N, addressed by their own
    /// addresses, with ssh's connect timeout `ansible_timeout`.
    pub fn inventory_text(&self, ansible_timeout: u64) -> String {
        let mut text = String::from("[netns]\n");
        for (i, host) in self.hosts.iter().enumerate() {
            text.push_str(&format!("node{} ansible_host={}\n", i + 1, host.address));
        }
        text.push_str(&format!(
            "[netns:vars]\nansible_ssh_common_args='-F {}'\nansible_timeout={ansible_timeout}\n",
            self.config.display()
        ));
        text
    }

    /// [`Self::inventory_text`], parsed.
    pub fn inventory(&self, ansible_timeout: u64) -> ParsedInventory {
        ParsedInventory::parse(&self.inventory_text(ansible_timeout), InventoryFormat::Ini, Path::new("netns.ini"))
            .expect("parses")
    }
}

impl Drop for NetnsHosts {
    fn drop(&mut self) {
        let result = run_bounded(Command::new("bash").arg(SCRIPT).arg("down"), SCRIPT_WAIT);
        let problem = match result {
            Ok(finished) if finished.status.success() => return,
            Ok(finished) => format!("{}: {}", finished.status, finished.stderr),
            Err(e) => e,
        };
        if std::thread::panicking() {
            eprintln!("scripts/netns-hosts.sh down failed: {problem}");
        } else {
            panic!("scripts/netns-hosts.sh down failed: {problem}");
        }
    }
}
