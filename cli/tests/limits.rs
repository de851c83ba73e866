//! The limits of one client, over real sockets (PROTOCOL.md sections 2.1 and 2.2): floods of
//! SUBSCRIBE and WATCH are refused at their limits (ERROR, then CLOSE) while a good client on
//! the same worker keeps round trips under 50 ms; a payload is relayed only when its DELIVER
//! fits the frame size WELCOME announced.

mod common;

use common::*;
use ringrelay::config::Config;
use ringrelay::protocol::{
    payload_bytes_max, CloseReason, ErrorCode, Frame, CLIENT_ID_LEN_MAX, DELIVER_OVERHEAD_MAX,
};
use std::io::Write;
use std::time::Duration;

/// Bound on a good client's round trip while another client attacks (the issue's figure).
const GOOD_ROUND_TRIP_MAX: Duration = Duration::from_millis(50);
/// Requests in one flood: four times the default per-connection limit.
const FLOOD_FRAMES: usize = 40_000;

/// One worker, so the attacker and the good pair share it.
fn one_worker() -> Config {
    Config {
        workers: 1,
        ..config()
    }
}

/// Writes `frames` on a thread of its own, without stopping at an error (the relay may close
/// the connection, and reset it with our bytes unread, before all of them are written), while
/// `read` takes the relay's answers: the relay answers each WATCH, and stops reading a
/// connection that does not read its answers.
fn flood_while(raw: &mut Raw, frames: &[u8], read: impl FnOnce(&mut Raw)) {
    let mut writer = raw.stream.try_clone().unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            let _ = writer.write_all(frames);
        });
        read(raw);
    });
}

fn flood(frame_of: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    (0..FLOOD_FRAMES)
        .flat_map(|i| frame_of(format!("name-{i}").as_bytes()))
        .collect()
}

/// The attacker gets one ERROR LIMIT_EXCEEDED naming `setting`, then CLOSE LIMIT_EXCEEDED.
fn expect_refused_then_closed(raw: &mut Raw, setting: &str) {
    let mut errors = 0;
    loop {
        match raw.next_frame() {
            Ok(Owned::Error { code, .. }) => {
                assert_eq!(code, ErrorCode::LIMIT_EXCEEDED);
                errors += 1;
            }
            Ok(Owned::Close { reason, text }) => {
                assert_eq!(reason, CloseReason::LIMIT_EXCEEDED);
                assert!(
                    text.contains(setting),
                    "close text {text:?} names {setting}"
                );
                break;
            }
            // The present state each accepted WATCH is answered with.
            Ok(Owned::Ping(_) | Owned::Presence { .. }) => {}
            other => panic!("expected ERROR then CLOSE, got {other:?}"),
        }
    }
    assert_eq!(errors, 1, "one ERROR before the CLOSE");
}

#[test]
fn subscribe_flood_is_refused_at_the_limit_while_a_good_client_keeps_its_round_trip() {
    let _alone = alone();
    let relay = start(one_worker());
    let mut a = connect(relay.local_addr(), "good-a");
    let mut b = connect(relay.local_addr(), "good-b");
    let frames = flood(|t| {
        encoded(Frame::Subscribe {
            topic: t,
            group: b"",
        })
    });
    let mut raw = Raw::connect(relay.local_addr());
    raw.handshake("flooder");
    let worst = worst_round_trip_during(&mut a, &mut b, || {
        flood_while(&mut raw, &frames, |raw| {
            expect_refused_then_closed(raw, "subscriptions_per_connection_max")
        });
    });
    assert!(
        worst < GOOD_ROUND_TRIP_MAX,
        "good round trip took {worst:?}"
    );
    assert_eq!(relay.stats().limit_refusals, 2);
    assert_process_within_budget(&one_worker());
}

#[test]
fn watch_flood_is_refused_at_the_limit_while_a_good_client_keeps_its_round_trip() {
    let _alone = alone();
    let relay = start(one_worker());
    let mut a = connect(relay.local_addr(), "good-a");
    let mut b = connect(relay.local_addr(), "good-b");
    let frames = flood(|id| encoded(Frame::Watch { client_id: id }));
    let mut raw = Raw::connect(relay.local_addr());
    raw.handshake("flooder");
    let worst = worst_round_trip_during(&mut a, &mut b, || {
        flood_while(&mut raw, &frames, |raw| {
            expect_refused_then_closed(raw, "watches_per_connection_max")
        });
    });
    assert!(
        worst < GOOD_ROUND_TRIP_MAX,
        "good round trip took {worst:?}"
    );
    assert_eq!(relay.stats().limit_refusals, 2);
    assert_process_within_budget(&one_worker());
}

#[test]
fn largest_payload_arrives_within_the_welcome_frame_size_and_a_longer_one_is_refused() {
    let _alone = alone();
    let relay = start(config());
    let longest_id = "s".repeat(CLIENT_ID_LEN_MAX);
    let mut sender = Raw::connect(relay.local_addr());
    sender.handshake(&longest_id);
    let mut receiver = Raw::connect(relay.local_addr());
    receiver.send_hello("r");
    let max_frame_bytes = match receiver.next_frame() {
        Ok(Owned::Welcome {
            max_frame_bytes, ..
        }) => max_frame_bytes as usize,
        other => panic!("expected WELCOME, got {other:?}"),
    };
    receiver.enforce_max_frame_bytes(max_frame_bytes);
    let topic = vec![b't'; 255];
    receiver.write_frame(Frame::Subscribe {
        topic: &topic,
        group: b"",
    });
    let largest = vec![7u8; payload_bytes_max(max_frame_bytes)];
    assert_eq!(largest.len(), max_frame_bytes - DELIVER_OVERHEAD_MAX);
    // The subscription is applied before the publish: the receiver's own marker comes back.
    receiver.write_frame(Frame::Send {
        target: b"r",
        payload: b"sync",
    });
    assert!(matches!(receiver.next_frame(), Ok(Owned::Deliver { .. })));
    sender.write_frame(Frame::Send {
        target: b"r",
        payload: &largest,
    });
    sender.write_frame(Frame::Publish {
        topic: &topic,
        payload: &largest,
        no_echo: false,
    });
    for want_topic in [&b""[..], &topic[..]] {
        match receiver.next_frame() {
            Ok(Owned::Deliver {
                sender,
                topic,
                payload,
            }) => {
                assert_eq!(sender, longest_id.as_bytes());
                assert_eq!(topic, want_topic);
                assert_eq!(payload.len(), largest.len());
            }
            other => panic!("expected DELIVER, got {other:?}"),
        }
    }
    // A SEND whose frame is exactly max_frame_bytes carries a longer payload: refused.
    let frame_sized = vec![7u8; max_frame_bytes - 6 - 2];
    sender.write_frame(Frame::Send {
        target: b"r",
        payload: &frame_sized,
    });
    match sender.next_frame() {
        Ok(Owned::Error { code, subject }) => {
            assert_eq!(code, ErrorCode::PAYLOAD_TOO_LARGE);
            assert_eq!(subject, b"r");
        }
        other => panic!("expected ERROR PAYLOAD_TOO_LARGE, got {other:?}"),
    }
    assert_eq!(relay.stats().payload_too_large_drops, 1);
    // Both connections are still open and working.
    sender.write_frame(Frame::Send {
        target: b"r",
        payload: b"after",
    });
    match receiver.next_frame() {
        Ok(Owned::Deliver { payload, .. }) => assert_eq!(payload, b"after"),
        other => panic!("expected DELIVER, got {other:?}"),
    }
    assert_process_within_budget(&config());
}
