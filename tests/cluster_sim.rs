//! Deterministic simulation of clusters of 3 to 16 nodes (see `cluster_sim/mod.rs`).
//!
//! CI runs a bounded number of seeds. Long runs and replays (add `-- --nocapture` for the
//! summary line: seeds, simulated hours, slowest convergence):
//!   SIM_SEEDS=5000 cargo test --profile test-release -p ringrelay --test cluster_sim
//!     (seeds 0..5000)
//!   SIM_SEED_BASE=100000 SIM_SEEDS=5000 cargo test ...
//!     (another range)
//!   SIM_SEED=1234 cargo test --profile test-release -p ringrelay --test cluster_sim
//!     (one seed, replayed exactly; SIM_TRACE_LINES=100000 keeps its whole trace)

#[path = "cluster_sim/mod.rs"]
mod sim;

use sim::{run_seed, Report};
use std::time::Instant;

/// Seeds of one CI run: about two minutes in release mode on the project's 2-core machine
/// (150 seeds, about 2 simulated hours: 126 to 150 s wall with the other core busy).
const CI_SEEDS_RELEASE: u64 = 150;
/// A debug build is about 20 times slower: fewer seeds, same code paths.
const CI_SEEDS_DEBUG: u64 = 3;

fn env_u64(name: &str) -> Option<u64> {
    let raw = std::env::var(name).ok()?;
    match raw.trim().parse() {
        Ok(v) => Some(v),
        Err(e) => panic!("{name}={raw:?} is not a number: {e}"),
    }
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = env_u64("SIM_SEED") {
        return vec![seed];
    }
    let default = if cfg!(debug_assertions) {
        CI_SEEDS_DEBUG
    } else {
        CI_SEEDS_RELEASE
    };
    let count = env_u64("SIM_SEEDS").unwrap_or(default);
    let base = env_u64("SIM_SEED_BASE").unwrap_or(0);
    (base..base + count).collect()
}

/// Runs one seed, turning a panic inside the code under test into a failure with the seed.
fn run(seed: u64) -> Result<Report, String> {
    match std::panic::catch_unwind(|| run_seed(seed)) {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("seed {seed} panicked: {what}"))
        }
    }
}

#[test]
fn simulated_clusters_keep_their_invariants() {
    let started = Instant::now();
    let (mut sim_ms, mut events, mut converge_ms, mut failures) = (0u64, 0u64, 0u64, Vec::new());
    let mut node_runs = 0u64;
    let seeds = seeds();
    for &seed in &seeds {
        match run(seed) {
            Ok(r) => {
                sim_ms += r.sim_ms;
                node_runs += u64::from(r.nodes);
                events += r.events;
                converge_ms = converge_ms.max(r.max_converge_ms);
                if std::env::var_os("SIM_VERBOSE").is_some() {
                    eprintln!("{r:?}");
                }
            }
            Err(e) => {
                eprintln!("{e}\nreplay: SIM_SEED={seed} cargo test --profile test-release -p ringrelay --test cluster_sim\n");
                failures.push(seed);
            }
        }
    }
    eprintln!(
        "cluster_sim: {} seeds ({node_runs} nodes in all), {:.2} simulated hours, {events} events, slowest convergence {converge_ms} ms, {:.1} s wall",
        seeds.len(),
        sim_ms as f64 / 3_600_000.0,
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
}

#[test]
fn a_seed_replays_exactly() {
    let seed = env_u64("SIM_SEED").unwrap_or(7);
    let a = run(seed).map(|r| (r.trace_hash, r.events, r.sim_ms));
    let b = run(seed).map(|r| (r.trace_hash, r.events, r.sim_ms));
    assert_eq!(a, b, "two runs of seed {seed} differ");
}
