//! The binary cache's shared tier through the real CLI against real servers
//! started by `scripts/start-cache-stores.sh` (Debian's redis-server, and
//! apache2 with mod_dav for WebDAV): a build on one machine is a hit on
//! another through each, a damaged shared entry is never served but
//! rebuilt and replaced, and a store that is down or frozen is one warning
//! and a local build. Skipped, with a line saying so, when
//! RUSTLE_SKIP_CACHE_STORE_TESTS=1.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use common::{example_template, json, require_cross_tools, rustle_cross_env, stderr};

const SKIP: &str = "RUSTLE_SKIP_CACHE_STORE_TESTS";
const X86: &str = "x86_64-unknown-linux-gnu";
const AARCH64: &str = "aarch64-unknown-linux-gnu";

/// The tests share machine A's cache dir and the stores: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// "Machine A" builds: the binary-cache suite's cache dir, whose target
/// dirs are warm for these targets (that suite runs in another test binary,
/// never at the same time).
fn machine_a() -> PathBuf {
    common::work_root().join("binary-cache-suite")
}

/// "Machine B" never builds: an empty cache dir of its own.
fn fresh_machine_b() -> PathBuf {
    let dir = common::work_root().join("shared-cache-machine-b");
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The stores of one state dir, as `scripts/start-cache-stores.sh` started them.
struct Stores {
    dir: PathBuf,
    redis: String,
    webdav: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/start-cache-stores.sh")
}

/// Starts (or finds running) the stores under `name`; `None` when skipped.
fn stores(name: &str) -> Option<Stores> {
    if std::env::var_os(SKIP).is_some_and(|v| v == "1") {
        eprintln!("SKIPPED: the shared binary cache tests ({SKIP}=1)");
        return None;
    }
    let dir = common::work_root().join(name);
    let out = Command::new("bash").arg(script()).arg(&dir).output().expect("run bash");
    assert!(
        out.status.success(),
        "scripts/start-cache-stores.sh failed (it starts the Redis and WebDAV servers these tests use; run it by hand to see why, or set {SKIP}=1 to skip): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let env = std::fs::read_to_string(dir.join("stores.env")).expect("stores.env");
    let value = |key: &str| {
        env.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).map(str::to_owned).expect("a store address")
    };
    Some(Stores { redis: value("REDIS_URL"), webdav: value("WEBDAV_URL"), dir })
}

impl Stores {
    /// An empty Redis database `db` of these stores.
    fn redis_db(&self, db: u32) -> String {
        let port = self.redis.rsplit(':').next().expect("port");
        let out = Command::new("redis-cli").args(["-p", port, "-n", &db.to_string(), "flushdb"]).output();
        assert!(out.is_ok_and(|o| o.status.success()), "redis-cli flushdb");
        format!("{}/{db}", self.redis)
    }

    /// An empty WebDAV collection `name` of these stores.
    fn webdav_collection(&self, name: &str) -> String {
        let _ = std::fs::remove_dir_all(self.webdav_files(name));
        format!("{}{name}/", self.webdav)
    }

    /// Where the WebDAV server keeps collection `name`'s files.
    fn webdav_files(&self, name: &str) -> PathBuf {
        self.dir.join("webdav/root/cache").join(name)
    }
}

/// `rustle-cross build` of the example on the machine whose cache dir is
/// `cache`, with `shared` behind it, as JSON results.
fn build(cache: &Path, shared: &str, targets: &[&str], extra: &[&str]) -> (Output, Vec<serde_json::Value>) {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let template = example_template();
    let mut args =
        vec!["build", template.to_str().expect("utf-8"), "--json", "--out", out_dir.path().to_str().expect("utf-8")];
    for target in targets {
        args.extend(["-t", target]);
    }
    args.extend(extra);
    let out = rustle_cross_env(
        &args,
        &[("RUSTLE_TARGET_CACHE_DIR", cache.to_str().expect("utf-8")), ("RUSTLE_BINARY_CACHE_SHARED", shared)],
    );
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), stderr(&out));
    let mut results = json(&out)["results"].as_array().expect("results").clone();
    for result in &mut results {
        assert_eq!(result["status"], "ok", "{result:#}");
        // The bytes, before the output dir goes.
        let bytes = std::fs::read(result["file"].as_str().expect("file")).expect("read the binary");
        result["bytes"] = serde_json::Value::from(bytes);
    }
    (out, results)
}

