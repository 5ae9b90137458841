//! Source bundles: packing the example template, unpacking it faithfully,
//! syncing a warm directory, and refusing hostile archives without writing
//! anything.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use rustle_engine::bundle::{BundleError, BundleLimits, pack_dir, pack_template, sync_bundle, unpack_bundle};
use rustle_engine::template::TemplateSource;

fn example_template() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello-template")
}

/// Every file and directory under `root` (not following links), by relative
/// path: `None` for a directory, the content for a file.
fn tree(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
        for entry in fs::read_dir(dir).expect("read_dir") {
            let entry = entry.expect("dir entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                if prefix.is_empty() && (rel == "target" || rel == ".git") {
                    continue;
                }
                out.insert(rel.clone(), None);
                walk(&entry.path(), &rel, out);
            } else {
                assert!(kind.is_file(), "{rel} is not a regular file");
                out.insert(rel, Some(fs::read(entry.path()).expect("read")));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, "", &mut out);
    out
}

fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path).expect("metadata").modified().expect("mtime")
}

fn whole_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).expect("after epoch").as_secs()
}

/// Writes `files` under a fresh template directory with a Cargo.toml.
fn write_template(root: &Path, files: &[(&str, &str)]) {
    fs::create_dir_all(root.join("src")).expect("mkdir");
    fs::write(root.join("Cargo.toml"), "[package]\nname = \"t\"\nversion = \"0.1.0\"\nedition = \"2021\"\n")
        .expect("write");
    for (rel, text) in files {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    }
}

#[test]
fn bundle_round_trip_of_example_template() {
    let prepared = TemplateSource::Dir(example_template()).prepare(Path::new("/nonexistent")).expect("prepare");
    let bundle = pack_template(&prepared).expect("pack");
    assert_eq!(bundle.sha256, rustle_engine::bundle::bundle_sha256(&bundle.bytes));
    assert_eq!(bundle.sha256.len(), 64);
    let original = tree(&prepared.dir);
    let file_count = original.values().filter(|v| v.is_some()).count();
    assert_eq!(bundle.files, file_count);
    assert!(original.contains_key("Cargo.lock"), "the example has a Cargo.lock and it must travel");

    let scratch = tempfile::tempdir().expect("tempdir");
    let job = scratch.path().join("job");
    let report = unpack_bundle(&bundle.bytes, &job, &BundleLimits::default()).expect("unpack");
    assert_eq!(report.files, file_count);
    assert_eq!(report.written, file_count);
    assert_eq!(report.unpacked_size, bundle.unpacked_size);
    assert_eq!(tree(&job), original);

    // Packing is deterministic for an unchanged tree.
    assert_eq!(pack_template(&prepared).expect("pack again").bytes, bundle.bytes);
}

#[test]
fn bundle_preserves_mtimes_and_executable_bit() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let src = scratch.path().join("src-template");
    write_template(&src, &[("src/main.rs", "fn main() {}\n"), ("run.sh", "#!/bin/sh\n")]);
    let old = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    fs::File::options().write(true).open(src.join("src/main.rs")).expect("open").set_modified(old).expect("touch");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(src.join("run.sh"), fs::Permissions::from_mode(0o4775)).expect("chmod");
    }
    let bundle = pack_dir(&src, &BundleLimits::default()).expect("pack");
    let job = scratch.path().join("job");
    unpack_bundle(&bundle.bytes, &job, &BundleLimits::default()).expect("unpack");
    assert_eq!(mtime(&job.join("src/main.rs")), old);
    assert_eq!(whole_seconds(mtime(&job.join("Cargo.toml"))), whole_seconds(mtime(&src.join("Cargo.toml"))));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| fs::metadata(job.join(p)).expect("meta").permissions().mode() & 0o7777;
        assert_eq!(mode("run.sh"), 0o755, "executable kept, setuid and group write dropped");
        assert_eq!(mode("src/main.rs"), 0o644);
    }
}

