//! The target's C libraries: a template whose TLS comes from OpenSSL
//! (openssl-sys, as reqwest's default TLS links it on Linux) cross-built
//! through the real CLI links the target's multiarch OpenSSL statically,
//! so its binary needs no libssl/libcrypto on the host, and runs there.

mod common;

use common::{json, require_cross_tools, rustle_cross, scratch_template};

/// openssl-sys for the host and for aarch64 (Debian's `libssl-dev:arm64`,
/// which scripts/setup.sh installs): each binary is validated, needs only
/// its base system, and prints the OpenSSL it was linked with.
#[test]
fn openssl_is_linked_statically_from_the_targets_multiarch_package() {
    if !require_cross_tools(&["aarch64-linux-gnu-gcc", "qemu-aarch64"]) {
        return;
    }
    let archives = ["libssl.a", "libcrypto.a"];
    for dir in ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"] {
        let missing: Vec<_> = archives.iter().filter(|a| !std::path::Path::new(dir).join(a).is_file()).collect();
        assert!(
            missing.is_empty(),
            "{dir} lacks {missing:?}: run scripts/setup.sh (as root), which installs libssl-dev for the host and each \
             multiarch architecture"
        );
    }
    let template = scratch_template(
        "openssl-static",
        &[
            (
                "Cargo.toml",
                "[package]\nname = \"openssl-static\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
                 [dependencies]\nopenssl = \"0.10\"\n\n\
                 [profile.release]\nlto = true\nstrip = true\npanic = \"abort\"\ncodegen-units = 1\n",
            ),
            ("src/main.rs", "fn main() {\n    println!(\"linked {}\", openssl::version::version());\n}\n"),
        ],
    );
    let out_dir = tempfile::tempdir().expect("tmp");
    let out = rustle_cross(&[
        "build",
        template.to_str().expect("utf-8"),
        "-t",
        "x86_64-unknown-linux-gnu",
        "-t",
        "aarch64-unknown-linux-gnu",
        "--smoke-test",
        "--self-contained",
        "--json",
        "--out",
        out_dir.path().to_str().expect("utf-8"),
    ]);
    let report = json(&out);
    assert!(out.status.success(), "{report:#}");
    for result in report["results"].as_array().expect("results") {
        assert_eq!(result["status"], "ok", "{result:#}");
        let needed = result["validation"]["needed_libraries"].as_array().expect("needed libraries");
        assert!(
            needed.iter().all(|l| !l.as_str().unwrap_or_default().starts_with("libssl")
                && !l.as_str().unwrap_or_default().starts_with("libcrypto")),
            "OpenSSL linked dynamically: {result:#}"
        );
        assert_eq!(result["validation"]["outside_base_system"], serde_json::json!([]), "{result:#}");
        let output = result["smoke_test"]["output"].as_str().unwrap_or_default();
        assert!(output.starts_with("linked OpenSSL 3"), "runs and prints its OpenSSL: {result:#}");
    }
}
