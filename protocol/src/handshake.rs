//! The version handshake: each side's first frame is a [`Hello`], judged by [`check_compatibility`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::PROTOCOL_VERSION;

/// Which end of a connection a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Plans jobs and hands them to agents.
    Coordinator,
    /// Runs builds on a build host (`rustle-agent`).
    Agent,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Coordinator => "coordinator",
            Self::Agent => "agent",
        })
    }
}

/// First frame on every connection, sent by both sides.
///
/// Its layout is frozen under [`ALPN`](crate::ALPN) so that peers of any
/// [`PROTOCOL_VERSION`] can read each other's and say which side to upgrade.
/// Capabilities follow in a separate message once versions agree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's [`PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// The sender's release, e.g. `"0.1.0"`.
    pub software_version: String,
    /// The sender's role.
    pub role: Role,
}

impl Hello {
    /// A hello for this build of the protocol.
    pub fn new(role: Role, software_version: impl Into<String>) -> Self {
        Self { protocol_version: PROTOCOL_VERSION, software_version: software_version.into(), role }
    }
}

/// Why two peers cannot talk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The peers speak different protocol versions.
    #[error("{}", version_mismatch(.ours, .theirs))]
    VersionMismatch {
        /// Our hello.
        ours: Hello,
        /// The peer's hello.
        theirs: Hello,
    },
    /// Both peers have the same role.
    #[error(
        "the peer is also a {role} (version {software_version}); a connection joins a \
         coordinator and an agent, so check the address this {role} was given"
    )]
    SameRole {
        /// The role both claim.
        role: Role,
        /// The peer's release.
        software_version: String,
    },
}

fn version_mismatch(ours: &Hello, theirs: &Hello) -> String {
    let (older, newer) = if theirs.protocol_version < ours.protocol_version {
        (format!("the {}", theirs.role), ours)
    } else {
        (format!("this {}", ours.role), theirs)
    };
    format!(
        "protocol version mismatch: the {} runs {} (protocol {}) and this {} runs {} \
         (protocol {}); upgrade {older} to {} or another release speaking protocol {}",
        theirs.role,
        theirs.software_version,
        theirs.protocol_version,
        ours.role,
        ours.software_version,
        ours.protocol_version,
        newer.software_version,
        newer.protocol_version,
    )
}

/// Decides whether we (`ours`) can talk to a peer that sent `theirs`: roles
/// must differ and protocol versions must be equal.
pub fn check_compatibility(ours: &Hello, theirs: &Hello) -> Result<(), HandshakeError> {
    if ours.role == theirs.role {
        return Err(HandshakeError::SameRole { role: theirs.role, software_version: theirs.software_version.clone() });
    }
    if ours.protocol_version != theirs.protocol_version {
        return Err(HandshakeError::VersionMismatch { ours: ours.clone(), theirs: theirs.clone() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MAX_FRAME_LEN, decode_frame, encode_frame};

    fn hello(role: Role, protocol_version: u32, software_version: &str) -> Hello {
        Hello { protocol_version, software_version: software_version.into(), role }
    }

    #[test]
    fn same_version_is_compatible() {
        let agent = Hello::new(Role::Agent, "0.1.0");
        let coordinator = Hello::new(Role::Coordinator, "0.1.3");
        assert_eq!(check_compatibility(&agent, &coordinator), Ok(()));
        assert_eq!(check_compatibility(&coordinator, &agent), Ok(()));
    }

    #[test]
    fn older_agent_is_told_to_upgrade_by_the_coordinator() {
        let coordinator = hello(Role::Coordinator, 2, "0.2.0");
        let agent = hello(Role::Agent, 1, "0.1.0");
        let error = check_compatibility(&coordinator, &agent).expect_err("versions differ");
        assert_eq!(
            error.to_string(),
            "protocol version mismatch: the agent runs 0.1.0 (protocol 1) and this coordinator \
             runs 0.2.0 (protocol 2); upgrade the agent to 0.2.0 or another release speaking \
             protocol 2"
        );
    }

    #[test]
    fn older_coordinator_is_named_from_the_agent_side_too() {
        let agent = hello(Role::Agent, 3, "0.3.0");
        let coordinator = hello(Role::Coordinator, 2, "0.2.5");
        let error = check_compatibility(&agent, &coordinator).expect_err("versions differ");
        assert_eq!(
            error.to_string(),
            "protocol version mismatch: the coordinator runs 0.2.5 (protocol 2) and this agent \
             runs 0.3.0 (protocol 3); upgrade the coordinator to 0.3.0 or another release \
             speaking protocol 3"
        );
        let error = check_compatibility(&coordinator, &agent).expect_err("versions differ");
        assert!(
            error.to_string().ends_with("upgrade this coordinator to 0.3.0 or another release speaking protocol 3"),
            "{error}"
        );
    }

    #[test]
    fn two_peers_of_one_role_are_refused() {
        let ours = Hello::new(Role::Coordinator, "0.1.0");
        let theirs = Hello::new(Role::Coordinator, "0.1.1");
        assert_eq!(
            check_compatibility(&ours, &theirs).expect_err("both coordinators").to_string(),
            "the peer is also a coordinator (version 0.1.1); a connection joins a coordinator \
             and an agent, so check the address this coordinator was given"
        );
    }

    /// The hello layout is frozen under the ALPN token: if this fails, the
    /// change must come with a new ALPN token.
    #[test]
    fn hello_frame_bytes_are_frozen() {
        let frame = encode_frame(&hello(Role::Agent, 1, "0.1.0")).expect("encodes");
        assert_eq!(frame, b"\0\0\0\x08\x01\x050.1.0\x01");
    }

    /// Old versus new: the hello of a protocol-1 agent (frozen bytes) is
    /// read by this release and refused with the way out, before any
    /// protocol-2 offer could be misread.
    #[test]
    fn a_protocol_1_agent_is_refused_and_told_to_upgrade() {
        let (old_agent, _) =
            decode_frame::<Hello>(b"\0\0\0\x08\x01\x050.1.0\x01", MAX_FRAME_LEN).expect("frozen layout");
        assert_eq!(old_agent, hello(Role::Agent, 1, "0.1.0"));
        let ours = Hello::new(Role::Coordinator, "0.2.0");
        let error = check_compatibility(&ours, &old_agent).expect_err("protocol 1 against 2");
        assert!(
            error.to_string().contains("the agent runs 0.1.0 (protocol 1)")
                && error.to_string().contains(&format!(
                    "upgrade the agent to 0.2.0 or another release speaking protocol {PROTOCOL_VERSION}"
                )),
            "{error}"
        );
    }

    #[test]
    fn hello_from_a_newer_release_decodes_and_is_refused() {
        let newer = hello(Role::Coordinator, PROTOCOL_VERSION + 1, "9.0.0-beta.1+build.5");
        let frame = encode_frame(&newer).expect("encodes");
        let (decoded, _) = decode_frame::<Hello>(&frame, MAX_FRAME_LEN).expect("layout is frozen");
        assert_eq!(decoded, newer);
        let error = check_compatibility(&Hello::new(Role::Agent, "0.1.0"), &decoded).expect_err("versions differ");
        assert!(matches!(error, HandshakeError::VersionMismatch { .. }));
        assert!(error.to_string().contains("upgrade this agent to 9.0.0-beta.1+build.5"), "{error}");
    }
}
