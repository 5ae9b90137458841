//! Build containers: one long-lived environment per (target, image) with no
//! network, its volumes, the labels that let a later run find strays, and
//! the runs in it (exec with streamed output, a deadline that kills the
//! container, files in and out through the archive API).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, ExecConfig, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;

use crate::error::DockerError;

/// Label every rustle-cross container carries (value: what it is for).
pub const LABEL_OWNER: &str = "io.rustle-cross";
/// Label: the environment key (target and image) of a build container.
pub const LABEL_ENVIRONMENT: &str = "io.rustle-cross.environment";
/// Label: the job a one-off container runs.
pub const LABEL_JOB: &str = "io.rustle-cross.job";
/// Label: when the container was created (seconds since the epoch).
pub const LABEL_STARTED_AT: &str = "io.rustle-cross.started-at";

/// Where the builder binary is mounted (read-only) in every container.
pub const BUILDER_PATH: &str = "/rustle/bin/rustle-cross";
/// The work volume's mount point: template trees, target dirs, jobs.
pub const WORK_DIR: &str = "/rustle/work";
/// The cargo home volume's mount point (registry and git checkouts).
pub const CARGO_HOME: &str = "/rustle/cargo-home";

/// A build environment for one target in one image: its container, and
/// what that container is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompilationEnvironment {
    /// The running container's id.
    pub container_id: String,
    /// Its name (`rustle-cross-<key>`, with `-p<pid>` when the run removes it).
    pub container_name: String,
    /// The image it runs.
    pub image: String,
    /// Where builds happen inside it.
    pub working_dir: String,
    /// The environment every build in it gets (`KEY=value`).
    pub environment_vars: Vec<String>,
    /// `volume-or-host-path:container-path[:ro]`.
    pub volume_mounts: Vec<String>,
    /// The target it builds.
    pub target: String,
    /// The work volume's name (target dirs per template live in it).
    pub work_volume: String,
}

/// Resource limits of build containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerLimits {
    /// Memory limit in bytes.
    pub memory_bytes: i64,
    /// CPU limit in billionths of a CPU.
    pub nano_cpus: i64,
}

impl Default for ContainerLimits {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get()) as i64;
        Self { memory_bytes: 16 << 30, nano_cpus: cpus * 1_000_000_000 }
    }
}

/// The user builds run as: the caller's uid and gid, so nothing they write
/// is owned by anyone else.
pub fn caller_user() -> String {
    let (uid, gid) = ids();
    format!("{uid}:{gid}")
}

/// The caller's uid, which every volume name carries: users never share
/// writable build state (nor trip over each other's file ownership).
pub fn caller_uid() -> u32 {
    ids().0
}

fn ids() -> (u32, u32) {
    let meta = std::fs::metadata("/proc/self");
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = meta {
            return (meta.uid(), meta.gid());
        }
    }
    (0, 0)
}

fn now_secs() -> String {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()).to_string()
}

