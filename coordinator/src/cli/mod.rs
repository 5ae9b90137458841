//! The CLI's subcommands, one file each, and the plain-text table they share.

pub mod build;
pub mod ca;
pub mod cache;
pub mod detect;
pub mod doctor;
pub mod fleet;
pub mod images;
pub mod table;
pub mod targets;
