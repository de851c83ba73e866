//! Codec micro-benchmarks: decode of single SEND frames, decode of a 64 KiB receive buffer of
//! back-to-back small SEND frames, the hot-path DELIVER encoder and the generic encoder.
//!
//! Run: `cargo bench --bench codec`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringrelay::protocol::{
    decode, encode_deliver, Decoded, Frame, Message, MAX_FRAME_BYTES_DEFAULT,
};
use std::time::Duration;

const MAX: usize = MAX_FRAME_BYTES_DEFAULT;
const SIZES: [usize; 3] = [16, 128, 1024];
const TARGET: &[u8] = b"client-0042";
const SENDER: &[u8] = b"client-0007";

fn send_frame(payload_len: usize) -> Vec<u8> {
    let payload = vec![0x5a; payload_len];
    let mut out = Vec::new();
    Frame::Send {
        target: TARGET,
        payload: &payload,
    }
    .encode(&mut out)
    .unwrap();
    out
}

fn decode_send(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_send");
    for size in SIZES {
        let buf = send_frame(size);
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &buf, |b, buf| {
            b.iter(|| match decode(black_box(buf), MAX) {
                Ok(Decoded::Frame {
                    frame: Frame::Send { target, payload },
                    consumed,
                }) => black_box((target, payload, consumed)),
                other => panic!("unexpected {other:?}"),
            })
        });
    }
    g.finish();
}

/// A 64 KiB buffer (as one large recv might fill) of back-to-back SEND frames with 16-byte
/// payloads, decoded front to back.
fn decode_stream(c: &mut Criterion) {
    let one = send_frame(16);
    let count = (64 * 1024) / one.len();
    let buf: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(count * one.len())
        .collect();
    let mut g = c.benchmark_group("decode_stream_64KiB");
    g.throughput(Throughput::Elements(count as u64));
    g.bench_function(BenchmarkId::new("send16", count), |b| {
        b.iter(|| {
            let buf = black_box(&buf[..]);
            let mut pos = 0;
            let mut frames = 0usize;
            while let Ok(Decoded::Frame { frame, consumed }) = decode(&buf[pos..], MAX) {
                black_box(&frame);
                pos += consumed;
                frames += 1;
            }
            assert_eq!(frames, count);
            frames
        })
    });
    g.finish();
}

fn encode_deliver_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode_deliver");
    for size in SIZES {
        let payload = vec![0x5a; size];
        let mut out = Vec::with_capacity(4096);
        g.throughput(Throughput::Bytes((size + 6 + 2 + SENDER.len()) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &payload, |b, payload| {
            b.iter(|| {
                out.clear();
                let message = Message::plain(black_box(SENDER), black_box(b""), black_box(payload));
                encode_deliver(&mut out, &message);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn frame_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_encode");
    for size in SIZES {
        let payload = vec![0x5a; size];
        let mut out = Vec::with_capacity(4096);
        g.bench_with_input(BenchmarkId::new("send", size), &payload, |b, payload| {
            b.iter(|| {
                out.clear();
                let f = Frame::Send {
                    target: black_box(TARGET),
                    payload: black_box(payload),
                };
                f.encode(&mut out).unwrap();
                black_box(out.len())
            })
        });
        g.bench_with_input(BenchmarkId::new("deliver", size), &payload, |b, payload| {
            b.iter(|| {
                out.clear();
                let f = Frame::Deliver {
                    sender: black_box(SENDER),
                    topic: black_box(b""),
                    payload: black_box(payload),
                };
                f.encode(&mut out).unwrap();
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = decode_send, decode_stream, encode_deliver_bench, frame_encode
}
criterion_main!(benches);
