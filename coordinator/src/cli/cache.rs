//! `rustle-cross cache`: the binary cache's key for a build (and what it is made of), and its entries: stats, list, prune, clear.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use rustle_cross::build::TemplateSource;
use rustle_cross::targets::{CompilationOptimization, TargetSpecification};
use rustle_cross::{CrossCompilationConfig, CrossCompilationManager};

use super::table::Table;

/// Arguments of `rustle-cross cache`.
#[derive(Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    command: CacheCommand,
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Print the key a build would be cached under, and its inputs (to
    /// explain a surprising miss).
    Key {
        /// The template: a directory with a Cargo.toml.
        template: PathBuf,
        /// The target (a triple, `TRIPLE.2.17`, or a target-spec JSON file).
        #[arg(long = "target", short = 't')]
        target: String,
    },
    /// Entries, distinct binaries and bytes; whether the shared store answers.
    Stats,
    /// Every entry, most recently used first.
    List,
    /// Remove least recently used entries until the binaries fit in --max-mb.
    Prune {
        /// The size to keep, in MiB (default: binary_cache_max_mb).
        #[arg(long)]
        max_mb: Option<u64>,
    },
    /// Remove every entry and binary.
    Clear,
}

/// Runs the command.
pub async fn run(config: CrossCompilationConfig, args: CacheArgs) -> anyhow::Result<ExitCode> {
    let (max_mb, max_bytes) = (config.binary_cache_max_mb, config.binary_cache_max_bytes());
    let manager = CrossCompilationManager::new(config)?;
    let cache = manager.binary_cache();
    match args.command {
        CacheCommand::Key { template, target } => {
            let target = TargetSpecification::from_triple(&target)?;
            let source = TemplateSource::Dir(template);
            let inputs = manager.cache_key(&source, &target, &CompilationOptimization::default()).await?;
            println!("{}", inputs.key());
            println!("{}", serde_json::to_string_pretty(&inputs)?);
        }
        CacheCommand::Stats => {
            let stats = cache.stats();
            println!(
                "{}: {} entries, {} binaries, {:.1} MiB (cap {max_mb} MiB)",
                cache.root().display(),
                stats.entries,
                stats.blobs,
                stats.bytes as f64 / (1024.0 * 1024.0)
            );
            if let Some(shared) = manager.shared_cache() {
                match shared.probe().await {
                    Ok(()) => println!("shared: {} (answers)", shared.name()),
                    Err(reason) => println!("shared: {} (unavailable: {reason})", shared.name()),
                }
            }
        }
        CacheCommand::List => {
            let mut table = Table::new(&["KEY", "TARGET", "SIZE", "BUILT BY", "SHA256"]);
            for (entry, _) in cache.list() {
                table.row(vec![
                    entry.key.0[..16].to_owned(),
                    entry.inputs.target.clone(),
                    entry.size.to_string(),
                    entry.built_by.clone(),
                    entry.checksum[..16].to_owned(),
                ]);
            }
            println!("{}", table.render());
        }
        CacheCommand::Prune { max_mb: keep } => {
            let removed = cache.prune(keep.map_or(max_bytes, |mb| mb.saturating_mul(1024 * 1024)))?;
            println!("removed {removed} entries from {}", cache.root().display());
        }
        CacheCommand::Clear => {
            cache.clear()?;
            println!("cleared {}", cache.root().display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
