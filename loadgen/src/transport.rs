//! The two halves of a benchmark connection, plain TCP or TLS (`--tls-ca-file`): the read half
//! for the receiving thread, the write half shared by the threads that send. The kind is
//! matched once per read or write call (each a burst of messages), never per message.

use ringrelay::tls::{TlsReader, TlsStream, TlsWriter};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

/// How to dial TLS: whom to trust and the name the server's certificate must carry.
#[derive(Clone)]
pub struct LoadTls {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for LoadTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// The TLS 1.3 cipher suite the load generator offers first (`--tls-suite`); the others
/// follow it.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsSuite {
    /// TLS_AES_128_GCM_SHA256: what Go's TLS (nats-server, nats.go) prefers.
    Aes128Gcm,
    /// TLS_AES_256_GCM_SHA384: what rustls and OpenSSL clients offer first.
    Aes256Gcm,
    /// TLS_CHACHA20_POLY1305_SHA256.
    Chacha20,
}

impl TlsSuite {
    fn id(self) -> rustls::CipherSuite {
        match self {
            TlsSuite::Aes128Gcm => rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
            TlsSuite::Aes256Gcm => rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
            TlsSuite::Chacha20 => rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        }
    }
}

impl LoadTls {
    /// Trusts the CA certificates in `ca_file`; expects `server_name` in the certificates;
    /// offers `suite` first (rustls servers and Go's both take it when the client offers it
    /// first, so every target runs the same cipher).
    pub fn from_files(
        ca_file: &Path,
        server_name: &str,
        suite: TlsSuite,
    ) -> Result<LoadTls, String> {
        let what = |e: &dyn std::fmt::Display| format!("--tls-ca-file {}: {e}", ca_file.display());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| what(&e))? {
            roots
                .add(cert.map_err(|e| what(&e))?)
                .map_err(|e| what(&e))?;
        }
        if roots.is_empty() {
            return Err(what(&"no certificate in the file"));
        }
        let mut provider = rustls::crypto::ring::default_provider();
        provider
            .cipher_suites
            .sort_by_key(|s| s.suite() != suite.id());
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| format!("TLS 1.3 with ring: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // The record layer takes the keys from rustls after the handshake.
        config.enable_secret_extraction = true;
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|e| format!("--tls-server-name {server_name:?}: {e}"))?;
        Ok(LoadTls {
            config: Arc::new(config),
            server_name,
        })
    }

    /// The TLS handshake over `sock` (bounded by its timeouts), then the two halves.
    pub fn handshake(&self, sock: TcpStream) -> io::Result<(ReadHalf, WriteHalf)> {
        let stream = TlsStream::connect(sock, Arc::clone(&self.config), self.server_name.clone())?;
        let (reader, writer) = stream.split()?;
        Ok((
            ReadHalf::Tls(Box::new(reader)),
            WriteHalf::Tls(Box::new(writer)),
        ))
    }
}

/// Plain halves: the socket and a clone of it.
pub fn plain_halves(sock: TcpStream) -> io::Result<(ReadHalf, WriteHalf)> {
    let writer = sock.try_clone()?;
    Ok((ReadHalf::Tcp(sock), WriteHalf::Tcp(writer)))
}

#[derive(Debug)]
pub enum ReadHalf {
    Tcp(TcpStream),
    Tls(Box<TlsReader<TcpStream>>),
}

#[derive(Debug)]
pub enum WriteHalf {
    Tcp(TcpStream),
    Tls(Box<TlsWriter<TcpStream>>),
}

impl Read for ReadHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ReadHalf::Tcp(s) => s.read(buf),
            ReadHalf::Tls(s) => s.read(buf),
        }
    }
}

impl WriteHalf {
    /// Writes all of `bytes` now (over TLS: sealed into as few records as fit, one write).
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            WriteHalf::Tcp(s) => s.write_all(bytes),
            WriteHalf::Tls(s) => s.send(bytes),
        }
    }
}
