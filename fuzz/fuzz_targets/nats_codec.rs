//! NATS client protocol (`ringrelay::protocol::nats`): `parse` on arbitrary bytes under
//! several payload bounds, CONNECT options and subject checks on arbitrary bytes, and the
//! MSG/HMSG writer's announced lengths. See README.md for the properties checked.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringrelay::protocol::nats::encode::MsgHead;
use ringrelay::protocol::nats::{
    parse, subject, ClientOp, ConnectOptions, Fed, NatsError, NatsReader, Parsed,
    CONTROL_LINE_BYTES_MAX,
};

const PAYLOAD_MAXES: [usize; 3] = [0, 16, 1 << 20];

fuzz_target!(|data: &[u8]| {
    for max in PAYLOAD_MAXES {
        parse_stream(data, max);
        chunked_like_whole(data, max);
    }
    let _ = ConnectOptions::parse(data);
    let _ = (subject::valid_publish(data), subject::valid_subscribe(data));
    written_lengths(data);
});

/// Parses operation after operation from the front of `data` until an error or "incomplete".
fn parse_stream(data: &[u8], max: usize) {
    let mut buf = data;
    loop {
        match parse(buf, max) {
            Ok(Parsed::Op { op, consumed }) => {
                assert!(consumed > 0 && consumed <= buf.len());
                check_op(&op, max);
                // A proper prefix of an operation only asks for more (or is refused for the
                // same reason the whole would be: never accepted as something else).
                if let Ok(Parsed::Op { .. }) = parse(&buf[..consumed - 1], max) {
                    panic!("a prefix of an operation parsed as an operation");
                }
                buf = &buf[consumed..];
            }
            Ok(Parsed::Incomplete { needed }) => {
                assert!(needed == 0 || needed > buf.len());
                assert!(needed <= CONTROL_LINE_BYTES_MAX + 2 + max + 2);
                return;
            }
            Err(e) => {
                let _ = (e.to_string(), e.err_text());
                if let NatsError::PayloadTooLarge { size, max: m } = e {
                    assert!(size > m as u64 && m == max);
                }
                return;
            }
        }
    }
}

fn blank_free(field: &[u8]) -> bool {
    !field.iter().any(|&b| b == b' ' || b == b'\t' || b == b'\n')
}

fn check_op(op: &ClientOp<'_>, max: usize) {
    match *op {
        ClientOp::Pub {
            subject,
            reply,
            payload,
        } => {
            assert!(!subject.is_empty() && blank_free(subject) && blank_free(reply));
            assert!(payload.len() <= max);
        }
        ClientOp::Hpub {
            subject,
            reply,
            headers,
            payload,
        } => {
            assert!(!subject.is_empty() && blank_free(subject) && blank_free(reply));
            assert!(headers.len() + payload.len() <= max);
        }
        ClientOp::Sub {
            subject,
            queue,
            sid,
        } => {
            assert!(!subject.is_empty() && !sid.is_empty());
            assert!(blank_free(subject) && blank_free(queue) && blank_free(sid));
        }
        ClientOp::Unsub { sid, .. } => assert!(!sid.is_empty() && blank_free(sid)),
        ClientOp::Connect { json } => assert!(!json.is_empty()),
        _ => {}
    }
}

/// Whatever the fields, the writer writes exactly the lengths it announces.
fn written_lengths(data: &[u8]) {
    let cut = |i: usize| data.get(..i.min(data.len())).unwrap_or(&[]);
    let head = MsgHead {
        subject: cut(7),
        sid: cut(3),
        reply: if data.len() % 2 == 0 { cut(5) } else { b"" },
        headers: if data.len() % 3 == 0 { cut(11) } else { b"" },
        payload_len: data.len(),
    };
    let mut out = Vec::new();
    head.write(&mut out);
    assert_eq!(out.len(), head.line_len() + head.headers.len());
    head.write_with(&mut { out.clone() }, data);
    let mut whole = Vec::new();
    head.write_with(&mut whole, data);
    assert_eq!(whole.len(), head.message_len());
}

/// `NatsReader` over the input cut into chunks (sizes from the first byte) applies the same
/// operations and ends with the same error as one pass over the whole input, and never holds
/// more than one operation's bound.
fn chunked_like_whole(data: &[u8], max: usize) {
    let Some((&sizes, stream)) = data.split_first() else {
        return;
    };
    let collect = |chunk: usize| {
        let mut reader = NatsReader::default();
        let mut seen = Vec::new();
        let mut end = Ok(Fed::Drained);
        for piece in stream.chunks(chunk) {
            end = reader.feed(piece, max, |op| {
                seen.push(format!("{op:?}"));
                true
            });
            assert!(reader.held_bytes() <= CONTROL_LINE_BYTES_MAX + 2 + max + 2);
            if end.is_err() {
                break;
            }
        }
        (seen, end)
    };
    let whole = collect(stream.len().max(1));
    let chunk = usize::from(sizes % 17) + 1;
    assert_eq!(collect(chunk), whole);
}
