//! A consumer for the flow-control tests, shared by `flow_control.rs` and
//! `flow_control_cluster.rs` (included with `#[path]`; it needs only std and the crate): a raw
//! connection with a small socket receive buffer, so what it has not read piles up in the
//! relay rather than in the kernel, that pauses its reading thread now and then (a consumer
//! descheduled or in a garbage collector) and checks that every message arrives once and in
//! order. It answers PINGs, so a long run is never a heartbeat timeout.

use ringrelay::protocol::{hello, Frame, FrameReader};
use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes of the consumer's socket receive buffer (the kernel doubles it).
pub const SMALL_RECV_BUFFER_BYTES: usize = 64 * 1024;

/// The pauses of the reading thread: `count` of `pause` each, one after every `every`
/// messages, the last of them `last_pause` long instead.
#[derive(Clone, Copy, Debug)]
pub struct Pauses {
    pub every: u64,
    pub count: u64,
    pub pause: Duration,
    pub last_pause: Duration,
}

/// Payload `index` of a numbered stream: the index in its first 8 bytes, `len` bytes long.
pub fn numbered_payload(buf: &mut [u8], index: u64) {
    buf[..8].copy_from_slice(&index.to_le_bytes());
}

/// A consumer registered as `id` at `addr` (and subscribed to `topic`, when given), reading on
/// its own thread until it has `expect` messages numbered 0, 1, 2, ... from one sender (or
/// `bound` passes, or the relay closes it: both an `Err` naming what it got). Returns once the
/// id is registered and the subscription in force.
pub fn spawn_paced_reader(
    addr: SocketAddr,
    id: &str,
    topic: Option<&str>,
    expect: u64,
    pauses: Pauses,
    bound: Duration,
) -> JoinHandle<Result<u64, String>> {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    socket
        .set_recv_buffer_size(SMALL_RECV_BUFFER_BYTES)
        .expect("SO_RCVBUF");
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(5))
        .expect("the reader connects");
    let mut stream = TcpStream::from(socket);
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let mut hello_bytes = Vec::new();
    hello(id.as_bytes(), b"")
        .encode(&mut hello_bytes)
        .expect("HELLO encodes");
    stream.write_all(&hello_bytes).expect("HELLO sent");
    let mut reader = FrameReader::new(2 << 20);
    let deadline = Instant::now() + bound;
    read_until(&mut stream, &mut reader, deadline, |frame, _| {
        matches!(frame, Frame::Welcome { .. }).then_some(Ok(()))
    })
    .and_then(|welcome| welcome)
    .expect("WELCOME");
    if let Some(topic) = topic {
        // A PONG answers after every frame before it is handled: then the subscription holds.
        let mut frames = Vec::new();
        let subscribe = Frame::Subscribe {
            topic: topic.as_bytes(),
            group: b"",
        };
        subscribe.encode(&mut frames).expect("SUBSCRIBE encodes");
        Frame::Ping { nonce: 1 }
            .encode(&mut frames)
            .expect("PING encodes");
        stream.write_all(&frames).expect("SUBSCRIBE sent");
        read_until(&mut stream, &mut reader, deadline, |frame, _| {
            matches!(frame, Frame::Pong { nonce: 1 }).then_some(Ok(()))
        })
        .and_then(|pong| pong)
        .expect("PONG after SUBSCRIBE");
    }
    std::thread::spawn(move || {
        let (mut next, mut paused) = (0u64, 0u64);
        let mut sender: Option<Vec<u8>> = None;
        if expect == 0 {
            return Ok(0);
        }
        read_until(
            &mut stream,
            &mut reader,
            deadline,
            |frame, stream| match frame {
                Frame::Deliver {
                    sender: from,
                    payload,
                    ..
                } => {
                    let index = payload
                        .get(..8)
                        .map(|b| u64::from_le_bytes(b.try_into().unwrap()));
                    let sender = sender.get_or_insert_with(|| from.to_vec());
                    if from != sender.as_slice() || index != Some(next) {
                        return Some(Err(format!(
                            "message {next} expected, got {index:?} from {:?}",
                            String::from_utf8_lossy(from)
                        )));
                    }
                    next += 1;
                    if next == expect {
                        return Some(Ok(next));
                    }
                    if next % pauses.every == 0 && paused < pauses.count {
                        paused += 1;
                        // The workload: the reading thread stops reading for a while.
                        std::thread::sleep(if paused == pauses.count {
                            pauses.last_pause
                        } else {
                            pauses.pause
                        });
                    }
                    None
                }
                Frame::Ping { nonce } => {
                    let mut pong = Vec::new();
                    Frame::Pong { nonce }
                        .encode(&mut pong)
                        .expect("PONG encodes");
                    stream
                        .write_all(&pong)
                        .err()
                        .map(|e| Err(format!("PONG: {e}")))
                }
                Frame::Close { reason, text } => Some(Err(format!(
                    "closed by the relay after {next} messages: {reason:?} {}",
                    String::from_utf8_lossy(text)
                ))),
                other => Some(Err(format!(
                    "unexpected {:?} after {next} messages",
                    other.kind()
                ))),
            },
        )
        .map_err(|e| format!("{e} (after {next} of {expect} messages)"))?
    })
}

/// Reads frames into `on_frame` until it returns a result, the stream ends or `deadline`.
fn read_until<T>(
    stream: &mut TcpStream,
    reader: &mut FrameReader,
    deadline: Instant,
    mut on_frame: impl FnMut(Frame<'_>, &mut TcpStream) -> Option<Result<T, String>>,
) -> Result<Result<T, String>, String> {
    loop {
        while let Some(frame) = reader.next_frame().map_err(|e| e.to_string())? {
            if let Some(done) = on_frame(frame, stream) {
                return Ok(done);
            }
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return Err("the bound passed".into());
        }
        stream
            .set_read_timeout(Some(wait))
            .map_err(|e| e.to_string())?;
        match reader.fill_from(&mut *stream, 256 * 1024) {
            Ok(0) => return Err("the relay ended the stream".into()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read failed: {e}")),
        }
    }
}
