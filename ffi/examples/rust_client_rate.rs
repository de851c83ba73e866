//! The Rust client's message rate, the baseline of `ffi/benches/c_client_rate.c`: the same
//! flow through `ringrelay::client::Client` (a sender queueing bursts of 1,024 16 B messages
//! and flushing after each, a receiver thread counting). Prints `msgs_per_sec N`.
//!
//! Usage: `rust_client_rate SERVER COUNT` (run by `benches/compare_c_client.sh`).

use ringrelay::client::{Client, Event};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BURST: u64 = 1024;
const PAYLOAD: [u8; 16] = [b'x'; 16];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (server, count) = match args.as_slice() {
        [_, server, count] => (
            server.clone(),
            count.parse::<u64>().expect("COUNT is a number"),
        ),
        _ => {
            eprintln!("usage: rust_client_rate SERVER COUNT");
            std::process::exit(2);
        }
    };
    let received = Arc::new(AtomicU64::new(0));
    let mut rx = Client::connect(server.as_str(), b"rx", None).expect("receiver connects");
    let counter = Arc::clone(&received);
    let receiver = std::thread::spawn(move || {
        let give_up = Instant::now() + Duration::from_secs(60);
        while counter.load(Ordering::Relaxed) < count && Instant::now() < give_up {
            if let Ok(Some(Event::Message { .. })) = rx.recv(Duration::from_millis(100)) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let mut tx = Client::connect(server.as_str(), b"tx", None).expect("sender connects");
    let started = Instant::now();
    let mut sent = 0;
    while sent < count {
        let burst = BURST.min(count - sent);
        for _ in 0..burst {
            tx.send(b"rx", &PAYLOAD).expect("send");
        }
        sent += burst;
        tx.flush().expect("flush");
        // Stay within a few bursts of the receiver, as the C program does.
        while sent - received.load(Ordering::Relaxed) > 64 * BURST {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    receiver.join().expect("receiver thread");
    let elapsed = started.elapsed().as_secs_f64();
    let got = received.load(Ordering::Relaxed);
    println!(
        "msgs_per_sec {:.0} received {got} of {count}",
        got as f64 / elapsed
    );
    let _ = tx.close();
    std::process::exit(if got == count { 0 } else { 1 });
}
