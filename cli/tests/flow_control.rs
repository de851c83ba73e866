//! Flow control over real sockets on one node (README "Flow control"): a consumer that falls
//! behind for a moment slows the producer that feeds it instead of being closed, across
//! workers; one that stops reading for good is closed once it has stayed above
//! `pending_bytes_max` for `slow_consumer_grace_ms`, while the producer and the other consumer
//! carry on. The same across two nodes is `flow_control_cluster.rs`.

mod common;
#[path = "shared/overloaded.rs"]
mod overloaded;
#[path = "shared/paced_reader.rs"]
mod paced_reader;
#[path = "shared/placement.rs"]
mod placement;
#[path = "shared/samples.rs"]
mod samples;

use common::*;
use overloaded::overloaded_about;
use paced_reader::{numbered_payload, spawn_paced_reader, Pauses};
use placement::{listed, sender_on_another_worker, worker_of};
use ringrelay::client::{Client, Event};
use ringrelay::config::Config;
use ringrelay::protocol::ErrorCode;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const PAYLOAD: usize = 1024;

fn relay_config() -> Config {
    Config {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        ..config()
    }
}

/// The stuck subscriber "stuck": a tiny receive buffer, subscribed to `topic` (in `group`),
/// and then it reads nothing unless the test makes it.
fn stuck_subscriber(addr: SocketAddr, topic: &[u8], group: &[u8]) -> Raw {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect_timeout(&addr.into(), WAIT).unwrap();
    let mut stuck = Raw::from_stream(std::net::TcpStream::from(socket));
    stuck.handshake("stuck");
    stuck.write_frame(ringrelay::protocol::Frame::Subscribe { topic, group });
    stuck.write_frame(ringrelay::protocol::Frame::Ping { nonce: 7 });
    assert_eq!(stuck.next_frame(), Ok(Owned::Pong(7)));
    stuck
}

/// Sends `n` numbered messages of [`PAYLOAD`] bytes to `to` as fast as the relay takes them,
/// in 64 KiB writes.
fn blast(sender: &mut Client, to: &[u8], n: u64) {
    let mut payload = vec![0x5a; PAYLOAD];
    for i in 0..n {
        numbered_payload(&mut payload, i);
        sender.send(to, &payload).expect("send");
        if i % 64 == 63 {
            sender.flush().expect("flush");
        }
    }
    sender.flush().expect("flush");
}

/// The run of issue 15: two workers, a sender blasting 1 KiB messages to one receiver on the
/// other worker whose reading thread stops for 20 ms five times. Every message arrives in
/// order, nobody is closed, the sender hears no error, and the relay did hold the sender back
/// (its queue for the receiver reached the high watermark).
#[test]
fn a_receiver_paused_for_20_ms_at_a_time_gets_every_message_and_nobody_is_closed() {
    const N: u64 = 300_000;
    let relay = start(relay_config());
    let (addr, metrics) = (relay.local_addr(), relay.metrics_addr().expect("metrics"));
    let pauses = Pauses {
        every: N / 6,
        count: 5,
        pause: Duration::from_millis(20),
        last_pause: Duration::from_millis(20),
    };
    let reader = spawn_paced_reader(addr, "receiver", None, N, pauses, Duration::from_secs(120));
    let receiver_worker = worker_of(metrics, "receiver");
    let mut sender = sender_on_another_worker(addr, metrics, receiver_worker);
    let started = Instant::now();
    blast(&mut sender, b"receiver", N);
    let errors = sync(&mut sender);
    assert!(
        errors.is_empty(),
        "the sender heard {} events, first {:?}",
        errors.len(),
        errors.first()
    );
    let got = reader.join().expect("the reader thread");
    eprintln!(
        "{N} messages of {PAYLOAD} B in {:?}: {got:?}",
        started.elapsed()
    );
    assert_eq!(got, Ok(N));
    let stats = relay.stats();
    assert_eq!(stats.slow_consumer_closes, 0, "{stats:?}");
    assert!(
        stats.producer_stalls > 0,
        "the receiver's queue never reached its high watermark: {stats:?}"
    );
}

