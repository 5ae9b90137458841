//! `rustle-cross build`: builds a template for the named targets (or every
//! target this machine can build), with a live progress bar per target on
//! a terminal (plain progress lines elsewhere, nothing with `--quiet`),
//! writes `NAME-TRIPLE[.exe]` and a `.sha256` per binary, prints a summary.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rustle_cross::build::{
    BinaryReport, BuildEvent, CompilationError, CompiledBinary, RunnerError, TargetFailure, TemplateSource, run_binary,
};
use rustle_cross::config::ExecutorChoice;
use rustle_cross::detect::{ParsedInventory, TargetPlan};
use rustle_cross::manager::{docker_executor, local_executor};
use rustle_cross::progress_log::{DEFAULT_COMPILING_INTERVAL, ProgressLog};
use rustle_cross::targets::{
    CLibraryLinking, CompilationOptimization, LtoMode, OptimizationLevel, PanicStrategy, StripMode, TargetSpecification,
};
use rustle_cross::{CrossCompilationConfig, CrossCompilationManager, ProgressSink, TargetOutcome};
use serde_json::json;

use super::table::Table;

/// Optimization level names on the command line.
#[derive(Clone, Copy, ValueEnum)]
enum Level {
    /// opt-level 0 with debug assertions.
    #[value(alias = "0")]
    Debug,
    /// opt-level 1.
    #[value(name = "1")]
    O1,
    /// opt-level 2.
    #[value(name = "2")]
    O2,
    /// opt-level 3.
    #[value(alias = "3")]
    Release,
    /// opt-level "s".
    S,
    /// opt-level "z".
    Z,
}

/// `lto` values on the command line.
#[derive(Clone, Copy, ValueEnum)]
enum Lto {
    /// `lto = "off"`.
    Off,
    /// `lto = false` (thin, within each crate).
    #[value(name = "false")]
    ThinLocal,
    /// `lto = "thin"`.
    Thin,
    /// `lto = "fat"`.
    Fat,
}

/// `strip` values on the command line.
#[derive(Clone, Copy, ValueEnum)]
enum Strip {
    /// Keep everything.
    None,
    /// Strip debug info.
    Debuginfo,
    /// Strip symbols.
    Symbols,
}

/// `panic` values on the command line.
#[derive(Clone, Copy, ValueEnum)]
enum Panic {
    /// Unwind.
    Unwind,
    /// Abort.
    Abort,
}

/// Arguments of `rustle-cross build`.
#[derive(Args)]
pub struct BuildArgs {
    /// The template: a directory with a Cargo.toml.
    template: PathBuf,
    /// A target to build (repeatable): a triple, `TRIPLE.2.17` for a glibc
    /// floor, or a target-spec JSON file.
    #[arg(long = "target", short = 't')]
    targets: Vec<String>,
    /// Build every supported target this machine can build.
    #[arg(long, conflicts_with = "targets")]
    all_available: bool,
    /// Build exactly the targets this inventory's hosts need, and write
    /// `manifest.json` (host, triple, file, sha256) into `--out`.
    #[arg(long, short = 'i', conflicts_with_all = ["targets", "all_available"])]
    inventory: Option<PathBuf>,
    #[command(flatten)]
    inventory_options: super::detect::InventoryArgs,
    /// Where binaries and their .sha256 files go.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Optimization level (default: the template's release profile).
    #[arg(long, value_enum)]
    opt_level: Option<Level>,
    /// Link-time optimization: `--lto` alone is fat LTO; `--lto=MODE` picks
    /// (default: the template's release profile).
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "fat")]
    lto: Option<Lto>,
    /// Codegen units (default: the template's release profile).
    #[arg(long)]
    codegen_units: Option<u32>,
    /// `-C target-cpu` (`native` only for the build host).
    #[arg(long)]
    target_cpu: Option<String>,
    /// `-C target-feature` entries (repeatable: `+neon`, `-crc`).
    #[arg(long = "target-feature")]
    target_features: Vec<String>,
    /// What to strip: `--strip` alone strips symbols; `--strip=MODE` picks
    /// (default: the template's release profile).
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "symbols")]
    strip: Option<Strip>,
    /// Abort on panic instead of unwinding (same as `--panic abort`).
    #[arg(long, conflicts_with = "panic")]
    panic_abort: bool,
    /// The panic strategy (default: the template's release profile).
    #[arg(long, value_enum)]
    panic: Option<Panic>,
    /// Targets built at once (overrides max_parallel_jobs).
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
    /// Per-target deadline in seconds (overrides compilation_timeout_secs).
    #[arg(long)]
    timeout: Option<u64>,
    /// Run each binary that can run here (natively, qemu-user, wine) and
    /// report its first line of output.
    #[arg(long)]
    smoke_test: bool,
    /// Print the cargo command each target would run, and exit.
    #[arg(long)]
    print_command: bool,
    /// Build even what the binary cache has (and store nothing).
    #[arg(long)]
    no_cache: bool,
    /// Fail a target whose binary needs a shared library outside its base
    /// system (config `self_contained`); without it, such libraries are
    /// named in the summary.
    #[arg(long)]
    self_contained: bool,
    /// Link the templates' C libraries (OpenSSL for reqwest's default TLS,
    /// zlib, ...) `static` (the default: the binary needs nothing more on its
    /// host) or `dynamic` (config `c_libraries`, `RUSTLE_C_LIBRARIES`).
    #[arg(long, value_name = "static|dynamic", value_parser = str::parse::<CLibraryLinking>)]
    c_libraries: Option<CLibraryLinking>,
    /// Which executor builds: `auto` (the fleet, then Docker with
    /// use_docker, then this machine), or only `fleet`, `docker`, `local`
    /// (config `executor`, `RUSTLE_EXECUTOR`).
    #[arg(long)]
    executor: Option<ExecutorChoice>,
    /// Build TO instead of FROM when no executor can build FROM (repeatable;
    /// adds to `[cross_compilation.substitutes]`), e.g.
    /// `--substitute x86_64-pc-windows-msvc=x86_64-pc-windows-gnu`.
    #[arg(long = "substitute", value_name = "FROM=TO", value_parser = parse_substitute)]
    substitutes: Vec<(String, String)>,
    /// Machine-readable results on stdout (progress stays on stderr).
    #[arg(long)]
    json: bool,
    /// No progress on stderr, neither bars nor lines; errors and the
    /// summary still print.
    #[arg(long, short = 'q')]
    quiet: bool,
}

