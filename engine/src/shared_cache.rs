//! The shared tier of the binary cache: a store on another system (Redis,
//! WebDAV, ...) that several machines read and write, behind each
//! machine's own [`CompilationCache`].
//!
//! The engine sees such a store only through [`SharedStore`] (read, write
//! and delete named objects); the coordinator implements it on Apache
//! OpenDAL. Under the store's root it holds the local store's records:
//! `v<SCHEMA>/blobs/<sha256>` and `v<SCHEMA>/entries/<key>.json`, the blob
//! written first.
//!
//! Invariants:
//! - **It never fails a build.** Each operation is bounded by the tier's
//!   timeout; the first error or timeout is one warning, and the store is
//!   not asked again in this run (it is "down"): a miss, and a local build.
//! - **Nothing unverified is served.** What it returns is checked like a
//!   local entry (schema, key, size, SHA-256, the header against the
//!   target); an entry that fails is deleted from the store and reported.
//! - **A hit is kept here**: it is copied into the local store, so the next
//!   lookup of that key costs no network.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustle_targets::BuildRequest;

use crate::cache::{CacheEntry, CacheKey, CacheKeyInputs, CompilationCache, Lookup, SCHEMA, parse_entry, verified_hit};
use crate::engine::CompiledBinary;

/// What a [`SharedStore`] operation returns: its value, or why it failed
/// (unreachable, refused, ...). An absent object is not a failure.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// A store of named objects on another system, shared by machines.
pub trait SharedStore: Send + Sync + Debug {
    /// How reports name it (an address without credentials).
    fn name(&self) -> &str;
    /// The object at `path`; `None` when there is none.
    fn read<'a>(&'a self, path: &'a str) -> StoreFuture<'a, Option<Vec<u8>>>;
    /// Writes `data` at `path`, replacing what was there.
    fn write<'a>(&'a self, path: &'a str, data: Vec<u8>) -> StoreFuture<'a, ()>;
    /// Removes the object at `path` (absent is fine).
    fn delete<'a>(&'a self, path: &'a str) -> StoreFuture<'a, ()>;
}

/// A [`SharedStore`] as the cache uses it: every operation bounded by a
/// timeout, and down for the rest of the run after its first failure.
/// Clones share that state.
#[derive(Clone, Debug)]
pub struct SharedTier {
    store: Arc<dyn SharedStore>,
    timeout: Duration,
    down: Arc<OnceLock<String>>,
}

/// Why an operation of the tier gave nothing.
enum Unavailable {
    /// It failed just now: the tier is down from here on, and this is the
    /// one warning that says so.
    WentDown(String),
    /// It was down already.
    Down,
}

impl SharedTier {
    /// `store`, each operation bounded by `timeout`.
    pub fn new(store: Arc<dyn SharedStore>, timeout: Duration) -> Self {
        Self { store, timeout, down: Arc::new(OnceLock::new()) }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        self.store.name()
    }

    /// Why it is not used any more in this run, when it failed.
    pub fn down(&self) -> Option<&str> {
        self.down.get().map(String::as_str)
    }

