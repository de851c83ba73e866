//! A NATS client speaking the protocol by hand over a socket, for the tests of the NATS front:
//! lines and MSG payloads, every read bounded by [`WAIT`].

use super::WAIT;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Bound on [`Nats::until_closed`]: far more than any close the tests expect takes (they come
/// within milliseconds, or a few heartbeats), so only a relay that never closes reaches it.
pub const UNTIL_CLOSED_BOUND: Duration = Duration::from_secs(20);

/// A NATS client speaking the protocol by hand: lines and MSG payloads, every read bounded
/// by [`WAIT`].
pub struct Nats {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// One thing the relay sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Msg {
        subject: String,
        sid: String,
        reply: Option<String>,
        payload: Vec<u8>,
    },
    /// A message with headers (HMSG).
    Hmsg {
        subject: String,
        sid: String,
        reply: Option<String>,
        headers: Vec<u8>,
        payload: Vec<u8>,
    },
    Other(String),
}

impl Nats {
    /// Connects and reads INFO (returned as JSON).
    pub fn open(addr: SocketAddr) -> (Nats, serde_json::Value) {
        let stream = TcpStream::connect(addr).expect("connect to the NATS port");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        // Bounded like the reads (the clone shares the socket's timeouts), so that a relay
        // that stops reading fails the test at a blocked write instead of hanging it.
        stream.set_write_timeout(Some(WAIT)).unwrap();
        let writer = stream.try_clone().unwrap();
        let mut nats = Nats {
            reader: BufReader::new(stream),
            writer,
        };
        let info = match nats.next() {
            Line::Other(line) => line,
            other => panic!("expected INFO first, got {other:?}"),
        };
        let json = info.strip_prefix("INFO ").expect("INFO line");
        (nats, serde_json::from_str(json).expect("INFO is JSON"))
    }

    /// Connects, sends `CONNECT {"verbose":false}` and waits for the PONG of a PING.
    pub fn connected(addr: SocketAddr) -> Nats {
        let (mut nats, _) = Nats::open(addr);
        nats.send(b"CONNECT {\"verbose\":false}\r\nPING\r\n");
        nats.expect("PONG");
        nats
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to the relay");
    }

    /// The next line or message; panics at EOF or after [`WAIT`].
    pub fn next(&mut self) -> Line {
        self.try_next().expect("the relay closed the connection")
    }

    /// The next line or message; `None` at EOF.
    pub fn try_next(&mut self) -> Option<Line> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("read from the relay: {e}"),
        }
        let line = line
            .strip_suffix("\r\n")
            .expect("lines end with CRLF")
            .to_string();
        let fields: Vec<&str> = line.split(' ').collect();
        if fields[0] == "HMSG" {
            return Some(self.hmsg(&line, &fields));
        }
        if fields[0] != "MSG" {
            return Some(Line::Other(line));
        }
        let (reply, size) = match fields.len() {
            4 => (None, fields[3]),
            5 => (Some(fields[3].to_string()), fields[4]),
            _ => panic!("malformed MSG line {line:?}"),
        };
        let mut payload = vec![0; size.parse::<usize>().unwrap() + 2];
        self.reader.read_exact(&mut payload).unwrap();
        assert_eq!(payload.split_off(payload.len() - 2), b"\r\n");
        Some(Line::Msg {
            subject: fields[1].to_string(),
            sid: fields[2].to_string(),
            reply,
            payload,
        })
    }

    /// The rest of an HMSG whose control line is `line` (`fields`, split at spaces).
    fn hmsg(&mut self, line: &str, fields: &[&str]) -> Line {
        let (reply, header_len, total_len) = match fields.len() {
            5 => (None, fields[3], fields[4]),
            6 => (Some(fields[3].to_string()), fields[4], fields[5]),
            _ => panic!("malformed HMSG line {line:?}"),
        };
        let header_len: usize = header_len.parse().unwrap();
        let mut bytes = vec![0; total_len.parse::<usize>().unwrap() + 2];
        self.reader.read_exact(&mut bytes).unwrap();
        assert_eq!(bytes.split_off(bytes.len() - 2), b"\r\n");
        let payload = bytes.split_off(header_len);
        Line::Hmsg {
            subject: fields[1].to_string(),
            sid: fields[2].to_string(),
            reply,
            headers: bytes,
            payload,
        }
    }

    pub fn expect(&mut self, want: &str) {
        assert_eq!(self.next(), Line::Other(want.to_string()));
    }

    /// MSGs per sid until one arrives on `marker_sid` (which is not counted).
    pub fn count_until_marker(&mut self, marker_sid: &str) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "no marker within {WAIT:?}");
            match self.next() {
                Line::Msg { sid, .. } if sid == marker_sid => return counts,
                Line::Msg { sid, .. } => *counts.entry(sid).or_default() += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Reads until the relay closes the connection; returns what came before. Panics if the
    /// connection is still open after [`UNTIL_CLOSED_BOUND`].
    pub fn until_closed(&mut self) -> Vec<Line> {
        self.until_closed_by(Instant::now() + UNTIL_CLOSED_BOUND)
    }

    /// [`Self::until_closed`], giving up at `deadline`: a relay that keeps the connection
    /// open (answering each read within [`WAIT`], with heartbeat PINGs for example) fails the
    /// test instead of hanging it. The deadline is checked between lines, so the wait ends at
    /// most [`WAIT`] after it.
    pub fn until_closed_by(&mut self, deadline: Instant) -> Vec<Line> {
        let mut lines = Vec::new();
        while let Some(line) = self.try_next() {
            lines.push(line);
            assert!(
                Instant::now() < deadline,
                "the relay did not close the connection by the deadline; it sent {} lines, \
                 the last {:?}",
                lines.len(),
                lines.last()
            );
        }
        lines
    }
}

pub fn other(line: &str) -> Line {
    Line::Other(line.to_string())
}

impl Nats {
    /// The next line or message within `wait`; `None` if nothing came by then.
    pub fn next_within(&mut self, wait: Duration) -> Option<Line> {
        self.reader.get_ref().set_read_timeout(Some(wait)).unwrap();
        let mut probe = [0u8; 1];
        let ready = !self.reader.buffer().is_empty()
            || matches!(self.reader.get_ref().peek(&mut probe), Ok(n) if n > 0);
        self.reader.get_ref().set_read_timeout(Some(WAIT)).unwrap();
        ready.then(|| self.next())
    }
}
