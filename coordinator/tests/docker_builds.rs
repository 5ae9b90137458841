//! Docker build environments through the real CLI against a real dockerd
//! started by `scripts/start-dockerd.sh`, with images rustle-cross builds
//! itself from a debootstrap rootfs (no registry): the example built and
//! run for three targets, a build script that dials out failing in the
//! hermetic container, a container past its deadline killed and removed,
//! byte-identical binaries from two template paths, and a daemon that is
//! down sending the build to this machine with the reason. Skipped, with a
//! line saying so, when RUSTLE_SKIP_DOCKER_TESTS=1.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use common::{example_template, example_template_at, json, result_for, rustle_cross_env, scratch_template, stderr};

const SKIP: &str = "RUSTLE_SKIP_DOCKER_TESTS";
const X86: &str = "x86_64-unknown-linux-gnu";
const AARCH64: &str = "aarch64-unknown-linux-gnu";
const WINDOWS: &str = "x86_64-pc-windows-gnu";

/// The tests share the daemon's volumes and look at its containers: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The daemon's address, started (or found running) by the script; `None`
/// when the tests are skipped.
fn docker_host() -> Option<String> {
    if rustle_test_support::skip_requested(SKIP, "Docker build") {
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/start-dockerd.sh");
    let out = Command::new("bash").arg(&script).output().expect("run bash");
    assert!(
        out.status.success(),
        "scripts/start-dockerd.sh failed (it starts the Docker daemon these tests use; run it by hand to see why, or set {SKIP}=1 to skip): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let host = stdout.lines().last().and_then(|l| l.strip_prefix("DOCKER_HOST=")).expect("DOCKER_HOST=... last");
    Some(host.to_owned())
}

/// Every rustle-cross container the daemon has, by name.
fn labelled_containers(host: &str) -> Vec<String> {
    labelled_containers_for(host).into_iter().map(|(name, _)| name).collect()
}

/// Runs `f` with a connection to the daemon at `host`.
fn with_docker<F, T>(host: &str, f: impl FnOnce(std::sync::Arc<rustle_docker::DockerCompilationManager>) -> F) -> T
where
    F: std::future::Future<Output = T>,
{
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mut settings = rustle_docker::DockerSettings::new(common::cache_dir());
        settings.host = Some(host.to_owned());
        let docker = rustle_docker::DockerCompilationManager::connect(settings).await.expect("connect to dockerd");
        f(std::sync::Arc::new(docker)).await
    })
}

/// Every rustle-cross container the daemon has: (name, what it is for).
fn labelled_containers_for(host: &str) -> Vec<(String, String)> {
    with_docker(host, |docker| async move {
        rustle_docker::container::labelled_containers(docker.client())
            .await
            .expect("list containers")
            .into_iter()
            .map(|(name, _, purpose)| (name, purpose))
            .collect()
    })
}

fn docker_build(host: &str, template: &Path, extra: &[&str]) -> std::process::Output {
    let template = template.to_str().expect("utf-8 path");
    let out_dir = common::work_root().join("docker-out");
    let out_dir = out_dir.to_str().expect("utf-8 path");
    let mut args = vec!["build", template, "--executor", "docker", "--no-cache", "--json", "--out", out_dir];
    args.extend_from_slice(extra);
    rustle_cross_env(&args, &[("DOCKER_HOST", host)])
}

#[test]
fn the_example_builds_in_docker_for_three_targets_validated_and_run() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(host) = docker_host() else { return };
    let out =
        docker_build(&host, &example_template(), &["-t", X86, "-t", AARCH64, "-t", WINDOWS, "--smoke-test", "-j", "1"]);
    let results = json(&out);
    assert!(out.status.success(), "docker builds failed: {results}");
    let images = rustle_cross_env(&["images", "list"], &[("DOCKER_HOST", &host)]);
    let images = String::from_utf8_lossy(&images.stdout).into_owned();
    for target in [X86, AARCH64, WINDOWS] {
        let result = result_for(&results, target);
        assert_eq!(result["status"], "ok", "{target}: {result}");
        assert_eq!(result["executor"], serde_json::json!({"kind": "fallback", "name": "docker"}), "{target}");
        assert_eq!(result["smoke_test"]["result"], "ok", "{target} did not run: {result}");
        let output = result["smoke_test"]["output"].as_str().unwrap_or_default();
        assert!(output.contains("rustle-hello"), "{target} printed {output:?}");
        // The versions are the container's: the image's rustc label.
        let toolchain = result["metadata"]["toolchain"].as_str().unwrap_or_default();
        let rustc = result["metadata"]["rustc_version"].as_str().unwrap_or_default();
        assert!(toolchain.contains(" in rustle-cross/"), "{target}: toolchain {toolchain:?}");
        let image = toolchain.rsplit(" in ").next().unwrap_or_default();
        let row = images.lines().find(|l| l.starts_with(image)).unwrap_or_else(|| panic!("{image} not in:\n{images}"));
        assert!(row.contains(rustc), "{target}: rustc {rustc:?} is not {image}'s label: {row}");
    }
    // What stays is the warm build environments (they end themselves when
    // idle), never a one-off fetch container.
    let left = labelled_containers_for(&host);
    assert!(left.iter().all(|(_, purpose)| purpose == "build"), "one-off containers left: {left:?}");
}