impl BuildArgs {
    fn optimization(&self) -> CompilationOptimization {
        let panic = if self.panic_abort { Some(Panic::Abort) } else { self.panic };
        CompilationOptimization {
            level: self.opt_level.map(|level| match level {
                Level::Debug => OptimizationLevel::Debug,
                Level::O1 => OptimizationLevel::O1,
                Level::O2 => OptimizationLevel::O2,
                Level::Release => OptimizationLevel::Release,
                Level::S => OptimizationLevel::Size,
                Level::Z => OptimizationLevel::MinSize,
            }),
            lto: self.lto.map(|lto| match lto {
                Lto::Off => LtoMode::Off,
                Lto::ThinLocal => LtoMode::ThinLocal,
                Lto::Thin => LtoMode::Thin,
                Lto::Fat => LtoMode::Fat,
            }),
            codegen_units: self.codegen_units,
            target_cpu: self.target_cpu.clone(),
            target_features: self.target_features.clone(),
            strip: self.strip.map(|strip| match strip {
                Strip::None => StripMode::None,
                Strip::Debuginfo => StripMode::Debuginfo,
                Strip::Symbols => StripMode::Symbols,
            }),
            panic_strategy: panic.map(|panic| match panic {
                Panic::Unwind => PanicStrategy::Unwind,
                Panic::Abort => PanicStrategy::Abort,
            }),
        }
    }
}

