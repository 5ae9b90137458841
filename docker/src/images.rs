//! Build images: the families rustle-cross builds itself (Dockerfiles in
//! `docker/images/`), their content-derived tags, the base image made from
//! a debootstrap rootfs when there is no registry, pulls when there is one,
//! and the `ImageRegistry` read back from the images' labels.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{BuildImageOptionsBuilder, CreateImageOptionsBuilder, ListImagesOptionsBuilder};
use futures_util::StreamExt;
use rustle_process::ProcessSpec;
use sha2::{Digest, Sha256};

use crate::error::DockerError;

/// Label: the image family.
pub const LABEL_FAMILY: &str = "io.rustle-cross.family";
/// Label: the targets an image supports, space-separated.
pub const LABEL_TARGETS: &str = "io.rustle-cross.targets";
/// Label: `rustc -V` inside the image.
pub const LABEL_RUSTC: &str = "io.rustle-cross.rustc";
/// Label: the hash of what the image was built from (its tag).
pub const LABEL_INPUT_HASH: &str = "io.rustle-cross.input-hash";

/// The Debian release every image is built from.
const SUITE: &str = "bookworm";

/// One image family rustle-cross can build without a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageFamily {
    /// Its name (`linux-gnu`): the image is `rustle-cross/<name>:<tag>`.
    pub name: &'static str,
    /// The Dockerfile (`docker/images/<name>/Dockerfile`).
    pub dockerfile: &'static str,
    /// The targets it builds (also its `io.rustle-cross.targets` label;
    /// a unit test keeps the two equal).
    pub targets: &'static [&'static str],
}

/// Every family, in the order they are preferred for a target.
pub const FAMILIES: &[ImageFamily] = &[
    ImageFamily {
        name: "linux-gnu",
        dockerfile: include_str!("../images/linux-gnu/Dockerfile"),
        targets: &["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"],
    },
    ImageFamily {
        name: "windows-gnu",
        dockerfile: include_str!("../images/windows-gnu/Dockerfile"),
        targets: &["x86_64-pc-windows-gnu"],
    },
];

/// The families that build `triple`.
pub fn families_for(triple: &str) -> impl Iterator<Item = &'static ImageFamily> + '_ {
    FAMILIES.iter().filter(move |f| f.targets.contains(&triple))
}

/// An image with rustle-cross's labels, as the daemon has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerImage {
    /// Repository name (`rustle-cross/linux-gnu`).
    pub name: String,
    /// Tag (the input hash for images rustle-cross built).
    pub tag: String,
    /// The targets it supports.
    pub supported_targets: Vec<String>,
    /// `rustc -V` inside it.
    pub toolchain_version: String,
}

impl DockerImage {
    /// `name:tag`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
}

/// The build images the daemon has, read from their labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRegistry {
    /// Every labelled image.
    pub images: Vec<DockerImage>,
}

impl ImageRegistry {
    /// Reads every image carrying rustle-cross's family label.
    pub async fn read(docker: &Docker) -> Result<Self, DockerError> {
        let filters = HashMap::from([("label".to_owned(), vec![LABEL_FAMILY.to_owned()])]);
        let options = ListImagesOptionsBuilder::default().filters(&filters).build();
        let summaries = docker.list_images(Some(options)).await.map_err(|e| DockerError::api("list images", e))?;
        let mut images = Vec::new();
        for summary in summaries {
            let labels = summary.labels;
            let supported_targets: Vec<String> = labels
                .get(LABEL_TARGETS)
                .map(|t| t.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default();
            let toolchain_version = labels.get(LABEL_RUSTC).cloned().unwrap_or_else(|| "unknown".into());
            for reference in summary.repo_tags.iter().filter(|t| !t.ends_with(":<none>") && !t.ends_with("-stage")) {
                let Some((name, tag)) = reference.rsplit_once(':') else { continue };
                images.push(DockerImage {
                    name: name.to_owned(),
                    tag: tag.to_owned(),
                    supported_targets: supported_targets.clone(),
                    toolchain_version: toolchain_version.clone(),
                });
            }
        }
        images.sort_by_key(DockerImage::reference);
        Ok(Self { images })
    }

    /// The images that support `triple`.
    pub fn for_target<'a>(&'a self, triple: &'a str) -> impl Iterator<Item = &'a DockerImage> + 'a {
        self.images.iter().filter(move |i| i.supported_targets.iter().any(|t| t == triple))
    }
}

/// Where images come from and how they are built.
#[derive(Debug, Clone)]
pub struct ImageSource {
    /// The cache root: the base rootfs tarball lives under `docker/rootfs/`.
    pub cache_dir: PathBuf,
    /// The Debian mirror debootstrap and apt use.
    pub mirror: String,
    /// A registry to pull `rustle-cross/<family>:<tag>` from before
    /// building it here (`None`: never pull).
    pub registry: Option<String>,
    /// How long a pull may take.
    pub pull_timeout: Duration,
}

