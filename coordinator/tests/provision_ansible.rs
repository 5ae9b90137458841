//! The Ansible role and playbooks (`ansible/`) against real hosts: lint and syntax checks; the service definitions rendered and linted; the controller building rustle-agent once per triple; and a converge over SSH (an sshd test host from scripts/start-sshd.sh) after which the agent serves `fleet status` and `build --inventory`, restarts once on a changed variable or rotated certificates and leaves nothing behind when removed.
//!
//! Ansible comes from scripts/setup-ansible.sh (a venv with ansible-core and
//! ansible-lint); `RUSTLE_SKIP_ANSIBLE_TESTS=1` skips these tests, and says so.
//!
//! Cost: the converge gives the role the `rustle-agent` this cargo run
//! already built (next to `rustle-cross` in the target dir) as a prebuilt
//! binary, so no agent is compiled for it; the controller's build path is
//! tested on its own with an aarch64 debug build in the end-to-end tests'
//! shared cache (warm once `fleet_process` has built the same agent).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use common::{cache_dir, example_template, json, stderr};
use rustle_test_support::{process_alive, require_tools, skip_requested, wait_until_gone};

const SKIP_ANSIBLE: &str = "RUSTLE_SKIP_ANSIBLE_TESTS";
const SKIP_SSH: &str = "RUSTLE_SKIP_SSH_TESTS";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repository root")
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The venv's tools, from scripts/setup-ansible.sh.
struct Ansible {
    playbook: PathBuf,
    lint: PathBuf,
    python: PathBuf,
}

/// `None` (printed) when `RUSTLE_SKIP_ANSIBLE_TESTS=1`; otherwise the tools,
/// or a failure naming the script that installs them.
fn ansible() -> Option<Ansible> {
    if skip_requested(SKIP_ANSIBLE, "Ansible") {
        return None;
    }
    let script = repo().join("scripts/setup-ansible.sh");
    let output =
        Command::new("bash").arg(&script).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "scripts/setup-ansible.sh failed (it installs ansible-core and ansible-lint in a venv; or set {SKIP_ANSIBLE}=1): {}",
        stderr(&output)
    );
    let ansible = String::from_utf8_lossy(&output.stdout).lines().last().map(|l| PathBuf::from(l.trim()));
    let ansible = ansible.expect("setup-ansible.sh prints the path of `ansible`");
    let tools = Ansible {
        playbook: ansible.with_file_name("ansible-playbook"),
        lint: ansible.with_file_name("ansible-lint"),
        python: ansible.with_file_name("python"),
    };
    for tool in [&tools.playbook, &tools.lint, &tools.python] {
        assert!(tool.exists(), "{} is missing; run scripts/setup-ansible.sh", tool.display());
    }
    Some(tools)
}