/// The value of the counter `series` on the relay's metrics endpoint.
fn sample(metrics: SocketAddr, series: &str) -> f64 {
    let (status, body) = http_get(metrics, "/metrics");
    assert_eq!(status, 200, "{body}");
    samples::sample_in(&body, series).unwrap_or_else(|| panic!("no sample {series}"))
}

/// A message dropped by the worker that holds its receiver (its queues together at
/// `pending_bytes_per_worker_max`, here no larger than one client's bound) is reported to
/// its sender on the other worker: ERROR OVERLOADED naming the receiver. Nobody is closed.
#[test]
fn a_drop_on_the_receivers_worker_is_reported_to_the_sender_on_another_worker() {
    let relay = start(Config {
        pending_bytes_max: 2 << 20,
        pending_bytes_per_worker_max: 2 << 20,
        stall_ms_max: 20,
        slow_consumer_grace_ms: 60_000,
        // The flow must stay across workers.
        steer_connections: false,
        ..relay_config()
    });
    let (addr, metrics) = (relay.local_addr(), relay.metrics_addr().expect("metrics"));
    // "stuck" never reads: its worker's queues fill to the bound.
    let _stuck = stuck_subscriber(addr, b"unused", b"");
    let stuck_worker = worker_of(metrics, "stuck");
    let mut sender = sender_on_another_worker(addr, metrics, stuck_worker);
    blast(&mut sender, b"stuck", 20_000);
    let mut heard = Vec::new();
    let deadline = Instant::now() + WAIT;
    let report = loop {
        heard.extend(sync(&mut sender));
        if let Some(report) = overloaded_about(&heard, b"stuck") {
            break report;
        }
        assert!(Instant::now() < deadline, "no report; heard {heard:?}");
    };
    assert!(
        report.starts_with("relay overloaded: messages dropped on the way"),
        "{report}"
    );
    let dropped = sample(
        metrics,
        "ringrelay_drops_total{reason=\"worker_queues_full\"}",
    );
    assert!(dropped > 0.0, "the receiver's worker dropped at its bound");
    assert!(sample(metrics, "ringrelay_drop_reports_total") >= 1.0);
    assert_eq!(sample(metrics, "ringrelay_slow_consumer_closes_total"), 0.0);
}

