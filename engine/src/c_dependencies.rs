//! A template's C dependencies for one target, before any compiling: its dependency graph as cargo resolves it for that target (`cargo metadata --filter-platform`), read against the `-sys` crate table ([`rustle_targets::c_needs`]), and whether this machine supplies each library.

use std::path::Path;
use std::time::Duration;

use rustle_process::ProcessSpec;
use rustle_targets::{
    CNeed, DEBIAN_MULTIARCH, LinkerRoute, ResolvedPackage, Target, c_needs, multiarch_gnu_prefix, rule_for,
};
use serde::Serialize;

use crate::template::PreparedTemplate;
use crate::toolchain::Toolchain;

/// How long resolving the graph may take (it may download the index).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(300);

/// One crate of the template that needs something from the target's C side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CDependency {
    /// The crate (`openssl-sys`).
    pub crate_name: String,
    /// What it needs (`OpenSSL`, `the C compiler`, `Security.framework`).
    pub needs: String,
    /// Whether this machine has it.
    pub supply: CSupply,
}

/// Whether this machine supplies what a crate needs for a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum CSupply {
    /// It is there.
    Present {
        /// Where, or from what.
        from: String,
    },
    /// It is not there, and rustle-cross builds it from source for the
    /// target before the template (once per target, into the cache).
    Buildable {
        /// From what, with what.
        how: String,
    },
    /// It is not there; the way to get it.
    Missing {
        /// What to install or set.
        way_out: String,
    },
}

impl CSupply {
    /// Whether it is there.
    pub fn is_present(&self) -> bool {
        matches!(self, Self::Present { .. })
    }

    /// Whether the build can have it: there, or built here first.
    pub fn is_met(&self) -> bool {
        !matches!(self, Self::Missing { .. })
    }
}

/// The packages of `template`'s graph as cargo resolves it for `triple`,
/// each with the features enabled on it there. Runs `toolchain`'s cargo
/// (`cargo metadata --filter-platform`), which may fetch the index.
pub async fn resolved_packages(
    toolchain: &Toolchain,
    template: &PreparedTemplate,
    triple: &str,
) -> Result<Vec<ResolvedPackage>, String> {
    let output = ProcessSpec::new(&toolchain.cargo)
        .args(["metadata", "--format-version", "1", "--filter-platform", triple, "--manifest-path"])
        .arg(&template.manifest)
        .env("RUSTC", &toolchain.rustc)
        .env_remove("RUSTUP_TOOLCHAIN")
        .current_dir(&template.dir)
        .timeout(RESOLVE_TIMEOUT)
        .output()
        .await
        .map_err(|error| format!("cargo metadata could not run: {error}"))?;
    if !output.status.success() {
        let stderr = output.stderr_text();
        let reason = stderr.lines().find(|l| l.starts_with("error")).unwrap_or(stderr.trim());
        return Err(format!("cargo metadata --filter-platform {triple} failed: {reason}"));
    }
    parse_metadata(&output.stdout)
}

/// The resolved packages of `cargo metadata`'s JSON.
pub fn parse_metadata(json: &[u8]) -> Result<Vec<ResolvedPackage>, String> {
    #[derive(serde::Deserialize)]
    struct Metadata {
        packages: Vec<Package>,
        resolve: Option<Resolve>,
    }
    #[derive(serde::Deserialize)]
    struct Package {
        id: String,
        name: String,
    }
    #[derive(serde::Deserialize)]
    struct Resolve {
        nodes: Vec<Node>,
    }
    #[derive(serde::Deserialize)]
    struct Node {
        id: String,
        #[serde(default)]
        features: Vec<String>,
    }
    let metadata: Metadata =
        serde_json::from_slice(json).map_err(|error| format!("cargo metadata's output does not parse: {error}"))?;
    let resolve = metadata.resolve.ok_or("cargo metadata resolved no dependency graph")?;
    Ok(resolve
        .nodes
        .into_iter()
        .filter_map(|node| {
            let name = metadata.packages.iter().find(|p| p.id == node.id)?.name.clone();
            Some(ResolvedPackage { name, features: node.features })
        })
        .collect())
}