/// The tag of the base image: what the rootfs is made from.
pub fn base_tag(mirror: &str) -> String {
    short_hash(&[b"rustle-cross base v1", SUITE.as_bytes(), mirror.as_bytes(), SECURITY_SOURCES.as_bytes()])
}

/// The tag of `family`'s image on top of the base with `base_tag`.
pub fn family_tag(family: &ImageFamily, base_tag: &str) -> String {
    short_hash(&[b"rustle-cross image v1", family.dockerfile.as_bytes(), base_tag.as_bytes()])
}

fn short_hash(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    rustle_engine::template::hex(&hasher.finalize()[..6])
}

/// bookworm-security, added to the rootfs: rustc-web comes from there.
const SECURITY_SOURCES: &str = "deb http://deb.debian.org/debian-security bookworm-security main\n";

impl ImageSource {
    /// The image of `family`, built (with its base) unless the daemon has it
    /// already or the registry serves it. Returns the image's reference.
    pub async fn ensure_family(
        &self,
        docker: &Docker,
        family: &ImageFamily,
        log: &(dyn Fn(String) + Send + Sync),
    ) -> Result<DockerImage, DockerError> {
        let base = self.base_reference();
        let tag = family_tag(family, base.rsplit_once(':').map_or("", |(_, t)| t));
        let name = format!("rustle-cross/{}", family.name);
        let reference = format!("{name}:{tag}");
        if let Some(image) = labelled(docker, &reference).await? {
            return Ok(image);
        }
        // One builder at a time per cache: a second process waits, then
        // finds the image.
        let _lock = FileLock::acquire(&self.cache_dir.join("docker").join("images.lock")).await?;
        if let Some(image) = labelled(docker, &reference).await? {
            return Ok(image);
        }
        if let Some(registry) = &self.registry {
            let remote = format!("{registry}/{reference}");
            match pull(docker, &remote, self.pull_timeout).await {
                Ok(()) => {
                    docker
                        .tag_image(
                            &remote,
                            Some(
                                bollard::query_parameters::TagImageOptionsBuilder::default()
                                    .repo(&name)
                                    .tag(&tag)
                                    .build(),
                            ),
                        )
                        .await
                        .map_err(|e| DockerError::api(format!("tag {remote} as {reference}"), e))?;
                    if let Some(image) = labelled(docker, &reference).await? {
                        log(format!("pulled {remote}"));
                        return Ok(image);
                    }
                    log(format!("{remote} has no rustle-cross labels; building {reference} here instead"));
                }
                Err(error) => log(format!("{error}; building {reference} here instead")),
            }
        }
        self.ensure_base(docker, &base, log).await?;
        log(format!("building image {reference} (once; later builds reuse it)"));
        let stage = format!("{reference}-stage");
        let labels = HashMap::from([(LABEL_INPUT_HASH.to_owned(), tag.clone())]);
        build_dockerfile(docker, family.dockerfile, &stage, &[("BASE", base.as_str())], &labels, log).await?;
        // The toolchain's version is known only once the image exists: a
        // label-only layer on top records it.
        let version = run_once(docker, &stage, &["rustc", "-V"]).await?;
        let labelled_file = format!("FROM {stage}\nLABEL {LABEL_RUSTC}=\"{}\"\n", version.trim().replace('"', ""));
        build_dockerfile(docker, &labelled_file, &reference, &[], &HashMap::new(), log).await?;
        let _ = docker.remove_image(&stage, None::<bollard::query_parameters::RemoveImageOptions>, None).await;
        labelled(docker, &reference).await?.ok_or_else(|| DockerError::ImageBuild {
            image: reference.clone(),
            reason: "the built image has no rustle-cross labels".into(),
        })
    }

    /// `rustle-cross/base:<tag>`.
    pub fn base_reference(&self) -> String {
        format!("rustle-cross/base:{}", base_tag(&self.mirror))
    }

    /// The base image: imported from the cached rootfs tarball, which is
    /// made with debootstrap first when it is not cached.
    async fn ensure_base(
        &self,
        docker: &Docker,
        reference: &str,
        log: &(dyn Fn(String) + Send + Sync),
    ) -> Result<(), DockerError> {
        if docker.inspect_image(reference).await.is_ok() {
            return Ok(());
        }
        let tarball = self.rootfs_tarball();
        if !tarball.is_file() {
            log(format!("making the base rootfs with debootstrap (about a minute, once): {}", tarball.display()));
            make_rootfs(&tarball, &self.mirror).await?;
        }
        log(format!("importing {} as {reference}", tarball.display()));
        let bytes = tokio::fs::read(&tarball)
            .await
            .map_err(|e| DockerError::BaseRootfs { step: "read", reason: format!("{}: {e}", tarball.display()) })?;
        let (repo, tag) = reference.rsplit_once(':').unwrap_or((reference, "latest"));
        let options = CreateImageOptionsBuilder::default().from_src("-").repo(repo).tag(tag).build();
        let mut stream = docker.create_image(Some(options), Some(bollard::body_full(bytes.into())), None);
        while let Some(item) = stream.next().await {
            item.map_err(|e| DockerError::BaseRootfs { step: "docker import", reason: e.to_string() })?;
        }
        Ok(())
    }