#[test]
fn a_build_environment_stays_warm_for_the_next_run_and_then_ends_itself() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(host) = docker_host() else { return };
    let config = common::work_root().join("docker-idle.toml");
    std::fs::write(&config, "[cross_compilation]\ncontainer_idle_secs = 6\n").expect("write config");
    let config = config.to_str().expect("utf-8");
    // This user's x86_64 environment; one an earlier run left warm (with
    // another idle time) goes first.
    let suffix = format!("-u{}", rustle_docker::container::caller_uid());
    let environment = |host: &str| {
        labelled_containers(host)
            .into_iter()
            .find(|name| name.starts_with("rustle-cross-x86-64-unknown-linux-gnu-") && name.ends_with(&suffix))
    };
    if let Some(earlier) = environment(&host) {
        with_docker(&host, |docker| async move { rustle_docker::container::remove(docker.client(), &earlier).await });
    }
    let first = docker_build(&host, &example_template(), &["-t", X86, "--config", config]);
    assert!(first.status.success(), "{}", stderr(&first));
    let warm = environment(&host).expect("the build environment stays after the run");
    let second = docker_build(&host, &example_template(), &["-t", X86, "--config", config]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(environment(&host).as_deref(), Some(warm.as_str()), "the second run did not reuse the environment");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while environment(&host).is_some() {
        assert!(std::time::Instant::now() < deadline, "the idle environment {warm} did not end itself");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

#[test]
fn a_build_script_that_dials_out_fails_in_the_container_and_works_here() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(host) = docker_host() else { return };
    // A listener this machine reaches; inside a `--network none` container
    // the address is the container's own loopback, where nothing listens.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let build_rs = format!(
        r#"fn main() {{
    match std::net::TcpStream::connect("{address}") {{
        Ok(_) => println!("cargo:warning=reached {address}"),
        Err(e) => panic!("cannot reach {address}: {{e}}"),
    }}
}}
"#
    );
    let template = scratch_template(
        "docker-dials-out",
        &[
            ("Cargo.toml", "[package]\nname = \"dials-out\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"),
            ("src/main.rs", "fn main() { println!(\"dials-out\"); }\n"),
            ("build.rs", &build_rs),
        ],
    );
    let out = docker_build(&host, &template, &["-t", X86]);
    assert!(!out.status.success(), "the build script reached the host from the container");
    let result = result_for(&json(&out), X86).clone();
    assert_eq!(result["status"], "compile-failed", "{result}");
    let error = result["error"].as_str().unwrap_or_default();
    assert!(error.contains(&format!("cannot reach {address}")), "no network error in the diagnostics: {error}");
    assert!(error.contains("refused") || error.contains("unreachable"), "{error}");

    // The same build script on this machine reaches the listener.
    let out_dir = common::work_root().join("docker-out-local");
    let local = rustle_cross_env(
        &[
            "build",
            template.to_str().expect("utf-8"),
            "--executor",
            "local",
            "--no-cache",
            "-t",
            X86,
            "--out",
            out_dir.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(local.status.success(), "the local build could not reach {address}: {}", stderr(&local));
    drop(listener);
}

#[test]
fn a_container_past_its_deadline_is_killed_and_removed() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(host) = docker_host() else { return };
    let template = scratch_template(
        "docker-sleeps",
        &[
            ("Cargo.toml", "[package]\nname = \"sleeps\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"),
            ("src/main.rs", "fn main() {}\n"),
            ("build.rs", "fn main() { std::thread::sleep(std::time::Duration::from_secs(600)); }\n"),
        ],
    );
    // Containers are kept (cleanup off), so only the deadline can remove it.
    let config = common::work_root().join("docker-deadline.toml");
    std::fs::write(&config, "[cross_compilation]\ncontainer_timeout_secs = 20\ncleanup_containers = false\n")
        .expect("write config");
    let started = std::time::Instant::now();
    let out = docker_build(&host, &template, &["-t", X86, "--config", config.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let result = result_for(&json(&out), X86).clone();
    let error = result["error"].as_str().unwrap_or_default();
    assert!(error.contains("did not finish within 20s and was killed"), "{result}");
    assert!(started.elapsed() < std::time::Duration::from_secs(300), "the deadline did not stop the build");
    let left: Vec<String> = labelled_containers(&host).into_iter().filter(|n| n.ends_with("-kept")).collect();
    assert!(left.is_empty(), "the killed build left its container: {left:?}");
}

#[test]
fn one_template_from_two_paths_gives_byte_identical_binaries_in_docker() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(host) = docker_host() else { return };
    let root = common::work_root().join("docker-reproducible");
    let short = example_template_at(&root.join("a"));
    let long = example_template_at(&root.join("a-much-longer-directory-name/with/more/levels"));
    let first = json(&docker_build(&host, &short, &["-t", X86]));
    let second = json(&docker_build(&host, &long, &["-t", X86]));
    let (first, second) = (result_for(&first, X86), result_for(&second, X86));
    assert_eq!(first["status"], "ok", "{first}");
    assert_eq!(second["status"], "ok", "{second}");
    assert_eq!(first["sha256"], second["sha256"], "the binaries differ with the template's path");
}

#[test]
fn a_daemon_that_is_down_sends_the_build_here_and_says_why() {
    // Needs no daemon: the point is that there is none.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let host = "unix:///nonexistent/rustle-cross-test/docker.sock";
    let out_dir = common::work_root().join("docker-down-out");
    let template = example_template();
    let args = ["build", template.to_str().expect("utf-8"), "-t", X86, "-v", "--out", out_dir.to_str().expect("utf-8")];
    let out = rustle_cross_env(&args, &[("DOCKER_HOST", host), ("RUSTLE_USE_DOCKER", "1")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the local fallback did not build: {}", stderr(&out));
    assert!(stdout.contains("passed over docker: no Docker daemon answers at"), "-v does not say why: {stdout}");
    assert!(stdout.contains(host), "{stdout}");
    assert!(stdout.contains("scripts/start-dockerd.sh"), "{stdout}");
    // Said without -v too: on the progress lines and under the summary.
    let err = stderr(&out);
    assert!(err.contains(&format!("note: {X86}: passed over docker: no Docker daemon answers at {host}")), "{err}");
    assert!(err.contains("building with this machine's toolchains"), "{err}");

    // Docker alone: the target fails with that reason, and nothing hangs.
    let only = rustle_cross_env(
        &[
            "build",
            template.to_str().expect("utf-8"),
            "-t",
            X86,
            "--executor",
            "docker",
            "--json",
            "--out",
            out_dir.to_str().expect("utf-8"),
        ],
        &[("DOCKER_HOST", host)],
    );
    assert_eq!(only.status.code(), Some(1));
    let result = result_for(&json(&only), X86).clone();
    assert_eq!(result["status"], "unavailable", "{result}");
    let error = result["error"].as_str().unwrap_or_default();
    assert!(error.contains("no Docker daemon answers") && error.contains("does not exist"), "{error}");
}

#[test]
fn ctrl_c_stops_the_build_and_removes_its_containers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(host) = docker_host() else { return };
    let template = scratch_template(
        "docker-interrupted",
        &[
            ("Cargo.toml", "[package]\nname = \"interrupted\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"),
            ("src/main.rs", "fn main() {}\n"),
            ("build.rs", "fn main() { std::thread::sleep(std::time::Duration::from_secs(600)); }\n"),
        ],
    );
    let out_dir = common::work_root().join("docker-out");
    // Per-run containers (`-p<pid>`): the test tells its own apart.
    let config = common::work_root().join("docker-per-run.toml");
    std::fs::write(&config, "[cross_compilation]\ncontainer_idle_secs = 0\n").expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rustle-cross"))
        .args(["build", template.to_str().expect("utf-8"), "--executor", "docker", "--no-cache", "-t", X86])
        .arg("--out")
        .arg(&out_dir)
        .arg("--config")
        .arg(&config)
        .env("RUSTLE_TARGET_CACHE_DIR", common::cache_dir())
        .env("DOCKER_HOST", &host)
        .env_remove("RUSTLE_CROSS_CONFIG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start rustle-cross");
    // Wait until its build environment runs (the build script then sleeps in it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !labelled_containers(&host).iter().any(|name| name.contains(&format!("-p{}", child.id()))) {
        assert!(std::time::Instant::now() < deadline, "no build container appeared");
        assert!(child.try_wait().expect("poll").is_none(), "rustle-cross ended before its build started");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    let left: Vec<String> =
        labelled_containers(&host).into_iter().filter(|n| n.contains(&format!("-p{pid}"))).collect();
    assert!(left.is_empty(), "the interrupted build left containers: {left:?}");
}

#[test]
fn an_image_that_cannot_be_pulled_is_said_and_rustle_cross_s_own_image_builds() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(host) = docker_host() else { return };
    // A registry address where nothing listens: the pull fails at once.
    let config = common::work_root().join("docker-unpullable.toml");
    std::fs::write(&config, format!("[cross_compilation.docker_images]\n\"{X86}\" = \"127.0.0.1:9/rustle/none:1\"\n"))
        .expect("write config");
    let out = docker_build(&host, &example_template(), &["-t", X86, "--config", config.to_str().expect("utf-8")]);
    let results = json(&out);
    assert!(out.status.success(), "{results}");
    let result = result_for(&results, X86);
    assert!(
        result["metadata"]["toolchain"].as_str().unwrap_or_default().contains("in rustle-cross/linux-gnu:"),
        "{result}"
    );
    let err = stderr(&out);
    assert!(
        err.contains("pulling 127.0.0.1:9/rustle/none:1 failed") && err.contains("trying rustle-cross's own images"),
        "the failed pull is not said: {err}"
    );
}

#[test]
fn a_build_by_an_unprivileged_user_leaves_only_that_user_s_files() {
    use std::os::unix::fs::MetadataExt;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(host) = docker_host() else { return };
    if rustle_test_support::require_tool("setpriv").is_none() {
        return;
    }
    // A user with no name and no home, allowed on the daemon's socket
    // through its group (Debian's docker.io makes `docker`).
    const UID: u32 = 4242;
    let groups = std::fs::read_to_string("/etc/group").expect("/etc/group");
    let docker_gid = groups
        .lines()
        .find_map(|l| l.strip_prefix("docker:x:").and_then(|rest| rest.split(':').next()))
        .expect("a docker group (docker.io creates it)")
        .to_owned();
    // The image comes first, made by root as an administrator would once:
    // its rootfs takes debootstrap, which needs root (on a fresh daemon this
    // test may be the first to want the image).
    let image = docker_build(&host, &example_template(), &["-t", X86]);
    assert!(image.status.success(), "root's build that makes the image: {}", json(&image));
    let root = common::work_root().join("docker-unprivileged");
    let _ = std::fs::remove_dir_all(&root);
    let template = example_template_at(&root.join("template"));
    for dir in ["home", "cache", "out"] {
        std::fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    let chown = Command::new("chown").arg("-R").arg(format!("{UID}:{UID}")).arg(&root).status().expect("chown");
    assert!(chown.success());
    let out = Command::new("setpriv")
        .args(["--reuid", &UID.to_string(), "--regid", &UID.to_string(), "--groups", &docker_gid, "--"])
        .arg(env!("CARGO_BIN_EXE_rustle-cross"))
        .args(["build", template.to_str().expect("utf-8"), "--executor", "docker", "--no-cache", "--json", "-t", X86])
        .arg("--out")
        .arg(root.join("out"))
        .env("HOME", root.join("home"))
        .env("RUSTLE_TARGET_CACHE_DIR", root.join("cache"))
        .env("DOCKER_HOST", &host)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env_remove("RUSTLE_CROSS_CONFIG")
        .env_remove("CARGO_HOME")
        .env_remove("RUSTUP_HOME")
        .output()
        .expect("run rustle-cross as an unprivileged user");
    let results = json(&out);
    assert!(out.status.success(), "{results}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(result_for(&results, X86)["status"], "ok", "{results}");
    // Everything the run wrote here belongs to that user.
    let mut others = Vec::new();
    let mut stack = vec![root.join("out"), root.join("cache"), root.join("home")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let entry = entry.expect("entry");
            let meta = entry.path().symlink_metadata().expect("metadata");
            if meta.uid() != UID {
                others.push(format!("{} (uid {})", entry.path().display(), meta.uid()));
            }
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    assert!(others.is_empty(), "files not owned by uid {UID}: {others:?}");
    assert!(root.join("out/rustle-hello-x86_64-unknown-linux-gnu").is_file());
}
