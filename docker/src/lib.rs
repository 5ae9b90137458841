//! Docker build environments for rustle-cross (the only crate that talks to
//! Docker): images built without a registry from a debootstrap rootfs (or
//! pulled from one), hermetic container builds that run the same engine as
//! every other executor, and the clean-up of what containers leave.
//!
//! A build in Docker: [`DockerCompilationManager::build`] finds the image
//! for the target ([`images`]), keeps one container per (target, image)
//! running with no network ([`container`]), uploads the template as a
//! source bundle, fetches dependencies in a networked one-off container
//! when the lock file changed, runs `rustle-cross __docker-build build`
//! ([`in_container`]) through exec, and validates the binary it downloads
//! exactly like a local one.

pub mod container;
pub mod error;
pub mod images;
pub mod in_container;
pub mod manager;
pub mod wire;

pub use container::{CompilationEnvironment, ContainerLimits};
pub use error::DockerError;
pub use images::{DockerImage, FAMILIES, ImageFamily, ImageRegistry};
pub use manager::{DockerCompilationManager, DockerSettings};
