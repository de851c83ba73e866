//! Property tests for the cluster link codec (`ringrelay::cluster::wire`): decoders never panic
//! on any bytes, prefixes of valid frames only ever ask for more, encodings round-trip, and the
//! size bound is enforced from the header alone.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use ringrelay::cluster::wire::{
    decode_data, decode_link, encode_data_ack, encode_data_dropped, encode_data_publish,
    encode_data_send, encode_data_send_acked, encode_link, snapshot_chunks, ControlMsg, DataFrame,
    DecodedData, InterestChange, Lane, LinkDecodeError, LinkHello, LinkMsg, LinkRefuse, Member,
    RowChange, HEADER_LEN, LINK_VERSION,
};

use ringrelay::protocol::{AckFields, AckRuns, Message, MsgId};

const MAX: usize = 1 << 24;

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn short(min: usize) -> impl Strategy<Value = Box<[u8]>> {
    vec(any::<u8>(), min..=255).prop_map(Vec::into_boxed_slice)
}

/// At most 60 chars of at most 4 bytes: always within a `bytes8` field.
fn addr() -> impl Strategy<Value = String> {
    "\\PC{0,60}"
}

fn hello() -> impl Strategy<Value = LinkHello> {
    (
        any::<u8>(),
        any::<bool>(),
        any::<u16>(),
        any::<u64>(),
        any::<u16>(),
        any::<[u8; 16]>(),
        addr(),
    )
        .prop_map(
            |(version, data, node_id, incarnation, worker, nonce, advertise)| LinkHello {
                version,
                lane: if data { Lane::Data } else { Lane::Control },
                node_id,
                incarnation,
                worker,
                nonce,
                advertise,
            },
        )
}

fn control() -> impl Strategy<Value = ControlMsg> {
    let row = (any::<bool>(), short(1), any::<u64>()).prop_map(|(up, id, epoch)| {
        if up {
            RowChange::Upsert { id, epoch }
        } else {
            RowChange::Remove { id, epoch }
        }
    });
    let member = (any::<u16>(), addr()).prop_map(|(node_id, addr)| Member { node_id, addr });
    let interest =
        (any::<bool>(), short(1), short(0)).prop_map(|(present, topic, group)| InterestChange {
            present,
            topic,
            group,
        });
    prop_oneof![
        Just(ControlMsg::Heartbeat),
        Just(ControlMsg::SnapshotRequest),
        vec(member, 0..20).prop_map(ControlMsg::Members),
        vec(row, 0..20).prop_map(ControlMsg::Rows),
        (
            any::<bool>(),
            any::<bool>(),
            vec((short(1), any::<u64>()), 0..20)
        )
            .prop_map(|(first, last, rows)| ControlMsg::Snapshot { first, last, rows }),
        (any::<u64>(), any::<u64>()).prop_map(|(rows, hash)| ControlMsg::Digest { rows, hash }),
        (any::<bool>(), vec(interest, 0..20))
            .prop_map(|(replace, entries)| ControlMsg::Interest { replace, entries }),
    ]
}

fn link_msg() -> impl Strategy<Value = LinkMsg> {
    prop_oneof![
        hello().prop_map(LinkMsg::Hello),
        any::<[u8; 32]>().prop_map(LinkMsg::Auth),
        (any::<u16>(), "\\PC{0,300}")
            .prop_map(|(reason, text)| LinkMsg::Refuse(LinkRefuse { reason, text })),
        control().prop_map(LinkMsg::Control),
    ]
}

