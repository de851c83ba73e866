//! The open-files limit, against the real binary under `prlimit`: the relay fits
//! `connections_per_worker_max` under RLIMIT_NOFILE, so a crowd larger than the limit gets a
//! WELCOME or a CLOSE CONNECTION_LIMIT for every connection (none is left waiting in the
//! kernel's queue with no answer), and the health endpoint keeps answering.

mod common;

use common::*;
use ringrelay::protocol::CloseReason;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

/// Descriptors the relay may open: small, so the crowd below passes it.
const NOFILE: u64 = 300;
const CROWD: usize = 400;

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn healthz(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&addr, WAIT).expect("metrics connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).expect("healthz answer");
    body
}

#[test]
fn past_the_open_files_limit_every_connection_is_answered_and_healthz_still_works() {
    let _alone = alone();
    let metrics = free_port().to_string();
    let nofile = format!("--nofile={NOFILE}:{NOFILE}");
    let serve_args = [
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--metrics",
        &metrics,
    ];
    let mut serve = Proc::spawn_under(
        "prlimit",
        &[&[nofile.as_str(), "--", "{bin}", "serve"][..], &serve_args].concat(),
    );
    let line = serve.next_line();
    let addr: SocketAddr = line
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("serve printed {line:?}"))
        .parse()
        .unwrap();
    let mut crowd: Vec<Raw> = (0..CROWD).map(|_| Raw::connect(addr)).collect();
    let (mut welcomed, mut refused) = (0, 0);
    for (i, raw) in crowd.iter_mut().enumerate() {
        raw.send_hello(&format!("c{i}"));
        match raw.next_frame() {
            Ok(Owned::Welcome { .. }) => welcomed += 1,
            Ok(Owned::Close { reason, .. }) => {
                assert_eq!(reason, CloseReason::CONNECTION_LIMIT);
                refused += 1;
            }
            other => panic!("connection {i}: expected WELCOME or CLOSE, got {other:?}"),
        }
    }
    assert_eq!(welcomed + refused, CROWD);
    assert!(refused > 0, "the crowd must pass the limit");
    assert!(
        welcomed as u64 > NOFILE / 2,
        "most descriptors serve clients: {welcomed} welcomed"
    );
    let answer = healthz(metrics.parse().unwrap());
    assert!(
        answer.starts_with("HTTP/1.") && answer.contains(" 200 "),
        "{answer}"
    );
    assert!(
        serve
            .stderr()
            .contains("connections_per_worker_max lowered"),
        "{}",
        serve.stderr()
    );
    assert_peak_within_printed_budget(serve.pid(), &serve_args);
}
