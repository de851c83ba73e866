//! The TCP congestion control of the relay's own sockets (`tcp_congestion`; unset by default,
//! which leaves the host's).
//!
//! When set, it is checked once when the relay starts, then set with `TCP_CONGESTION` on every
//! client and cluster socket before it listens or connects: the client, NATS and TLS
//! listeners (the connections they accept inherit the listener's choice), the cluster
//! listener and the links this node dials. Not the metrics endpoint, whose few answers gain
//! nothing. Set before, not after: a socket that started under BBR keeps BBR's internal
//! pacing when its algorithm is changed later (`sk_pacing_status` is not reset). A route with
//! its own `congctl` (`ip route ... congctl NAME`) overrides the setting for its sockets.
//!
//! Why a relay may want it: under a pacing algorithm (BBR) on a host whose qdisc does not pace
//! (no `fq`), TCP paces each socket itself, deferring transmits to a timer per socket, and a
//! relay that sends a little to many sockets in every round pays for those timers on its own
//! CPU (README "Benchmarks": one-to-one 1 KiB over loopback took a sixth to a fifth less
//! relay CPU per message with `cubic` set here on a BBR host). Under `fq` the qdisc paces
//! every flow,
//! whatever its algorithm, so setting `cubic` alone does not stop pacing there. Why it is not
//! set by default: the host's congestion control is its operator's choice, often made for
//! clients across lossy or long paths, and a relay should not override it unasked; the start
//! logs it, with a hint when it is BBR.

use std::io;

/// What the relay's sockets use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpCongestion {
    /// The host's default (`net.ipv4.tcp_congestion_control`): sockets are left alone.
    Host,
    /// This algorithm, set on each socket before it listens or connects.
    Named(String),
}

/// Why a `tcp_congestion` the operator named cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TcpCongestionError {
    #[error(
        "tcp_congestion = \"{name}\": the kernel refused it ({source}): it is not built in or \
         loaded (see /proc/sys/net/ipv4/tcp_available_congestion_control), or not allowed to \
         this process (tcp_allowed_congestion_control); \"\" keeps the host's default"
    )]
    Refused {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("tcp_congestion = \"{name}\": cannot open a socket to try it on: {source}")]
    Probe {
        name: String,
        #[source]
        source: io::Error,
    },
}

impl TcpCongestion {
    /// Resolves the setting against this host: `""` is the host's default; a name must be one
    /// the kernel gives this process, or the relay does not start (when it does, it is logged).
    pub fn resolve(setting: &str) -> Result<TcpCongestion, TcpCongestionError> {
        if setting.is_empty() {
            log_the_hosts();
            return Ok(TcpCongestion::Host);
        }
        let name = setting.to_owned();
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .map_err(|source| TcpCongestionError::Probe {
                name: name.clone(),
                source,
            })?;
        let wanted = TcpCongestion::Named(name);
        match wanted.apply(&socket) {
            Ok(()) => {
                tracing::info!(
                    tcp_congestion = setting,
                    "the relay's sockets use this congestion control"
                );
                Ok(wanted)
            }
            Err(source) => Err(TcpCongestionError::Refused {
                name: setting.to_owned(),
                source,
            }),
        }
    }

    /// A TCP socket for `addr`'s family with the algorithm set, not yet bound or connected:
    /// every listener and dialled link of the relay is made here.
    pub fn new_socket(&self, addr: std::net::SocketAddr) -> io::Result<socket2::Socket> {
        let domain = socket2::Domain::for_address(addr);
        let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
        self.apply(&socket)?;
        Ok(socket)
    }

    /// Sets the algorithm on `socket`, which has not listened or connected yet.
    fn apply(&self, socket: &socket2::Socket) -> io::Result<()> {
        match self {
            TcpCongestion::Host => Ok(()),
            TcpCongestion::Named(name) => socket.set_tcp_congestion(name.as_bytes()),
        }
    }
}

