//! Malformed input over real sockets: every bad input closes only the offending connection,
//! with a CLOSE frame carrying the reason PROTOCOL.md gives (sections 5.1 and 6), followed by
//! the end of the stream; `stats().protocol_error_closes` counts it; and a well-behaved client
//! pair on the same relay keeps a working round trip after every case.

mod common;

use common::*;
use ringrelay::client::Client;
use ringrelay::config::Config;
use ringrelay::protocol::{
    decode, hello, payload_bytes_max, CloseReason, DecodeError, Decoded, ErrorCode, Frame,
    FrameKind, HEADER_LEN, PROTOCOL_VERSION,
};
use ringrelay::server::Server;
use std::time::{Duration, Instant};

const MAX_FRAME_BYTES: usize = 64 * 1024;
const HANDSHAKE_TIMEOUT_MS: u64 = 200;
/// Client connections of a fixture once every bad connection is released: its good pair.
const GOOD_PAIR_CONNECTIONS: u64 = 2;

/// A relay plus a good client pair that must survive every case.
struct Fixture {
    relay: Server,
    a: Client,
    b: Client,
    cases: u32,
}

impl Fixture {
    fn new() -> Fixture {
        let relay = start(Config {
            handshake_timeout_ms: HANDSHAKE_TIMEOUT_MS,
            max_frame_bytes: MAX_FRAME_BYTES,
            ..config()
        });
        let mut a = connect(relay.local_addr(), "good-a");
        let mut b = connect(relay.local_addr(), "good-b");
        assert_round_trip(&mut a, &mut b);
        Fixture {
            relay,
            a,
            b,
            cases: 0,
        }
    }

    fn raw(&self) -> Raw {
        Raw::connect(self.relay.local_addr())
    }

