//! Source bundles: a template's sources as one tar + zstd archive, packed on
//! the coordinator and unpacked on an agent.
//!
//! The agent treats a bundle as hostile input. [`unpack_bundle`] and
//! [`sync_bundle`] work in two passes: the first decodes the whole archive
//! into memory (zstd output counted as it comes out, so a decompression bomb
//! stops at the limit) and checks every entry: paths relative with only
//! normal components, only regular files and directories (no symbolic or
//! hard links, no devices or fifos), per-file, total and entry-count limits,
//! no duplicates. Only when the whole archive passes is anything written, and
//! then never through an existing link.
//!
//! Symbolic links: the packer stores a link that resolves to a regular file
//! inside the template as a copy of that file, and refuses any other link
//! (to a directory, outside the template, dangling). Bundles therefore never
//! contain links, and the unpacker rejects every link entry.
//!
//! Modification times: cargo decides what to rebuild by comparing source
//! mtimes with its last build. [`unpack_bundle`] (a fresh directory) keeps the
//! mtimes stored in the bundle; [`sync_bundle`] (a warm directory) leaves
//! unchanged files alone, so their mtimes stay put and cargo does not rebuild
//! them, and gives every file it writes the current time, so a changed file is
//! always newer than the last build even if the coordinator's clock (or the
//! file's recorded mtime) is behind the agent's.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::template::PreparedTemplate;

/// Longest entry path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 1024;

/// Tar bytes allowed per entry on top of its data (header, padding, a GNU
/// long-name record): the decompressed stream may be at most
/// `max_unpacked_total + max_entries * ENTRY_OVERHEAD + TRAILER_ALLOWANCE`.
const ENTRY_OVERHEAD: u64 = 4096;
/// End-of-archive blocks plus the padding of a record.
const TRAILER_ALLOWANCE: u64 = 64 * 1024;
/// Largest zstd window the decoder accepts (16 MiB), bounding its memory.
const WINDOW_LOG_MAX: u32 = 24;
/// zstd level used by the packer.
const ZSTD_LEVEL: i32 = 3;
/// The zstd frame magic number, little-endian.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// The directory cargo writes its output to: never bundled, never touched.
const CARGO_TARGET_DIR: &str = "target";

/// Limits on what a bundle may contain. Checked while decoding, before
/// anything is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleLimits {
    /// Largest compressed bundle, in bytes.
    pub max_compressed: u64,
    /// Largest sum of file sizes after unpacking, in bytes.
    pub max_unpacked_total: u64,
    /// Largest single file, in bytes.
    pub max_file: u64,
    /// Most entries (files plus directories).
    pub max_entries: usize,
}

impl Default for BundleLimits {
    /// 64 MiB compressed, 256 MiB unpacked, 64 MiB per file, 20 000 entries.
    fn default() -> Self {
        BundleLimits {
            max_compressed: 64 << 20,
            max_unpacked_total: 256 << 20,
            max_file: 64 << 20,
            max_entries: 20_000,
        }
    }
}

impl BundleLimits {
    /// The most decompressed bytes the tar stream may take: the file data
    /// limit plus tar's per-entry overhead.
    fn max_stream(&self) -> u64 {
        let entries = u64::try_from(self.max_entries).unwrap_or(u64::MAX);
        self.max_unpacked_total.saturating_add(entries.saturating_mul(ENTRY_OVERHEAD)).saturating_add(TRAILER_ALLOWANCE)
    }
}

/// A packed template: zstd-compressed tar bytes and their checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceBundle {
    /// The compressed archive.
    pub bytes: Vec<u8>,
    /// Lowercase hex sha256 of `bytes`.
    pub sha256: String,
    /// Regular files in the archive.
    pub files: usize,
    /// Sum of the files' sizes.
    pub unpacked_size: u64,
}

/// What unpacking or syncing a bundle did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackReport {
    /// Regular files in the bundle.
    pub files: usize,
    /// Directories in the bundle (listed or implied by a file's path).
    pub directories: usize,
    /// Sum of the files' sizes.
    pub unpacked_size: u64,
    /// Files written (all of them for [`unpack_bundle`]; new or changed ones
    /// for [`sync_bundle`]).
    pub written: usize,
    /// Files left as they were because their content matched
    /// ([`sync_bundle`] only).
    pub unchanged: usize,
    /// Files, links and directories removed because the bundle no longer
    /// has them ([`sync_bundle`] only; a removed directory counts once).
    pub removed: usize,
}

