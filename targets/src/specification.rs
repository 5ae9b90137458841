//! The façade's target type, [`TargetSpecification`] (the spec's name, for
//! rustle-deploy): a [`Target`] and its [`TargetSettings`] in one flat value,
//! converted to the pair at the façade's edge and nowhere deeper.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::spec::{
    Architecture, Endianness, GlibcVersion, LibcType, OsFamily, Target, TargetError, exe_suffix_of, name_with_floor,
};

/// How a user wants a target built, apart from what the target is: the
/// per-target settings of the configuration (`[targets.T]`) or of the
/// embedding API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TargetSettings {
    /// Cargo features to enable when building for this target.
    pub features: Vec<String>,
    /// Extra flags passed to rustc for this target.
    pub rustflags: Vec<String>,
    /// Linker to use instead of the one the rules table picks.
    pub linker: Option<String>,
    /// Docker image that builds this target, when one is configured.
    pub docker_image: Option<String>,
    /// How the C libraries its `-sys` crates link are linked (static by default).
    #[serde(default)]
    pub c_libraries: CLibraryLinking,
}

/// How a build links the C libraries its `-sys` crates need (config
/// `c_libraries`, `--c-libraries`): statically by default, so a binary runs
/// on a host without the library's package; or as the crate would by itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CLibraryLinking {
    /// From the library's static archives: the binary needs nothing more on its host.
    #[default]
    Static,
    /// As the `-sys` crate links by itself (usually the shared library).
    Dynamic,
}

impl CLibraryLinking {
    /// `static` or `dynamic`, as the configuration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Dynamic => "dynamic",
        }
    }
}

impl fmt::Display for CLibraryLinking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CLibraryLinking {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "static" => Ok(Self::Static),
            "dynamic" => Ok(Self::Dynamic),
            other => Err(format!("`{other}` is not a way to link C libraries: use \"static\" or \"dynamic\"")),
        }
    }
}

/// A target platform and how to build for it: the public form of a
/// [`Target`] plus its [`TargetSettings`].
///
/// Built with [`TargetSpecification::from_triple`], which accepts what
/// [`Target::from_triple`] does, with default settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TargetSpecification {
    /// The target's triple: the rustc triple, or the file stem of a custom spec.
    pub triple: String,
    /// CPU architecture family.
    pub architecture: Architecture,
    /// Operating system family.
    pub os_family: OsFamily,
    /// C library, where the target has one rustc names.
    pub libc: Option<LibcType>,
    /// Byte order.
    pub endianness: Endianness,
    /// Pointer width in bits (16, 32, 64).
    pub pointer_width: u8,
    /// Cargo features to enable when building for this target.
    pub features: Vec<String>,
    /// Extra flags passed to rustc for this target.
    pub rustflags: Vec<String>,
    /// Docker image that builds this target, when one is configured.
    pub docker_image: Option<String>,
    /// Linker to use instead of the one the rules table picks.
    pub linker: Option<String>,
    /// How the C libraries its `-sys` crates link are linked.
    #[serde(default)]
    pub c_libraries: CLibraryLinking,
    /// The newest glibc the binary may require (glibc targets only).
    pub glibc_floor: Option<GlibcVersion>,
    /// The target-spec JSON file, for custom targets.
    pub custom_spec: Option<PathBuf>,
}

impl TargetSpecification {
    /// Parses and classifies a target (see [`Target::from_triple`]), with
    /// default settings.
    pub fn from_triple(input: &str) -> Result<Self, TargetError> {
        Target::from_triple(input).map(Self::from)
    }

    /// Reads a custom rustc target-spec JSON file, with default settings.
    pub fn from_custom_spec(path: &Path) -> Result<Self, TargetError> {
        Target::from_custom_spec(path).map(Self::from)
    }

    /// Joins what a target is and how to build it.
    pub fn from_parts(target: Target, settings: TargetSettings) -> Self {
        let Target { triple, architecture, os_family, libc, endianness, pointer_width, glibc_floor, custom_spec } =
            target;
        let TargetSettings { features, rustflags, linker, docker_image, c_libraries } = settings;
        Self {
            triple,
            architecture,
            os_family,
            libc,
            endianness,
            pointer_width,
            features,
            rustflags,
            docker_image,
            linker,
            c_libraries,
            glibc_floor,
            custom_spec,
        }
    }

    /// Splits into what the target is and how to build it.
    pub fn into_parts(self) -> (Target, TargetSettings) {
        let Self {
            triple,
            architecture,
            os_family,
            libc,
            endianness,
            pointer_width,
            features,
            rustflags,
            docker_image,
            linker,
            c_libraries,
            glibc_floor,
            custom_spec,
        } = self;
        (
            Target { triple, architecture, os_family, libc, endianness, pointer_width, glibc_floor, custom_spec },
            TargetSettings { features, rustflags, linker, docker_image, c_libraries },
        )
    }

    /// What the target is (a copy).
    pub fn target(&self) -> Target {
        self.clone().into_parts().0
    }

    /// How to build it (a copy).
    pub fn settings(&self) -> TargetSettings {
        self.clone().into_parts().1
    }

    /// The target's full name: the triple with its glibc floor suffix.
    pub fn triple_with_floor(&self) -> String {
        name_with_floor(&self.triple, self.glibc_floor)
    }

    /// The suffix for executables on this target (`.exe` on Windows).
    pub fn exe_suffix(&self) -> &'static str {
        exe_suffix_of(&self.os_family)
    }
}

impl From<Target> for TargetSpecification {
    fn from(target: Target) -> Self {
        Self::from_parts(target, TargetSettings::default())
    }
}

impl fmt::Display for TargetSpecification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.triple_with_floor())
    }
}

impl FromStr for TargetSpecification {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, TargetError> {
        Self::from_triple(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_and_keep_every_field() {
        let target = Target::from_triple("x86_64-unknown-linux-gnu.2.17").unwrap();
        let settings = TargetSettings {
            features: vec!["fast".into()],
            rustflags: vec!["-Cdebug-assertions=on".into()],
            linker: Some("clang".into()),
            docker_image: Some("rustle/linux-gnu:1".into()),
            c_libraries: CLibraryLinking::Dynamic,
        };
        let spec = TargetSpecification::from_parts(target.clone(), settings.clone());
        assert_eq!(spec.to_string(), "x86_64-unknown-linux-gnu.2.17");
        assert_eq!(spec.target(), target);
        assert_eq!(spec.settings(), settings);
        assert_eq!(spec.into_parts(), (target, settings));
    }

    #[test]
    fn c_library_linking_is_static_unless_said_and_parses_only_its_two_words() {
        assert_eq!(TargetSettings::default().c_libraries, CLibraryLinking::Static);
        assert_eq!("dynamic".parse::<CLibraryLinking>(), Ok(CLibraryLinking::Dynamic));
        let err = "shared".parse::<CLibraryLinking>().unwrap_err();
        assert!(err.contains("\"static\" or \"dynamic\""), "{err}");
    }
}
