//! Turns an [`Endpoint`] into the socket address to bind: a host name is looked up here, at
//! start-up, in the I/O layer (the config holds it as a name).

use super::ServeError;
use crate::endpoint::Endpoint;
use std::net::{SocketAddr, ToSocketAddrs};

/// The address `endpoint` names: itself, or the first address its host name resolves to
/// (`localhost` resolves to 127.0.0.1 before ::1 on the usual /etc/hosts). `setting` names
/// the config key in the error.
pub fn resolve(setting: &'static str, endpoint: &Endpoint) -> Result<SocketAddr, ServeError> {
    let (name, port) = match endpoint {
        Endpoint::Addr(addr) => return Ok(*addr),
        Endpoint::Host { name, port } => (name.as_str(), *port),
    };
    let failed = |source| ServeError::Resolve {
        setting,
        endpoint: endpoint.to_string(),
        source,
    };
    let mut addrs = (name, port).to_socket_addrs().map_err(failed)?;
    addrs.next().ok_or_else(|| {
        failed(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the name resolves to no address",
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_pass_through_and_localhost_resolves_to_loopback() {
        let addr: Endpoint = "127.0.0.2:9".parse().unwrap();
        assert_eq!(resolve("listen", &addr).unwrap().to_string(), "127.0.0.2:9");
        let host: Endpoint = "localhost:9".parse().unwrap();
        let got = resolve("listen", &host).unwrap();
        assert!(got.ip().is_loopback() && got.port() == 9, "{got}");
    }

    #[test]
    fn a_name_that_does_not_resolve_names_the_setting_and_the_input() {
        let host: Endpoint = "no-such-host.invalid:9".parse().unwrap();
        let err = resolve("cluster_listen", &host).unwrap_err().to_string();
        assert!(
            err.contains("cluster_listen") && err.contains("no-such-host.invalid:9"),
            "{err}"
        );
    }
}
