//! A receiver of a numbered stream on its own thread (included with `#[path]` by the tests
//! that use it; it needs `common`): every DELIVER's payload starts with its index, 0, 1,
//! 2, ..., and a payload whose index is [`END`] ends the stream. It checks that every message
//! arrives once and in order, answers PINGs, and counts what it has read so far in `progress`.

use super::common::{Owned, Raw};
use ringrelay::protocol::Frame;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The payload index that ends a stream.
pub const END: u64 = u64::MAX;

/// Reads the stream on `raw` (registered as `id`) until END or `bound`: returns how many
/// messages came before END, or what broke the order (a gap, a repeat, the end of the
/// connection), and the connection, still open.
pub fn spawn_reader(
    raw: Raw,
    id: String,
    progress: Arc<AtomicU64>,
    bound: Duration,
) -> JoinHandle<(Result<u64, String>, Raw)> {
    std::thread::spawn(move || {
        let mut raw = raw;
        let read = read_stream(&mut raw, &id, &progress, Instant::now() + bound);
        (read, raw)
    })
}

fn read_stream(
    raw: &mut Raw,
    id: &str,
    progress: &AtomicU64,
    deadline: Instant,
) -> Result<u64, String> {
    let mut next = 0u64;
    loop {
        match raw.next_frame_by(deadline) {
            Ok(Owned::Deliver { payload, .. }) => {
                if take_numbered(&payload, &mut next).map_err(|e| format!("{id}: {e}"))? {
                    return Ok(next);
                }
                progress.store(next, Ordering::Relaxed);
            }
            Ok(Owned::Ping(nonce)) => raw.write_frame(Frame::Pong { nonce }),
            Ok(other) => return Err(format!("{id}: unexpected {other:?} after {next}")),
            Err(end) => return Err(format!("{id}: stream ended ({end:?}) after {next}")),
        }
    }
}

/// Takes the numbered `payload` where message `next` is due: true for END, false for
/// message `next` (then `next` counts it), or what broke the order.
pub fn take_numbered(payload: &[u8], next: &mut u64) -> Result<bool, String> {
    let index = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
    if index == END {
        return Ok(true);
    }
    if index != *next {
        return Err(format!("message {index} where {next} was due"));
    }
    *next += 1;
    Ok(false)
}

/// Numbered payload `index` of `len` bytes.
pub fn numbered(len: usize, index: u64) -> Vec<u8> {
    let mut payload = vec![0x5a; len.max(8)];
    payload[..8].copy_from_slice(&index.to_le_bytes());
    payload
}
