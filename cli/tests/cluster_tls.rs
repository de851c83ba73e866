//! Cluster links over mutual TLS (`cluster_tls_*`), with nodes in this process: the control
//! lane (replication, presence) and the data links (forwards of every size, both ways, in
//! order) run over TLS; a node whose certificate is not from the cluster CA, a node that
//! does not trust ours, and a plaintext node are each refused. Certificates are made by the
//! test (rcgen).

mod common;

use common::tls_pki::PkiDir;
use common::{config, connect, next_event, wait_until};
use ringrelay::client::{Client, Event};
use ringrelay::cluster::link_io::{dial, LinkError, LinkIdentity};
use ringrelay::cluster::wire::Lane;
use ringrelay::config::Config;
use ringrelay::server::Server;
use ringrelay::tcp_congestion::TcpCongestion;
use ringrelay::tls::config::ClusterTls;
use ringrelay::tls::test_pki::Pki;
use ringrelay::tls::{Identity, TrustAnchors};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;

const SECRET: &str = "cluster-tls-test";

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The PKI's files, plus `node2.pem`/`node2.key`: a second node certificate from the CA.
fn pki_dir(tag: &str) -> PkiDir {
    let pki = Pki::new();
    let dir = PkiDir::write(&pki, tag);
    let node2 = pki.issue(&["127.0.0.1"]);
    std::fs::write(dir.join("node2.pem"), node2.cert_pem).unwrap();
    std::fs::write(dir.join("node2.key"), node2.key_pem).unwrap();
    dir
}

/// A node with mutual TLS on its links, presenting `cert` (`server` or `node2`).
fn node(id: u16, dir: &Path, cert: &str, peers: &[SocketAddr]) -> Server {
    let cfg = Config {
        node_id: id,
        cluster_listen: Some(free_port().into()),
        cluster_secret: Some(SECRET.into()),
        cluster_tls_cert_file: Some(dir.join(format!("{cert}.pem"))),
        cluster_tls_key_file: Some(dir.join(format!("{cert}.key"))),
        cluster_tls_ca_file: Some(dir.join("ca.pem")),
        peers: peers.iter().map(|p| p.to_string()).collect(),
        ..config()
    };
    Server::start(cfg).expect("node starts")
}

fn cluster_addr(server: &Server) -> SocketAddr {
    server
        .cluster_addr()
        .expect("a clustered node has a cluster address")
}

/// Waits until `watcher` hears that `id` is online (replicated from the other node).
fn await_online(watcher: &mut Client, id: &[u8]) {
    watcher.watch(id).unwrap();
    loop {
        if let Event::Presence {
            client_id,
            online: true,
        } = next_event(watcher)
        {
            assert_eq!(client_id, id);
            return;
        }
    }
}

fn payload(i: usize) -> Vec<u8> {
    // Sizes from 1 byte to past two TLS records (16 KiB each).
    let len = 1 + (i * 7919) % 40_000;
    vec![(i % 251) as u8; len]
}

fn receive_in_order(to: &mut Client, from: &[u8], count: usize) {
    for i in 0..count {
        match next_event(to) {
            Event::Message {
                sender, payload: p, ..
            } => {
                assert_eq!(sender, from, "message {i}");
                assert_eq!(p, payload(i), "message {i} in order and intact");
            }
            other => panic!("message {i}: unexpected {other:?}"),
        }
    }
}

#[test]
fn two_nodes_linked_by_mutual_tls_relay_messages_both_ways_in_order() {
    let dir = pki_dir("cluster-mtls");
    let n1 = node(1, &dir.0, "server", &[]);
    let n2 = node(2, &dir.0, "node2", &[cluster_addr(&n1)]);
    wait_until("both nodes are ready", || {
        n1.cluster_ready() && n2.cluster_ready()
    });
    let mut a = connect(n1.local_addr(), "a");
    let mut b = connect(n2.local_addr(), "b");
    await_online(&mut a, b"b");
    await_online(&mut b, b"a");
    const COUNT: usize = 600;
    for i in 0..COUNT {
        b.send(b"a", &payload(i)).unwrap();
        a.send(b"b", &payload(i)).unwrap();
    }
    receive_in_order(&mut a, b"b", COUNT);
    receive_in_order(&mut b, b"a", COUNT);
}

fn identity(dir: &Path, name: &str) -> Identity {
    Identity::from_files(
        "cert",
        &dir.join(format!("{name}.pem")),
        "key",
        &dir.join(format!("{name}.key")),
    )
    .unwrap()
}

