//! A cluster link's byte stream: the socket itself, or mutual TLS over it
//! (`cluster_tls_*`). The link handshake and the control lane's reader and writer threads
//! use it; a data link is handed to a worker as its socket and, with TLS, the session.

use crate::tls::config::ClusterTls;
use crate::tls::halves::{TlsReader, TlsWriter};
use crate::tls::TlsStream;
use rustls::pki_types::ServerName;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;

pub enum LinkStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// What a worker needs to serve a data link: with TLS, the session and the plaintext
/// already received past the link handshake.
pub type HandOver = (TcpStream, Option<Box<crate::tls::Established>>);

impl LinkStream {
    /// Dials TLS over `sock` when `tls` is set: the peer's certificate must chain to the
    /// cluster CA and name `host` (the host of the address dialed).
    pub fn dial(sock: TcpStream, tls: Option<&ClusterTls>, host: &str) -> io::Result<LinkStream> {
        let Some(tls) = tls else {
            return Ok(LinkStream::Plain(sock));
        };
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host:?} cannot be checked against a certificate: {e}"),
            )
        })?;
        let stream = TlsStream::connect(sock, Arc::clone(&tls.client), name)?;
        Ok(LinkStream::Tls(Box::new(stream)))
    }

    /// Accepts TLS over `sock` when `tls` is set: the dialer must present a certificate
    /// from the cluster CA.
    pub fn accept(sock: TcpStream, tls: Option<&ClusterTls>) -> io::Result<LinkStream> {
        match tls {
            None => Ok(LinkStream::Plain(sock)),
            Some(tls) => Ok(LinkStream::Tls(Box::new(TlsStream::accept(
                sock,
                Arc::clone(&tls.server),
            )?))),
        }
    }

    pub fn socket(&self) -> &TcpStream {
        match self {
            LinkStream::Plain(s) => s,
            LinkStream::Tls(t) => t.get_ref(),
        }
    }

    pub fn shutdown(&self) {
        let _ = self.socket().shutdown(Shutdown::Both);
    }

    /// The control lane's reader and writer, each on its own handle of the socket.
    pub fn split(self) -> io::Result<(LinkReader, LinkWriter)> {
        match self {
            LinkStream::Plain(s) => {
                let writer = s.try_clone()?;
                Ok((LinkReader::Plain(s), LinkWriter::Plain(writer)))
            }
            LinkStream::Tls(t) => {
                let (reader, writer) = t.split()?;
                Ok((
                    LinkReader::Tls(Box::new(reader)),
                    LinkWriter::Tls(Box::new(writer)),
                ))
            }
        }
    }

    /// The socket for a worker, with the TLS session and the plaintext received past the
    /// handshake (`leftover`, then what the TLS stream holds unread).
    pub fn hand_over(self, leftover: Vec<u8>) -> io::Result<HandOver> {
        match self {
            LinkStream::Plain(s) => Ok((s, None)),
            LinkStream::Tls(t) => {
                let (sock, session, unread) = t.into_parts()?;
                let mut early_plaintext = leftover;
                early_plaintext.extend_from_slice(&unread);
                let established = crate::tls::Established {
                    session,
                    early_plaintext,
                    leftover: Vec::new(),
                };
                Ok((sock, Some(Box::new(established))))
            }
        }
    }
}

impl Read for LinkStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            LinkStream::Plain(s) => s.read(buf),
            LinkStream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for LinkStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            LinkStream::Plain(s) => s.write(buf),
            LinkStream::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            LinkStream::Plain(s) => s.flush(),
            LinkStream::Tls(t) => t.flush(),
        }
    }
}

pub enum LinkReader {
    Plain(TcpStream),
    Tls(Box<TlsReader<TcpStream>>),
}

impl LinkReader {
    pub fn socket(&self) -> &TcpStream {
        match self {
            LinkReader::Plain(s) => s,
            LinkReader::Tls(t) => t.get_ref(),
        }
    }
}

impl Read for LinkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            LinkReader::Plain(s) => s.read(buf),
            LinkReader::Tls(t) => t.read(buf),
        }
    }
}

pub enum LinkWriter {
    Plain(TcpStream),
    Tls(Box<TlsWriter<TcpStream>>),
}

impl LinkWriter {
    pub fn socket(&self) -> &TcpStream {
        match self {
            LinkWriter::Plain(s) => s,
            LinkWriter::Tls(t) => t.get_ref(),
        }
    }

    /// Writes all of `bytes` and sends them now (sealed as records with TLS).
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            LinkWriter::Plain(s) => s.write_all(bytes),
            LinkWriter::Tls(t) => t.send(bytes),
        }
    }
}

/// A link stream whose socket's read timeout bounds a handshake.
pub trait TimedRead: Read {
    fn socket(&self) -> &TcpStream;
}

impl TimedRead for LinkStream {
    fn socket(&self) -> &TcpStream {
        LinkStream::socket(self)
    }
}

impl TimedRead for LinkReader {
    fn socket(&self) -> &TcpStream {
        LinkReader::socket(self)
    }
}

impl TimedRead for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }
}
