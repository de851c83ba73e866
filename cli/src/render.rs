//! How the receiving verbs print what arrives (`--format`): one line per message in `text`
//! and `json`, length-prefixed payloads in `raw`.
//!
//! - `text`: `SENDER: PAYLOAD`, or `SENDER on TOPIC: PAYLOAD` for a topic message; presence as
//!   `online ID` / `offline ID`. Bytes that would break the one-line-per-message rule are
//!   escaped (`\n`, `\r`, `\t`, `\\`, and `\xNN` for other control bytes and invalid UTF-8).
//! - `json`: one object per line: `{"event":"message","sender":..,"topic":..|null,
//!   "payload":..,"payload_encoding":"utf8"|"base64","received_at_us":..}` (the payload as
//!   UTF-8 when it is valid, else base64; sender and topic are shown as UTF-8, invalid bytes
//!   replaced) and `{"event":"presence","id":..,"online":..,"received_at_us":..}`.
//! - `raw`: for each message, its payload length as 4 bytes big-endian, then the payload; no
//!   presence. For piping into another program.

use base64::Engine as _;
use clap::ValueEnum;
use ringrelay::client::Event;
use std::io::{self, Write};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One escaped line per message: `SENDER: PAYLOAD`, `SENDER on TOPIC: PAYLOAD`, with
    /// ` reply REPLY` and ` headers HEADERS` before the colon when the message has them.
    Text,
    /// One JSON object per line (sender, topic, payload, receive time).
    Json,
    /// Payloads only, each prefixed by its length (4 bytes, big-endian).
    Raw,
}

/// Writes `event` to `out` in `format`; `Ok(false)` when the format shows nothing for it.
pub fn write_event(out: &mut impl Write, format: Format, event: &Event) -> io::Result<bool> {
    match (format, event) {
        (
            Format::Text,
            Event::Message {
                sender,
                topic,
                payload,
                reply,
                headers,
            },
        ) => {
            let mut line = escape(sender);
            if let Some(topic) = topic {
                line.push_str(" on ");
                line.push_str(&escape(topic));
            }
            if let Some(reply) = reply {
                line.push_str(" reply ");
                line.push_str(&escape(reply));
            }
            if let Some(headers) = headers {
                line.push_str(" headers ");
                line.push_str(&escape(headers));
            }
            line.push_str(": ");
            line.push_str(&escape(payload));
            writeln!(out, "{line}")?;
        }
        (Format::Text, Event::Presence { client_id, online }) => {
            let state = if *online { "online" } else { "offline" };
            writeln!(out, "{state} {}", escape(client_id))?;
        }
        (Format::Json, Event::Message { .. } | Event::Presence { .. }) => {
            writeln!(out, "{}", json_of(event, received_at_us()))?;
        }
        (Format::Raw, Event::Message { payload, .. }) => {
            let len = u32::try_from(payload.len()).map_err(io::Error::other)?;
            out.write_all(&len.to_be_bytes())?;
            out.write_all(payload)?;
        }
        _ => return Ok(false),
    }
    out.flush()?;
    Ok(true)
}

/// `bytes` as one line of text: printable UTF-8 as is, the rest escaped.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => s.push_str("\\n"),
                '\r' => s.push_str("\\r"),
                '\t' => s.push_str("\\t"),
                '\\' => s.push_str("\\\\"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        s.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => s.push(c),
            }
        }
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

fn json_of(event: &Event, received_at_us: u64) -> serde_json::Value {
    match event {
        Event::Message {
            sender,
            topic,
            payload,
            reply,
            headers,
        } => {
            let (payload, encoding) = match std::str::from_utf8(payload) {
                Ok(text) => (text.to_string(), "utf8"),
                Err(_) => (
                    base64::engine::general_purpose::STANDARD.encode(payload),
                    "base64",
                ),
            };
            serde_json::json!({
                "event": "message",
                "sender": String::from_utf8_lossy(sender),
                "topic": topic.as_ref().map(|t| String::from_utf8_lossy(t)),
                "reply": reply.as_ref().map(|r| String::from_utf8_lossy(r)),
                "headers": headers.as_ref().map(|h| String::from_utf8_lossy(h)),
                "payload": payload,
                "payload_encoding": encoding,
                "received_at_us": received_at_us,
            })
        }
        Event::Presence { client_id, online } => serde_json::json!({
            "event": "presence",
            "id": String::from_utf8_lossy(client_id),
            "online": online,
            "received_at_us": received_at_us,
        }),
        _ => serde_json::Value::Null,
    }
}

/// Microseconds since the Unix epoch.
fn received_at_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: Option<&[u8]>, payload: &[u8]) -> Event {
        Event::Message {
            sender: b"alice".to_vec(),
            topic: topic.map(<[u8]>::to_vec),
            payload: payload.to_vec(),
            reply: None,
            headers: None,
        }
    }

    fn rendered(format: Format, event: &Event) -> Vec<u8> {
        let mut out = Vec::new();
        write_event(&mut out, format, event).unwrap();
        out
    }

    #[test]
    fn text_keeps_one_line_per_message_whatever_the_bytes() {
        assert_eq!(
            rendered(Format::Text, &message(None, b"hi\nthere\\ \xff\x01")),
            b"alice: hi\\nthere\\\\ \\xff\\x01\n"
        );
        assert_eq!(
            rendered(Format::Text, &message(Some(b"news"), "é ok".as_bytes())),
            "alice on news: é ok\n".as_bytes()
        );
        let online = Event::Presence {
            client_id: b"bob".to_vec(),
            online: true,
        };
        assert_eq!(rendered(Format::Text, &online), b"online bob\n");
    }

    #[test]
    fn json_gives_utf8_payloads_as_text_and_others_as_base64() {
        let v = json_of(&message(Some(b"t"), b"caf\xc3\xa9"), 7);
        assert_eq!(v["payload"], "café");
        assert_eq!(v["payload_encoding"], "utf8");
        assert_eq!(v["topic"], "t");
        assert_eq!(v["received_at_us"], 7);
        let v = json_of(&message(None, &[0xff, 0x00, 0x10]), 7);
        assert_eq!(v["payload"], "/wAQ");
        assert_eq!(v["payload_encoding"], "base64");
        assert!(v["topic"].is_null());
        let line = rendered(Format::Json, &message(None, b"a\nb"));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
    }

    #[test]
    fn raw_prefixes_each_payload_with_its_length_and_skips_presence() {
        assert_eq!(
            rendered(Format::Raw, &message(None, b"\x00\n")),
            b"\x00\x00\x00\x02\x00\n"
        );
        let offline = Event::Presence {
            client_id: b"bob".to_vec(),
            online: false,
        };
        let mut out = Vec::new();
        assert!(!write_event(&mut out, Format::Raw, &offline).unwrap());
        assert!(out.is_empty());
    }
}