/// Owned mirror of [`DataFrame`], so generated frames outlive no buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
enum OwnedData {
    /// `topic` always empty; `reply` and `headers` empty when absent.
    Send {
        target: Vec<u8>,
        message: OwnedMessage,
    },
    Publish {
        group: Vec<u8>,
        no_echo: bool,
        message: OwnedMessage,
    },
    SendAcked {
        sender: Vec<u8>,
        target: Vec<u8>,
        id: MsgId,
        payload: Vec<u8>,
    },
    Ack {
        from: Vec<u8>,
        to: Vec<u8>,
        gap: bool,
        epoch: u64,
        upto: u64,
        runs: Vec<(u64, u64)>,
    },
    Dropped {
        sender: Vec<u8>,
        subject: Vec<u8>,
        count: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct OwnedMessage {
    sender: Vec<u8>,
    topic: Vec<u8>,
    reply: Vec<u8>,
    headers: Vec<u8>,
    payload: Vec<u8>,
}

impl OwnedMessage {
    fn borrowed(&self) -> Message<'_> {
        Message {
            sender: &self.sender,
            topic: &self.topic,
            reply: &self.reply,
            headers: &self.headers,
            payload: &self.payload,
        }
    }

    fn owned(m: &Message<'_>) -> OwnedMessage {
        OwnedMessage {
            sender: m.sender.to_vec(),
            topic: m.topic.to_vec(),
            reply: m.reply.to_vec(),
            headers: m.headers.to_vec(),
            payload: m.payload.to_vec(),
        }
    }
}

impl OwnedData {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            OwnedData::Send { target, message } => {
                encode_data_send(out, target, &message.borrowed())
            }
            OwnedData::Publish {
                group,
                no_echo,
                message,
            } => encode_data_publish(out, &message.borrowed(), group, *no_echo),
            OwnedData::SendAcked {
                sender,
                target,
                id,
                payload,
            } => encode_data_send_acked(out, sender, target, *id, payload),
            OwnedData::Ack {
                from,
                to,
                gap,
                epoch,
                upto,
                runs,
            } => {
                let mut wire = Vec::new();
                AckRuns::write_wire(runs, &mut wire);
                let runs = AckRuns::from_wire(&wire).expect("generated runs are valid");
                let ack = AckFields {
                    epoch: *epoch,
                    upto: *upto,
                    runs,
                };
                encode_data_ack(out, from, to, *gap, &ack)
            }
            OwnedData::Dropped {
                sender,
                subject,
                count,
            } => encode_data_dropped(out, sender, subject, *count),
        }
    }

    fn from_frame(f: DataFrame<'_>) -> OwnedData {
        match f {
            DataFrame::Send { target, message } => OwnedData::Send {
                target: target.to_vec(),
                message: OwnedMessage::owned(&message),
            },
            DataFrame::Publish {
                group,
                no_echo,
                message,
            } => OwnedData::Publish {
                group: group.to_vec(),
                no_echo,
                message: OwnedMessage::owned(&message),
            },
            DataFrame::SendAcked {
                sender,
                target,
                id,
                payload,
            } => OwnedData::SendAcked {
                sender: sender.to_vec(),
                target: target.to_vec(),
                id,
                payload: payload.to_vec(),
            },
            DataFrame::Ack { from, to, gap, ack } => OwnedData::Ack {
                from: from.to_vec(),
                to: to.to_vec(),
                gap,
                epoch: ack.epoch,
                upto: ack.upto,
                runs: ack.runs.iter().collect(),
            },
            DataFrame::Dropped {
                sender,
                subject,
                count,
            } => OwnedData::Dropped {
                sender: sender.to_vec(),
                subject: subject.to_vec(),
                count,
            },
        }
    }
}

fn data_frame() -> impl Strategy<Value = OwnedData> {
    let bytes = |min: usize| vec(any::<u8>(), min..=255);
    // A reply topic and headers in about half the messages each (empty: absent).
    let message = |topic_min: usize| {
        (
            bytes(1),
            bytes(topic_min).prop_map(move |t| if topic_min == 0 { Vec::new() } else { t }),
            prop_oneof![Just(Vec::new()), bytes(1)],
            prop_oneof![Just(Vec::new()), vec(any::<u8>(), 1..300)],
            vec(any::<u8>(), 0..600),
        )
            .prop_map(|(sender, topic, reply, headers, payload)| OwnedMessage {
                sender,
                topic,
                reply,
                headers,
                payload,
            })
    };
    prop_oneof![
        (bytes(1), message(0)).prop_map(|(target, message)| OwnedData::Send { target, message }),
        (bytes(0), any::<bool>(), message(1)).prop_map(|(group, no_echo, message)| {
            OwnedData::Publish {
                group,
                no_echo,
                message,
            }
        }),
        (
            bytes(1),
            bytes(1),
            any::<u64>(),
            1..=u64::MAX,
            vec(any::<u8>(), 0..600)
        )
            .prop_map(|(sender, target, epoch, seq, payload)| {
                OwnedData::SendAcked {
                    sender,
                    target,
                    id: MsgId { epoch, seq },
                    payload,
                }
            }),
        (
            bytes(1),
            bytes(1),
            any::<bool>(),
            any::<u64>(),
            any::<u64>(),
            vec((any::<u64>(), any::<u64>()), 0..=16)
        )
            .prop_map(|(from, to, gap, epoch, upto, pairs)| {
                let runs = pairs
                    .into_iter()
                    .map(|(a, b)| (a.min(b), a.max(b)))
                    .collect();
                OwnedData::Ack {
                    from,
                    to,
                    gap,
                    epoch,
                    upto,
                    runs,
                }
            }),
        (bytes(1), bytes(0), 1..=u32::MAX).prop_map(|(sender, subject, count)| {
            OwnedData::Dropped {
                sender,
                subject,
                count,
            }
        }),
    ]
}

