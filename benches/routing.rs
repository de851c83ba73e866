//! Routing of one received batch, the relay's per-message hot path minus syscalls: decode every
//! frame of a receive buffer holding 1024 frames (16-byte payloads), route each through
//! `Tables::route_send` / `route_publish` with one set of guards per batch, and let a sink that
//! mimics the worker append the DELIVER frame to a per-destination send buffer. The buffers are
//! cleared (capacity kept) every iteration, so the steady state allocates nothing.
//!
//! Run: `cargo bench --bench routing`. Throughput is received messages (1024 per iteration);
//! a PUBLISH to 10 subscribers makes 10 deliveries per message.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringrelay::core::{Location, Origin, Row, Sink, Tables};
use ringrelay::protocol::{
    decode, encode_deliver, CloseReason, Decoded, ErrorCode, Frame, Message,
    MAX_FRAME_BYTES_DEFAULT,
};
use std::time::Duration;

const FRAMES: usize = 1024;
const PAYLOAD: [u8; 16] = [0x5a; 16];
const GENERATION: u32 = 7;
const SENDER: &[u8] = b"client-999999";
const TOPIC: &[u8] = b"market.eu.quotes";

fn id(i: u32) -> Vec<u8> {
    format!("client-{i:06}").into_bytes()
}

fn loc(slot: u32) -> Location {
    Location {
        node: 0,
        worker: 0,
        slot,
        generation: GENERATION,
    }
}

/// Mimics the worker's local delivery: one send buffer per connection slot (generation
/// checked), plus the list of slots that got bytes this batch (the worker's pending-send list).
struct WorkerSink {
    out: Vec<Vec<u8>>,
    generation: Vec<u32>,
    dirty: Vec<u32>,
    deliveries: u64,
    errors: u64,
}

impl WorkerSink {
    fn new(slots: usize) -> Self {
        WorkerSink {
            out: (0..slots).map(|_| Vec::new()).collect(),
            generation: vec![GENERATION; slots],
            dirty: Vec::new(),
            deliveries: 0,
            errors: 0,
        }
    }

    /// Clears the buffers that were written (as after a completed send), keeping capacity.
    fn reset(&mut self) {
        for &slot in &self.dirty {
            self.out[slot as usize].clear();
        }
        self.dirty.clear();
        self.deliveries = 0;
        self.errors = 0;
    }
}

impl Sink for WorkerSink {
    #[inline]
    fn deliver(&mut self, to: Location, message: &Message<'_>) {
        let slot = to.slot as usize;
        if self.generation.get(slot) != Some(&to.generation) {
            return;
        }
        let out = &mut self.out[slot];
        if out.is_empty() {
            self.dirty.push(to.slot);
        }
        encode_deliver(out, message);
        self.deliveries += 1;
    }

    fn presence(&mut self, _to: Location, _client_id: &[u8], _online: bool) {}

