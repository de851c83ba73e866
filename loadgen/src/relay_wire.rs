//! The ringrelay side: HELLO/WELCOME, SUBSCRIBE, SEND/PUBLISH encoding, and a DELIVER scanner
//! that walks frame headers in place.

use super::transport::LoadTls;
use super::wire::{Conn, Dest, Scanner, Sub, Wire};
use ringrelay::protocol::{decode, hello, CloseReason, Decoded, Frame, FrameKind, HEADER_LEN};
use std::net::SocketAddr;
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct RelayWire {
    pub addr: SocketAddr,
    pub token: Vec<u8>,
    /// TLS on every connection (`--tls-ca-file`).
    pub tls: Option<LoadTls>,
}

impl Wire for RelayWire {
    type Scanner = RelayScanner;

    fn name(&self) -> &'static str {
        "ringrelay"
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn connect(&self, client_id: &str, deadline: Instant) -> Result<Conn, String> {
        let mut conn = Conn::open(self.addr, client_id, self.tls.as_ref())?;
        let mut out = Vec::new();
        hello(client_id.as_bytes(), &self.token)
            .encode(&mut out)
            .map_err(|e| format!("{client_id}: HELLO: {e}"))?;
        conn.write_all(&out)?;
        let mut chunk = vec![0u8; 4096];
        loop {
            match decode(&conn.pending, conn.max_frame_bytes) {
                Err(e) => {
                    return Err(format!(
                        "{client_id}: bad reply to HELLO ({e}); is {} a ringrelay server?",
                        self.addr
                    ))
                }
                Ok(Decoded::Frame { frame, consumed }) => {
                    let max = match frame {
                        Frame::Welcome {
                            max_frame_bytes, ..
                        } => Some(max_frame_bytes as usize),
                        Frame::Close { reason, text } => {
                            return Err(format!(
                                "{client_id}: relay refused HELLO: {}",
                                close_text(reason, text)
                            ))
                        }
                        Frame::Error { text, .. } => {
                            return Err(format!(
                                "{client_id}: relay error on HELLO: {}",
                                String::from_utf8_lossy(text)
                            ))
                        }
                        _ => None,
                    };
                    conn.pending.drain(..consumed);
                    if let Some(max) = max {
                        conn.max_frame_bytes = max.max(HEADER_LEN + 1);
                        return Ok(conn);
                    }
                }
                Ok(Decoded::NeedMore { .. }) => {
                    if Instant::now() >= deadline {
                        return Err(format!("{client_id}: no WELCOME from {}", self.addr));
                    }
                    conn.read_some(&mut chunk)?;
                }
            }
        }
    }

    fn subscribe(&self, conn: &mut Conn, sub: &Sub, _deadline: Instant) -> Result<(), String> {
        // The relay has no subscribe acknowledgement; the runner's probes confirm readiness.
        let (topic, group) = match sub {
            Sub::Direct => return Ok(()),
            Sub::Topic(t) => (t.as_str(), ""),
            Sub::Queue { topic, group } => (topic.as_str(), group.as_str()),
        };
        let mut out = Vec::new();
        Frame::Subscribe {
            topic: topic.as_bytes(),
            group: group.as_bytes(),
        }
        .encode(&mut out)
        .map_err(|e| format!("SUBSCRIBE {topic}: {e}"))?;
        conn.write_all(&out)
    }

    fn encode_msg(&self, dest: &Dest, payload: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let frame = match dest {
            Dest::Client(id) => Frame::Send {
                target: id.as_bytes(),
                payload,
            },
            Dest::Topic(t) => Frame::Publish {
                topic: t.as_bytes(),
                payload,
                no_echo: true,
            },
        };
        frame
            .encode(out)
            .map_err(|e| format!("encode {dest:?}: {e}"))
    }

    fn encode_ping(&self, out: &mut Vec<u8>) -> Result<(), String> {
        Frame::Ping { nonce: 0 }
            .encode(out)
            .map_err(|e| format!("encode PING: {e}"))
    }

    fn scanner(&self, max_frame_bytes: usize) -> RelayScanner {
        RelayScanner {
            max_frame_bytes,
            pongs: 0,
            errors: 0,
            last_error: None,
        }
    }
}

fn close_text(reason: CloseReason, text: &[u8]) -> String {
    format!("{} ({})", reason.name(), String::from_utf8_lossy(text))
}

/// Counts DELIVER frames and hands out their payloads; answers PING; records ERROR; fails on
/// CLOSE. Only DELIVER is parsed by hand (hot path); other kinds go through the codec.
#[derive(Debug)]
pub struct RelayScanner {
    max_frame_bytes: usize,
    pongs: u64,
    errors: u64,
    last_error: Option<String>,
}

impl Scanner for RelayScanner {
    fn scan<F: FnMut(&[u8])>(
        &mut self,
        buf: &[u8],
        replies: &mut Vec<u8>,
        on_msg: &mut F,
    ) -> Result<usize, String> {
        let mut pos = 0;
        while buf.len() - pos >= HEADER_LEN {
            let h = &buf[pos..];
            let body_len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
            let frame_len = HEADER_LEN + body_len;
            if frame_len > self.max_frame_bytes {
                return Err(format!(
                    "relay sent a {frame_len}-byte frame (max {})",
                    self.max_frame_bytes
                ));
            }
            if h.len() < frame_len {
                break;
            }
            let frame = &h[..frame_len];
            if frame[4] == FrameKind::Deliver as u8 {
                on_msg(deliver_payload(frame)?);
            } else {
                self.control(frame, replies)?;
            }
            pos += frame_len;
        }
        Ok(pos)
    }

    fn pongs(&self) -> u64 {
        self.pongs
    }