/// `ansible-playbook ARGS` with the project's ansible.cfg, printing what it said.
fn playbook(ansible: &Ansible, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(&ansible.playbook);
    command
        .args(args)
        .current_dir(repo())
        .env("ANSIBLE_CONFIG", repo().join("ansible/ansible.cfg"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_LOCAL_TEMP", std::env::temp_dir().join("rustle-ansible-tmp"))
        .env("RUSTLE_TARGET_CACHE_DIR", cache_dir())
        .env_remove("RUSTLE_CROSS_CONFIG");
    for (key, value) in env {
        command.env(key, value);
    }
    let started = Instant::now();
    let output = command.output().expect("run ansible-playbook");
    eprintln!(
        "$ ansible-playbook {} ({:.1}s, exit {:?})\n{}{}",
        args.join(" "),
        started.elapsed().as_secs_f64(),
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        stderr(&output)
    );
    output
}

/// The PLAY RECAP: host -> (changed, failed).
fn recap(output: &Output) -> BTreeMap<String, (u32, u32)> {
    let text = String::from_utf8_lossy(&output.stdout);
    let after = text.rsplit_once("PLAY RECAP").map(|(_, recap)| recap).expect("a PLAY RECAP");
    let mut hosts = BTreeMap::new();
    for line in after.lines() {
        let Some((host, counts)) = line.split_once(" : ") else { continue };
        let count = |key: &str| {
            counts
                .split_whitespace()
                .find_map(|field| field.strip_prefix(key)?.strip_prefix('=')?.parse::<u32>().ok())
                .unwrap_or_else(|| panic!("no {key}= in recap line {line:?}"))
        };
        hosts.insert(host.trim().to_owned(), (count("changed"), count("failed") + count("unreachable")));
    }
    hosts
}

/// The `rustle-agent` this cargo run built, beside `rustle-cross`; refused
/// when older than the sources it is built from.
fn built_agent_binary() -> PathBuf {
    let agent = Path::new(env!("CARGO_BIN_EXE_rustle-cross")).with_file_name("rustle-agent");
    let built = std::fs::metadata(&agent).and_then(|m| m.modified()).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}): build it with `cargo build -p rustle-agent` (`cargo test --workspace` does)",
            agent.display()
        )
    });
    let newest = ["agent", "engine", "protocol", "transport", "targets", "process"]
        .iter()
        .map(|krate| newest_mtime(&repo().join(krate).join("src")))
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    assert!(
        built >= newest,
        "{} is older than its sources: rebuild it with `cargo build -p rustle-agent` (`cargo test --workspace` does)",
        agent.display()
    );
    agent
}

fn newest_mtime(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_mtime(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH)
        };
        newest = newest.max(time);
    }
    newest
}

#[test]
fn lint_and_syntax_check_every_playbook() {
    let Some(ansible) = ansible() else { return };
    let ansible_dir = repo().join("ansible");
    let lint = Command::new(&ansible.lint)
        .args(["--offline", "--profile", "production", "--nocolor"])
        .current_dir(&ansible_dir)
        .env("ANSIBLE_CONFIG", ansible_dir.join("ansible.cfg"))
        .output()
        .expect("run ansible-lint");
    let said = format!("{}{}", String::from_utf8_lossy(&lint.stdout), stderr(&lint));
    assert!(lint.status.success(), "ansible-lint (production profile) failed:\n{said}");
    assert!(said.contains("Profile 'production' was required, and it passed"), "{said}");
    let mut checked = 0;
    for dir in ["ansible/playbooks", "ansible/tests"] {
        for entry in std::fs::read_dir(repo().join(dir)).expect("playbook dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "yml") {
                let out = playbook(&ansible, &["-i", "ansible/inventory/example.yml", "--syntax-check", s(&path)], &[]);
                assert!(out.status.success(), "--syntax-check failed for {}", path.display());
                checked += 1;
            }
        }
    }
    assert!(checked >= 4, "expected the three playbooks and the render playbook, checked {checked}");
}