/// Why a template could not be packed or a bundle was refused.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Reading the template failed.
    #[error("cannot read template file {}: {source}", .path.display())]
    ReadTemplate {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The template holds a symbolic link the bundle cannot carry.
    #[error(
        "template file {} is a symbolic link that {reason}; bundles carry only files inside the template: replace the link with a copy",
        .path.display()
    )]
    TemplateSymlink {
        /// The link.
        path: PathBuf,
        /// What is wrong with its target.
        reason: String,
    },
    /// The template holds something other than files, directories and links.
    #[error("template file {} is a {kind}, not a regular file; remove it from the template", .path.display())]
    TemplateSpecialFile {
        /// The file.
        path: PathBuf,
        /// What it is (fifo, socket, device).
        kind: &'static str,
    },
    /// A template file name an agent would refuse.
    #[error("template file {} cannot be bundled: {reason}; rename it", .path.display())]
    TemplateName {
        /// The file.
        path: PathBuf,
        /// Which rule it breaks.
        reason: String,
    },
    /// The template exceeds the bundle limits.
    #[error("template {} is too large to bundle: {what}", .path.display())]
    TemplateTooLarge {
        /// The template directory.
        path: PathBuf,
        /// Which limit, by how much.
        what: String,
    },
    /// Building or compressing the archive failed.
    #[error("cannot compress the source bundle: {0}")]
    Compress(#[source] io::Error),
    /// The compressed bundle is over `max_compressed`.
    #[error(
        "source bundle is {size} bytes compressed, over the limit of {limit}; rejected before anything was written"
    )]
    CompressedTooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Decompression produced more bytes than the limits allow.
    #[error(
        "source bundle decompresses to more than {limit} bytes (a decompression bomb or an oversized template); rejected before anything was written"
    )]
    DecompressedTooLarge {
        /// The most decompressed bytes allowed.
        limit: u64,
    },
    /// Not a valid zstd stream or tar archive.
    #[error("source bundle is corrupt: {reason}; rejected before anything was written")]
    Corrupt {
        /// What the decoder said.
        reason: String,
    },
    /// An entry whose path leaves the destination (absolute, `..`, drive).
    #[error("bundle entry `{path}` escapes the job directory; rejected before anything was written")]
    Escapes {
        /// The entry's path as stored.
        path: String,
    },
    /// An entry whose path breaks a naming rule.
    #[error("bundle entry `{path}` has an unsafe name ({reason}); rejected before anything was written")]
    BadName {
        /// The entry's path as stored.
        path: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// An entry that is not a regular file or directory.
    #[error(
        "bundle entry `{path}` is a {kind}; bundles may hold only regular files and directories; rejected before anything was written"
    )]
    ForbiddenType {
        /// The entry's path.
        path: String,
        /// Its tar type (symbolic link, hard link, character device...).
        kind: String,
    },
    /// A file over `max_file`.
    #[error(
        "bundle entry `{path}` is {size} bytes, over the per-file limit of {limit}; rejected before anything was written"
    )]
    FileTooLarge {
        /// The entry's path.
        path: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The files together exceed `max_unpacked_total`.
    #[error(
        "bundle entry `{path}` brings the unpacked size over the limit of {limit} bytes; rejected before anything was written"
    )]
    TotalTooLarge {
        /// The entry that crossed the limit.
        path: String,
        /// The limit.
        limit: u64,
    },
    /// More entries than `max_entries`.
    #[error("source bundle has more than {limit} entries; rejected before anything was written")]
    TooManyEntries {
        /// The limit.
        limit: usize,
    },
    /// The same path twice, or a path that is both a file and a directory.
    #[error(
        "bundle entry `{path}` appears twice or both as a file and as a directory; rejected before anything was written"
    )]
    Duplicate {
        /// The entry's path.
        path: String,
    },
    /// The destination directory is unusable.
    #[error("cannot unpack the source bundle into {}: {reason}", .path.display())]
    Destination {
        /// The destination.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing an entry failed (after validation; the partial output is
    /// removed by [`unpack_bundle`]).
    #[error("cannot write bundle entry `{entry}` to {}: {source}", .path.display())]
    Write {
        /// The entry's path.
        entry: String,
        /// Where it was being written.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl BundleError {
    /// Whether the bundle itself is at fault (corrupt, hostile or over the
    /// limits), as opposed to this machine's files or disk.
    pub fn is_invalid_bundle(&self) -> bool {
        matches!(
            self,
            BundleError::CompressedTooLarge { .. }
                | BundleError::DecompressedTooLarge { .. }
                | BundleError::Corrupt { .. }
                | BundleError::Escapes { .. }
                | BundleError::BadName { .. }
                | BundleError::ForbiddenType { .. }
                | BundleError::FileTooLarge { .. }
                | BundleError::TotalTooLarge { .. }
                | BundleError::TooManyEntries { .. }
                | BundleError::Duplicate { .. }
        )
    }
}

/// Lowercase hex sha256 of `bytes`, as in [`SourceBundle::sha256`].
pub fn bundle_sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

// ---------------------------------------------------------------------------
// Packing
// ---------------------------------------------------------------------------

/// Packs the template's directory with the default [`BundleLimits`] (a
/// template the agents would refuse is refused here, before it is sent).
pub fn pack_template(template: &PreparedTemplate) -> Result<SourceBundle, BundleError> {
    pack_template_with_limits(template, &BundleLimits::default())
}

/// Packs the template's directory: every regular file and directory except
/// `target/` at the top and `.git/` anywhere, in sorted order, with real
/// mtimes, the executable bit, uid/gid 0 and no user names; links to files
/// inside the template become copies; zstd-compressed with a checksum.
pub fn pack_template_with_limits(
    template: &PreparedTemplate,
    limits: &BundleLimits,
) -> Result<SourceBundle, BundleError> {
    pack_dir(&template.dir, limits)
}

/// One thing to put in the archive.
struct PackItem {
    rel: String,
    kind: PackKind,
}

enum PackKind {
    Dir,
    File { data: Vec<u8>, executable: bool, mtime: u64 },
}

/// Packs `dir` (see [`pack_template_with_limits`]).
pub fn pack_dir(dir: &Path, limits: &BundleLimits) -> Result<SourceBundle, BundleError> {
    let root = dir.canonicalize().map_err(|source| BundleError::ReadTemplate { path: dir.to_path_buf(), source })?;
    let mut walker = PackWalker { root: &root, limits, items: Vec::new(), total: 0 };
    walker.walk(&root, "")?;
    let items = walker.items;

    let mut builder = tar::Builder::new(Vec::new());
    let mut files = 0;
    let mut unpacked_size = 0u64;
    for item in &items {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        match &item.kind {
            PackKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_mtime(0);
                header.set_size(0);
                builder.append_data(&mut header, &item.rel, io::empty()).map_err(BundleError::Compress)?;
            }
            PackKind::File { data, executable, mtime } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(if *executable { 0o755 } else { 0o644 });
                header.set_mtime(*mtime);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, &item.rel, data.as_slice()).map_err(BundleError::Compress)?;
                files += 1;
                unpacked_size += data.len() as u64;
            }
        }
    }
    let tar_bytes = builder.into_inner().map_err(BundleError::Compress)?;

    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL).map_err(BundleError::Compress)?;
    encoder.include_checksum(true).map_err(BundleError::Compress)?;
    encoder.write_all(&tar_bytes).map_err(BundleError::Compress)?;
    let bytes = encoder.finish().map_err(BundleError::Compress)?;
    if bytes.len() as u64 > limits.max_compressed {
        return Err(BundleError::TemplateTooLarge {
            path: root,
            what: format!("{} bytes compressed, over the limit of {}", bytes.len(), limits.max_compressed),
        });
    }
    let sha256 = bundle_sha256(&bytes);
    Ok(SourceBundle { bytes, sha256, files, unpacked_size })
}

