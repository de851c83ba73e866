//! `bench --ack --compare`: the anchor for acknowledged delivery, nats-server's JetStream
//! (`nats-server -js`), driven as its clients use it: a memory-storage stream, a publisher that
//! waits for its PubAcks asynchronously (at most as many outstanding as ringrelay's window),
//! and a push consumer with explicit acknowledgement that acks every message. Measured:
//! messages acknowledged by the consumer per second from the first publish to the last ack and
//! PubAck, and the publish-to-PubAck round trip (the publisher's confirmation).

use super::cpu::process_cpu_s;
use super::latency::{new_histogram, percentiles_us};
use super::nats_wire::NatsWire;
use super::runner::Measured;
use super::wire::{Conn, Sub, Wire, MARK_DATA};
use std::io::Read;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Bound on connecting and on each JetStream API request.
const SETUP_TIME_MAX: Duration = Duration::from_secs(10);
/// After the time cap, messages in flight get this long to end before the run stops.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// PubAcks outstanding at most: ringrelay's per-target window, so both keep as much in flight.
const OUTSTANDING_MAX: u64 = 4096;
/// Bytes read per `read` call.
const READ_CHUNK_BYTES: usize = 256 * 1024;

pub struct JetStreamJob {
    pub addr: std::net::SocketAddr,
    pub token: Option<String>,
    pub tls: Option<super::transport::LoadTls>,
    pub size_bytes: usize,
    pub count: u64,
    pub duration: Duration,
    pub server_pid: Option<u32>,
    pub tag: String,
}

/// One MSG: byte ranges of its subject, reply subject and payload in the scanned buffer.
struct Msg {
    subject: Range<usize>,
    reply: Range<usize>,
    payload: Range<usize>,
}

/// Scans whole protocol lines and messages at the front of `buf`: each MSG goes to `on_msg`,
/// each PING is answered in `replies`, an -ERR fails. Returns the bytes consumed.
fn scan(
    buf: &[u8],
    replies: &mut Vec<u8>,
    mut on_msg: impl FnMut(&[u8], Msg),
) -> Result<usize, String> {
    let mut pos = 0;
    while let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') {
        let line_end = pos + nl + 1;
        let line = &buf[pos..pos + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.starts_with(b"MSG ") {
            let tokens: Vec<Range<usize>> = tokens(line, pos);
            let (subject, reply, len) = match tokens.as_slice() {
                [_, s, _, r, n] => (s.clone(), r.clone(), n.clone()),
                [_, s, _, n] => (s.clone(), 0..0, n.clone()),
                _ => return Err(format!("bad MSG line: {}", String::from_utf8_lossy(line))),
            };
            let len: usize = std::str::from_utf8(&buf[len])
                .ok()
                .and_then(|n| n.parse().ok())
                .ok_or("bad MSG length")?;
            if buf.len() < line_end + len + 2 {
                return Ok(pos);
            }
            let payload = line_end..line_end + len;
            on_msg(
                buf,
                Msg {
                    subject,
                    reply,
                    payload,
                },
            );
            pos = line_end + len + 2;
            continue;
        }
        if line.starts_with(b"PING") {
            replies.extend_from_slice(b"PONG\r\n");
        } else if line.starts_with(b"-ERR") {
            return Err(String::from_utf8_lossy(line).into_owned());
        }
        pos = line_end;
    }
    Ok(pos)
}

