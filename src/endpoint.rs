//! sans-IO: network addresses as people write them: `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT`.
//!
//! One parser for every address the relay takes, in flags and in the TOML file alike
//! (`listen`, `metrics`, `cluster_listen`, `cluster_advertise`, `peers`, and the clients'
//! `--server`), so the two can never disagree on what they accept. A host name is kept as a
//! name here; the I/O layer resolves it when it binds or dials (`server::resolve`), so a
//! config can be checked on a machine where the name does not resolve yet, and a name is
//! looked up again each time it is dialled.

#![forbid(unsafe_code)]

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Longest host name DNS allows (RFC 1035: 255 octets on the wire, 253 as text).
const HOST_NAME_BYTES_MAX: usize = 253;

/// An address to bind or dial: an IP address and port, or a host name and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Addr(SocketAddr),
    Host { name: String, port: u16 },
}

impl Endpoint {
    pub fn port(&self) -> u16 {
        match self {
            Endpoint::Addr(a) => a.port(),
            Endpoint::Host { port, .. } => *port,
        }
    }

    /// The IP address when the endpoint is written as one; `None` for a host name.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Endpoint::Addr(a) => Some(a.ip()),
            Endpoint::Host { .. } => None,
        }
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Endpoint {
        Endpoint::Addr(addr)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Addr(a) => a.fmt(f),
            Endpoint::Host { name, port } => write!(f, "{name}:{port}"),
        }
    }
}

impl FromStr for Endpoint {
    type Err = String;

    /// Every error echoes the input and shows the accepted form.
    fn from_str(text: &str) -> Result<Endpoint, String> {
        let trimmed = text.trim();
        if let Ok(addr) = trimmed.parse::<SocketAddr>() {
            return Ok(Endpoint::Addr(addr));
        }
        let expected = |why: &str| {
            format!("'{text}' is not an address: {why}; expected HOST:PORT, IP:PORT or [IPv6]:PORT, like 127.0.0.1:7400 or relay1.example.net:7400")
        };
        let Some((host, port)) = trimmed.rsplit_once(':') else {
            return Err(expected("no port"));
        };
        let port: u16 = port
            .parse()
            .map_err(|_| expected(&format!("'{port}' is not a port (0..65535)")))?;
        if host.is_empty() {
            return Err(expected("no host"));
        }
        if host.starts_with('[') || host.contains(':') {
            return Err(expected(&format!(
                "'{host}' is not an IPv6 address in brackets"
            )));
        }
        if host
            .split('.')
            .all(|l| l.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(expected(&format!("'{host}' is not an IPv4 address")));
        }
        if let Some(why) = host_name_fault(host) {
            return Err(expected(&why));
        }
        Ok(Endpoint::Host {
            name: host.to_string(),
            port,
        })
    }
}

/// Why `host` is not a DNS host name (letters, digits, hyphens and underscores in dot-separated
/// labels of 1 to 63 characters), or `None` when it is one.
fn host_name_fault(host: &str) -> Option<String> {
    if host.len() > HOST_NAME_BYTES_MAX {
        return Some(format!(
            "the host name is longer than {HOST_NAME_BYTES_MAX} characters"
        ));
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    for label in host.split('.') {
        let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if label.is_empty() || label.len() > 63 || !label.chars().all(allowed) {
            return Some(format!("'{host}' is not a host name"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!(
                "'{host}' is not a host name (a label starts or ends with '-')"
            ));
        }
    }
    None
}

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Endpoint, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Endpoint {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn addresses_and_host_names_parse_and_print_back() {
        for text in [
            "127.0.0.1:7400",
            "[::1]:7400",
            "0.0.0.0:0",
            "localhost:7400",
            "relay-1.example.net:7401",
            "node_2:1",
        ] {
            assert_eq!(ok(text).to_string(), text);
        }
        assert_eq!(ok(" localhost:7400 ").port(), 7400);
        assert_eq!(ok("localhost:7400").ip(), None);
        assert!(ok("0.0.0.0:1").ip().unwrap().is_unspecified());
    }

    #[test]
    fn malformed_addresses_are_refused_with_the_input_echoed() {
        for text in [
            "127.0.0.1",
            "localhost",
            ":7400",
            "host:",
            "host:70000",
            "host:x",
            "127.0.0.300:1",
            "::1:7400",
            "[::1:7400",
            "a..b:1",
            "-a:1",
            "a b:1",
            "",
        ] {
            let err = text.parse::<Endpoint>().unwrap_err();
            assert!(err.contains(&format!("'{text}'")), "{err}");
            assert!(err.contains("HOST:PORT"), "{err}");
        }
        let long = format!("{}:1", "a.".repeat(130));
        assert!(long.parse::<Endpoint>().is_err());
    }

    #[test]
    fn serde_round_trips_through_the_text_form() {
        #[derive(Serialize, Deserialize)]
        struct T {
            a: Endpoint,
        }
        let t: T = toml::from_str("a = \"localhost:7400\"").unwrap();
        assert_eq!(t.a.to_string(), "localhost:7400");
        assert_eq!(
            toml::to_string(&t).unwrap().trim(),
            "a = \"localhost:7400\""
        );
        let err = toml::from_str::<T>("a = \"localhost\"").err().unwrap();
        assert!(err.to_string().contains("'localhost'"), "{err}");
    }
}
