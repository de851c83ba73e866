//! rustls configurations from PEM files: the relay's listeners (`ServerConfig`, with the
//! client-certificate policy) and the dialing side (`ClientConfig`: cluster links, the Rust
//! client, the load generator). Every error names the setting and the file, and what is wrong
//! with it, so a bad file stops `serve` at start with a sentence an operator can act on.
//!
//! Always TLS 1.3 with the `ring` provider: the record layer of the data path
//! ([`super::record`]) speaks 1.3's record format, and `ring` builds without cmake or clang
//! (aws-lc-rs needs both). Secret extraction is on, because the handover of a finished
//! handshake to a worker is rustls's `dangerous_into_kernel_connection`.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bound on one PEM file: a certificate chain, a key or a CA bundle is a few KiB; a public
/// CA bundle is about 250 KiB. 4 MiB refuses a wrong path (a log, a device) quickly.
pub const PEM_FILE_BYTES_MAX: u64 = 4 << 20;

/// Whether a TLS listener asks its clients for a certificate.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificate is asked for (clients authenticate with HELLO's token).
    #[default]
    None,
    /// A client may present one; if it does, it must chain to the CA file.
    Optional,
    /// Every client must present a certificate that chains to the CA file.
    Required,
}

/// The oldest TLS version a listener accepts (`tls_min_version`). TLS 1.3 is always offered;
/// `1.2` adds TLS 1.2 with the ECDHE AEAD suites rustls offers (AES-GCM, ChaCha20-Poly1305),
/// for clients that cannot speak 1.3.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[default]
    #[serde(rename = "1.3")]
    Tls13,
}

impl TlsVersion {
    /// The setting's text: `1.2` or `1.3`.
    pub fn parse(text: &str) -> Result<TlsVersion, String> {
        match text {
            "1.2" => Ok(TlsVersion::Tls12),
            "1.3" => Ok(TlsVersion::Tls13),
            other => Err(format!("{other:?}: expected 1.2 or 1.3")),
        }
    }

    /// The versions rustls may negotiate, newest first.
    fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static FROM_1_2: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static ONLY_1_3: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            TlsVersion::Tls12 => &FROM_1_2,
            TlsVersion::Tls13 => &ONLY_1_3,
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        })
    }
}

/// Where PEM bytes came from, for error messages: the setting and the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub setting: &'static str,
    pub path: Option<PathBuf>,
}

impl Origin {
    pub fn file(setting: &'static str, path: &Path) -> Origin {
        Origin {
            setting,
            path: Some(path.to_path_buf()),
        }
    }

    /// PEM given in memory (an embedding program, a test).
    pub fn memory(setting: &'static str) -> Origin {
        Origin {
            setting,
            path: None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{} {}", self.setting, path.display()),
            None => write!(f, "{}", self.setting),
        }
    }
}

/// A TLS setting that cannot be used, with the reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TlsConfigError {
    #[error("{origin}: cannot read: {reason}")]
    Read { origin: Origin, reason: String },
    #[error("{origin}: holds no certificate (PEM \"BEGIN CERTIFICATE\")")]
    NoCertificate { origin: Origin },
    #[error("{origin}: holds no private key (PEM \"BEGIN PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\")")]
    NoKey { origin: Origin },
    #[error("{origin}: not valid PEM: {reason}")]
    Pem { origin: Origin, reason: String },
    #[error("{origin}: certificate {index} cannot be a trust anchor: {reason}")]
    BadCa {
        origin: Origin,
        index: usize,
        reason: String,
    },
    #[error("{key}: the private key does not match the certificate in {cert}")]
    KeyMismatch { cert: Origin, key: Origin },
    #[error("{key}: the key cannot sign for the certificate in {cert}: {reason}")]
    BadKey {
        cert: Origin,
        key: Origin,
        reason: String,
    },
    #[error("{0}")]
    Setting(String),
}

/// A certificate chain and its private key: what a listener or a dialing node presents.
#[derive(Debug)]
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_origin: Origin,
    key_origin: Origin,
}

impl Clone for Identity {
    fn clone(&self) -> Identity {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            cert_origin: self.cert_origin.clone(),
            key_origin: self.key_origin.clone(),
        }
    }
}

