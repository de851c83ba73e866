//! Scaffolding for the TLS tests (tls.rs, nats_tls.rs, cluster_tls.rs): a fresh test PKI's
//! files in a temporary directory that is removed on drop, and an in-process relay whose TLS
//! certificates come from it.

use super::config;
use ringrelay::config::Config;
use ringrelay::server::Server;
use ringrelay::tls::test_pki::Pki;
use ringrelay::tls::ClientAuth;
use std::ops::Deref;
use std::path::{Path, PathBuf};

/// A directory of certificates written by [`Pki::write_to_temp_dir`] (`ca.pem`, `server.pem`,
/// `client.pem`, `expired.pem`, `foreign.pem`, `other-ca.pem` and their keys); removed on drop.
pub struct PkiDir(pub PathBuf);

impl PkiDir {
    /// Writes `pki`'s files to a new temporary directory named after `tag`.
    pub fn write(pki: &Pki, tag: &str) -> PkiDir {
        PkiDir(pki.write_to_temp_dir(tag))
    }
}

impl Deref for PkiDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for PkiDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A relay started with the server certificate, key and CA of its own [`PkiDir`]. The
/// directory is removed before the relay stops (fields drop in order).
pub struct TlsRelay {
    pub dir: PkiDir,
    pub server: Server,
}

impl TlsRelay {
    /// Writes `pki`'s files under `tag` and starts a relay on [`config`] with them as its TLS
    /// certificate, key and CA and `auth` as its client authentication; `tune` then sets the
    /// listeners (`tls_listen`, `nats_tls_listen`) and anything else the test needs.
    pub fn start(
        pki: &Pki,
        tag: &str,
        auth: ClientAuth,
        tune: impl FnOnce(&mut Config),
    ) -> TlsRelay {
        let dir = PkiDir::write(pki, tag);
        let mut cfg = Config {
            tls_cert_file: Some(dir.join("server.pem")),
            tls_key_file: Some(dir.join("server.key")),
            tls_ca_file: Some(dir.join("ca.pem")),
            tls_client_auth: auth,
            ..config()
        };
        tune(&mut cfg);
        let server = Server::start(cfg).expect("relay starts");
        TlsRelay { dir, server }
    }
}