    /// The cached rootfs tarball of the base image.
    pub fn rootfs_tarball(&self) -> PathBuf {
        self.cache_dir.join("docker").join("rootfs").join(format!("{SUITE}-minbase-{}.tar", base_tag(&self.mirror)))
    }
}

/// The image `reference` with rustle-cross's labels, if the daemon has it.
async fn labelled(docker: &Docker, reference: &str) -> Result<Option<DockerImage>, DockerError> {
    let Ok(inspect) = docker.inspect_image(reference).await else { return Ok(None) };
    let labels = inspect.config.and_then(|c| c.labels).unwrap_or_default();
    let (Some(targets), Some(rustc)) = (labels.get(LABEL_TARGETS), labels.get(LABEL_RUSTC)) else { return Ok(None) };
    let (name, tag) = reference.rsplit_once(':').unwrap_or((reference, "latest"));
    Ok(Some(DockerImage {
        name: name.to_owned(),
        tag: tag.to_owned(),
        supported_targets: targets.split_whitespace().map(str::to_owned).collect(),
        toolchain_version: rustc.clone(),
    }))
}

/// Pulls `reference` within `timeout`.
pub async fn pull(docker: &Docker, reference: &str, timeout: Duration) -> Result<(), DockerError> {
    let (repo, tag) = match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    };
    let options = CreateImageOptionsBuilder::default().from_image(repo).tag(tag).build();
    let pulling = async {
        let mut stream = docker.create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            item.map_err(|e| DockerError::Pull { image: reference.to_owned(), reason: e.to_string() })?;
        }
        Ok(())
    };
    tokio::time::timeout(timeout, pulling).await.unwrap_or_else(|_| {
        Err(DockerError::Pull {
            image: reference.to_owned(),
            reason: format!("no answer within {}s (is the registry reachable from the daemon?)", timeout.as_secs()),
        })
    })
}

/// Builds `dockerfile` (the only file of its context) as `tag`, on the host
/// network (apt reaches the mirror through it; there is no bridge).
async fn build_dockerfile(
    docker: &Docker,
    dockerfile: &str,
    tag: &str,
    args: &[(&str, &str)],
    labels: &HashMap<String, String>,
    log: &(dyn Fn(String) + Send + Sync),
) -> Result<(), DockerError> {
    let mut context = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    context
        .append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
        .and_then(|()| context.finish())
        .map_err(|e| DockerError::ImageBuild { image: tag.to_owned(), reason: e.to_string() })?;
    let context =
        context.into_inner().map_err(|e| DockerError::ImageBuild { image: tag.to_owned(), reason: e.to_string() })?;
    let buildargs: HashMap<String, String> = args.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(tag)
        .rm(true)
        .forcerm(true)
        .networkmode("host")
        .buildargs(&buildargs)
        .labels(labels)
        .build();
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    let mut tail: Vec<String> = Vec::new();
    while let Some(item) = stream.next().await {
        let info = item
            .map_err(|e| DockerError::ImageBuild { image: tag.to_owned(), reason: failure(&tail, &e.to_string()) })?;
        if let Some(detail) = info.error_detail.and_then(|d| d.message) {
            return Err(DockerError::ImageBuild { image: tag.to_owned(), reason: failure(&tail, &detail) });
        }
        if let Some(text) = info.stream {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                if line.starts_with("Step ") {
                    log(format!("{tag}: {line}"));
                }
                tail.push(line.to_owned());
                if tail.len() > 15 {
                    tail.remove(0);
                }
            }
        }
    }
    Ok(())
}

fn failure(tail: &[String], message: &str) -> String {
    format!("{message}; the build's last lines:\n{}", tail.join("\n"))
}