/// Ranges (in the buffer, offset by `base`) of the space-separated tokens of `line`.
fn tokens(line: &[u8], base: usize) -> Vec<Range<usize>> {
    let mut out = Vec::with_capacity(5);
    let mut start = None;
    for (i, &b) in line.iter().enumerate() {
        match (b == b' ' || b == b'\t', start) {
            (true, Some(s)) => {
                out.push(base + s..base + i);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(base + s..base + line.len());
    }
    out
}

/// Reads once into `pending` (bounded by the socket's read timeout).
fn fill(conn: &mut Conn, chunk: &mut [u8]) -> Result<(), String> {
    match conn.stream.read(chunk) {
        Ok(0) => Err(format!(
            "{}: nats-server closed the connection",
            conn.client_id
        )),
        Ok(n) => {
            conn.pending.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) if super::wire::is_timeout(&e) => Ok(()),
        Err(e) => Err(format!("{}: read: {e}", conn.client_id)),
    }
}

/// A JetStream API request: publishes `body` to `subject` with a reply subject under the
/// publisher's inbox and returns the JSON answer, failing on an `"error"` in it.
fn request(conn: &mut Conn, inbox: &str, subject: &str, body: &str) -> Result<String, String> {
    let reply = format!("{inbox}.api");
    conn.write_all(format!("PUB {subject} {reply} {}\r\n{body}\r\n", body.len()).as_bytes())?;
    let deadline = Instant::now() + SETUP_TIME_MAX;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut replies = Vec::new();
    loop {
        let mut answer = None;
        let used = scan(&conn.pending, &mut replies, |buf, m| {
            if buf[m.subject.clone()] == *reply.as_bytes() {
                answer = Some(String::from_utf8_lossy(&buf[m.payload]).into_owned());
            }
        })?;
        conn.pending.drain(..used);
        if !replies.is_empty() {
            conn.write_all(&replies)?;
            replies.clear();
        }
        if let Some(answer) = answer {
            let json: serde_json::Value =
                serde_json::from_str(&answer).map_err(|e| format!("{subject}: {e}: {answer}"))?;
            if let Some(err) = json.get("error") {
                return Err(format!(
                    "{subject}: {err} (is nats-server running with -js?)"
                ));
            }
            return Ok(answer);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{subject}: no answer (is nats-server running with -js, JetStream enabled?)"
            ));
        }
        fill(conn, &mut chunk)?;
    }
}

/// Runs `job` against a JetStream-enabled nats-server.
pub fn run(job: &JetStreamJob) -> Result<Measured, String> {
    let wire = NatsWire {
        addr: job.addr,
        token: job.token.clone(),
        tls: job.tls.clone(),
    };
    let deadline = Instant::now() + SETUP_TIME_MAX;
    let name = job.tag.replace(['.', '-'], "_");
    let (stream, subject, deliver, inbox) = (
        format!("RR_{name}"),
        format!("rr_bench.{name}.msgs"),
        format!("rr_bench.{name}.deliver"),
        format!("_INBOX.{name}"),
    );
    let mut publisher = wire.connect(&format!("{}-js-pub", job.tag), deadline)?;
    let mut consumer = wire.connect(&format!("{}-js-sub", job.tag), deadline)?;
    wire.subscribe(&mut publisher, &Sub::Topic(format!("{inbox}.*")), deadline)?;
    wire.subscribe(&mut consumer, &Sub::Topic(deliver.clone()), deadline)?;
    let config = serde_json::json!({
        "name": stream, "subjects": [subject], "storage": "memory", "retention": "limits",
        "discard": "old", "num_replicas": 1,
    });
    request(
        &mut publisher,
        &inbox,
        &format!("$JS.API.STREAM.CREATE.{stream}"),
        &config.to_string(),
    )?;
    let consumer_config = serde_json::json!({
        "stream_name": stream,
        "config": {
            "deliver_subject": deliver, "ack_policy": "explicit", "deliver_policy": "all",
            "max_ack_pending": OUTSTANDING_MAX, "ack_wait": 30_000_000_000u64,
        },
    });
    let measured = request(
        &mut publisher,
        &inbox,
        &format!("$JS.API.CONSUMER.CREATE.{stream}"),
        &consumer_config.to_string(),
    )
    .and_then(|_| measure(job, &mut publisher, consumer, &subject, &inbox));
    // The stream goes whatever happened (memory storage: nothing is left on disk anyway).
    let deleted = request(
        &mut publisher,
        &inbox,
        &format!("$JS.API.STREAM.DELETE.{stream}"),
        "",
    );
    let m = measured?;
    deleted?;
    Ok(m)
}

/// Live counters shared by the three threads of a run.
struct Live {
    /// The publisher is done (or failed).
    stop: AtomicBool,
    published: AtomicU64,
    pub_acked: AtomicU64,
    /// PubAcks that carried an error (the publish was refused).
    refused: AtomicU64,
    consumed: AtomicU64,
    last_end_ns: AtomicU64,
}

