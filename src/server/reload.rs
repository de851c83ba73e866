//! Reloading what a running node may reload without dropping connections: the credentials
//! file, the TLS listeners' certificate, key and CA (and, with `metrics_tls`, the metrics
//! endpoint's certificate), and the cluster links' certificate, key and CA (`cluster_tls_*`:
//! links already open keep their sessions, links established later use the new files).
//! Asked by SIGHUP (the binary) or by
//! `POST /reload` on the metrics endpoint. A file that does not load is refused whole and the
//! credentials in force stay; a loaded one replaces them at once for new HELLOs, and each
//! worker re-checks its open connections at its next tick (within 250 ms): a client whose
//! entry is gone or may no longer register its id is closed with AUTH_FAILED and the reason,
//! the others take their entry's new permissions.

use super::error::ServeError;
use super::{credentials_file, Shared};
use std::sync::Arc;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Entries of the credentials now in force (`None`: no credentials file is configured).
    pub credentials_entries: Option<usize>,
    /// The TLS listener's files (and the metrics endpoint's, with `metrics_tls`) were read
    /// again: new handshakes use them (connections open keep the keys they have).
    pub tls: bool,
    /// The cluster links' files were read again: links dialed or accepted from now on use
    /// them.
    pub cluster_tls: bool,
}

impl std::fmt::Display for Reloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.credentials_entries {
            Some(n) => write!(f, "credentials reloaded: {n} entries in force")?,
            None => f.write_str("no credentials_file is configured")?,
        }
        if self.tls {
            f.write_str("; TLS certificate, key and CA reloaded")?;
        }
        if self.cluster_tls {
            f.write_str("; cluster TLS certificate, key and CA reloaded")?;
        }
        Ok(())
    }
}

/// A handle that reloads a running node's credentials (cheap to clone, usable from any
/// thread: a signal thread, the metrics endpoint).
#[derive(Clone)]
pub struct Reloader {
    pub(super) shared: Arc<Shared>,
}

impl Reloader {
    /// Reloads, and logs what happened: the outcome, or why the file was refused and that the
    /// credentials in force stay.
    pub fn reload(&self) -> Result<Reloaded, ServeError> {
        let result = reload(&self.shared);
        match &result {
            Ok(done) => tracing::info!("{done}"),
            Err(e) => tracing::error!(
                "reload refused, the credentials and certificates in force stay: {e}"
            ),
        }
        result
    }
}

/// Reads every file first and replaces nothing unless all of them load: a reload is
/// refused whole.
fn reload(shared: &Shared) -> Result<Reloaded, ServeError> {
    let credentials = match (
        &shared.config.credentials_file,
        &shared.engine.session.gate.credentials,
    ) {
        (Some(path), Some(in_force)) => Some((credentials_file::read(path)?, in_force)),
        _ => None,
    };
    let tls = shared.config.tls_server_config()?;
    let metrics_tls = shared.config.metrics_tls_server_config()?;
    // Only a node started with cluster TLS reloads it: links do not switch between clear
    // and TLS while the node runs.
    let cluster_tls = match &shared.cluster_tls {
        Some(in_force) => shared.config.cluster_tls()?.map(|newer| (in_force, newer)),
        None => None,
    };
    let credentials_entries = credentials.map(|(credentials, in_force)| {
        let entries = credentials.len();
        in_force.replace(credentials);
        entries
    });
    let tls_reloaded = tls.is_some() || metrics_tls.is_some();
    if let Some(config) = metrics_tls {
        *super::metrics::write_lock(&shared.metrics_tls_config) = Some(config);
    }
    if let Some(config) = tls {
        match shared.tls_config.write() {
            Ok(mut in_force) => *in_force = Some(config),
            Err(poisoned) => *poisoned.into_inner() = Some(config),
        }
    }
    let cluster_tls_reloaded = cluster_tls.is_some();
    if let Some((in_force, newer)) = cluster_tls {
        in_force.replace(&newer);
    }
    Ok(Reloaded {
        credentials_entries,
        tls: tls_reloaded,
        cluster_tls: cluster_tls_reloaded,
    })
}
