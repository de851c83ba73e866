//! LocationTable lookup micro-benchmarks: a batch of 1024 lookups of registered ids in a table
//! of 100k rows, read alone and while another thread churns (registers and removes other ids),
//! with one epoch guard per batch (as the worker does) and with a pin per lookup.
//!
//! Run: `cargo bench --bench table`. Criterion reports elements/s; ns per lookup is the
//! reported time divided by 1024. The churn rate is printed after the churn group.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringrelay::core::{Location, LocationTable, Row};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const ROWS: u32 = 100_000;
const BATCH: usize = 1024;
/// Ids the churn thread cycles through (disjoint from the looked-up ids).
const CHURN_IDS: u32 = 10_000;

fn id(i: u32) -> Vec<u8> {
    format!("client-{i:06}").into_bytes()
}

fn loc(slot: u32) -> Location {
    Location {
        node: 0,
        worker: (slot % 4) as u16,
        slot,
        generation: 1,
    }
}

fn table() -> LocationTable {
    let t = LocationTable::new();
    for i in 0..ROWS {
        t.register(
            &id(i),
            Row {
                location: loc(i),
                epoch: 1,
            },
        );
    }
    assert_eq!(t.len(), ROWS as usize);
    t
}

/// 1024 registered ids spread pseudo-randomly over the table (fixed seed).
fn batch_ids() -> Vec<Vec<u8>> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..BATCH)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            id((x % ROWS as u64) as u32)
        })
        .collect()
}

fn lookups(c: &mut Criterion, group: &str, t: &LocationTable, ids: &[Vec<u8>]) {
    let mut g = c.benchmark_group(group);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(ids.len() as u64));
    g.bench_function(BenchmarkId::new("guard_per_batch", ids.len()), |b| {
        b.iter(|| {
            let guard = t.raw_guard();
            let mut sum = 0u64;
            for id in ids {
                let l = t.get(black_box(id), &guard).expect("registered");
                sum = sum.wrapping_add(l.slot as u64);
            }
            black_box(sum)
        })
    });
    g.bench_function(BenchmarkId::new("pin_per_lookup", ids.len()), |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for id in ids {
                let l = t.get(black_box(id), &t.raw_guard()).expect("registered");
                sum = sum.wrapping_add(l.slot as u64);
            }
            black_box(sum)
        })
    });
    g.finish();
}

fn lookup_alone(c: &mut Criterion) {
    let t = table();
    let ids = batch_ids();
    lookups(c, "location_lookup_100k", &t, &ids);
}

fn lookup_under_churn(c: &mut Criterion) {
    let t = Arc::new(table());
    let ids = batch_ids();
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let churn = {
        let (t, stop, ops) = (t.clone(), stop.clone(), ops.clone());
        thread::spawn(move || {
            let churn_ids: Vec<Vec<u8>> = (0..CHURN_IDS)
                .map(|i| format!("churn-{i:06}").into_bytes())
                .collect();
            let mut done = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for (i, cid) in churn_ids.iter().enumerate() {
                    let at = loc(ROWS + i as u32);
                    t.register(
                        cid,
                        Row {
                            location: at,
                            epoch: 1,
                        },
                    );
                    assert!(t.remove_if_at(cid, at).is_some());
                }
                done += 2 * CHURN_IDS as u64;
                ops.store(done, Ordering::Relaxed);
            }
        })
    };
    // Let the churn thread get going before measuring.
    while ops.load(Ordering::Relaxed) == 0 {
        thread::yield_now();
    }
    let started = Instant::now();
    let ops_at_start = ops.load(Ordering::Relaxed);
    lookups(c, "location_lookup_100k_churn", &t, &ids);
    let elapsed = started.elapsed();
    let ops_at_end = ops.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    churn.join().expect("churn thread");
    println!(
        "churn thread: {:.2} M register+remove ops/s during the churn group ({} ops in {:.1} s), table {} rows",
        (ops_at_end - ops_at_start) as f64 / elapsed.as_secs_f64() / 1e6,
        ops_at_end - ops_at_start,
        elapsed.as_secs_f64(),
        t.len(),
    );
}

criterion_group!(benches, lookup_alone, lookup_under_churn);
criterion_main!(benches);
