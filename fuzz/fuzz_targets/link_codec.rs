//! Cluster link codec (`ringrelay::cluster::wire`): `decode_link` (handshake and control lane)
//! and `decode_data` (data lane) on arbitrary bytes under several bounds, and encode -> decode
//! of structured control messages. See README.md for the properties checked.

#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use ringrelay::cluster::wire::{
    data_ack_len, data_dropped_len, data_publish_len, data_send_acked_len, data_send_len,
    decode_data, decode_link, encode_data_ack, encode_data_dropped, encode_data_publish,
    encode_data_send, encode_data_send_acked, encode_link, snapshot_chunks, ControlMsg, DataFrame,
    DecodedData, LinkDecodeError, LinkMsg, HEADER_LEN, LINK_VERSION,
};
use ringrelay::protocol::Message;
use ringrelay_fuzz::{arb_link_msg, bytes8, MAXES};

fuzz_target!(|data: &[u8]| {
    for max in MAXES {
        link_stream(data, max);
        data_stream(data, max);
    }
    structured(data);
});

fn check_error(e: LinkDecodeError, max: usize) {
    let _ = e.to_string();
    if let LinkDecodeError::FrameTooLarge {
        frame_bytes,
        max: got,
    } = e
    {
        assert_eq!(got, max);
        assert!(frame_bytes > max as u64);
    }
}

/// Encodes `msg` and checks it decodes back to itself, consuming all of it.
fn roundtrip(msg: &LinkMsg) -> Vec<u8> {
    let mut out = Vec::new();
    encode_link(msg, &mut out);
    assert_eq!(out.len(), msg.encoded_len());
    assert_eq!(
        decode_link(&out, usize::MAX),
        Ok(Some((msg.clone(), out.len())))
    );
    out
}

fn link_stream(data: &[u8], max: usize) {
    let mut buf = data;
    loop {
        match decode_link(buf, max) {
            Ok(Some((msg, consumed))) => {
                assert!(consumed >= HEADER_LEN && consumed <= buf.len() && consumed <= max);
                let wire = &buf[..consumed];
                // Every message survives a second round exactly.
                let out = roundtrip(&msg);
                match &msg {
                    // Not canonical by design: a HELLO of another version may carry fields
                    // appended by that version, which are skipped; the re-encoding is the
                    // version-1 layout, so it equals the received bytes but for body_len and
                    // what came after that layout.
                    LinkMsg::Hello(h) if h.version != LINK_VERSION => {
                        assert!(out.len() <= wire.len());
                        assert_eq!(out[4..], wire[4..out.len()]);
                    }
                    // Not canonical by design: REFUSE text is decoded lossily (invalid UTF-8
                    // becomes U+FFFD) so that the reason always gets through.
                    LinkMsg::Refuse(_) if std::str::from_utf8(&wire[HEADER_LEN + 4..]).is_err() => {
                    }
                    _ => assert_eq!(out, wire, "re-encoding differs"),
                }
                // Every proper prefix only asks for more (or is refused from its header).
                assert!(matches!(decode_link(&wire[..consumed - 1], max), Ok(None)));
                buf = &buf[consumed..];
            }
            Ok(None) => return,
            Err(e) => return check_error(e, max),
        }
    }
}

