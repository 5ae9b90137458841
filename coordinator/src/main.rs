//! rustle-cross CLI.
fn main() {}