/// Runs the command.
/// `verbose` (`-v`) prints why each target went where it did.
pub async fn run(mut config: CrossCompilationConfig, args: BuildArgs, verbose: bool) -> anyhow::Result<ExitCode> {
    if let Some(jobs) = args.jobs {
        anyhow::ensure!(jobs > 0, "--jobs must be at least 1");
        config.max_parallel_jobs = jobs;
    }
    if let Some(timeout) = args.timeout {
        anyhow::ensure!(timeout > 0, "--timeout must be at least 1 second");
        config.compilation_timeout_secs = timeout;
    }
    if args.no_cache {
        config.binary_cache = false;
    }
    if args.self_contained {
        config.self_contained = true;
    }
    if let Some(linking) = args.c_libraries {
        config.c_libraries = linking;
    }
    if let Some(executor) = args.executor {
        config.executor = executor;
    }
    if !args.substitutes.is_empty() {
        config.substitutes.extend(args.substitutes.iter().cloned());
        config.validate().map_err(|error| anyhow::anyhow!("--substitute: {error}"))?;
    }
    // One inventory describes both the hosts to build for and, in its
    // `build_agents` group (fleet.inventory_group), the agents to build on.
    let inventory = match &args.inventory {
        Some(path) => {
            let parsed = ParsedInventory::load(path)?;
            super::fleet::add_inventory_agents(&mut config, path, &parsed)?;
            Some((path, parsed))
        }
        None => None,
    };
    let manager = CrossCompilationManager::new(config)?;
    let toolchains = manager.setup_environment().await?;
    let source = TemplateSource::Dir(args.template.clone());
    let optimization = args.optimization();

    let mut plan = None;
    let targets = if let Some((inventory, parsed)) = inventory {
        let detected = super::detect::plan(&manager, inventory, parsed, &args.inventory_options).await?;
        if let Some(refusal) = super::detect::refuse_empty(&detected, inventory, &args.inventory_options) {
            eprintln!("error: {refusal}");
            return Ok(ExitCode::from(1));
        }
        if detected.evidence.is_empty() && detected.unresolved.is_empty() {
            // --allow-empty: nothing to build, and a manifest that says so.
            std::fs::create_dir_all(&args.out).with_context(|| format!("failed to create {}", args.out.display()))?;
            write_manifest(&args.out, &detected, &[])?;
            eprintln!("inventory {} has no hosts: nothing to build", inventory.display());
            return Ok(ExitCode::SUCCESS);
        }
        if !super::detect::accept(&detected, &args.inventory_options) {
            eprintln!("{}", detected.render_table());
            anyhow::bail!(
                "{} host(s) in {} have no target; fix them or pass --allow-unresolved",
                detected.unresolved.len(),
                inventory.display()
            );
        }
        let targets = detected.targets.clone();
        plan = Some(detected);
        targets
    } else if args.all_available {
        let reports = super::targets::reports(&manager, &[]).await?;
        let (available, skipped): (Vec<_>, Vec<_>) = reports.into_iter().partition(|r| r.is_buildable());
        if !args.json {
            for r in &skipped {
                eprintln!("skipping {}: not buildable here (see `rustle-cross targets`)", r.target);
            }
        }
        available.into_iter().map(|r| r.target).collect()
    } else if args.targets.is_empty() {
        let host = toolchains.first().map_or("x86_64-unknown-linux-gnu", |t| t.host.as_str());
        vec![manager.config().target(host)?]
    } else {
        args.targets.iter().map(|t| manager.config().target(t)).collect::<Result<Vec<_>, _>>()?
    };
    anyhow::ensure!(
        !targets.is_empty(),
        "no target can be built here; run `rustle-cross targets` to see what is missing"
    );

    if args.print_command {
        for target in &targets {
            let cmd = manager.cargo_command(&source, target, &optimization).await?;
            println!("# {target}");
            for (k, v) in cmd.get_envs() {
                println!("{}={} \\", k.to_string_lossy(), shell_quote(&v.to_string_lossy()));
            }
            let args: Vec<String> = cmd.get_args().iter().map(|a| shell_quote(&a.to_string_lossy())).collect();
            println!("{} {}", cmd.program().display(), args.join(" "));
        }
        return Ok(ExitCode::SUCCESS);
    }

    let progress = Progress::for_stderr(args.quiet);
    progress.queued(&targets);
    let building = manager.build(&source, &targets, &optimization, Some(progress.sink()));
    let outcomes = tokio::select! {
        outcomes = building => outcomes,
        _ = interrupted() => {
            // The builds are dropped: their cargo process groups are killed
            // and their containers removed; the fleet's agents hear it.
            progress.clear();
            manager.shutdown().await;
            eprintln!("interrupted: the builds were stopped and their containers removed");
            return Ok(ExitCode::from(130));
        }
    };
    let outcomes = match outcomes {
        Ok(outcomes) => outcomes,
        Err(e) if e.is_compile_failure() => {
            progress.clear();
            return Err(anyhow::Error::new(e).context(format!("cannot build template {}", args.template.display())));
        }
        Err(e) => return Err(e.into()),
    };
    progress.clear();
    // One fleet per run: its agents hear at once that this run is done.
    manager.shutdown().await;

    std::fs::create_dir_all(&args.out).with_context(|| format!("failed to create {}", args.out.display()))?;
    let mut rows = Vec::new();
    for outcome in &outcomes {
        let written = match &outcome.result {
            Ok(binary) => Some(write_binary(&args.out, binary)?),
            Err(_) => None,
        };
        let smoke = match (&outcome.result, &written, args.smoke_test) {
            (Ok(_), Some(path), true) => Some(smoke_test(&manager, &outcome.target, path).await),
            _ => None,
        };
        rows.push((outcome, written, smoke));
    }

    if let Some(plan) = &plan {
        write_manifest(&args.out, plan, &rows)?;
    }
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    if args.json {
        let results: Vec<_> =
            rows.iter().map(|(o, path, smoke)| result_json(o, path.as_deref(), smoke.as_ref())).collect();
        println!("{}", serde_json::to_string_pretty(&json!({ "results": results, "failed": failed }))?);
    } else {
        print_summary(&rows);
        if verbose {
            print_decisions(&outcomes);
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `FROM=TO` of `--substitute`.
fn parse_substitute(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => {
            Ok((from.trim().to_owned(), to.trim().to_owned()))
        }
        _ => Err(format!("`{text}` is not FROM=TO (e.g. x86_64-pc-windows-msvc=x86_64-pc-windows-gnu)")),
    }
}

/// Writes `NAME-TRIPLE[.exe]` and `NAME-TRIPLE[.exe].sha256` (sha256sum format).
fn write_binary(out: &Path, binary: &CompiledBinary) -> anyhow::Result<PathBuf> {
    let stem = binary.file_name.strip_suffix(binary.target.exe_suffix()).unwrap_or(&binary.file_name);
    let name = format!("{stem}-{}{}", binary.target.triple_with_floor(), binary.target.exe_suffix());
    let path = out.join(&name);
    let tmp = out.join(format!(".{name}.partial"));
    std::fs::write(&tmp, &binary.binary_data).with_context(|| format!("failed to write {}", tmp.display()))?;
    std::os::unix::fs::PermissionsExt::set_mode(&mut std::fs::metadata(&tmp)?.permissions(), 0o755);
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("failed to write {}", path.display()))?;
    std::fs::write(out.join(format!("{name}.sha256")), format!("{}  {name}\n", binary.checksum))?;
    Ok(path)
}

/// Writes `manifest.json`: which binary each inventory host gets.
fn write_manifest(out: &Path, plan: &TargetPlan, rows: &[Row<'_>]) -> anyhow::Result<()> {
    let mut hosts = Vec::new();
    for host in plan.evidence.keys() {
        let Some(target) = plan.target_for_host(host) else { continue };
        let name = target.to_string();
        // The host's own target's binary, or the substitute built for it.
        let Some((outcome, file, _)) = rows.iter().find(|(o, _, _)| match &o.substitute_for {
            Some(substitution) => substitution.requested == name,
            None => o.target.to_string() == name,
        }) else {
            continue;
        };
        let mut entry = json!({ "host": host, "triple": outcome.target.to_string() });
        if let Some(substitution) = &outcome.substitute_for {
            entry["requested_triple"] = json!(name);
            entry["substitute_for"] = json!(substitution);
        }
        match (&outcome.result, file) {
            (Ok(binary), Some(file)) => {
                entry["file"] = json!(file);
                entry["sha256"] = json!(binary.checksum);
            }
            (Err(e), _) => entry["error"] = json!(e.to_string()),
            (Ok(_), None) => {}
        }
        hosts.push(entry);
    }
    let unresolved: serde_json::Map<String, serde_json::Value> =
        plan.unresolved.iter().map(|(h, e)| (h.clone(), json!(e.to_string()))).collect();
    let path = out.join("manifest.json");
    let text = serde_json::to_string_pretty(&json!({ "hosts": hosts, "unresolved": unresolved }))?;
    std::fs::write(&path, text).with_context(|| format!("failed to write {}", path.display()))
}

/// One target's line in the results: outcome, written file, smoke test.
type Row<'a> = (&'a TargetOutcome, Option<PathBuf>, Option<SmokeResult>);

/// The result of running a binary here: passed, failed, or not runnable
/// on this machine (macOS binaries on Linux).
struct SmokeResult {
    ok: Option<bool>,
    detail: String,
}

impl SmokeResult {
    fn label(&self) -> &'static str {
        match self.ok {
            Some(true) => "ok",
            Some(false) => "FAILED",
            None => "not run",
        }
    }
}