fn data_stream(data: &[u8], max: usize) {
    let mut buf = data;
    loop {
        match decode_data(buf, max) {
            Ok(DecodedData::Frame { frame, consumed }) => {
                assert!(consumed >= HEADER_LEN && consumed <= buf.len() && consumed <= max);
                let mut out = Vec::new();
                match frame {
                    DataFrame::Send { target, message } => {
                        assert!(!message.sender.is_empty() && !target.is_empty());
                        assert!(message.topic.is_empty() && message.reply.len() <= 255);
                        encode_data_send(&mut out, target, &message);
                        assert_eq!(out.len(), data_send_len(target, &message));
                        assert_eq!(&out[..], &buf[..consumed], "FWD_SEND re-encodes as it came");
                    }
                    DataFrame::Publish {
                        group,
                        no_echo,
                        message,
                    } => {
                        assert!(!message.sender.is_empty() && !message.topic.is_empty());
                        encode_data_publish(&mut out, &message, group, no_echo);
                        assert_eq!(out.len(), data_publish_len(&message, group));
                        assert_eq!(
                            &out[..],
                            &buf[..consumed],
                            "FWD_PUBLISH re-encodes as it came"
                        );
                    }
                    DataFrame::SendAcked {
                        sender,
                        target,
                        id,
                        payload,
                    } => {
                        assert!(!sender.is_empty() && !target.is_empty() && id.seq != 0);
                        encode_data_send_acked(&mut out, sender, target, id, payload);
                        assert_eq!(out.len(), data_send_acked_len(sender, target, payload));
                    }
                    DataFrame::Ack { from, to, gap, ack } => {
                        assert!(!from.is_empty() && !to.is_empty());
                        assert!(ack.runs.iter().all(|(first, last)| first <= last));
                        encode_data_ack(&mut out, from, to, gap, &ack);
                        assert_eq!(out.len(), data_ack_len(from, to, &ack));
                    }
                    DataFrame::Dropped {
                        sender,
                        subject,
                        count,
                    } => {
                        assert!(!sender.is_empty() && count != 0);
                        encode_data_dropped(&mut out, sender, subject, count);
                        assert_eq!(out.len(), data_dropped_len(sender, subject));
                    }
                }
                // The data lane is canonical: the same bytes come back.
                assert_eq!(out, &buf[..consumed], "re-encoding differs");
                let want = if consumed - 1 < HEADER_LEN {
                    HEADER_LEN
                } else {
                    consumed
                };
                assert_eq!(
                    decode_data(&buf[..consumed - 1], max),
                    Ok(DecodedData::NeedMore { frame_bytes: want })
                );
                buf = &buf[consumed..];
            }
            Ok(DecodedData::NeedMore { frame_bytes }) => {
                assert!(frame_bytes > buf.len());
                if buf.len() >= HEADER_LEN {
                    assert!(frame_bytes <= max);
                }
                return;
            }
            Err(e) => return check_error(e, max),
        }
    }
}

/// Structured handshake/control messages and data frames round-trip; snapshot chunking keeps
/// every row once, in order, with FIRST and LAST on the right chunks.
fn structured(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(msg) = arb_link_msg(&mut u) else {
        return;
    };
    roundtrip(&msg);
    if let LinkMsg::Control(ControlMsg::Snapshot { rows, .. }) = &msg {
        let per = u.arbitrary::<u8>().unwrap_or(0) as usize;
        let chunks: Vec<ControlMsg> = snapshot_chunks(rows, per).collect();
        let mut all = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let ControlMsg::Snapshot { first, last, rows } = c else {
                panic!("snapshot_chunks gave {c:?}");
            };
            assert_eq!((*first, *last), (i == 0, i + 1 == chunks.len()));
            assert!(rows.len() <= per.max(1));
            roundtrip(&c.clone().into());
            all.extend(rows.iter().cloned());
        }
        assert_eq!(&all, rows);
    }
    let (Ok(sender), Ok(target), Ok(group), Ok(reply), Ok(headers), Ok(payload)) = (
        bytes8(&mut u, true),
        bytes8(&mut u, true),
        bytes8(&mut u, false),
        bytes8(&mut u, false),
        u.arbitrary::<&[u8]>(),
        u.arbitrary::<&[u8]>(),
    ) else {
        return;
    };
    let direct = Message {
        sender: &sender,
        topic: b"",
        reply: &reply,
        headers,
        payload,
    };
    let published = Message {
        topic: &target,
        ..direct
    };
    let mut out = Vec::new();
    let count = (payload.len() as u32).max(1);
    encode_data_dropped(&mut out, &sender, &group, count);
    assert_eq!(
        decode_data(&out, usize::MAX),
        Ok(DecodedData::Frame {
            frame: DataFrame::Dropped {
                sender: &sender,
                subject: &group,
                count
            },
            consumed: out.len()
        })
    );
    out.clear();
    encode_data_send(&mut out, &target, &direct);
    let send_len = out.len();
    encode_data_publish(&mut out, &published, &group, payload.len() % 2 == 0);
    assert_eq!(
        decode_data(&out, usize::MAX),
        Ok(DecodedData::Frame {
            frame: DataFrame::Send {
                target: &target,
                message: direct
            },
            consumed: send_len
        })
    );
    assert_eq!(
        decode_data(&out[send_len..], usize::MAX),
        Ok(DecodedData::Frame {
            frame: DataFrame::Publish {
                group: &group,
                no_echo: payload.len() % 2 == 0,
                message: published
            },
            consumed: out.len() - send_len
        })
    );
}
