//! The NATS client-operation parser: one operation cut out of the front of a buffer.
//!
//! What it accepts is what nats-server 2.9 accepts (checked against it by the raw-protocol
//! suite, `cli/tests/nats_protocol.rs`): operation names in any case; arguments separated by
//! runs of spaces and tabs; a control line ended by `\n` with an optional `\r` before it; a
//! payload of exactly the announced size followed by `\r\n`.

use super::CONTROL_LINE_BYTES_MAX;
use std::fmt;

/// One operation a NATS client sends. Byte fields borrow from the parsed buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientOp<'a> {
    /// `CONNECT <json>`: the client's options (see [`super::ConnectOptions`]).
    Connect {
        json: &'a [u8],
    },
    /// `PUB <subject> [reply] <size>` and its payload. `reply` is empty when absent.
    Pub {
        subject: &'a [u8],
        reply: &'a [u8],
        payload: &'a [u8],
    },
    /// `HPUB <subject> [reply] <header size> <total size>`: `headers` is the header block
    /// (`NATS/1.0\r\n...\r\n\r\n`, passed on as it is), `payload` what follows it.
    Hpub {
        subject: &'a [u8],
        reply: &'a [u8],
        headers: &'a [u8],
        payload: &'a [u8],
    },
    /// `SUB <subject> [queue group] <sid>`. `queue` is empty when absent.
    Sub {
        subject: &'a [u8],
        queue: &'a [u8],
        sid: &'a [u8],
    },
    /// `UNSUB <sid> [max messages]`: with `max_msgs`, the subscription ends after that many
    /// deliveries in all (nats-server ignores a maximum that is not a number, and so does this).
    Unsub {
        sid: &'a [u8],
        max_msgs: Option<u64>,
    },
    Ping,
    Pong,
    /// `INFO`, `+OK`: accepted from a client and ignored, as nats-server does.
    Ignored,
    /// `-ERR ...` from a client: nats-server closes the connection without an answer.
    ClientError,
}

/// A parsed operation and the bytes it took from the front of the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    Op {
        op: ClientOp<'a>,
        consumed: usize,
    },
    /// The buffer holds the beginning of an operation only; `needed` is the whole operation's
    /// length when the control line is complete (so a receiver can size its buffer), else 0.
    Incomplete {
        needed: usize,
    },
}

/// Why the bytes are not a NATS operation. Every variant closes the connection, after the
/// `-ERR` of [`NatsError::err_text`] where nats-server sends one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatsError {
    /// The operation name is none of the protocol's, or a payload is not followed by CRLF.
    UnknownOperation,
    /// No end of line within [`CONTROL_LINE_BYTES_MAX`] bytes.
    ControlLineTooLong,
    /// PUB or HPUB announced more than the `max_payload` of INFO.
    PayloadTooLarge { size: u64, max: usize },
    /// A known operation with arguments of the wrong number or shape.
    BadArguments { op: &'static str },
}

impl NatsError {
    /// The text of the `-ERR '<text>'` line sent before the close.
    pub fn err_text(&self) -> &'static str {
        match self {
            NatsError::UnknownOperation => "Unknown Protocol Operation",
            NatsError::ControlLineTooLong => "maximum control line exceeded",
            NatsError::PayloadTooLarge { .. } => "Maximum Payload Violation",
            // nats-server 2.9 closes without an -ERR here; a clear error costs nothing (README,
            // "NATS differences").
            NatsError::BadArguments { .. } => "Parser Error",
        }
    }
}

impl fmt::Display for NatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatsError::UnknownOperation => f.write_str("unknown NATS protocol operation"),
            NatsError::ControlLineTooLong => write!(
                f,
                "NATS control line longer than {CONTROL_LINE_BYTES_MAX} bytes"
            ),
            NatsError::PayloadTooLarge { size, max } => {
                write!(f, "NATS payload of {size} bytes above max_payload {max}")
            }
            NatsError::BadArguments { op } => write!(f, "malformed NATS {op} arguments"),
        }
    }
}

/// The operations, upper case, with what their name is followed by.
const OPS: [&[u8]; 9] = [
    b"PUB", b"HPUB", b"SUB", b"UNSUB", b"PING", b"PONG", b"CONNECT", b"INFO", b"+OK",
];
/// `-ERR` is matched apart: a client's -ERR closes its connection.
const CLIENT_ERR: &[u8] = b"-ERR";
/// The most arguments any operation takes (HPUB with a reply subject).
const ARGS_MAX: usize = 4;