struct PackWalker<'a> {
    root: &'a Path,
    limits: &'a BundleLimits,
    items: Vec<PackItem>,
    total: u64,
}

impl PackWalker<'_> {
    fn walk(&mut self, dir: &Path, prefix: &str) -> Result<(), BundleError> {
        let read_err = |source| BundleError::ReadTemplate { path: dir.to_path_buf(), source };
        let mut children = Vec::new();
        for entry in fs::read_dir(dir).map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
            children.push(entry.file_name());
        }
        children.sort();
        for name in children {
            let path = dir.join(&name);
            let Some(name) = name.to_str() else {
                return Err(BundleError::TemplateName { path, reason: "the name is not UTF-8".into() });
            };
            let rel = if prefix.is_empty() { name.to_owned() } else { format!("{prefix}/{name}") };
            let meta = fs::symlink_metadata(&path)
                .map_err(|source| BundleError::ReadTemplate { path: path.clone(), source })?;
            let file_type = meta.file_type();
            if file_type.is_dir() {
                if name == ".git" || (prefix.is_empty() && name == CARGO_TARGET_DIR) {
                    continue;
                }
                self.check_name(&path, &rel)?;
                self.push(PackItem { rel: rel.clone(), kind: PackKind::Dir })?;
                self.walk(&path, &rel)?;
            } else if file_type.is_file() {
                self.check_name(&path, &rel)?;
                self.push_file(&path, &path, rel, &meta)?;
            } else if file_type.is_symlink() {
                if prefix.is_empty() && name == CARGO_TARGET_DIR {
                    continue;
                }
                self.check_name(&path, &rel)?;
                let refuse = |reason: String| BundleError::TemplateSymlink { path: path.clone(), reason };
                let target = match path.canonicalize() {
                    Ok(target) => target,
                    Err(e) => return Err(refuse(format!("cannot be resolved ({e})"))),
                };
                if !target.starts_with(self.root) {
                    return Err(refuse(format!("points outside the template, to {}", target.display())));
                }
                let target_meta = fs::metadata(&target).map_err(|e| refuse(format!("cannot be resolved ({e})")))?;
                if !target_meta.is_file() {
                    return Err(refuse(format!("points to {}, which is not a regular file", target.display())));
                }
                self.push_file(&path, &target, rel, &target_meta)?;
            } else {
                return Err(BundleError::TemplateSpecialFile { path, kind: special_kind(&file_type) });
            }
        }
        Ok(())
    }

    /// Applies the unpacker's naming rules, so a bad name fails here.
    fn check_name(&self, path: &Path, rel: &str) -> Result<(), BundleError> {
        match check_entry_path(rel.as_bytes()) {
            Ok(_) => Ok(()),
            Err(e) => Err(BundleError::TemplateName { path: path.to_path_buf(), reason: e.to_string() }),
        }
    }

    fn push(&mut self, item: PackItem) -> Result<(), BundleError> {
        if self.items.len() >= self.limits.max_entries {
            return Err(self.too_large(format!("more than {} files and directories", self.limits.max_entries)));
        }
        self.items.push(item);
        Ok(())
    }

    fn push_file(&mut self, path: &Path, source: &Path, rel: String, meta: &fs::Metadata) -> Result<(), BundleError> {
        if meta.len() > self.limits.max_file {
            return Err(self.too_large(format!(
                "{} is {} bytes, over the per-file limit of {}",
                path.display(),
                meta.len(),
                self.limits.max_file
            )));
        }
        let read_err = |source| BundleError::ReadTemplate { path: path.to_path_buf(), source };
        let mut data = Vec::new();
        File::open(source)
            .map_err(read_err)?
            .take(self.limits.max_file.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(read_err)?;
        let size = data.len() as u64;
        if size > self.limits.max_file {
            return Err(self.too_large(format!(
                "{} is over the per-file limit of {} bytes",
                path.display(),
                self.limits.max_file
            )));
        }
        self.total = self.total.saturating_add(size);
        if self.total > self.limits.max_unpacked_total {
            return Err(self.too_large(format!(
                "its files add up to more than the limit of {} bytes",
                self.limits.max_unpacked_total
            )));
        }
        let mtime = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
        let executable = is_executable(meta);
        self.push(PackItem { rel, kind: PackKind::File { data, executable, mtime } })
    }

    fn too_large(&self, what: String) -> BundleError {
        BundleError::TemplateTooLarge { path: self.root.to_path_buf(), what }
    }
}

