//! Two senders that flood one worker are served side by side: a receive that finds the ring
//! of receive buffers empty is re-armed in turns with the others that did, so a connection
//! that always has data cannot take every buffer while another waits for it to stop.

mod common;
#[path = "shared/stream_reader.rs"]
mod stream_reader;

use common::*;
use ringrelay::config::Config;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stream_reader::{numbered, spawn_reader, END};

const PAYLOAD: usize = 16;
const N: u64 = 3_000_000;
const BOUND: Duration = Duration::from_secs(60);

#[test]
fn two_senders_flooding_one_worker_are_served_side_by_side_not_one_after_the_other() {
    let relay = start(Config {
        workers: 1,
        ..config()
    });
    let addr = relay.local_addr();
    let flows: Vec<_> = ["a", "b"]
        .iter()
        .map(|name| {
            let id = format!("receiver-{name}");
            let mut raw = Raw::connect(addr);
            raw.handshake(&id);
            let progress = Arc::new(AtomicU64::new(0));
            let reader = spawn_reader(raw, id.clone(), Arc::clone(&progress), BOUND);
            let sender = connect(addr, &format!("sender-{name}"));
            (id, sender, reader, progress)
        })
        .collect();
    let mut senders = Vec::new();
    let mut watched = Vec::new();
    for (id, mut sender, reader, progress) in flows {
        senders.push(std::thread::spawn(move || {
            for i in 0..N {
                sender
                    .send(id.as_bytes(), &numbered(PAYLOAD, i))
                    .expect("send");
                if i % 64 == 63 {
                    sender.flush().expect("flush");
                }
            }
            sender
                .send(id.as_bytes(), &numbered(PAYLOAD, END))
                .expect("send END");
            sender.flush().expect("flush");
            sync(&mut sender)
        }));
        watched.push((reader, progress));
    }
    // When the first stream is whole, the other is well under way.
    let mut first_done = None;
    wait_until_within("a stream whole", BOUND, || {
        first_done = watched
            .iter()
            .position(|(_, p)| p.load(Ordering::Relaxed) == N);
        first_done.is_some()
    });
    let other = 1 - first_done.expect("one is whole");
    let other_progress = watched[other].1.load(Ordering::Relaxed);
    for sender in senders {
        assert_eq!(sender.join().expect("a sender thread"), vec![]);
    }
    for (reader, _) in watched {
        assert_eq!(reader.join().expect("a reader thread").0, Ok(N));
    }
    assert!(
        other_progress >= N / 4,
        "when one stream was whole the other had {other_progress} of {N}"
    );
}