#[inline]
fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Cuts the first operation out of `buf`. `payload_bytes_max` is the `max_payload` announced
/// in INFO: a PUB or HPUB announcing more is refused from its control line, before any payload
/// byte is waited for, so a receiver never holds more than
/// `CONTROL_LINE_BYTES_MAX + 2 + payload_bytes_max + 2` bytes for one operation.
pub fn parse(buf: &[u8], payload_bytes_max: usize) -> Result<Parsed<'_>, NatsError> {
    let line_max = CONTROL_LINE_BYTES_MAX + 2;
    let Some(nl) = buf.iter().take(line_max).position(|&b| b == b'\n') else {
        check_name_prefix(buf)?;
        if buf.len() >= line_max {
            return Err(NatsError::ControlLineTooLong);
        }
        return Ok(Parsed::Incomplete { needed: 0 });
    };
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    if line.len() > CONTROL_LINE_BYTES_MAX {
        return Err(NatsError::ControlLineTooLong);
    }
    let after_line = nl + 1;
    let name_end = line.iter().position(|&b| is_blank(b)).unwrap_or(line.len());
    let (name, rest) = line.split_at(name_end);
    let op = match_name(name)?;
    // nats-server's parser wants a blank after the name of an operation with arguments: a
    // line that ends right after it is no operation at all.
    if rest.is_empty() && matches!(op, b"PUB" | b"HPUB" | b"SUB" | b"UNSUB") {
        return Err(NatsError::UnknownOperation);
    }
    let args = trim_blank(rest);
    let done = |op| {
        Ok(Parsed::Op {
            op,
            consumed: after_line,
        })
    };
    match op {
        b"PUB" => parse_pub(args, &buf[after_line..], after_line, payload_bytes_max),
        b"HPUB" => parse_hpub(args, &buf[after_line..], after_line, payload_bytes_max),
        b"SUB" => done(parse_sub(args)?),
        b"UNSUB" => done(parse_unsub(args)?),
        b"PING" => done(ClientOp::Ping),
        b"PONG" => done(ClientOp::Pong),
        b"CONNECT" if args.is_empty() => Err(NatsError::BadArguments { op: "CONNECT" }),
        b"CONNECT" => done(ClientOp::Connect { json: args }),
        b"INFO" | b"+OK" => done(ClientOp::Ignored),
        _ => done(ClientOp::ClientError),
    }
}

/// The operation `name` stands for. PING and PONG match by their first four letters, as in
/// nats-server (whose parser skips to the end of line after them: `PINGX` is a PING).
fn match_name(name: &[u8]) -> Result<&'static [u8], NatsError> {
    for op in OPS.iter().chain(std::iter::once(&CLIENT_ERR)) {
        if name.eq_ignore_ascii_case(op) {
            return Ok(op);
        }
    }
    let head = name.get(..4).unwrap_or(b"");
    for op in [b"PING", b"PONG"] {
        if head.eq_ignore_ascii_case(op) {
            return Ok(if op == b"PING" { b"PING" } else { b"PONG" });
        }
    }
    Err(NatsError::UnknownOperation)
}

/// An unfinished control line whose first word can no longer become an operation name is
/// refused at once, as nats-server's byte-by-byte parser does, instead of after 4 KiB.
fn check_name_prefix(partial: &[u8]) -> Result<(), NatsError> {
    let word_end = partial.iter().position(|&b| is_blank(b) || b == b'\r');
    let word = &partial[..word_end.unwrap_or(partial.len())];
    let complete = word_end.is_some();
    let names = OPS.iter().chain(std::iter::once(&CLIENT_ERR));
    let fits = |op: &&[u8]| {
        if complete || word.len() >= op.len() {
            // A whole word: a name, or a PING/PONG with trailing letters.
            let ping_pong = (*op == b"PING" || *op == b"PONG") && word.len() >= 4;
            word.eq_ignore_ascii_case(op) || (ping_pong && word[..4].eq_ignore_ascii_case(op))
        } else {
            op[..word.len()].eq_ignore_ascii_case(word)
        }
    };
    if word.is_empty() || names.clone().any(fits) {
        Ok(())
    } else {
        Err(NatsError::UnknownOperation)
    }
}

