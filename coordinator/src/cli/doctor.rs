//! `rustle-cross doctor`: checks toolchains, linkers, runners, Docker, the
//! cache directory and disk space, and says how to fix what is wrong.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use rustle_cross::build::TargetAvailability;
use rustle_cross::manager::describe_missing;
use rustle_cross::{CrossCompilationConfig, CrossCompilationManager};
use rustle_process::ProcessSpec;

use super::table::Table;

/// Arguments of `rustle-cross doctor`.
#[derive(Args)]
pub struct DoctorArgs {
    /// Free space below which the cache's disk is reported (GiB).
    #[arg(long, default_value_t = 5)]
    min_free_gib: u64,
    /// Also check what this template's C dependencies (its `-sys` crates,
    /// resolved per target) need, and whether each is here, is built here
    /// from source, or is missing (with the way out).
    #[arg(long)]
    template: Option<std::path::PathBuf>,
}

#[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Check {
    level: Level,
    name: String,
    detail: String,
    fix: String,
}

impl Check {
    fn new(level: Level, name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { level, name: name.into(), detail: detail.into(), fix: fix.into() }
    }
}

/// Runs the command. Exits 1 when a check fails (warnings do not fail).
pub async fn run(config: CrossCompilationConfig, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let manager = CrossCompilationManager::new(config)?;
    let mut checks = Vec::new();
    let mut found_toolchains = Vec::new();

    match manager.setup_environment().await {
        Ok(toolchains) => {
            found_toolchains = toolchains.to_vec();
            for t in toolchains.iter() {
                let src = match &t.rust_src {
                    Some(s) if s.matches_compiler => "rust-src (build-std)".to_owned(),
                    Some(s) => format!("rust-src {} does not match", s.version.as_deref().unwrap_or("?")),
                    None => "no rust-src".to_owned(),
                };
                checks.push(Check::new(
                    Level::Ok,
                    format!("toolchain {}", t.name),
                    format!("{}; std for {} target(s); {src}", t.rustc_version, t.std_targets.len()),
                    "",
                ));
            }
            if !toolchains.iter().any(|t| t.can_build_std()) {
                checks.push(Check::new(
                    Level::Warn,
                    "build-std",
                    "no toolchain has a matching rust-src: targets without a prebuilt std cannot be built",
                    "apt-get install rustc-web cargo-web rust-web-src (scripts/setup.sh)",
                ));
            }
        }
        Err(e) => {
            checks.push(Check::new(Level::Fail, "toolchains", e.to_string(), "run scripts/setup.sh or install rustup"))
        }
    }

    let reports = super::targets::reports(&manager, &[]).await.unwrap_or_default();
    for report in &reports {
        let name = format!("target {}", report.target);
        checks.push(match &report.availability {
            TargetAvailability::Available(plan) => {
                let runner = match &report.runner {
                    Ok(r) => format!("runs under {}", r.description),
                    Err(e) => format!("cannot run here: {e}"),
                };
                Check::new(
                    Level::Ok,
                    name,
                    format!("{} via {}; {runner}", plan.toolchain.name, plan.linker.describe()),
                    "",
                )
            }
            TargetAvailability::RequiresInstallation { missing, .. } => {
                Check::new(Level::Warn, name, "cannot be built yet", describe_missing(missing))
            }
            TargetAvailability::NotSupported { reason, .. } => {
                Check::new(Level::Warn, name, "not supported here", reason.clone())
            }
        });
    }

    if let Some(template) = &args.template {
        checks.extend(template_checks(&reports, &found_toolchains, template).await?);
    }
    checks.extend(docker_checks(&manager).await);
    checks.extend(cache_checks(manager.cache_dir(), args.min_free_gib).await);

    let mut table = Table::new(&["", "CHECK", "DETAIL", "FIX"]);
    for c in &checks {
        let mark = match c.level {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        table.row(vec![mark.into(), c.name.clone(), c.detail.clone(), c.fix.clone()]);
    }
    println!("{}", table.render());
    let worst = checks.iter().map(|c| c.level).max().unwrap_or(Level::Ok);
    Ok(if worst == Level::Fail { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// One check per C dependency of `template` per target: ok when it is
/// here or built here from source, a warning with the way out when it is
/// missing or the graph cannot be resolved.
async fn template_checks(
    reports: &[rustle_cross::CompatibilityReport],
    toolchains: &[rustle_cross::build::Toolchain],
    template: &Path,
) -> anyhow::Result<Vec<Check>> {
    use rustle_cross::c_dependencies::CSupply;
    let mut checks = Vec::new();
    for need in super::targets::template_needs(reports, toolchains, template).await? {
        let name = format!("template on {}", need.target);
        match (need.c_dependencies, need.error) {
            (Some(deps), _) if deps.is_empty() => checks.push(Check::new(Level::Ok, name, "no C dependencies", "")),
            (Some(deps), _) => {
                for dep in deps {
                    let what = format!("{} needs {}", dep.crate_name, dep.needs);
                    checks.push(match dep.supply {
                        CSupply::Present { from } => Check::new(Level::Ok, &name, format!("{what}: {from}"), ""),
                        CSupply::Buildable { how } => {
                            Check::new(Level::Ok, &name, format!("{what}: built here {how}"), "")
                        }
                        CSupply::Missing { way_out } => {
                            Check::new(Level::Warn, &name, format!("{what}: missing"), way_out)
                        }
                    });
                }
            }
            (None, error) => checks.push(Check::new(
                Level::Warn,
                name,
                "its dependency graph could not be resolved",
                error.unwrap_or_default(),
            )),
        }
    }
    Ok(checks)
}

/// The Docker daemon (through the same client builds use), its storage
/// driver, and whether every image family is built.
async fn docker_checks(manager: &CrossCompilationManager) -> Vec<Check> {
    let mode = if manager.config().use_docker { "use_docker is on" } else { "use_docker is off" };
    let docker = match manager.docker().await {
        Ok(docker) => docker,
        Err(reason) => {
            let level = if manager.config().use_docker { Level::Warn } else { Level::Ok };
            return vec![Check::new(
                level,
                "docker",
                format!("{reason} ({mode})"),
                "scripts/start-dockerd.sh starts a daemon; Docker builds are a fallback, local toolchains still work",
            )];
        }
    };
    let mut checks = Vec::new();
    match docker.daemon_summary().await {
        Ok(summary) => {
            let overlay = summary.contains("overlay2");
            let (level, fix) = if overlay {
                (Level::Ok, "")
            } else {
                (Level::Warn, "overlay2 is 2-3x faster and half the disk of vfs: dockerd --storage-driver=overlay2")
            };
            checks.push(Check::new(level, "docker", format!("{summary} at {} ({mode})", docker.host()), fix));
        }
        Err(e) => checks.push(Check::new(Level::Warn, "docker", e.to_string(), "check the daemon's log")),
    }
    match docker.image_registry().await {
        Ok(registry) => {
            let present: Vec<String> = registry.images.iter().map(|i| i.reference()).collect();
            for reference in docker.current_references() {
                if present.contains(&reference) {
                    checks.push(Check::new(Level::Ok, "docker image", reference, ""));
                } else {
                    checks.push(Check::new(
                        Level::Warn,
                        "docker image",
                        format!("{reference} is not built yet (the first Docker build makes it, a few minutes)"),
                        "rustle-cross images build",
                    ));
                }
            }
        }
        Err(e) => checks.push(Check::new(Level::Warn, "docker image", e.to_string(), "check the daemon's log")),
    }
    checks
}

async fn cache_checks(dir: &Path, min_free_gib: u64) -> Vec<Check> {
    let mut checks = Vec::new();
    let probe = dir.join(".doctor-write-test");
    let writable = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&probe, b"ok"));
    let _ = std::fs::remove_file(&probe);
    checks.push(match writable {
        Ok(()) => Check::new(Level::Ok, "cache dir", dir.display().to_string(), ""),
        Err(e) => Check::new(
            Level::Fail,
            "cache dir",
            format!("{}: {e}", dir.display()),
            "set RUSTLE_TARGET_CACHE_DIR to a writable directory",
        ),
    });
    let df = ProcessSpec::new("df").args(["-Pk"]).arg(dir).timeout(Duration::from_secs(10)).output().await;
    let free_kib = df.ok().and_then(|o| {
        o.stdout_text().lines().nth(1).and_then(|l| l.split_whitespace().nth(3)).and_then(|v| v.parse::<u64>().ok())
    });
    checks.push(match free_kib {
        Some(kib) if kib / (1 << 20) >= min_free_gib => {
            Check::new(Level::Ok, "disk", format!("{:.1} GiB free", kib as f64 / f64::from(1 << 20)), "")
        }
        Some(kib) => Check::new(
            Level::Warn,
            "disk",
            format!("only {:.1} GiB free (a build-std target dir takes 160-250 MB)", kib as f64 / f64::from(1 << 20)),
            format!("free space or move the cache: RUSTLE_TARGET_CACHE_DIR (now {})", dir.display()),
        ),
        None => Check::new(Level::Warn, "disk", "could not read free space (df)", ""),
    });
    checks
}
