//! What can go wrong with Docker, each with its cause and the way out.

use std::time::Duration;

/// A Docker build environment that cannot be had or used.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// No daemon answers (not running, socket missing or not readable).
    #[error(
        "no Docker daemon answers at {host}: {reason}; start one (scripts/start-dockerd.sh prints the DOCKER_HOST to use), or point DOCKER_HOST (or docker_host) at a running daemon"
    )]
    DaemonUnavailable {
        /// The address tried.
        host: String,
        /// What failed.
        reason: String,
    },
    /// No image supports the target.
    #[error(
        "no Docker build image supports {target} (images for: {known}); build on the fleet or with this machine's toolchains, or name an image in [cross_compilation.docker_images]"
    )]
    NoImageForTarget {
        /// The target.
        target: String,
        /// The targets the known images support.
        known: String,
    },
    /// The base rootfs could not be made.
    #[error("cannot make the base image's rootfs ({step}): {reason}")]
    BaseRootfs {
        /// The step (debootstrap, tar, import).
        step: &'static str,
        /// What failed, and what to do.
        reason: String,
    },
    /// An image build failed.
    #[error("building image {image} failed: {reason}")]
    ImageBuild {
        /// The image.
        image: String,
        /// Docker's message (the failing step's output).
        reason: String,
    },
    /// A pull from a registry failed or took too long.
    #[error("pulling {image} failed: {reason}")]
    Pull {
        /// The image reference.
        image: String,
        /// Why.
        reason: String,
    },
    /// A Docker API call failed.
    #[error("Docker {action} failed: {reason}")]
    Api {
        /// What was asked.
        action: String,
        /// The daemon's answer.
        reason: String,
    },
    /// A container took longer than its deadline and was removed.
    #[error("the build container exceeded its deadline of {}s and was killed and removed", .0.as_secs())]
    Timeout(Duration),
    /// The program that builds inside containers cannot be found.
    #[error(
        "cannot find the rustle-cross binary that builds inside the container ({0}); set RUSTLE_CONTAINER_BUILDER to a rustle-cross executable"
    )]
    NoBuilder(String),
}

impl DockerError {
    /// An API error for `action`.
    pub(crate) fn api(action: impl Into<String>, error: impl std::fmt::Display) -> Self {
        Self::Api { action: action.into(), reason: error.to_string() }
    }
}