#[test]
fn bundle_skips_target_and_git_and_copies_in_tree_file_links() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let src = scratch.path().join("t");
    write_template(
        &src,
        &[("src/main.rs", "fn main() {}\n"), ("target/debug/junk", "x"), (".git/HEAD", "ref"), ("sub/.git/x", "y")],
    );
    #[cfg(unix)]
    std::os::unix::fs::symlink("main.rs", src.join("src/alias.rs")).expect("symlink");
    let bundle = pack_dir(&src, &BundleLimits::default()).expect("pack");
    let job = scratch.path().join("job");
    unpack_bundle(&bundle.bytes, &job, &BundleLimits::default()).expect("unpack");
    let got = tree(&job);
    assert!(!job.join("target").exists());
    assert!(!job.join(".git").exists());
    assert!(!job.join("sub/.git").exists());
    assert_eq!(got.get("src/main.rs"), Some(&Some(b"fn main() {}\n".to_vec())));
    #[cfg(unix)]
    {
        assert_eq!(got.get("src/alias.rs"), Some(&Some(b"fn main() {}\n".to_vec())));
        assert!(fs::symlink_metadata(job.join("src/alias.rs")).expect("meta").is_file());
    }
}

#[cfg(unix)]
#[test]
fn bundle_pack_refuses_links_out_of_the_template() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let src = scratch.path().join("t");
    write_template(&src, &[("src/main.rs", "fn main() {}\n")]);
    fs::write(scratch.path().join("secret"), "s").expect("write");
    std::os::unix::fs::symlink("../../secret", src.join("src/leak.rs")).expect("symlink");
    let err = pack_dir(&src, &BundleLimits::default()).expect_err("must refuse");
    assert!(matches!(err, BundleError::TemplateSymlink { .. }), "{err}");
    assert!(err.to_string().contains("outside the template"), "{err}");

    fs::remove_file(src.join("src/leak.rs")).expect("rm");
    std::os::unix::fs::symlink("src", src.join("dirlink")).expect("symlink");
    let err = pack_dir(&src, &BundleLimits::default()).expect_err("must refuse");
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[test]
fn bundle_pack_refuses_oversized_template() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let src = scratch.path().join("t");
    write_template(&src, &[("src/main.rs", &"x".repeat(2000))]);
    let limits = BundleLimits { max_file: 1000, ..BundleLimits::default() };
    let err = pack_dir(&src, &limits).expect_err("too large");
    assert!(matches!(err, BundleError::TemplateTooLarge { .. }), "{err}");
}

#[test]
fn bundle_sync_updates_only_changed_files() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let src = scratch.path().join("t");
    write_template(
        &src,
        &[("src/main.rs", "fn main() {}\n"), ("src/lib.rs", "pub fn a() {}\n"), ("src/gone.rs", "// old\n")],
    );
    // A file named like sync's temporary file must survive the sync.
    fs::write(src.join("src/lib.rs.rustle-sync-0"), "decoy").expect("write");
    let limits = BundleLimits::default();
    let dest = scratch.path().join("warm");
    let first = sync_bundle(&pack_dir(&src, &limits).expect("pack").bytes, &dest, &limits).expect("sync 1");
    assert_eq!(first.written, 5);
    assert_eq!(first.unchanged, 0);

    // Age the unpacked files so any rewrite is visible, and add cargo output.
    let old = UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    for rel in ["Cargo.toml", "src/main.rs", "src/lib.rs", "src/gone.rs"] {
        fs::File::options().write(true).open(dest.join(rel)).expect("open").set_modified(old).expect("touch");
    }
    fs::create_dir_all(dest.join("target/debug")).expect("mkdir");
    fs::write(dest.join("target/debug/out"), "cargo output").expect("write");
    fs::write(dest.join("stray.txt"), "not in the bundle").expect("write");

    // Change one file, remove one, add one; the rest keep their content but
    // get a new mtime in the template (as a checkout would give them).
    fs::write(src.join("src/lib.rs"), "pub fn a() { println!(\"changed\"); }\n").expect("write");
    fs::remove_file(src.join("src/gone.rs")).expect("rm");
    fs::write(src.join("src/new.rs"), "// new\n").expect("write");
    let before = SystemTime::now() - Duration::from_secs(1);
    let report = sync_bundle(&pack_dir(&src, &limits).expect("pack").bytes, &dest, &limits).expect("sync 2");
    assert_eq!(report.written, 2, "lib.rs and new.rs: {report:?}");
    assert_eq!(report.unchanged, 3, "Cargo.toml, main.rs and the decoy: {report:?}");
    assert_eq!(report.removed, 2, "gone.rs and stray.txt: {report:?}");

    assert_eq!(mtime(&dest.join("src/main.rs")), old, "unchanged file keeps its mtime");
    assert_eq!(mtime(&dest.join("Cargo.toml")), old, "unchanged file keeps its mtime");
    assert!(mtime(&dest.join("src/lib.rs")) >= before, "changed file is newer than any earlier build");
    assert!(mtime(&dest.join("src/new.rs")) >= before);
    assert!(!dest.join("src/gone.rs").exists());
    assert!(!dest.join("stray.txt").exists());
    assert_eq!(fs::read_to_string(dest.join("target/debug/out")).expect("read"), "cargo output", "target/ untouched");
    let mut expected = tree(&src);
    let mut got = tree(&dest);
    expected.remove("target");
    got.remove("target");
    assert_eq!(got, expected);
}

