//! `tcp_congestion` against the real binary: the relay's end of a client connection and of a
//! NATS connection, and both ends of a cluster link (the node that accepted it and the one that
//! dialled it), use the algorithm the relay was given (read with `ss` from iproute2, which `.ci/run`
//! installs); a name the kernel does not give the relay stops the start naming the setting.

mod common;

use common::*;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// Removes the test's config files however the test ends.
struct ConfigDir(std::path::PathBuf);

impl ConfigDir {
    fn new(test: &str) -> ConfigDir {
        let dir = std::env::temp_dir().join(format!("rr-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        ConfigDir(dir)
    }

    /// Writes `text` to the file `name` and returns its path.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn proc_net(file: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/{file}")).unwrap()
}

/// An algorithm this process may set that is not the host's default, so a socket that
/// reports it was given it (the relay runs as this process's user).
fn other_than_the_hosts() -> String {
    let host = proc_net("tcp_congestion_control");
    let probe = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    proc_net("tcp_available_congestion_control")
        .split_whitespace()
        .find(|name| *name != host.trim() && probe.set_tcp_congestion(name.as_bytes()).is_ok())
        .unwrap_or_else(|| panic!("this host gives the tests no congestion control besides {host}"))
        .to_owned()
}

/// The algorithm of each established TCP socket `filter` selects (`ss` syntax, like
/// `src 127.0.0.1:7400`), as `ss -ti` prints it: the word of its info line that names one.
fn algorithms_of(filter: &str) -> Vec<String> {
    let out = Command::new("ss")
        .args(["-tinH", "state", "established", &format!("( {filter} )")])
        .output()
        .expect("ss (iproute2) runs");
    assert!(out.status.success(), "{out:?}");
    let names = proc_net("tcp_available_congestion_control");
    let names: Vec<&str> = names.split_whitespace().collect();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|line| line.starts_with(char::is_whitespace))
        .map(|info| {
            info.split_whitespace()
                .find(|word| names.contains(word))
                .unwrap_or_else(|| panic!("no algorithm in {info:?}"))
                .to_owned()
        })
        .collect()
}

/// A started relay and the addresses it printed.
struct Started {
    relay: Proc,
    client: SocketAddr,
    nats: Option<SocketAddr>,
}

/// `ringrelay ARGS` once it prints its client address (after its NATS address, if any).
fn started(args: &[&str]) -> Started {
    let mut relay = Proc::spawn(args);
    let mut nats = None;
    loop {
        let line = relay.next_line();
        if let Some(addr) = line.strip_prefix("nats listening ") {
            nats = Some(addr.parse().unwrap());
        } else if let Some(addr) = line.strip_prefix("listening ") {
            let client = addr.parse().unwrap();
            return Started {
                relay,
                client,
                nats,
            };
        } else {
            panic!("serve printed {line:?}");
        }
    }
}

/// Waits until `filter` selects at least `n` sockets, and returns their algorithms.
fn at_least(n: usize, filter: &str) -> Vec<String> {
    let started = Instant::now();
    loop {
        let found = algorithms_of(filter);
        if found.len() >= n {
            return found;
        }
        assert!(
            started.elapsed() < SLOW_WAIT,
            "{filter}: {} sockets of {n}",
            found.len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_relays_end_of_client_and_nats_connections_and_both_ends_of_links_use_its_algorithm() {
    let other = other_than_the_hosts();
    let dir = ConfigDir::new("tcp-congestion");
    let file = dir.file("node.toml", &format!("tcp_congestion = \"{other}\"\n"));
    let [cluster_a, cluster_b] = free_ports();
    let (a, b) = (cluster_a.to_string(), cluster_b.to_string());
    let common = [
        "--config",
        &file,
        "--cluster-secret",
        "cc-test",
        "--workers",
        "2",
    ];
    let node = |own: &[&str]| {
        let serve = [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--nats-listen",
            "127.0.0.1:0",
        ];
        started(&[&serve[..], own, &common[..]].concat())
    };
    let node_a = node(&["--node-id", "1", "--cluster-listen", &a]);
    let _node_b = node(&["--node-id", "2", "--cluster-listen", &b, "--peers", &a]);
    let nats = node_a.nats.expect("node 1 prints its NATS address");

    let _client = TcpStream::connect(node_a.client).unwrap();
    let _nats_client = TcpStream::connect(nats).unwrap();
    let client_end = at_least(1, &format!("src {}", node_a.client));
    let nats_end = at_least(1, &format!("src {nats}"));
    // Node 2 dials node 1: a control link and a data link per worker.
    let accepted_links = at_least(3, &format!("src {cluster_a}"));
    let dialled_links = at_least(3, &format!("dst {cluster_a}"));
    for (what, found) in [
        ("client connection", &client_end),
        ("NATS connection", &nats_end),
        ("accepted link", &accepted_links),
        ("dialled link", &dialled_links),
    ] {
        assert!(
            found.iter().all(|name| *name == other),
            "{what}: {found:?}, not {other}; node 1:\n{}",
            node_a.relay.stderr()
        );
    }
}

#[test]
fn a_name_the_kernel_does_not_give_stops_the_start_naming_the_setting() {
    let dir = ConfigDir::new("tcp-congestion-refused");
    let file = dir.file(
        "refused.toml",
        "listen = \"127.0.0.1:0\"\ntcp_congestion = \"no_such_algo\"\n",
    );
    let mut relay = Proc::spawn(&["serve", "--workers", "1", "--config", &file]);
    let (status, out) = relay.wait_exit();
    let stderr = relay.stderr();
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert!(out.is_empty(), "{out:?}");
    assert!(
        stderr.contains("tcp_congestion = \"no_such_algo\": the kernel refused it"),
        "stderr:\n{stderr}"
    );
}
