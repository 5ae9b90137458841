//! `rustle-cross images`: the Docker build images (list, with the targets
//! each supports and its rustc; build them ahead of a deploy; prune the
//! ones no current recipe makes).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use rustle_cross::{CrossCompilationConfig, CrossCompilationManager};

use super::table::Table;

/// Arguments of `rustle-cross images`.
#[derive(Args)]
pub struct ImagesArgs {
    #[command(subcommand)]
    command: Option<ImagesCommand>,
}

#[derive(Subcommand)]
enum ImagesCommand {
    /// Every build image the daemon has, with its targets and rustc (the default).
    List,
    /// Build (or pull from docker_registry) every image family, base rootfs
    /// first, so the first Docker build of a deploy starts at once.
    Build,
    /// Remove build images no current recipe makes (older tags), and every
    /// stopped rustle-cross container.
    Prune,
}

/// Runs the command.
pub async fn run(config: CrossCompilationConfig, args: ImagesArgs) -> anyhow::Result<ExitCode> {
    let manager = CrossCompilationManager::new(config)?;
    let docker = manager.docker().await.map_err(anyhow::Error::msg)?;
    match args.command.unwrap_or(ImagesCommand::List) {
        ImagesCommand::List => {
            let registry = docker.image_registry().await?;
            if registry.images.is_empty() {
                println!("no build images yet at {}; `rustle-cross images build` makes them", docker.host());
                return Ok(ExitCode::SUCCESS);
            }
            let current = docker.current_references();
            let mut table = Table::new(&["IMAGE", "TARGETS", "RUSTC", "CURRENT"]);
            for image in &registry.images {
                let reference = image.reference();
                let is_current = if current.contains(&reference) { "yes" } else { "no (prune removes it)" };
                table.row(vec![
                    reference,
                    image.supported_targets.join(" "),
                    image.toolchain_version.clone(),
                    is_current.to_owned(),
                ]);
            }
            println!("{}", table.render());
        }
        ImagesCommand::Build => {
            let images = docker.build_images(&|line| eprintln!("{line}")).await?;
            for image in images {
                println!("{}  {}  ({})", image.reference(), image.supported_targets.join(" "), image.toolchain_version);
            }
        }
        ImagesCommand::Prune => {
            for removed in docker.prune().await? {
                println!("removed {removed}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