fn dialer(tls: Option<ClusterTls>) -> LinkIdentity {
    LinkIdentity {
        node_id: 9,
        incarnation: 1,
        advertise: free_port().to_string(),
        secret: SECRET.as_bytes().to_vec(),
        tls,
        congestion: TcpCongestion::Host,
    }
}

fn dial_error(target: SocketAddr, me: &LinkIdentity) -> LinkError {
    match dial(&target.to_string(), Lane::Control, 0, me) {
        Ok(_) => panic!("the link to {target} was accepted"),
        Err(e) => e,
    }
}

#[test]
fn a_node_outside_the_cluster_ca_a_node_not_trusting_it_and_a_plaintext_node_are_refused() {
    let dir = pki_dir("cluster-refusals");
    let n1 = node(1, &dir.0, "server", &[]);
    let target = cluster_addr(&n1);
    let ca = TrustAnchors::from_file("ca", &dir.0.join("ca.pem")).unwrap();
    let other_ca = TrustAnchors::from_file("ca", &dir.0.join("other-ca.pem")).unwrap();

    // Its certificate is from another CA: the node refuses it after the handshake's
    // Finished (TLS 1.3), so the dialer reads the node's alert.
    let foreign = ClusterTls::new(&identity(&dir.0, "foreign"), ca.clone()).unwrap();
    let e = dial_error(target, &dialer(Some(foreign)));
    assert!(e.to_string().contains("alert"), "{e}");

    // It does not trust the node's CA: it refuses the node's certificate itself.
    let distrustful = ClusterTls::new(&identity(&dir.0, "node2"), other_ca).unwrap();
    let e = dial_error(target, &dialer(Some(distrustful)));
    assert!(
        matches!(&e, LinkError::Tls { reason, .. } if reason.contains("UnknownIssuer")),
        "{e}"
    );

    // No TLS at all: its HELLO is not a TLS record.
    let e = dial_error(target, &dialer(None));
    assert!(!e.is_bad_secret(), "{e}");

    // A member with a certificate from the CA still gets in.
    let member = ClusterTls::new(&identity(&dir.0, "node2"), ca).unwrap();
    dial(&target.to_string(), Lane::Control, 0, &dialer(Some(member)))
        .expect("a certificate from the cluster CA is accepted");
}

#[test]
fn a_reload_puts_rotated_cluster_certificates_in_force_for_new_links_and_refuses_a_bad_file() {
    let dir = pki_dir("cluster-reload");
    let n1 = node(1, &dir, "server", &[]);
    let target = cluster_addr(&n1);
    let ca = TrustAnchors::from_file("ca", &dir.join("ca.pem")).unwrap();
    let other_ca = TrustAnchors::from_file("ca", &dir.join("other-ca.pem")).unwrap();
    let old_member = || ClusterTls::new(&identity(&dir, "node2"), ca.clone()).unwrap();
    let new_member = || ClusterTls::new(&identity(&dir, "foreign"), other_ca.clone()).unwrap();
    dial(
        &target.to_string(),
        Lane::Control,
        0,
        &dialer(Some(old_member())),
    )
    .expect("before the rotation, a member of the old CA gets in");
    dial_error(target, &dialer(Some(new_member())));

    // Rotation: the node's files now hold a certificate of the new CA and trust only it.
    for (from, to) in [
        ("foreign.pem", "server.pem"),
        ("foreign.key", "server.key"),
        ("other-ca.pem", "ca.pem"),
    ] {
        std::fs::copy(dir.join(from), dir.join(to)).unwrap();
    }
    let reloaded = n1.reloader().reload().expect("the rotated files load");
    assert!(reloaded.cluster_tls, "{reloaded}");
    assert!(
        reloaded
            .to_string()
            .contains("cluster TLS certificate, key and CA reloaded"),
        "{reloaded}"
    );
    dial(
        &target.to_string(),
        Lane::Control,
        0,
        &dialer(Some(new_member())),
    )
    .expect("after the rotation, a member of the new CA gets in");
    let e = dial_error(target, &dialer(Some(old_member())));
    assert!(
        matches!(&e, LinkError::Tls { reason, .. } if reason.contains("UnknownIssuer")),
        "the old member no longer trusts the node's certificate: {e}"
    );

    // A CA file that does not load refuses the reload whole: the rotated files stay.
    std::fs::write(dir.join("ca.pem"), "not a certificate").unwrap();
    let e = n1
        .reloader()
        .reload()
        .expect_err("a bad CA file is refused");
    assert!(e.to_string().contains("cluster_tls_ca_file"), "{e}");
    dial(
        &target.to_string(),
        Lane::Control,
        0,
        &dialer(Some(new_member())),
    )
    .expect("the configuration in force before the bad reload stays");
}