    fn close(&mut self, _to: Location, _reason: CloseReason, _text: &'static str) {}

    fn error_to_origin(&mut self, _code: ErrorCode, _subject: &[u8], _text: &'static str) {
        self.errors += 1;
    }
    fn forward_send(&mut self, _node: u16, _target: &[u8], _message: &Message<'_>) {
        unreachable!("single-node benchmark")
    }
    fn forward_publish(&mut self, _: u16, _: &Message<'_>, _: &[u8], _: bool) {}
}

/// Decodes and routes every frame of `buf`; returns the number of frames.
#[inline]
fn route_batch(tables: &Tables, origin: Origin<'_>, buf: &[u8], sink: &mut WorkerSink) -> usize {
    let guards = tables.guards();
    let mut at = 0;
    let mut frames = 0;
    while at < buf.len() {
        match decode(&buf[at..], MAX_FRAME_BYTES_DEFAULT) {
            Ok(Decoded::Frame { frame, consumed }) => {
                at += consumed;
                frames += 1;
                match frame {
                    Frame::Send { target, payload } => {
                        let message = Message::plain(origin.client_id, b"", payload);
                        tables.route_send(&guards, target, &message, sink);
                    }
                    Frame::Publish {
                        topic,
                        payload,
                        no_echo,
                    } => {
                        let message = Message::plain(origin.client_id, topic, payload);
                        tables.route_publish(&guards, origin.location, &message, no_echo, sink);
                    }
                    other => panic!("unexpected frame {other:?}"),
                }
            }
            other => panic!("unexpected decode result {other:?}"),
        }
    }
    frames
}

struct Case {
    name: &'static str,
    tables: Tables,
    buf: Vec<u8>,
    slots: usize,
    deliveries_per_batch: u64,
}

/// `registered` rows in the location table; SEND targets cycle over the first `targets` ids.
fn send_case(name: &'static str, registered: u32, targets: u32) -> Case {
    let tables = Tables::new();
    for i in 0..registered {
        tables.locations.register(
            &id(i),
            Row {
                location: loc(i),
                epoch: 1,
            },
        );
    }
    let ids: Vec<Vec<u8>> = (0..targets).map(id).collect();
    let mut buf = Vec::new();
    for n in 0..FRAMES {
        Frame::Send {
            target: &ids[n % ids.len()],
            payload: &PAYLOAD,
        }
        .encode(&mut buf)
        .unwrap();
    }
    Case {
        name,
        tables,
        buf,
        slots: registered as usize,
        deliveries_per_batch: FRAMES as u64,
    }
}

fn publish_case(name: &'static str, subscribers: u32) -> Case {
    publish_case_with_patterns(name, subscribers, &[])
}

/// [`publish_case`] with `patterns` also subscribed (by the connection of slot 0): patterns
/// that cannot match show what they cost a publish (the trie walk); matching ones add a
/// delivery each only to connections not already served.
fn publish_case_with_patterns(name: &'static str, subscribers: u32, patterns: &[Vec<u8>]) -> Case {
    let tables = Tables::new();
    for p in patterns {
        tables.topics.subscribe(p, b"", loc(0));
    }
    for i in 0..subscribers {
        tables.locations.register(
            &id(i),
            Row {
                location: loc(i),
                epoch: 1,
            },
        );
        tables.topics.subscribe(TOPIC, b"", loc(i));
    }
    let mut buf = Vec::new();
    for _ in 0..FRAMES {
        Frame::Publish {
            topic: TOPIC,
            payload: &PAYLOAD,
            no_echo: false,
        }
        .encode(&mut buf)
        .unwrap();
    }
    Case {
        name,
        tables,
        buf,
        slots: subscribers as usize,
        deliveries_per_batch: FRAMES as u64 * subscribers as u64,
    }
}

/// `topic` with its last token replaced by `wildcard` (`a.b` -> `a.*`), or `wildcard` alone.
fn pattern_of(topic: &[u8], wildcard: &[u8]) -> Vec<u8> {
    match topic.iter().rposition(|&b| b == b'.') {
        Some(dot) => [&topic[..=dot], wildcard].concat(),
        None => wildcard.to_vec(),
    }
}

fn routing(c: &mut Criterion) {
    let cases = [
        send_case("send16_to_64_ids", 64, 64),
        send_case("send16_to_64_of_100k_ids", 100_000, 64),
        publish_case("publish16_to_10_subs", 10),
        publish_case_with_patterns(
            "publish16_to_10_subs_10k_other_patterns",
            10,
            &(0..10_000)
                .map(|i| format!("other.{i}.*").into_bytes())
                .collect::<Vec<_>>(),
        ),
        publish_case_with_patterns(
            "publish16_to_10_subs_and_2_matching_patterns",
            10,
            &[pattern_of(TOPIC, b"*"), pattern_of(TOPIC, b">")],
        ),
    ];
    // The sending connection: not a subscriber, so no echo filtering applies.
    let origin = Origin {
        location: loc(u32::MAX),
        client_id: SENDER,
    };
    let mut g = c.benchmark_group("route_batch_1024");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(FRAMES as u64));
    for case in &cases {
        let mut sink = WorkerSink::new(case.slots);
        // Sanity: every frame routes, every delivery lands, nothing errors.
        assert_eq!(
            route_batch(&case.tables, origin, &case.buf, &mut sink),
            FRAMES
        );
        assert_eq!(sink.deliveries, case.deliveries_per_batch, "{}", case.name);
        assert_eq!(sink.errors, 0, "{}", case.name);
        let out_bytes: usize = sink.dirty.iter().map(|&s| sink.out[s as usize].len()).sum();
        println!(
            "{}: {} B in, {} deliveries, {} B out per batch",
            case.name,
            case.buf.len(),
            sink.deliveries,
            out_bytes
        );
        g.bench_function(BenchmarkId::new(case.name, FRAMES), |b| {
            b.iter(|| {
                sink.reset();
                let n = route_batch(&case.tables, origin, black_box(&case.buf), &mut sink);
                black_box((n, sink.deliveries))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