fn clear_local(cache: &Path) {
    let out = rustle_cross_env(&["cache", "clear"], &[("RUSTLE_TARGET_CACHE_DIR", cache.to_str().expect("utf-8"))]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn uncached(results: &[serde_json::Value]) {
    for result in results {
        assert!(result["cached"].is_null(), "built, not cached: {result:#}");
    }
}

#[test]
fn a_build_on_one_machine_is_a_hit_on_another_through_redis_and_webdav() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(stores) = stores("cache-stores") else { return };
    if !require_cross_tools(&["aarch64-linux-gnu-gcc"]) {
        return;
    }
    for shared in [stores.redis_db(1), stores.webdav_collection("hit")] {
        clear_local(&machine_a());
        let (_, built) = build(&machine_a(), &shared, &[X86, AARCH64], &[]);
        uncached(&built);

        let machine_b = fresh_machine_b();
        let (out, fetched) = build(&machine_b, &shared, &[X86, AARCH64], &[]);
        for (a, b) in built.iter().zip(&fetched) {
            let store = b["cached"]["store"].as_str().unwrap_or_else(|| panic!("{shared}: not cached: {b:#}"));
            assert!(store.starts_with("shared ") && store.contains("127.0.0.1"), "{store}");
            assert_eq!(b["cached"]["built_by"], "local", "{b:#}");
            assert_eq!(b["sha256"], a["sha256"], "{shared}");
            assert_eq!(b["bytes"], a["bytes"], "{shared}: {} the same bytes", a["target"]);
            assert_eq!(b["validation"], a["validation"]);
        }
        assert!(!machine_b.join("targets").exists(), "{shared}: machine B ran no cargo: {}", stderr(&out));

        // The hit was kept on machine B: the next one needs no network.
        let (_, again) = build(&machine_b, &shared, &[X86], &[]);
        assert_eq!(again[0]["cached"]["store"], "local", "{:#}", again[0]);
    }

    // The summary says where a binary came from.
    let machine_b = fresh_machine_b();
    let shared = format!("{}/1", stores.redis);
    let template = example_template();
    let out_dir = tempfile::tempdir().expect("tempdir");
    let table = rustle_cross_env(
        &["build", template.to_str().expect("utf-8"), "-t", X86, "--out", out_dir.path().to_str().expect("utf-8")],
        &[("RUSTLE_TARGET_CACHE_DIR", machine_b.to_str().expect("utf-8")), ("RUSTLE_BINARY_CACHE_SHARED", &shared)],
    );
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains(&format!("cached (shared {shared})")), "{text}");
    let stats = rustle_cross_env(&["cache", "stats"], &[("RUSTLE_BINARY_CACHE_SHARED", &shared)]);
    let text = String::from_utf8_lossy(&stats.stdout);
    assert!(text.contains(&format!("shared: {shared} (answers)")), "{text}");
}