#[cfg(unix)]
fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &fs::Metadata) -> bool {
    false
}

#[cfg(unix)]
fn special_kind(file_type: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_fifo() {
        "fifo"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_file_type: &fs::FileType) -> &'static str {
    "special file"
}

// ---------------------------------------------------------------------------
// Validation (pass one)
// ---------------------------------------------------------------------------

/// A bundle that passed every check, held in memory.
struct Validated {
    /// Every directory, listed or implied, sorted so parents come first.
    dirs: BTreeSet<String>,
    /// Every file by path.
    files: BTreeMap<String, FileEntry>,
    total: u64,
}

struct FileEntry {
    data: Vec<u8>,
    executable: bool,
    mtime: u64,
}

/// A reader that fails once more than `remaining` bytes came out of it and
/// records that it did.
struct Capped<'a, R> {
    inner: R,
    remaining: u64,
    tripped: &'a Cell<bool>,
}

impl<R: Read> Read for Capped<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tripped.get() {
            return Err(io::Error::other("decompressed size limit exceeded"));
        }
        let n = self.inner.read(buf)?;
        match self.remaining.checked_sub(n as u64) {
            Some(left) => {
                self.remaining = left;
                Ok(n)
            }
            None => {
                self.tripped.set(true);
                Err(io::Error::other("decompressed size limit exceeded"))
            }
        }
    }
}

