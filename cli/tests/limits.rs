//! The limits of one client, over real sockets (PROTOCOL.md sections 2.1 and 2.2): floods of
//! SUBSCRIBE and WATCH are refused at their limits (ERROR, then CLOSE) while a good client on
//! the same worker keeps its round trips going (the 50 ms figure is measured by the benchmark
//! `attack_round_trip`); a flooder that writes on after its close and reads late still gets
//! the ERROR and CLOSE that say why (the relay lingers instead of resetting the connection);
//! a payload is relayed only when its DELIVER fits the frame size WELCOME announced.

mod common;

use common::*;
use ringrelay::config::Config;
use ringrelay::protocol::{
    payload_bytes_max, ErrorCode, Frame, CLIENT_ID_LEN_MAX, DELIVER_OVERHEAD_MAX,
};

/// One worker, so the attacker and the good pair share it.
fn one_worker() -> Config {
    Config {
        workers: 1,
        ..config()
    }
}

#[test]
fn subscribe_flood_is_refused_at_the_limit_while_a_good_client_keeps_its_round_trip() {
    let _alone = alone();
    let relay = start(one_worker());
    let frames = subscribe_flood_frames();
    let worst = worst_round_trip_during_flood(
        relay.local_addr(),
        &frames,
        "subscriptions_per_connection_max",
    );
    assert_good_pair_not_starved(worst);
    assert_eq!(relay.stats().limit_refusals, 2);
    assert_process_within_budget(&one_worker());
}

#[test]
fn watch_flood_is_refused_at_the_limit_while_a_good_client_keeps_its_round_trip() {
    let _alone = alone();
    let relay = start(one_worker());
    let frames = watch_flood_frames();
    let worst =
        worst_round_trip_during_flood(relay.local_addr(), &frames, "watches_per_connection_max");
    assert_good_pair_not_starved(worst);
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

/// Flood rounds (600 KB each) the late reader writes. The relay decides its close a quarter
/// into the first; more than the sockets' buffers hold (a relay that stopped reading at the
/// close reset the connection after 6 to 9 rounds).
const LATE_READER_FLOOD_ROUNDS: usize = 32;

#[test]
fn a_flooder_that_writes_on_after_its_close_and_reads_late_still_gets_its_error_and_close() {
    // A linger far longer than the flood takes to write: the socket closes because the peer
    // has everything, not because its time is up.
    let relay = start(Config {
        close_linger_ms: 20_000,
        ..one_worker()
    });
    let frames = watch_flood_frames();
    // A small receive buffer: most of the relay's answers wait in the relay's socket, not in
    // this one, while the flooder writes.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect_timeout(&relay.local_addr().into(), WAIT)
        .unwrap();
    let mut raw = Raw::from_stream(sock.into());
    raw.handshake("flooder");
    let mut writer = raw.stream.try_clone().unwrap();
    let rounds_written = std::thread::spawn(move || {
        (0..LATE_READER_FLOOD_ROUNDS)
            .take_while(|_| std::io::Write::write_all(&mut writer, &frames).is_ok())
            .count()
    })
    .join()
    .unwrap();
    // The relay read (and discarded) what came after the close instead of resetting the
    // connection with its answers unsent.
    assert_eq!(rounds_written, LATE_READER_FLOOD_ROUNDS);
    // Every WATCH accepted was answered, and the reason for the close arrived.
    let answers = expect_refused_then_closed(&mut raw, "watches_per_connection_max");
    assert_eq!(answers, one_worker().watches_per_connection_max);
    // The relay frees the connection once the flooder has everything, long before the
    // linger's 20 s (the flooder's socket stays open).
    wait_until("the lingering connection is freed", || {
        relay.stats().connections_open == 0
    });
    assert_eq!(relay.stats().close_linger_timeouts, 0);
}
