//! Probing sshd "hosts" with their own addresses: three network namespaces
//! started by scripts/netns-hosts.sh (host I answers on 10.200.I.2 with the
//! hostname rustle-hI), probed in parallel through `detect_from_inventory`
//! with probing on (`--probe`), then with one host blackholed (its packets
//! are dropped, so the probe must time out within the bound while the others
//! resolve). Skipped only with RUSTLE_SKIP_NETNS_TESTS=1; otherwise a set-up
//! failure fails the test.
//!
//! Each test brings the hosts up, holds the script's session lock so tests
//! (here and in other processes) never share or tear down each other's
//! hosts, and takes them down again when it ends (a Drop guard).
//!
//! The CLI (`rustle-cross detect -i INV --probe --json`) is the coordinator
//! crate's binary, which this crate's tests cannot name (no CARGO_BIN_EXE
//! across crates); it is not run here.

#![cfg(target_os = "linux")]

use std::collections::BTreeSet;
use std::fs::{File, TryLockError};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustle_detect::{
    DetectOptions, EvidenceSource, InventoryFormat, ParsedInventory, ProbeError, TargetDetectionError, TargetDetector,
};

/// The script that creates, blackholes and removes the hosts.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/netns-hosts.sh");
/// Held by whoever uses the hosts, from before `up` until after `down`
/// (documented in the script).
const SESSION_LOCK: &str = "/tmp/rustle-netns-hosts.session.lock";
/// How many hosts each test starts.
const HOSTS: usize = 3;
/// The longest a test waits for another one to finish with the hosts.
const LOCK_WAIT: Duration = Duration::from_secs(300);
/// The longest `up` / `down` may take (both take well under 5 s here).
const SCRIPT_WAIT: Duration = Duration::from_secs(120);

