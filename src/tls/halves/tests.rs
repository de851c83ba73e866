//! The halves of a split stream: read on one thread while written on another over TCP, and
//! reads straight into a large buffer give the same bytes as reads through our own, at every
//! cut of the ciphertext.

use super::super::config::{client_config, server_config, ClientCertificates, Tickets};
use super::super::test_pki::Pki;
use super::super::{Identity, Origin, TlsStream, TrustAnchors};
use rustls::pki_types::ServerName;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let pki = Pki::new();
    let identity = Identity::from_pem(
        Origin::memory("tls_cert_file"),
        pki.server.cert_pem.as_bytes(),
        Origin::memory("tls_key_file"),
        pki.server.key_pem.as_bytes(),
    )
    .expect("test pair");
    let anchors =
        TrustAnchors::from_pem(Origin::memory("tls_ca_file"), pki.ca_pem.as_bytes()).expect("CA");
    let server = server_config(&identity, &ClientCertificates::NotAsked, Tickets::Client)
        .expect("server config");
    (
        server,
        client_config(&anchors, None).expect("client config"),
    )
}

/// Bound on every blocking read and write of these tests' sockets: far past what a few
/// megabytes over loopback take, so that a peer that stops reading or writing fails the test
/// instead of hanging it.
const SOCKET_WAIT: Duration = Duration::from_secs(10);

/// Bounds the reads and writes of a TCP socket by [`SOCKET_WAIT`].
fn bounded_tcp(sock: TcpStream) -> TcpStream {
    sock.set_read_timeout(Some(SOCKET_WAIT))
        .expect("read timeout");
    sock.set_write_timeout(Some(SOCKET_WAIT))
        .expect("write timeout");
    sock
}

/// Bounds the reads and writes of both ends of a socket pair by [`SOCKET_WAIT`].
fn bounded_pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    for end in [&a, &b] {
        end.set_read_timeout(Some(SOCKET_WAIT))
            .expect("read timeout");
        end.set_write_timeout(Some(SOCKET_WAIT))
            .expect("write timeout");
    }
    (a, b)
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a valid name")
}

/// Deterministic bytes, so a misplaced byte shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// Reads to the clean end with reads of `buf_len` bytes.
fn read_all<R: Read>(reader: &mut R, buf_len: usize) -> Vec<u8> {
    let mut buf = vec![0; buf_len];
    let mut all = Vec::new();
    loop {
        let n = reader.read(&mut buf).expect("read until close_notify");
        if n == 0 {
            return all;
        }
        all.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn split_halves_read_and_write_on_two_threads_over_tcp() {
    let (server, client) = configs();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let data = pattern(3_000_000);
    let expected = data.clone();
    // The server echoes on two threads too: its reader reads small (through its own buffer),
    // its writer sends each piece back whole.
    let echo = std::thread::spawn(move || {
        let (sock, _) = listener.accept().expect("accept");
        // The split halves share the socket, and so its timeouts.
        let stream = TlsStream::accept(bounded_tcp(sock), server).expect("server handshake");
        let (mut reader, mut writer) = stream.split().expect("split");
        let mut buf = vec![0; 1000];
        loop {
            let n = reader.read(&mut buf).expect("echo read");
            if n == 0 {
                break;
            }
            writer.send(&buf[..n]).expect("echo send");
        }
        writer.close().expect("close_notify");
    });
    let sock = bounded_tcp(TcpStream::connect(addr).expect("connect"));
    let stream = TlsStream::connect(sock, client, localhost()).expect("client handshake");
    let (mut reader, mut writer) = stream.split().expect("split");
    let sender = std::thread::spawn(move || {
        let mut at = 0;
        // Sends, flushed writes, and writes left in an open record that the next send or
        // flush seals.
        let steps = [
            (1, 'w'),
            (100, 's'),
            (5000, 'o'),
            (16384, 's'),
            (16385, 'w'),
            (9, 'o'),
        ];
        for &(size, how) in steps.iter().chain(&[(70_000, 'o'), (20_000, 's')]).cycle() {
            let end = (at + size).min(data.len());
            match how {
                's' => writer.send(&data[at..end]).expect("send"),
                'o' => writer.write_all(&data[at..end]).expect("write"),
                _ => {
                    writer.write_all(&data[at..end]).expect("write");
                    writer.flush().expect("flush");
                }
            }
            at = end;
            if at == data.len() {
                break;
            }
        }
        writer.close().expect("close_notify");
    });
    // Large reads: straight into the caller's buffer.
    let back = read_all(&mut reader, 256 << 10);
    assert!(back == expected, "the echo is what was sent");
    sender.join().expect("the sender never panics");
    echo.join().expect("the echo never panics");
}

/// A socket whose reads return at most the next of `pieces` bytes (cycling).
struct Chopped {
    sock: UnixStream,
    pieces: Vec<usize>,
    next: usize,
}

impl Read for Chopped {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let piece = self.pieces[self.next % self.pieces.len()];
        self.next += 1;
        let n = buf.len().min(piece);
        self.sock.read(&mut buf[..n])
    }
}

impl Write for Chopped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

/// Sends `data` in records of assorted sizes, then close_notify; reads it back through reads
/// of `buf_len` bytes from a socket that returns `pieces`.
fn round_trip(data: &[u8], pieces: &[usize], buf_len: usize) -> Vec<u8> {
    let (server, client) = configs();
    let (a, b) = bounded_pair();
    let sent = data.to_vec();
    let writer = std::thread::spawn(move || {
        let mut stream = TlsStream::accept(b, server).expect("server handshake");
        let mut at = 0;
        for size in [3, 16384, 1, 999, 40_000, 16383].iter().cycle() {
            let end = (at + size).min(sent.len());
            stream.send(&sent[at..end]).expect("send");
            at = end;
            if at == sent.len() {
                break;
            }
        }
        stream.close().expect("close_notify");
    });
    let chopped = Chopped {
        sock: a,
        pieces: pieces.to_vec(),
        next: 0,
    };
    let mut stream = TlsStream::connect(chopped, client, localhost()).expect("client handshake");
    let got = read_all(&mut stream, buf_len);
    writer.join().expect("the writer never panics");
    got
}

#[test]
fn direct_and_buffered_reads_give_the_same_bytes_at_every_cut() {
    let data = pattern(400_000);
    for pieces in [
        vec![1 << 20],
        vec![16_405],
        vec![1, 5, 16_400, 3],
        vec![7, 40_000, 16_406, 100],
        vec![33_000, 2],
    ] {
        for buf_len in [100, 16_384, 64 << 10, 1 << 20] {
            let got = round_trip(&data, &pieces, buf_len);
            assert!(
                got == data,
                "pieces {pieces:?}, reads of {buf_len}: {} of {} bytes, first difference at {:?}",
                got.len(),
                data.len(),
                got.iter().zip(&data).position(|(a, b)| a != b)
            );
        }
    }
}
