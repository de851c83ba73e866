//! Acknowledged delivery's client-side cost per message, without I/O: the sender numbering
//! and keeping a message and encoding its SEND, and confirming it from a cumulative ACK; the
//! receiver decoding a DELIVER from a buffer of them and de-duplicating it, with the ACK it
//! owes at the end of the batch. `bench --ack` measures the same work end to end through a
//! relay.
//!
//! Run: `cargo bench --bench ack`.

use bytes::Bytes;
use criterion::{
    black_box, criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput,
};
use ringrelay::ack::{AckReceiver, AckSender, ReceiverConfig, SenderConfig};
use ringrelay::protocol::{
    decode, encode_deliver_acked, encode_send_acked, Decoded, Frame, MsgId, MAX_FRAME_BYTES_DEFAULT,
};
use std::time::Duration;

const SIZES: [usize; 2] = [16, 1024];
const TARGET: &[u8] = b"client-0042";
const SENDER: &[u8] = b"client-0007";
/// Messages per batch: a quarter of the default window, as `bench --ack` sends them.
const BATCH_MSGS: u64 = 1024;
const EPOCH: u64 = 0x5eed;

/// Numbers, keeps and encodes a batch, then confirms it with one cumulative ACK.
fn sender(c: &mut Criterion) {
    let mut g = c.benchmark_group("ack_sender_batch");
    g.throughput(Throughput::Elements(BATCH_MSGS));
    for size in SIZES {
        let payload = Bytes::from_static(Vec::leak(vec![0x5a; size]));
        let mut s = AckSender::new(SenderConfig::default(), EPOCH, 1);
        let mut out = Vec::with_capacity(BATCH_MSGS as usize * (size + 64));
        let mut now_us = 0u64;
        g.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter(|| {
                out.clear();
                now_us += 100;
                let mut last_wire_seq = 0;
                for _ in 0..BATCH_MSGS {
                    let n = s.number(TARGET, payload.clone(), now_us).unwrap();
                    let id = MsgId {
                        epoch: n.epoch,
                        seq: n.wire_seq,
                    };
                    last_wire_seq = n.wire_seq;
                    encode_send_acked(&mut out, n.target, id, n.payload).unwrap();
                }
                s.on_ack(TARGET, EPOCH, last_wire_seq, &[], false, now_us + 50);
                while let Some(event) = s.poll_event() {
                    black_box(event);
                }
                black_box(out.len())
            })
        });
    }
    g.finish();
}

/// Decodes a buffer of acked DELIVERs and de-duplicates each, then makes the ACK owed.
fn receiver(c: &mut Criterion) {
    let mut g = c.benchmark_group("ack_receiver_batch");
    g.throughput(Throughput::Elements(BATCH_MSGS));
    for size in SIZES {
        let payload = vec![0x5a; size];
        let mut r = AckReceiver::new(ReceiverConfig::default());
        let mut next_seq = 1u64;
        let mut now_us = 0u64;
        g.bench_function(BenchmarkId::from_parameter(size), |b| {
            // The buffer of DELIVERs is made and freed outside the timing: the next numbers
            // each time.
            let make = || {
                let mut buf = Vec::new();
                for seq in next_seq..next_seq + BATCH_MSGS {
                    let id = MsgId { epoch: EPOCH, seq };
                    encode_deliver_acked(&mut buf, SENDER, id, &payload);
                }
                next_seq += BATCH_MSGS;
                buf
            };
            b.iter_batched_ref(
                make,
                |buf: &mut Vec<u8>| {
                    now_us += 100;
                    let mut at = 0;
                    while let Ok(Decoded::Frame { frame, consumed }) =
                        decode(&buf[at..], MAX_FRAME_BYTES_DEFAULT)
                    {
                        if let Frame::DeliverAcked {
                            sender,
                            id,
                            payload,
                        } = frame
                        {
                            black_box(r.on_message(sender, id.epoch, id.seq, now_us));
                            black_box(payload);
                        }
                        at += consumed;
                    }
                    r.handle_timeout(now_us);
                    black_box(r.poll_ack())
                },
                BatchSize::SmallInput,
            )
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
    targets = sender, receiver
}
criterion_main!(benches);
