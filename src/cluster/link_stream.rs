//! A cluster link's byte stream: the socket itself, or mutual TLS over it
//! (`cluster_tls_*`). The link handshake and the control lane's reader and writer threads
//! use it; a data link is handed to a worker as its socket and, with TLS, the session.

use crate::tls::config::ClusterTls;
use crate::tls::halves::{TlsReader, TlsWriter};
use crate::tls::stream::drive;
use crate::tls::{Failure, Handshake, TlsStream};
use rustls::pki_types::ServerName;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

pub enum LinkStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// What a worker needs to serve a data link: with TLS, the session and the plaintext
/// already received past the link handshake.
pub type HandOver = (TcpStream, Option<Box<crate::tls::Established>>);

impl LinkStream {
    /// Dials TLS over `sock` when `tls` is set: the peer's certificate must chain to the
    /// cluster CA and name `host` (the host of the address dialed). The TLS handshake must
    /// finish within `timeout` as a whole.
    pub fn dial(
        mut sock: TcpStream,
        tls: Option<&ClusterTls>,
        host: &str,
        timeout: Duration,
    ) -> io::Result<LinkStream> {
        let Some(tls) = tls else {
            return Ok(LinkStream::Plain(sock));
        };
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host:?} cannot be checked against a certificate: {e}"),
            )
        })?;
        let handshake = Handshake::client(tls.client(), name).map_err(failed)?;
        let established = drive(handshake, &mut Deadlined::new(&mut sock, timeout))?;
        Ok(LinkStream::Tls(Box::new(TlsStream::over(
            sock,
            established,
        )?)))
    }

    /// Accepts TLS over `sock` when `tls` is set: the dialer must present a certificate
    /// from the cluster CA. The TLS handshake must finish within `timeout` as a whole.
    pub fn accept(
        mut sock: TcpStream,
        tls: Option<&ClusterTls>,
        timeout: Duration,
    ) -> io::Result<LinkStream> {
        let Some(tls) = tls else {
            return Ok(LinkStream::Plain(sock));
        };
        let handshake = Handshake::server(tls.server()).map_err(failed)?;
        let established = drive(handshake, &mut Deadlined::new(&mut sock, timeout))?;
        Ok(LinkStream::Tls(Box::new(TlsStream::over(
            sock,
            established,
        )?)))
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

/// A handshake that could not begin (the configuration refused it) as an I/O error.
fn failed(failure: Failure) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, failure.text)
}

/// A socket whose reads all end by one deadline: a TLS handshake trickled a byte at a time
/// is bounded as a whole, not per read, so a handshake thread (and its slot) is never held
/// longer than the timeout.
struct Deadlined<'a> {
    sock: &'a mut TcpStream,
    deadline: Instant,
    timeout: Duration,
}

impl<'a> Deadlined<'a> {
    fn new(sock: &'a mut TcpStream, timeout: Duration) -> Deadlined<'a> {
        Deadlined {
            sock,
            deadline: Instant::now() + timeout,
            timeout,
        }
    }
}

impl Deadlined<'_> {
    fn timed_out(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "TLS handshake not complete within {} ms",
                self.timeout.as_millis()
            ),
        )
    }
}

impl Read for Deadlined<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timed_out());
        }
        self.sock.set_read_timeout(Some(left))?;
        match self.sock.read(buf) {
            // A read that waits out the rest of the deadline ends in EAGAIN on Linux (in
            // TimedOut elsewhere): that is the handshake's deadline, and says so.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(self.timed_out())
            }
            other => other,
        }
    }
}

impl Write for Deadlined<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::test_pki::Pki;
    use crate::tls::{Identity, Origin, TrustAnchors};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn cluster_tls(pki: &Pki) -> ClusterTls {
        let identity = Identity::from_pem(
            Origin::memory("cluster_tls_cert_file"),
            pki.server.cert_pem.as_bytes(),
            Origin::memory("cluster_tls_key_file"),
            pki.server.key_pem.as_bytes(),
        )
        .expect("the test PKI's pair always loads");
        let ca =
            TrustAnchors::from_pem(Origin::memory("cluster_tls_ca_file"), pki.ca_pem.as_bytes())
                .expect("the test PKI's CA always loads");
        ClusterTls::new(&identity, ca).expect("a configuration from the test PKI always builds")
    }

    #[test]
    fn a_tls_handshake_trickled_a_byte_at_a_time_times_out_as_a_whole() {
        let tls = cluster_tls(&Pki::new());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let trickler = {
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut sock = TcpStream::connect(addr).unwrap();
                // A handshake record announcing 300 bytes, then one byte per 100 ms: each
                // read is answered well within the timeout, the handshake never ends. Bounded
                // at 100 bytes (10 s) should the deadline not hold.
                let _ = sock.write_all(&[22, 3, 1, 1, 44]);
                for _ in 0..100 {
                    if done.load(Ordering::Acquire) || sock.write_all(&[1]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        let (sock, _) = listener.accept().unwrap();
        let started = Instant::now();
        let e = match LinkStream::accept(sock, Some(&tls), Duration::from_millis(700)) {
            Ok(_) => panic!("a handshake that never completes was accepted"),
            Err(e) => e,
        };
        let waited = started.elapsed();
        done.store(true, Ordering::Release);
        trickler.join().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("within 700 ms"), "{e}");
        // Per-read timeouts alone would wait for the trickler's 10 s.
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }

    #[test]
    fn a_silent_peer_times_out_with_the_handshake_deadline_named() {
        let pki = Pki::new();
        let tls = cluster_tls(&pki);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // Connected and silent: the accept's only read waits out the whole deadline.
        let _silent = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (sock, _) = listener.accept().unwrap();
        let e = match LinkStream::accept(sock, Some(&tls), Duration::from_millis(100)) {
            Ok(_) => panic!("a peer that never spoke was accepted"),
            Err(e) => e,
        };
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("within 100 ms"), "{e}");
    }

    #[test]
    fn a_replaced_configuration_is_in_force_for_every_clone() {
        let (first, second) = (Pki::new(), Pki::new());
        let tls = cluster_tls(&first);
        let clone = tls.clone();
        let before = clone.server();
        tls.replace(&cluster_tls(&second));
        assert!(!Arc::ptr_eq(&before, &clone.server()));
        assert!(Arc::ptr_eq(&tls.server(), &clone.server()));
        assert!(Arc::ptr_eq(&tls.client(), &clone.client()));
    }
}
