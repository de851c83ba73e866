//! Mistakes a new operator makes when starting relays, against the real binary: a second
//! `serve` on an address a relay already holds is refused with a clear reason (the workers'
//! SO_REUSEPORT would otherwise let it start and split the clients), and a second node with
//! the id of a live node is refused by its peers with one log line naming both addresses.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn free_port() -> SocketAddr {
    let [addr] = free_ports();
    addr
}

/// `ringrelay serve` with one worker; `args` may set `--listen` (default: a free port).
fn serve(args: &[&str]) -> Proc {
    let listen: &[&str] = if args.contains(&"--listen") {
        &[]
    } else {
        &["--listen", "127.0.0.1:0"]
    };
    let mut p = Proc::spawn(&[&["serve", "--workers", "1"], listen, args].concat());
    let line = p.next_line();
    assert!(line.starts_with("listening "), "serve printed {line:?}");
    p
}

#[test]
fn a_second_serve_on_a_held_address_is_refused_with_the_reason() {
    let addr = free_port().to_string();
    let _first = serve(&["--listen", &addr]);
    let mut second = Proc::spawn(&["serve", "--workers", "2", "--listen", &addr]);
    let (status, out) = second.wait_exit();
    let stderr = second.stderr();
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert!(out.is_empty(), "the second relay printed {out:?}");
    assert!(
        stderr.contains("address in use: another relay"),
        "stderr:\n{stderr}"
    );
}

#[test]
fn two_nodes_with_one_id_are_refused_with_one_line_naming_both_addresses() {
    let secret = ["--cluster-secret", "dup-test"];
    let [a, b, c] = free_ports().map(|p| p.to_string());
    let _node_a = serve(&[&["--node-id", "1", "--cluster-listen", &a], &secret[..]].concat());
    let node_c = serve(
        &[
            &["--node-id", "3", "--cluster-listen", &c, "--peers", &a],
            &secret[..],
        ]
        .concat(),
    );
    let clash_lines = || {
        node_c
            .stderr()
            .lines()
            .filter(|l| l.contains("two nodes claim node id 1"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    // Node 3 is linked to node 1 at `a` before the impostor starts (a cluster converging:
    // bounded by SLOW_WAIT, not WAIT).
    let linked = Instant::now();
    while !node_c.stderr().contains("control link up") {
        assert!(
            linked.elapsed() < SLOW_WAIT,
            "node 3 never linked to node 1"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let _impostor = serve(
        &[
            &["--node-id", "1", "--cluster-listen", &b, "--peers", &c],
            &secret[..],
        ]
        .concat(),
    );
    // The impostor is a process starting up, then dialing node 3.
    let started = Instant::now();
    while clash_lines().is_empty() {
        assert!(
            started.elapsed() < SLOW_WAIT,
            "no clash reported:\n{}",
            node_c.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let line = &clash_lines()[0];
    assert!(line.contains(&a) && line.contains(&b), "{line}");
    // The impostor keeps redialing (backoff up to 1 s): over two more seconds, still one line,
    // and node 3's log stays quiet (before the fix: links flapped, 2,129 lines in 3 s).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(clash_lines().len(), 1, "{}", node_c.stderr());
    let lines = node_c.stderr().lines().count();
    assert!(
        lines < 20,
        "node 3 logged {lines} lines:\n{}",
        node_c.stderr()
    );
}

#[test]
fn workers_past_the_cpus_and_cpus_that_do_not_exist_are_refused_at_once_with_the_reason() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    let too_many = (cpus * 4 + 1).to_string();
    let started = Instant::now();
    let mut serve = Proc::spawn(&["serve", "--listen", "127.0.0.1:0", "--workers", &too_many]);
    let (status, out) = serve.wait_exit();
    let stderr = serve.stderr();
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert!(out.is_empty(), "{out:?}");
    assert!(
        stderr.contains(&format!("too many workers: {too_many} for {cpus} CPUs")),
        "stderr:\n{stderr}"
    );
    assert!(started.elapsed() < WAIT, "refused before starting anything");

    let mut serve = Proc::spawn(&["serve", "--listen", "127.0.0.1:0", "--cpus", "4095"]);
    let (status, _) = serve.wait_exit();
    let stderr = serve.stderr();
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains("CPU 4095 does not exist or is outside this process's cpuset (possible: 0"),
        "stderr:\n{stderr}"
    );
}

#[test]
fn serve_started_under_a_narrower_affinity_may_still_pin_workers_to_other_cpus() {
    // `ringrelay bench --relay-cpus 0` run under `taskset -c 1` starts its relay so: the
    // inherited mask is CPU 1 only, the worker goes to CPU 0. (On a one-CPU host both are 0.)
    let cpus = std::thread::available_parallelism().unwrap().get();
    let last = (cpus - 1).to_string();
    let mut relay = Proc::spawn_under(
        "taskset",
        &[
            "-c",
            &last,
            "{bin}",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--cpus",
            "0",
        ],
    );
    let line = relay.next_line();
    assert!(
        line.starts_with("listening "),
        "{line}; stderr:\n{}",
        relay.stderr()
    );
}