/// Decodes and checks the whole bundle; writes nothing.
fn validate(bytes: &[u8], limits: &BundleLimits) -> Result<Validated, BundleError> {
    let size = bytes.len() as u64;
    if size > limits.max_compressed {
        return Err(BundleError::CompressedTooLarge { size, limit: limits.max_compressed });
    }
    if !bytes.starts_with(&ZSTD_MAGIC) {
        return Err(BundleError::Corrupt { reason: "not a zstd stream (bad magic number)".into() });
    }
    let corrupt = |e: io::Error| BundleError::Corrupt { reason: e.to_string() };
    let mut decoder = zstd::stream::read::Decoder::with_buffer(bytes).map_err(corrupt)?;
    decoder.window_log_max(WINDOW_LOG_MAX).map_err(corrupt)?;
    let stream_limit = limits.max_stream();
    let tripped = Cell::new(false);
    let capped = Capped { inner: decoder, remaining: stream_limit, tripped: &tripped };
    // Any decoding error: the cap, if it tripped, else corruption.
    let decode_err = |e: io::Error| {
        if tripped.get() {
            BundleError::DecompressedTooLarge { limit: stream_limit }
        } else {
            BundleError::Corrupt { reason: e.to_string() }
        }
    };

    let mut archive = tar::Archive::new(capped);
    let mut out = Validated { dirs: BTreeSet::new(), files: BTreeMap::new(), total: 0 };
    let mut explicit_dirs = BTreeSet::new();
    let mut count = 0usize;
    for entry in archive.entries().map_err(decode_err)? {
        let mut entry = entry.map_err(decode_err)?;
        count += 1;
        if count > limits.max_entries {
            return Err(BundleError::TooManyEntries { limit: limits.max_entries });
        }
        let raw_path = entry.path_bytes().into_owned();
        let path = check_entry_path(&raw_path)?;
        let entry_type = entry.header().entry_type();
        let is_dir = match entry_type {
            tar::EntryType::Regular => false,
            tar::EntryType::Directory => true,
            other => return Err(BundleError::ForbiddenType { path, kind: type_name(other) }),
        };
        // Every parent is a directory, never a file.
        for (i, _) in path.match_indices('/') {
            let parent = &path[..i];
            if out.files.contains_key(parent) {
                return Err(BundleError::Duplicate { path: parent.to_owned() });
            }
            out.dirs.insert(parent.to_owned());
        }
        if out.files.contains_key(&path) {
            return Err(BundleError::Duplicate { path });
        }
        if is_dir {
            if !explicit_dirs.insert(path.clone()) {
                return Err(BundleError::Duplicate { path });
            }
            out.dirs.insert(path);
            continue;
        }
        if out.dirs.contains(&path) {
            return Err(BundleError::Duplicate { path });
        }
        let size = entry.size();
        if size > limits.max_file {
            return Err(BundleError::FileTooLarge { path, size, limit: limits.max_file });
        }
        out.total = out.total.saturating_add(size);
        if out.total > limits.max_unpacked_total {
            return Err(BundleError::TotalTooLarge { path, limit: limits.max_unpacked_total });
        }
        let header_err = |e: io::Error| BundleError::Corrupt { reason: format!("entry `{path}`: {e}") };
        let mode = entry.header().mode().map_err(header_err)?;
        let mtime = entry.header().mtime().map_err(header_err)?;
        let capacity = usize::try_from(size.min(1 << 20)).unwrap_or(0);
        let mut data = Vec::with_capacity(capacity);
        (&mut entry).take(size).read_to_end(&mut data).map_err(decode_err)?;
        if data.len() as u64 != size {
            return Err(BundleError::Corrupt {
                reason: format!("entry `{path}` is truncated: {} of {size} bytes", data.len()),
            });
        }
        out.files.insert(path, FileEntry { data, executable: mode & 0o111 != 0, mtime });
    }
    // Read the rest of the stream: the zstd frame must end cleanly (its
    // checksum checked), and trailing data counts against the cap.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(decode_err)?;
    if out.files.is_empty() && out.dirs.is_empty() {
        return Err(BundleError::Corrupt { reason: "the archive has no entries".into() });
    }
    Ok(out)
}

