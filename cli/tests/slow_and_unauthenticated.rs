//! Sockets that hold memory without doing anything useful, over real sockets against the
//! relay binary (its memory is measured alone, from /proc): a crowd of unauthenticated sockets
//! announcing a huge first frame is closed from the header, and a crowd trickling frames after
//! HELLO (slow-loris) is closed at `frame_complete_timeout_ms`. A good client on the same
//! worker keeps its round trips going throughout (the 50 ms figure is measured by the benchmark
//! `attack_round_trip`), and the relay's resident memory grows by
//! far less than what the attackers announced and stays within its memory budget. A HELLO
//! trickled byte by byte is closed at the handshake timeout.

mod common;

use common::*;
use ringrelay::protocol::{hello, CloseReason, Frame, FrameKind};
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Resident memory the relay may add during an attack: bounded far below what the attack
/// announces (1,000 x 1 MiB, 500 x 1 MiB), and far above the kernel-side cost of the sockets.
const RSS_GROWTH_MAX_KIB: u64 = 96 * 1024;

/// The relay binary with one worker (attackers and the good pair share it).
fn relay(extra_config: &str) -> (Proc, SocketAddr) {
    let path = config_file(extra_config);
    let mut serve = Proc::spawn(&["serve", "--config", path.to_str().unwrap()]);
    let line = serve.next_line();
    let addr = line
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("serve printed {line:?}"))
        .parse()
        .unwrap();
    (serve, addr)
}

fn config_file(extra_config: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rr-slow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.toml", extra_config.len()));
    std::fs::write(
        &path,
        format!("listen = \"127.0.0.1:0\"\nworkers = 1\n{extra_config}"),
    )
    .unwrap();
    path
}

/// The relay's peak resident memory stayed within its memory budget (the budget's worst case
/// is far larger than what these attacks can reach; the tighter bound is `RSS_GROWTH_MAX_KIB`).
fn assert_within_budget(serve: &Proc, extra_config: &str) {
    let path = config_file(extra_config);
    assert_peak_within_printed_budget(serve.pid(), &["--config", path.to_str().unwrap()]);
}

#[test]
fn a_thousand_unauthenticated_sockets_announcing_a_huge_frame_are_closed_from_the_header() {
    let _alone = alone();
    let (serve, addr) = relay("");
    let rss_before = status_kib(serve.pid(), "VmRSS:");
    let worst = worst_round_trip_at(addr, || huge_first_frames_are_closed_from_the_header(addr));
    assert_good_pair_not_starved(worst);
    let growth = status_kib(serve.pid(), "VmHWM:").saturating_sub(rss_before);
    assert!(growth < RSS_GROWTH_MAX_KIB, "relay grew by {growth} KiB");
    assert_within_budget(&serve, "");
}

#[test]
fn a_hello_trickled_byte_by_byte_is_closed_at_the_handshake_timeout() {
    let _alone = alone();
    let config = "handshake_timeout_ms = 1000\n";
    let (_serve, addr) = relay(config);
    let frame = encoded(hello(b"trickler", b""));
    let mut raw = Raw::connect(addr);
    let started = Instant::now();
    // One byte every 100 ms for 900 ms: bytes keep coming, the HELLO never completes.
    for &byte in &frame[..9] {
        raw.write(&[byte]);
        std::thread::sleep(Duration::from_millis(100));
    }
    let (reason, text) = raw.expect_close();
    assert_eq!(reason, CloseReason::HANDSHAKE_TIMEOUT, "{text}");
    // Within the timeout (1 s, plus slack for a loaded machine), not when the bytes stop.
    let after = started.elapsed();
    assert!(
        after < Duration::from_millis(2000),
        "closed after {after:?}"
    );
}

#[test]
fn a_frame_other_than_hello_is_refused_from_its_header_before_hello() {
    let _alone = alone();
    let (_serve, addr) = relay("");
    let mut raw = Raw::connect(addr);
    // Only the header and a few body bytes of a SEND: refused without waiting for the rest.
    let mut bytes = header(500, FrameKind::Send as u8, 0);
    bytes.extend_from_slice(&[1, b'x']);
    raw.write(&bytes);
    let (reason, _) = raw.expect_close();
    assert_eq!(reason, CloseReason::BAD_HANDSHAKE);
}

#[test]
fn slow_loris_frames_after_hello_are_closed_at_frame_complete_timeout() {
    let _alone = alone();
    let (serve, addr) = relay("frame_complete_timeout_ms = 1000\n");
    let rss_before = status_kib(serve.pid(), "VmRSS:");
    let payload = vec![7u8; 1 << 19];
    let mut frame = encoded(Frame::Send {
        target: b"nobody",
        payload: &payload,
    });
    frame.truncate(4096);
    let started = Instant::now();
    let worst = worst_round_trip_at(addr, || {
        let mut socks: Vec<Raw> = (0..500)
            .map(|i| {
                let mut s = Raw::connect(addr);
                s.handshake(&format!("loris-{i}"));
                s.write(&frame);
                s
            })
            .collect();
        // Trickle: one more byte each, twice, well inside the timeout; then wait for CLOSE.
        for _ in 0..2 {
            std::thread::sleep(Duration::from_millis(200));
            for s in &mut socks {
                let _ = s.stream.write_all(&[7]);
            }
        }
        for s in &mut socks {
            let (reason, _) = s.expect_close();
            assert_eq!(reason, CloseReason::FRAME_TIMEOUT);
        }
    });
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "closed before frame_complete_timeout_ms"
    );
    assert_good_pair_not_starved(worst);
    let growth = status_kib(serve.pid(), "VmHWM:").saturating_sub(rss_before);
    assert!(growth < RSS_GROWTH_MAX_KIB, "relay grew by {growth} KiB");
    assert_within_budget(&serve, "frame_complete_timeout_ms = 1000\n");
}
