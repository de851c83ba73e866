//! Writes the seed corpora: `cargo run --example gen_seeds` (from `fuzz/`) rewrites
//! `corpus/<target>/` with a few small, meaningful inputs per target, all produced by the
//! library's own encoders. Fuzz runs write what they find elsewhere (`corpus-run/`, ignored).

use ringrelay::cluster::wire::{
    encode_data_dropped, encode_data_publish, encode_data_send, encode_link, snapshot_chunks,
    ControlMsg, InterestChange, Lane, LinkHello, LinkMsg, LinkRefuse, Member, RowChange,
    LINK_VERSION, REFUSE_BAD_SECRET,
};
use ringrelay::protocol::{
    encode_deliver, encode_publish_extended, encode_send_extended, hello, CloseReason, ErrorCode,
    Frame, Message, MAX_FRAME_BYTES_DEFAULT, PROTOCOL_VERSION,
};
use ringrelay_fuzz::MAXES;
use std::fs;
use std::path::Path;

fn client_frames() -> Vec<(&'static str, Vec<u8>)> {
    let frames: Vec<(&str, Frame<'_>)> = vec![
        ("hello", hello(b"alice", b"secret-token")),
        (
            "welcome",
            Frame::Welcome {
                version: PROTOCOL_VERSION,
                heartbeat_interval_ms: 5000,
                max_frame_bytes: MAX_FRAME_BYTES_DEFAULT as u32,
            },
        ),
        (
            "send",
            Frame::Send {
                target: b"bob",
                payload: b"hi",
            },
        ),
        (
            "publish_no_echo",
            Frame::Publish {
                topic: b"news",
                payload: b"extra!",
                no_echo: true,
            },
        ),
        (
            "subscribe_group",
            Frame::Subscribe {
                topic: b"jobs",
                group: b"workers",
            },
        ),
        (
            "unsubscribe",
            Frame::Unsubscribe {
                topic: b"news",
                group: b"",
            },
        ),
        ("watch", Frame::Watch { client_id: b"bob" }),
        ("unwatch", Frame::Unwatch { client_id: b"bob" }),
        (
            "deliver",
            Frame::Deliver {
                sender: b"alice",
                topic: b"news",
                payload: b"extra!",
            },
        ),
        (
            "presence",
            Frame::Presence {
                client_id: b"bob",
                online: true,
            },
        ),
        ("ping", Frame::Ping { nonce: 42 }),
        ("pong", Frame::Pong { nonce: 42 }),
        (
            "error",
            Frame::Error {
                code: ErrorCode::UNKNOWN_ID,
                subject: b"zed",
                text: b"unknown id",
            },
        ),
        (
            "close",
            Frame::Close {
                reason: CloseReason::SLOW_CONSUMER,
                text: b"slow consumer",
            },
        ),
    ];
    let mut seeds: Vec<(&str, Vec<u8>)> = frames
        .into_iter()
        .map(|(name, f)| {
            let mut out = Vec::new();
            f.encode(&mut out).expect("seed frames are valid");
            (name, out)
        })
        .collect();
    // Version 3's forms, written by their own encoders (no frame value makes one).
    let request = Message {
        sender: b"alice",
        topic: b"time.now",
        reply: b"_INBOX.a1.1",
        headers: b"NATS/1.0\r\nTrace: 1\r\n\r\n",
        payload: b"?",
    };
    let mut publish_request = Vec::new();
    encode_publish_extended(&mut publish_request, &request, false).expect("a valid PUBLISH");
    seeds.push(("publish_request", publish_request));
    let direct = Message {
        topic: b"",
        headers: b"",
        ..request
    };
    let mut send_with_reply = Vec::new();
    encode_send_extended(&mut send_with_reply, b"bob", &direct).expect("a valid SEND");
    seeds.push(("send_with_reply", send_with_reply));
    let mut deliver_with_headers = Vec::new();
    encode_deliver(&mut deliver_with_headers, &request);
    seeds.push(("deliver_with_headers", deliver_with_headers));
    seeds
}

