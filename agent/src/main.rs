//! rustle-agent daemon.
fn main() {}
