//! Ansible's `jsonfile` fact cache: a directory with one JSON file of facts
//! per host. Read as evidence; written back after a probe so the next run
//! needs none.
//!
//! Two layouts exist: up to ansible-core 2.18 the file is named after the
//! host and holds the facts object; from 2.19 it is named `s<schema>_<host>`
//! and holds `{"__payload__": "<facts as a JSON string>"}`. Both are read
//! (the newest file wins); probe results are written in the plain layout.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::FactCacheError;
use crate::facts::Facts;

/// A fact cache directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactCache {
    dir: PathBuf,
}

impl FactCache {
    /// The cache in `dir` (`fact_caching_connection` in ansible.cfg).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of a host; `None` for names that cannot be file names.
    pub fn path_for(&self, host: &str) -> Option<PathBuf> {
        let plain = !host.is_empty() && host != "." && host != ".." && !host.contains(['/', '\0']);
        plain.then(|| self.dir.join(host))
    }

    /// The newest cache file of a host, in either layout.
    pub fn file_for(&self, host: &str) -> Option<PathBuf> {
        let plain = self.path_for(host)?;
        let mut candidates = vec![plain];
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let schema_prefixed = name
                    .strip_suffix(host)
                    .and_then(|p| p.strip_prefix('s'))
                    .and_then(|p| p.strip_suffix('_'))
                    .is_some_and(|digits| !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()));
                if schema_prefixed {
                    candidates.push(entry.path());
                }
            }
        }
        candidates
            .into_iter()
            .filter_map(|p| std::fs::metadata(&p).and_then(|m| m.modified()).ok().map(|t| (t, p)))
            .max_by_key(|(t, _)| *t)
            .map(|(_, p)| p)
    }

    /// The cached facts of a host; `Ok(None)` when it has no file.
    pub fn read(&self, host: &str) -> Result<Option<Facts>, FactCacheError> {
        let Some(path) = self.file_for(host) else { return Ok(None) };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(FactCacheError::Io { action: "read", file: path, source }),
        };
        let value: Value = serde_json::from_str(&text).map_err(|e| FactCacheError::Parse {
            file: path.clone(),
            line: Some(e.line()).filter(|l| *l > 0),
            message: e.to_string().split(" at line ").next().unwrap_or_default().to_owned(),
        })?;
        let value = match value {
            Value::Object(mut map) if map.len() == 1 && map.get("__payload__").is_some_and(Value::is_string) => {
                let payload = map.remove("__payload__").and_then(|p| p.as_str().map(str::to_owned)).unwrap_or_default();
                serde_json::from_str(&payload).map_err(|e| FactCacheError::Parse {
                    file: path.clone(),
                    line: None,
                    message: format!("`__payload__` is not JSON: {e}"),
                })?
            }
            other => other,
        };
        match value {
            Value::Object(map) => Ok(Some(map.into_iter().collect())),
            other => Err(FactCacheError::Parse {
                file: path,
                line: Some(1),
                message: format!("expected a JSON object of facts, found {}", json_kind(&other)),
            }),
        }
    }

    /// Writes facts for a host over those already cached (other facts kept),
    /// atomically; returns the file.
    pub fn write(&self, host: &str, facts: &Facts) -> Result<PathBuf, FactCacheError> {
        let path = self.path_for(host).ok_or_else(|| FactCacheError::Io {
            action: "write",
            file: self.dir.join(host),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "host name is not a file name"),
        })?;
        let io = |source| FactCacheError::Io { action: "write", file: path.clone(), source };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let existing = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str::<Facts>(&t).ok());
        let mut merged = existing.unwrap_or_default();
        merged.extend(facts.iter().map(|(k, v)| (k.clone(), v.clone())));
        let text = serde_json::to_string_pretty(&merged).map_err(|e| io(std::io::Error::other(e)))?;
        let tmp = self.dir.join(format!(".{host}.tmp-{}", std::process::id()));
        std::fs::write(&tmp, text + "\n").map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(path)
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_writes_and_reports_bad_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = FactCache::new(dir.path());
        assert!(cache.read("absent").expect("absent is fine").is_none());
        let mut facts = Facts::new();
        facts.insert("ansible_architecture".into(), Value::from("aarch64"));
        facts.insert("ansible_system".into(), Value::from("Linux"));
        std::fs::write(dir.path().join("web1"), r#"{"ansible_hostname": "web1", "ansible_architecture": "x86_64"}"#)
            .expect("write");
        let path = cache.write("web1", &facts).expect("write");
        let back = cache.read("web1").expect("read").expect("present");
        assert_eq!(back.get("ansible_architecture"), Some(&Value::from("aarch64")));
        assert_eq!(back.get("ansible_hostname"), Some(&Value::from("web1")), "other facts kept");
        assert_eq!(path, dir.path().join("web1"));

        std::fs::write(dir.path().join("bad"), "{\n  \"a\": 1,\n  oops\n}").expect("write");
        let err = cache.read("bad").expect_err("bad JSON");
        let text = err.to_string();
        assert!(text.contains("bad:3"), "{text}");
        assert!(text.contains("gather facts again"), "{text}");
        std::fs::write(dir.path().join("list"), "[1]").expect("write");
        assert!(cache.read("list").expect_err("not an object").to_string().contains("found an array"));
        assert!(cache.path_for("../etc").is_none());

        // ansible-core 2.19 layout.
        let payload = serde_json::to_string(&json!({"ansible_system": "Linux", "ansible_architecture": "riscv64"}))
            .expect("json");
        std::fs::write(
            dir.path().join("s1_new"),
            serde_json::to_string(&json!({"__payload__": payload})).expect("json"),
        )
        .expect("write");
        let facts = cache.read("new").expect("read").expect("present");
        assert_eq!(facts.get("ansible_architecture"), Some(&json!("riscv64")));
        std::fs::write(dir.path().join("s1_badpayload"), r#"{"__payload__": "{nope"}"#).expect("write");
        assert!(cache.read("badpayload").expect_err("bad payload").to_string().contains("__payload__"));
    }
}