/// Checks an entry's path and returns it without a trailing `/`.
fn check_entry_path(raw: &[u8]) -> Result<String, BundleError> {
    let shown = String::from_utf8_lossy(raw).into_owned();
    let bad = |reason| BundleError::BadName { path: shown.clone(), reason };
    let escapes = || BundleError::Escapes { path: shown.clone() };
    if raw.is_empty() {
        return Err(bad("empty path"));
    }
    if raw.len() > MAX_PATH_LEN {
        return Err(bad("longer than 1024 bytes"));
    }
    if raw[0] == b'/' || raw[0] == b'\\' {
        return Err(escapes());
    }
    // Backslashes separate on Windows agents: `..` between them escapes too.
    if raw.split(|&b| b == b'/' || b == b'\\').any(|c| c == b"..") {
        return Err(escapes());
    }
    // `C:x` is relative to drive C's current directory on Windows.
    if raw.len() >= 2 && raw[1] == b':' && raw[0].is_ascii_alphabetic() {
        return Err(escapes());
    }
    let Ok(text) = std::str::from_utf8(raw) else {
        return Err(bad("not UTF-8"));
    };
    let text = text.strip_suffix('/').unwrap_or(text);
    if text.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    if text.contains('\\') {
        return Err(bad("contains a backslash"));
    }
    if text.contains(':') {
        return Err(bad("contains `:`, a drive or stream separator on Windows"));
    }
    for component in text.split('/') {
        match component {
            "" => return Err(bad("empty path component")),
            "." => return Err(bad("`.` path component")),
            _ => {}
        }
    }
    if text.split('/').next() == Some(CARGO_TARGET_DIR) {
        return Err(bad("`target` is reserved for cargo's output"));
    }
    if !Path::new(text).components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(escapes());
    }
    Ok(text.to_owned())
}

fn type_name(entry_type: tar::EntryType) -> String {
    match entry_type {
        tar::EntryType::Symlink => "symbolic link".into(),
        tar::EntryType::Link => "hard link".into(),
        tar::EntryType::Char => "character device".into(),
        tar::EntryType::Block => "block device".into(),
        tar::EntryType::Fifo => "fifo".into(),
        tar::EntryType::Continuous => "contiguous file".into(),
        tar::EntryType::GNUSparse => "sparse file".into(),
        tar::EntryType::XGlobalHeader => "pax global header".into(),
        other => format!("tar entry of type {:?}", other.as_byte() as char),
    }
}

// ---------------------------------------------------------------------------
// Writing (pass two)
// ---------------------------------------------------------------------------

/// Unpacks a bundle into `dest`, which must be an empty or absent directory.
///
/// The whole bundle is decoded and checked first (see the module docs);
/// nothing is created, not even `dest`, unless every entry passes. Files get
/// mode 0644, or 0755 if the bundle marks them executable (no setuid, setgid
/// or sticky bits), and the bundle's mtimes (a future mtime becomes now).
/// Directories get mode 0755. If writing fails midway, what was written is
/// removed again.
pub fn unpack_bundle(bytes: &[u8], dest: &Path, limits: &BundleLimits) -> Result<UnpackReport, BundleError> {
    let destination = |reason: String| BundleError::Destination { path: dest.to_path_buf(), reason };
    let exists = destination_exists(dest, true)?;

    let bundle = validate(bytes, limits)?;

    if !exists {
        fs::create_dir_all(dest).map_err(|e| destination(e.to_string()))?;
    }
    let now = SystemTime::now();
    let result = write_all_fresh(&bundle, dest, now);
    if result.is_err() {
        if exists {
            remove_contents(dest);
        } else {
            let _ = fs::remove_dir_all(dest);
        }
    }
    result?;
    Ok(UnpackReport {
        files: bundle.files.len(),
        directories: bundle.dirs.len(),
        unpacked_size: bundle.total,
        written: bundle.files.len(),
        unchanged: 0,
        removed: 0,
    })
}

fn write_all_fresh(bundle: &Validated, dest: &Path, now: SystemTime) -> Result<(), BundleError> {
    for dir in &bundle.dirs {
        let path = dest.join(dir);
        create_dir(&path).map_err(|source| BundleError::Write { entry: dir.clone(), path, source })?;
    }
    for (rel, file) in &bundle.files {
        let path = dest.join(rel);
        write_new_file(&path, file, mtime_of(file.mtime, now)).map_err(|source| BundleError::Write {
            entry: rel.clone(),
            path,
            source,
        })?;
    }
    Ok(())
}