fn link_msgs() -> Vec<(&'static str, Vec<u8>)> {
    let id = |s: &str| -> Box<[u8]> { s.as_bytes().into() };
    let rows: Vec<(Box<[u8]>, u64)> = (0..5u64).map(|i| (id(&format!("c{i}")), i)).collect();
    let mut msgs: Vec<(&str, LinkMsg)> = vec![
        (
            "link_hello",
            LinkMsg::Hello(LinkHello {
                version: LINK_VERSION,
                lane: Lane::Data,
                node_id: 2,
                incarnation: 0x0123_4567_89ab_cdef,
                worker: 1,
                nonce: [7; 16],
                advertise: "10.0.0.2:7401".into(),
            }),
        ),
        ("link_auth", LinkMsg::Auth([0xA5; 32])),
        (
            "link_refuse",
            LinkMsg::Refuse(LinkRefuse {
                reason: REFUSE_BAD_SECRET,
                text: "wrong cluster secret".into(),
            }),
        ),
        ("heartbeat", ControlMsg::Heartbeat.into()),
        ("snapshot_request", ControlMsg::SnapshotRequest.into()),
        (
            "members",
            ControlMsg::Members(vec![
                Member {
                    node_id: 1,
                    addr: "10.0.0.1:7401".into(),
                },
                Member {
                    node_id: 3,
                    addr: "[::1]:7401".into(),
                },
            ])
            .into(),
        ),
        (
            "rows",
            ControlMsg::Rows(vec![
                RowChange::Upsert {
                    id: id("alice"),
                    epoch: 17,
                },
                RowChange::Remove {
                    id: id("bob"),
                    epoch: 18,
                },
            ])
            .into(),
        ),
        (
            "digest",
            ControlMsg::Digest {
                rows: 5,
                hash: 0xdead_beef,
            }
            .into(),
        ),
        (
            "interest",
            ControlMsg::Interest {
                replace: true,
                entries: vec![
                    InterestChange {
                        present: true,
                        topic: id("news"),
                        group: id(""),
                    },
                    InterestChange {
                        present: false,
                        topic: id("jobs"),
                        group: id("workers"),
                    },
                ],
            }
            .into(),
        ),
    ];
    let names = [
        "snapshot_chunk_first",
        "snapshot_chunk_mid",
        "snapshot_chunk_last",
    ];
    for (name, chunk) in names.into_iter().zip(snapshot_chunks(&rows, 2)) {
        msgs.push((name, chunk.into()));
    }
    let mut out: Vec<(&str, Vec<u8>)> = msgs
        .into_iter()
        .map(|(name, m)| {
            let mut v = Vec::new();
            encode_link(&m, &mut v);
            (name, v)
        })
        .collect();
    let mut send = Vec::new();
    encode_data_send(&mut send, b"bob", &Message::plain(b"alice", b"", b"hi"));
    out.push(("data_send", send));
    let mut publish = Vec::new();
    encode_data_publish(
        &mut publish,
        &Message::plain(b"alice", b"jobs", b"job 1"),
        b"workers",
        true,
    );
    out.push(("data_publish", publish));
    let request = Message {
        sender: b"alice",
        topic: b"time.now",
        reply: b"_INBOX.a1.1",
        headers: b"NATS/1.0\r\n\r\n",
        payload: b"?",
    };
    let mut publish_request = Vec::new();
    encode_data_publish(&mut publish_request, &request, b"", false);
    out.push(("data_publish_request", publish_request));
    let mut dropped = Vec::new();
    encode_data_dropped(&mut dropped, b"alice", b"bob", 3);
    out.push(("data_dropped", dropped));
    out
}

/// A stream_decoder input: bound selector, chunk-length spec, stream (see README.md).
fn stream_input(max: usize, spec: &[u8], stream: &[u8]) -> Vec<u8> {
    let sel = MAXES
        .iter()
        .position(|&m| m == max)
        .expect("a listed bound") as u8;
    let mut v = vec![sel, spec.len() as u8];
    v.extend_from_slice(spec);
    v.extend_from_slice(stream);
    v
}

