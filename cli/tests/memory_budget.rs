//! The memory budget against the real binary: `serve --print-budget` lists every store's worst
//! case and the limit; the defaults are lowered to fit a small `memory_max_bytes` and the relay
//! starts; settings given explicitly that cannot fit are refused with the budget.

mod common;

use common::*;

fn config_file(name: &str, toml: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ringrelay-budget-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, toml).unwrap();
    path
}

#[test]
fn print_budget_lists_every_store_and_the_limit_then_exits() {
    let mut p = Proc::spawn(&["serve", "--workers", "2", "--print-budget"]);
    let (status, out) = p.wait_exit();
    assert!(status.success(), "stderr:\n{}", p.stderr());
    let text = out.join("\n");
    for store in [
        "memory budget:",
        "receive buffers",
        "connections",
        "client send queues",
        "unfinished frames",
        "handoff between workers",
        "subscriptions",
        "watches",
        "memory_max_bytes:",
    ] {
        assert!(text.contains(store), "{store} missing from:\n{text}");
    }
    assert!(
        !text.contains("data links"),
        "standalone: no cluster lines\n{text}"
    );
}

#[test]
fn defaults_are_lowered_to_fit_a_small_memory_max_and_the_relay_starts() {
    let cfg = config_file("small.toml", "memory_max_bytes = 536870912\n");
    let cfg = cfg.to_str().unwrap();
    let mut p = Proc::spawn(&["serve", "--workers", "2", "--config", cfg, "--print-budget"]);
    let (status, out) = p.wait_exit();
    assert!(status.success(), "stderr:\n{}", p.stderr());
    let text = out.join("\n");
    assert!(
        text.contains("lowered to fit: connections_per_worker_max 65536 -> "),
        "{text}"
    );
    assert!(text.contains("memory_max_bytes: 512.0 MiB (set)"), "{text}");

    let (relay, addr) = serve(&["--workers", "2", "--config", cfg]);
    let mut a = connect(addr, "a");
    let mut b = connect(addr, "b");
    assert_round_trip(&mut a, &mut b);
    drop(relay);
}

#[test]
fn explicit_settings_that_cannot_fit_are_refused_with_the_budget() {
    let cfg = config_file(
        "over.toml",
        "memory_max_bytes = 268435456\npending_bytes_per_worker_max = 1073741824\n",
    );
    let mut p = Proc::spawn(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    let (status, out) = p.wait_exit();
    let stderr = p.stderr();
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert!(out.is_empty(), "it must not listen: {out:?}");
    assert!(
        stderr.contains("memory_max_bytes is 256.0 MiB"),
        "stderr:\n{stderr}"
    );
    assert!(stderr.contains("client send queues"), "stderr:\n{stderr}");
}