fn trim_blank(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| !is_blank(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !is_blank(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

/// Splits arguments on runs of blanks into `out`; `None` when there are more than fit.
fn split_args<'a>(args: &'a [u8], out: &mut [&'a [u8]; ARGS_MAX]) -> Option<usize> {
    let mut count = 0;
    for arg in args.split(|&b| is_blank(b)).filter(|a| !a.is_empty()) {
        *out.get_mut(count)? = arg;
        count += 1;
    }
    Some(count)
}

/// A size argument: decimal digits only, no sign, no overflow.
fn parse_size(arg: &[u8]) -> Option<u64> {
    if arg.is_empty() || arg.len() > 19 || !arg.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(arg.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// The payload of `size` bytes at the front of `body` and its CRLF, or how many bytes the
/// whole operation needs.
fn take_payload(
    body: &[u8],
    line_bytes: usize,
    size: usize,
) -> Result<Result<(&[u8], usize), Parsed<'static>>, NatsError> {
    let needed = line_bytes + size + 2;
    if body.len() < size + 2 {
        return Ok(Err(Parsed::Incomplete { needed }));
    }
    if &body[size..size + 2] != b"\r\n" {
        return Err(NatsError::UnknownOperation);
    }
    Ok(Ok((&body[..size], needed)))
}

fn sized(arg: &[u8], max: usize, op: &'static str) -> Result<usize, NatsError> {
    let size = parse_size(arg).ok_or(NatsError::BadArguments { op })?;
    if size > max as u64 {
        return Err(NatsError::PayloadTooLarge { size, max });
    }
    Ok(size as usize)
}

fn parse_pub<'a>(
    args: &'a [u8],
    body: &'a [u8],
    line_bytes: usize,
    max: usize,
) -> Result<Parsed<'a>, NatsError> {
    let bad = NatsError::BadArguments { op: "PUB" };
    let mut a = [&b""[..]; ARGS_MAX];
    let (subject, reply, size) = match split_args(args, &mut a).ok_or(bad)? {
        2 => (a[0], &b""[..], a[1]),
        3 => (a[0], a[1], a[2]),
        _ => return Err(bad),
    };
    let size = sized(size, max, "PUB")?;
    Ok(match take_payload(body, line_bytes, size)? {
        Ok((payload, consumed)) => Parsed::Op {
            op: ClientOp::Pub {
                subject,
                reply,
                payload,
            },
            consumed,
        },
        Err(incomplete) => incomplete,
    })
}

fn parse_hpub<'a>(
    args: &'a [u8],
    body: &'a [u8],
    line_bytes: usize,
    max: usize,
) -> Result<Parsed<'a>, NatsError> {
    let bad = NatsError::BadArguments { op: "HPUB" };
    let mut a = [&b""[..]; ARGS_MAX];
    let (subject, reply, header_size, total) = match split_args(args, &mut a).ok_or(bad)? {
        3 => (a[0], &b""[..], a[1], a[2]),
        4 => (a[0], a[1], a[2], a[3]),
        _ => return Err(bad),
    };
    let total = sized(total, max, "HPUB")?;
    let header_size = parse_size(header_size).ok_or(bad)?;
    if header_size > total as u64 {
        return Err(bad);
    }
    Ok(match take_payload(body, line_bytes, total)? {
        Ok((both, consumed)) => {
            let (headers, payload) = both.split_at(header_size as usize);
            Parsed::Op {
                op: ClientOp::Hpub {
                    subject,
                    reply,
                    headers,
                    payload,
                },
                consumed,
            }
        }
        Err(incomplete) => incomplete,
    })
}

fn parse_sub(args: &[u8]) -> Result<ClientOp<'_>, NatsError> {
    let bad = NatsError::BadArguments { op: "SUB" };
    let mut a = [&b""[..]; ARGS_MAX];
    match split_args(args, &mut a).ok_or(bad)? {
        2 => Ok(ClientOp::Sub {
            subject: a[0],
            queue: b"",
            sid: a[1],
        }),
        3 => Ok(ClientOp::Sub {
            subject: a[0],
            queue: a[1],
            sid: a[2],
        }),
        _ => Err(bad),
    }
}

