//! Connection steering over real sockets (README "Connection steering"): a receiver fed from
//! another worker moves to that worker in the middle of a stream and misses nothing; two
//! flows that hashing put on one worker end on one worker each. Every message arrives once
//! and in order across the moves.

mod common;
#[path = "shared/placement.rs"]
mod placement;
#[path = "shared/stream_reader.rs"]
mod stream_reader;

use common::*;
use placement::{client_where, raw_where, worker_of};
use ringrelay::client::{Client, Event};
use ringrelay::config::Config;
use ringrelay::core::steer::STEER_INTERVAL_MS;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use stream_reader::{numbered, spawn_reader, END};

const PAYLOAD: usize = 1024;
/// Longest a test streams while it waits for the moves it expects.
const STREAM_BOUND: Duration = Duration::from_secs(30);

fn relay_config() -> Config {
    Config {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        ..config()
    }
}

/// Sends numbered messages of [`PAYLOAD`] bytes to `to` until `stop` is set (and at least
/// `min` of them), then the END message; returns how many came before it.
fn stream(sender: &mut Client, to: &str, min: u64, stop: &AtomicBool) -> u64 {
    let started = Instant::now();
    let mut i = 0u64;
    while i < min || (!stop.load(Ordering::Relaxed) && started.elapsed() < STREAM_BOUND) {
        sender
            .send(to.as_bytes(), &numbered(PAYLOAD, i))
            .expect("send");
        if i % 64 == 63 {
            sender.flush().expect("flush");
        }
        i += 1;
    }
    sender
        .send(to.as_bytes(), &numbered(PAYLOAD, END))
        .expect("send END");
    sender.flush().expect("flush");
    i
}

