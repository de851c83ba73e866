//! What the scenario runner needs from a protocol: connect, subscribe, encode a message, and a
//! streaming scanner that finds message payloads in received bytes. Implemented by the relay
//! driver and the NATS driver, so both targets run the same workload code.

use super::transport::{plain_halves, LoadTls, ReadHalf, WriteHalf};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// First payload byte of a message counted by the measurement.
pub const MARK_DATA: u8 = b'D';
/// First payload byte of a probe (readiness check; never counted).
pub const MARK_PROBE: u8 = b'P';

/// Read timeout on every socket, so loops can check their stop flag and deadline.
pub const READ_TIMEOUT: Duration = Duration::from_millis(50);
/// Bound on a TLS handshake (the read timeout is this long meanwhile).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a message goes.
#[derive(Clone, Debug)]
pub enum Dest {
    /// A client id (relay SEND; NATS subject named like the receiver).
    Client(String),
    /// A topic (relay PUBLISH; NATS subject).
    Topic(String),
}

/// What a receiving connection registers for.
#[derive(Clone, Debug)]
pub enum Sub {
    /// Messages sent to this connection's own client id.
    Direct,
    Topic(String),
    Queue {
        topic: String,
        group: String,
    },
}

/// A connected, handshaken connection.
pub struct Conn {
    pub client_id: String,
    /// Read side.
    pub stream: ReadHalf,
    /// Write side, shared by the thread sending messages and the one answering pings.
    pub writer: Arc<Mutex<WriteHalf>>,
    /// Bytes read past the handshake, to be scanned first.
    pub pending: Vec<u8>,
    /// Largest frame the server accepts or may send.
    pub max_frame_bytes: usize,
}

/// Connects with a bounded timeout and sets the options every benchmark socket uses.
pub fn dial(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("set_nodelay: {e}"))?;
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .map_err(|e| format!("set_read_timeout: {e}"))?;
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| format!("set_write_timeout: {e}"))?;
    Ok(stream)
}

impl Conn {
    /// Connects (and with `tls` completes the TLS handshake).
    pub fn open(addr: SocketAddr, client_id: &str, tls: Option<&LoadTls>) -> Result<Conn, String> {
        Conn::over(dial(addr)?, client_id, tls, Vec::new())
    }

    /// A connection over `sock` from [`dial`]: TLS from here on with `tls`. `pending`: bytes
    /// already read (in plaintext), scanned first.
    pub fn over(
        sock: TcpStream,
        client_id: &str,
        tls: Option<&LoadTls>,
        pending: Vec<u8>,
    ) -> Result<Conn, String> {
        let (stream, writer) = match tls {
            None => plain_halves(sock).map_err(|e| format!("clone socket: {e}"))?,
            Some(tls) => {
                let timeout = |t| {
                    sock.set_read_timeout(Some(t))
                        .map_err(|e| format!("set_read_timeout: {e}"))
                };
                timeout(HANDSHAKE_TIMEOUT)?;
                let peer = sock.peer_addr().map_err(|e| format!("peer address: {e}"))?;
                let halves = tls
                    .handshake(sock.try_clone().map_err(|e| format!("clone socket: {e}"))?)
                    .map_err(|e| format!("{client_id}: TLS handshake with {peer}: {e}"))?;
                timeout(READ_TIMEOUT)?;
                halves
            }
        };
        Ok(Conn {
            client_id: client_id.to_string(),
            stream,
            writer: Arc::new(Mutex::new(writer)),
            pending,
            max_frame_bytes: 1 << 20,
        })
    }

    /// Writes all of `bytes` under the writer lock.
    pub fn write_all(&self, bytes: &[u8]) -> Result<(), String> {
        write_locked(&self.writer, bytes).map_err(|e| format!("{}: {e}", self.client_id))
    }

    /// Reads once, appending to `pending`. `Ok(0)` on a timeout; an error at end of stream.
    pub fn read_some(&mut self, chunk: &mut [u8]) -> Result<usize, String> {
        match self.stream.read(chunk) {
            Ok(0) => Err(format!("{}: server closed the connection", self.client_id)),
            Ok(n) => {
                self.pending.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e) if is_timeout(&e) => Ok(0),
            Err(e) => Err(format!("{}: read: {e}", self.client_id)),
        }
    }

    /// Reads and scans until `done(scanner)` holds; messages seen meanwhile are dropped. Used
    /// for handshakes and subscription syncs, before the connection is measured.
    pub fn scan_until<S: Scanner>(
        &mut self,
        scanner: &mut S,
        deadline: Instant,
        what: &str,
        done: impl Fn(&S) -> bool,
    ) -> Result<(), String> {
        let mut chunk = vec![0u8; 16 * 1024];
        let mut replies = Vec::new();
        loop {
            let used = scanner.scan(&self.pending, &mut replies, &mut |_| {})?;
            self.pending.drain(..used);
            if !replies.is_empty() {
                self.write_all(&replies)?;
                replies.clear();
            }
            if done(scanner) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("{}: timed out waiting for {what}", self.client_id));
            }
            self.read_some(&mut chunk)?;
        }
    }
}

/// Writes under a lock; a poisoned lock is reported, not unwrapped.
pub fn write_locked(writer: &Mutex<WriteHalf>, bytes: &[u8]) -> Result<(), String> {
    let mut guard = writer
        .lock()
        .map_err(|_| "socket writer lock poisoned".to_string())?;
    guard.send(bytes).map_err(|e| format!("write: {e}"))
}

pub fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Finds messages in a stream of received bytes without copying them.
pub trait Scanner: Send + 'static {
    /// Consumes whole protocol units from the front of `buf`, calling `on_msg` with each
    /// message payload, and appending any required replies (PONG) to `replies`. Returns the
    /// bytes consumed; a trailing partial unit is left for the next call.
    fn scan<F: FnMut(&[u8])>(
        &mut self,
        buf: &[u8],
        replies: &mut Vec<u8>,
        on_msg: &mut F,
    ) -> Result<usize, String>;
    /// PONGs received so far (for protocols that sync with PING).
    fn pongs(&self) -> u64;
    /// Error replies received so far and the last one's text.
    fn errors(&self) -> (u64, Option<String>);
}

/// A protocol the benchmark can drive.
pub trait Wire: Clone + Send + Sync + 'static {
    type Scanner: Scanner;
    /// Short target name for reports.
    fn name(&self) -> &'static str;
    fn addr(&self) -> SocketAddr;
    /// Connects and completes the handshake.
    fn connect(&self, client_id: &str, deadline: Instant) -> Result<Conn, String>;
    /// Registers `sub`, waiting for the server to confirm it when the protocol allows.
    fn subscribe(&self, conn: &mut Conn, sub: &Sub, deadline: Instant) -> Result<(), String>;
    /// Appends one message to `out`.
    fn encode_msg(&self, dest: &Dest, payload: &[u8], out: &mut Vec<u8>) -> Result<(), String>;
    /// Appends a PING; the server answers with a PONG after everything it received before
    /// (so a PONG on a sender's connection means all replies to earlier messages arrived).
    fn encode_ping(&self, out: &mut Vec<u8>) -> Result<(), String>;
    fn scanner(&self, max_frame_bytes: usize) -> Self::Scanner;
}