#[cfg(unix)]
#[test]
fn bundle_sync_replaces_links_without_following_them() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let src = scratch.path().join("t");
    write_template(&src, &[("src/main.rs", "fn main() {}\n")]);
    let outside = scratch.path().join("outside.rs");
    fs::write(&outside, "precious").expect("write");
    let outside_dir = scratch.path().join("outside-dir");
    fs::create_dir(&outside_dir).expect("mkdir");
    let dest = scratch.path().join("warm");
    fs::create_dir_all(&dest).expect("mkdir");
    std::os::unix::fs::symlink(&outside, dest.join("Cargo.toml")).expect("symlink");
    std::os::unix::fs::symlink(&outside_dir, dest.join("src")).expect("symlink");
    let limits = BundleLimits::default();
    sync_bundle(&pack_dir(&src, &limits).expect("pack").bytes, &dest, &limits).expect("sync");
    assert_eq!(fs::read_to_string(&outside).expect("read"), "precious");
    assert_eq!(fs::read_dir(&outside_dir).expect("read_dir").count(), 0);
    assert!(fs::symlink_metadata(dest.join("Cargo.toml")).expect("meta").is_file());
    assert!(fs::symlink_metadata(dest.join("src")).expect("meta").is_dir());
    assert_eq!(tree(&dest), tree(&src));
}

#[test]
fn bundle_unpack_refuses_non_empty_destination() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let src = scratch.path().join("t");
    write_template(&src, &[("src/main.rs", "fn main() {}\n")]);
    let bundle = pack_dir(&src, &BundleLimits::default()).expect("pack");
    let job = scratch.path().join("job");
    fs::create_dir(&job).expect("mkdir");
    fs::write(job.join("x"), "x").expect("write");
    let err = unpack_bundle(&bundle.bytes, &job, &BundleLimits::default()).expect_err("not empty");
    assert!(matches!(err, BundleError::Destination { .. }), "{err}");
    // An existing empty directory is fine.
    let empty = scratch.path().join("empty");
    fs::create_dir(&empty).expect("mkdir");
    unpack_bundle(&bundle.bytes, &empty, &BundleLimits::default()).expect("unpack into empty dir");
}

// ---------------------------------------------------------------------------
// Hostile archives
// ---------------------------------------------------------------------------

/// One raw tar entry: name bytes written straight into the header.
struct Raw<'a> {
    name: &'a [u8],
    kind: tar::EntryType,
    data: &'a [u8],
    link: &'a [u8],
    size: Option<u64>,
}

fn file(name: &[u8], data: &'static [u8]) -> Raw<'static> {
    Raw { name: name.to_vec().leak(), kind: tar::EntryType::Regular, data, link: b"", size: None }
}

fn special(name: &[u8], kind: tar::EntryType, link: &[u8]) -> Raw<'static> {
    Raw { name: name.to_vec().leak(), kind, data: b"", link: link.to_vec().leak(), size: None }
}

/// A tar built from raw headers, bypassing the `tar` crate's path checks.
fn raw_tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut header = tar::Header::new_gnu();
        let old = header.as_old_mut();
        old.name[..e.name.len()].copy_from_slice(e.name);
        old.linkname[..e.link.len()].copy_from_slice(e.link);
        header.set_entry_type(e.kind);
        header.set_mode(0o644);
        header.set_mtime(1_600_000_000);
        header.set_size(e.size.unwrap_or(e.data.len() as u64));
        header.set_cksum();
        builder.append(&header, e.data).expect("append");
    }
    builder.into_inner().expect("finish")
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(bytes, 3).expect("compress")
}

