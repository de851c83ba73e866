//! Drops away from the sender's receive are reported to the sender by its id: a forward this
//! node dropped at a bound goes back to the sender's node as FWD_DROPPED, one for a client of
//! this node becomes an ERROR OVERLOADED to it, and a report that comes in over a link is
//! delivered to its client here. What cannot be told is counted.

use super::*;

/// A client of node 2, as its row says.
fn remote_client(h: &mut Harness, id: &[u8]) {
    h.tables.apply_remote_row(
        id,
        crate::core::location::Row {
            location: Location {
                node: 2,
                worker: 0,
                slot: 9,
                generation: 1,
            },
            epoch: 1,
        },
        &mut h.scratch,
        &mut h.rec,
    );
    h.rec.take();
}

#[test]
fn forwards_dropped_at_a_bound_are_reported_once_to_the_senders_node_with_their_count() {
    let mut h = Harness::new();
    let full = h.client(b"full");
    h.frame(full, sub(b"news", b""));
    remote_client(&mut h, b"far-sender");
    h.rec.full_slot = Some(full);
    h.rec.take();
    let engine = Engine::new(&h.tables, &h.config);
    let guards = h.tables.guards();
    let mut reports = DropReports::default();
    let by_id = Message::plain(b"far-sender", b"", b"1");
    let by_topic = Message::plain(b"far-sender", b"news", b"2");
    for _ in 0..3 {
        engine.on_forwarded_send(&guards, b"full", &by_id, &mut reports, &mut h.rec);
    }
    engine.on_forwarded_publish(&guards, &by_topic, b"", &mut reports, &mut h.rec);
    assert!(!reports.is_empty());
    h.rec.take();
    engine.report_drops(&guards, &mut reports, &mut h.rec);
    assert_eq!(
        h.rec.take(),
        vec![
            Out::FwdDropped(2, b"far-sender".to_vec(), b"full".to_vec(), 3),
            Out::Count(Counter::DropReported),
            Out::FwdDropped(2, b"far-sender".to_vec(), b"news".to_vec(), 1),
            Out::Count(Counter::DropReported),
        ],
        "one report per subject, the subject a SEND's target or a PUBLISH's topic"
    );
    assert!(reports.is_empty(), "reported");
}

/// An acknowledged forward dropped at a bound is sent again by its sender's timer: it is not
/// reported, and the next forward of the same receive, delivered, is not blamed for it.
#[test]
fn an_acked_forward_dropped_at_a_bound_is_not_reported_nor_blamed_on_the_next_sender() {
    let mut h = Harness::new();
    let full = h.client(b"full");
    let healthy = h.client(b"healthy");
    remote_client(&mut h, b"acker");
    remote_client(&mut h, b"bystander");
    h.rec.full_slot = Some(full);
    let engine = Engine::new(&h.tables, &h.config);
    let guards = h.tables.guards();
    let mut reports = DropReports::default();
    let id = MsgId { epoch: 1, seq: 1 };
    engine.on_forwarded_send_acked(&guards, b"acker", b"full", id, b"1", &mut h.rec);
    let plain = Message::plain(b"bystander", b"", b"2");
    engine.on_forwarded_send(&guards, b"healthy", &plain, &mut reports, &mut h.rec);
    assert!(reports.is_empty(), "nothing of the bystander's was dropped");
    assert!(h.rec.take().contains(&Out::Deliver(
        healthy,
        b"bystander".to_vec(),
        vec![],
        b"2".to_vec()
    )));
}

#[test]
fn a_drop_of_a_local_senders_message_is_an_error_to_it_and_what_cannot_be_told_is_counted() {
    let mut h = Harness::new();
    let sender = h.client(b"near-sender");
    remote_client(&mut h, b"far-sender");
    let engine = Engine::new(&h.tables, &h.config);
    let guards = h.tables.guards();
    let mut reports = DropReports::default();
    reports.note(b"near-sender", b"target");
    reports.note(b"gone", b"target");
    reports.note(b"gone", b"target");
    engine.report_drops(&guards, &mut reports, &mut h.rec);
    assert_eq!(
        h.rec.take(),
        vec![
            Out::SendError(sender, ErrorCode::OVERLOADED, b"target".to_vec()),
            Out::Count(Counter::DropReported),
            Out::Count(Counter::DropsUnreported),
            Out::Count(Counter::DropsUnreported),
        ],
        "a sender nobody holds is not told; its two drops are counted"
    );
    // Reports whose own queue is full: counted, by the drops they stood for.
    h.rec.reports_refused = true;
    reports.note(b"near-sender", b"target");
    reports.note(b"far-sender", b"target");
    engine.report_drops(&guards, &mut reports, &mut h.rec);
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::DropsUnreported),
            Out::Count(Counter::DropsUnreported),
        ]
    );
}

#[test]
fn a_report_from_another_node_reaches_its_sender_here_and_is_counted_for_anyone_else() {
    let mut h = Harness::new();
    let sender = h.client(b"near-sender");
    remote_client(&mut h, b"moved");
    let engine = Engine::new(&h.tables, &h.config);
    let guards = h.tables.guards();
    engine.on_forwarded_dropped(&guards, b"near-sender", b"far-target", 5, &mut h.rec);
    assert_eq!(
        h.rec.take(),
        vec![Out::SendError(
            sender,
            ErrorCode::OVERLOADED,
            b"far-target".to_vec()
        )]
    );
    // Never forwarded again: a sender that moved, or left, is not told; the drops count.
    engine.on_forwarded_dropped(&guards, b"moved", b"far-target", 2, &mut h.rec);
    engine.on_forwarded_dropped(&guards, b"gone", b"far-target", 1, &mut h.rec);
    let unreported = h.rec.take();
    assert_eq!(unreported.len(), 3);
    assert!(unreported
        .iter()
        .all(|o| *o == Out::Count(Counter::DropsUnreported)));
}