fn write(dir: &Path, files: &[(&str, Vec<u8>)]) {
    if dir.exists() {
        fs::remove_dir_all(dir).expect("remove old seeds");
    }
    fs::create_dir_all(dir).expect("create corpus dir");
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes).expect("write seed");
    }
    println!("{}: {} seeds", dir.display(), files.len());
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let client = client_frames();
    let links = link_msgs();

    let mut client_seeds = client.clone();
    client_seeds.push((
        "hello_then_send",
        [&client[0].1[..], &client[2].1[..]].concat(),
    ));
    write(&root.join("client_codec"), &client_seeds);

    write(&root.join("link_codec"), &links);

    let all_client: Vec<u8> = client.iter().flat_map(|(_, b)| b.clone()).collect();
    let handshake: Vec<u8> = links[..4].iter().flat_map(|(_, b)| b.clone()).collect();
    let control: Vec<u8> = links[3..].iter().flat_map(|(_, b)| b.clone()).collect();
    let half = all_client.len() / 2;
    let stream_seeds = vec![
        ("client_whole", stream_input(1 << 20, b"", &all_client)),
        (
            "client_split_headers",
            stream_input(1 << 20, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], &all_client),
        ),
        (
            "client_bound_64",
            stream_input(64, &[5, 5, 0, 9], &all_client),
        ),
        (
            "client_tail_unfinished",
            stream_input(1024, &[13, 3], &all_client[..half]),
        ),
        ("link_handshake", stream_input(1024, &[3, 7, 2], &handshake)),
        ("link_control", stream_input(1 << 20, &[4, 15, 1], &control)),
        ("tiny_bound", stream_input(5, &[2], &client[10].1)),
    ];
    write(&root.join("stream_decoder"), &stream_seeds);

    write(&root.join("tls_record"), &tls_record_seeds());
}

/// tls_record inputs (see README.md): garbage with a valid header, a plaintext client, a
/// header too long; round trips with a KeyUpdate and a close, one with a corrupted byte; TLS 1.2
/// garbage and a round trip.
fn tls_record_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut forged = vec![0, 3, 1, 2, 9, 23, 3, 3, 0, 40];
    forged.extend_from_slice(&[0x5a; 40]);
    let mut plaintext = vec![1, 0];
    plaintext.extend_from_slice(b"GET /metrics HTTP/1.1\r\n\r\n");
    // mode 3: ChaCha20, round trip. Three flushes: [len][bytes][repeat][key update].
    let mut flushes = vec![3, 3, 5];
    flushes.extend_from_slice(b"hello");
    flushes.extend_from_slice(&[1, 0, 4]);
    flushes.extend_from_slice(b"abcd");
    flushes.extend_from_slice(&[63, 1, 1, b'z', 0, 0]);
    let round_trip =
        |close: &[u8], corrupt: &[u8], cuts: &[u8]| [&flushes[..], close, corrupt, cuts].concat();
    let tls12_forged = [&[4][..], &forged[1..]].concat();
    vec![
        ("garbage_forged_record", forged),
        ("garbage_plaintext_http", plaintext),
        (
            "garbage_too_long",
            vec![0, 1, 2, 23, 3, 3, 0x41, 0x05, 1, 2, 3],
        ),
        (
            "round_trip_key_update_close",
            round_trip(&[1, 3, 1, 2, 3], &[0], &[1, 2, 3, 4, 5, 0xC1, 7, 0xD0]),
        ),
        ("round_trip_no_close", round_trip(&[0], &[0], &[0xFF])),
        (
            "round_trip_corrupted",
            round_trip(&[1, 0], &[1, 0, 0, 0, 40, 1], &[17, 31, 2]),
        ),
        // mode bit 2: TLS 1.2 (4: AES-256-GCM, garbage; 7: ChaCha20, round trip).
        ("tls12_garbage_forged_record", tls12_forged),
        (
            "tls12_round_trip_close",
            [
                &[7][..],
                &round_trip(&[1, 3, 1, 2, 3], &[0], &[1, 2, 3, 4, 5, 0xC1, 7, 0xD0])[1..],
            ]
            .concat(),
        ),
    ]
}