/// Unpacks into `scratch/job` and `sync`s into `scratch/warm`; both must
/// fail and leave `scratch` with nothing in it (the victim file aside).
fn assert_rejected(bytes: &[u8], limits: &BundleLimits, check: impl Fn(&BundleError) -> bool) {
    let scratch = tempfile::tempdir().expect("tempdir");
    let victim = scratch.path().join("victim");
    fs::write(&victim, "untouched").expect("write");
    let job = scratch.path().join("job");
    let err = unpack_bundle(bytes, &job, limits).expect_err("hostile bundle must be rejected");
    assert!(check(&err), "unexpected error: {err}");
    assert!(err.is_invalid_bundle(), "{err}");
    assert!(err.to_string().contains("rejected before anything was written"), "{err}");

    fs::create_dir(&job).expect("mkdir");
    let err = unpack_bundle(bytes, &job, limits).expect_err("rejected into an existing empty dir too");
    assert!(check(&err), "unexpected error: {err}");
    let warm = scratch.path().join("warm");
    let err = sync_bundle(bytes, &warm, limits).expect_err("sync must reject too");
    assert!(check(&err), "unexpected error: {err}");

    let mut left: Vec<String> = fs::read_dir(scratch.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["job", "victim"], "nothing but the (empty) job dir may exist");
    assert_eq!(fs::read_dir(&job).expect("read_dir").count(), 0, "job dir must stay empty");
    assert_eq!(fs::read_to_string(&victim).expect("read"), "untouched");
    // Nothing escaped further up either.
    if let Some(parent) = scratch.path().parent() {
        assert!(!parent.join("escape").exists());
    }
}

fn escapes(e: &BundleError) -> bool {
    matches!(e, BundleError::Escapes { .. })
}

fn forbidden(kind: &'static str) -> impl Fn(&BundleError) -> bool {
    move |e| matches!(e, BundleError::ForbiddenType { kind: k, .. } if k == kind)
}

fn ok_prefix() -> Raw<'static> {
    file(b"Cargo.toml", b"[package]\n")
}

#[test]
fn bundle_rejects_parent_dir_entry() {
    let bytes = zstd(&raw_tar(&[ok_prefix(), file(b"../escape", b"pwned")]));
    assert_rejected(&bytes, &BundleLimits::default(), escapes);
}

#[test]
fn bundle_rejects_absolute_entry() {
    let bytes = zstd(&raw_tar(&[ok_prefix(), file(b"/abs/path", b"pwned")]));
    assert_rejected(&bytes, &BundleLimits::default(), escapes);
}

#[test]
fn bundle_rejects_nested_parent_dir_entry() {
    let bytes = zstd(&raw_tar(&[ok_prefix(), file(b"a/../../b", b"pwned")]));
    assert_rejected(&bytes, &BundleLimits::default(), escapes);
    let err = unpack_bundle(&bytes, &tempfile::tempdir().expect("tmp").path().join("j"), &BundleLimits::default())
        .expect_err("rejected");
    assert_eq!(
        err.to_string(),
        "bundle entry `a/../../b` escapes the job directory; rejected before anything was written"
    );
}

#[test]
fn bundle_rejects_symlink_then_write_through_it() {
    let bytes = zstd(&raw_tar(&[
        ok_prefix(),
        special(b"passwd", tar::EntryType::Symlink, b"/etc/passwd"),
        file(b"passwd", b"root::0:0::/:/bin/sh\n"),
    ]));
    assert_rejected(&bytes, &BundleLimits::default(), forbidden("symbolic link"));
}

#[test]
fn bundle_rejects_symlink_to_parent_then_file_below_it() {
    let bytes = zstd(&raw_tar(&[special(b"x", tar::EntryType::Symlink, b".."), file(b"x/evil", b"pwned")]));
    assert_rejected(&bytes, &BundleLimits::default(), forbidden("symbolic link"));
}

#[test]
fn bundle_rejects_hard_link() {
    let bytes = zstd(&raw_tar(&[ok_prefix(), special(b"h", tar::EntryType::Link, b"/etc/shadow")]));
    assert_rejected(&bytes, &BundleLimits::default(), forbidden("hard link"));
}

#[test]
fn bundle_rejects_char_device() {
    let bytes = zstd(&raw_tar(&[ok_prefix(), special(b"dev", tar::EntryType::Char, b"")]));
    assert_rejected(&bytes, &BundleLimits::default(), forbidden("character device"));
}