/// Waits (bounded by [`STREAM_BOUND`]) until the relay has made `moves` moves.
fn wait_for_moves(relay: &ringrelay::server::Server, moves: u64) -> bool {
    let deadline = Instant::now() + STREAM_BOUND;
    while relay.stats().connection_moves < moves {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Streams from `sender` to `to` on a thread of its own (see [`stream`]) until `stop`; returns
/// how many messages it sent, what the sender heard, and the sender, still connected.
fn spawn_flow(
    mut sender: Client,
    to: String,
    stop: &Arc<AtomicBool>,
) -> JoinHandle<(u64, Vec<Event>, Client)> {
    let stop = Arc::clone(stop);
    std::thread::spawn(move || {
        let sent = stream(&mut sender, &to, 10_000, &stop);
        let events = sync(&mut sender);
        (sent, events, sender)
    })
}

#[test]
fn a_receiver_fed_from_another_worker_moves_there_mid_stream_and_misses_nothing() {
    let relay = start(relay_config());
    let (addr, metrics) = (relay.local_addr(), relay.metrics_addr().expect("metrics"));
    let (raw, receiver, receiver_worker) = raw_where(addr, metrics, "receiver", |_| true);
    let (sender, _, sender_worker) =
        client_where(addr, metrics, "sender", |w| w != receiver_worker);
    // Another flow beside the receiver, both its ends there: the workers are shared anyway,
    // so the split flow joins its sender (see `core::steer::follow_worth_it`).
    let here = |w| w == receiver_worker;
    let (raw_other, other, _) = raw_where(addr, metrics, "other", here);
    let (other_sender, _, _) = client_where(addr, metrics, "other-sender", here);
    let readers = [
        spawn_reader(raw, receiver.clone(), Arc::default(), STREAM_BOUND * 2),
        spawn_reader(raw_other, other.clone(), Arc::default(), STREAM_BOUND * 2),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let flows = [
        spawn_flow(sender, receiver.clone(), &stop),
        spawn_flow(other_sender, other.clone(), &stop),
    ];
    let moved = wait_for_moves(&relay, 1);
    stop.store(true, Ordering::Relaxed);
    let mut open = Vec::new();
    for (flow, reader) in flows.into_iter().zip(readers) {
        let (sent, events, sender) = flow.join().expect("a sender thread");
        let (read, receiver) = reader.join().expect("a reader thread");
        assert!(events.is_empty(), "a sender heard {events:?}");
        assert_eq!(read, Ok(sent));
        open.push((sender, receiver));
    }
    assert!(
        moved,
        "no move within {STREAM_BOUND:?}: {:?}",
        relay.stats()
    );
    assert_eq!(worker_of(metrics, &receiver), sender_worker);
    assert_eq!(
        worker_of(metrics, &other),
        receiver_worker,
        "the other flow stayed"
    );
    let stats = relay.stats();
    assert_eq!(stats.slow_consumer_closes, 0, "{stats:?}");
    assert_eq!(stats.connections_open, 4, "{stats:?}");
}

#[test]
fn a_lone_flow_across_two_idle_workers_stays_split() {
    let relay = start(relay_config());
    let (addr, metrics) = (relay.local_addr(), relay.metrics_addr().expect("metrics"));
    let (raw, receiver, receiver_worker) = raw_where(addr, metrics, "receiver", |_| true);
    let (sender, _, sender_worker) =
        client_where(addr, metrics, "sender", |w| w != receiver_worker);
    let reader = spawn_reader(raw, receiver.clone(), Arc::default(), STREAM_BOUND * 2);
    let stop = Arc::new(AtomicBool::new(false));
    let flow = spawn_flow(sender, receiver.clone(), &stop);
    // Three steering intervals of a busy flow: each would have moved the receiver.
    std::thread::sleep(Duration::from_millis(3 * STEER_INTERVAL_MS));
    stop.store(true, Ordering::Relaxed);
    let (sent, events, _sender) = flow.join().expect("the sender thread");
    let (read, _receiver) = reader.join().expect("the reader thread");
    assert!(events.is_empty(), "the sender heard {events:?}");
    assert_eq!(read, Ok(sent));
    assert!(sent > 100_000, "a busy flow: {sent} messages");
    assert_eq!(relay.stats().connection_moves, 0);
    assert_eq!(worker_of(metrics, &receiver), receiver_worker);
    assert_ne!(receiver_worker, sender_worker);
}

#[test]
fn two_flows_hashed_onto_one_worker_end_on_one_worker_each() {
    let relay = start(relay_config());
    let (addr, metrics) = (relay.local_addr(), relay.metrics_addr().expect("metrics"));
    // Both flows, all four ends, on the worker of the first receiver.
    let (raw_a, receiver_a, busy) = raw_where(addr, metrics, "receiver-a", |_| true);
    let (raw_b, receiver_b, _) = raw_where(addr, metrics, "receiver-b", |w| w == busy);
    let (sender_a, id_a, _) = client_where(addr, metrics, "sender-a", |w| w == busy);
    let (sender_b, id_b, _) = client_where(addr, metrics, "sender-b", |w| w == busy);
    let readers = [
        spawn_reader(raw_a, receiver_a.clone(), Arc::default(), STREAM_BOUND * 2),
        spawn_reader(raw_b, receiver_b.clone(), Arc::default(), STREAM_BOUND * 2),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let streams: Vec<_> = [
        (sender_a, receiver_a.clone()),
        (sender_b, receiver_b.clone()),
    ]
    .into_iter()
    .map(|(mut sender, to)| {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let sent = stream(&mut sender, &to, 10_000, &stop);
            let events = sync(&mut sender);
            (sent, events, sender)
        })
    })
    .collect();
    // A sender moves to the idle worker, then its receiver follows it.
    let moved = wait_for_moves(&relay, 2);
    stop.store(true, Ordering::Relaxed);
    let mut open = Vec::new();
    for (streaming, reader) in streams.into_iter().zip(readers) {
        let (count, events, sender) = streaming.join().expect("a sender thread");
        let (read, receiver) = reader.join().expect("a reader thread");
        assert!(events.is_empty(), "a sender heard {events:?}");
        assert_eq!(read, Ok(count));
        open.push((sender, receiver));
    }
    assert!(
        moved,
        "not two moves within {STREAM_BOUND:?}: {:?}",
        relay.stats()
    );
    let (a, b) = (worker_of(metrics, &id_a), worker_of(metrics, &id_b));
    assert_ne!(a, b, "the senders ended on different workers");
    assert_eq!(
        worker_of(metrics, &receiver_a),
        a,
        "receiver a with its sender"
    );
    assert_eq!(
        worker_of(metrics, &receiver_b),
        b,
        "receiver b with its sender"
    );
}