#[test]
fn service_definitions_render_and_lint() {
    let Some(ansible) = ansible() else { return };
    assert!(
        which_path("systemd-analyze").is_some(),
        "systemd-analyze is missing: scripts/setup-ansible.sh installs it (package systemd) as root"
    );
    let work = tempfile::tempdir().expect("tempdir");
    let render = work.path().join("render");
    let install = work.path().join("lib");
    std::fs::create_dir_all(&render).expect("mkdir");
    std::fs::create_dir_all(&install).expect("mkdir");
    // systemd-analyze verify checks that ExecStart exists.
    std::os::unix::fs::symlink(built_agent_binary(), install.join("rustle-agent")).expect("symlink");
    let extra = serde_json::json!({
        "rustle_agent_render_dir": render,
        "rustle_agent_install_dir": install,
        "rustle_agent_environment": { "RUST_LOG": "info,rustle_agent=debug", "NOTE": "a <quoted> & \"odd\" value" },
        "rustle_agent_allowed_targets": ["x86_64-unknown-linux-gnu"],
        "rustle_agent_max_concurrent_jobs": 3,
        "ansible_python_interpreter": ansible.python,
    });
    let out = playbook(
        &ansible,
        &["-i", "localhost,", "-c", "local", "ansible/tests/render-service-definitions.yml", "-e", &extra.to_string()],
        &[],
    );
    assert!(out.status.success(), "rendering failed");

    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(render.join("rustle-agent.service"))
        .output()
        .expect("systemd-analyze");
    assert!(verify.status.success() && verify.stderr.is_empty(), "systemd-analyze verify: {}", stderr(&verify));
    let unit = std::fs::read_to_string(render.join("rustle-agent.service")).expect("unit");
    for line in [
        "User=rustle-agent",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/rustle-agent",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "Restart=on-failure",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}:\n{unit}");
    }

    let config = std::fs::read_to_string(render.join("agent.toml")).expect("agent.toml");
    let parsed = rustle_agent::AgentConfig::parse(&config).unwrap_or_else(|e| panic!("agent.toml: {e}\n{config}"));
    assert_eq!(parsed.max_concurrent_jobs, 3);
    assert_eq!(parsed.listen.port(), 7878);
    assert_eq!(parsed.allowed_targets, Some(vec!["x86_64-unknown-linux-gnu".to_owned()]));
    assert_eq!(parsed.allowed_coordinators, ["rustle-coordinator"]);

    // The launchd plist and the WinSW XML are untested on real hosts: parse and check them here.
    let lint = Command::new(&ansible.python)
        .arg("-c")
        .arg(
            "import plistlib, sys, xml.etree.ElementTree as ET\n\
             p = plistlib.load(open(sys.argv[1], 'rb'))\n\
             assert p['ProgramArguments'][1:] == ['--config', '/etc/rustle-agent/agent.toml'], p\n\
             assert p['UserName'] == 'rustle-agent' and p['KeepAlive'] == {'SuccessfulExit': False}, p\n\
             assert p['EnvironmentVariables']['NOTE'] == 'a <quoted> & \"odd\" value', p\n\
             s = ET.parse(sys.argv[2]).getroot()\n\
             assert s.tag == 'service' and s.findtext('id') == 'rustle-agent', s\n\
             assert s.findtext('executable').endswith('rustle-agent.exe'), s\n\
             assert s.find('onfailure').get('action') == 'restart', s\n\
             assert {e.get('name') for e in s.findall('env')} == {'RUST_LOG', 'NOTE'}, s\n\
             print('ok')\n",
        )
        .arg(render.join("rustle-agent.plist"))
        .arg(render.join("rustle-agent-winsw.xml"))
        .output()
        .expect("python");
    assert!(lint.status.success(), "plist / WinSW XML lint failed: {}", stderr(&lint));
    let shell = Command::new("sh").arg("-n").arg(render.join("rustle-agent-supervise.sh")).output().expect("sh -n");
    assert!(shell.status.success(), "the supervisor script does not parse: {}", stderr(&shell));
}

fn which_path(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(tool)).find(|p| p.exists())
}

#[test]
fn setup_sh_refuses_a_missing_or_empty_packages_list() {
    let work = tempfile::tempdir().expect("tempdir");
    let empty = work.path().join("empty.txt");
    std::fs::write(&empty, "# only a comment\n").expect("write");
    for (file, said) in [(work.path().join("missing.txt"), "is missing"), (empty, "parsed to nothing usable")] {
        let out = Command::new("bash")
            .arg(repo().join("scripts/setup.sh"))
            .env("RUSTLE_PACKAGES_FILE", &file)
            .output()
            .expect("run setup.sh");
        assert_eq!(out.status.code(), Some(1), "setup.sh with {}: {}", file.display(), stderr(&out));
        assert!(stderr(&out).contains(said), "{}", stderr(&out));
        assert!(stderr(&out).contains("rustle-cross targets --packages"), "{}", stderr(&out));
    }
}