#[test]
fn bundle_rejects_block_device_and_fifo() {
    let bytes = zstd(&raw_tar(&[ok_prefix(), special(b"blk", tar::EntryType::Block, b"")]));
    assert_rejected(&bytes, &BundleLimits::default(), forbidden("block device"));
    let bytes = zstd(&raw_tar(&[ok_prefix(), special(b"fifo", tar::EntryType::Fifo, b"")]));
    assert_rejected(&bytes, &BundleLimits::default(), forbidden("fifo"));
}

#[test]
fn bundle_rejects_oversized_file() {
    let big: &'static [u8] = vec![b'x'; 4096].leak();
    let bytes = zstd(&raw_tar(&[ok_prefix(), file(b"big.rs", big)]));
    let limits = BundleLimits { max_file: 1024, ..BundleLimits::default() };
    assert_rejected(&bytes, &limits, |e| matches!(e, BundleError::FileTooLarge { path, .. } if path == "big.rs"));
}

#[test]
fn bundle_rejects_oversized_total() {
    let part: &'static [u8] = vec![b'x'; 800].leak();
    let bytes = zstd(&raw_tar(&[file(b"a", part), file(b"b", part)]));
    let limits = BundleLimits { max_unpacked_total: 1000, ..BundleLimits::default() };
    assert_rejected(&bytes, &limits, |e| matches!(e, BundleError::TotalTooLarge { path, .. } if path == "b"));
}

#[test]
fn bundle_rejects_size_lie_in_header() {
    // A header claiming 1 TiB with little data behind it.
    let mut entry = file(b"huge", b"tiny");
    entry.size = Some(1 << 40);
    let bytes = zstd(&raw_tar(&[ok_prefix(), entry]));
    assert_rejected(&bytes, &BundleLimits::default(), |e| matches!(e, BundleError::FileTooLarge { .. }));
}

#[test]
fn bundle_rejects_too_many_entries() {
    let names: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    let entries: Vec<Raw<'_>> = names.iter().map(|n| file(n.as_bytes(), b"x")).collect();
    let bytes = zstd(&raw_tar(&entries));
    let limits = BundleLimits { max_entries: 10, ..BundleLimits::default() };
    assert_rejected(&bytes, &limits, |e| matches!(e, BundleError::TooManyEntries { limit: 10 }));
}

#[test]
fn bundle_rejects_duplicate_and_conflicting_entries() {
    let bytes = zstd(&raw_tar(&[file(b"a", b"1"), file(b"a", b"2")]));
    assert_rejected(&bytes, &BundleLimits::default(), |e| matches!(e, BundleError::Duplicate { .. }));
    let bytes = zstd(&raw_tar(&[file(b"a", b"1"), file(b"a/b", b"2")]));
    assert_rejected(&bytes, &BundleLimits::default(), |e| matches!(e, BundleError::Duplicate { .. }));
}

#[test]
fn bundle_rejects_reserved_and_unportable_names() {
    let bytes = zstd(&raw_tar(&[file(b"target/debug/x", b"1")]));
    assert_rejected(&bytes, &BundleLimits::default(), |e| matches!(e, BundleError::BadName { .. }));
    let bytes = zstd(&raw_tar(&[file(b"a\\..\\..\\b", b"1")]));
    assert_rejected(&bytes, &BundleLimits::default(), escapes);
}

#[test]
fn bundle_rejects_zstd_bomb() {
    // 64 MiB of zeros compresses to a few KiB.
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..64 {
        encoder.write_all(&chunk).expect("write");
    }
    let bomb = encoder.finish().expect("finish");
    assert!(bomb.len() < 16 * 1024, "bomb is {} bytes", bomb.len());
    let limits = BundleLimits { max_unpacked_total: 1 << 20, max_entries: 100, ..BundleLimits::default() };
    assert_rejected(&bomb, &limits, |e| matches!(e, BundleError::DecompressedTooLarge { .. }));

    // The same behind a valid first entry (the zeros end the archive early:
    // the rest must still be decoded under the cap, not ignored).
    let mut tar = raw_tar(&[ok_prefix()]);
    tar.truncate(1024);
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
    encoder.write_all(&tar).expect("write");
    for _ in 0..64 {
        encoder.write_all(&chunk).expect("write");
    }
    let bomb = encoder.finish().expect("finish");
    assert_rejected(&bomb, &limits, |e| matches!(e, BundleError::DecompressedTooLarge { .. }));

    // A tar entry honestly declaring a huge file stops at the total limit.
    let huge: &'static [u8] = vec![0u8; 8 << 20].leak();
    let bytes = zstd(&raw_tar(&[file(b"zeros", huge)]));
    assert!(bytes.len() < 64 * 1024);
    assert_rejected(&bytes, &limits, |e| {
        matches!(e, BundleError::FileTooLarge { .. } | BundleError::TotalTooLarge { .. })
    });
}