fn measure(
    job: &JetStreamJob,
    publisher: &mut Conn,
    consumer: Conn,
    subject: &str,
    inbox: &str,
) -> Result<Measured, String> {
    let live = Live {
        stop: AtomicBool::new(false),
        published: AtomicU64::new(0),
        pub_acked: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        consumed: AtomicU64::new(0),
        last_end_ns: AtomicU64::new(0),
    };
    let sent_at_ns: Vec<AtomicU64> = (0..OUTSTANDING_MAX).map(|_| AtomicU64::new(0)).collect();
    let cpu_before = job.server_pid.map(process_cpu_s).transpose()?;
    let started = Instant::now();
    let writer = std::sync::Arc::clone(&publisher.writer);
    let result = std::thread::scope(|scope| {
        let consuming = scope.spawn(|| consume(consumer, job.count, &live, started));
        let acks = scope.spawn(|| read_pub_acks(publisher, job.count, &live, &sent_at_ns, started));
        let published = publish(job, &writer, subject, inbox, &live, &sent_at_ns, started);
        // Publishing is over: the other two end once what was published is in (or after
        // the grace).
        live.stop.store(true, Ordering::Release);
        let hist = acks
            .join()
            .map_err(|_| "PubAck thread panicked".to_string())?;
        let consumed = consuming
            .join()
            .map_err(|_| "consumer thread panicked".to_string())?;
        published?;
        Ok::<_, String>((hist?, consumed?))
    });
    let (hist, consumed) = result?;
    let cpu_after = job.server_pid.map(process_cpu_s).transpose()?;
    let published = live.published.load(Ordering::Acquire);
    let mut notes = Vec::new();
    if consumed < published {
        notes.push(format!(
            "the consumer got {consumed} of {published} messages"
        ));
    }
    Ok(Measured {
        sent: published,
        received: consumed,
        duration_s: live.last_end_ns.load(Ordering::Acquire) as f64 / 1e9,
        latency_us: percentiles_us(&hist),
        server_cpu_s: cpu_before.zip(cpu_after).map(|(a, b)| b - a),
        server_cpu_by_node_s: Vec::new(),
        errors: live.refused.load(Ordering::Acquire),
        errors_before_measure: 0,
        last_error: None,
        notes,
    })
}

fn ns_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Publishes with reply subjects `INBOX.N`, keeping at most `OUTSTANDING_MAX` PubAcks
/// outstanding (waiting for them asynchronously, as nats clients' PublishAsync does).
fn publish(
    job: &JetStreamJob,
    writer: &std::sync::Mutex<super::transport::WriteHalf>,
    subject: &str,
    inbox: &str,
    live: &Live,
    sent_at_ns: &[AtomicU64],
    started: Instant,
) -> Result<(), String> {
    let payload = super::sender::payload(MARK_DATA, job.size_bytes);
    let cap = started + job.duration;
    let mut out = Vec::with_capacity(64 * 1024);
    let mut next = 0u64;
    while next < job.count && Instant::now() < cap && !live.stop.load(Ordering::Acquire) {
        let acked = live.pub_acked.load(Ordering::Acquire);
        let room = (acked + OUTSTANDING_MAX)
            .saturating_sub(next)
            .min(job.count - next);
        if room == 0 {
            std::thread::yield_now();
            continue;
        }
        out.clear();
        for n in next..next + room {
            use std::io::Write;
            write!(out, "PUB {subject} {inbox}.{n} {}\r\n", payload.len())
                .map_err(|e| e.to_string())?;
            out.extend_from_slice(&payload);
            out.extend_from_slice(b"\r\n");
            sent_at_ns[(n % OUTSTANDING_MAX) as usize].store(ns_since(started), Ordering::Release);
        }
        super::wire::write_locked(writer, &out)?;
        next += room;
        live.published.store(next, Ordering::Release);
    }
    Ok(())
}