/// A receiver that stops reading for longer than its producers' stall budget is not closed
/// for it: the messages that would take its queue past twice `pending_bytes_max` are dropped
/// and their sender told OVERLOADED, and once it reads again it gets every other message, in
/// order, on the same connection (it would be closed only after `slow_consumer_grace_ms`).
#[test]
fn a_receiver_paused_past_the_stall_budget_loses_messages_its_sender_hears_of_not_its_connection() {
    const N: u64 = 20_000;
    let relay = start(Config {
        pending_bytes_max: 1 << 20,
        stall_ms_max: 20,
        slow_consumer_grace_ms: 60_000,
        ..relay_config()
    });
    let (addr, metrics) = (relay.local_addr(), relay.metrics_addr().expect("metrics"));
    // Reads nothing until the flood is over: 20 MiB, past its bound of 2 MiB and the kernel's
    // socket buffers.
    let mut paused = stuck_subscriber(addr, b"unused", b"");
    let mut sender = connect(addr, "sender");
    blast(&mut sender, b"stuck", N);
    let told = sync(&mut sender);
    assert!(
        told.iter().any(|e| matches!(e,
            Event::Error { code, subject, .. }
                if *code == ErrorCode::OVERLOADED && (subject.is_empty() || subject == b"stuck"))),
        "the sender heard {told:?}"
    );
    let dropped = || sample(metrics, "ringrelay_drops_total{reason=\"slow_consumer\"}") as u64;
    assert!(dropped() > 0, "nothing was dropped at the bound");
    assert_eq!(relay.stats().slow_consumer_closes, 0);
    // It reads again: every message not dropped arrives, in order, on the same connection.
    // (With the receiver on the sender's worker every drop is counted by the time the sender's
    // PING is answered; on another worker the last may still be in that worker's queue, so
    // the count is read again whenever the receiver has nothing to read.)
    let (mut got, mut last) = (0u64, None);
    let deadline = Instant::now() + WAIT;
    while got + dropped() < N {
        let quiet = (Instant::now() + Duration::from_millis(100)).min(deadline);
        while let Some(frame) = paused.frame_if_any_by(quiet).expect("the receiver is open") {
            match frame {
                Owned::Deliver { payload, .. } => {
                    let index = u64::from_le_bytes(payload[..8].try_into().unwrap());
                    assert!(last.is_none_or(|l| l < index), "{index} after {last:?}");
                    (got, last) = (got + 1, Some(index));
                }
                Owned::Ping(_) => {}
                other => panic!("after {got} messages the receiver got {other:?}"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "{got} messages read and {} dropped of {N}",
            dropped()
        );
    }
    assert_eq!(got + dropped(), N, "every message read or counted dropped");
    assert_eq!(relay.stats().slow_consumer_closes, 0);
}

/// A subscriber that stops reading for good: its queue stalls the producer once, for at most
/// `stall_ms_max`; it is closed as a slow consumer once it has stayed above
/// `pending_bytes_max` for `slow_consumer_grace_ms` (give or take one tick, at most 250 ms);
/// and the other subscriber of the same topic gets every message while the producer
/// publishes at its own pace throughout.
#[test]
fn a_subscriber_that_stops_reading_is_closed_after_its_grace_while_the_others_carry_on() {
    const N: u64 = 12_800;
    const BATCH: u64 = 64;
    const GRACE_MS: u64 = 500;
    const STALL_MS: u64 = 100;
    const TICK_MS: u64 = 250;
    let pending_bytes_max = 2 << 20;
    let relay = start(Config {
        pending_bytes_max,
        slow_consumer_grace_ms: GRACE_MS,
        stall_ms_max: STALL_MS,
        ..relay_config()
    });
    let (addr, metrics) = (relay.local_addr(), relay.metrics_addr().expect("metrics"));
    // Held open and never read.
    let _stuck = stuck_subscriber(addr, b"feed", b"");
    let no_pauses = Pauses {
        every: u64::MAX,
        count: 0,
        pause: Duration::ZERO,
        last_pause: Duration::ZERO,
    };
    let reader = spawn_paced_reader(addr, "reader", Some("feed"), N, no_pauses, WAIT * 4);
    let mut producer = connect(addr, "producer");

    // The producer publishes about 2 MB/s: the kernel's socket buffers take the first few
    // megabytes for the stuck subscriber; from passing pending_bytes_max its queue needs
    // about a second to reach its ceiling (twice the bound), so the grace decides.
    let (mut over_at, mut closed_at) = (None, None);
    let mut payload = vec![0x33; PAYLOAD];
    let started = Instant::now();
    let mut longest_flush = Duration::ZERO;
    for batch in 0..N / BATCH {
        for i in batch * BATCH..(batch + 1) * BATCH {
            numbered_payload(&mut payload, i);
            producer.publish(b"feed", &payload).expect("publish");
        }
        let flush_started = Instant::now();
        producer
            .flush()
            .expect("the producer is never blocked for long");
        longest_flush = longest_flush.max(flush_started.elapsed());
        // The workload's pace, and the observation of the stuck queue meanwhile.
        let next_batch = started + Duration::from_millis(30 * (batch + 1));
        while Instant::now() < next_batch {
            let now = Instant::now();
            if closed_at.is_none() && relay.stats().slow_consumer_closes > 0 {
                closed_at = Some(now);
            }
            let queued = || listed(metrics, "stuck").and_then(|c| c["queued_bytes"].as_u64());
            if over_at.is_none() && queued().is_some_and(|q| q > pending_bytes_max as u64) {
                over_at = Some(now);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let over_at = over_at.expect("the stuck queue passed pending_bytes_max");
    let closed_at = closed_at.expect("the stuck subscriber was closed");
    let above_ms = closed_at.duration_since(over_at).as_millis() as u64;
    eprintln!("closed {above_ms} ms after its queue was seen above pending_bytes_max");
    assert!(
        (GRACE_MS - 50..=GRACE_MS + TICK_MS + 100).contains(&above_ms),
        "closed {above_ms} ms after passing pending_bytes_max (grace {GRACE_MS} ms)"
    );
    // The producer and the other subscriber keep their pace: no flush waits much past the
    // one stall (these bounds are ten times what a loaded CI machine needs, not speed
    // targets), and the reader is never far behind the last publish.
    let published_at = Instant::now();
    assert_eq!(reader.join().expect("the reader thread"), Ok(N));
    let reader_lag = published_at.elapsed();
    eprintln!(
        "longest flush {longest_flush:?}, the reader done {reader_lag:?} after the last publish"
    );
    assert!(
        longest_flush <= Duration::from_millis(STALL_MS + 1000),
        "a flush of the producer waited {longest_flush:?} (stall_ms_max {STALL_MS} ms)"
    );
    assert!(
        reader_lag <= Duration::from_secs(2),
        "the other subscriber finished {reader_lag:?} after the last publish"
    );
    let stats = relay.stats();
    assert_eq!(stats.slow_consumer_closes, 1, "{stats:?}");
    assert!(
        stats.producer_stall_ms <= STALL_MS + 50,
        "the producer was stalled {} ms in all for one stuck subscriber (stall_ms_max \
         {STALL_MS}): {stats:?}",
        stats.producer_stall_ms
    );
    assert!(sync(&mut producer).is_empty());
    // Its CLOSE could not reach it (its socket is full): the linger ran out, counted.
    wait_until_within("the stuck subscriber's linger ran out", SLOW_WAIT, || {
        relay.stats().close_linger_timeouts == 1
    });
}

/// The sender of issue 15's runs, whose receiver is gone: it floods an id that is registered
/// nowhere and reads nothing. It is sent one ERROR for the id at once and then one per
/// `error_interval_ms` carrying how many it stands for; a PING still finds every error
/// reported before its PONG; and it is never closed for the errors it did not read.
#[test]
fn a_sender_flooding_an_unknown_id_gets_coalesced_errors_with_their_count_and_stays_open() {
    const N: u64 = 200_000;
    let relay = start(relay_config());
    let mut sender = connect(relay.local_addr(), "flooder");
    let payload = [1u8; 64];
    for i in 0..N {
        sender.send(b"nobody", &payload).expect("send");
        if i % 256 == 255 {
            sender
                .flush()
                .expect("the sender is never blocked for long");
        }
    }
    let events = sender.round_trip(WAIT).expect("a PING's PONG");
    let mut reported = 0u64;
    for (i, event) in events.iter().enumerate() {
        let Event::Error {
            code,
            subject,
            text,
        } = event
        else {
            panic!("the flooder got {event:?}");
        };
        assert_eq!(
            (*code, subject.as_slice()),
            (ErrorCode::UNKNOWN_ID, &b"nobody"[..])
        );
        reported += match text.strip_prefix("unknown id") {
            Some("") if i == 0 => 1,
            Some(rest) => rest
                .strip_prefix("; ")
                .and_then(|r| r.strip_suffix(" more"))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("a summary's text: {text:?}")),
            None => panic!("an ERROR's text: {text:?}"),
        };
    }
    assert_eq!(reported, N, "the ERRORs account for every SEND: {events:?}");
    assert!(
        events.len() <= 12,
        "{} ERROR frames for one id within seconds",
        events.len()
    );
    let stats = relay.stats();
    // All but the first were folded into summaries.
    assert_eq!(stats.errors_coalesced, N - 1, "{stats:?}");
    assert_eq!(stats.slow_consumer_closes, 0, "{stats:?}");
    assert_eq!(stats.unknown_id, N, "{stats:?}");
}

/// An acknowledged sender flooding an id registered nowhere, reading nothing. Its ERRORs name
/// their messages, so none is coalesced; but no ERROR takes its queue past
/// `pending_bytes_max`: past it they are dropped and counted (a library's retransmission timer
/// sends those messages again). So the sender outlives `slow_consumer_grace_ms` and is never
/// closed as a slow consumer; every SEND was answered or counted.
#[test]
fn an_acked_sender_flooding_an_unknown_id_is_never_closed_for_errors_it_did_not_read() {
    // Enough ERRORs to fill the kernel's socket buffers on both sides, then the queue.
    const N: u64 = 500_000;
    let grace_ms = 100;
    let relay = start(Config {
        max_frame_bytes: 64 << 10,
        pending_bytes_max: 256 << 10,
        slow_consumer_grace_ms: grace_ms,
        ..relay_config()
    });
    let mut sender = connect(relay.local_addr(), "acked-flooder");
    assert!(sender.protocol_version() >= 2);
    let payload = [1u8; 16];
    for seq in 1..=N {
        let id = ringrelay::protocol::MsgId { epoch: 7, seq };
        sender.send_acked(b"nobody", id, &payload).expect("send");
        if seq % 256 == 0 {
            sender
                .flush()
                .expect("the sender is never blocked for long");
        }
    }
    sender.flush().expect("flush");
    wait_until(
        "the relay has read every SEND, or closed the sender",
        || {
            let stats = relay.stats();
            stats.unknown_id == N || stats.slow_consumer_closes > 0
        },
    );
    let stats = relay.stats();
    assert_eq!(stats.slow_consumer_closes, 0, "{stats:?}");
    assert!(stats.error_drops > 0, "the queue never filled: {stats:?}");
    // The subject of the test: the queue stays full, unread, for longer than the grace and
    // the tick that would enforce it.
    std::thread::sleep(Duration::from_millis(grace_ms + 2 * 250));
    let events = sender.round_trip(WAIT).expect("still open: a PING's PONG");
    let mut answered = 0u64;
    for event in &events {
        match event {
            Event::AckedError { code, subject, .. } => {
                assert_eq!(
                    (*code, subject.as_slice()),
                    (ErrorCode::UNKNOWN_ID, &b"nobody"[..])
                );
                answered += 1;
            }
            other => panic!("the flooder got {other:?}"),
        }
    }
    let stats = relay.stats();
    assert_eq!(answered + stats.error_drops, N, "{stats:?}");
    assert_eq!(stats.slow_consumer_closes, 0, "{stats:?}");
}

/// Issue 15's fan-out burst: 100 publishes of 2 KiB to 200 subscribers spread over two
/// workers, with the queue between the workers bounded at 4 MiB. The subscribers on the
/// other worker share one copy of each payload in that queue (2 KiB plus 8 bytes per
/// subscriber, about 1 MB for the burst instead of 20), so all 20,000 deliveries arrive.
#[test]
fn a_burst_of_publishes_to_200_subscribers_across_workers_loses_nothing() {
    fan_out_burst(2048, 100);
}

/// The same with payloads in the zero-copy band (64 KiB, the default threshold): each goes to
/// the other worker by reference, once per batch however many of its subscribers are there
/// (counted per subscriber, one publish to the hundred or so on the other worker would hold
/// 6.4 MB of the 4 MiB bound, and most deliveries were refused).
#[test]
fn a_burst_of_large_publishes_to_200_subscribers_across_workers_loses_nothing() {
    let large = Config::default().zero_copy_threshold_bytes;
    fan_out_burst(large, 10);
}

/// `publishes` publishes of `payload_bytes` to 200 subscribers over two workers whose queue
/// between them is bounded at 4 MiB: every delivery arrives, none is dropped at the queue.
fn fan_out_burst(payload_bytes: usize, publishes: u64) {
    const SUBSCRIBERS: usize = 200;
    let relay = start(Config {
        handoff_bytes_max: 4 << 20,
        ..relay_config()
    });
    let addr = relay.local_addr();
    let mut subscribers: Vec<Client> = (0..SUBSCRIBERS)
        .map(|i| {
            let mut c = connect(addr, &format!("sub-{i}"));
            c.subscribe(b"burst").expect("subscribe");
            c
        })
        .collect();
    for c in subscribers.iter_mut() {
        assert!(sync(c).is_empty());
    }
    let mut publisher = connect(addr, "burster");
    let mut payload = vec![0x77; payload_bytes];
    for i in 0..publishes {
        numbered_payload(&mut payload, i);
        publisher.publish(b"burst", &payload).expect("publish");
    }
    publisher.flush().expect("flush");
    for c in subscribers.iter_mut() {
        for i in 0..publishes {
            let (sender, topic, got) = next_message(c);
            assert_eq!(
                (sender.as_slice(), topic.as_deref()),
                (&b"burster"[..], Some(&b"burst"[..]))
            );
            assert_eq!(got[..8], i.to_le_bytes(), "message {i}");
            assert_eq!(got.len(), payload_bytes, "message {i}");
        }
    }
    assert!(sync(&mut publisher).is_empty());
    let stats = relay.stats();
    assert_eq!(stats.handoff_drops, 0, "{stats:?}");
}

/// A queue group whose one member stops reading: once that member's queue is congested the
/// group's picks pass over it, so the producer is held back for at most one stall and the
/// other member takes the rest at full speed; nobody is closed, and when the stuck member
/// reads again it finds exactly what it was given. Every message reaches one member once.
#[test]
fn a_queue_group_passes_over_a_member_that_stopped_reading() {
    // One worker: both members' queues are the picking worker's own.
    queue_group_with_a_stuck_member(1, false);
}

/// The same with the stuck member on another worker than the producer: the picking worker
/// sees the member on its worker's congestion board, which keeps it marked behind after its
/// stall budget is spent, so the picks still pass over it and it is not closed.
#[test]
fn a_queue_group_passes_over_a_stuck_member_on_another_worker_after_its_stall() {
    queue_group_with_a_stuck_member(2, true);
}

fn queue_group_with_a_stuck_member(workers: usize, producer_elsewhere: bool) {
    // The stuck member's socket and its queue up to the high watermark take about 5,000 of
    // these before its picks are passed over; an even share would be N/2.
    const N: u64 = 40_000;
    const STALL_MS: u64 = 250;
    let relay = start(Config {
        workers,
        pending_bytes_max: 2 << 20,
        slow_consumer_grace_ms: 500,
        // The producer must stay on the other worker.
        steer_connections: false,
        stall_ms_max: STALL_MS,
        ..relay_config()
    });
    let (addr, metrics) = (relay.local_addr(), relay.metrics_addr().expect("metrics"));
    let mut stuck = stuck_subscriber(addr, b"work", b"g");
    // The reading member; a plain subscription to "done" tells it the producer finished
    // (after every message of the group, on the same queue).
    let mut reader = connect(addr, "reader");
    reader.subscribe_group(b"work", b"g").unwrap();
    reader.subscribe(b"done").unwrap();
    sync(&mut reader);
    let reading = std::thread::spawn(move || {
        let mut got = Vec::new();
        loop {
            let (_, topic, payload) = next_message(&mut reader);
            if topic.as_deref() == Some(&b"done"[..]) {
                return got;
            }
            got.push(u64::from_le_bytes(payload[..8].try_into().unwrap()));
        }
    });
    let mut producer = if producer_elsewhere {
        sender_on_another_worker(addr, metrics, worker_of(metrics, "stuck"))
    } else {
        connect(addr, "producer")
    };
    let mut payload = vec![0x44; PAYLOAD];
    for i in 0..N {
        numbered_payload(&mut payload, i);
        producer.publish(b"work", &payload).expect("publish");
        if i % 64 == 63 {
            producer.flush().expect("flush");
        }
    }
    producer.publish(b"done", b"").expect("publish");
    producer.flush().expect("flush");
    let mut seen = reading.join().expect("the reader thread");
    let stats = relay.stats();
    assert_eq!(stats.slow_consumer_closes, 0, "{stats:?}");
    assert!(
        stats.producer_stall_ms <= STALL_MS + 100,
        "the producer was stalled {} ms for one stuck member (stall_ms_max {STALL_MS})",
        stats.producer_stall_ms
    );
    // The stuck member reads again: what it was given is there, and nothing more.
    let given = N - seen.len() as u64;
    assert!(
        given > 0 && given < N / 4,
        "the stuck member was given {given} of {N}"
    );
    let deadline = Instant::now() + WAIT;
    while (seen.len() as u64) < N {
        match stuck.next_frame_by(deadline) {
            Ok(Owned::Deliver { payload, .. }) => {
                seen.push(u64::from_le_bytes(payload[..8].try_into().unwrap()))
            }
            Ok(Owned::Ping(nonce)) => stuck.write_frame(ringrelay::protocol::Frame::Pong { nonce }),
            other => panic!("stuck member: {other:?} after {} messages", seen.len()),
        }
    }
    seen.sort_unstable();
    assert!(
        seen.iter().copied().eq(0..N),
        "every message reached exactly one member"
    );
}
