//! The TCP congestion control of the relay's own sockets (`tcp_congestion`).
//!
//! Resolved once when the relay starts, then set with `TCP_CONGESTION` on every socket before it
//! listens or connects: the client, NATS and TLS listeners (the connections they accept inherit
//! the listener's choice; an established socket keeps the pacing its first algorithm asked for,
//! so setting it after the accept would be too late), the cluster listener and the links this
//! node dials.
//!
//! Why the default is `cubic` and not the host's: a pacing algorithm (BBR) spreads a socket's
//! transmits over timers, and a relay, which sends a little to many sockets in every round,
//! pays for those timers and the transmits they defer on its own CPU. Measured on a BBR host
//! (README "Performance"): one-to-one 1 KiB cost about a fifth more relay CPU per message with
//! the host's BBR than with `cubic` on the relay's sockets. Pacing is for paths with a
//! bottleneck and shallow buffers; a relay's clients and peers sit in one cluster. An
//! operator who wants the host's choice sets `tcp_congestion = ""`.

use std::io;

/// The algorithm the relay asks for when `tcp_congestion` is not set. Built into every
/// mainstream kernel; when this host does not offer it to the relay, the relay keeps the
/// host's default and says so once.
pub const TCP_CONGESTION_DEFAULT: &str = "cubic";

/// What the relay's sockets use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpCongestion {
    /// The host's default (`net.ipv4.tcp_congestion_control`): sockets are left alone.
    Host,
    /// This algorithm, set on each socket before it listens or connects.
    Named(String),
}

/// A `tcp_congestion` the operator named that this host refuses to the relay.
#[derive(Debug, thiserror::Error)]
#[error(
    "tcp_congestion = \"{name}\": the kernel refused it ({source}); the names it offers are in \
     /proc/sys/net/ipv4/tcp_allowed_congestion_control (tcp_available_congestion_control for \
     root), and \"\" keeps the host's default"
)]
pub struct TcpCongestionRefused {
    pub name: String,
    #[source]
    pub source: io::Error,
}

impl TcpCongestion {
    /// Resolves the setting against this host: `None` (not set) asks for
    /// [`TCP_CONGESTION_DEFAULT`] and falls back to the host's with one warning; `""` is the
    /// host's; a name the operator gave must be accepted, or the relay does not start.
    pub fn resolve(setting: Option<&str>) -> Result<TcpCongestion, TcpCongestionRefused> {
        let (name, required) = match setting {
            Some("") => return Ok(TcpCongestion::Host),
            Some(name) => (name, true),
            None => (TCP_CONGESTION_DEFAULT, false),
        };
        let wanted = TcpCongestion::Named(name.to_owned());
        match probe_socket().and_then(|socket| wanted.apply(&socket)) {
            Ok(()) => Ok(wanted),
            Err(source) if required => Err(TcpCongestionRefused {
                name: name.to_owned(),
                source,
            }),
            Err(source) => {
                tracing::warn!(
                    "tcp_congestion: the kernel refused the default \"{name}\" ({source}); the \
                     relay's sockets keep the host's congestion control"
                );
                Ok(TcpCongestion::Host)
            }
        }
    }

    /// Sets the algorithm on `socket`, which has not listened or connected yet.
    pub fn apply(&self, socket: &socket2::Socket) -> io::Result<()> {
        match self {
            TcpCongestion::Host => Ok(()),
            TcpCongestion::Named(name) => socket.set_tcp_congestion(name.as_bytes()),
        }
    }
}

/// A TCP socket to try the setting on: IPv4, or IPv6 on a host without it.
fn probe_socket() -> io::Result<socket2::Socket> {
    let tcp = |domain| socket2::Socket::new(domain, socket2::Type::STREAM, None);
    tcp(socket2::Domain::IPV4).or_else(|_| tcp(socket2::Domain::IPV6))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The algorithm `socket` uses (the kernel pads the name with NULs).
    fn algorithm_of(socket: &socket2::Socket) -> Vec<u8> {
        let mut name = socket.tcp_congestion().unwrap();
        name.retain(|&b| b != 0);
        name
    }

    #[test]
    fn an_empty_setting_leaves_the_hosts_default() {
        assert_eq!(
            TcpCongestion::resolve(Some("")).unwrap(),
            TcpCongestion::Host
        );
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let before = algorithm_of(&socket);
        TcpCongestion::Host.apply(&socket).unwrap();
        assert_eq!(algorithm_of(&socket), before);
    }

    #[test]
    fn a_named_algorithm_the_kernel_refuses_stops_the_start_naming_it() {
        let err = TcpCongestion::resolve(Some("no_such_algo")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("tcp_congestion = \"no_such_algo\""), "{text}");
        assert!(text.contains("tcp_allowed_congestion_control"), "{text}");
    }

    #[test]
    fn the_default_is_cubic_or_the_hosts_when_refused() {
        let resolved = TcpCongestion::resolve(None).unwrap();
        let offered = probe_socket()
            .unwrap()
            .set_tcp_congestion(TCP_CONGESTION_DEFAULT.as_bytes())
            .is_ok();
        let expected = if offered {
            TcpCongestion::Named(TCP_CONGESTION_DEFAULT.into())
        } else {
            TcpCongestion::Host
        };
        assert_eq!(resolved, expected);
    }
}