/// Logs the host's default, which the relay's sockets keep, with a hint when it paces.
fn log_the_hosts() {
    let Some(host) = the_hosts() else {
        return;
    };
    match pacing_hint(&host) {
        Some(hint) => {
            tracing::info!(tcp_congestion = %host, "the host's congestion control: {hint}")
        }
        None => tracing::info!(tcp_congestion = %host, "the host's congestion control"),
    }
}

/// The host's default algorithm, as a fresh socket reports it (`None` if it cannot be read).
fn the_hosts() -> Option<String> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    algorithm_in_use(&(&socket).into())
}

/// The algorithm `socket` uses (the kernel pads the name with NULs).
fn algorithm_in_use(socket: &socket2::SockRef<'_>) -> Option<String> {
    let mut name = socket.tcp_congestion().ok()?;
    name.retain(|&b| b != 0);
    String::from_utf8(name).ok()
}

/// What an operator may want to know of the host's algorithm `name`: BBR paces, and without
/// an `fq` qdisc (never on loopback) TCP paces each socket with a timer of its own.
fn pacing_hint(name: &str) -> Option<&'static str> {
    name.starts_with("bbr").then_some(
        "it paces, and over a qdisc other than fq (loopback has none) each socket runs a \
         pacing timer the relay pays for; tcp_congestion = \"cubic\" avoids that (README \
         \"Configuration\")",
    )
}

/// What the tests of the sockets that take the setting share.
#[cfg(test)]
pub(crate) mod test_support {
    /// The algorithm `socket` uses.
    pub(crate) fn algorithm_of(socket: &socket2::SockRef<'_>) -> String {
        super::algorithm_in_use(socket).expect("TCP sockets always have one, in ASCII")
    }

    /// An algorithm this process may set that is not the host's default, so a socket that
    /// reports it was given it: the tests cannot tell a setting from the default otherwise.
    pub(crate) fn other_than_the_hosts() -> String {
        let read = |file| {
            std::fs::read_to_string(format!("/proc/sys/net/ipv4/{file}"))
                .expect("Linux always has this file")
        };
        let host = read("tcp_congestion_control");
        let probe = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a test can always open a socket");
        read("tcp_available_congestion_control")
            .split_whitespace()
            .find(|name| *name != host.trim() && probe.set_tcp_congestion(name.as_bytes()).is_ok())
            .unwrap_or_else(|| {
                panic!("this host gives the tests no congestion control besides its default {host}")
            })
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn only_a_pacing_algorithm_gets_the_hint() {
        assert!(pacing_hint("bbr").is_some_and(|h| h.contains("tcp_congestion = \"cubic\"")));
        assert_eq!(pacing_hint("cubic"), None);
        assert_eq!(pacing_hint("reno"), None);
    }

    #[test]
    fn the_hosts_default_is_what_the_kernel_says() {
        let host = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
            .expect("Linux always has this file");
        assert_eq!(the_hosts().as_deref(), Some(host.trim()));
    }

    #[test]
    fn an_empty_setting_leaves_the_hosts_default() {
        assert_eq!(TcpCongestion::resolve("").unwrap(), TcpCongestion::Host);
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let before = algorithm_of(&(&socket).into());
        TcpCongestion::Host.apply(&socket).unwrap();
        assert_eq!(algorithm_of(&(&socket).into()), before);
    }

    #[test]
    fn a_name_the_kernel_gives_resolves_to_itself_and_is_set() {
        let other = other_than_the_hosts();
        let chosen = TcpCongestion::resolve(&other).unwrap();
        assert_eq!(chosen, TcpCongestion::Named(other.clone()));
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        chosen.apply(&socket).unwrap();
        assert_eq!(algorithm_of(&(&socket).into()), other);
    }

    #[test]
    fn a_name_the_kernel_refuses_stops_the_start_naming_it_and_where_to_look() {
        let err = TcpCongestion::resolve("no_such_algo").unwrap_err();
        assert!(matches!(err, TcpCongestionError::Refused { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("tcp_congestion = \"no_such_algo\""), "{text}");
        assert!(text.contains("tcp_available_congestion_control"), "{text}");
        assert!(text.contains("tcp_allowed_congestion_control"), "{text}");
    }
}