fn encoded_link(msg: &LinkMsg) -> Vec<u8> {
    let mut out = Vec::new();
    encode_link(msg, &mut out);
    out
}

fn encoded_data(f: &OwnedData) -> Vec<u8> {
    let mut out = Vec::new();
    f.encode(&mut out);
    out
}

/// Decodes with both decoders; checks the invariants every result must keep.
fn decode_both_checked(buf: &[u8], max: usize) {
    if let Ok(Some((_, consumed))) = decode_link(buf, max) {
        assert!(consumed >= HEADER_LEN && consumed <= buf.len() && consumed <= max);
    }
    match decode_data(buf, max) {
        Ok(DecodedData::Frame { consumed, .. }) => {
            assert!(consumed >= HEADER_LEN && consumed <= buf.len() && consumed <= max)
        }
        Ok(DecodedData::NeedMore { frame_bytes }) => {
            assert!(frame_bytes > buf.len() && frame_bytes <= max.max(HEADER_LEN))
        }
        Err(_) => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(buf in vec(any::<u8>(), 0..512), max in 0usize..1024) {
        decode_both_checked(&buf, max);
        decode_both_checked(&buf, MAX);
    }

    /// Arbitrary bodies behind every link kind and flag combination, so decoding gets past the
    /// header checks and exercises each body parser.
    #[test]
    fn arbitrary_bodies_never_panic(
        kind in prop_oneof![0x80u8..=0x82, 0x90u8..=0x96, 0xA0u8..=0xA1],
        flags in 0u8..4,
        body in vec(any::<u8>(), 0..300),
        extra in vec(any::<u8>(), 0..8),
    ) {
        let mut buf = (body.len() as u32).to_le_bytes().to_vec();
        buf.push(kind);
        buf.push(flags);
        buf.extend_from_slice(&body);
        buf.extend_from_slice(&extra);
        decode_both_checked(&buf, MAX);
    }

    #[test]
    fn link_messages_roundtrip(msg in link_msg(), trailing in vec(any::<u8>(), 0..16)) {
        let mut out = encoded_link(&msg);
        prop_assert_eq!(out.len(), msg.encoded_len());
        let len = out.len();
        out.extend_from_slice(&trailing); // the next frame's bytes must not be touched
        prop_assert_eq!(decode_link(&out, MAX), Ok(Some((msg, len))));
    }

    #[test]
    fn data_frames_roundtrip(f in data_frame(), trailing in vec(any::<u8>(), 0..16)) {
        let mut out = encoded_data(&f);
        let len = out.len();
        out.extend_from_slice(&trailing);
        match decode_data(&out, MAX) {
            Ok(DecodedData::Frame { frame, consumed }) => {
                prop_assert_eq!(consumed, len);
                prop_assert_eq!(OwnedData::from_frame(frame), f);
            }
            other => prop_assert!(false, "expected a frame, got {:?}", other),
        }
    }

    #[test]
    fn consecutive_link_frames_decode_in_order(msgs in vec(link_msg(), 1..6)) {
        let mut out = Vec::new();
        for m in &msgs {
            encode_link(m, &mut out);
        }
        let mut at = 0;
        for m in &msgs {
            let (got, consumed) = decode_link(&out[at..], MAX).unwrap().unwrap();
            prop_assert_eq!(&got, m);
            at += consumed;
        }
        prop_assert_eq!(at, out.len());
        prop_assert_eq!(decode_link(&out[at..], MAX), Ok(None));
    }

    #[test]
    fn every_prefix_of_a_link_frame_needs_more(msg in link_msg()) {
        let out = encoded_link(&msg);
        for cut in 0..out.len() {
            prop_assert_eq!(decode_link(&out[..cut], MAX), Ok(None), "cut at {}", cut);
        }
    }

    #[test]
    fn every_prefix_of_a_data_frame_needs_more(f in data_frame()) {
        let out = encoded_data(&f);
        for cut in 0..out.len() {
            let want = if cut < HEADER_LEN { HEADER_LEN } else { out.len() };
            prop_assert_eq!(
                decode_data(&out[..cut], MAX),
                Ok(DecodedData::NeedMore { frame_bytes: want }),
                "cut at {}", cut
            );
        }
    }

    #[test]
    fn single_byte_mutations_never_panic(
        msg in link_msg(),
        f in data_frame(),
        at in any::<Index>(),
        byte in any::<u8>(),
    ) {
        for mut buf in [encoded_link(&msg), encoded_data(&f)] {
            let i = at.index(buf.len());
            buf[i] = byte;
            decode_both_checked(&buf, MAX);
            // Mutated and cut short: still only NeedMore or a typed error.
            decode_both_checked(&buf[..i], MAX);
        }
    }

    #[test]
    fn wrong_lane_is_an_error_from_the_header(msg in link_msg(), f in data_frame()) {
        let ctl = encoded_link(&msg);
        prop_assert_eq!(
            decode_data(&ctl[..HEADER_LEN], MAX),
            Err(LinkDecodeError::WrongLane(msg.kind()))
        );
        let data = encoded_data(&f);
        prop_assert_eq!(
            decode_link(&data[..HEADER_LEN], MAX),
            Err(LinkDecodeError::WrongLane(data[4]))
        );
    }

    #[test]
    fn oversized_header_rejected_before_the_body(
        kind in any::<u8>(),
        flags in any::<u8>(),
        max in 0usize..100_000,
        over in 1u64..1_000_000,
    ) {
        let frame_bytes = max as u64 + over;
        prop_assume!(frame_bytes >= HEADER_LEN as u64);
        let body_len = frame_bytes - HEADER_LEN as u64;
        prop_assume!(body_len <= u64::from(u32::MAX));
        let mut hdr = (body_len as u32).to_le_bytes().to_vec();
        hdr.push(kind);
        hdr.push(flags);
        let err = LinkDecodeError::FrameTooLarge { frame_bytes, max };
        // Whatever kind and flags say, size is checked first.
        prop_assert_eq!(decode_link(&hdr, max), Err(err));
        prop_assert_eq!(decode_data(&hdr, max), Err(err));
    }

    #[test]
    fn frames_at_the_limit_are_accepted(msg in link_msg(), f in data_frame()) {
        let ctl = encoded_link(&msg);
        prop_assert!(decode_link(&ctl, ctl.len()).unwrap().is_some());
        let too_large = |r: Result<_, LinkDecodeError>| {
            matches!(r, Err(LinkDecodeError::FrameTooLarge { .. }))
        };
        prop_assert!(too_large(decode_link(&ctl, ctl.len() - 1).map(|_| ())));
        let data = encoded_data(&f);
        let whole = matches!(decode_data(&data, data.len()), Ok(DecodedData::Frame { .. }));
        prop_assert!(whole);
        prop_assert!(too_large(decode_data(&data, data.len() - 1).map(|_| ())));
    }

    #[test]
    fn snapshot_chunks_cover_the_rows_once(
        rows in vec((short(1), any::<u64>()), 0..50),
        per in 0usize..12,
    ) {
        let chunks: Vec<ControlMsg> = snapshot_chunks(&rows, per).collect();
        let per = per.max(1);
        prop_assert_eq!(chunks.len(), rows.len().div_ceil(per).max(1));
        let mut all = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let ControlMsg::Snapshot { first, last, rows: part } = c else {
                return Err(TestCaseError::fail("not a SNAPSHOT"));
            };
            prop_assert_eq!(*first, i == 0);
            prop_assert_eq!(*last, i + 1 == chunks.len());
            prop_assert!(part.len() <= per);
            prop_assert!(!part.is_empty() || rows.is_empty());
            // Each chunk survives the wire.
            let msg = LinkMsg::Control(c.clone());
            let (back, _) = decode_link(&encoded_link(&msg), MAX).unwrap().unwrap();
            prop_assert_eq!(back, msg);
            all.extend(part.iter().cloned());
        }
        prop_assert_eq!(all, rows);
    }

    #[test]
    fn hello_of_any_version_with_appended_fields_decodes(h in hello(), extra in vec(any::<u8>(), 1..32)) {
        let mut out = encoded_link(&LinkMsg::Hello(h.clone()));
        out.extend_from_slice(&extra);
        let body_len = (out.len() - HEADER_LEN) as u32;
        out[..4].copy_from_slice(&body_len.to_le_bytes());
        let got = decode_link(&out, MAX);
        if h.version == LINK_VERSION {
            prop_assert!(matches!(got, Err(LinkDecodeError::Malformed(_))));
        } else {
            prop_assert_eq!(got, Ok(Some((LinkMsg::Hello(h), out.len()))));
        }
    }
}