impl Identity {
    /// Reads `cert_file` (the chain, leaf first) and `key_file`, named by their settings.
    pub fn from_files(
        cert_setting: &'static str,
        cert_file: &Path,
        key_setting: &'static str,
        key_file: &Path,
    ) -> Result<Identity, TlsConfigError> {
        let cert_origin = Origin::file(cert_setting, cert_file);
        let key_origin = Origin::file(key_setting, key_file);
        let cert_pem = read_pem_file(&cert_origin, cert_file)?;
        let key_pem = read_pem_file(&key_origin, key_file)?;
        Identity::from_pem(cert_origin, &cert_pem, key_origin, &key_pem)
    }

    /// The same from PEM in memory.
    pub fn from_pem(
        cert_origin: Origin,
        cert_pem: &[u8],
        key_origin: Origin,
        key_pem: &[u8],
    ) -> Result<Identity, TlsConfigError> {
        let chain = certificates(&cert_origin, cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsConfigError::NoKey {
                origin: key_origin.clone(),
            },
            other => TlsConfigError::Pem {
                origin: key_origin.clone(),
                reason: other.to_string(),
            },
        })?;
        let identity = Identity {
            chain,
            key,
            cert_origin,
            key_origin,
        };
        identity.check_pair()?;
        Ok(identity)
    }

    /// Refuses a key that is not the certificate's, at load rather than at the first
    /// handshake (rustls checks the pair when it builds the signing key).
    fn check_pair(&self) -> Result<(), TlsConfigError> {
        let provider = provider();
        rustls::sign::CertifiedKey::from_der(self.chain.clone(), self.key.clone_key(), &provider)
            .map(drop)
            .map_err(|e| self.key_error(e))
    }

    fn key_error(&self, e: rustls::Error) -> TlsConfigError {
        match e {
            rustls::Error::InconsistentKeys(_) => TlsConfigError::KeyMismatch {
                cert: self.cert_origin.clone(),
                key: self.key_origin.clone(),
            },
            other => TlsConfigError::BadKey {
                cert: self.cert_origin.clone(),
                key: self.key_origin.clone(),
                reason: other.to_string(),
            },
        }
    }
}

/// Trust anchors: the CA certificates a peer's certificate must chain to.
#[derive(Clone, Debug)]
pub struct TrustAnchors {
    roots: Arc<RootCertStore>,
}

impl TrustAnchors {
    pub fn from_file(setting: &'static str, path: &Path) -> Result<TrustAnchors, TlsConfigError> {
        let origin = Origin::file(setting, path);
        let pem = read_pem_file(&origin, path)?;
        TrustAnchors::from_pem(origin, &pem)
    }

    pub fn from_pem(origin: Origin, pem: &[u8]) -> Result<TrustAnchors, TlsConfigError> {
        let mut roots = RootCertStore::empty();
        for (index, cert) in certificates(&origin, pem)?.into_iter().enumerate() {
            roots.add(cert).map_err(|e| TlsConfigError::BadCa {
                origin: origin.clone(),
                index,
                reason: e.to_string(),
            })?;
        }
        Ok(TrustAnchors {
            roots: Arc::new(roots),
        })
    }
}

/// What a listener asks of its clients' certificates.
#[derive(Clone, Debug)]
pub enum ClientCertificates {
    NotAsked,
    Optional(TrustAnchors),
    Required(TrustAnchors),
}

impl ClientCertificates {
    /// From the settings: `auth` and the CA it needs (`tls_client_auth` other than `none`
    /// without a CA file is an error, named by `ca_setting`).
    pub fn from_setting(
        auth: ClientAuth,
        anchors: Option<TrustAnchors>,
        auth_setting: &str,
        ca_setting: &str,
    ) -> Result<ClientCertificates, TlsConfigError> {
        match (auth, anchors) {
            (ClientAuth::None, _) => Ok(ClientCertificates::NotAsked),
            (ClientAuth::Optional, Some(a)) => Ok(ClientCertificates::Optional(a)),
            (ClientAuth::Required, Some(a)) => Ok(ClientCertificates::Required(a)),
            (_, None) => Err(TlsConfigError::Setting(format!(
                "{auth_setting} asks for client certificates but {ca_setting} is not set: the CA they must chain to"
            ))),
        }
    }
}

/// Session tickets a listener sends after each handshake: resumption spares a reconnecting
/// client the certificate check. 0 for cluster links (two nodes resume nothing: a link is
/// long-lived, and a ticket is state a node would keep for nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tickets {
    Client,
    None,
}