/// Runs `cmd` once in a throw-away container of `image` (network none) and
/// returns its stdout.
async fn run_once(docker: &Docker, image: &str, cmd: &[&str]) -> Result<String, DockerError> {
    let body = bollard::models::ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(cmd.iter().map(|s| (*s).to_owned()).collect()),
        labels: Some(HashMap::from([(crate::container::LABEL_OWNER.to_owned(), "probe".to_owned())])),
        host_config: Some(bollard::models::HostConfig { network_mode: Some("none".into()), ..Default::default() }),
        ..Default::default()
    };
    let created = docker
        .create_container(None::<bollard::query_parameters::CreateContainerOptions>, body)
        .await
        .map_err(|e| DockerError::api(format!("create a container of {image}"), e))?;
    let id = created.id;
    let result = async {
        docker
            .start_container(&id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(|e| DockerError::api("start", e))?;
        let mut wait = docker.wait_container(&id, None::<bollard::query_parameters::WaitContainerOptions>);
        while let Some(status) = wait.next().await {
            status.map_err(|e| DockerError::api(format!("run {cmd:?} in {image}"), e))?;
        }
        let options = bollard::query_parameters::LogsOptionsBuilder::default().stdout(true).build();
        let mut logs = docker.logs(&id, Some(options));
        let mut out = String::new();
        while let Some(chunk) = logs.next().await {
            out.push_str(&chunk.map_err(|e| DockerError::api("logs", e))?.to_string());
        }
        Ok(out)
    }
    .await;
    crate::container::remove(docker, &id).await;
    result
}

/// Makes the base rootfs tarball: `debootstrap --variant=minbase`, the
/// security sources added, packed with numeric owners. Written to a
/// temporary name and renamed, so a crash never leaves a partial tarball.
async fn make_rootfs(tarball: &Path, mirror: &str) -> Result<(), DockerError> {
    let dir = tarball.parent().unwrap_or(Path::new("."));
    let fail = |step: &'static str| move |reason: String| DockerError::BaseRootfs { step, reason };
    std::fs::create_dir_all(dir).map_err(|e| fail("mkdir")(format!("{}: {e}", dir.display())))?;
    let root = dir.join(format!("rootfs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let debootstrap = ProcessSpec::new("debootstrap")
        .args(["--variant=minbase", SUITE])
        .arg(&root)
        .arg(mirror)
        .timeout(Duration::from_secs(900));
    let result = async {
        let out = debootstrap.output().await.map_err(|e| {
            fail("debootstrap")(format!("{e} (install it with `apt-get install debootstrap`; it needs root)"))
        })?;
        if !out.status.success() {
            return Err(fail("debootstrap")(format!(
                "exit {}: {}",
                out.status,
                rustle_engine::toolchain::last_lines(&out.stderr_text(), 8)
            )));
        }
        std::fs::write(root.join("etc/apt/sources.list.d/security.list"), SECURITY_SOURCES)
            .map_err(|e| fail("sources")(e.to_string()))?;
        let partial = tarball.with_extension("tar.partial");
        let out = ProcessSpec::new("tar")
            .arg("--numeric-owner")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&partial)
            .arg(".")
            .timeout(Duration::from_secs(300))
            .output()
            .await
            .map_err(|e| fail("tar")(e.to_string()))?;
        if !out.status.success() {
            return Err(fail("tar")(out.stderr_text()));
        }
        std::fs::rename(&partial, tarball).map_err(|e| fail("rename")(e.to_string()))
    }
    .await;
    let _ = std::fs::remove_dir_all(&root);
    result
}

/// An exclusive lock on a file, held until dropped.
struct FileLock(std::fs::File);

impl FileLock {
    async fn acquire(path: &Path) -> Result<Self, DockerError> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
            file.lock()?;
            Ok(Self(file))
        })
        .await
        .map_err(|e| DockerError::api("lock", e))?
        .map_err(|e: std::io::Error| DockerError::api("lock the image cache", e))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_label_names_exactly_its_targets() {
        for family in FAMILIES {
            let label = family
                .dockerfile
                .lines()
                .find_map(|l| l.trim().strip_prefix(&format!("{LABEL_TARGETS}=\"")))
                .unwrap_or_else(|| panic!("{}'s Dockerfile has no {LABEL_TARGETS} label", family.name));
            let listed: Vec<&str> = label.trim_end_matches('"').split_whitespace().collect();
            assert_eq!(listed, family.targets, "{}", family.name);
            for triple in family.targets {
                assert!(
                    rustle_targets::RULES.iter().any(|r| r.triple == *triple),
                    "{triple} has no row in the rules table"
                );
            }
        }
    }

    #[test]
    fn tags_follow_the_content() {
        let base = base_tag("http://deb.debian.org/debian");
        assert_ne!(base, base_tag("http://mirror.example/debian"));
        let linux = &FAMILIES[0];
        let mut changed = *linux;
        changed.dockerfile = "FROM x\n";
        assert_ne!(family_tag(linux, &base), family_tag(&changed, &base));
        assert_ne!(family_tag(linux, &base), family_tag(linux, "other"));
        assert_eq!(family_tag(linux, &base), family_tag(linux, &base));
    }
}