#[test]
fn the_controller_builds_the_agent_once_per_triple() {
    let Some(ansible) = ansible() else { return };
    if !require_tools(&["aarch64-linux-gnu-gcc"]) {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let controller = work.path().join("controller");
    // Two hosts of one triple: one build. Local connections: only the
    // controller side (tag rustle_agent_binary) runs.
    let inventory = work.path().join("inventory.yml");
    let host = |name: &str| {
        format!(
            "        {name}:\n          ansible_connection: local\n          ansible_python_interpreter: {}\n          \
             rustle_target_triple: aarch64-unknown-linux-gnu\n",
            s(&ansible.python)
        )
    };
    std::fs::write(
        &inventory,
        format!(
            "all:\n  children:\n    build_agents:\n      vars:\n        rustle_agent_cross_bin: {cross}\n        \
             rustle_agent_controller_dir: {controller}\n        rustle_agent_build_flags: [--opt-level, debug]\n      \
             hosts:\n{a}{b}",
            cross = env!("CARGO_BIN_EXE_rustle-cross"),
            controller = s(&controller),
            a = host("arm-1"),
            b = host("arm-2"),
        ),
    )
    .expect("inventory");
    let out = playbook(
        &ansible,
        &["-i", s(&inventory), "--tags", "rustle_agent_binary", "-v", "ansible/playbooks/provision-agents.yml"],
        &[],
    );
    assert!(out.status.success(), "the binary step failed");
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(said.matches("\"--target=aarch64-unknown-linux-gnu\"").count(), 1, "one build for the two hosts");
    let binary = controller.join("bin/rustle-agent-aarch64-unknown-linux-gnu");
    let header = std::fs::read(&binary).unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    // ELF, e_machine 183 = AArch64.
    assert!(header.starts_with(b"\x7fELF") && header.get(18..20) == Some(&[183, 0][..]), "not an aarch64 ELF");
}

/// The converge's host paths, user and sshd, and the clean-up when the test ends.
struct TestHost {
    root: tempfile::TempDir,
    user: String,
    /// The sshd test host's directory: one per target dir, reused by the next run.
    ssh_dir: PathBuf,
}

impl TestHost {
    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join("host").join(name)
    }
    fn supervisor(&self) -> PathBuf {
        self.path("lib/rustle-agent-supervise")
    }
    fn controller(&self) -> PathBuf {
        self.root.path().join("controller")
    }
    fn agent_pid(&self) -> u32 {
        let text = std::fs::read_to_string(self.path("run/agent.pid")).expect("the supervisor's agent.pid");
        text.trim().parse().expect("a pid")
    }
    fn agent_starts(&self) -> usize {
        let log = std::fs::read_to_string(self.path("log/agent.log")).unwrap_or_default();
        log.lines().filter(|l| l.contains("supervise: starting")).count()
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ =
            Command::new("bash").arg(repo().join("scripts/start-sshd.sh")).arg("--stop").arg(&self.ssh_dir).output();
        // Only after a failure is anything else left; the test removes it otherwise.
        if self.supervisor().exists() {
            let _ = Command::new(self.supervisor()).arg("stop").output();
        }
        let _ = Command::new("userdel").arg(&self.user).output();
        let _ = Command::new("groupdel").arg(&self.user).output();
    }
}

fn uid_of(user: &str) -> Option<u32> {
    let out = Command::new("getent").args(["passwd", user]).output().expect("getent");
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).split(':').nth(2).and_then(|uid| uid.parse().ok())
}

fn process_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|ids| ids.split_whitespace().next()?.parse().ok())
}

fn processes_of(uid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| process_alive(*pid) && process_uid(*pid) == Some(uid))
        .collect()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Starts the sshd test host; `None` (printed) when skipped.
fn sshd_host(dir: &Path) -> Option<u16> {
    if skip_requested(SKIP_SSH, "sshd") {
        return None;
    }
    let out =
        Command::new("bash").arg(repo().join("scripts/start-sshd.sh")).arg(dir).arg("agent1").output().expect("run");
    assert!(
        out.status.success(),
        "scripts/start-sshd.sh failed (it starts the sshd test hosts; run it by hand to see why, or set {SKIP_SSH}=1): {}",
        stderr(&out)
    );
    let tsv = String::from_utf8_lossy(&out.stdout);
    let port = tsv.lines().find_map(|l| l.strip_prefix("agent1\tnormal\t")).map(|p| p.trim().parse().expect("port"));
    Some(port.expect("start-sshd.sh lists agent1"))
}