/// The configuration of a TLS listener (or of a node accepting cluster links): TLS 1.3 only.
pub fn server_config(
    identity: &Identity,
    clients: &ClientCertificates,
    tickets: Tickets,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    server_config_from(identity, clients, tickets, TlsVersion::Tls13)
}

/// The configuration of a TLS listener that accepts TLS `min` and newer.
pub fn server_config_from(
    identity: &Identity,
    clients: &ClientCertificates,
    tickets: Tickets,
    min: TlsVersion,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let provider = Arc::new(provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(min.versions())
        .map_err(|e| TlsConfigError::Setting(format!("TLS {min} and newer with ring: {e}")))?;
    let verifier = |anchors: &TrustAnchors, optional: bool| {
        let builder = WebPkiClientVerifier::builder_with_provider(
            Arc::clone(&anchors.roots),
            Arc::clone(&provider),
        );
        let builder = if optional {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        builder
            .build()
            .map_err(|e| TlsConfigError::Setting(format!("client certificate verifier: {e}")))
    };
    let builder = match clients {
        ClientCertificates::NotAsked => builder.with_no_client_auth(),
        ClientCertificates::Optional(a) => builder.with_client_cert_verifier(verifier(a, true)?),
        ClientCertificates::Required(a) => builder.with_client_cert_verifier(verifier(a, false)?),
    };
    let mut config = builder
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| identity.key_error(e))?;
    // The handover to a worker extracts the traffic secrets.
    config.enable_secret_extraction = true;
    // No 0-RTT: early data can be replayed by anyone who captured it.
    config.max_early_data_size = 0;
    config.send_tls13_tickets = match tickets {
        Tickets::Client => 2,
        Tickets::None => 0,
    };
    Ok(Arc::new(config))
}

/// The configuration of a dialing side: the server's certificate must chain to `anchors`;
/// `identity` is presented when the server asks (cluster links, mutual TLS). TLS 1.3 only.
pub fn client_config(
    anchors: &TrustAnchors,
    identity: Option<&Identity>,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    client_config_from(anchors, identity, TlsVersion::Tls13)
}

/// The configuration of a dialing side that accepts TLS `min` and newer (1.3 is preferred).
pub fn client_config_from(
    anchors: &TrustAnchors,
    identity: Option<&Identity>,
    min: TlsVersion,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let builder = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(min.versions())
        .map_err(|e| TlsConfigError::Setting(format!("TLS {min} and newer with ring: {e}")))?
        .with_root_certificates(Arc::clone(&anchors.roots));
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| id.key_error(e))?,
        None => builder.with_no_client_auth(),
    };
    config.enable_secret_extraction = true;
    Ok(Arc::new(config))
}

/// Mutual TLS on cluster links: each node dials as a client and accepts as a server with
/// the same certificate, and each side's peer must present one from the cluster's CA.
///
/// Clones share the configuration in force: [`ClusterTls::replace`] (a reload) changes it
/// for the acceptor and every later dial at once. Links already open keep the session they
/// have; a link that is re-established handshakes with the new files.
#[derive(Clone, Debug)]
pub struct ClusterTls {
    in_force: Arc<std::sync::RwLock<ClusterConfigs>>,
}

/// The two sides of [`ClusterTls`], replaced together.
#[derive(Clone, Debug)]
struct ClusterConfigs {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

impl ClusterTls {
    pub fn new(
        identity: &Identity,
        cluster_ca: TrustAnchors,
    ) -> Result<ClusterTls, TlsConfigError> {
        Ok(ClusterTls {
            in_force: Arc::new(std::sync::RwLock::new(ClusterConfigs::new(
                identity, cluster_ca,
            )?)),
        })
    }

    /// The dialing side's configuration in force.
    pub fn client(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.read().client)
    }