/// Best-effort removal of everything inside `dir` (never following links).
fn remove_contents(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => {
                    let _ = fs::remove_dir_all(&path);
                }
                _ => {
                    let _ = fs::remove_file(&path);
                }
            }
        }
    }
}

/// Whether `dest` exists as a real directory (never a link or a file);
/// with `must_be_empty`, an existing one must also be empty.
fn destination_exists(dest: &Path, must_be_empty: bool) -> Result<bool, BundleError> {
    let destination = |reason: String| BundleError::Destination { path: dest.to_path_buf(), reason };
    match fs::symlink_metadata(dest) {
        Ok(meta) if meta.is_dir() => {
            if must_be_empty && fs::read_dir(dest).map_err(|e| destination(e.to_string()))?.next().is_some() {
                return Err(destination("the directory is not empty".into()));
            }
            Ok(true)
        }
        Ok(meta) if meta.file_type().is_symlink() => Err(destination("it is a symbolic link, not a directory".into())),
        Ok(_) => Err(destination("it exists and is not a directory".into())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(destination(e.to_string())),
    }
}

/// Updates a warm directory to match a bundle, for incremental builds.
///
/// Validates exactly like [`unpack_bundle`] before touching anything; then
/// writes only files that are new or whose content differs (with the current
/// time as mtime, so cargo sees them as changed), leaves identical files and
/// their mtimes alone (so cargo does not rebuild them), fixes the executable
/// bit, replaces links, files or directories standing where the bundle has
/// something else (never writing through a link), and removes everything the
/// bundle no longer has. `target/` at the top of `dest` is never touched.
/// `dest` is created if absent; it must not be a link. A write failure
/// midway leaves `dest` partly updated; the next sync completes it.
pub fn sync_bundle(bytes: &[u8], dest: &Path, limits: &BundleLimits) -> Result<UnpackReport, BundleError> {
    let destination = |reason: String| BundleError::Destination { path: dest.to_path_buf(), reason };
    let exists = destination_exists(dest, false)?;

    let bundle = validate(bytes, limits)?;

    if !exists {
        fs::create_dir_all(dest).map_err(|e| destination(e.to_string()))?;
    }
    let now = SystemTime::now();
    let mut report = UnpackReport {
        files: bundle.files.len(),
        directories: bundle.dirs.len(),
        unpacked_size: bundle.total,
        ..UnpackReport::default()
    };
    for dir in &bundle.dirs {
        let path = dest.join(dir);
        ensure_dir(&path).map_err(|source| BundleError::Write { entry: dir.clone(), path, source })?;
    }
    for (rel, file) in &bundle.files {
        let path = dest.join(rel);
        let changed = sync_file(&path, rel, file, &bundle, now).map_err(|source| BundleError::Write {
            entry: rel.clone(),
            path,
            source,
        })?;
        if changed {
            report.written += 1;
        } else {
            report.unchanged += 1;
        }
    }
    report.removed = remove_stale(dest, "", &bundle)?;
    Ok(report)
}

/// Makes `path` a real directory, replacing a file or link standing there.
fn ensure_dir(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => {
            fs::remove_file(path)?;
            create_dir(path)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_dir(path),
        Err(e) => Err(e),
    }
}

/// Brings one file up to date; returns whether it was written.
fn sync_file(path: &Path, rel: &str, file: &FileEntry, bundle: &Validated, now: SystemTime) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => {
            if meta.len() == file.data.len() as u64 && read_no_follow(path)? == file.data {
                if is_executable(&meta) != file.executable {
                    set_mode(path, file.executable)?;
                }
                return Ok(false);
            }
        }
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path)?,
        // A link or special file: `rename` below replaces it, never follows it.
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let temp = temp_path(path, rel, bundle);
    match fs::symlink_metadata(&temp) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(&temp)?,
        Ok(_) => fs::remove_file(&temp)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Err(e) = write_new_file(&temp, file, now) {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    if let Err(e) = fs::rename(&temp, path) {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    Ok(true)
}

/// A name next to `path` for writing its new content, that no bundle entry
/// uses (a leftover from a crash is removed by the stale-file sweep).
fn temp_path(path: &Path, rel: &str, bundle: &Validated) -> PathBuf {
    let mut n = 0u32;
    loop {
        let suffix = format!(".rustle-sync-{n}");
        let candidate = format!("{rel}{suffix}");
        if !bundle.files.contains_key(&candidate) && !bundle.dirs.contains(&candidate) {
            let mut name = path.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
            name.push(&suffix);
            return path.with_file_name(name);
        }
        n += 1;
    }
}

/// Removes what the bundle does not have; returns how many entries.
fn remove_stale(dir: &Path, prefix: &str, bundle: &Validated) -> Result<usize, BundleError> {
    let write_err = |entry: &str, path: &Path, source| BundleError::Write {
        entry: entry.to_owned(),
        path: path.to_path_buf(),
        source,
    };
    let mut removed = 0;
    let entries = fs::read_dir(dir).map_err(|e| write_err(prefix, dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| write_err(prefix, dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let rel = name.to_str().map(|n| if prefix.is_empty() { n.to_owned() } else { format!("{prefix}/{n}") });
        if prefix.is_empty() && rel.as_deref() == Some(CARGO_TARGET_DIR) {
            continue;
        }
        let file_type = entry.file_type().map_err(|e| write_err(prefix, &path, e))?;
        let shown = rel.clone().unwrap_or_else(|| name.to_string_lossy().into_owned());
        match rel {
            Some(rel) if file_type.is_dir() && bundle.dirs.contains(&rel) => {
                removed += remove_stale(&path, &rel, bundle)?;
            }
            Some(rel) if file_type.is_file() && bundle.files.contains_key(&rel) => {}
            _ => {
                let result = if file_type.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
                result.map_err(|e| write_err(&shown, &path, e))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// The mtime to give a file: the bundle's, unless it is in the future.
fn mtime_of(secs: u64, now: SystemTime) -> SystemTime {
    match UNIX_EPOCH.checked_add(Duration::from_secs(secs)) {
        Some(t) if t <= now => t,
        _ => now,
    }
}

fn create_dir(path: &Path) -> io::Result<()> {
    #[cfg_attr(not(unix), expect(unused_mut, reason = "the mode is set on Unix only"))]
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o755);
    }
    builder.create(path)
}

/// Creates `path` (which must not exist, not even as a link), writes the
/// file and sets its mode and mtime.
fn write_new_file(path: &Path, file: &FileEntry, mtime: SystemTime) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if file.executable { 0o755 } else { 0o644 }).custom_flags(libc::O_NOFOLLOW);
    }
    let mut handle = options.open(path)?;
    handle.write_all(&file.data)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The umask may have cleared bits; the mode is ours to decide.
        handle.set_permissions(fs::Permissions::from_mode(if file.executable { 0o755 } else { 0o644 }))?;
    }
    handle.set_times(FileTimes::new().set_modified(mtime).set_accessed(mtime))?;
    Ok(())
}

fn read_no_follow(path: &Path) -> io::Result<Vec<u8>> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    let mut data = Vec::new();
    options.open(path)?.read_to_end(&mut data)?;
    Ok(data)
}

