//! The build engine of rustle-cross, shared by the coordinator's local
//! executor and the agent: toolchain discovery, per-target cargo builds and
//! validation of the binaries they produce.

pub mod bundle;
pub mod engine;
pub mod runner;
pub mod template;
pub mod toolchain;
pub mod validate;