    /// Whether the store answers now (a read of an object that need not
    /// exist), without marking it down.
    pub async fn probe(&self) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.store.read(&format!("v{SCHEMA}/probe"))).await {
            Ok(result) => result.map(drop),
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }

    async fn call<T>(&self, what: &str, operation: StoreFuture<'_, T>) -> Result<T, Unavailable> {
        if self.down.get().is_some() {
            return Err(Unavailable::Down);
        }
        let result = match tokio::time::timeout(self.timeout, operation).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        };
        result.map_err(|error| {
            let reason = format!("{what}: {error}");
            match self.down.set(reason.clone()) {
                Ok(()) => Unavailable::WentDown(format!(
                    "shared binary cache {} is unavailable ({reason}); this run builds and caches without it",
                    self.name()
                )),
                Err(_) => Unavailable::Down,
            }
        })
    }

    /// The verified binary under `key` for `request`, kept in `local` too.
    async fn get(
        &self,
        local: &CompilationCache,
        key: &CacheKey,
        request: &BuildRequest,
        warn: &(dyn Fn(String) + Send + Sync),
    ) -> Option<CompiledBinary> {
        let report = |unavailable| {
            if let Unavailable::WentDown(warning) = unavailable {
                warn(warning);
            }
        };
        let entry_path = entry_object(key);
        let text = match self.call("reading an entry", self.store.read(&entry_path)).await {
            Ok(Some(text)) => text,
            Ok(None) => return None,
            Err(unavailable) => {
                report(unavailable);
                return None;
            }
        };
        let entry = match parse_entry(&text, key) {
            Ok(entry) => entry,
            Err(reason) => {
                let _ = self.call("removing a bad entry", self.store.delete(&entry_path)).await;
                warn(format!("shared binary cache {}: entry {key} is {reason}; removed, and rebuilt", self.name()));
                return None;
            }
        };
        let blob_path = blob_object(&entry.checksum);
        let data = match self.call("reading a binary", self.store.read(&blob_path)).await {
            Ok(Some(data)) => data,
            Ok(None) => {
                let _ = self.call("removing an entry without its binary", self.store.delete(&entry_path)).await;
                warn(format!(
                    "shared binary cache {}: entry {key} names binary {} which it lacks; removed, and rebuilt",
                    self.name(),
                    entry.checksum
                ));
                return None;
            }
            Err(unavailable) => {
                report(unavailable);
                return None;
            }
        };
        let record = entry.clone();
        match verified_hit(entry, data, request, &format!("shared {}", self.name())) {
            Ok(binary) => {
                let (local, data) = (local.clone(), binary.binary_data.clone());
                let kept = tokio::task::spawn_blocking(move || local.store_entry(&record, &data)).await;
                if let Ok(Err(error)) = kept {
                    tracing::warn!("a binary from the shared cache was not kept locally: {error}");
                }
                Some(binary)
            }
            Err(reason) => {
                let _ = self.call("removing a bad binary", self.store.delete(&blob_path)).await;
                let _ = self.call("removing a bad entry", self.store.delete(&entry_path)).await;
                warn(format!(
                    "shared binary cache {}: entry {key}'s binary is wrong ({reason}); removed, and rebuilt",
                    self.name()
                ));
                None
            }
        }
    }

    /// Stores `entry` with its binary `data`: the blob, then the entry.
    async fn put(&self, entry: &CacheEntry, data: Vec<u8>, warn: &(dyn Fn(String) + Send + Sync)) {
        let json = match serde_json::to_vec_pretty(entry) {
            Ok(json) => json,
            Err(error) => return warn(format!("a cache entry cannot be written: {error}")),
        };
        let blob = blob_object(&entry.checksum);
        let stored = match self.call("writing a binary", self.store.write(&blob, data)).await {
            Ok(()) => self.call("writing an entry", self.store.write(&entry_object(&entry.key), json)).await,
            Err(unavailable) => Err(unavailable),
        };
        if let Err(Unavailable::WentDown(warning)) = stored {
            warn(warning);
        }
    }
}

/// Where the entry of `key` lives in a shared store.
pub fn entry_object(key: &CacheKey) -> String {
    format!("v{SCHEMA}/entries/{key}.json")
}

/// Where the binary with SHA-256 `checksum` lives in a shared store.
pub fn blob_object(checksum: &str) -> String {
    format!("v{SCHEMA}/blobs/{checksum}")
}

impl CompilationCache {
    /// The binary under `key` for `request`: from this machine's store, else
    /// from the shared tier (verified, then kept here). What goes wrong on
    /// the way (a corrupt entry, a store that is down) is passed to `warn`
    /// and is a miss.
    pub async fn lookup(
        &self,
        key: &CacheKey,
        request: &BuildRequest,
        warn: &(dyn Fn(String) + Send + Sync),
    ) -> Option<CompiledBinary> {
        let (local, local_key, local_request) = (self.clone(), key.clone(), request.clone());
        // Reading and hashing a binary of many MiB is blocking work.
        let found = tokio::task::spawn_blocking(move || local.get(&local_key, &local_request))
            .await
            .unwrap_or_else(|error| Lookup::Corrupt { reason: format!("the lookup task failed: {error}") });
        match found {
            Lookup::Hit(binary) => return Some(*binary),
            Lookup::Miss => {}
            Lookup::Corrupt { reason } => warn(format!("binary cache entry removed and rebuilt: {reason}")),
        }
        self.shared.as_ref()?.get(self, key, request, warn).await
    }

    /// Stores `binary`, built by `built_by`, under the key of `inputs`, here
    /// and in the shared tier. A failure is passed to `warn`, never an error
    /// of the build.
    pub async fn store(
        &self,
        inputs: &CacheKeyInputs,
        binary: &CompiledBinary,
        built_by: &str,
        warn: &(dyn Fn(String) + Send + Sync),
    ) {
        let entry = CacheEntry::new(inputs, binary, built_by);
        let (local, record, data) = (self.clone(), entry.clone(), binary.binary_data.clone());
        match tokio::task::spawn_blocking(move || local.store_entry(&record, &data)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                warn(format!("failed to store a binary in the cache at {}: {error}", self.root().display()))
            }
            Err(error) => warn(format!("the task storing a binary in the cache failed: {error}")),
        }
        if let Some(shared) = &self.shared {
            shared.put(&entry, binary.binary_data.clone(), warn).await;
        }
    }
}
