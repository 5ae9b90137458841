//! The build engine of rustle-cross, shared by the coordinator's local
//! executor and the agent: toolchain discovery, per-target cargo builds,
//! validation of the binaries they produce, and the binary cache.

pub mod bundle;
pub mod c_dependencies;
pub mod c_library_source;
pub mod cache;
pub mod engine;
pub mod file_lock;
pub mod runner;
pub mod shared_cache;
pub mod std_sysroot;
pub mod template;
pub mod toolchain;
pub mod validate;
