//! The nats-server side, text protocol: INFO/CONNECT/PING handshake, SUB (with queue group),
//! PUB encoding, and an in-place MSG scanner.

use super::transport::LoadTls;
use super::wire::{dial, Conn, Dest, Scanner, Sub, Wire};
use std::io::{Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Instant;

/// Longest protocol line accepted before its "\r\n" (INFO lines can be long).
const LINE_BYTES_MAX: usize = 64 * 1024;
/// Largest message payload accepted from the server.
const PAYLOAD_BYTES_MAX: usize = 64 << 20;

#[derive(Clone, Debug)]
pub struct NatsWire {
    pub addr: SocketAddr,
    pub token: Option<String>,
    /// TLS on every connection (`--tls-ca-file`): after the server's INFO, which comes in
    /// plaintext, as nats-server expects.
    pub tls: Option<LoadTls>,
}

/// Parses "nats://HOST:PORT" (or a bare "HOST:PORT") into a socket address.
pub fn parse_nats_url(url: &str) -> Result<SocketAddr, String> {
    let hostport = url.strip_prefix("nats://").unwrap_or(url);
    let hostport = hostport.trim_end_matches('/');
    if hostport.contains('@') || hostport.contains('/') {
        return Err(format!("--compare '{url}': expected nats://HOST:PORT"));
    }
    hostport
        .to_socket_addrs()
        .map_err(|e| format!("--compare '{url}': {e}"))?
        .next()
        .ok_or_else(|| format!("--compare '{url}': no address"))
}

impl Wire for NatsWire {
    type Scanner = NatsScanner;

    fn name(&self) -> &'static str {
        "nats"
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn connect(&self, client_id: &str, deadline: Instant) -> Result<Conn, String> {
        let mut conn = match &self.tls {
            None => Conn::open(self.addr, client_id, None)?,
            Some(tls) => {
                let mut sock = dial(self.addr)?;
                let info = read_info_line(&mut sock, client_id, deadline)?;
                Conn::over(sock, client_id, Some(tls), info)?
            }
        };
        conn.max_frame_bytes = PAYLOAD_BYTES_MAX;
        let mut opts = serde_json::json!({
            "verbose": false, "pedantic": false, "echo": false, "name": client_id, "lang": "rust",
            "version": env!("CARGO_PKG_VERSION"), "protocol": 1,
        });
        if let Some(token) = &self.token {
            opts["auth_token"] = serde_json::Value::String(token.clone());
        }
        conn.write_all(format!("CONNECT {opts}\r\nPING\r\n").as_bytes())?;
        let mut scanner = self.scanner(PAYLOAD_BYTES_MAX);
        let synced = conn.scan_until(&mut scanner, deadline, "PONG after CONNECT", |s| {
            s.pongs() > 0 || s.errors().0 > 0
        });
        if let (_, Some(err)) = scanner.errors() {
            return Err(format!("{client_id}: nats refused CONNECT: {err}"));
        }
        synced?;
        if !scanner.saw_info {
            return Err(format!(
                "{client_id}: {} did not send INFO; is it a nats-server?",
                self.addr
            ));
        }
        Ok(conn)
    }

    fn subscribe(&self, conn: &mut Conn, sub: &Sub, deadline: Instant) -> Result<(), String> {
        let line = match sub {
            Sub::Direct => format!("SUB {} 1\r\n", conn.client_id),
            Sub::Topic(t) => format!("SUB {t} 1\r\n"),
            Sub::Queue { topic, group } => format!("SUB {topic} {group} 1\r\n"),
        };
        conn.write_all(format!("{line}PING\r\n").as_bytes())?;
        // The server answers in order, so its PONG means the SUB is registered.
        let mut scanner = self.scanner(PAYLOAD_BYTES_MAX);
        conn.scan_until(&mut scanner, deadline, "PONG after SUB", |s| {
            s.pongs() > 0 || s.errors().0 > 0
        })?;
        match scanner.errors() {
            (0, _) => Ok(()),
            (_, err) => Err(format!(
                "{}: nats refused SUB: {}",
                conn.client_id,
                err.unwrap_or_default()
            )),
        }
    }

    fn encode_msg(&self, dest: &Dest, payload: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let subject = match dest {
            Dest::Client(s) | Dest::Topic(s) => s,
        };
        write!(out, "PUB {subject} {}\r\n", payload.len())
            .map_err(|e| format!("encode PUB: {e}"))?;
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        Ok(())
    }

    fn encode_ping(&self, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(b"PING\r\n");
        Ok(())
    }

    fn scanner(&self, max_payload_bytes: usize) -> NatsScanner {
        NatsScanner {
            max_payload_bytes,
            pongs: 0,
            errors: 0,
            last_error: None,
            saw_info: false,
        }
    }
}

/// Reads the server's first line, INFO, in plaintext (nothing follows it until the client
/// starts TLS), and checks that the server expects TLS.
fn read_info_line(
    sock: &mut std::net::TcpStream,
    client_id: &str,
    deadline: Instant,
) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if line.len() > LINE_BYTES_MAX {
            return Err(format!(
                "{client_id}: INFO line longer than {LINE_BYTES_MAX} bytes"
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!("{client_id}: no INFO from the server"));
        }
        // One byte at a time: what follows INFO is the TLS handshake, not ours to read.
        match sock.read(&mut byte) {
            Ok(0) => return Err(format!("{client_id}: the server closed before INFO")),
            Ok(n) => line.extend_from_slice(&byte[..n]),
            Err(e) if super::wire::is_timeout(&e) => {}
            Err(e) => return Err(format!("{client_id}: read INFO: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&line);
    if !text.starts_with("INFO ") {
        return Err(format!(
            "{client_id}: expected INFO, got {:?}",
            text.trim_end()
        ));
    }
    if !text.contains("\"tls_required\":true") {
        return Err(format!(
            "{client_id}: --tls-ca-file given but the server's INFO does not require TLS: {}",
            text.trim_end()
        ));
    }
    Ok(line)
}

/// Finds MSG/HMSG payloads; answers PING; counts PONG and -ERR.
#[derive(Debug)]
pub struct NatsScanner {
    max_payload_bytes: usize,
    pongs: u64,
    errors: u64,
    last_error: Option<String>,
    saw_info: bool,
}

/// Parses decimal ASCII digits (no sign, at most 19 digits).
fn parse_len(token: &[u8]) -> Option<usize> {
    if token.is_empty() || token.len() > 19 {
        return None;
    }
    token.iter().try_fold(0usize, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + usize::from(b - b'0'))
    })
}

/// The last `n` space-separated tokens of a protocol line, last first.
fn last_tokens(line: &[u8], n: usize) -> impl Iterator<Item = &[u8]> {
    line.rsplit(|&b| b == b' ' || b == b'\t')
        .filter(|t| !t.is_empty())
        .take(n)
}

fn starts_with_ci(line: &[u8], op: &[u8]) -> bool {
    line.len() >= op.len() && line[..op.len()].eq_ignore_ascii_case(op)
}

impl Scanner for NatsScanner {
    fn scan<F: FnMut(&[u8])>(
        &mut self,
        buf: &[u8],
        replies: &mut Vec<u8>,
        on_msg: &mut F,
    ) -> Result<usize, String> {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                if rest.len() > LINE_BYTES_MAX {
                    return Err(format!(
                        "nats sent a line longer than {LINE_BYTES_MAX} bytes"
                    ));
                }
                return Ok(pos);
            };
            let line_end = nl + 1;
            let line = rest[..nl].strip_suffix(b"\r").unwrap_or(&rest[..nl]);
            let is_hmsg = starts_with_ci(line, b"HMSG ");
            if is_hmsg || starts_with_ci(line, b"MSG ") {
                let mut tokens = last_tokens(line, 2);
                let bad = || {
                    format!(
                        "nats sent a bad MSG line: {}",
                        String::from_utf8_lossy(line)
                    )
                };
                let total = tokens.next().and_then(parse_len).ok_or_else(bad)?;
                let header_bytes = if is_hmsg {
                    tokens.next().and_then(parse_len).ok_or_else(bad)?
                } else {
                    0
                };
                if total > self.max_payload_bytes || header_bytes > total {
                    return Err(bad());
                }
                let need = line_end + total + 2;
                if rest.len() < need {
                    return Ok(pos);
                }
                on_msg(&rest[line_end + header_bytes..line_end + total]);
                pos += need;
                continue;
            }
            if starts_with_ci(line, b"PING") {
                replies.extend_from_slice(b"PONG\r\n");
            } else if starts_with_ci(line, b"PONG") {
                self.pongs += 1;
            } else if starts_with_ci(line, b"-ERR") {
                self.errors += 1;
                self.last_error = Some(String::from_utf8_lossy(line).into_owned());
            } else if starts_with_ci(line, b"INFO") {
                self.saw_info = true;
            }
            pos += line_end;
        }
    }

    fn pongs(&self) -> u64 {
        self.pongs
    }

    fn errors(&self) -> (u64, Option<String>) {
        (self.errors, self.last_error.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = b"INFO {\"server_id\":\"x\",\"max_payload\":1048576}\r\n\
        MSG bench.r0 1 5\r\nDabcd\r\n\
        PING\r\n\
        MSG bench.r0 1 reply.to 0\r\n\r\n\
        +OK\r\n\
        MSG bench.r0 1 12\r\nD\r\nMSG x 1 1\r\n\
        HMSG bench.r0 1 18 21\r\nNATS/1.0\r\nA: b\r\n\r\nDxy\r\n\
        PONG\r\n\
        -ERR 'Slow Consumer'\r\n\
        msg bench.r0 1 3\r\nD12\r\n";

    fn feed(pieces: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<u8>, u64, u64) {
        let wire = NatsWire {
            addr: "127.0.0.1:4222".parse().unwrap(),
            token: None,
            tls: None,
        };
        let mut scanner = wire.scanner(1 << 20);
        let (mut carry, mut replies, mut msgs) = (Vec::new(), Vec::new(), Vec::new());
        for piece in pieces {
            carry.extend_from_slice(piece);
            let used = scanner
                .scan(&carry, &mut replies, &mut |p| msgs.push(p.to_vec()))
                .unwrap();
            carry.drain(..used);
        }
        assert!(
            carry.is_empty(),
            "left over: {:?}",
            String::from_utf8_lossy(&carry)
        );
        assert!(scanner.saw_info);
        (msgs, replies, scanner.pongs(), scanner.errors().0)
    }

    #[test]
    fn msg_parser_handles_every_split_point() {
        let whole = feed(&[STREAM]);
        let payloads: Vec<&[u8]> = whole.0.iter().map(|m| m.as_slice()).collect();
        assert_eq!(
            payloads,
            vec![&b"Dabcd"[..], b"", b"D\r\nMSG x 1 1", b"Dxy", b"D12"]
        );
        assert_eq!(
            (whole.1.as_slice(), whole.2, whole.3),
            (&b"PONG\r\n"[..], 1, 1)
        );
        for split in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(split);
            assert_eq!(feed(&[a, b]), whole, "split at {split}");
        }
        for step in [1, 2, 3, 7] {
            let pieces: Vec<&[u8]> = STREAM.chunks(step).collect();
            assert_eq!(feed(&pieces), whole, "step {step}");
        }
    }

    #[test]
    fn bad_lines_are_errors() {
        let wire = NatsWire {
            addr: "127.0.0.1:4222".parse().unwrap(),
            token: None,
            tls: None,
        };
        let mut s = wire.scanner(100);
        for bad in [
            &b"MSG a 1 x\r\n"[..],
            b"MSG a 1 101\r\n",
            b"HMSG a 1 9 5\r\n",
            b"MSG a\r\n",
        ] {
            assert!(
                s.scan(bad, &mut Vec::new(), &mut |_| {}).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(s
            .scan(
                &vec![b'x'; LINE_BYTES_MAX + 1],
                &mut Vec::new(),
                &mut |_| {}
            )
            .is_err());
    }

    #[test]
    fn pub_encoding_and_urls() {
        let wire = NatsWire {
            addr: "127.0.0.1:4222".parse().unwrap(),
            token: None,
            tls: None,
        };
        let mut out = Vec::new();
        wire.encode_msg(&Dest::Topic("t.x".into()), b"Dab", &mut out)
            .unwrap();
        assert_eq!(out, b"PUB t.x 3\r\nDab\r\n");
        assert_eq!(
            parse_nats_url("nats://127.0.0.1:4222").unwrap().port(),
            4222
        );
        assert_eq!(parse_nats_url("127.0.0.1:4333/").unwrap().port(), 4333);
        assert!(parse_nats_url("nats://user@127.0.0.1:4222").is_err());
        assert!(parse_nats_url("nats://127.0.0.1").is_err());
    }
}
