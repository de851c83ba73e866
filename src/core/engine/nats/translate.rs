//! What the engine sends a NATS connection, in NATS: a DELIVER becomes one MSG per matching
//! sid (HMSG when the message has headers and the client announced them), a relay PING a
//! NATS PING, an ERROR or CLOSE nats-server's `-ERR` text; WELCOME, PRESENCE and the other
//! native-only frames have no NATS form and are not written.

use super::NatsConn;
use crate::protocol::nats::encode::{write_err, MsgHead, MSG_END, PING, PONG};
use crate::protocol::{CloseReason, ErrorCode, Frame, Message};

impl NatsConn {
    /// Appends one MSG (or HMSG) per sid `message` goes to (see
    /// [`super::NatsSubs::for_each_target`]; `group` is the queue group the engine picked this
    /// connection for, empty for a plain delivery). Returns how many were written. Headers
    /// go only to a client that announced them; to another, the message goes without them.
    ///
    /// A native client's topic or reply topic may hold any byte, a NATS control line may not:
    /// a message whose topic cannot be a subject on the line (empty, or with a blank or a
    /// control byte, which would end the field or the line) is not written, and such a reply
    /// topic is left out, so a publisher can never forge lines in a NATS client's stream.
    pub fn write_message(
        &mut self,
        out: &mut Vec<u8>,
        message: &Message<'_>,
        group: &[u8],
    ) -> usize {
        // A literal sid is a valid subject, so only a pattern can match a topic that is not;
        // the check runs only then (not on the message path of literal subscriptions).
        if message.topic.is_empty()
            || (self.subs.has_patterns() && !fits_control_line(message.topic))
        {
            return 0;
        }
        let headers = if self.options.as_ref().is_some_and(|o| o.headers) {
            message.headers
        } else {
            b""
        };
        let reply = if fits_control_line(message.reply) {
            message.reply
        } else {
            b""
        };
        self.subs
            .for_each_target(message.topic, group, &mut self.expired, |sid| {
                let head = MsgHead {
                    subject: message.topic,
                    sid,
                    reply,
                    headers,
                    payload_len: message.payload.len(),
                };
                out.reserve(head.message_len());
                head.write(out);
                out.extend_from_slice(message.payload);
                out.extend_from_slice(MSG_END);
            })
    }

    /// Appends the NATS form of a frame the engine queued for this connection, if it has one.
    pub fn write_frame(&mut self, out: &mut Vec<u8>, frame: &Frame<'_>) {
        match *frame {
            Frame::Deliver { .. } | Frame::Extended(_) => {
                if let Some(message) = frame.message() {
                    self.write_message(out, &message, b"");
                }
            }
            Frame::Ping { .. } => out.extend_from_slice(PING),
            // The answer to a client's PING that waited behind a held HELLO.
            Frame::Pong { .. } => out.extend_from_slice(PONG),
            Frame::Error {
                code: ErrorCode::PERMISSION_DENIED,
                subject,
                text,
            } if fits_control_line(subject) => {
                // nats-server's wording, `Permissions Violation for Publish to "subject"`,
                // which NATS clients report without closing.
                let mut line = text.to_vec();
                line.extend_from_slice(b" \"");
                line.extend_from_slice(subject);
                line.push(b'"');
                write_err(out, &String::from_utf8_lossy(&line));
            }
            Frame::Error { code, .. } => {
                if let Some(text) = error_err_text(code) {
                    write_err(out, text);
                }
            }
            Frame::Close { reason, text } => {
                let text = std::str::from_utf8(text).unwrap_or("");
                if let Some(text) = close_err_text(reason, text) {
                    write_err(out, text);
                }
            }
            _ => {}
        }
    }
}

/// Whether `bytes` holds no byte that would end a field or the line of a NATS control line: no
/// blank and no control byte (an empty reply topic, none, passes).
#[inline]
fn fits_control_line(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b > b' ' && b != 0x7f)
}

/// The `-ERR` for an ERROR frame the engine sends, if a NATS client should see one. A NATS
/// client closes its connection on an `-ERR` text it does not know, so errors without a
/// nats-server equivalent (a message dropped at a bound: counted in the metrics) are not
/// written.
fn error_err_text(code: ErrorCode) -> Option<&'static str> {
    match code {
        ErrorCode::LIMIT_EXCEEDED => Some("Maximum Subscriptions Exceeded"),
        ErrorCode::INVALID_SUBJECT => Some("Invalid Subject"),
        _ => None,
    }
}

/// The `-ERR` text that goes before the relay closes a NATS connection for `reason` (`text`
/// is the close's own text, which the NATS rules set to nats-server's wording); `None`: the
/// connection closes without one, as nats-server's would.
pub fn close_err_text(reason: CloseReason, text: &str) -> Option<&str> {
    Some(match reason {
        CloseReason::NORMAL | CloseReason::SHUTDOWN => return None,
        CloseReason::AUTH_FAILED => "Authorization Violation",
        CloseReason::HEARTBEAT_TIMEOUT => "Stale Connection",
        CloseReason::SLOW_CONSUMER => "Slow Consumer",
        CloseReason::HANDSHAKE_TIMEOUT => "Authentication Timeout",
        CloseReason::FRAME_TOO_LARGE => "Maximum Payload Violation",
        CloseReason::CONNECTION_LIMIT => "maximum connections exceeded",
        CloseReason::LIMIT_EXCEEDED => "Maximum Subscriptions Exceeded",
        _ if text.is_empty() => return None,
        _ => text,
    })
}
