//! What an agent's listener checks coordinators against, replaceable while it listens: the TLS configuration from the fleet CA and its revocation list, and the coordinators it let in, so that a reloaded list also closes a revoked coordinator's open connection ([`RevocationReloader`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::TransportOptions;
use crate::ca::CertBundle;
use crate::error::{TransportError, close_code};
use crate::revocation::RevocationList;
use crate::tls::{self, AgentTls};

/// The TLS side of an agent's listener: the configuration each handshake
/// uses now, and the connections it authenticated.
#[derive(Debug)]
pub(crate) struct ListenerTrust {
    /// The agent's certificate, key and CA, without a list: a reload adds the new one.
    bundle: CertBundle,
    options: TransportOptions,
    current: RwLock<Arc<CurrentTrust>>,
    admitted: Mutex<Vec<Admitted>>,
}

/// The TLS configuration of the moment, and the list it was built from.
#[derive(Debug)]
pub(crate) struct CurrentTrust {
    pub(crate) tls: AgentTls,
    pub(crate) crl: Option<PathBuf>,
}

/// A coordinator the listener authenticated, with its certificate's serial.
#[derive(Debug)]
struct Admitted {
    serial: String,
    name: String,
    connection: quinn::Connection,
}

impl ListenerTrust {
    pub(crate) fn new(bundle: &CertBundle, options: &TransportOptions) -> Result<Self, TransportError> {
        let current = CurrentTrust::new(bundle, options)?;
        Ok(Self {
            bundle: CertBundle { crl: None, ..bundle.clone() },
            options: options.clone(),
            current: RwLock::new(Arc::new(current)),
            admitted: Mutex::new(Vec::new()),
        })
    }

    /// The configuration a handshake starting now uses.
    pub(crate) fn current(&self) -> Arc<CurrentTrust> {
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Remembers an authenticated coordinator, so a later list naming its
    /// certificate closes its connection; forgets those that closed.
    pub(crate) fn admit(&self, connection: &quinn::Connection, name: &str) {
        let Ok(serial) = tls::peer_certificate_serial(connection) else { return };
        let mut admitted = self.admitted.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        admitted.retain(|entry| entry.connection.close_reason().is_none());
        admitted.push(Admitted { serial, name: name.to_owned(), connection: connection.clone() });
    }

    /// Makes `crl` the list every handshake from now on is checked against,
    /// and closes the open connections of coordinators it revokes. A list
    /// that cannot be used (another CA signed it) changes nothing.
    fn reload(&self, endpoint: &quinn::Endpoint, crl: RevocationList) -> Result<RevocationReload, TransportError> {
        let revoked = crl.revoked_serials().to_vec();
        let next = CurrentTrust::new(&self.bundle.clone().with_crl(crl), &self.options)?;
        endpoint.set_server_config(Some(next.tls.default_config()?));
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(next);

        let mut admitted = self.admitted.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        admitted.retain(|entry| entry.connection.close_reason().is_none());
        let mut closed = Vec::new();
        admitted.retain(|entry| {
            if !revoked.contains(&entry.serial) {
                return true;
            }
            let reason = format!(
                "certificate_revoked: the agent's reloaded revocation list names coordinator {}'s certificate \
                 (serial {})",
                entry.name, entry.serial
            );
            entry.connection.close(quinn::VarInt::from_u32(close_code::REVOKED), reason.as_bytes());
            closed.push(entry.name.clone());
            false
        });
        Ok(RevocationReload { revoked: revoked.len(), closed })
    }
}

impl CurrentTrust {
    fn new(bundle: &CertBundle, options: &TransportOptions) -> Result<Self, TransportError> {
        Ok(Self { tls: AgentTls::new(bundle, options)?, crl: bundle.crl.as_ref().map(|crl| crl.path().to_owned()) })
    }

    /// The list's file, for messages.
    pub(crate) fn crl_path(&self) -> Option<&Path> {
        self.crl.as_deref()
    }
}

/// Replaces the revocation list of a running
/// [`AgentListener`](crate::AgentListener), from
/// [`AgentListener::revocation_reloader`](crate::AgentListener::revocation_reloader).
/// Handshakes after a reload are checked against the new list; open
/// connections of coordinators it revokes are closed, and they hear why.
#[derive(Debug, Clone)]
pub struct RevocationReloader {
    pub(crate) trust: Arc<ListenerTrust>,
    pub(crate) endpoint: quinn::Endpoint,
}

impl RevocationReloader {
    /// Checks every later handshake against `crl`. On an error (a list
    /// another CA signed) the previous list stays in force.
    pub fn reload(&self, crl: RevocationList) -> Result<RevocationReload, TransportError> {
        self.trust.reload(&self.endpoint, crl)
    }
}

/// What a [`RevocationReloader::reload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationReload {
    /// How many certificates the new list revokes.
    pub revoked: usize,
    /// The coordinators whose open connections it closed.
    pub closed: Vec<String>,
}