fn parse_unsub(args: &[u8]) -> Result<ClientOp<'_>, NatsError> {
    let bad = NatsError::BadArguments { op: "UNSUB" };
    let mut a = [&b""[..]; ARGS_MAX];
    match split_args(args, &mut a).ok_or(bad)? {
        1 => Ok(ClientOp::Unsub {
            sid: a[0],
            max_msgs: None,
        }),
        2 => Ok(ClientOp::Unsub {
            sid: a[0],
            max_msgs: parse_size(a[1]),
        }),
        _ => Err(bad),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1024;

    fn op(buf: &[u8]) -> (ClientOp<'_>, usize) {
        match parse(buf, MAX) {
            Ok(Parsed::Op { op, consumed }) => (op, consumed),
            other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn pub_with_and_without_reply_in_any_case_and_blanks() {
        let (o, n) = op(b"PUB foo 2\r\nhi\r\nPING\r\n");
        assert_eq!(
            o,
            ClientOp::Pub {
                subject: b"foo",
                reply: b"",
                payload: b"hi"
            }
        );
        assert_eq!(n, 15);
        let (o, _) = op(b"pub \t foo  _INBOX.x\t 3 \r\nabc\r\n");
        assert_eq!(
            o,
            ClientOp::Pub {
                subject: b"foo",
                reply: b"_INBOX.x",
                payload: b"abc"
            }
        );
        let (o, n) = op(b"PUB foo 0\n\r\n");
        assert_eq!(
            (o, n),
            (
                ClientOp::Pub {
                    subject: b"foo",
                    reply: b"",
                    payload: b""
                },
                12
            )
        );
    }

    #[test]
    fn hpub_splits_headers_from_payload() {
        let buf = b"HPUB foo r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n";
        let (o, n) = op(buf);
        assert_eq!(n, buf.len());
        assert_eq!(
            o,
            ClientOp::Hpub {
                subject: b"foo",
                reply: b"r",
                headers: b"NATS/1.0\r\n\r\n",
                payload: b"hi"
            }
        );
        assert_eq!(
            parse(b"HPUB foo 14 12\r\n", MAX),
            Err(NatsError::BadArguments { op: "HPUB" })
        );
    }

    #[test]
    fn sub_unsub_ping_pong_connect_and_ignored() {
        assert_eq!(
            op(b"SUB foo q 7\r\n").0,
            ClientOp::Sub {
                subject: b"foo",
                queue: b"q",
                sid: b"7"
            }
        );
        assert_eq!(
            op(b"sub foo.* 1\n").0,
            ClientOp::Sub {
                subject: b"foo.*",
                queue: b"",
                sid: b"1"
            }
        );
        assert_eq!(
            op(b"UNSUB 1 5\r\n").0,
            ClientOp::Unsub {
                sid: b"1",
                max_msgs: Some(5)
            }
        );
        assert_eq!(
            op(b"UNSUB 1 x\r\n").0,
            ClientOp::Unsub {
                sid: b"1",
                max_msgs: None
            }
        );
        assert_eq!(op(b"PING\r\n").0, ClientOp::Ping);
        assert_eq!(op(b"pingx\r\n").0, ClientOp::Ping);
        assert_eq!(op(b"PONG\r\n").0, ClientOp::Pong);
        assert_eq!(
            op(b"CONNECT {\"verbose\":false}\r\n").0,
            ClientOp::Connect {
                json: b"{\"verbose\":false}"
            }
        );
        assert_eq!(op(b"INFO {}\r\n").0, ClientOp::Ignored);
        assert_eq!(op(b"+OK\r\n").0, ClientOp::Ignored);
        assert_eq!(op(b"-ERR 'x'\r\n").0, ClientOp::ClientError);
    }

    #[test]
    fn incomplete_operations_wait_for_more() {
        for partial in [
            &b""[..],
            b"P",
            b"PU",
            b"PUB foo",
            b"PUB foo 2\r\n",
            b"PUB foo 2\r\nhi",
            b"PUB foo 2\r\nhi\r",
            b"CONNECT {",
            b"-ER",
        ] {
            assert!(
                matches!(parse(partial, MAX), Ok(Parsed::Incomplete { .. })),
                "{partial:?}"
            );
        }
        assert_eq!(
            parse(b"PUB foo 2\r\nh", MAX),
            Ok(Parsed::Incomplete { needed: 15 })
        );
    }

    #[test]
    fn errors_name_the_nats_server_text() {
        let cases: [(&[u8], NatsError); 10] = [
            (b"FOO\r\n", NatsError::UnknownOperation),
            (b"FO", NatsError::UnknownOperation),
            (b"PUB foo 3\r\nabcd\r\n", NatsError::UnknownOperation),
            (
                b"PUB foo 2000\r\n",
                NatsError::PayloadTooLarge {
                    size: 2000,
                    max: MAX,
                },
            ),
            (b"PUB foo\r\n", NatsError::BadArguments { op: "PUB" }),
            (b"PUB foo -1\r\n", NatsError::BadArguments { op: "PUB" }),
            (b"SUB foo\r\n", NatsError::BadArguments { op: "SUB" }),
            (b"UNSUB\r\n", NatsError::UnknownOperation),
            (b"UNSUB \r\n", NatsError::BadArguments { op: "UNSUB" }),
            (b"CONNECT\r\n", NatsError::BadArguments { op: "CONNECT" }),
        ];
        for (buf, want) in cases {
            assert_eq!(parse(buf, MAX), Err(want), "{buf:?}");
        }
    }

    #[test]
    fn control_lines_are_bounded() {
        let mut long = b"PUB ".to_vec();
        long.resize(CONTROL_LINE_BYTES_MAX + 10, b'a');
        assert_eq!(parse(&long, MAX), Err(NatsError::ControlLineTooLong));
        long.extend_from_slice(b" 1\r\nx\r\n");
        assert_eq!(parse(&long, MAX), Err(NatsError::ControlLineTooLong));
        let mut fits = b"PUB ".to_vec();
        fits.resize(CONTROL_LINE_BYTES_MAX - 2, b'a');
        fits.extend_from_slice(b" 1\r\nx\r\n");
        assert!(matches!(parse(&fits, MAX), Ok(Parsed::Op { .. })));
    }
}
