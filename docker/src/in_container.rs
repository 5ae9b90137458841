//! The builder inside a container: `rustle-cross __docker-build fetch|build
//! JOBDIR`, the same engine as every other executor, run with the image's
//! toolchains. `fetch` (host network) syncs the template and fetches its
//! dependencies, std's included when std is built from source; `build` (no
//! network) runs `engine::run` offline and leaves the binary and
//! `result.json` in `JOBDIR/out`. Progress goes to stdout as JSON lines.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustle_engine::bundle::{BundleLimits, sync_bundle};
use rustle_engine::engine::{self, CompilationError};
use rustle_engine::template::{PreparedTemplate, TemplateSource};
use rustle_engine::toolchain::{StdSource, ToolchainConfig, ToolchainManager};
use rustle_process::ProcessSpec;
use rustle_targets::{BuildRequest, CachePolicy};

use crate::container::WORK_DIR;
use crate::wire::{ContainerJob, ContainerResult, ProgressLine};

/// The job file's name in a job dir.
pub const JOB_FILE: &str = "job.json";
/// The source bundle's name in a job dir.
pub const SOURCE_FILE: &str = "source.tar.zst";
/// The result file's name in `JOBDIR/out`.
pub const RESULT_FILE: &str = "result.json";

/// The hidden subcommand `rustle-cross` runs this under.
pub const SUBCOMMAND: &str = "__docker-build";

/// The file every builder run touches while it works; an idle environment
/// ends when it has not been touched for its idle time.
const LAST_USE: &str = ".last-use";

/// Runs the builder with `args` (`fetch JOBDIR`, `build JOBDIR`, or `idle
/// SECS`: the environment's main process); the process exit code.
pub async fn main(args: &[String]) -> i32 {
    let (mode, job_dir) = match args {
        [mode, dir] if mode == "fetch" || mode == "build" => (mode.as_str(), PathBuf::from(dir)),
        [mode, secs] if mode == "idle" && secs.parse::<u64>().is_ok() => {
            idle(Duration::from_secs(secs.parse().unwrap_or(300))).await;
            return 0;
        }
        _ => {
            eprintln!(
                "usage: rustle-cross {SUBCOMMAND} fetch|build JOBDIR | idle SECS (run by rustle-cross inside its build containers)"
            );
            return 2;
        }
    };
    // While this runs, the environment is in use.
    let touching = tokio::spawn(async {
        loop {
            touch_last_use();
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    let result = run(mode, &job_dir).await;
    touching.abort();
    touch_last_use();
    match result {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("rustle-cross builder: {message}");
            1
        }
    }
}

fn touch_last_use() {
    let _ = std::fs::write(Path::new(WORK_DIR).join(LAST_USE), b"");
}

/// Waits until no builder has touched the work volume for `limit`, then
/// returns (the container then ends, and Docker removes it).
async fn idle(limit: Duration) {
    let started = std::time::SystemTime::now();
    loop {
        tokio::time::sleep(Duration::from_secs(2).min(limit)).await;
        let last = std::fs::metadata(Path::new(WORK_DIR).join(LAST_USE))
            .and_then(|m| m.modified())
            .map_or(started, |m| m.max(started));
        if last.elapsed().unwrap_or_default() >= limit {
            return;
        }
    }
}

async fn run(mode: &str, job_dir: &Path) -> Result<(), String> {
    let job: ContainerJob = serde_json::from_slice(
        &std::fs::read(job_dir.join(JOB_FILE)).map_err(|e| format!("{}: {e}", job_dir.join(JOB_FILE).display()))?,
    )
    .map_err(|e| format!("{JOB_FILE}: {e}"))?;
    let work = Path::new(WORK_DIR);
    let template = sync_template(&job, job_dir, work)?;
    let toolchains = ToolchainManager::new(ToolchainConfig {
        auto_install: false,
        cache_dir: work.join("toolchains"),
        ..ToolchainConfig::default()
    });
    let (target, settings) = job.target.clone().into_parts();
    let request = BuildRequest {
        template: template.id.clone(),
        target,
        settings,
        optimization: job.optimization.clone(),
        deadline: Duration::from_secs(job.deadline_secs),
        incremental: job.incremental,
        // The host keeps the binary cache: a container never answers from one.
        cache: CachePolicy::Off,
    };
    match mode {
        "fetch" => fetch(&request, &template, &toolchains).await,
        _ => {
            let result = build(&request, &template, &toolchains, job_dir).await;
            let out = job_dir.join("out");
            std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            let text = serde_json::to_vec(&result).map_err(|e| e.to_string())?;
            std::fs::write(out.join(RESULT_FILE), text).map_err(|e| format!("{}: {e}", out.display()))
        }
    }
}

/// The job's template, synced into its warm tree in the work volume (only
/// changed files are written, so cargo rebuilds only what changed).
fn sync_template(job: &ContainerJob, job_dir: &Path, work: &Path) -> Result<PreparedTemplate, String> {
    let bundle = std::fs::read(job_dir.join(SOURCE_FILE)).map_err(|e| format!("{SOURCE_FILE}: {e}"))?;
    let safe_key: String = job
        .template_key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    let dir = work.join("templates").join(safe_key);
    sync_bundle(&bundle, &dir, &BundleLimits::default()).map_err(|e| format!("source bundle: {e}"))?;
    TemplateSource::Dir(dir).prepare(&work.join("generated")).map_err(|e| e.to_string())
}

/// Fetches every dependency the build will need offline.
async fn fetch(
    request: &BuildRequest,
    template: &PreparedTemplate,
    toolchains: &ToolchainManager,
) -> Result<(), String> {
    let plan = engine::plan(toolchains, &request.target, &request.settings).await.map_err(|e| e.to_string())?;
    let mut command = ProcessSpec::new(&plan.toolchain.cargo)
        .args(["fetch", "--manifest-path"])
        .arg(&template.manifest)
        .args(["--target", &plan.target.cargo_target()])
        .env("RUSTC", &plan.toolchain.rustc)
        .timeout(request.deadline);
    if plan.std == StdSource::BuildStd {
        command = command.arg("-Zbuild-std=std,panic_abort");
        if !plan.toolchain.is_nightly() {
            command = command.env("RUSTC_BOOTSTRAP", "1");
        }
    }
    let out = command.output().await.map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("cargo fetch failed ({}):\n{}", out.status, out.stderr_text().trim()));
    }
    Ok(())
}

async fn build(
    request: &BuildRequest,
    template: &PreparedTemplate,
    toolchains: &ToolchainManager,
    job_dir: &Path,
) -> ContainerResult {
    let on_event = |event: engine::BuildEvent| {
        if let Some(line) = ProgressLine::from_event(&event)
            && let Ok(text) = serde_json::to_string(&line)
        {
            println!("{text}");
        }
    };
    let failed = |error: CompilationError| ContainerResult::Failed {
        compile_failure: error.is_compile_failure(),
        message: error.to_string(),
    };
    let binary =
        match engine::run(request, template, toolchains, &Path::new(WORK_DIR).join("cache"), None, &on_event).await {
            Ok(binary) => binary,
            Err(error) => return failed(error),
        };
    let path = job_dir.join("out").join(&binary.file_name);
    if let Err(e) =
        std::fs::create_dir_all(job_dir.join("out")).and_then(|()| std::fs::write(&path, &binary.binary_data))
    {
        return ContainerResult::Failed { compile_failure: false, message: format!("{}: {e}", path.display()) };
    }
    ContainerResult::Built { file_name: binary.file_name, checksum: binary.checksum, metadata: binary.metadata }
}