#[test]
fn a_damaged_shared_entry_is_never_served_but_rebuilt_and_replaced() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(stores) = stores("cache-stores") else { return };
    let shared = stores.webdav_collection("damaged");
    clear_local(&machine_a());
    let (_, built) = build(&machine_a(), &shared, &[X86], &[]);
    let checksum = built[0]["sha256"].as_str().expect("sha256").to_owned();

    // A flipped byte in the stored binary, on the WebDAV server's disk.
    let layout = format!("v{}/blobs", rustle_engine::cache::SCHEMA);
    let blob = stores.webdav_files("damaged").join(layout).join(&checksum);
    let mut data = std::fs::read(&blob).expect("the shared store holds the binary");
    let middle = data.len() / 2;
    data[middle] ^= 0x01;
    std::fs::write(&blob, &data).expect("damage it");

    clear_local(&machine_a());
    let (out, rebuilt) = build(&machine_a(), &shared, &[X86], &[]);
    uncached(&rebuilt);
    let log = stderr(&out);
    assert!(log.contains("binary is wrong") && log.contains("removed, and rebuilt"), "{log}");
    assert_eq!(rebuilt[0]["sha256"], built[0]["sha256"]);
    let healed = std::fs::read(&blob).expect("the rebuild was stored again");
    assert_eq!(healed, serde_json::from_value::<Vec<u8>>(built[0]["bytes"].clone()).expect("bytes"));

    let machine_b = fresh_machine_b();
    let (_, fetched) = build(&machine_b, &shared, &[X86], &[]);
    assert!(fetched[0]["cached"]["store"].as_str().is_some_and(|s| s.starts_with("shared ")), "{:#}", fetched[0]);
}

/// Sends SIGCONT to a stopped process when dropped.
struct Resume(String);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0]).status();
    }
}

#[test]
fn a_store_that_is_down_or_frozen_is_one_warning_and_a_local_build() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Stores of its own: this test stops them.
    let Some(stores) = stores("cache-stores-faults") else { return };
    if !require_cross_tools(&["aarch64-linux-gnu-gcc"]) {
        return;
    }
    let warning = "this run builds and caches without it";

    // Down: nothing listens any more.
    let dead = format!("{}/0", stores.redis);
    let stop = Command::new("bash").arg(script()).args(["--stop"]).arg(&stores.dir).arg("redis").status();
    assert!(stop.is_ok_and(|s| s.success()), "stop redis");
    clear_local(&machine_a());
    let (out, built) = build(&machine_a(), &dead, &[X86, AARCH64], &[]);
    uncached(&built);
    let log = stderr(&out);
    assert_eq!(log.matches(warning).count(), 1, "one warning for the run: {log}");
    assert!(log.contains(&format!("shared binary cache {dead} is unavailable")), "{log}");
    assert!(log.contains("Connection refused"), "a refused connection is said at once, not after the timeout: {log}");
    let stats = rustle_cross_env(&["cache", "stats"], &[("RUSTLE_BINARY_CACHE_SHARED", &dead)]);
    let text = String::from_utf8_lossy(&stats.stdout);
    assert!(text.contains(&format!("shared: {dead} (unavailable: cannot connect")), "{text}");

    // Frozen: the server accepts connections and never answers.
    let stores = stores_again(&stores);
    let pid = std::fs::read_to_string(stores.dir.join("redis/redis.pid")).expect("pid").trim().to_owned();
    let config = stores.dir.join("fast-timeout.toml");
    std::fs::write(&config, "[cross_compilation]\nbinary_cache_shared_timeout_ms = 500\n").expect("config");
    assert!(Command::new("kill").args(["-STOP", &pid]).status().is_ok_and(|s| s.success()));
    let resume = Resume(pid);
    clear_local(&machine_a());
    let frozen = format!("{}/0", stores.redis);
    let (out, built) = build(&machine_a(), &frozen, &[X86], &["--config", config.to_str().expect("utf-8")]);
    drop(resume);
    uncached(&built);
    let log = stderr(&out);
    assert!(log.contains("no answer within 500 ms") && log.contains(warning), "{log}");
}

/// The stores of `stores.dir` started again (a stopped one on a new port).
fn stores_again(stores: &Stores) -> Stores {
    let name = stores.dir.file_name().expect("name").to_str().expect("utf-8").to_owned();
    self::stores(&name).expect("started before")
}