async fn smoke_test(manager: &CrossCompilationManager, target: &TargetSpecification, binary: &Path) -> SmokeResult {
    match run_binary(&target.target(), binary, &[], manager.cache_dir(), Duration::from_secs(120)).await {
        Ok(out) if out.status.success() => {
            SmokeResult { ok: Some(true), detail: out.stdout_text().lines().next().unwrap_or_default().to_owned() }
        }
        Ok(out) => SmokeResult { ok: Some(false), detail: format!("{}: {}", out.status, out.stderr_text().trim()) },
        Err(e @ RunnerError::Unsupported { .. }) => SmokeResult { ok: None, detail: e.to_string() },
        Err(e) => SmokeResult { ok: Some(false), detail: e.to_string() },
    }
}

fn status(result: &Result<CompiledBinary, CompilationError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) if e.is_compile_failure() => "compile-failed",
        Err(CompilationError::Target { kind: TargetFailure::Unavailable { .. }, .. }) => "unavailable",
        Err(_) => "failed",
    }
}

fn result_json(outcome: &TargetOutcome, path: Option<&Path>, smoke: Option<&SmokeResult>) -> serde_json::Value {
    let mut value = json!({
        "target": outcome.target.to_string(),
        "status": status(&outcome.result),
        "executor": outcome.executor,
        "decisions": outcome.decisions,
        "passed_over": outcome.passed_over,
    });
    if let Some(substitution) = &outcome.substitute_for {
        value["substitute_for"] = json!(substitution);
    }
    match &outcome.result {
        Ok(b) => {
            value["file"] = json!(path);
            value["size"] = json!(b.size);
            value["sha256"] = json!(b.checksum);
            value["compilation_time_secs"] = json!(b.compilation_time.as_secs_f64());
            value["validation"] = json!(b.validation);
            value["metadata"] = json!(b.metadata);
            value["cached"] = json!(b.cached);
        }
        Err(e) => value["error"] = json!(e.to_string()),
    }
    if let Some(s) = smoke {
        value["smoke_test"] = json!({ "result": s.label(), "output": s.detail });
    }
    value
}