    fn errors(&self) -> (u64, Option<String>) {
        (self.errors, self.last_error.clone())
    }
}

/// The payload of a whole DELIVER frame: body = u8 sender_len, sender, u8 topic_len, topic,
/// payload.
fn deliver_payload(frame: &[u8]) -> Result<&[u8], String> {
    let bad = || "relay sent a truncated DELIVER frame".to_string();
    let sender_len = *frame.get(HEADER_LEN).ok_or_else(bad)? as usize;
    let topic_len_at = HEADER_LEN + 1 + sender_len;
    let topic_len = *frame.get(topic_len_at).ok_or_else(bad)? as usize;
    frame.get(topic_len_at + 1 + topic_len..).ok_or_else(bad)
}

impl RelayScanner {
    fn control(&mut self, frame: &[u8], replies: &mut Vec<u8>) -> Result<(), String> {
        let decoded = decode(frame, self.max_frame_bytes)
            .map_err(|e| format!("relay sent a bad frame: {e}"))?;
        let Decoded::Frame { frame, .. } = decoded else {
            return Err("relay frame shorter than its header says".into());
        };
        match frame {
            Frame::Ping { nonce } => {
                Frame::Pong { nonce }
                    .encode(replies)
                    .map_err(|e| format!("encode PONG: {e}"))?;
            }
            Frame::Pong { .. } => self.pongs += 1,
            Frame::Error {
                code,
                subject,
                text,
            } => {
                self.errors += 1;
                self.last_error = Some(format!(
                    "error {} on '{}': {}",
                    code.0,
                    String::from_utf8_lossy(subject),
                    String::from_utf8_lossy(text)
                ));
            }
            Frame::Close { reason, text } => {
                return Err(format!(
                    "relay closed the connection: {}",
                    close_text(reason, text)
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringrelay::protocol::{encode_deliver, ErrorCode, Message};

    fn stream() -> (Vec<u8>, usize) {
        let mut out = Vec::new();
        let mut msgs = 0;
        for i in 0..50u32 {
            let payload = format!("D{i}");
            let topic: &[u8] = if i % 2 == 0 { b"" } else { b"topic" };
            encode_deliver(
                &mut out,
                &Message::plain(b"sender-a", topic, payload.as_bytes()),
            );
            msgs += 1;
            if i % 7 == 0 {
                Frame::Ping {
                    nonce: u64::from(i),
                }
                .encode(&mut out)
                .unwrap();
            }
            if i == 20 {
                Frame::Error {
                    code: ErrorCode::UNKNOWN_ID,
                    subject: b"zed",
                    text: b"unknown",
                }
                .encode(&mut out)
                .unwrap();
            }
        }
        (out, msgs)
    }

    /// Feeds `bytes` in pieces of the given sizes through a carry buffer, like the receiver.
    fn feed(
        bytes: &[u8],
        piece_sizes: &mut dyn Iterator<Item = usize>,
    ) -> (Vec<String>, usize, u64) {
        let mut scanner = RelayWire {
            addr: "127.0.0.1:1".parse().unwrap(),
            token: vec![],
            tls: None,
        }
        .scanner(1 << 20);
        let (mut carry, mut replies, mut got) = (Vec::new(), Vec::new(), Vec::new());
        let mut at = 0;
        while at < bytes.len() {
            let n = piece_sizes.next().unwrap_or(1).clamp(1, bytes.len() - at);
            carry.extend_from_slice(&bytes[at..at + n]);
            at += n;
            let used = scanner
                .scan(&carry, &mut replies, &mut |p| {
                    got.push(String::from_utf8_lossy(p).into_owned())
                })
                .unwrap();
            carry.drain(..used);
        }
        assert!(carry.is_empty());
        let mut pongs = 0;
        let mut rest = &replies[..];
        while let Ok(Decoded::Frame { frame, consumed }) = decode(rest, 1 << 20) {
            assert!(matches!(frame, Frame::Pong { .. }));
            pongs += 1;
            rest = &rest[consumed..];
        }
        (got, pongs, scanner.errors().0)
    }

    #[test]
    fn counts_deliveries_at_every_split_point() {
        let (bytes, msgs) = stream();
        let whole = feed(&bytes, &mut std::iter::repeat(bytes.len()));
        assert_eq!(whole.0.len(), msgs);
        assert_eq!(whole.0[3], "D3");
        assert_eq!((whole.1, whole.2), (8, 1));
        for split in 1..bytes.len() {
            let mut sizes = [split, bytes.len()].into_iter();
            assert_eq!(feed(&bytes, &mut sizes), whole, "split at {split}");
        }
        for step in [1, 2, 3, 5, 13] {
            assert_eq!(
                feed(&bytes, &mut std::iter::repeat(step)),
                whole,
                "step {step}"
            );
        }
    }

    #[test]
    fn close_and_oversized_frames_are_errors() {
        let mut scanner = RelayWire {
            addr: "127.0.0.1:1".parse().unwrap(),
            token: vec![],
            tls: None,
        }
        .scanner(64);
        let mut close = Vec::new();
        Frame::Close {
            reason: CloseReason::SLOW_CONSUMER,
            text: b"",
        }
        .encode(&mut close)
        .unwrap();
        let err = scanner
            .scan(&close, &mut Vec::new(), &mut |_| {})
            .unwrap_err();
        assert!(err.contains("slow consumer"), "{err}");
        let mut big = Vec::new();
        encode_deliver(&mut big, &Message::plain(b"s", b"", &[0u8; 100]));
        assert!(scanner
            .scan(&big[..HEADER_LEN], &mut Vec::new(), &mut |_| {})
            .is_err());
    }
}
