//! The message lanes (`Engine::on_plain_send` with a receive's `SendMemo`, and
//! `Engine::on_plain_publish`) route a plain SEND or PUBLISH exactly as `on_frame` routes the
//! same frame.

use super::*;
use crate::core::SendMemo;

fn send<'a>(target: &'a [u8], payload: &'a [u8]) -> Frame<'a> {
    Frame::Send { target, payload }
}

impl Harness {
    /// One receive of plain SENDs from `slot` through the message lane (one memo for all).
    fn plain_sends(&mut self, slot: u32, sends: &[(&[u8], &[u8])]) {
        let engine = Engine::new(&self.tables, &self.config);
        let guards: Guards<'_> = self.tables.guards();
        let mut memo = SendMemo::default();
        for (target, payload) in sends {
            engine.on_plain_send(
                &mut self.conns[slot as usize],
                loc(slot),
                &guards,
                &mut memo,
                target,
                payload,
                &mut self.scratch,
                &mut self.rec,
            );
        }
    }
}

impl Harness {
    /// One plain PUBLISH from `slot` through the PUBLISH lane.
    fn plain_publish(&mut self, slot: u32, topic: &[u8], payload: &[u8], no_echo: bool) {
        let engine = Engine::new(&self.tables, &self.config);
        let guards: Guards<'_> = self.tables.guards();
        engine.on_plain_publish(
            &mut self.conns[slot as usize],
            loc(slot),
            &guards,
            topic,
            payload,
            no_echo,
            &mut self.scratch,
            &mut self.rec,
        );
    }
}

/// Whether `outputs` close the connection.
fn closes(outputs: &[Out]) -> bool {
    outputs
        .iter()
        .any(|o| matches!(o, Out::Close(_, _) | Out::CloseConn(_, _)))
}

/// The outputs of `sends` from a fresh relay with clients a, b and c, through the lane or
/// through `on_frame`, and the slot of a.
fn outputs(sends: &[(&[u8], &[u8])], lane: bool) -> Vec<Out> {
    let mut h = Harness::new();
    let a = h.client(b"a");
    h.client(b"b");
    h.client(b"c");
    if lane {
        h.plain_sends(a, sends);
    } else {
        for (target, payload) in sends {
            h.frame(a, send(target, payload));
        }
    }
    h.rec.take()
}

#[test]
fn a_receive_of_plain_sends_is_routed_as_the_same_send_frames() {
    let sends: [(&[u8], &[u8]); 7] = [
        (b"b", b"1"),
        (b"b", b"2"),
        (b"c", b"3"),
        (b"nobody", b"4"),
        (b"b", b"5"),
        (b"nobody", b"6"),
        (b"c", b"7"),
    ];
    let through_lane = outputs(&sends, true);
    assert_eq!(through_lane, outputs(&sends, false));
    let delivered = through_lane
        .iter()
        .filter(|o| matches!(o, Out::Deliver(..)))
        .count();
    assert_eq!(delivered, 5, "every SEND to a present id is delivered");
}

#[test]
fn a_plain_send_before_hello_is_refused_as_a_send_frame_is() {
    let refused = |lane: bool| {
        let mut h = Harness::new();
        h.client(b"b");
        let a = h.connect();
        if lane {
            h.plain_sends(a, &[(b"b", b"1")]);
        } else {
            h.frame(a, send(b"b", b"1"));
        }
        h.rec.take()
    };
    let through_lane = refused(true);
    assert_eq!(through_lane, refused(false));
    assert!(closes(&through_lane), "closed: {through_lane:?}");
}

#[test]
fn the_next_receive_follows_a_target_that_moved() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    let b_first = h.client(b"b");
    h.plain_sends(a, &[(b"b", b"1")]);
    h.close(b_first);
    let b_again = h.client(b"b");
    h.rec.take();
    h.plain_sends(a, &[(b"b", b"2")]);
    assert_eq!(
        h.rec.take(),
        vec![Out::Deliver(
            b_again,
            b"a".to_vec(),
            Vec::new(),
            b"2".to_vec()
        )]
    );
}

/// The outputs of `publishes` (topic, payload, no_echo) from client a of a fresh relay where
/// a, b and c subscribe to "t" and c to "u" too, through the PUBLISH lane or through
/// `on_frame`.
fn publish_outputs(publishes: &[(&[u8], &[u8], bool)], lane: bool) -> Vec<Out> {
    let mut h = Harness::new();
    let a = h.client(b"a");
    let b = h.client(b"b");
    let c = h.client(b"c");
    for (slot, topic) in [(a, b"t"), (b, b"t"), (c, b"t"), (c, b"u")] {
        h.frame(slot, Frame::Subscribe { topic, group: b"" });
    }
    h.rec.take();
    for &(topic, payload, no_echo) in publishes {
        if lane {
            h.plain_publish(a, topic, payload, no_echo);
        } else {
            h.frame(
                a,
                Frame::Publish {
                    topic,
                    payload,
                    no_echo,
                },
            );
        }
    }
    h.rec.take()
}

#[test]
fn a_plain_publish_is_routed_as_the_same_publish_frame() {
    let publishes: [(&[u8], &[u8], bool); 4] = [
        (b"t", b"1", false),
        (b"t", b"2", true),
        (b"u", b"3", false),
        (b"nobody", b"4", false),
    ];
    let through_lane = publish_outputs(&publishes, true);
    assert_eq!(through_lane, publish_outputs(&publishes, false));
    let delivered = through_lane
        .iter()
        .filter(|o| matches!(o, Out::Deliver(..)))
        .count();
    assert_eq!(delivered, 3 + 2 + 1, "t echoes to a only without NO_ECHO");
}

#[test]
fn a_plain_publish_before_hello_is_refused_as_a_publish_frame_is() {
    let refused = |lane: bool| {
        let mut h = Harness::new();
        let a = h.connect();
        let frame = Frame::Publish {
            topic: b"t",
            payload: b"1",
            no_echo: false,
        };
        if lane {
            h.plain_publish(a, b"t", b"1", false);
        } else {
            h.frame(a, frame);
        }
        h.rec.take()
    };
    let through_lane = refused(true);
    assert_eq!(through_lane, refused(false));
    assert!(closes(&through_lane), "closed: {through_lane:?}");
}

#[test]
fn a_plain_publish_past_payload_bytes_max_is_refused_as_a_publish_frame_is() {
    let too_long = vec![1u8; Harness::new().config.payload_bytes_max + 1];
    let publishes = [(&b"t"[..], &too_long[..], false), (b"t", b"fits", false)];
    let through_lane = publish_outputs(&publishes, true);
    assert_eq!(through_lane, publish_outputs(&publishes, false));
    assert!(
        through_lane.contains(&Out::Count(Counter::PayloadTooLarge)),
        "{through_lane:?}"
    );
    let delivered = through_lane
        .iter()
        .filter(|o| matches!(o, Out::Deliver(..)))
        .count();
    assert_eq!(delivered, 3, "only the one that fits, to a, b and c");
}