/// The container of an environment, created (and started) unless one with
/// its name already runs. A stopped one (left by a crash) is replaced.
#[allow(clippy::too_many_arguments, reason = "each is one fact of the environment")]
pub async fn ensure_environment(
    docker: &Docker,
    container_key: &str,
    idle: Option<Duration>,
    key: &str,
    image: &str,
    target: &str,
    builder: &std::path::Path,
    limits: ContainerLimits,
) -> Result<CompilationEnvironment, DockerError> {
    let name = format!("rustle-cross-{container_key}");
    let work_volume = format!("rustle-cross-work-{key}");
    let volume_mounts = vec![
        format!("{}:{BUILDER_PATH}:ro", builder.display()),
        format!("{work_volume}:{WORK_DIR}"),
        format!("rustle-cross-cargo-home-u{}:{CARGO_HOME}", caller_uid()),
    ];
    let environment_vars = vec![
        format!("CARGO_HOME={CARGO_HOME}"),
        format!("HOME={WORK_DIR}/home"),
        "CARGO_NET_OFFLINE=true".to_owned(),
        "CARGO_TERM_COLOR=never".to_owned(),
    ];
    let env = |container_id: String| CompilationEnvironment {
        container_id,
        container_name: name.clone(),
        image: image.to_owned(),
        working_dir: WORK_DIR.to_owned(),
        environment_vars: environment_vars.clone(),
        volume_mounts: volume_mounts.clone(),
        target: target.to_owned(),
        work_volume: work_volume.clone(),
    };
    if let Ok(existing) = docker.inspect_container(&name, None).await {
        let running = existing.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        let same_image = existing.config.as_ref().and_then(|c| c.image.as_deref()) == Some(image);
        if running && same_image {
            return Ok(env(existing.id.unwrap_or_else(|| name.clone())));
        }
        remove(docker, &name).await;
    }
    let labels = HashMap::from([
        // `build`: ends itself when idle; `build-kept`: kept for debugging
        // (cleanup_containers = false).
        (LABEL_OWNER.to_owned(), if idle.is_some() { "build" } else { "build-kept" }.to_owned()),
        (LABEL_ENVIRONMENT.to_owned(), key.to_owned()),
        (LABEL_STARTED_AT.to_owned(), now_secs()),
    ]);
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        // The environment idles; builds run in it through exec. It ends
        // itself (and is removed) after `idle` without a build; kept ones
        // (cleanup off) idle forever.
        cmd: Some(match idle {
            Some(idle) => vec![
                BUILDER_PATH.into(),
                crate::in_container::SUBCOMMAND.into(),
                "idle".into(),
                idle.as_secs().to_string(),
            ],
            None => vec!["sleep".into(), "infinity".into()],
        }),
        user: Some(caller_user()),
        env: Some(environment_vars.clone()),
        working_dir: Some(WORK_DIR.to_owned()),
        labels: Some(labels),
        host_config: Some(HostConfig {
            binds: Some(volume_mounts.clone()),
            // Builds are hermetic: dependencies were fetched in a step of
            // their own; a build script that dials out fails.
            network_mode: Some("none".into()),
            memory: Some(limits.memory_bytes),
            nano_cpus: Some(limits.nano_cpus),
            init: Some(true),
            auto_remove: Some(idle.is_some()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    let created = docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| DockerError::api(format!("create container {name} of {image}"), e))?;
    docker
        .start_container(&created.id, None::<bollard::query_parameters::StartContainerOptions>)
        .await
        .map_err(|e| DockerError::api(format!("start container {name}"), e))?;
    Ok(env(created.id))
}

/// What a run in a container printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutput {
    /// Exit code.
    pub exit_code: i64,
    /// The last lines of stderr.
    pub stderr_tail: String,
}

/// Runs `cmd` in the environment's container, calling `on_stdout` with every
/// stdout line, within `deadline` (after which the container is removed).
pub async fn exec(
    docker: &Docker,
    env: &CompilationEnvironment,
    cmd: Vec<String>,
    deadline: Duration,
    on_stdout: &(dyn Fn(&str) + Send + Sync),
) -> Result<RunOutput, DockerError> {
    let config = ExecConfig {
        cmd: Some(cmd),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        env: Some(env.environment_vars.clone()),
        working_dir: Some(env.working_dir.clone()),
        user: Some(caller_user()),
        ..Default::default()
    };
    let exec = docker.create_exec(&env.container_id, config).await.map_err(|e| DockerError::api("exec", e))?;
    // Dropped mid-run (Ctrl-C, a cancelled job): the container goes, and
    // with it the build.
    let guard = RemoveOnDrop::new(docker, &env.container_id);
    let run = async {
        let started = docker.start_exec(&exec.id, None).await.map_err(|e| DockerError::api("start exec", e))?;
        let bollard::exec::StartExecResults::Attached { mut output, .. } = started else {
            return Err(DockerError::api("start exec", "the daemon detached the run"));
        };
        let (mut stdout, mut stderr) = (LineBuffer::default(), LineBuffer::default());
        let mut tail: Vec<String> = Vec::new();
        while let Some(chunk) = output.next().await {
            match chunk.map_err(|e| DockerError::api("read exec output", e))? {
                bollard::container::LogOutput::StdOut { message } => stdout.push(&message, |l| on_stdout(l)),
                bollard::container::LogOutput::StdErr { message } => stderr.push(&message, |l| {
                    tail.push(l.to_owned());
                    if tail.len() > 40 {
                        tail.remove(0);
                    }
                }),
                _ => {}
            }
        }
        stdout.finish(|l| on_stdout(l));
        stderr.finish(|l| tail.push(l.to_owned()));
        let inspect = docker.inspect_exec(&exec.id).await.map_err(|e| DockerError::api("inspect exec", e))?;
        Ok(RunOutput { exit_code: inspect.exit_code.unwrap_or(-1), stderr_tail: tail.join("\n") })
    };
    match tokio::time::timeout(deadline, run).await {
        Ok(result) => {
            guard.disarm();
            result
        }
        Err(_) => {
            guard.disarm();
            remove(docker, &env.container_id).await;
            Err(DockerError::Timeout(deadline))
        }
    }
}

/// Runs `cmd` in a one-off container on the host network (the dependency
/// fetch), with the environment's volumes, removed when it ends.
pub async fn run_networked(
    docker: &Docker,
    env: &CompilationEnvironment,
    job: &str,
    cmd: Vec<String>,
    deadline: Duration,
    limits: ContainerLimits,
) -> Result<RunOutput, DockerError> {
    let labels = HashMap::from([
        (LABEL_OWNER.to_owned(), "fetch".to_owned()),
        (LABEL_JOB.to_owned(), job.to_owned()),
        (LABEL_STARTED_AT.to_owned(), now_secs()),
    ]);
    let mut binds = env.volume_mounts.clone();
    let mut vars: Vec<String> =
        env.environment_vars.iter().filter(|v| !v.starts_with("CARGO_NET_OFFLINE=")).cloned().collect();
    // The host's trust store and proxy: a fetch reaches crates.io the way
    // this machine does (a TLS-inspecting proxy's CA included).
    if let Some(bundle) = host_ca_bundle() {
        binds.push(format!("{}:{HOST_CA_BUNDLE}:ro", bundle.display()));
        vars.push(format!("CARGO_HTTP_CAINFO={HOST_CA_BUNDLE}"));
        vars.push(format!("SSL_CERT_FILE={HOST_CA_BUNDLE}"));
    }
    for key in ["https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"] {
        if let Ok(value) = std::env::var(key) {
            vars.push(format!("{key}={value}"));
        }
    }
    let body = ContainerCreateBody {
        image: Some(env.image.clone()),
        cmd: Some(cmd),
        user: Some(caller_user()),
        env: Some(vars),
        working_dir: Some(env.working_dir.clone()),
        labels: Some(labels),
        host_config: Some(HostConfig {
            binds: Some(binds),
            network_mode: Some("host".into()),
            memory: Some(limits.memory_bytes),
            nano_cpus: Some(limits.nano_cpus),
            init: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = docker
        .create_container(None::<bollard::query_parameters::CreateContainerOptions>, body)
        .await
        .map_err(|e| DockerError::api("create the fetch container", e))?;
    let id = created.id;
    let guard = RemoveOnDrop::new(docker, &id);
    let run = async {
        docker
            .start_container(&id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(|e| DockerError::api("start the fetch container", e))?;
        let mut code = 0;
        let mut wait = docker.wait_container(&id, None::<bollard::query_parameters::WaitContainerOptions>);
        while let Some(status) = wait.next().await {
            match status {
                Ok(s) => code = s.status_code,
                Err(bollard::errors::Error::DockerContainerWaitError { code: c, .. }) => code = c,
                Err(e) => return Err(DockerError::api("wait for the fetch container", e)),
            }
        }
        let options = bollard::query_parameters::LogsOptionsBuilder::default().stderr(true).tail("40").build();
        let mut logs = docker.logs(&id, Some(options));
        let mut stderr_tail = String::new();
        while let Some(chunk) = logs.next().await {
            stderr_tail.push_str(&chunk.map_err(|e| DockerError::api("logs", e))?.to_string());
        }
        Ok(RunOutput { exit_code: code, stderr_tail })
    };
    let result = tokio::time::timeout(deadline, run).await.unwrap_or(Err(DockerError::Timeout(deadline)));
    guard.disarm();
    remove(docker, &id).await;
    result
}

/// Where the host's CA bundle is mounted in a fetch container.
const HOST_CA_BUNDLE: &str = "/rustle/host-ca.crt";

/// The host's CA bundle: `SSL_CERT_FILE`, else Debian's.
fn host_ca_bundle() -> Option<std::path::PathBuf> {
    std::env::var_os("SSL_CERT_FILE")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain([std::path::PathBuf::from("/etc/ssl/certs/ca-certificates.crt")])
        .find(|p| p.is_file())
        .and_then(|p| p.canonicalize().ok())
}

/// Puts `files` (path relative to `dir` → bytes) into the container at `dir`.
pub async fn upload(docker: &Docker, container: &str, dir: &str, files: &[(&str, &[u8])]) -> Result<(), DockerError> {
    let mut archive = tar::Builder::new(Vec::new());
    let (uid, gid) = ids();
    // Every parent directory as an entry of its own, owned by the caller
    // and writable, or the daemon would create it as root.
    let mut dirs: Vec<String> = Vec::new();
    for (path, _) in files {
        for ancestor in std::path::Path::new(path).ancestors().skip(1) {
            if ancestor.as_os_str().is_empty() {
                break;
            }
            let dir = format!("{}/", ancestor.display());
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    dirs.sort();
    for dir in &dirs {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        header.set_mode(0o1777);
        header.set_uid(uid.into());
        header.set_gid(gid.into());
        header.set_cksum();
        archive.append_data(&mut header, dir, std::io::empty()).map_err(|e| DockerError::api("pack the job", e))?;
    }
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_uid(uid.into());
        header.set_gid(gid.into());
        header.set_cksum();
        archive.append_data(&mut header, path, *bytes).map_err(|e| DockerError::api("pack the job", e))?;
    }
    let archive = archive.into_inner().map_err(|e| DockerError::api("pack the job", e))?;
    let options = UploadToContainerOptionsBuilder::default().path(dir).build();
    docker
        .upload_to_container(container, Some(options), bollard::body_full(archive.into()))
        .await
        .map_err(|e| DockerError::api(format!("upload the job to {dir}"), e))
}

/// The regular files under `path` in the container, by name.
pub async fn download(docker: &Docker, container: &str, path: &str) -> Result<Vec<(String, Vec<u8>)>, DockerError> {
    let options = DownloadFromContainerOptionsBuilder::default().path(path).build();
    let mut stream = docker.download_from_container(container, Some(options));
    let mut archive = Vec::new();
    while let Some(chunk) = stream.next().await {
        archive.extend_from_slice(&chunk.map_err(|e| DockerError::api(format!("download {path}"), e))?);
    }
    let mut files = Vec::new();
    let mut reader = tar::Archive::new(archive.as_slice());
    for entry in reader.entries().map_err(|e| DockerError::api("read the result archive", e))? {
        let mut entry = entry.map_err(|e| DockerError::api("read the result archive", e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| DockerError::api("read the result archive", e))?
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes)
            .map_err(|e| DockerError::api("read the result archive", e))?;
        files.push((name, bytes));
    }
    Ok(files)
}

/// Removes a container (killing it first if it runs) and its anonymous
/// volumes, and waits (up to 20 s) until the daemon no longer has it: a
/// removal someone else started (a dropped build's guard) is waited for too.
pub async fn remove(docker: &Docker, container: &str) {
    let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
    if let Err(e) = docker.remove_container(container, Some(options)).await {
        tracing::debug!("removing container {container}: {e}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while docker.inspect_container(container, None).await.is_ok() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the container exists and runs.
pub async fn is_running(docker: &Docker, container: &str) -> bool {
    docker.inspect_container(container, None).await.ok().and_then(|c| c.state.and_then(|s| s.running)).unwrap_or(false)
}

/// Every container carrying rustle-cross's label: (name, id, what it is for).
pub async fn labelled_containers(docker: &Docker) -> Result<Vec<(String, String, String)>, DockerError> {
    let filters = HashMap::from([("label".to_owned(), vec![LABEL_OWNER.to_owned()])]);
    let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    let list = docker.list_containers(Some(options)).await.map_err(|e| DockerError::api("list containers", e))?;
    Ok(list
        .into_iter()
        .map(|c| {
            let name = c.names.and_then(|n| n.first().cloned()).unwrap_or_default().trim_start_matches('/').to_owned();
            let purpose = c.labels.and_then(|l| l.get(LABEL_OWNER).cloned()).unwrap_or_default();
            (name, c.id.unwrap_or_default(), purpose)
        })
        .collect())
}

/// Removes the container when dropped, unless disarmed: a build whose
/// caller went away (Ctrl-C, a cancelled job) does not run on.
struct RemoveOnDrop {
    docker: Docker,
    container: String,
    armed: std::sync::atomic::AtomicBool,
}

impl RemoveOnDrop {
    fn new(docker: &Docker, container: &str) -> Self {
        Self { docker: docker.clone(), container: container.to_owned(), armed: true.into() }
    }

    fn disarm(&self) {
        self.armed.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if !self.armed.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let (docker, container) = (self.docker.clone(), self.container.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { remove(&docker, &container).await });
        }
    }
}

/// Splits a byte stream into lines.
#[derive(Default)]
struct LineBuffer(Vec<u8>);

impl LineBuffer {
    fn push(&mut self, bytes: &[u8], mut on_line: impl FnMut(&str)) {
        self.0.extend_from_slice(bytes);
        while let Some(end) = self.0.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.0.drain(..=end).collect();
            on_line(String::from_utf8_lossy(&line[..line.len() - 1]).trim_end_matches('\r'));
        }
    }

    fn finish(&mut self, mut on_line: impl FnMut(&str)) {
        if !self.0.is_empty() {
            on_line(&String::from_utf8_lossy(&self.0));
            self.0.clear();
        }
    }
}