/// What each C need of `packages` (resolved for `target`) is, and whether
/// this machine supplies it: the target's multiarch library under
/// `lib_root` (`/usr/lib`), the C compiler of its route, the SDK in `sdkroot`.
pub fn supply(
    packages: &[ResolvedPackage],
    target: &Target,
    lib_root: &Path,
    sdkroot: Option<&Path>,
) -> Vec<CDependency> {
    let route = rule_for(target).linker;
    let gnu_prefix = multiarch_gnu_prefix(target);
    c_needs(packages, target)
        .into_iter()
        .map(|need| match need {
            CNeed::Library { crate_name, library, falls_back_to_bundled } => {
                let multiarch = gnu_prefix.and_then(|p| DEBIAN_MULTIARCH.iter().find(|(prefix, _, _)| *prefix == p));
                let package = gnu_prefix.and_then(|p| library.debian_package_for(p));
                let recipe = library.built_here.filter(|_| builds_c_libraries_here(target, &route));
                let supply = match (multiarch, recipe) {
                    (Some((_, _, dir)), _)
                        if library.has_static_archives_in(&lib_root.join(dir)) =>
                    {
                        let from = format!("{} in {}", package.unwrap_or_default(), lib_root.join(dir).display());
                        CSupply::Present { from }
                    }
                    _ if falls_back_to_bundled => CSupply::Present {
                        from: format!("{crate_name}'s bundled copy, built with the target's C compiler"),
                    },
                    (_, Some(recipe)) => CSupply::Buildable {
                        how: format!(
                            "from {} {} with the target's C compiler, once per target, then reused{}",
                            recipe.crate_name,
                            recipe.version,
                            package.map(|p| format!(" (apt-get install {p} saves that build)")).unwrap_or_default()
                        ),
                    },
                    (Some(_), None) => CSupply::Missing {
                        way_out: format!(
                            "install {} (apt-get install {}), then build again",
                            library.name,
                            package.unwrap_or_default()
                        ),
                    },
                    (None, None) => CSupply::Missing {
                        way_out: format!(
                            "no Debian package supplies {} for {}: build on an agent that has it, or enable {crate_name}'s bundled build in the template",
                            library.name, target.triple
                        ),
                    },
                };
                CDependency { crate_name: crate_name.to_owned(), needs: library.name.to_owned(), supply }
            }
            CNeed::CCompiler { crate_name } => {
                let supply = match route {
                    LinkerRoute::Unavailable { reason } => CSupply::Missing { way_out: reason.to_owned() },
                    _ => CSupply::Present { from: "the target's C compiler".to_owned() },
                };
                CDependency { crate_name, needs: "the C compiler".to_owned(), supply }
            }
            CNeed::PlatformSdk { crate_name, links } => {
                let supply = match sdkroot {
                    Some(sdk) if sdk.is_dir() => CSupply::Present { from: format!("the SDK at {}", sdk.display()) },
                    _ => CSupply::Missing {
                        way_out: "set SDKROOT to a macOS SDK, or build on a macOS agent".to_owned(),
                    },
                };
                CDependency { crate_name: crate_name.to_owned(), needs: links.to_owned(), supply }
            }
        })
        .collect()
}

/// Whether rustle-cross builds C libraries from source for `target` along
/// `route` (Linux and MinGW targets with a C compiler; not Apple, not MSVC).
pub fn builds_c_libraries_here(target: &Target, route: &LinkerRoute) -> bool {
    matches!(target.os_family, rustle_targets::OsFamily::Linux | rustle_targets::OsFamily::Windows)
        && !target.triple.ends_with("-msvc")
        && !matches!(route, LinkerRoute::Unavailable { .. })
}