/// Counts PubAcks (on `INBOX.N`) and records each one's round trip.
fn read_pub_acks(
    conn: &mut Conn,
    count: u64,
    live: &Live,
    sent_at_ns: &[AtomicU64],
    started: Instant,
) -> Result<hdrhistogram::Histogram<u64>, String> {
    let mut hist = new_histogram()?;
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let mut replies = Vec::new();
    let mut stop_seen_at = None;
    loop {
        let mut acked = 0u64;
        let mut refused = 0u64;
        let now_ns = ns_since(started);
        let used = scan(&conn.pending, &mut replies, |buf, m| {
            let n = buf[m.subject.clone()]
                .rsplit(|&b| b == b'.')
                .next()
                .and_then(|t| std::str::from_utf8(t).ok())
                .and_then(|t| t.parse::<u64>().ok());
            if let Some(n) = n {
                // A refused publish is answered too: it ends (and frees its slot), counted.
                if buf[m.payload].windows(7).any(|w| w == b"\"error\"") {
                    refused += 1;
                }
                let at = sent_at_ns[(n % OUTSTANDING_MAX) as usize].load(Ordering::Acquire);
                hist.saturating_record(now_ns.saturating_sub(at).max(1));
                acked += 1;
            }
        })?;
        conn.pending.drain(..used);
        if !replies.is_empty() {
            conn.write_all(&replies)?;
            replies.clear();
        }
        if refused > 0 {
            live.refused.fetch_add(refused, Ordering::AcqRel);
        }
        if acked > 0 {
            let total = live.pub_acked.fetch_add(acked, Ordering::AcqRel) + acked;
            live.last_end_ns.fetch_max(now_ns, Ordering::AcqRel);
            if total >= count {
                return Ok(hist);
            }
        }
        let published = live.published.load(Ordering::Acquire);
        let all_acked = live.pub_acked.load(Ordering::Acquire) >= published;
        if live.stop.load(Ordering::Acquire) {
            let since = *stop_seen_at.get_or_insert_with(Instant::now);
            if all_acked || since.elapsed() > DRAIN_GRACE {
                return Ok(hist);
            }
        }
        fill(conn, &mut chunk)?;
    }
}

/// The push consumer: acknowledges every message (an empty PUB to its reply subject), all
/// of one read in one write. Returns the messages consumed.
fn consume(mut conn: Conn, count: u64, live: &Live, started: Instant) -> Result<u64, String> {
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let mut replies = Vec::new();
    let mut acks = Vec::new();
    let mut consumed = 0u64;
    let mut stop_seen_at = None;
    while consumed < count {
        let mut got = 0u64;
        let used = scan(&conn.pending, &mut replies, |buf, m| {
            if m.reply.is_empty() {
                return;
            }
            acks.extend_from_slice(b"PUB ");
            acks.extend_from_slice(&buf[m.reply]);
            acks.extend_from_slice(b" 0\r\n\r\n");
            got += 1;
        })?;
        conn.pending.drain(..used);
        acks.append(&mut replies);
        if !acks.is_empty() {
            conn.write_all(&acks)?;
            acks.clear();
        }
        if got > 0 {
            consumed += got;
            live.consumed.store(consumed, Ordering::Release);
            live.last_end_ns
                .fetch_max(ns_since(started), Ordering::AcqRel);
        }
        if live.stop.load(Ordering::Acquire) {
            let since = *stop_seen_at.get_or_insert_with(Instant::now);
            let published = live.published.load(Ordering::Acquire);
            if consumed >= published || since.elapsed() > DRAIN_GRACE {
                break;
            }
        }
        fill(&mut conn, &mut chunk)?;
    }
    Ok(consumed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scanner_finds_messages_with_and_without_reply_and_answers_pings() {
        let buf = b"INFO {}\r\nMSG a.b 1 _INBOX.x.7 2\r\nhi\r\nPING\r\nMSG d 2 3\r\nabc\r\nMSG e 1 5\r\nab";
        let mut replies = Vec::new();
        let mut seen = Vec::new();
        let used = scan(buf, &mut replies, |b, m| {
            seen.push((
                b[m.subject].to_vec(),
                b[m.reply].to_vec(),
                b[m.payload].to_vec(),
            ))
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![
                (b"a.b".to_vec(), b"_INBOX.x.7".to_vec(), b"hi".to_vec()),
                (b"d".to_vec(), Vec::new(), b"abc".to_vec()),
            ]
        );
        assert_eq!(replies, b"PONG\r\n");
        // The unfinished message is left for the next read.
        assert_eq!(&buf[used..], b"MSG e 1 5\r\nab");
    }

    #[test]
    fn an_error_line_fails_the_scan_with_its_text() {
        let err = scan(
            b"-ERR 'Authorization Violation'\r\n",
            &mut Vec::new(),
            |_, _| {},
        )
        .unwrap_err();
        assert!(err.contains("Authorization Violation"), "{err}");
    }
}
