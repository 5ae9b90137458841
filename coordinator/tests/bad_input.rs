//! Bad input through the real `rustle-cross`, as a new user meets it: each
//! error names the thing (file and line, key, template, agent) once, with
//! the way out; an empty inventory is refused; an agent that refuses the TLS
//! handshake is not "unreachable"; logs carry no ANSI escapes off a
//! terminal. Nothing here needs a cross toolchain.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::{rustle_cross, stderr};
use rustle_transport::{AgentListener, AllowedCoordinators, CertBundle, FleetCa};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_inventory_that_is_not_utf8_is_named_once_with_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inventory = dir.path().join("hosts.ini");
    std::fs::write(&inventory, b"[web]\nw1\nw\xe92\n").expect("write");
    let out = rustle_cross(&["detect", "-i", s(&inventory)]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(&format!("{}:3:2: byte 0xe9 is not UTF-8", inventory.display())), "{err}");
    assert!(err.contains("iconv"), "{err}");
    assert_eq!(err.matches("UTF-8;").count(), 1, "said once: {err}");
    assert!(!err.contains("stream did not contain valid UTF-8"), "{err}");
}

#[test]
fn inventory_shape_errors_name_the_key_and_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("inventory.json");
    std::fs::write(&json, "{\n  \"_meta\": {\"hostvars\": {}},\n  \"web\": {\"hosts\": \"h1\"}\n}\n").expect("write");
    let out = rustle_cross(&["detect", "-i", s(&json)]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(&format!("{}:3", json.display())), "{err}");
    assert!(err.contains("`web.hosts` is a string (\"h1\"), expected a list of host names"), "{err}");
    assert!(!err.contains("untagged enum"), "{err}");

    let yaml = dir.path().join("hosts.yml");
    std::fs::write(&yaml, "all:\n  children:\n    - web\n").expect("write");
    let out = rustle_cross(&["detect", "-i", s(&yaml)]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(&format!("{}:3", yaml.display())), "{err}");
    assert!(err.contains("`all.children` is a list") && err.contains("write `- web` as `web:`"), "{err}");
    assert!(!err.contains("expected mapping start"), "{err}");
}