/// Fails the build before any compiling when a C dependency of the
/// template cannot be had for the target here: each unmet need named with
/// its crate, the library, the target and the way out. Resolves the graph
/// (`cargo metadata`) only when the Cargo.lock lists a crate of the tables;
/// a graph that cannot be resolved is left for cargo to report. Returns
/// the crates of the tables in the target's graph (a Cargo.lock lists
/// every platform's: openssl-sys is in a reqwest runner's lock, not in its
/// Windows graph), `None` when it was not resolved.
pub async fn check_before_building(
    toolchain: &Toolchain,
    template: &PreparedTemplate,
    target: &Target,
    lock_names: &[String],
) -> Result<Option<Vec<String>>, String> {
    let listed = |name: &str| lock_names.iter().any(|n| n == name);
    let relevant = rustle_targets::SYS_CRATES.iter().any(|row| listed(row.crate_name))
        || rustle_targets::PLATFORM_SDK_CRATES.iter().any(|(name, os, _)| *os == target.os_family && listed(name));
    if !relevant {
        return Ok(Some(Vec::new()));
    }
    let packages = match resolved_packages(toolchain, template, &target.triple).await {
        Ok(packages) => packages,
        Err(error) => {
            tracing::warn!("{}: the C dependencies were not checked before building: {error}", target.triple);
            return Ok(None);
        }
    };
    let in_graph: Vec<String> = packages
        .iter()
        .map(|p| p.name.clone())
        .filter(|name| {
            rustle_targets::SYS_CRATES.iter().any(|row| row.crate_name == name)
                || rustle_targets::PLATFORM_SDK_CRATES.iter().any(|(crate_name, _, _)| crate_name == name)
        })
        .collect();
    let sdkroot = std::env::var_os("SDKROOT").map(std::path::PathBuf::from);
    let unmet: Vec<String> = supply(&packages, target, Path::new("/usr/lib"), sdkroot.as_deref())
        .into_iter()
        .filter_map(|dep| match dep.supply {
            CSupply::Missing { way_out } => {
                Some(format!("{} needs {} for {}: {way_out}", dep.crate_name, dep.needs, target.triple))
            }
            _ => None,
        })
        .collect();
    if unmet.is_empty() { Ok(Some(in_graph)) } else { Err(format!("refused before compiling: {}", unmet.join("; "))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(triple: &str) -> Target {
        Target::from_triple(triple).expect("known")
    }

    fn openssl() -> Vec<ResolvedPackage> {
        vec![ResolvedPackage::new("openssl-sys", &[])]
    }

    #[test]
    fn openssl_is_present_when_the_multiarch_archives_are_and_built_here_when_not() {
        let root = tempfile::tempdir().expect("tmp");
        let missing = supply(&openssl(), &target("aarch64-unknown-linux-gnu"), root.path(), None);
        assert_eq!(missing.len(), 1);
        let CSupply::Buildable { how } = &missing[0].supply else { panic!("{missing:?}") };
        assert!(how.contains("openssl-src") && how.contains("apt-get install libssl-dev:arm64"), "{how}");
        let libpq =
            supply(&[ResolvedPackage::new("pq-sys", &[])], &target("aarch64-unknown-linux-gnu"), root.path(), None);
        let CSupply::Missing { way_out } = &libpq[0].supply else { panic!("{libpq:?}") };
        assert!(way_out.contains("install libpq (apt-get install libpq-dev:arm64)"), "{way_out}");

        let dir = root.path().join("aarch64-linux-gnu");
        std::fs::create_dir_all(&dir).expect("mkdir");
        for archive in ["libssl.a", "libcrypto.a"] {
            std::fs::write(dir.join(archive), b"!<arch>\n").expect("write");
        }
        let present = supply(&openssl(), &target("aarch64-unknown-linux-gnu"), root.path(), None);
        assert!(present[0].supply.is_present(), "{present:?}");
    }

    #[test]
    fn a_target_without_a_debian_architecture_says_so_and_apple_frameworks_need_an_sdk() {
        let root = tempfile::tempdir().expect("tmp");
        let musl = supply(&openssl(), &target("x86_64-unknown-linux-musl"), root.path(), None);
        let CSupply::Buildable { how } = &musl[0].supply else { panic!("{musl:?}") };
        assert!(how.contains("from openssl-src 300.6.1 with the target's C compiler"), "{how}");
        let libpq = [ResolvedPackage::new("pq-sys", &[])];
        let musl = supply(&libpq, &target("x86_64-unknown-linux-musl"), root.path(), None);
        let CSupply::Missing { way_out } = &musl[0].supply else { panic!("{musl:?}") };
        assert!(way_out.contains("no Debian package supplies libpq for x86_64-unknown-linux-musl"), "{way_out}");

        let frameworks = [ResolvedPackage::new("security-framework-sys", &[])];
        let without = supply(&frameworks, &target("aarch64-apple-darwin"), root.path(), None);
        assert_eq!(
            without[0].supply,
            CSupply::Missing { way_out: "set SDKROOT to a macOS SDK, or build on a macOS agent".into() }
        );
        let with = supply(&frameworks, &target("aarch64-apple-darwin"), root.path(), Some(root.path()));
        assert!(with[0].supply.is_present());
    }

    #[test]
    fn cargo_metadata_output_gives_each_package_its_features() {
        let json = br#"{"packages":[{"id":"a 1","name":"openssl-sys"},{"id":"b 1","name":"libsqlite3-sys"}],
            "resolve":{"nodes":[{"id":"a 1","features":[]},{"id":"b 1","features":["bundled"]}]}}"#;
        let packages = parse_metadata(json).expect("parses");
        assert_eq!(
            packages,
            vec![ResolvedPackage::new("openssl-sys", &[]), ResolvedPackage::new("libsqlite3-sys", &["bundled"])]
        );
        assert!(parse_metadata(b"{").is_err());
    }
}