    /// A fresh connection; `misbehave` does the bad thing. Then: CLOSE with `expected`, end of
    /// stream, the counter moved by one, and the good pair still round-trips.
    fn case(&mut self, name: &str, expected: CloseReason, misbehave: impl FnOnce(&mut Raw)) {
        self.cases += 1;
        let before = self.relay.stats().protocol_error_closes;
        let registered_before = self.relay.registered_clients();
        let mut raw = self.raw();
        misbehave(&mut raw);
        let (reason, text) = raw.expect_close();
        assert_eq!(
            reason, expected,
            "case '{name}': CLOSE reason {reason} ({text}), expected {expected}"
        );
        raw.expect_end();
        let counted = if expected == CloseReason::NORMAL {
            0
        } else {
            1
        };
        wait_until(
            &format!("case '{name}': protocol_error_closes +{counted}"),
            || self.relay.stats().protocol_error_closes == before + counted,
        );
        assert_eq!(
            self.relay.stats().protocol_error_closes,
            before + counted,
            "case '{name}'"
        );
        assert_round_trip(&mut self.a, &mut self.b);
        // The bad connection's id (if it registered one) is gone again.
        assert_eq!(
            self.relay.registered_clients(),
            registered_before,
            "case '{name}'"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The cases, each usable alone or in sequence on one relay
// ---------------------------------------------------------------------------------------------

fn case_truncated_body(f: &mut Fixture) {
    // Handshake done; then a SEND whose body ends inside `target` (length byte says 10, only
    // 2 bytes follow), then the client closes its side.
    f.case(
        "truncated body, then close",
        CloseReason::PROTOCOL_ERROR,
        |raw| {
            raw.handshake("bad-truncated");
            let mut bytes = header(3, FrameKind::Send as u8, 0);
            bytes.extend_from_slice(&[10, b'a', b'b']);
            raw.write(&bytes);
            raw.shutdown_write();
        },
    );
    // The same before any HELLO: a HELLO whose body ends inside `client_id`.
    f.case(
        "truncated HELLO, then close",
        CloseReason::BAD_HANDSHAKE,
        |raw| {
            let mut bytes = header(4, FrameKind::Hello as u8, 0);
            bytes.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
            bytes.extend_from_slice(&[9, b'x']);
            raw.write(&bytes);
            raw.shutdown_write();
        },
    );
}

fn case_frame_cut_off_by_close(f: &mut Fixture) {
    // The header announces a 100-byte SEND (to good-a) and the client sends 10 bytes of it, or
    // only part of a header, then closes its sending side. The client still reads, so it is
    // told: CLOSE PROTOCOL_ERROR "stream ended inside a frame" (PROTOCOL.md section 6), then
    // the end of the stream; nothing of the incomplete frame may be routed, the id must be
    // unregistered and the slot released.
    let cut_send = {
        let mut b = header(100, FrameKind::Send as u8, 0);
        b.extend_from_slice(&[6, b'g', b'o', b'o', b'd', b'-', b'a', 0, 0, 0]);
        b
    };
    for (name, bytes) in [("frame", cut_send), ("header", vec![7, 0, 0])] {
        let registered_before = f.relay.registered_clients();
        let protocol_errors_before = f.relay.stats().protocol_error_closes;
        let mut raw = f.raw();
        raw.handshake(&format!("bad-cut-{name}"));
        raw.write(&bytes);
        raw.shutdown_write();
        let (reason, text) = raw.expect_close();
        assert_eq!(reason, CloseReason::PROTOCOL_ERROR, "{name} cut off");
        assert_eq!(text, "stream ended inside a frame", "{name} cut off");
        raw.expect_end();
        assert_eq!(
            f.relay.stats().protocol_error_closes,
            protocol_errors_before + 1,
            "{name} cut off"
        );
        // good-a must not have been handed any part of the cut-off SEND: its next message is
        // the round trip's.
        assert_round_trip(&mut f.a, &mut f.b);
        assert_eq!(
            f.relay.registered_clients(),
            registered_before,
            "{name} cut off"
        );
        // Not a count read before the case: the relay releases a slot (and lowers
        // `connections_open`) just after the client sees its stream end, so an earlier case's
        // connection may still be counted then. Every bad connection so far has ended: only
        // the good pair may be left open.
        wait_until(&format!("{name} cut off: connection released"), || {
            f.relay.stats().connections_open == GOOD_PAIR_CONNECTIONS
        });
    }
    // Before HELLO the same is a bad handshake: half a HELLO, then the end of the stream.
    let protocol_errors_before = f.relay.stats().protocol_error_closes;
    let mut raw = f.raw();
    raw.write(&header(20, FrameKind::Hello as u8, 0));
    raw.shutdown_write();
    let (reason, text) = raw.expect_close();
    assert_eq!(reason, CloseReason::BAD_HANDSHAKE, "HELLO cut off");
    assert_eq!(text, "stream ended inside a frame");
    raw.expect_end();
    let stats = f.relay.stats();
    assert_eq!(stats.protocol_error_closes, protocol_errors_before + 1);
    wait_until("HELLO cut off: connection released", || {
        f.relay.stats().connections_open == GOOD_PAIR_CONNECTIONS
    });
    // A connection reset mid-frame (a client killed with its receive queue unread) is not an
    // end of stream: no CLOSE is sent into it, and it is no protocol error.
    let protocol_errors_before = f.relay.stats().protocol_error_closes;
    let mut raw = f.raw();
    raw.handshake("bad-cut-reset");
    raw.write(&header(100, FrameKind::Send as u8, 0));
    socket2::SockRef::from(&raw.stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    drop(raw);
    wait_until("reset mid-frame: connection released", || {
        f.relay.stats().connections_open == GOOD_PAIR_CONNECTIONS
    });
    assert_eq!(
        f.relay.stats().protocol_error_closes,
        protocol_errors_before
    );
    assert_round_trip(&mut f.a, &mut f.b);
}

fn case_oversized_header(f: &mut Fixture) {
    // One byte over the bound, and the largest length the header can carry. Only the 6-byte
    // header is sent: the relay must decide from the header alone.
    let just_over = (MAX_FRAME_BYTES - HEADER_LEN + 1) as u32;
    for (label, body_len) in [("one byte over", just_over), ("u32::MAX", u32::MAX)] {
        f.case(
            &format!("oversized header ({label}) after HELLO"),
            CloseReason::FRAME_TOO_LARGE,
            |raw| {
                raw.handshake("bad-oversized");
                raw.write(&header(body_len, FrameKind::Send as u8, 0));
            },
        );
        f.case(
            &format!("oversized header ({label}) as first frame"),
            CloseReason::FRAME_TOO_LARGE,
            |raw| {
                raw.write(&header(body_len, FrameKind::Publish as u8, 0));
            },
        );
    }
    // A frame of exactly MAX_FRAME_BYTES is read (no close), but its payload is longer than
    // any DELIVER can carry within the bound: refused with ERROR PAYLOAD_TOO_LARGE. The largest
    // payload the relay delivers (PROTOCOL.md 2.1) comes back to its sender.
    let mut raw = f.raw();
    raw.handshake("at-the-bound");
    let target = b"at-the-bound";
    let payload = vec![7u8; MAX_FRAME_BYTES - HEADER_LEN - 1 - target.len()];
    let frame = Frame::Send {
        target,
        payload: &payload,
    };
    assert_eq!(frame.encoded_len(), MAX_FRAME_BYTES);
    raw.write_frame(frame);
    match raw.next_frame() {
        Ok(Owned::Error { code, subject }) => {
            assert_eq!(code, ErrorCode::PAYLOAD_TOO_LARGE);
            assert_eq!(subject, target);
        }
        other => panic!("frame at the bound: expected ERROR PAYLOAD_TOO_LARGE, got {other:?}"),
    }
    let largest = vec![7u8; payload_bytes_max(MAX_FRAME_BYTES)];
    raw.write_frame(Frame::Send {
        target,
        payload: &largest,
    });
    let deadline = Instant::now() + WAIT;
    loop {
        match raw.next_frame_by(deadline) {
            Ok(Owned::Deliver { payload: got, .. }) => {
                assert_eq!(got, largest);
                break;
            }
            Ok(Owned::Ping(_)) => {}
            other => panic!("largest payload: expected its DELIVER, got {other:?}"),
        }
    }
    // An orderly close: the relay answers CLOSE(NORMAL) and ends the stream.
    raw.write_frame(Frame::Close {
        reason: CloseReason::NORMAL,
        text: b"",
    });
    assert_eq!(raw.expect_close().0, CloseReason::NORMAL);
    raw.expect_end();
}

fn case_unknown_frame_type(f: &mut Fixture) {
    f.case(
        "unknown frame type after HELLO",
        CloseReason::PROTOCOL_ERROR,
        |raw| {
            raw.handshake("bad-kind");
            raw.write(&header(0, 0x7f, 0));
        },
    );
    f.case(
        "unknown frame type with a body",
        CloseReason::PROTOCOL_ERROR,
        |raw| {
            raw.handshake("bad-kind-2");
            let mut bytes = header(3, 0xEE, 0);
            bytes.extend_from_slice(b"abc");
            raw.write(&bytes);
        },
    );
    f.case("undefined flag bit", CloseReason::PROTOCOL_ERROR, |raw| {
        raw.handshake("bad-flags");
        let mut bytes = header(2, FrameKind::Send as u8, 0x80);
        bytes.extend_from_slice(&[1, b'x']);
        raw.write(&bytes);
    });
}

fn case_wrong_version(f: &mut Fixture) {
    for version in [0u16, PROTOCOL_VERSION + 1, u16::MAX] {
        f.case(
            &format!("HELLO version {version}"),
            CloseReason::UNSUPPORTED_VERSION,
            |raw| {
                raw.write_frame(Frame::Hello {
                    version,
                    client_id: b"bad-version",
                    token: b"",
                });
            },
        );
    }
}

fn case_non_hello_first_frame(f: &mut Fixture) {
    let firsts: [Frame<'_>; 4] = [
        Frame::Send {
            target: b"good-a",
            payload: b"sneaky",
        },
        Frame::Subscribe {
            topic: b"t",
            group: b"",
        },
        Frame::Ping { nonce: 1 },
        Frame::Deliver {
            sender: b"good-b",
            topic: b"",
            payload: b"forged",
        },
    ];
    for first in firsts {
        f.case(
            &format!("{:?} as first frame", first.kind()),
            CloseReason::BAD_HANDSHAKE,
            |raw| {
                raw.write_frame(first);
            },
        );
    }
    // A second HELLO on an open connection is a bad handshake too.
    f.case("HELLO twice", CloseReason::BAD_HANDSHAKE, |raw| {
        raw.handshake("bad-twice");
        raw.write_frame(hello(b"bad-twice", b""));
    });
}

fn case_malformed_hello(f: &mut Fixture) {
    // HELLO frames that do not decode, as the first frame: BAD_HANDSHAKE (PROTOCOL.md 5.1).
    let empty_id = {
        let mut b = header(5, FrameKind::Hello as u8, 0);
        b.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        b.extend_from_slice(&[0, 0, 0]);
        b
    };
    let trailing = {
        let mut b = encoded(hello(b"bad-trailing", b""));
        let body_len = u32::from_le_bytes(b[..4].try_into().unwrap()) + 2;
        b[..4].copy_from_slice(&body_len.to_le_bytes());
        b.extend_from_slice(&[1, 2]);
        b
    };
    let flags = {
        let mut b = encoded(hello(b"bad-flags", b""));
        b[5] = 0x01;
        b
    };
    for (label, bytes) in [
        ("empty id", empty_id),
        ("trailing bytes", trailing),
        ("flags", flags),
    ] {
        f.case(
            &format!("malformed HELLO ({label})"),
            CloseReason::BAD_HANDSHAKE,
            |raw| {
                raw.write(&bytes);
            },
        );
    }
}

fn case_handshake_timeout(f: &mut Fixture) {
    f.case("no bytes at all", CloseReason::HANDSHAKE_TIMEOUT, |_raw| {});
    f.case("half a HELLO", CloseReason::HANDSHAKE_TIMEOUT, |raw| {
        let bytes = encoded(hello(b"bad-slow", b""));
        raw.write(&bytes[..bytes.len() - 3]);
    });
    // The timeout is the configured one: CLOSE comes after it, not long after.
    let started = Instant::now();
    let mut raw = f.raw();
    let (reason, _) = raw.expect_close();
    assert_eq!(reason, CloseReason::HANDSHAKE_TIMEOUT);
    let waited = started.elapsed().as_millis() as u64;
    assert!(
        (HANDSHAKE_TIMEOUT_MS..HANDSHAKE_TIMEOUT_MS + 2_000).contains(&waited),
        "closed after {waited} ms"
    );
}

/// The CLOSE reason PROTOCOL.md (sections 5.1 and 6) gives for `bytes` arriving on a connection that has (`open`)
/// or has not yet sent a valid HELLO. `None` when the bytes end without a decision.
fn expected_reason(bytes: &[u8], mut open: bool) -> Option<CloseReason> {
    let mut rest = bytes;
    loop {
        match decode(rest, MAX_FRAME_BYTES) {
            Err(e) => {
                // Before HELLO, bytes that do not decode are a bad handshake, except a header
                // announcing too much, which is refused as such from the header alone.
                let too_large = matches!(e, DecodeError::FrameTooLarge { .. });
                return Some(if !open && !too_large {
                    CloseReason::BAD_HANDSHAKE
                } else {
                    e.close_reason()
                });
            }
            Ok(Decoded::NeedMore { .. }) => return None,
            Ok(Decoded::Frame { frame, consumed }) => {
                rest = &rest[consumed..];
                match frame {
                    Frame::Hello { version, .. } if !open => {
                        if version != PROTOCOL_VERSION {
                            return Some(CloseReason::UNSUPPORTED_VERSION);
                        }
                        open = true;
                    }
                    _ if !open => return Some(CloseReason::BAD_HANDSHAKE),
                    Frame::Hello { .. } => return Some(CloseReason::BAD_HANDSHAKE),
                    Frame::Close { .. } => return Some(CloseReason::NORMAL),
                    Frame::Welcome { .. }
                    | Frame::Deliver { .. }
                    | Frame::Presence { .. }
                    | Frame::Error { .. } => return Some(CloseReason::PROTOCOL_ERROR),
                    _ => {}
                }
            }
        }
    }
}

/// Random frame-shaped garbage: a few headers with random kinds (known or not), mostly-zero
/// flags and short random bodies, ended by an unknown-kind header so every input leads to a
/// decision. CLOSE frames are left out (a client CLOSE is an orderly close, not an error).
fn frame_shaped_garbage(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(5) {
        let kind = match rng.below(4) {
            0 => rng.next_u64() as u8,
            _ => FrameKind::ALL[rng.below(FrameKind::ALL.len() as u64) as usize] as u8,
        };
        if kind == FrameKind::Close as u8 {
            continue;
        }
        let flags = if rng.below(8) == 0 {
            rng.next_u64() as u8
        } else {
            0
        };
        let body_len = rng.below(40) as usize;
        out.extend_from_slice(&header(body_len as u32, kind, flags));
        out.extend(rng.bytes(body_len));
    }
    out.extend_from_slice(&header(0, 0xEE, 0));
    out
}

fn case_random_garbage(f: &mut Fixture) {
    for seed in 1..=24u64 {
        let mut rng = Rng::new(seed);
        let open = seed % 2 == 0;
        let bytes = if seed <= 4 {
            rng.bytes(4096)
        } else {
            frame_shaped_garbage(&mut rng)
        };
        let expected = expected_reason(&bytes, open)
            .unwrap_or_else(|| panic!("seed {seed}: garbage leads to no decision"));
        let id = format!("bad-garbage-{seed}");
        f.case(
            &format!("garbage seed {seed} (open: {open})"),
            expected,
            |raw| {
                if open {
                    raw.handshake(&id);
                }
                raw.write(&bytes);
            },
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn truncated_frame_followed_by_close_is_refused() {
    case_truncated_body(&mut Fixture::new());
}

#[test]
fn frame_cut_off_by_end_of_stream_is_refused_with_a_close_and_the_connection_released() {
    case_frame_cut_off_by_close(&mut Fixture::new());
}

#[test]
fn oversized_frame_header_is_frame_too_large_from_the_header_alone() {
    case_oversized_header(&mut Fixture::new());
}

#[test]
fn unknown_frame_type_is_a_protocol_error() {
    case_unknown_frame_type(&mut Fixture::new());
}

#[test]
fn wrong_protocol_version_in_hello_is_unsupported_version() {
    case_wrong_version(&mut Fixture::new());
}

#[test]
fn seeded_random_garbage_is_closed_with_the_reason_the_codec_implies() {
    case_random_garbage(&mut Fixture::new());
}

#[test]
fn non_hello_first_frame_is_bad_handshake() {
    case_non_hello_first_frame(&mut Fixture::new());
}

#[test]
fn malformed_hello_is_bad_handshake() {
    case_malformed_hello(&mut Fixture::new());
}

#[test]
fn no_handshake_within_handshake_timeout_is_handshake_timeout() {
    case_handshake_timeout(&mut Fixture::new());
}

#[test]
fn every_case_in_sequence_leaves_one_relay_and_its_good_clients_working() {
    let mut f = Fixture::new();
    case_truncated_body(&mut f);
    case_frame_cut_off_by_close(&mut f);
    case_oversized_header(&mut f);
    case_unknown_frame_type(&mut f);
    case_wrong_version(&mut f);
    case_random_garbage(&mut f);
    case_non_hello_first_frame(&mut f);
    case_malformed_hello(&mut f);
    case_handshake_timeout(&mut f);
    let stats = f.relay.stats();
    assert!(
        stats.protocol_error_closes >= u64::from(f.cases),
        "{stats:?}"
    );
    assert_eq!(f.relay.registered_clients(), 2);
    assert_round_trip(&mut f.a, &mut f.b);
}

/// A close decided in the middle of one receive (a second HELLO between two SENDs written at
/// once) routes the frames before it and none after it.
#[test]
fn a_close_decided_mid_receive_routes_the_frames_before_it_and_none_after() {
    // One worker: the SEND that `c` writes once `mid-a` read its CLOSE is received after
    // `mid-a`'s whole write was handled, so a routed "after" would reach `b` before it.
    let relay = start(Config {
        workers: 1,
        ..config()
    });
    let mut b = connect(relay.local_addr(), "mid-b");
    let mut c = connect(relay.local_addr(), "mid-c");
    let mut raw = Raw::connect(relay.local_addr());
    raw.handshake("mid-a");
    let mut bytes = encoded(Frame::Send {
        target: b"mid-b",
        payload: b"before",
    });
    bytes.extend(encoded(hello(b"mid-a", b"")));
    bytes.extend(encoded(Frame::Send {
        target: b"mid-b",
        payload: b"after",
    }));
    raw.write(&bytes);
    let (reason, text) = raw.expect_close();
    assert_eq!(reason, CloseReason::BAD_HANDSHAKE, "{text}");
    assert!(text.contains("HELLO sent twice"), "{text}");
    raw.expect_end();
    let (sender, _, payload) = next_message(&mut b);
    assert_eq!((&sender[..], &payload[..]), (&b"mid-a"[..], &b"before"[..]));
    one_way(&mut c, &mut b);
}

/// A frame in the zero-copy band (received straight into a buffer of its own, see
/// `zero_copy_threshold_bytes`) that the end of the stream cuts off is refused as any cut frame
/// is: CLOSE PROTOCOL_ERROR "stream ended inside a frame", counted, nothing of it routed, and
/// the slot released.
#[test]
fn a_zero_copy_frame_cut_off_by_end_of_stream_is_refused_with_a_close() {
    const THRESHOLD_BYTES: usize = 16 * 1024;
    let relay = start(Config {
        max_frame_bytes: MAX_FRAME_BYTES,
        zero_copy_threshold_bytes: THRESHOLD_BYTES,
        zero_copy_max_bytes: MAX_FRAME_BYTES,
        ..config()
    });
    let mut a = connect(relay.local_addr(), "zc-a");
    let mut b = connect(relay.local_addr(), "zc-b");
    let before = relay.stats().protocol_error_closes;
    let mut raw = Raw::connect(relay.local_addr());
    raw.handshake("zc-cut");
    // A SEND to zc-a whose frame is twice the threshold, in the band: its header, the target
    // and 1,000 bytes of its payload, then the end of the stream.
    let frame_bytes = 2 * THRESHOLD_BYTES;
    let mut cut = header((frame_bytes - HEADER_LEN) as u32, FrameKind::Send as u8, 0);
    cut.push(4);
    cut.extend_from_slice(b"zc-a");
    cut.extend_from_slice(&[9; 1000]);
    raw.write(&cut);
    raw.shutdown_write();
    let (reason, text) = raw.expect_close();
    assert_eq!(reason, CloseReason::PROTOCOL_ERROR, "{text}");
    assert_eq!(text, "stream ended inside a frame");
    raw.expect_end();
    assert_eq!(relay.stats().protocol_error_closes, before + 1);
    // Nothing of the cut SEND reached zc-a: its next message is the round trip's.
    assert_round_trip(&mut a, &mut b);
    wait_until("the cut connection released", || {
        relay.stats().connections_open == GOOD_PAIR_CONNECTIONS
    });
}
