//! The options of a NATS CONNECT (JSON). Parsed once per connection, so this may allocate.

use serde::Deserialize;
use std::fmt;

/// What a client says in CONNECT. Absent fields take nats-server's defaults (verbose,
/// pedantic and echo on); unknown fields are ignored, as nats-server ignores them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ConnectOptions {
    /// Answer every operation but PING with +OK.
    pub verbose: bool,
    pub pedantic: bool,
    /// Deliver this connection's own publishes to its own subscriptions.
    pub echo: bool,
    /// The client understands HMSG (and may send HPUB).
    pub headers: bool,
    /// A request nobody can answer gets the 503 status message (needs `headers`).
    pub no_responders: bool,
    pub auth_token: Option<String>,
    pub user: Option<String>,
    pub pass: Option<String>,
    /// An nkey user public key (`U...`): the client proves it with `sig`, its signature of
    /// the INFO's `nonce` (the nonce string's bytes), in base64url without padding.
    pub nkey: Option<String>,
    pub sig: Option<String>,
    /// The connection's name: the sender id native clients see, when it is a valid id.
    pub name: Option<String>,
    pub lang: Option<String>,
    pub version: Option<String>,
    pub protocol: Option<u8>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            verbose: true,
            pedantic: true,
            echo: true,
            headers: false,
            no_responders: false,
            auth_token: None,
            user: None,
            pass: None,
            nkey: None,
            sig: None,
            name: None,
            lang: None,
            version: None,
            protocol: None,
        }
    }
}

/// Why a CONNECT is refused; the connection is closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// Not a JSON object of the known fields' types (nats-server closes without an -ERR).
    Malformed(String),
    /// `no_responders` without `headers`.
    NoRespondersWithoutHeaders,
}

impl ConnectError {
    /// The `-ERR` text sent before the close.
    pub fn err_text(&self) -> &'static str {
        match self {
            ConnectError::Malformed(_) => "Parser Error",
            ConnectError::NoRespondersWithoutHeaders => "no responders requires headers support",
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Malformed(why) => write!(f, "malformed NATS CONNECT: {why}"),
            ConnectError::NoRespondersWithoutHeaders => {
                f.write_str("NATS CONNECT asked for no_responders without headers")
            }
        }
    }
}

impl ConnectOptions {
    pub fn parse(json: &[u8]) -> Result<ConnectOptions, ConnectError> {
        // serde would take a struct from a JSON array too; CONNECT is an object.
        if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ConnectError::Malformed("not a JSON object".into()));
        }
        let options: ConnectOptions =
            serde_json::from_slice(json).map_err(|e| ConnectError::Malformed(e.to_string()))?;
        if options.no_responders && !options.headers {
            return Err(ConnectError::NoRespondersWithoutHeaders);
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_nats_servers_and_unknown_fields_are_ignored() {
        let o = ConnectOptions::parse(b"{}").unwrap();
        assert!(o.verbose && o.pedantic && o.echo && !o.headers);
        let o = ConnectOptions::parse(
            br#"{"verbose":false,"echo":false,"headers":true,"no_responders":true,
                "name":"svc","lang":"python3","version":"2.16.0","protocol":1,
                "auth_token":"t","future":[1,{"x":2}],"nkey":"UABC","sig":"c2ln"}"#,
        )
        .unwrap();
        assert!(!o.verbose && !o.echo && o.headers && o.no_responders);
        assert_eq!(o.name.as_deref(), Some("svc"));
        assert_eq!(o.auth_token.as_deref(), Some("t"));
        assert_eq!(
            (o.nkey.as_deref(), o.sig.as_deref()),
            (Some("UABC"), Some("c2ln"))
        );
    }

    #[test]
    fn malformed_or_inconsistent_options_are_refused() {
        for bad in [&b"{bad json"[..], b"{\"verbose\":\"yes\"}", b"[]", b""] {
            assert!(matches!(
                ConnectOptions::parse(bad),
                Err(ConnectError::Malformed(_))
            ));
        }
        assert_eq!(
            ConnectOptions::parse(br#"{"no_responders":true}"#),
            Err(ConnectError::NoRespondersWithoutHeaders)
        );
    }
}
