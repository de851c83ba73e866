//! What the relay writes to a NATS client: INFO, MSG and HMSG, +OK, -ERR, PING, PONG.
//! Appends to a caller's buffer (a connection's send buffer); nothing allocates but the
//! buffer's own growth.

use serde::Serialize;

pub const PING: &[u8] = b"PING\r\n";
pub const PONG: &[u8] = b"PONG\r\n";
pub const OK: &[u8] = b"+OK\r\n";

/// The INFO a client gets first (nats-server's field names; fields a client does not need
/// for the core protocol are left out).
#[derive(Clone, Debug, Serialize)]
pub struct ServerInfo<'a> {
    pub server_id: &'a str,
    pub server_name: &'a str,
    pub version: &'a str,
    pub proto: u8,
    pub host: &'a str,
    pub port: u16,
    pub headers: bool,
    pub max_payload: usize,
    pub client_id: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    /// The client must upgrade to TLS after this INFO (or has done it before: TLS first).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    /// What an nkey client signs (CONNECT `sig`): fresh per connection, sent only when some
    /// credentials entry has a public key, as nats-server sends it only when nkeys exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<&'a str>,
}

/// Appends `INFO <json>\r\n`.
pub fn write_info(out: &mut Vec<u8>, info: &ServerInfo<'_>) {
    out.extend_from_slice(b"INFO ");
    // Serializing plain strings and numbers into a Vec cannot fail.
    let ok = serde_json::to_writer(&mut *out, info).is_ok();
    debug_assert!(ok, "INFO always serializes");
    out.extend_from_slice(b"\r\n");
}

/// Appends `-ERR '<text>'\r\n`.
pub fn write_err(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"-ERR '");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"'\r\n");
}

/// The bytes of [`write_err`] for `text`.
pub fn err_len(text: &str) -> usize {
    9 + text.len()
}

fn write_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// A message to one subscription of a NATS client: MSG when `headers` is empty, else HMSG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsgHead<'a> {
    pub subject: &'a [u8],
    pub sid: &'a [u8],
    /// Empty when the message has no reply subject.
    pub reply: &'a [u8],
    pub headers: &'a [u8],
    pub payload_len: usize,
}

impl MsgHead<'_> {
    /// The bytes of the control line (with its CRLF).
    pub fn line_len(&self) -> usize {
        let reply = if self.reply.is_empty() {
            0
        } else {
            self.reply.len() + 1
        };
        let total = self.headers.len() + self.payload_len;
        let sizes = if self.headers.is_empty() {
            decimal_len(total as u64)
        } else {
            decimal_len(self.headers.len() as u64) + 1 + decimal_len(total as u64)
        };
        let op = if self.headers.is_empty() { 4 } else { 5 };
        op + self.subject.len() + 1 + self.sid.len() + 1 + reply + sizes + 2
    }

    /// The bytes of the whole message: control line, headers, payload and the final CRLF.
    pub fn message_len(&self) -> usize {
        self.line_len() + self.headers.len() + self.payload_len + 2
    }

    /// Appends the control line and the headers; the payload and [`MSG_END`] follow.
    pub fn write(&self, out: &mut Vec<u8>) {
        let total = (self.headers.len() + self.payload_len) as u64;
        out.extend_from_slice(if self.headers.is_empty() {
            b"MSG "
        } else {
            b"HMSG "
        });
        out.extend_from_slice(self.subject);
        out.push(b' ');
        out.extend_from_slice(self.sid);
        out.push(b' ');
        if !self.reply.is_empty() {
            out.extend_from_slice(self.reply);
            out.push(b' ');
        }
        if !self.headers.is_empty() {
            write_decimal(out, self.headers.len() as u64);
            out.push(b' ');
        }
        write_decimal(out, total);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.headers);
    }

    /// Appends the whole message with `payload` (`payload.len()` is `payload_len`).
    pub fn write_with(&self, out: &mut Vec<u8>, payload: &[u8]) {
        debug_assert_eq!(payload.len(), self.payload_len);
        self.write(out);
        out.extend_from_slice(payload);
        out.extend_from_slice(MSG_END);
    }
}

/// What ends every MSG and HMSG.
pub const MSG_END: &[u8] = b"\r\n";

/// The header block of nats-server's answer to a request nobody can answer
/// (`HMSG <reply> <sid> 16 16` with no payload).
pub const NO_RESPONDERS_HEADERS: &[u8] = b"NATS/1.0 503\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn written(head: MsgHead<'_>, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        head.write_with(&mut out, payload);
        assert_eq!(out.len(), head.message_len());
        out
    }

    #[test]
    fn msg_and_hmsg_lay_out_as_nats_server_does() {
        let msg = MsgHead {
            subject: b"foo",
            sid: b"1",
            reply: b"",
            headers: b"",
            payload_len: 2,
        };
        assert_eq!(written(msg, b"hi"), b"MSG foo 1 2\r\nhi\r\n");
        let with_reply = MsgHead {
            reply: b"r",
            payload_len: 0,
            ..msg
        };
        assert_eq!(written(with_reply, b""), b"MSG foo 1 r 0\r\n\r\n");
        let hmsg = MsgHead {
            subject: b"inbox.1",
            headers: NO_RESPONDERS_HEADERS,
            payload_len: 0,
            ..msg
        };
        assert_eq!(
            written(hmsg, b""),
            b"HMSG inbox.1 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"
        );
        let big = MsgHead {
            payload_len: 1_234_567,
            ..msg
        };
        let mut out = Vec::new();
        big.write(&mut out);
        assert_eq!(out, b"MSG foo 1 1234567\r\n");
        assert_eq!(out.len(), big.line_len());
    }

    #[test]
    fn err_and_info_lines() {
        let mut out = Vec::new();
        write_err(&mut out, "Unknown Protocol Operation");
        assert_eq!(out, b"-ERR 'Unknown Protocol Operation'\r\n");
        assert_eq!(out.len(), err_len("Unknown Protocol Operation"));
        out.clear();
        let info = ServerInfo {
            server_id: "n1",
            server_name: "n1",
            version: "0.1.0",
            proto: 1,
            host: "127.0.0.1",
            port: 4222,
            headers: true,
            max_payload: 1024,
            client_id: 7,
            auth_required: false,
            tls_required: false,
            nonce: None,
        };
        write_info(&mut out, &info);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("INFO {\"server_id\":\"n1\""), "{text}");
        assert!(text.ends_with("}\r\n"));
        assert!(text.contains("\"max_payload\":1024"));
        assert!(!text.contains("auth_required"));
        assert!(!text.contains("nonce"));
        assert!(!text.contains("tls_required"));
        let mut out = Vec::new();
        let with_nonce = ServerInfo {
            auth_required: true,
            tls_required: true,
            nonce: Some("bm9uY2U"),
            ..info
        };
        write_info(&mut out, &with_nonce);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"nonce\":\"bm9uY2U\""), "{text}");
        assert!(text.contains("\"tls_required\":true"), "{text}");
    }
}
