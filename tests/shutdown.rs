//! Shutdown is sound with operations in flight: a relay stopped while one connection is in the
//! middle of a large (zero-copy band) frame, one has a send blocked on a receiver that does not
//! read, and others are idle, stops promptly, and every worker's ring reaps all of its
//! operations before its memory is freed (none is leaked). Repeated 100 times.
//!
//! `.ci/run` also runs this file under AddressSanitizer (`RUSTC_BOOTSTRAP=1`,
//! `-Zsanitizer=address`), where a buffer freed while the kernel or the relay still used it, or
//! memory left behind, fails the run.

#[path = "../cli/tests/shared/stop_bound.rs"]
mod stop_bound;

use ringrelay::config::Config;
use ringrelay::protocol::{hello, Decoded, Frame, HEADER_LEN};
use ringrelay::server::{leaked_rings, Server, StatsSnapshot};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use stop_bound::stopped_within_bound;

const ROUNDS: usize = 100;
/// A payload inside the default zero-copy band (64 KiB to 256 KiB): it is received straight
/// into its own buffer with one direct receive.
const LARGE_PAYLOAD_BYTES: usize = 200 * 1024;
/// What the stalled receiver is sent: far more than loopback socket buffers hold, less than its
/// `pending_bytes_max`, so the relay keeps a send blocked in the kernel.
const STALLED_BYTES: usize = 24 << 20;
const CHUNK_BYTES: usize = 32 * 1024;
/// How long one relay may take to stop: its linger (50 ms) and stop grace (500 ms), plus the
/// drain, with room for a loaded CI machine.
const STOP_WITHIN: Duration = Duration::from_secs(5);

fn encoded(frame: Frame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    frame.encode(&mut out).expect("test frames are valid");
    out
}

/// Connects, sends HELLO and waits for WELCOME.
fn client(addr: SocketAddr, id: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The sender writes megabytes before anything reads them: bounded, so that a relay that
    // stops reading fails the test instead of hanging it.
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&encoded(hello(id.as_bytes(), b""))).unwrap();
    let mut buf = vec![0u8; 256];
    let mut have = 0;
    loop {
        let n = s.read(&mut buf[have..]).expect("WELCOME within 5 s");
        assert!(n > 0, "relay closed before WELCOME");
        have += n;
        match ringrelay::protocol::decode(&buf[..have], 1 << 20).expect("valid frame") {
            Decoded::Frame { frame, .. } => {
                assert!(matches!(frame, Frame::Welcome { .. }), "got {frame:?}");
                return s;
            }
            Decoded::NeedMore { .. } => continue,
        }
    }
}

fn config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        close_linger_ms: 50,
        pending_bytes_max: 64 << 20,
        ..Config::default()
    }
}

fn wait_until(server: &Server, what: &str, mut cond: impl FnMut(&StatsSnapshot) -> bool) {
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = server.stats();
        if cond(&stats) {
            return;
        }
        assert!(
            Instant::now() < give_up,
            "timed out waiting for {what}: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn one_round(round: usize) {
    let server = Server::start(config()).expect("relay starts");
    let addr = server.local_addr();
    let _idle: Vec<TcpStream> = (0..4).map(|i| client(addr, &format!("idle{i}"))).collect();

    // A receiver that never reads, and a sender that queues megabytes for it.
    let _stalled = client(addr, "stalled");
    let mut sender = client(addr, "sender");
    let chunk = vec![7u8; CHUNK_BYTES];
    let frame = encoded(Frame::Send {
        target: b"stalled",
        payload: &chunk,
    });
    let sends = STALLED_BYTES / CHUNK_BYTES;
    let send_frame_bytes = frame.len();
    for _ in 0..sends {
        sender.write_all(&frame).unwrap();
    }

    // Half of a large frame: the relay is then receiving its rest straight into its buffer.
    let mut large = client(addr, "large");
    let payload = vec![9u8; LARGE_PAYLOAD_BYTES];
    let frame = encoded(Frame::Send {
        target: b"idle0",
        payload: &payload,
    });
    large.write_all(&frame[..frame.len() / 2]).unwrap();

    // The relay has routed every message for the stalled receiver (so its send is blocked)
    // and holds the head of the large frame: at least its header arrived. (The rest of the
    // first half may sit in a direct receive, which counts its bytes only when the frame is
    // complete.)
    let hellos: usize = [
        "idle0", "idle1", "idle2", "idle3", "stalled", "sender", "large",
    ]
    .iter()
    .map(|id| encoded(hello(id.as_bytes(), b"")).len())
    .sum();
    let before_large = (hellos + sends * send_frame_bytes) as u64;
    wait_until(
        &server,
        "the messages routed and the large frame begun",
        |s| s.deliveries >= sends as u64 && s.bytes_in >= before_large + HEADER_LEN as u64,
    );

    let started = Instant::now();
    stopped_within_bound(&format!("round {round}: server.shutdown()"), move || {
        server.shutdown()
    });
    let took = started.elapsed();
    assert!(
        took < STOP_WITHIN,
        "round {round}: the relay took {took:?} to stop"
    );
    assert_eq!(
        leaked_rings(),
        0,
        "round {round}: a ring still had operations in flight at exit"
    );
}

#[test]
fn shutdown_mid_large_frame_mid_send_and_idle_frees_only_finished_memory_100_times() {
    for round in 0..ROUNDS {
        one_round(round);
    }
}