#[cfg(unix)]
fn set_mode(path: &Path, executable: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(if executable { 0o755 } else { 0o644 }))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _executable: bool) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_entry_paths_are_checked() {
        for ok in ["a", "src/main.rs", "dir/", "a b/c-d.rs", ".cargo/config.toml", "targets/x"] {
            assert!(check_entry_path(ok.as_bytes()).is_ok(), "{ok}");
        }
        for escape in ["/abs", "../x", "a/../../b", "..", "a/..", "\\x", "a\\..\\..\\b", "C:evil", "c:/x"] {
            assert!(matches!(check_entry_path(escape.as_bytes()), Err(BundleError::Escapes { .. })), "{escape}");
        }
        for bad in ["", "a//b", "./a", "a/./b", "a\\b", "ab:c", "target", "target/debug/x", "a\0b"] {
            assert!(matches!(check_entry_path(bad.as_bytes()), Err(BundleError::BadName { .. })), "{bad:?}");
        }
        assert!(matches!(check_entry_path(b"a/\xff"), Err(BundleError::BadName { .. })));
        assert!(matches!(check_entry_path(&[b'a'; MAX_PATH_LEN + 1]), Err(BundleError::BadName { .. })));
    }

    #[test]
    fn bundle_future_mtimes_become_now() {
        let now = SystemTime::now();
        assert_eq!(mtime_of(u64::MAX, now), now);
        assert_eq!(mtime_of(10, now), UNIX_EPOCH + Duration::from_secs(10));
    }

    #[test]
    fn bundle_sha256_is_lowercase_hex() {
        assert_eq!(bundle_sha256(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn bundle_error_names_entry_and_rule() {
        let e = check_entry_path(b"../../etc/passwd").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("bundle entry `../../etc/passwd` escapes the job directory; rejected before anything was written")
        );
    }
}
