//! The bounds on what all of one worker's clients hold together (the ones that make the
//! memory budget finite), over real sockets: queued output past `pending_bytes_per_worker_max`
//! is dropped with OVERLOADED to the sender before any one consumer meets its own bound (its
//! last eighth kept for consumers that keep up), and unfinished frames past
//! `reassembly_bytes_per_worker_max` close the connection that would add more, while the
//! others finish their frames.

mod common;
#[path = "shared/paced_reader.rs"]
mod paced_reader;

use common::*;
use paced_reader::{numbered_payload, spawn_paced_reader, Pauses};
use ringrelay::client::Event;
use ringrelay::config::Config;
use ringrelay::protocol::{CloseReason, ErrorCode, Frame, HEADER_LEN};
use std::time::{Duration, Instant};

const FRAME_MAX: usize = 64 * 1024;
const PAYLOAD: usize = 60 * 1024;

fn small_worker() -> Config {
    Config {
        workers: 1,
        max_frame_bytes: FRAME_MAX,
        pending_bytes_max: 4 * FRAME_MAX,
        pending_bytes_per_worker_max: 8 * FRAME_MAX,
        reassembly_bytes_per_worker_max: 2 * FRAME_MAX,
        ..config()
    }
}

/// A raw client that registers `id` and then never reads.
fn stalled_reader(relay: &ringrelay::server::Server, id: &str) -> Raw {
    let mut raw = Raw::connect(relay.local_addr());
    raw.handshake(id);
    raw
}

#[test]
fn output_past_the_worker_bound_is_dropped_with_overloaded_before_any_consumer_is_closed() {
    let relay = start(small_worker());
    // Four consumers that never read: each takes a quarter of the messages, so together they
    // reach the worker's bound (8 frames) while each holds 2 frames, half its own bound.
    let stalled: Vec<Raw> = (0..4)
        .map(|i| stalled_reader(&relay, &format!("stalled-{i}")))
        .collect();
    let mut sender = connect(relay.local_addr(), "sender");
    let payload = vec![7u8; PAYLOAD];
    let mut overloaded = false;
    // Bounded: the kernel's socket buffers take some megabytes per consumer first.
    'sending: for round in 0..2_000 {
        let to = format!("stalled-{}", round % 4);
        sender.send(to.as_bytes(), &payload).unwrap();
        if round % 16 == 15 {
            sender.flush().unwrap();
            while let Some(event) = sender.recv(Duration::from_millis(1)).unwrap() {
                if let Event::Error { code, .. } = event {
                    assert_eq!(code, ErrorCode::OVERLOADED, "{event:?}");
                    overloaded = true;
                    break 'sending;
                }
            }
        }
    }
    assert!(overloaded, "the sender was told OVERLOADED");
    let stats = relay.stats();
    assert!(stats.worker_pending_drops > 0, "{stats:?}");
    assert_eq!(stats.slow_consumer_closes, 0, "{stats:?}");
    drop(stalled);
}

