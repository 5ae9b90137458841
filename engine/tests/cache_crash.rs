//! Crash safety of the binary cache: a process killed with SIGKILL while it
//! stores entry after entry leaves nothing that a later read serves wrong,
//! and every entry it left is whole.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rustle_engine::cache::{CacheKeyInputs, CompilationCache, Lookup, SCHEMA, TemplateFile, ToolchainIdentity};
use rustle_engine::engine::{CompilationMetadata, CompiledBinary};
use rustle_engine::validate::validate_binary;
use rustle_targets::{BuildRequest, CachePolicy, CompilationOptimization, Target, TargetSettings, TemplateId};
use sha2::{Digest, Sha256};

/// Set in the child: the cache directory it writes into until it is killed.
const WRITER: &str = "RUSTLE_CACHE_CRASH_WRITER";
const X86: &str = "x86_64-unknown-linux-gnu";
/// Bound on the writer's loop (it is killed long before).
const MAX_ENTRIES: u32 = 2000;

fn inputs(n: u32) -> CacheKeyInputs {
    CacheKeyInputs {
        schema: SCHEMA,
        target: X86.into(),
        custom_spec_sha256: None,
        template: vec![TemplateFile { path: "src/main.rs".into(), sha256: n.to_string() }],
        toolchain: ToolchainIdentity { name: "t".into(), rustc: "r".into(), cargo: "c".into(), host: X86.into() },
        std: "Prebuilt".into(),
        route: Vec::new(),
        cargo_args: Vec::new(),
        cargo_env: BTreeMap::new(),
    }
}

/// Entry `n`'s binary: this test program (a real x86_64 ELF) plus `n`.
fn data_of(n: u32) -> Vec<u8> {
    let mut data = std::fs::read(std::env::current_exe().expect("exe")).expect("read exe");
    data.extend(n.to_le_bytes());
    data
}

fn binary(n: u32) -> CompiledBinary {
    let data = data_of(n);
    let target = Target::from_triple(X86).expect("target");
    CompiledBinary {
        target: target.clone().into(),
        file_name: "runner".into(),
        size: data.len() as u64,
        checksum: Sha256::digest(&data).iter().map(|b| format!("{b:02x}")).collect(),
        validation: validate_binary(&data, &target).expect("valid"),
        binary_data: data,
        compilation_time: Duration::from_secs(1),
        metadata: CompilationMetadata {
            toolchain: "t".into(),
            rustc_version: "r".into(),
            cargo_version: "c".into(),
            compilation_flags: Vec::new(),
            dependencies: Vec::new(),
            features_used: Vec::new(),
            c_libraries: Vec::new(),
        },
        cached: None,
    }
}

fn request() -> BuildRequest {
    BuildRequest {
        template: TemplateId("runner-0".into()),
        target: Target::from_triple(X86).expect("target"),
        settings: TargetSettings::default(),
        optimization: CompilationOptimization::default(),
        deadline: Duration::from_secs(60),
        incremental: false,
        cache: CachePolicy::Use { max_bytes: u64::MAX },
    }
}

fn write_until_killed(dir: &Path) {
    // A cap of a few entries: eviction runs while the parent kills us too.
    let size = data_of(0).len() as u64;
    let cache = CompilationCache::open(dir, 12 * size);
    for n in 0..MAX_ENTRIES {
        cache.put(&inputs(n), &binary(n), "local").expect("store");
    }
}

#[test]
fn a_writer_killed_mid_store_leaves_no_partial_entry() {
    if let Some(dir) = std::env::var_os(WRITER) {
        write_until_killed(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", "a_writer_killed_mid_store_leaves_no_partial_entry", "--nocapture", "--test-threads=1"])
        .env(WRITER, dir.path())
        .spawn()
        .expect("start the writer");
    let cache = CompilationCache::open(dir.path(), u64::MAX);
    let started = Instant::now();
    while cache.stats().entries < 5 {
        assert!(started.elapsed() < Duration::from_secs(120), "the writer stored nothing in 120 s");
        assert!(child.try_wait().expect("poll").is_none(), "the writer ended before it was killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Somewhere in the middle of a store.
    std::thread::sleep(Duration::from_millis(137));
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");

    let entries = cache.list();
    assert!(!entries.is_empty());
    for (entry, _) in &entries {
        let n: u32 = entry.inputs.template[0].sha256.parse().expect("the writer's own entry");
        match cache.get(&entry.key, &request()) {
            Lookup::Hit(binary) => assert_eq!(binary.binary_data, data_of(n), "entry {n} served other bytes"),
            other => panic!("entry {n} left by a killed writer is not whole: {other:?}"),
        }
    }
    // Nothing half-written is visible as an entry, and a fresh store works.
    cache.put(&inputs(MAX_ENTRIES + 1), &binary(MAX_ENTRIES + 1), "local").expect("store after the crash");
    assert!(matches!(cache.get(&inputs(MAX_ENTRIES + 1).key(), &request()), Lookup::Hit(_)));
}