    /// The accepting side's configuration in force.
    pub fn server(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.read().server)
    }

    /// Puts `newer`'s configuration in force for this handle and every clone of it.
    pub fn replace(&self, newer: &ClusterTls) {
        let configs = newer.read().clone();
        // A poisoned lock held two Arcs being swapped: either value is whole, so go on.
        match self.in_force.write() {
            Ok(mut in_force) => *in_force = configs,
            Err(poisoned) => *poisoned.into_inner() = configs,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, ClusterConfigs> {
        self.in_force
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ClusterConfigs {
    fn new(
        identity: &Identity,
        cluster_ca: TrustAnchors,
    ) -> Result<ClusterConfigs, TlsConfigError> {
        let client = client_config(&cluster_ca, Some(identity))?;
        let peers = ClientCertificates::Required(cluster_ca);
        let server = server_config(identity, &peers, Tickets::None)?;
        Ok(ClusterConfigs { client, server })
    }
}

/// The crypto provider of every configuration (named once, so no process-wide default is
/// consulted: that would be ambiguous if any crate in the graph enabled aws-lc-rs).
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn certificates(
    origin: &Origin,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::Pem {
            origin: origin.clone(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsConfigError::NoCertificate {
            origin: origin.clone(),
        });
    }
    Ok(chain)
}

/// The bytes of the PEM file at `path` (at most [`PEM_FILE_BYTES_MAX`]), an error naming
/// `origin` when it cannot be read.
pub fn read_pem_file(origin: &Origin, path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    let fail = |reason: String| TlsConfigError::Read {
        origin: origin.clone(),
        reason,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| fail(e.to_string()))?
        .len();
    if len > PEM_FILE_BYTES_MAX {
        return Err(fail(format!(
            "{len} bytes, more than a PEM file holds (at most {PEM_FILE_BYTES_MAX})"
        )));
    }
    std::fs::read(path).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::test_pki::Pki;

    fn identity(cert: &str, key: &str) -> Result<Identity, TlsConfigError> {
        Identity::from_pem(
            Origin::memory("tls_cert_file"),
            cert.as_bytes(),
            Origin::memory("tls_key_file"),
            key.as_bytes(),
        )
    }

    #[test]
    fn a_matching_pair_and_a_ca_make_both_configurations() {
        let pki = Pki::new();
        let id = identity(&pki.server.cert_pem, &pki.server.key_pem).expect("pair");
        let anchors = TrustAnchors::from_pem(Origin::memory("tls_ca_file"), pki.ca_pem.as_bytes())
            .expect("ca");
        let server = server_config(
            &id,
            &ClientCertificates::Required(anchors.clone()),
            Tickets::None,
        )
        .expect("server config");
        assert!(server.enable_secret_extraction);
        assert_eq!(server.max_early_data_size, 0);
        assert_eq!(server.send_tls13_tickets, 0);
        let client = client_config(&anchors, Some(&id)).expect("client config");
        assert!(client.enable_secret_extraction);
    }

    #[test]
    fn each_bad_input_is_refused_with_the_setting_and_the_cause() {
        let pki = Pki::new();
        let mismatch = identity(&pki.server.cert_pem, &pki.client.key_pem).unwrap_err();
        assert!(
            matches!(mismatch, TlsConfigError::KeyMismatch { .. }),
            "{mismatch}"
        );
        assert!(mismatch.to_string().contains("tls_key_file"), "{mismatch}");
        let no_key = identity(&pki.server.cert_pem, &pki.server.cert_pem).unwrap_err();
        assert!(
            no_key.to_string().contains("holds no private key"),
            "{no_key}"
        );
        let no_cert = identity(&pki.server.key_pem, &pki.server.key_pem).unwrap_err();
        assert!(
            no_cert
                .to_string()
                .contains("tls_cert_file: holds no certificate"),
            "{no_cert}"
        );
        let no_ca = ClientCertificates::from_setting(
            ClientAuth::Required,
            None,
            "tls_client_auth",
            "tls_ca_file",
        )
        .unwrap_err();
        assert!(
            no_ca.to_string().contains("tls_ca_file is not set"),
            "{no_ca}"
        );
    }

    #[test]
    fn files_are_read_and_a_missing_one_is_named() {
        let pki = Pki::new();
        let dir = pki.write_to_temp_dir("config");
        let id = Identity::from_files(
            "tls_cert_file",
            &dir.join("server.pem"),
            "tls_key_file",
            &dir.join("server.key"),
        );
        assert!(id.is_ok(), "{:?}", id.err());
        let missing = TrustAnchors::from_file("tls_ca_file", &dir.join("nope.pem")).unwrap_err();
        let text = missing.to_string();
        assert!(
            text.starts_with("tls_ca_file ") && text.contains("nope.pem: cannot read"),
            "{text}"
        );
        std::fs::remove_dir_all(dir).expect("the test's own directory");
    }
}