/// Eight consumers that never read fill their worker's bound together, each still below its
/// own; a ninth that reads as fast as it is sent to keeps getting every message, in order,
/// from the last eighth of the bound kept for queues below their high watermark, while the
/// sender hears OVERLOADED for the others' drops and nobody is closed.
#[test]
fn consumers_that_fall_behind_together_lose_messages_at_the_worker_bound_not_one_that_keeps_up() {
    const N: u64 = 4_000;
    const MESSAGE: usize = 1024;
    let pending_bytes_max = 1 << 20;
    let relay = start(Config {
        workers: 1,
        pending_bytes_max,
        // Eight queues of about a MiB each (counting their buffers' capacity), above their
        // high watermark (256 KiB) and below their own bound, fill it.
        pending_bytes_per_worker_max: 8 * pending_bytes_max,
        ..config()
    });
    let addr = relay.local_addr();
    // Tiny receive buffers: what they are sent waits in the relay, not in the kernel.
    let stalled: Vec<Raw> = (0..8)
        .map(|i| {
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            socket.connect_timeout(&addr.into(), WAIT).unwrap();
            let mut raw = Raw::from_stream(std::net::TcpStream::from(socket));
            raw.handshake(&format!("stalled-{i}"));
            raw
        })
        .collect();
    let no_pauses = Pauses {
        every: u64::MAX,
        count: 0,
        pause: Duration::ZERO,
        last_pause: Duration::ZERO,
    };
    let reader = spawn_paced_reader(addr, "reader", None, N, no_pauses, WAIT * 4);
    let mut sender = connect(addr, "sender");
    let mut payload = vec![0x5a; MESSAGE];
    // OVERLOADED about a stalled consumer (or, with an empty subject, about the sender's
    // receive); anything else, an error that names the reader among them, is kept to fail
    // the test. A reader's message dropped at the sender's receive shows as a gap it reads.
    let (mut overloaded, mut errors) = (0u64, Vec::new());
    let mut classify = |event: Event| match event {
        Event::Error { code, subject, .. }
            if code == ErrorCode::OVERLOADED && subject != b"reader" =>
        {
            overloaded += 1
        }
        other => errors.push(other),
    };
    for i in 0..N {
        numbered_payload(&mut payload, i);
        sender.send(b"reader", &payload).unwrap();
        for s in 0..8 {
            sender
                .send(format!("stalled-{s}").as_bytes(), &payload)
                .unwrap();
        }
        if i % 16 == 15 {
            sender.flush().unwrap();
            while let Some(event) = sender.recv(Duration::ZERO).unwrap() {
                classify(event);
            }
        }
    }
    // The rest of the sender's events, up to a marker it sends itself.
    sync(&mut sender).into_iter().for_each(&mut classify);
    let read = reader.join().expect("the reader thread");
    assert!(errors.is_empty(), "nothing about the reader: {errors:?}");
    assert_eq!(read, Ok(N));
    let stats = relay.stats();
    assert!(
        stats.worker_pending_drops > 0,
        "the bound was met: {stats:?}"
    );
    assert!(overloaded > 0, "the sender heard of the drops");
    assert_eq!(stats.slow_consumer_closes, 0, "{stats:?}");
    drop(stalled);
}

/// Header and all but the last `missing` bytes of a SEND of `PAYLOAD` bytes to `to`.
fn unfinished_send(to: &str, missing: usize) -> (Vec<u8>, Vec<u8>) {
    let frame = encoded(Frame::Send {
        target: to.as_bytes(),
        payload: &vec![1u8; PAYLOAD],
    });
    assert!(frame.len() > HEADER_LEN + missing);
    let (head, rest) = frame.split_at(frame.len() - missing);
    (head.to_vec(), rest.to_vec())
}

#[test]
fn unfinished_frames_past_the_worker_bound_close_the_sender_that_adds_more() {
    let relay = start(small_worker());
    let mut target = connect(relay.local_addr(), "target");
    let mut senders: Vec<Raw> = (0..4)
        .map(|i| {
            let mut raw = Raw::connect(relay.local_addr());
            raw.handshake(&format!("partial-{i}"));
            raw
        })
        .collect();
    // Four frames of 60 KiB, each stopped 1 KiB short, one after the other: two fit the bound
    // of 128 KiB, the third and the fourth would pass it. A round trip through the same worker
    // after each one makes the relay read them in this order.
    let (head, rest) = unfinished_send("target", 1024);
    for s in &mut senders {
        s.write(&head);
        sync(&mut target);
    }
    for s in &mut senders[2..] {
        let (reason, text) = s.expect_close();
        assert_eq!(reason, CloseReason::LIMIT_EXCEEDED);
        assert!(text.contains("reassembly_bytes_per_worker_max"), "{text}");
    }
    // The two that fit were kept: finished, they are delivered, and each sender goes on.
    for (i, s) in senders[..2].iter_mut().enumerate() {
        let me = format!("partial-{i}");
        s.write(&rest);
        s.write_frame(Frame::Send {
            target: me.as_bytes(),
            payload: b"still here",
        });
        // One deadline for the wait, not one per frame, so that the relay's PINGs without
        // the message fail the test instead of hanging it.
        let deadline = Instant::now() + WAIT;
        loop {
            match s.next_frame_by(deadline) {
                Ok(Owned::Deliver { payload, .. }) => {
                    assert_eq!(payload, b"still here");
                    break;
                }
                Ok(Owned::Ping(_)) => {}
                other => panic!("{me}: expected its own message, got {other:?}"),
            }
        }
    }
    for _ in 0..2 {
        let (_, topic, payload) = next_message(&mut target);
        assert_eq!((topic, payload.len()), (None, PAYLOAD));
    }
    assert!(sync(&mut target).is_empty());
    assert_eq!(relay.stats().limit_refusals, 2);
}