#[test]
fn converge_over_ssh_then_build_through_the_agent_then_remove_it() {
    let Some(ansible) = ansible() else { return };
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the converge test needs root (the role creates a system user over SSH as root); run the tests as root, \
         or skip it with {SKIP_SSH}=1"
    );
    let root = tempfile::Builder::new().prefix("rustle-provision-").tempdir().expect("tempdir");
    // The agent's user must be able to reach its files under it.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let ssh_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rustle-provision-sshd");
    let host = TestHost { root, user: format!("rustle-test-{}", std::process::id()), ssh_dir: ssh_dir.clone() };
    let Some(ssh_port) = sshd_host(&ssh_dir) else { return };
    let agent_binary = built_agent_binary();
    let agent_port = free_udp_port();
    let facts = host.root.path().join("facts");
    std::fs::create_dir_all(host.path("systemd")).expect("mkdir");

    let inventory = host.root.path().join("inventory.yml");
    std::fs::write(
        &inventory,
        format!(
            "all:\n  children:\n    build_agents:\n      vars:\n{vars}      hosts:\n        agent1:\n          \
             ansible_host: 127.0.0.1\n          ansible_port: {ssh_port}\n          ansible_user: root\n          \
             ansible_ssh_private_key_file: {key}\n          ansible_ssh_common_args: >-\n            \
             -o HostKeyAlias=rustle-test-agent1 -o UserKnownHostsFile={known} -o GlobalKnownHostsFile=/dev/null\n            \
             -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes\n          \
             ansible_python_interpreter: /usr/bin/python3\n          rustle_agent_binary: {agent}\n    \
             web:\n      hosts:\n        web1:\n          rustle_target_triple: x86_64-unknown-linux-gnu\n",
            vars = [
                ("rustle_agent_port", agent_port.to_string()),
                ("rustle_agent_cross_bin", env!("CARGO_BIN_EXE_rustle-cross").to_owned()),
                ("rustle_agent_controller_dir", s(&host.controller()).to_owned()),
                ("rustle_agent_ca_dir", s(&host.controller().join("ca")).to_owned()),
                ("rustle_agent_user", host.user.clone()),
                ("rustle_agent_group", host.user.clone()),
                ("rustle_agent_install_dir", s(&host.path("lib")).to_owned()),
                ("rustle_agent_config_dir", s(&host.path("etc")).to_owned()),
                ("rustle_agent_work_dir", s(&host.path("work")).to_owned()),
                ("rustle_agent_log_dir", s(&host.path("log")).to_owned()),
                ("rustle_agent_run_dir", s(&host.path("run")).to_owned()),
                ("rustle_agent_systemd_unit_dir", s(&host.path("systemd")).to_owned()),
                ("rustle_agent_service_name", host.user.clone()),
                ("rustle_agent_heartbeat_interval_ms", "500".to_owned()),
            ]
            .iter()
            .map(|(k, v)| format!("        {k}: {}\n", serde_json::json!(v)))
            .collect::<String>(),
            key = s(&ssh_dir.join("client_key")),
            known = s(&ssh_dir.join("known_hosts")),
            agent = s(&agent_binary),
        ),
    )
    .expect("inventory");
    // A second build agent whose architecture has no agent binary and no way to build one.
    let mips = host.root.path().join("mips.yml");
    std::fs::write(
        &mips,
        "all:\n  children:\n    build_agents:\n      hosts:\n        mips1:\n          ansible_connection: local\n          \
         ansible_python_interpreter: /usr/bin/python3\n          rustle_target_triple: mips64-unknown-linux-gnuabi64\n",
    )
    .expect("mips inventory");
    let provision = "ansible/playbooks/provision-agents.yml";
    let fact_cache = [("ANSIBLE_CACHE_PLUGIN", "jsonfile"), ("ANSIBLE_CACHE_PLUGIN_CONNECTION", s(&facts))];

    // 1. First converge: agent1 changes, mips1 fails alone with the reason.
    let first = playbook(&ansible, &["-i", s(&inventory), "-i", s(&mips), provision], &fact_cache);
    let hosts = recap(&first);
    assert_eq!(first.status.code(), Some(2), "a failed host makes ansible-playbook exit 2");
    assert!(hosts["agent1"].0 > 0 && hosts["agent1"].1 == 0, "agent1 converged: {hosts:?}");
    assert_eq!(hosts["mips1"].1, 1, "mips1 failed: {hosts:?}");
    let said = String::from_utf8_lossy(&first.stdout);
    assert!(
        said.contains("no rustle-agent binary for mips1 (mips64-unknown-linux-gnuabi64)")
            && said.contains("rustle_agent_binaries_dir"),
        "mips1's failure names its target and the way out"
    );

    // The agent runs as its user with the installed config; the key is its user's alone; no CA key on the host.
    let uid = uid_of(&host.user).expect("the agent's user exists");
    let agent_pid = host.agent_pid();
    assert_eq!(process_uid(agent_pid), Some(uid), "the agent runs as {}", host.user);
    let cmdline = std::fs::read(format!("/proc/{agent_pid}/cmdline")).expect("cmdline");
    let config_path = host.path("etc/agent.toml");
    assert!(String::from_utf8_lossy(&cmdline).contains(s(&config_path)), "the agent reads {}", config_path.display());
    let config = rustle_agent::AgentConfig::load(&config_path).expect("the installed agent.toml parses");
    assert_eq!((config.listen.port(), config.max_concurrent_jobs), (agent_port, 2));
    let key = std::fs::metadata(host.path("etc/agent-key.pem")).expect("key");
    assert_eq!((key.uid(), key.permissions().mode() & 0o777), (uid, 0o600));
    assert!(
        !walk(&host.root.path().join("host")).iter().any(|p| p.ends_with("ca-key.pem")),
        "the CA key left the controller"
    );
    let unit = host.path(&format!("systemd/{}.service", host.user));
    let verify = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&unit).output().expect("verify");
    assert!(verify.status.success(), "systemd-analyze verify {}: {}", unit.display(), stderr(&verify));
    let cert = host.controller().join("certs/agent1.pem");
    let issued = std::fs::read(&cert).expect("the agent's certificate on the controller");

    // 2. Again: nothing changes, the certificate is kept, the agent is not restarted.
    let second = playbook(&ansible, &["-i", s(&inventory), "--limit", "agent1", provision], &fact_cache);
    assert!(second.status.success());
    assert_eq!(recap(&second)["agent1"], (0, 0), "a second run changes nothing");
    assert_eq!(std::fs::read(&cert).expect("cert"), issued, "a valid certificate is not re-issued");
    assert_eq!((host.agent_starts(), host.agent_pid()), (1, agent_pid), "not restarted");

    // 3. Check mode on the converged host: no change.
    let check = playbook(&ansible, &["-i", s(&inventory), "--limit", "agent1", "--check", "--diff", provision], &[]);
    assert!(check.status.success());
    assert_eq!(recap(&check)["agent1"], (0, 0), "--check --diff reports no change");

    // 4. The coordinator's side: the same inventory names the agent; build on it.
    let coordinator_config = host.controller().join("rustle-cross.toml");
    let rustle_cross = |args: &[&str]| {
        let mut full = vec!["--config", s(&coordinator_config)];
        full.extend_from_slice(args);
        common::rustle_cross(&full)
    };
    let status = rustle_cross(&["fleet", "status", "--inventory", s(&inventory), "--json"]);
    assert!(status.status.success(), "fleet status: {}", stderr(&status));
    let agent = &json(&status)["agents"][0];
    assert_eq!((agent["name"].as_str(), agent["connection"]["state"].as_str()), (Some("agent1"), Some("connected")));
    assert_eq!(agent["capabilities"]["max_concurrent_jobs"], 2, "{agent:#}");
    let out_dir = host.root.path().join("out");
    let template = example_template();
    let build = rustle_cross(&[
        "build",
        s(&template),
        "--inventory",
        s(&inventory),
        "--facts",
        s(&facts),
        "--opt-level",
        "debug",
        "--json",
        "--out",
        s(&out_dir),
    ]);
    let report = json(&build);
    assert!(build.status.success(), "build --inventory: {report:#}");
    let result = &report["results"][0];
    // The hosts' glibc (from their facts) may add a floor: `T` or `T.2.36`.
    assert!(result["target"].as_str().is_some_and(|t| t.starts_with("x86_64-unknown-linux-gnu")), "{result:#}");
    assert_eq!(result["executor"], serde_json::json!({ "kind": "agent", "name": "agent1" }), "{result:#}");
    assert_eq!(result["decisions"][0]["chosen"], serde_json::json!({ "kind": "agent", "name": "agent1" }));

    // 5. One variable changed: exactly one restart, and the agent reports it.
    let more_jobs = playbook(
        &ansible,
        &["-i", s(&inventory), "--limit", "agent1", "-e", "rustle_agent_max_concurrent_jobs=3", provision],
        &[],
    );
    assert!(more_jobs.status.success());
    assert_eq!(host.agent_starts(), 2, "max jobs changed: the agent restarted exactly once");
    assert_ne!(host.agent_pid(), agent_pid);
    wait_until_gone(agent_pid, Duration::from_secs(10));
    let status = rustle_cross(&["fleet", "status", "--inventory", s(&inventory), "--json"]);
    assert_eq!(json(&status)["agents"][0]["capabilities"]["max_concurrent_jobs"], 3);

    // 6. Rotation: new certificates on the controller and the host, one restart, and the fleet still connects.
    let rotate = playbook(
        &ansible,
        &["-i", s(&inventory), "--limit", "agent1", "ansible/playbooks/rotate-certificates.yml"],
        &[],
    );
    assert!(rotate.status.success());
    let rotated = std::fs::read(&cert).expect("cert");
    assert_ne!(rotated, issued, "the rotate playbook re-issues a valid certificate");
    assert_eq!(std::fs::read(host.path("etc/agent.pem")).expect("installed cert"), rotated);
    assert_eq!(host.agent_starts(), 3, "rotation restarted the agent exactly once");
    let status = rustle_cross(&["fleet", "status", "--inventory", s(&inventory), "--json"]);
    assert_eq!(json(&status)["agents"][0]["connection"]["state"], "connected", "the rotated certificates work");

    // 7. Revocation. The coordinator's certificate revoked on the controller:
    // the next converge ships crl.pem to the host and names it in agent.toml
    // and the coordinator's config (one restart), and re-issues the revoked
    // certificate, so the fleet connects again.
    let ca_dir = host.controller().join("ca");
    let revoke = |what: &str| {
        let out = common::rustle_cross(&["ca", "revoke", "rustle-coordinator", "--dir", s(&ca_dir)]);
        assert!(out.status.success(), "ca revoke ({what}): {}", stderr(&out));
    };
    revoke("the first coordinator certificate");
    let converge = playbook(&ansible, &["-i", s(&inventory), "--limit", "agent1", provision], &[]);
    assert!(converge.status.success(), "{}", String::from_utf8_lossy(&converge.stdout));
    let installed_crl = host.path("etc/crl.pem");
    let shipped = std::fs::read(ca_dir.join("crl.pem")).expect("the CA's crl.pem");
    assert_eq!(std::fs::read(&installed_crl).expect("crl.pem on the host"), shipped, "the role ships crl.pem");
    let config = rustle_agent::AgentConfig::load(&config_path).expect("agent.toml");
    assert_eq!(config.crl.as_deref(), Some(installed_crl.as_path()), "agent.toml names the list");
    assert!(
        std::fs::read_to_string(&coordinator_config).expect("rustle-cross.toml").contains("crl.pem"),
        "the coordinator's config names the list"
    );
    assert_eq!(host.agent_starts(), 4, "shipping the first list restarted the agent exactly once");
    let status = rustle_cross(&["fleet", "status", "--inventory", s(&inventory), "--json"]);
    assert_eq!(
        json(&status)["agents"][0]["connection"]["state"],
        "connected",
        "the re-issued coordinator certificate is not revoked"
    );
    // A later revocation changes only crl.pem (replaced as the role's copy
    // does it): the running agent re-reads it and refuses the coordinator
    // whose certificate it now lists, without a restart.
    let running = host.agent_pid();
    revoke("the re-issued coordinator certificate");
    let staged = host.path("etc/.crl.pem.new");
    std::fs::copy(ca_dir.join("crl.pem"), &staged).expect("stage crl.pem");
    std::fs::rename(&staged, &installed_crl).expect("replace crl.pem");
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let status = rustle_cross(&["fleet", "status", "--inventory", s(&inventory), "--json"]);
        let agent = json(&status)["agents"][0].clone();
        if agent["connection"]["state"] != "connected" {
            break agent;
        }
        assert!(Instant::now() < deadline, "the agent still serves a revoked coordinator: {agent:#}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(refused.to_string().contains("revoked"), "the coordinator hears it was revoked: {refused:#}");
    assert_eq!((host.agent_starts(), host.agent_pid()), (4, running), "a new list needs no restart");
    let log = std::fs::read_to_string(host.path("log/agent.log")).unwrap_or_default();
    assert!(log.contains("reloaded the certificate revocation list"), "the agent says it reloaded: {log}");

    // 8. Removed: no file, user, group or process left.
    let supervisor = std::fs::read_to_string(host.path("run/supervisor.pid")).expect("supervisor pid");
    let supervisor: u32 = supervisor.trim().parse().expect("pid");
    let restarted = host.agent_pid();
    let remove =
        playbook(&ansible, &["-i", s(&inventory), "--limit", "agent1", "ansible/playbooks/remove-agents.yml"], &[]);
    assert!(remove.status.success());
    wait_until_gone(restarted, Duration::from_secs(10));
    wait_until_gone(supervisor, Duration::from_secs(10));
    let left: Vec<PathBuf> = walk(&host.root.path().join("host")).into_iter().filter(|p| p.is_file()).collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
    for dir in ["lib", "etc", "work", "log", "run"] {
        assert!(!host.path(dir).exists(), "{dir} left behind");
    }
    assert_eq!(uid_of(&host.user), None, "the user is removed");
    let group = Command::new("getent").args(["group", &host.user]).output().expect("getent");
    assert!(!group.status.success(), "the group is removed");
    assert!(processes_of(uid).is_empty(), "processes of the agent's user are left");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        }
        found.push(path);
    }
    found
}

#[test]
fn build_agents_without_a_coordinator_certificate_name_the_way_out() {
    let work = tempfile::tempdir().expect("tempdir");
    let inventory = work.path().join("hosts.ini");
    std::fs::write(&inventory, "[build_agents]\narm1 ansible_host=10.0.0.5 rustle_agent_port=9000\n\n[web]\nweb1 rustle_target_triple=x86_64-unknown-linux-gnu\n")
        .expect("inventory");
    let template = work.path().join("template");
    for args in [
        vec!["build", s(&template), "--inventory", s(&inventory)],
        vec!["fleet", "status", "--inventory", s(&inventory)],
    ] {
        let out = common::rustle_cross(&args);
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{said}");
        assert!(said.contains("build_agents") && said.contains("fleet.ca") && said.contains("provision"), "{said}");
    }
    let empty = work.path().join("web-only.ini");
    std::fs::write(&empty, "[web]\nweb1\n").expect("inventory");
    let out = common::rustle_cross(&["fleet", "status", "--inventory", s(&empty)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no agents configured"), "{}", stderr(&out));
}