/// A finished child process.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `command` to its end or kills it after `limit`. Output goes to
/// temporary files, so a chatty child never blocks on a full pipe.
fn run_bounded(command: &mut Command, limit: Duration) -> Result<Finished, String> {
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
fn session_lock() -> File {
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
struct Host {
    /// Its namespace and hostname, `rustle-hI`.
    name: String,
    /// Its own address, `10.200.I.2`.
    address: String,
}

impl Host {
    /// The root namespace's end of its veth pair, where connections to it come from.
    fn peer_address(&self) -> String {
        self.address.strip_suffix(".2").map(|net| format!("{net}.1")).expect("10.200.I.2")
    }
}

/// The hosts of one test; dropping it takes them down and frees the lock.
struct NetnsHosts {
    dir: PathBuf,
    /// `ssh -F` file with a `Host rustle-hI 10.200.I.2` entry per host.
    config: PathBuf,
    hosts: Vec<Host>,
    /// Released after `down` (fields drop after `Drop::drop`).
    _session: File,
}

impl NetnsHosts {
    /// Starts [`HOSTS`] hosts; `None` (after saying so) with RUSTLE_SKIP_NETNS_TESTS=1.
    fn up() -> Option<Self> {
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
    fn blackhole(&self, index: usize) {
        let finished =
            run_bounded(Command::new("bash").arg(SCRIPT).arg("blackhole").arg(index.to_string()), SCRIPT_WAIT)
                .unwrap_or_else(|e| panic!("scripts/netns-hosts.sh blackhole: {e}"));
        assert!(finished.status.success(), "scripts/netns-hosts.sh blackhole {index}: {}", finished.stderr);
    }

    /// Runs `command` on `target` with the hosts' ssh config (bounded).
    fn ssh(&self, target: &str, command: &str) -> String {
        let finished = run_bounded(
            Command::new("ssh").arg("-F").arg(&self.config).args(["-o", "ConnectTimeout=5", target, command]),
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| panic!("ssh {target}: {e}"));
        assert!(finished.status.success(), "ssh {target} {command}: {}{}", finished.stdout, finished.stderr);
        finished.stdout
    }

    /// The host's sshd log (LogLevel INFO: one `Accepted publickey` line per login).
    fn log(&self, host: &Host) -> String {
        std::fs::read_to_string(self.dir.join(&host.name).join("sshd.log")).unwrap_or_default()
    }

    /// An INI inventory with the hosts as node1..N, addressed by their own
    /// addresses, with ssh's connect timeout `ansible_timeout`.
    fn inventory(&self, ansible_timeout: u64) -> ParsedInventory {
        let mut text = String::from("[netns]\n");
        for (i, host) in self.hosts.iter().enumerate() {
            text.push_str(&format!("node{} ansible_host={}\n", i + 1, host.address));
        }
        text.push_str(&format!(
            "[netns:vars]\nansible_ssh_common_args='-F {}'\nansible_timeout={ansible_timeout}\n",
            self.config.display()
        ));
        ParsedInventory::parse(&text, InventoryFormat::Ini, Path::new("netns.ini")).expect("parses")
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

fn probing(cache: Option<&Path>) -> DetectOptions {
    DetectOptions {
        probe: true,
        fact_cache_dir: cache.map(Path::to_owned),
        max_parallel_probes: 3,
        ..DetectOptions::default()
    }
}

/// (a) Three hosts with their own addresses, probed in parallel: each
/// resolves from its probe, the probe of each reached that host's own sshd,
/// and each host is a different machine by its hostname.
#[tokio::test]
async fn three_namespace_hosts_resolve_by_probe_in_parallel() {
    let Some(hosts) = NetnsHosts::up() else { return };
    let inventory = hosts.inventory(5);
    let logs_before: Vec<usize> = hosts.hosts.iter().map(|h| hosts.log(h).len()).collect();
    let cache = tempfile::tempdir().expect("tempdir");

    let started = Instant::now();
    let plan = TargetDetector::new()
        .with_probe_deadline(Duration::from_secs(20))
        .detect_from_inventory(&inventory, &probing(Some(cache.path())))
        .await
        .expect("not strict");
    let elapsed = started.elapsed();
    let table = plan.render_table();
    eprintln!("probed {HOSTS} namespace hosts in {elapsed:?}\n{table}");
    assert!(elapsed < Duration::from_secs(25), "{elapsed:?}");
    assert!(plan.unresolved.is_empty(), "{table}");
    assert!(plan.conflicts.is_empty(), "{table}");
    if cfg!(target_arch = "x86_64") {
        assert_eq!(plan.hosts_by_triple.keys().collect::<Vec<_>>(), ["x86_64-unknown-linux-gnu"], "{table}");
        assert_eq!(plan.hosts_by_triple["x86_64-unknown-linux-gnu"], ["node1", "node2", "node3"], "{table}");
        assert!(plan.glibc_floor_by_triple.contains_key("x86_64-unknown-linux-gnu"), "{table}");
    }
    let json = serde_json::to_value(&plan).expect("plan serializes");

    let mut hostnames = BTreeSet::new();
    for (i, host) in hosts.hosts.iter().enumerate() {
        let node = format!("node{}", i + 1);
        let evidence = &plan.evidence[&node];
        assert_eq!(evidence.address, host.address, "{table}");
        let cache_file = cache.path().join(&node);
        assert_eq!(evidence.source, EvidenceSource::Probe { cached_to: Some(cache_file.clone()) }, "{table}");
        assert!(cache_file.is_file(), "{}", cache_file.display());
        assert_eq!(json["evidence"][&node]["source"]["kind"], "probe", "{json}");
        assert_eq!(json["evidence"][&node]["address"], host.address.as_str(), "{json}");

        // The probe of nodeI logged in to the sshd of namespace rustle-hI,
        // once, from the root side of that host's own veth pair.
        let log = hosts.log(host);
        let new = &log[logs_before[i].min(log.len())..];
        let logins: Vec<&str> = new.lines().filter(|l| l.contains("Accepted publickey")).collect();
        assert_eq!(logins.len(), 1, "{} sshd log since the probe:\n{new}", host.name);
        assert!(logins[0].contains(&format!(" from {} ", host.peer_address())), "{}", logins[0]);

        // The machine at that address is host I: its own hostname.
        let hostname = hosts.ssh(&host.address, "hostname");
        assert_eq!(hostname.trim(), host.name, "hostname of {}", host.address);
        hostnames.insert(hostname.trim().to_owned());
    }
    assert_eq!(hostnames.len(), HOSTS, "{hostnames:?}");
}

/// (b) One host drops every packet: its probe ends in a timeout error that
/// names it, within the bound, and the other two still resolve. Once with
/// the probe deadline shorter than ssh's connect timeout, once the other
/// way round.
#[tokio::test]
async fn a_blackholed_host_times_out_within_the_bound_and_the_others_resolve() {
    let Some(hosts) = NetnsHosts::up() else { return };
    hosts.blackhole(2);
    let dark = &hosts.hosts[1];

    // The probe deadline (3 s) ends it; ssh alone would wait 30 s.
    let deadline = Duration::from_secs(3);
    let started = Instant::now();
    let plan = TargetDetector::new()
        .with_probe_deadline(deadline)
        .detect_from_inventory(&hosts.inventory(30), &probing(None))
        .await
        .expect("not strict");
    let elapsed = started.elapsed();
    let table = plan.render_table();
    eprintln!("probe deadline {deadline:?}: detection took {elapsed:?}\n{table}");
    assert!(elapsed < deadline + Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(plan.unresolved.keys().collect::<Vec<_>>(), ["node2"], "{table}");
    let error = &plan.unresolved["node2"];
    assert!(
        matches!(error, TargetDetectionError::Probe { host, source: ProbeError::TimedOut { host: address, timeout } }
            if host == "node2" && *address == dark.address && *timeout == deadline),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("node2") && text.contains(&dark.address) && text.contains("did not finish within 3s"),
        "{text}"
    );
    for node in ["node1", "node3"] {
        assert!(matches!(plan.evidence[node].source, EvidenceSource::Probe { .. }), "{table}");
    }
    if cfg!(target_arch = "x86_64") {
        assert_eq!(plan.hosts_by_triple["x86_64-unknown-linux-gnu"], ["node1", "node3"], "{table}");
    }

    // ssh's connect timeout (ansible_timeout=2) ends it first: unreachable,
    // and timed out rather than refused (the packets are dropped).
    let connect_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let plan = TargetDetector::new()
        .with_probe_deadline(Duration::from_secs(30))
        .detect_from_inventory(&hosts.inventory(connect_timeout.as_secs()), &probing(None))
        .await
        .expect("not strict");
    let elapsed = started.elapsed();
    let table = plan.render_table();
    eprintln!("connect timeout {connect_timeout:?}: detection took {elapsed:?}\n{table}");
    assert!(elapsed < connect_timeout + Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(plan.unresolved.keys().collect::<Vec<_>>(), ["node2"], "{table}");
    let error = &plan.unresolved["node2"];
    assert!(
        matches!(error, TargetDetectionError::Probe { host, source: ProbeError::Unreachable { host: address, detail } }
            if host == "node2" && *address == dark.address && detail.contains("Connection timed out")),
        "{error:?}"
    );
    assert!(error.to_string().contains("node2"), "{error}");
    assert_eq!(plan.evidence.keys().collect::<Vec<_>>(), ["node1", "node3"], "{table}");
}
