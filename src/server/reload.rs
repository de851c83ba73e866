//! Reloading what a running node may reload without dropping connections: the credentials
//! file (and, when TLS lands, the certificates). Asked by SIGHUP (the binary) or by
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
}

impl std::fmt::Display for Reloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.credentials_entries {
            Some(n) => write!(f, "credentials reloaded: {n} entries in force"),
            None => f.write_str("nothing to reload: no credentials_file is configured"),
        }
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
            Err(e) => tracing::error!("reload refused, the credentials in force stay: {e}"),
        }
        result
    }
}

fn reload(shared: &Shared) -> Result<Reloaded, ServeError> {
    let (Some(path), Some(in_force)) = (
        &shared.config.credentials_file,
        &shared.engine.session.gate.credentials,
    ) else {
        return Ok(Reloaded {
            credentials_entries: None,
        });
    };
    let credentials = credentials_file::read(path)?;
    let entries = credentials.len();
    in_force.replace(credentials);
    Ok(Reloaded {
        credentials_entries: Some(entries),
    })
}
