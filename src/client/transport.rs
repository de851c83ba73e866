//! The byte stream under a [`super::Client`]: TCP to a relay, TLS over TCP to a relay's
//! `tls_listen`, or one end of a Unix socket pair to a node in the same process
//! (`Server::connect_local`).

use crate::tls::TlsStream;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

#[derive(Debug)]
pub(crate) enum Transport {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Unix(UnixStream),
}

/// What a client needs to dial a relay over TLS.
#[derive(Clone)]
pub struct ClientTls {
    config: std::sync::Arc<rustls::ClientConfig>,
    /// The name the relay's certificate must carry; `None`: the IP address dialed.
    server_name: Option<rustls::pki_types::ServerName<'static>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ClientTls {
    fn eq(&self, other: &ClientTls) -> bool {
        std::sync::Arc::ptr_eq(&self.config, &other.config) && self.server_name == other.server_name
    }
}

impl Eq for ClientTls {}

impl ClientTls {
    /// Trusts the CA certificates in `ca_file` (PEM); presents `identity` (certificate and
    /// key files) if the relay asks for one (`tls_client_auth`). `server_name`: what the
    /// relay's certificate must name (a DNS name or an IP address); `None`: the IP address
    /// dialed.
    pub fn new(
        ca_file: &std::path::Path,
        identity: Option<(&std::path::Path, &std::path::Path)>,
        server_name: Option<&str>,
    ) -> Result<ClientTls, crate::tls::TlsConfigError> {
        ClientTls::with_min_version(
            ca_file,
            identity,
            server_name,
            crate::tls::TlsVersion::Tls13,
        )
    }

    /// As [`ClientTls::new`], accepting TLS `min` and newer: `Tls12` for a relay reached
    /// through something that speaks only TLS 1.2 (a ringrelay listener always speaks 1.3).
    pub fn with_min_version(
        ca_file: &std::path::Path,
        identity: Option<(&std::path::Path, &std::path::Path)>,
        server_name: Option<&str>,
        min: crate::tls::TlsVersion,
    ) -> Result<ClientTls, crate::tls::TlsConfigError> {
        let anchors = crate::tls::TrustAnchors::from_file("--tls-ca-file", ca_file)?;
        let identity = match identity {
            Some((cert, key)) => Some(crate::tls::Identity::from_files(
                "--tls-cert-file",
                cert,
                "--tls-key-file",
                key,
            )?),
            None => None,
        };
        let config = crate::tls::config::client_config_from(&anchors, identity.as_ref(), min)?;
        let server_name = match server_name {
            Some(name) => Some(
                rustls::pki_types::ServerName::try_from(name.to_string()).map_err(|e| {
                    crate::tls::TlsConfigError::Setting(format!("--tls-server-name {name:?}: {e}"))
                })?,
            ),
            None => None,
        };
        Ok(ClientTls {
            config,
            server_name,
        })
    }

    /// From a rustls configuration built by the caller (an embedding program, a test).
    pub fn from_config(
        config: std::sync::Arc<rustls::ClientConfig>,
        server_name: Option<rustls::pki_types::ServerName<'static>>,
    ) -> ClientTls {
        ClientTls {
            config,
            server_name,
        }
    }

    /// The TLS handshake over `stream` (connected to `addr`), bounded by the stream's
    /// timeouts.
    pub(crate) fn connect(&self, stream: TcpStream, addr: SocketAddr) -> io::Result<Transport> {
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| rustls::pki_types::ServerName::IpAddress(addr.ip().into()));
        let tls = TlsStream::connect(stream, std::sync::Arc::clone(&self.config), name)?;
        Ok(Transport::Tls(Box::new(tls)))
    }
}

impl Transport {
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.shutdown(how),
            Transport::Tls(s) => s.get_ref().shutdown(how),
            Transport::Unix(s) => s.shutdown(how),
        }
    }

    pub(crate) fn set_read_timeout(&self, wait: Option<Duration>) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.set_read_timeout(wait),
            Transport::Tls(s) => s.get_ref().set_read_timeout(wait),
            Transport::Unix(s) => s.set_read_timeout(wait),
        }
    }

    pub(crate) fn set_write_timeout(&self, wait: Option<Duration>) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.set_write_timeout(wait),
            Transport::Tls(s) => s.get_ref().set_write_timeout(wait),
            Transport::Unix(s) => s.set_write_timeout(wait),
        }
    }

    pub(crate) fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.set_nonblocking(nonblocking),
            Transport::Tls(s) => s.get_ref().set_nonblocking(nonblocking),
            Transport::Unix(s) => s.set_nonblocking(nonblocking),
        }
    }

    /// The TCP address at `local` or remote end; an error for a local (Unix) connection.
    pub(crate) fn addr(&self, local: bool) -> io::Result<SocketAddr> {
        match (self, local) {
            (Transport::Tcp(s), true) => s.local_addr(),
            (Transport::Tcp(s), false) => s.peer_addr(),
            (Transport::Tls(s), true) => s.get_ref().local_addr(),
            (Transport::Tls(s), false) => s.get_ref().peer_addr(),
            (Transport::Unix(_), _) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a local connection to an embedded node has no network address",
            )),
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
            Transport::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            // std writes TCP with MSG_NOSIGNAL.
            Transport::Tcp(s) => s.write(buf),
            // Sealed and written at once: the client batches its frames before it writes,
            // so each write is one flush of records.
            Transport::Tls(s) => s
                .write_all(buf)
                .and_then(|()| s.flush())
                .map(|()| buf.len()),
            // MSG_NOSIGNAL here too: in a C host, which does not ignore SIGPIPE as a Rust
            // program does, a write to a node that stopped must fail with EPIPE, not kill the
            // process (older std releases wrote Unix sockets without the flag).
            Transport::Unix(s) => {
                socket2::SockRef::from(&*s).send_with_flags(buf, libc::MSG_NOSIGNAL)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for Transport {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Transport::Tcp(s) => s.as_raw_fd(),
            Transport::Tls(s) => s.get_ref().as_raw_fd(),
            Transport::Unix(s) => s.as_raw_fd(),
        }
    }
}
