//! Helpers shared by the detect crate's integration tests.

pub mod large_inventory;