#[test]
fn an_empty_inventory_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inventory = dir.path().join("hosts.ini");
    std::fs::write(&inventory, "# nothing yet\n[web]\n").expect("write");

    let out = rustle_cross(&["detect", "-i", s(&inventory)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("inventory {} has no hosts", inventory.display())), "{err}");
    assert!(err.contains("--allow-empty"), "{err}");
    let out = rustle_cross(&["detect", "-i", s(&inventory), "--allow-empty"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("no hosts"), "{}", stdout(&out));

    // build --inventory: refused before anything is built; allowed, it
    // writes a manifest without hosts.
    let template = dir.path().join("no-template-needed");
    let out_dir = dir.path().join("out");
    let out = rustle_cross(&["build", s(&template), "--inventory", s(&inventory), "--out", s(&out_dir)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("has no hosts"), "{}", stderr(&out));
    assert!(!out_dir.join("manifest.json").exists());
    let out =
        rustle_cross(&["build", s(&template), "--inventory", s(&inventory), "--out", s(&out_dir), "--allow-empty"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).expect("manifest")).expect("json");
    assert_eq!(manifest, serde_json::json!({ "hosts": [], "unresolved": {} }));
}

#[test]
fn a_template_path_that_is_missing_or_a_file_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope");
    let out = rustle_cross(&["build", s(&missing), "--print-command"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(&format!("template {} does not exist", missing.display())), "{err}");
    assert!(!err.contains("has no Cargo.toml"), "{err}");

    let manifest = dir.path().join("Cargo.toml");
    std::fs::write(&manifest, "[package]\nname = \"x\"\nversion = \"0.1.0\"\n").expect("write");
    let out = rustle_cross(&["build", s(&manifest), "--print-command"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("is a file, not a directory"), "{err}");
    assert!(err.contains(&format!("(here: {})", dir.path().display())), "{err}");
}

/// Serves the TLS handshake with `bundle` on loopback until the test ends.
fn serve_handshakes(bundle: &CertBundle) -> SocketAddr {
    let (listener, addr) =
        AgentListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), bundle, AllowedCoordinators::AnyFromFleetCa)
            .expect("listener binds");
    tokio::spawn(async move {
        while let Some(incoming) = listener.accept().await {
            tokio::spawn(async move {
                // Refused one way or the other: the coordinator reports it.
                let _ = incoming.authenticate().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_status_tells_a_refused_handshake_from_an_unreachable_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet = FleetCa::generate().expect("fleet CA");
    let other = FleetCa::generate().expect("another CA");
    let loopback = ["127.0.0.1".to_owned()];
    // Its certificate is from another CA: we refuse it.
    let stranger = serve_handshakes(&other.issue_agent("stranger", &loopback).expect("issue"));
    // Its certificate is ours, but it trusts another CA: it refuses ours.
    let picky_bundle =
        CertBundle { ca_pem: other.cert_pem().to_owned(), ..fleet.issue_agent("picky", &loopback).expect("issue") };
    let picky = serve_handshakes(&picky_bundle);
    // A socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let gone = silent.local_addr().expect("addr");

    let files = fleet.issue_coordinator("ci").expect("issue").write_to(dir.path(), "ci").expect("write");
    let config = dir.path().join("rustle-cross.toml");
    std::fs::write(
        &config,
        format!(
            "[cross_compilation.fleet]\nagents = [{{ name = \"stranger\", address = \"{stranger}\" }}, \
             {{ name = \"picky\", address = \"{picky}\" }}, {{ name = \"gone\", address = \"{gone}\" }}]\n\
             ca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\nconnect_timeout_secs = 3\n",
            s(&files.ca),
            s(&files.cert),
            s(&files.key)
        ),
    )
    .expect("config");

    let config_arg = config.clone();
    let out = tokio::task::spawn_blocking(move || rustle_cross(&["--config", s(&config_arg), "fleet", "status"]))
        .await
        .expect("rustle-cross ran");
    drop(silent);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let table = stdout(&out);
    let row = |name: &str| {
        table.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no row for {name}:\n{table}")).to_owned()
    };
    assert!(row("stranger").contains("certificate not from the fleet CA"), "{table}");
    assert!(row("picky").contains("refused our certificate"), "{table}");
    assert!(row("gone").contains("unreachable"), "{table}");

    let err = stderr(&out);
    for (name, says) in [
        ("stranger", "it is not signed by the fleet CA the coordinator trusts"),
        ("picky", "rejected our certificate"),
        // No answer to the dial, or no report after it: either way within the bound.
        ("gone", "within 3s"),
    ] {
        let line = err
            .lines()
            .find(|l| l.starts_with("error: ") && l.contains(&format!("agent {name} ")))
            .unwrap_or_else(|| panic!("no error line for {name}:\n{err}"));
        assert!(line.contains(says), "{line}");
        assert_eq!(line.matches(&format!("agent {name} at")).count(), 1, "named once: {line}");
        assert!(!line.contains(&format!("agent {name}: agent {name}")), "{line}");
    }
    // The session's warnings go to a pipe here: plain text.
    assert!(err.contains("WARN"), "a log line to check: {err}");
    assert!(!err.contains('\u{1b}'), "ANSI escapes in a log that is not a terminal: {err:?}");
}

/// A config with one agent that never answers, so the run logs a warning.
fn config_with_a_silent_agent(dir: &Path, silent: SocketAddr) -> std::path::PathBuf {
    let fleet = FleetCa::generate().expect("fleet CA");
    let files = fleet.issue_coordinator("ci").expect("issue").write_to(dir, "ci").expect("write");
    let config = dir.join("rustle-cross.toml");
    std::fs::write(
        &config,
        format!(
            "[cross_compilation.fleet]\nagents = [{{ name = \"gone\", address = \"{silent}\" }}]\n\
             ca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\nconnect_timeout_secs = 1\n",
            s(&files.ca),
            s(&files.cert),
            s(&files.key)
        ),
    )
    .expect("config");
    config
}

/// On a terminal (a pty from util-linux `script`, part of every Debian)
/// log lines are coloured, unless NO_COLOR is set.
#[test]
fn log_colour_only_on_a_terminal_and_not_with_no_color() {
    let dir = tempfile::tempdir().expect("tempdir");
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let config = config_with_a_silent_agent(dir.path(), silent.local_addr().expect("addr"));
    let command = format!("{} --config {} fleet status", env!("CARGO_BIN_EXE_rustle-cross"), s(&config));
    let on_a_terminal = |no_color: Option<&str>| {
        let mut script = std::process::Command::new("script");
        script.args(["-q", "-e", "-c", &command, "/dev/null"]).env_remove("NO_COLOR");
        if let Some(value) = no_color {
            script.env("NO_COLOR", value);
        }
        let out = script.output().expect("script runs");
        let text = stdout(&out);
        eprintln!("--- NO_COLOR={no_color:?}\n{text}");
        assert!(text.contains("WARN"), "a log line to check: {text}");
        text
    };
    assert!(on_a_terminal(None).contains("\u{1b}["), "a terminal gets colour");
    assert!(!on_a_terminal(Some("1")).contains('\u{1b}'), "NO_COLOR=1 turns it off");
    // NO_COLOR set but empty does not count (https://no-color.org).
    assert!(on_a_terminal(Some("")).contains("\u{1b}["));
    drop(silent);
}
