//! Where the relay put a connection, for tests that need a flow across workers or on one:
//! read from the `/connections` listing (included with `#[path]` by the tests that use it).
//! SO_REUSEPORT spreads connections by their ports, so a few tries find any placement.

use super::common::{connect, http_get, wait_until, Raw};
use ringrelay::client::Client;
use std::net::SocketAddr;

/// The `/connections` entry of `id`, once every worker answered.
pub fn listed(metrics: SocketAddr, id: &str) -> Option<serde_json::Value> {
    let (status, body) = http_get(metrics, "/connections?limit=1000");
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    page["connections"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|c| c["id"] == id)
        .cloned()
}

/// The worker that holds the connection registered as `id`.
pub fn worker_of(metrics: SocketAddr, id: &str) -> u64 {
    let mut entry = None;
    wait_until(&format!("{id} listed"), || {
        entry = listed(metrics, id);
        entry.is_some()
    });
    entry.and_then(|c| c["worker"].as_u64()).expect("a worker")
}

/// A connection made by `open` and registered as `{prefix}-{n}` that landed on a worker
/// `wanted` accepts (the others are closed), its id and its worker.
pub fn landed_where<C>(
    metrics: SocketAddr,
    prefix: &str,
    wanted: impl Fn(u64) -> bool,
    open: impl Fn(&str) -> C,
) -> (C, String, u64) {
    for attempt in 0..64 {
        let id = format!("{prefix}-{attempt}");
        let conn = open(&id);
        let worker = worker_of(metrics, &id);
        if wanted(worker) {
            return (conn, id, worker);
        }
    }
    panic!("64 connections, none where {prefix} was wanted");
}

/// A client registered as `{prefix}-{n}` on a worker `wanted` accepts.
pub fn client_where(
    addr: SocketAddr,
    metrics: SocketAddr,
    prefix: &str,
    wanted: impl Fn(u64) -> bool,
) -> (Client, String, u64) {
    landed_where(metrics, prefix, wanted, |id| connect(addr, id))
}

/// A raw connection registered (HELLO, WELCOME) as `{prefix}-{n}` on a worker `wanted`
/// accepts.
#[allow(dead_code)] // Not every test file that includes this module uses every helper.
pub fn raw_where(
    addr: SocketAddr,
    metrics: SocketAddr,
    prefix: &str,
    wanted: impl Fn(u64) -> bool,
) -> (Raw, String, u64) {
    landed_where(metrics, prefix, wanted, |id| {
        let mut raw = Raw::connect(addr);
        raw.handshake(id);
        raw
    })
}

/// A sender on a worker other than `other_worker`.
#[allow(dead_code)] // Not every test file that includes this module uses every helper.
pub fn sender_on_another_worker(
    addr: SocketAddr,
    metrics: SocketAddr,
    other_worker: u64,
) -> Client {
    client_where(addr, metrics, "sender", |w| w != other_worker).0
}
