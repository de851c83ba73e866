//! Acknowledged delivery (protocol version 2): acked SENDs go by id like SENDs, ACKs go by id
//! back to the sender as RECEIPTs, and every ERROR about an acked SEND names the message.

use super::*;
use crate::core::location::Row;

const ID: MsgId = MsgId { epoch: 9, seq: 4 };

fn send_acked<'a>(target: &'a [u8], payload: &'a [u8]) -> Frame<'a> {
    Frame::SendAcked {
        target,
        id: ID,
        payload,
    }
}

fn ack(to: &[u8], upto: u64) -> Frame<'_> {
    Frame::Ack {
        to,
        gap: false,
        ack: AckFields {
            epoch: ID.epoch,
            upto,
            runs: Default::default(),
        },
    }
}

impl Harness {
    fn client_v1(&mut self, id: &[u8]) -> u32 {
        let slot = self.connect();
        self.frame(
            slot,
            Frame::Hello {
                version: 1,
                client_id: id,
                token: b"",
            },
        );
        self.rec.version_1.push(slot);
        slot
    }

    fn remote_row(&mut self, id: &[u8], node: u16) {
        let row = Row {
            location: Location::remote(node),
            epoch: 1,
        };
        self.tables
            .apply_remote_row(id, row, &mut self.scratch, &mut self.rec);
        self.rec.take();
    }
}

#[test]
fn an_acked_send_reaches_a_local_target_with_its_id_and_sender() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    let b = h.client(b"b");
    h.frame(a, send_acked(b"b", b"hi"));
    assert_eq!(
        h.rec.take(),
        vec![Out::DeliverAcked(b, b"a".to_vec(), ID, b"hi".to_vec())]
    );
}

#[test]
fn an_acked_send_to_an_unknown_id_gets_an_error_naming_the_message() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    h.frame(a, send_acked(b"nobody", b"hi"));
    assert_eq!(
        h.rec.take(),
        vec![
            Out::ErrorAcked(ErrorCode::UNKNOWN_ID, b"nobody".to_vec(), ID),
            Out::Count(Counter::UnknownId)
        ]
    );
}

#[test]
fn an_acked_send_to_a_client_of_another_node_is_forwarded_there_only() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    h.remote_row(b"far", 7);
    h.frame(a, send_acked(b"far", b"hi"));
    assert_eq!(
        h.rec.take(),
        vec![Out::FwdSendAcked(7, b"far".to_vec(), ID)]
    );
}

#[test]
fn an_acked_send_to_a_version_1_client_is_refused_by_name() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    let _old = h.client_v1(b"old");
    h.rec.take();
    h.frame(a, send_acked(b"old", b"hi"));
    assert_eq!(
        h.rec.take(),
        vec![Out::ErrorAcked(
            ErrorCode::ACK_UNSUPPORTED,
            b"old".to_vec(),
            ID
        )]
    );
}

#[test]
fn a_version_1_hello_is_welcomed_as_version_1_and_may_not_send_acked() {
    let mut h = Harness::new();
    let old = h.client_v1(b"old");
    assert_eq!(h.rec.take()[0], Out::Welcome(old, 1));
    h.frame(old, send_acked(b"old", b"hi"));
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::ProtocolErrorClose),
            Out::Close(old, CloseReason::PROTOCOL_ERROR)
        ]
    );
}

#[test]
fn an_oversized_acked_payload_is_refused_with_its_id() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    h.client(b"b");
    let big = vec![0u8; h.config.payload_bytes_max + 1];
    h.frame(a, send_acked(b"b", &big));
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::PayloadTooLarge),
            Out::LocalErrorAcked(a, ErrorCode::PAYLOAD_TOO_LARGE, ID)
        ]
    );
}

#[test]
fn an_ack_reaches_the_sender_as_a_receipt_here_or_on_its_node() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    let b = h.client(b"b");
    h.remote_row(b"far", 7);
    h.frame(b, ack(b"a", 12));
    h.frame(b, ack(b"far", 3));
    h.frame(b, ack(b"gone", 1));
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Receipt(a, b"b".to_vec(), false, 12),
            Out::FwdAck(7, b"b".to_vec(), b"far".to_vec(), 3),
            Out::Count(Counter::AckUnroutable)
        ]
    );
}

#[test]
fn forwarded_acked_sends_and_acks_are_delivered_here_or_counted_stale() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    let engine = Engine::new(&h.tables, &h.config);
    let guards = h.tables.guards();
    let fields = AckFields {
        epoch: 1,
        upto: 5,
        runs: Default::default(),
    };
    engine.on_forwarded_send_acked(&guards, b"far", b"a", ID, b"p", &mut h.rec);
    engine.on_forwarded_send_acked(&guards, b"far", b"gone", ID, b"p", &mut h.rec);
    engine.on_forwarded_ack(&guards, b"far", b"a", true, &fields, &mut h.rec);
    engine.on_forwarded_ack(&guards, b"far", b"gone", true, &fields, &mut h.rec);
    drop(guards);
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::ForwardedIn),
            Out::DeliverAcked(a, b"far".to_vec(), ID, b"p".to_vec()),
            Out::Count(Counter::ForwardedIn),
            Out::Count(Counter::ForwardedInStale),
            Out::Count(Counter::ForwardedIn),
            Out::Receipt(a, b"far".to_vec(), true, 5),
            Out::Count(Counter::ForwardedIn),
            Out::Count(Counter::ForwardedInStale),
        ]
    );
}
