//! The real `rustle-agent`'s log lines: plain text when stderr is a pipe or
//! a log file, coloured on a terminal (a pty from util-linux `script`, part
//! of every Debian) unless NO_COLOR is set.

mod common;

use std::path::Path;
use std::process::Command;

const AGENT_BIN: &str = env!("CARGO_BIN_EXE_rustle-agent");

/// A config for an agent on loopback port 0.
fn config(dir: &Path) -> std::path::PathBuf {
    let files = common::fleet().agent.write_to(&dir.join("certs"), "agent").expect("certificates");
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nca = {:?}\ncert = {:?}\nkey = {:?}\nwork_dir = {:?}\nagent_id = \"{}\"\n",
            files.ca.display().to_string(),
            files.cert.display().to_string(),
            files.key.display().to_string(),
            dir.join("work").display().to_string(),
            common::AGENT,
        ),
    )
    .expect("config");
    config
}

/// Runs the agent for two seconds (then SIGTERM, which it handles by
/// shutting down) through `sh -c`, under a pty when `terminal`; returns what
/// it wrote to stderr.
fn agent_output(config: &Path, terminal: bool, no_color: Option<&str>) -> String {
    let agent = format!("timeout -s TERM 2 {AGENT_BIN} --config {}", config.display());
    let mut command = if terminal {
        let mut script = Command::new("script");
        script.args(["-q", "-e", "-c", &agent, "/dev/null"]);
        script
    } else {
        let mut sh = Command::new("sh");
        sh.args(["-c", &format!("{agent} 2>&1")]);
        sh
    };
    command.env_remove("NO_COLOR").env("RUST_LOG", "info");
    if let Some(value) = no_color {
        command.env("NO_COLOR", value);
    }
    let out = command.output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("--- terminal={terminal} NO_COLOR={no_color:?}\n{text}");
    assert!(text.contains("INFO") && text.contains("rustle-agent listening on"), "a log line to check: {text}");
    text
}

#[test]
fn log_lines_are_coloured_only_on_a_terminal_without_no_color() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    assert!(!agent_output(&config, false, None).contains('\u{1b}'), "a pipe gets plain text");
    assert!(agent_output(&config, true, None).contains("\u{1b}["), "a terminal gets colour");
    assert!(!agent_output(&config, true, Some("1")).contains('\u{1b}'), "NO_COLOR=1 turns it off");
}
