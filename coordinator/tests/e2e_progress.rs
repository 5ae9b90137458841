//! The real CLI's progress where stderr is not a terminal (a pipe, as in CI
//! or `| tee`): one line per target per stage, none with `--quiet`, and
//! `--json` keeps stdout to the results alone.

mod common;

use common::{json, rustle_cross, scratch_template, stderr};

const TRIPLE: &str = "x86_64-unknown-linux-gnu";

fn progress_template() -> std::path::PathBuf {
    scratch_template(
        "progress-lines",
        &[
            (
                "Cargo.toml",
                "[package]\nname = \"progress-lines\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n",
            ),
            ("src/main.rs", "fn main() {\n    println!(\"progress\");\n}\n"),
        ],
    )
}

/// `rustle-cross build TEMPLATE --no-cache --target TRIPLE EXTRA...`, into a scratch `--out`.
fn build(extra: &[&str]) -> std::process::Output {
    let template = progress_template();
    let out_dir = tempfile::tempdir().expect("tmp");
    let mut args = vec![
        "build",
        template.to_str().expect("utf-8"),
        "--no-cache",
        "--target",
        TRIPLE,
        "--out",
        out_dir.path().to_str().expect("utf-8"),
    ];
    args.extend(extra);
    let out = rustle_cross(&args);
    assert!(out.status.success(), "build failed: {}", stderr(&out));
    out
}

/// stderr's progress lines about `TRIPLE`: `[   Ns] TRIPLE: STAGE`.
fn progress_lines(out: &std::process::Output) -> Vec<String> {
    let prefix = format!("] {TRIPLE}: ");
    stderr(out).lines().filter(|l| l.starts_with('[') && l.contains(&prefix)).map(str::to_owned).collect()
}

#[test]
fn a_build_without_a_terminal_writes_a_line_per_stage_and_quiet_writes_none() {
    let out = build(&[]);
    let lines = progress_lines(&out);
    let position = |stage: &str| lines.iter().position(|l| l.contains(&format!("{TRIPLE}: {stage}")));
    let queued = position("queued").unwrap_or_else(|| panic!("no queued line: {lines:#?}"));
    let started = position("compiling").unwrap_or_else(|| panic!("no line for the start: {lines:#?}"));
    let validated = position("validated, built on local").unwrap_or_else(|| panic!("no validated line: {lines:#?}"));
    assert!(queued < started && started < validated, "stages out of order: {lines:#?}");
    assert_eq!(lines.iter().filter(|l| l.contains("validated")).count(), 1, "{lines:#?}");
    // The summary still goes to stdout.
    assert!(String::from_utf8_lossy(&out.stdout).contains(TRIPLE));

    let quiet = build(&["--quiet"]);
    assert_eq!(progress_lines(&quiet), Vec::<String>::new(), "--quiet wrote progress");
    assert!(String::from_utf8_lossy(&quiet.stdout).contains(TRIPLE), "--quiet dropped the summary");
}

#[test]
fn json_stdout_stays_json_while_progress_goes_to_stderr() {
    let out = build(&["--json"]);
    let report = json(&out);
    assert_eq!(report["results"][0]["target"], TRIPLE, "{report:#}");
    assert_eq!(report["results"][0]["status"], "ok", "{report:#}");
    let lines = progress_lines(&out);
    assert!(lines.iter().any(|l| l.contains("validated")), "no progress on stderr: {lines:#?}");
}