fn print_summary(rows: &[Row<'_>]) {
    let with_smoke = rows.iter().any(|r| r.2.is_some());
    let mut header = vec!["TARGET", "STATUS", "BUILT ON", "SIZE", "TIME", "SHA256", "VALIDATION"];
    if with_smoke {
        header.push("RUN");
    }
    let mut table = Table::new(&header);
    let mut errors = Vec::new();
    for (outcome, _, smoke) in rows {
        let mut row = vec![
            match &outcome.substitute_for {
                Some(substitution) => format!("{} (for {})", outcome.target, substitution.requested),
                None => outcome.target.to_string(),
            },
            status(&outcome.result).to_owned(),
            match (&outcome.executor, &outcome.result) {
                (_, Ok(CompiledBinary { cached: Some(hit), .. })) => format!("cached ({})", hit.store),
                (None, _) => "-".to_owned(),
                // This machine's toolchains: no fleet, or the fleet's last resort.
                (Some(executor), _) if *executor == local_executor() => "this machine".to_owned(),
                (Some(executor), _) if *executor == docker_executor() => "docker".to_owned(),
                (Some(executor), _) => executor.to_string(),
            },
        ];
        match &outcome.result {
            Ok(b) => {
                row.push(human_size(b.size));
                row.push(format!("{:.1}s", b.compilation_time.as_secs_f64()));
                row.push(b.checksum[..16].to_owned());
                row.push(describe_validation(&b.validation));
            }
            Err(e) => {
                row.extend(["-", "-", "-", "-"].map(str::to_owned));
                errors.push(e.to_string());
            }
        }
        if with_smoke {
            row.push(smoke.as_ref().map_or_else(|| "-".into(), |s| format!("{} {}", s.label(), s.detail)));
        }
        table.row(row);
    }
    println!("{}", table.render());
    // What happened on the way: always said, not only with -v.
    for (outcome, _, _) in rows {
        if let Some(substitution) = &outcome.substitute_for {
            eprintln!(
                "note: {}: built instead of {} (its configured substitute), which no executor can build: {}",
                outcome.target, substitution.requested, substitution.reason
            );
        }
        for reason in &outcome.passed_over {
            eprintln!("note: {}: passed over {reason}", outcome.target);
        }
        // What each C library was linked from, and how.
        if let Ok(binary) = &outcome.result {
            for line in &binary.metadata.c_libraries {
                eprintln!("note: {}: {line}", outcome.target);
            }
        }
    }
    for e in errors {
        eprintln!("\nerror: {e}");
    }
}

/// Ctrl-C (and SIGTERM on Unix).
#[cfg(not(unix))]
async fn interrupted() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Ctrl-C (and SIGTERM on Unix).
#[cfg(unix)]
async fn interrupted() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Why each target went where it did (the scheduler's decisions, the
/// executors passed over), for `-v`.
fn print_decisions(outcomes: &[TargetOutcome]) {
    for outcome in outcomes {
        if outcome.decisions.is_empty() && outcome.passed_over.is_empty() {
            continue;
        }
        println!("\n{}:", outcome.target);
        for reason in &outcome.passed_over {
            println!("  passed over {reason}");
        }
        for decision in &outcome.decisions {
            println!("  {}", decision.to_string().replace('\n', "\n  "));
        }
    }
}

/// `ELF aarch64 64-bit, glibc >= 2.34`, then the libraries outside the
/// base system: `, needs libz.so.1 (not in the base system)`.
fn describe_validation(v: &BinaryReport) -> String {
    let glibc = v.max_glibc.map(|g| format!(", glibc >= {g}")).unwrap_or_default();
    let outside = match v.outside_base_system.as_slice() {
        [] => String::new(),
        libraries => format!(", needs {} (not in the base system)", libraries.join(", ")),
    };
    format!("{} {} {}-bit{glibc}{outside}", v.format, v.machine, v.bits)
}

fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Build progress on stderr, in the form stderr can show: bars on a
/// terminal, plain lines ([`ProgressLog`]) anywhere else (CI, `| tee`, a
/// caller's log), nothing with `--quiet`.
enum Progress {
    /// A terminal: live bars.
    Bars(ProgressBars),
    /// Not a terminal: one line per target per stage, timed from the run's start.
    Lines { log: Arc<Mutex<ProgressLog>>, start: Instant },
    /// `--quiet`.
    Silent,
}

impl Progress {
    fn for_stderr(quiet: bool) -> Self {
        if quiet {
            Self::Silent
        } else if std::io::stderr().is_terminal() {
            Self::Bars(ProgressBars::new())
        } else {
            Self::Lines {
                log: Arc::new(Mutex::new(ProgressLog::new(DEFAULT_COMPILING_INTERVAL))),
                start: Instant::now(),
            }
        }
    }

    /// Every target waits until its build starts: each its `queued` line.
    fn queued(&self, targets: &[TargetSpecification]) {
        let Self::Lines { log, start } = self else { return };
        let Ok(mut log) = log.lock() else { return };
        for target in targets {
            eprintln!("{}", log.queued(&target.to_string(), start.elapsed()));
        }
    }

    fn sink(&self) -> ProgressSink {
        match self {
            Self::Bars(bars) => bars.sink(),
            Self::Lines { log, start } => {
                let (log, start) = (log.clone(), *start);
                Arc::new(move |event| {
                    let Ok(mut log) = log.lock() else { return };
                    if let Some(line) = log.handle(&event, start.elapsed()) {
                        eprintln!("{line}");
                    }
                })
            }
            Self::Silent => Arc::new(|_| {}),
        }
    }

    fn clear(&self) {
        if let Self::Bars(bars) = self {
            bars.clear();
        }
    }
}

/// One progress bar per target, fed by cargo's messages.
struct ProgressBars {
    multi: MultiProgress,
    bars: Arc<Mutex<HashMap<String, ProgressBar>>>,
}

impl ProgressBars {
    fn new() -> Self {
        Self { multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()), bars: Arc::default() }
    }
    fn sink(&self) -> ProgressSink {
        let multi = self.multi.clone();
        let bars = self.bars.clone();
        let style = ProgressStyle::with_template("{prefix:>32} [{bar:30}] {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        Arc::new(move |event| {
            let Ok(mut bars) = bars.lock() else { return };
            match event {
                BuildEvent::Started { triple, expected_units } => {
                    let bar = multi
                        .add(ProgressBar::new(expected_units).with_style(style.clone()).with_prefix(triple.clone()));
                    bars.insert(triple, bar);
                }
                BuildEvent::Progress { triple, done, total, unit } => {
                    if let Some(bar) = bars.get(&triple) {
                        bar.set_length(total);
                        bar.set_position(done);
                        bar.set_message(unit);
                    }
                }
                // cargo's own lines: the summary reports errors; warnings
                // stay in the target's log. How a target ended: the summary.
                BuildEvent::Log { .. } | BuildEvent::Finished { .. } => {}
                BuildEvent::Note { triple, line } => {
                    let _ = multi.println(format!("{triple}: {line}"));
                }
            }
        })
    }

    fn clear(&self) {
        if let Ok(bars) = self.bars.lock() {
            for bar in bars.values() {
                bar.finish_and_clear();
            }
        }
        let _ = self.multi.clear();
    }
}
