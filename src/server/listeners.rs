//! The relay's listening sockets: one per worker on each client port (SO_REUSEPORT spreads
//! connections over them), and the cluster listener. Each is given the relay's TCP
//! congestion control before it listens, so every connection it accepts inherits it
//! (`crate::tcp_congestion`).

use super::{resolve, ServeError, LISTEN_BACKLOG};
use crate::config::Config;
use crate::tcp_congestion::TcpCongestion;
use std::net::SocketAddr;

/// One NATS listener per worker when `nats_listen` is set (else `None` for each), and the
/// bound address.
#[allow(clippy::type_complexity)]
pub(super) fn bind_nats_listeners(
    cfg: &Config,
    workers: usize,
    congestion: &TcpCongestion,
) -> Result<(Vec<Option<socket2::Socket>>, Option<SocketAddr>), ServeError> {
    Ok(match &cfg.nats_listen {
        Some(endpoint) => {
            let addr = resolve::resolve("nats_listen", endpoint)?;
            let (sockets, addr) = bind_listeners(addr, workers, congestion)?;
            (sockets.into_iter().map(Some).collect(), Some(addr))
        }
        None => ((0..workers).map(|_| None).collect(), None),
    })
}

/// The listener for links from peers, when this relay is a cluster node.
pub(super) fn bind_cluster_listener(
    cfg: &Config,
    congestion: &TcpCongestion,
) -> Result<Option<std::net::TcpListener>, ServeError> {
    let endpoint = match &cfg.cluster_listen {
        Some(endpoint) if cfg.node_id != 0 => endpoint,
        _ => return Ok(None),
    };
    let addr = resolve::resolve("cluster_listen", endpoint)?;
    let bind = || -> std::io::Result<std::net::TcpListener> {
        let socket = new_listener(addr, congestion)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        Ok(socket.into())
    };
    bind()
        .map(Some)
        .map_err(|source| ServeError::ClusterListen { addr, source })
}

/// `workers` listeners sharing `addr` (SO_REUSEPORT), and the address they got (port 0 picks
/// one for the first, and the rest join it).
pub(super) fn bind_listeners(
    addr: SocketAddr,
    workers: usize,
    congestion: &TcpCongestion,
) -> Result<(Vec<socket2::Socket>, SocketAddr), ServeError> {
    refuse_if_taken(addr)?;
    let mut listeners = Vec::with_capacity(workers);
    let mut bound = addr;
    for _ in 0..workers {
        let socket = bind_one(bound, congestion).map_err(|source| ServeError::Listen {
            addr: bound,
            source,
        })?;
        if listeners.is_empty() {
            bound = socket
                .local_addr()
                .and_then(|a| {
                    a.as_socket()
                        .ok_or_else(|| std::io::Error::other("not an IP address"))
                })
                .map_err(|source| ServeError::Listen { addr, source })?;
        }
        listeners.push(socket);
    }
    Ok((listeners, bound))
}

/// Binds `addr` once without SO_REUSEPORT, then lets it go: that bind fails while any other
/// socket listens there (a relay's workers all set SO_REUSEPORT, so a second relay could
/// otherwise share the port silently). Port 0 needs no check: the kernel picks a free port.
fn refuse_if_taken(addr: SocketAddr) -> Result<(), ServeError> {
    if addr.port() == 0 {
        return Ok(());
    }
    // With SO_REUSEADDR (new_listener): a port whose old connections linger in TIME_WAIT is
    // free.
    let probe = || new_listener(addr, &TcpCongestion::Host)?.bind(&addr.into());
    match probe() {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            Err(ServeError::AddressInUse { addr })
        }
        Err(source) => Err(ServeError::Listen { addr, source }),
        Ok(()) => Ok(()),
    }
}

fn bind_one(addr: SocketAddr, congestion: &TcpCongestion) -> std::io::Result<socket2::Socket> {
    let socket = new_listener(addr, congestion)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket)
}

/// A TCP socket for `addr`'s family with SO_REUSEADDR (a restarted relay binds while its old
/// connections linger in TIME_WAIT) and the relay's congestion control, not yet bound.
fn new_listener(addr: SocketAddr, congestion: &TcpCongestion) -> std::io::Result<socket2::Socket> {
    let socket = congestion.new_socket(addr)?;
    socket.set_reuse_address(true)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp_congestion::test_support::{algorithm_of, other_than_the_hosts};
    use std::net::TcpStream;

    /// The algorithm of the connection `listener` accepts from a new client.
    fn accepted_algorithm(listener: &socket2::Socket) -> String {
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let _client = TcpStream::connect(addr).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        algorithm_of(&(&accepted).into())
    }

    #[test]
    fn every_workers_client_listener_hands_its_connections_the_relays_algorithm() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let other = other_than_the_hosts();
        let chosen = TcpCongestion::Named(other.clone());
        let (listeners, bound) = bind_listeners(any, 2, &chosen).unwrap();
        assert_ne!(bound.port(), 0);
        for listener in &listeners {
            assert_eq!(algorithm_of(&listener.into()), other);
        }
        // Which of the two a connection lands on is the kernel's pick: one alone shows what
        // the accepted end gets.
        let (first, _) = bind_listeners(any, 1, &chosen).unwrap();
        assert_eq!(accepted_algorithm(&first[0]), other);
    }

    #[test]
    fn the_cluster_listener_hands_its_links_the_relays_algorithm() {
        let cfg = Config {
            node_id: 1,
            cluster_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Config::default()
        };
        let other = other_than_the_hosts();
        let chosen = TcpCongestion::Named(other.clone());
        let listener = bind_cluster_listener(&cfg, &chosen).unwrap().unwrap();
        assert_eq!(accepted_algorithm(&socket2::Socket::from(listener)), other);
        let standalone = Config::default();
        assert!(bind_cluster_listener(&standalone, &chosen)
            .unwrap()
            .is_none());
    }
}
