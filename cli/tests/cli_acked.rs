//! `send --ack` and `listen` end to end with the real binary: acknowledged delivery from the
//! command line exits 0 once the listener's client has the message, 5 with the reason when it
//! fails, and prints its counters on stderr.

mod common;

use common::*;
use ringrelay::client::{Client, Event};
use std::net::SocketAddr;

fn watch_for_online(addr: SocketAddr, id: &str) -> Client {
    let mut w = connect(addr, "cli-acked-watcher");
    w.watch(id.as_bytes()).unwrap();
    w
}

/// Waits for `id` to come online; bounded by [`SLOW_WAIT`], as the verb registering it is a
/// process starting up.
fn await_online(w: &mut Client, id: &str) {
    loop {
        match next_event_within(w, SLOW_WAIT) {
            Event::Presence { client_id, online } if client_id == id.as_bytes() && online => return,
            Event::Presence { .. } => {}
            other => panic!("watcher: unexpected {other:?}"),
        }
    }
}

#[test]
fn send_ack_exits_zero_once_the_listener_has_each_message_and_prints_the_counters() {
    let (_relay, addr) = serve(&[]);
    let server = addr.to_string();
    let mut w = watch_for_online(addr, "acked-listener");
    let mut listen = Proc::spawn(&[
        "listen",
        "--server",
        &server,
        "--id",
        "acked-listener",
        "--count",
        "3",
        "--timeout-ms",
        "10000",
    ]);
    await_online(&mut w, "acked-listener");
    let mut send = Proc::spawn_with_stdin(
        &[
            "send",
            "--server",
            &server,
            "--id",
            "acked-sender",
            "--to",
            "acked-listener",
            "--ack",
            "--count",
            "3",
            "-",
        ],
        b"one\ntwo\nthree\n",
    );
    let (status, out) = send.wait_exit();
    let stderr = send.stderr();
    assert!(status.success(), "send --ack: {status}; stderr:\n{stderr}");
    assert!(out.is_empty(), "send printed {out:?}");
    assert!(
        stderr.contains("acked: sent 3, confirmed 3, failed 0") && stderr.contains("in flight 0"),
        "stderr:\n{stderr}"
    );
    let (status, out) = listen.wait_exit();
    assert!(
        status.success(),
        "listen: {status}; stderr:\n{}",
        listen.stderr()
    );
    assert_eq!(
        out,
        [
            "acked-sender: one",
            "acked-sender: two",
            "acked-sender: three"
        ]
    );
    assert!(
        listen.stderr().contains("acked: delivered 3 once each"),
        "listen stderr:\n{}",
        listen.stderr()
    );
}

#[test]
fn send_ack_to_nobody_exits_five_after_the_ack_timeout_with_the_reason() {
    let (_relay, addr) = serve(&[]);
    let mut send = Proc::spawn(&[
        "send",
        "--server",
        &addr.to_string(),
        "--id",
        "acked-sender",
        "--to",
        "nobody",
        "--ack",
        "--ack-timeout-ms",
        "300",
        "hello?",
    ]);
    let (status, out) = send.wait_exit();
    let stderr = send.stderr();
    assert_eq!(status.code(), Some(5), "stderr:\n{stderr}");
    assert!(out.is_empty());
    assert!(
        stderr.contains("1 of 1 messages to nobody failed")
            && stderr.contains("not acknowledged within ack_timeout_ms")
            && stderr.contains("unknown id"),
        "stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("acked: sent 1, confirmed 0, failed 1 (timeout 1"),
        "stderr:\n{stderr}"
    );
}
