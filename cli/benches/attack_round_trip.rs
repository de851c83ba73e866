//! The worst round trip of a good client pair while another client attacks their worker (one
//! worker, in-process relay), against the design figure of 50 ms: a SUBSCRIBE flood and a WATCH
//! flood refused at their per-connection limits, and a thousand unauthenticated sockets
//! announcing a huge first frame. The tests (cli/tests/limits.rs,
//! cli/tests/slow_and_unauthenticated.rs) check the same attacks for correctness and against a
//! liveness bound only; the speed figure lives here.
//!
//! `cargo bench -p ringrelay-cli --bench attack_round_trip` (RUNS=N, default 7, runs per
//! attack). Prints each attack's median and worst of its runs' slowest round trip.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use ringrelay::config::Config;
use std::time::Duration;

/// The design figure: a good client's round trip stays under this while its worker is attacked.
const GOOD_ROUND_TRIP_TARGET: Duration = Duration::from_millis(50);

fn one_worker() -> Config {
    Config {
        workers: 1,
        ..config()
    }
}

/// Runs `attack` `runs` times on a fresh relay each; the slowest round trip of each run.
fn measure(runs: usize, attack: impl Fn(std::net::SocketAddr) -> Duration) -> Vec<Duration> {
    (0..runs)
        .map(|_| {
            let relay = start(one_worker());
            attack(relay.local_addr())
        })
        .collect()
}

fn report(name: &str, mut worst: Vec<Duration>) {
    worst.sort();
    let median = worst[worst.len() / 2];
    let max = worst[worst.len() - 1];
    let verdict = if max < GOOD_ROUND_TRIP_TARGET {
        "within"
    } else {
        "OVER"
    };
    println!(
        "{name:<28} runs {:>2}  median {:>8.2} ms  worst {:>8.2} ms  ({verdict} the {} ms target)",
        worst.len(),
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        GOOD_ROUND_TRIP_TARGET.as_millis()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once as a smoke test.
    let runs = if std::env::args().any(|a| a == "--bench") {
        std::env::var("RUNS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(7)
    } else {
        1
    };
    let subscribes = subscribe_flood_frames();
    report(
        "subscribe flood",
        measure(runs, |addr| {
            worst_round_trip_during_flood(addr, &subscribes, "subscriptions_per_connection_max")
        }),
    );
    let watches = watch_flood_frames();
    report(
        "watch flood",
        measure(runs, |addr| {
            worst_round_trip_during_flood(addr, &watches, "watches_per_connection_max")
        }),
    );
    report(
        "1000 huge unauthenticated",
        measure(runs, |addr| {
            worst_round_trip_at(addr, || huge_first_frames_are_closed_from_the_header(addr))
        }),
    );
}
