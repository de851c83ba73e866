//! One relay node holds 10,000 concurrent client connections and delivers a message to each.
//!
//! The relay runs as a separate process (`ringrelay serve`), so the test process and the relay
//! each need only ~10,000 file descriptors. Clients are raw `TcpStream`s speaking the codec by
//! hand (a full `Client` per connection would cost a 64 KiB read buffer each), and the
//! handshake is pipelined: connect all, write every HELLO, then read every WELCOME.

mod common;

use common::*;
use ringrelay::client::Event;
use ringrelay::protocol::{decode, hello, Decoded, Frame, PROTOCOL_VERSION};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const CLIENTS: usize = 10_000;
/// Descriptors the test process needs beyond the clients (stdio, pipes, the sender, slack).
const FD_SLACK: libc::rlim_t = 100;
const TOTAL_BOUND: Duration = Duration::from_secs(60);

/// Raises RLIMIT_NOFILE's soft limit to its hard limit. Returns the new soft limit.
fn raise_nofile_limit() -> libc::rlim_t {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass, which outlives the calls.
    unsafe {
        assert_eq!(
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim),
            0,
            "getrlimit"
        );
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0, "setrlimit");
        }
    }
    lim.rlim_cur
}

/// One client connection: the stream and the bytes read but not yet decoded.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A decoded relay-to-client frame reduced to what this test checks.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Welcome,
    Deliver {
        sender: Vec<u8>,
        topic: Vec<u8>,
        payload: Vec<u8>,
    },
    Other(String),
}

impl Conn {
    /// The next frame (answering PINGs on the way), within `deadline`.
    fn next(&mut self, deadline: Instant, index: usize) -> Got {
        loop {
            match decode(&self.buf, 64 * 1024) {
                Ok(Decoded::Frame { frame, consumed }) => {
                    let got = match frame {
                        Frame::Welcome { version, .. } if version == PROTOCOL_VERSION => {
                            Some(Got::Welcome)
                        }
                        Frame::Deliver {
                            sender,
                            topic,
                            payload,
                        } => Some(Got::Deliver {
                            sender: sender.to_vec(),
                            topic: topic.to_vec(),
                            payload: payload.to_vec(),
                        }),
                        Frame::Ping { nonce } => {
                            let pong = encoded(Frame::Pong { nonce });
                            self.stream.write_all(&pong).expect("pong");
                            None
                        }
                        other => Some(Got::Other(format!("{other:?}"))),
                    };
                    self.buf.drain(..consumed);
                    if let Some(got) = got {
                        return got;
                    }
                    continue;
                }
                Ok(Decoded::NeedMore { .. }) => {}
                Err(e) => panic!("client {index}: relay sent undecodable bytes: {e}"),
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            assert!(
                !wait.is_zero(),
                "client {index}: nothing within the total bound"
            );
            self.stream.set_read_timeout(Some(wait)).unwrap();
            let mut chunk = [0u8; 512];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("client {index}: relay closed the connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::WouldBlock | ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("client {index}: read failed: {e}"),
            }
        }
    }
}

fn id(i: usize) -> String {
    format!("c{i}")
}

fn payload(i: usize) -> String {
    format!("payload for client {i}")
}

#[test]
fn ten_thousand_concurrent_connections_each_receive_their_message() {
    let needed = CLIENTS as libc::rlim_t + FD_SLACK;
    let limit = raise_nofile_limit();
    if limit < needed {
        eprintln!(
            "SKIPPED ten_thousand_concurrent_connections_each_receive_their_message: \
             RLIMIT_NOFILE hard limit is {limit}, this test needs at least {needed} descriptors \
             (raise it with `ulimit -Hn` or limits.conf)"
        );
        return;
    }
    let started = Instant::now();
    let deadline = started + TOTAL_BOUND;
    // No heartbeat within the run: the relay PINGs a connection idle for
    // `heartbeat_interval_ms` (5 s by default), and a run on a loaded machine can take longer
    // than that from a client's HELLO to its last check, so a PING (legitimately) arriving
    // with a client's message or at the end would fail the "nothing more" and "idle" checks,
    // and clients this test does not read for a while would be closed for missed PINGs.
    let config = std::env::temp_dir().join(format!("rr-many-{}.toml", std::process::id()));
    std::fs::write(&config, "heartbeat_interval_ms = 3600000\n").unwrap();
    // The relay inherits the raised limit.
    let (mut relay, addr) = serve(&["--workers", "2", "--config", config.to_str().unwrap()]);

    // Connect all, then HELLO all, then WELCOME all.
    let mut conns: Vec<Conn> = (0..CLIENTS)
        .map(|i| {
            let stream = TcpStream::connect_timeout(&addr, WAIT)
                .unwrap_or_else(|e| panic!("connection {i} failed: {e}"));
            stream.set_nodelay(true).unwrap();
            stream.set_write_timeout(Some(WAIT)).unwrap();
            Conn {
                stream,
                buf: Vec::new(),
            }
        })
        .collect();
    let connected = started.elapsed();
    for (i, c) in conns.iter_mut().enumerate() {
        let bytes = encoded(hello(id(i).as_bytes(), b""));
        c.stream.write_all(&bytes).expect("hello");
    }
    for (i, c) in conns.iter_mut().enumerate() {
        assert_eq!(c.next(deadline, i), Got::Welcome, "client {i}");
    }
    let handshaken = started.elapsed();

    // Every id is registered (WELCOME is queued in the step that registers it). One sender
    // sends one message to each; the marker to itself proves all were routed without error.
    let mut sender = connect(addr, "sender");
    for i in 0..CLIENTS {
        sender
            .send(id(i).as_bytes(), payload(i).as_bytes())
            .unwrap();
    }
    sender.flush().unwrap();
    let before_marker = sync(&mut sender);
    assert!(
        before_marker.is_empty(),
        "sender got {} events, first {:?}",
        before_marker.len(),
        before_marker.first().map(|e| match e {
            Event::Error { subject, .. } => String::from_utf8_lossy(subject).into_owned(),
            other => format!("{other:?}"),
        })
    );

    for (i, c) in conns.iter_mut().enumerate() {
        let got = c.next(deadline, i);
        assert_eq!(
            got,
            Got::Deliver {
                sender: b"sender".to_vec(),
                topic: Vec::new(),
                payload: payload(i).into_bytes(),
            },
            "client {i}"
        );
        assert!(
            c.buf.is_empty(),
            "client {i}: more bytes after its one message"
        );
    }
    let delivered = started.elapsed();
    assert!(delivered < TOTAL_BOUND);
    eprintln!(
        "{CLIENTS} connections: connected in {connected:?}, handshaken by {handshaken:?}, \
         all delivered by {delivered:?}"
    );

    // All connections still open at the end: the relay held them concurrently.
    for (i, c) in conns.iter_mut().enumerate() {
        c.stream.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        match c.stream.read(&mut byte) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => panic!("client {i}: connection not idle and open at the end: {other:?}"),
        }
    }
    drop(conns);
    sender.close().unwrap();
    relay.terminate();
    let (status, _) = relay.wait_exit_within(Duration::from_secs(15));
    assert!(
        status.success(),
        "relay exited with {status}: {}",
        relay.stderr()
    );
    let _ = std::fs::remove_file(config);
}