#[test]
fn bundle_rejects_compressed_over_limit() {
    let bytes = zstd(&raw_tar(&[ok_prefix()]));
    let limits = BundleLimits { max_compressed: 10, ..BundleLimits::default() };
    assert_rejected(&bytes, &limits, |e| matches!(e, BundleError::CompressedTooLarge { .. }));
}

#[test]
fn bundle_rejects_truncated_and_corrupted_zstd() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let src = scratch.path().join("t");
    write_template(&src, &[("src/main.rs", &"fn main() { println!(\"hi\"); }\n".repeat(200))]);
    let good = pack_dir(&src, &BundleLimits::default()).expect("pack").bytes;
    let corrupt = |e: &BundleError| matches!(e, BundleError::Corrupt { .. });

    for cut in [good.len() - 1, good.len() - 4, good.len() / 2, 5] {
        assert_rejected(&good[..cut], &BundleLimits::default(), corrupt);
    }
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    assert_rejected(&flipped, &BundleLimits::default(), corrupt);
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01; // the frame checksum
    assert_rejected(&flipped, &BundleLimits::default(), corrupt);
}

#[test]
fn bundle_rejects_garbage() {
    assert_rejected(b"", &BundleLimits::default(), |e| matches!(e, BundleError::Corrupt { .. }));
    assert_rejected(b"this is not a bundle at all", &BundleLimits::default(), |e| {
        matches!(e, BundleError::Corrupt { .. })
    });
    // Valid zstd, not a tar.
    let bytes = zstd(&[0x42; 2048]);
    assert_rejected(&bytes, &BundleLimits::default(), |e| matches!(e, BundleError::Corrupt { .. }));
    // Valid zstd of an empty archive.
    let bytes = zstd(&[0; 1024]);
    assert_rejected(&bytes, &BundleLimits::default(), |e| matches!(e, BundleError::Corrupt { .. }));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn bundle_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let scratch = tempfile::tempdir().expect("tempdir");
        let limits = BundleLimits { max_unpacked_total: 1 << 20, ..BundleLimits::default() };
        let _ = unpack_bundle(&bytes, &scratch.path().join("job"), &limits);
    }

    #[test]
    fn bundle_random_zstd_payload_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let scratch = tempfile::tempdir().expect("tempdir");
        let limits = BundleLimits { max_unpacked_total: 1 << 20, ..BundleLimits::default() };
        let _ = unpack_bundle(&zstd(&payload), &scratch.path().join("job"), &limits);
    }

    #[test]
    fn bundle_mutated_archive_never_panics(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut tar = raw_tar(&[ok_prefix(), file(b"src/main.rs", b"fn main() {}\n")]);
        for (at, value) in flips {
            let i = at.index(tar.len());
            tar[i] = value;
        }
        let scratch = tempfile::tempdir().expect("tempdir");
        let job = scratch.path().join("job");
        if unpack_bundle(&zstd(&tar), &job, &BundleLimits::default()).is_err() {
            prop_assert!(!job.exists());
        }
    }
}

#[test]
fn bundle_rejects_traversal_hidden_in_long_name_and_pax_records() {
    let long = format!("{}{}\0", "../".repeat(3), "a".repeat(200));
    let gnu = zstd(&raw_tar(&[
        Raw { name: b"././@LongLink", kind: tar::EntryType::GNULongName, data: long.as_bytes(), link: b"", size: None },
        file(b"innocent", b"pwned"),
    ]));
    assert_rejected(&gnu, &BundleLimits::default(), escapes);

    let record = "path=/tmp/evil\n";
    let pax = format!("{} {record}", record.len() + 3);
    let pax = zstd(&raw_tar(&[
        Raw { name: b"pax", kind: tar::EntryType::XHeader, data: pax.as_bytes(), link: b"", size: None },
        file(b"innocent", b"pwned"),
    ]));
    assert_rejected(&pax, &BundleLimits::default(), escapes);
}
