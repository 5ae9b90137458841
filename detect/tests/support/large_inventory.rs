//! Writes one large inventory (100,000 hosts by default) in INI, YAML and
//! JSON, each beside its own `group_vars/` and `host_vars/`, for the scale
//! test and the inventory benchmark (`detect/examples/inventory_scale.rs`).
//!
//! The three describe the same hosts and the same expected targets:
//! `web00000..` and `db00000..`, half each; the first quarter of the web
//! hosts also sit in `arm` with an explicit aarch64 triple.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What each written inventory contains, for assertions.
pub struct LargeInventory {
    /// Hosts in total.
    pub hosts: usize,
    /// `(format, inventory file)` for INI, YAML and JSON.
    pub files: Vec<(&'static str, PathBuf)>,
}

/// The triple a host of the generated inventory resolves to.
pub fn expected_triple(host: &str, hosts: usize) -> &'static str {
    let index: usize = host
        .trim_start_matches(|c: char| c.is_ascii_alphabetic())
        .split('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    if host.starts_with("db") {
        "x86_64-unknown-linux-musl"
    } else if index < hosts / 8 {
        "aarch64-unknown-linux-gnu"
    } else {
        "x86_64-unknown-linux-gnu"
    }
}

/// `web00042.example.com`.
pub fn host_name(kind: &str, index: usize) -> String {
    format!("{kind}{index:05}.example.com")
}

/// Writes the three inventories under `root` (`root/ini`, `root/yaml`,
/// `root/json`). `hosts` must be even and at most 200,000 (INI ranges are
/// capped at 65,536 hosts per name, so the INI file splits them).
pub fn write(root: &Path, hosts: usize) -> std::io::Result<LargeInventory> {
    assert!(hosts.is_multiple_of(2) && hosts <= 200_000, "hosts must be even and at most 200000");
    let half = hosts / 2;
    let arm = hosts / 8;
    let mut files = Vec::new();
    for (format, name, text) in [
        ("ini", "hosts.ini", ini(half, arm)),
        ("yaml", "hosts.yml", yaml(half, arm)),
        ("json", "hosts.json", json(half, arm)),
    ] {
        let dir = root.join(format);
        std::fs::create_dir_all(dir.join("group_vars"))?;
        std::fs::create_dir_all(dir.join("host_vars"))?;
        std::fs::write(dir.join("group_vars/all.yml"), "ansible_user: deploy\nsite: lab\n")?;
        std::fs::write(dir.join("group_vars/db.yml"), "rustle_target_triple: x86_64-unknown-linux-musl\n")?;
        std::fs::write(dir.join("group_vars/prod.yml"), "env: production\n")?;
        // A few hosts with their own file, as real inventories have.
        for i in (0..half).step_by((half / 10).max(1)) {
            std::fs::write(dir.join("host_vars").join(host_name("web", i)), format!("rack: r{i}\n"))?;
        }
        let file = dir.join(name);
        std::fs::write(&file, text)?;
        files.push((format, file));
    }
    Ok(LargeInventory { hosts, files })
}

/// Ranges, at most 50,000 hosts per line.
fn ini(half: usize, arm: usize) -> String {
    let mut text = String::new();
    for (group, kind) in [("web", "web"), ("db", "db")] {
        let _ = writeln!(text, "[{group}]");
        for start in (0..half).step_by(50_000) {
            let end = (start + 50_000).min(half) - 1;
            let _ = writeln!(text, "{kind}[{start:05}:{end:05}].example.com");
        }
    }
    text.push_str("[arm]\n");
    for start in (0..arm).step_by(50_000) {
        let end = (start + 50_000).min(arm) - 1;
        let _ = writeln!(text, "web[{start:05}:{end:05}].example.com rustle_target_triple=aarch64-unknown-linux-gnu");
    }
    text.push_str("[web:vars]\nrustle_target_triple=x86_64-unknown-linux-gnu\nhttp_port=80\n");
    text.push_str("[prod:children]\nweb\ndb\narm\n[prod:vars]\nenv=inventory\n");
    text
}

/// Every host on its own line, every tenth with an address.
fn yaml(half: usize, arm: usize) -> String {
    let mut text = String::from("all:\n  children:\n    prod:\n      children:\n");
    for kind in ["web", "db"] {
        let _ = writeln!(text, "        {kind}:\n          hosts:");
        for i in 0..half {
            let name = host_name(kind, i);
            if i % 10 == 0 {
                let _ = writeln!(
                    text,
                    "            {name}:\n              ansible_host: 10.{}.{}.{}",
                    i >> 16,
                    (i >> 8) & 255,
                    i & 255
                );
            } else {
                let _ = writeln!(text, "            {name}:");
            }
        }
        if kind == "web" {
            text.push_str("          vars:\n            rustle_target_triple: x86_64-unknown-linux-gnu\n            http_port: 80\n");
        }
    }
    text.push_str("        arm:\n          hosts:\n");
    for i in 0..arm {
        let _ = writeln!(
            text,
            "            {}:\n              rustle_target_triple: aarch64-unknown-linux-gnu",
            host_name("web", i)
        );
    }
    text
}

/// The `ansible-inventory --list` shape: groups list their hosts, `_meta`
/// holds every host's variables.
fn json(half: usize, arm: usize) -> String {
    let list = |kind: &str, count: usize| -> String {
        (0..count).map(|i| format!("\"{}\"", host_name(kind, i))).collect::<Vec<_>>().join(",\n    ")
    };
    let mut hostvars = Vec::with_capacity(half * 2);
    for kind in ["web", "db"] {
        for i in 0..half {
            let name = host_name(kind, i);
            let triple =
                if kind == "web" && i < arm { ", \"rustle_target_triple\": \"aarch64-unknown-linux-gnu\"" } else { "" };
            hostvars.push(format!(
                "\"{name}\": {{\"ansible_host\": \"10.{}.{}.{}\"{triple}}}",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            ));
        }
    }
    format!(
        "{{\n  \"_meta\": {{\"hostvars\": {{\n    {}\n  }}}},\n  \"all\": {{\"children\": [\"prod\", \"ungrouped\"]}},\n  \
         \"prod\": {{\"children\": [\"web\", \"db\", \"arm\"]}},\n  \
         \"web\": {{\"hosts\": [\n    {}\n  ], \"vars\": {{\"rustle_target_triple\": \"x86_64-unknown-linux-gnu\", \"http_port\": 80}}}},\n  \
         \"db\": {{\"hosts\": [\n    {}\n  ]}},\n  \"arm\": {{\"hosts\": [\n    {}\n  ]}}\n}}\n",
        hostvars.join(",\n    "),
        list("web", half),
        list("db", half),
        list("web", arm)
    )
}
