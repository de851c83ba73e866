//! `ringrelay req` and `ringrelay reply`: request/reply over topics (protocol version 3). A
//! requester subscribes to an inbox topic of its own and publishes with it as the reply topic;
//! a responder publishes its answer to the reply topic each request carries. The relay answers
//! a request nobody subscribes to with ERROR NO_RESPONDERS at once.

use super::client_verbs::{
    connect, id_or_default, no_relay, report, time_left, timed_out, ConnArgs, LimitArgs,
    EXIT_TIMEOUT, EXIT_UNKNOWN_ID,
};
use super::payload::{payloads, PayloadSource};
use super::render::{write_event, Format};
use super::CliFailure;
use clap::Args;
use ringrelay::client::{Event, Session};
use ringrelay::protocol::{payload_bytes_max, ErrorCode};
use std::io::{self, stdin};
use std::time::{Duration, Instant};

/// How long `req` waits for the relay to confirm its inbox subscription before publishing.
const SUBSCRIBE_CONFIRM_WAIT: Duration = Duration::from_secs(5);

#[derive(Args, Debug, Clone)]
#[command(after_help = "Examples:\n  ringrelay reply time.now \"$(date)\" &\n  \
                        ringrelay req time.now ''\n  \
                        ringrelay req --header 'Trace-Id: 7' --timeout-ms 500 jobs.run @job.json\n\n\
                        Exit status 2 when nobody subscribes to the topic anywhere (the relay \
                        says so at once), 3 when no answer came within --timeout-ms.")]
pub struct ReqArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Client id to register (default `req-<pid>`).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// How long to wait for the answer.
    #[arg(long, value_name = "MS", default_value_t = 5_000)]
    pub timeout_ms: u64,
    /// A header line `NAME: VALUE` sent with the request (repeatable); the headers go as a NATS
    /// header block, so NATS responders read them too.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Output format of the answer.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    pub topic: String,
    /// The request's payload: the text itself, `-` for standard input, or `@FILE`.
    pub payload: String,
}

#[derive(Args, Debug, Clone)]
#[command(after_help = "Examples:\n  ringrelay reply time.now \"$(date)\"\n  \
                        ringrelay reply --group workers --echo jobs.run\n\n\
                        Each request handled is printed as `sub` prints messages.")]
pub struct ReplyArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Client id to register (default `reply-<pid>`).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Queue group: each request goes to one responder of the group.
    #[arg(long, value_name = "G")]
    pub group: Option<String>,
    /// Answer each request with its own payload (instead of PAYLOAD).
    #[arg(long, conflicts_with = "payload")]
    pub echo: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
    pub topic: String,
    /// The answer: the text itself or `@FILE`.
    #[arg(required_unless_present = "echo")]
    pub payload: Option<String>,
}

/// `ringrelay req`.
pub fn request(args: &ReqArgs) -> Result<(), CliFailure> {
    let id = id_or_default(&args.id, "req");
    let headers = header_block(&args.headers)?;
    let mut session = connect(&args.conn, &id)?;
    let max = payload_bytes_max(session.relay_max_frame_bytes()).saturating_sub(headers.len());
    let source = PayloadSource::parse(&args.payload);
    let payload = payloads(&source, None, max, &mut stdin().lock())?
        .pop()
        .unwrap_or_default();
    let inbox = format!("_INBOX.{id}.{}", inbox_suffix());
    session.subscribe(inbox.as_bytes()).map_err(no_relay)?;
    // Frames of one connection are handled in order, so once the relay answers this round
    // trip the inbox is subscribed and the answer cannot miss it.
    for event in session
        .round_trip(SUBSCRIBE_CONFIRM_WAIT)
        .map_err(no_relay)?
    {
        report(event)?;
    }
    session
        .publish_with(args.topic.as_bytes(), inbox.as_bytes(), &headers, &payload)
        .map_err(no_relay)?;
    session.flush().map_err(no_relay)?;
    let answer = await_answer(&mut session, &args.topic, &inbox, args.timeout_ms)?;
    let mut stdout = io::stdout().lock();
    write_event(&mut stdout, args.format, &answer)
        .map_err(|e| CliFailure::new(format!("cannot write output: {e}")))?;
    let _ = session.close();
    Ok(())
}

/// Waits for the first message on `inbox`: the answer. NO_RESPONDERS about `topic` fails at
/// once (exit 2); the timeout fails with exit 3.
fn await_answer(
    session: &mut Session,
    topic: &str,
    inbox: &str,
    timeout_ms: u64,
) -> Result<Event, CliFailure> {
    let deadline = Instant::now().checked_add(Duration::from_millis(timeout_ms));
    loop {
        let Some(wait) = time_left(deadline) else {
            return Err(CliFailure {
                message: format!("no answer to {topic} within {timeout_ms} ms"),
                exit_code: EXIT_TIMEOUT,
            });
        };
        match session.recv(wait).map_err(no_relay)? {
            Some(answer @ Event::Message { .. }) if is_on(&answer, inbox) => return Ok(answer),
            Some(Event::Error { code, .. }) if code == ErrorCode::NO_RESPONDERS => {
                return Err(CliFailure {
                    message: format!("no responders: nobody subscribes to {topic}"),
                    exit_code: EXIT_UNKNOWN_ID,
                });
            }
            Some(other) => report(other)?,
            None => {}
        }
    }
}

fn is_on(event: &Event, topic: &str) -> bool {
    matches!(event, Event::Message { topic: Some(t), .. } if t == topic.as_bytes())
}

/// A unique part for an inbox topic: the process and the time, in hex.
fn inbox_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", std::process::id(), nanos)
}

/// The NATS header block for `lines` (`NATS/1.0`, each `NAME: VALUE`, an empty line); empty
/// without lines. A line without a colon, or with a line break, is refused.
fn header_block(lines: &[String]) -> Result<Vec<u8>, CliFailure> {
    if lines.is_empty() {
        return Ok(Vec::new());
    }
    let mut block = b"NATS/1.0\r\n".to_vec();
    for line in lines {
        let well_formed = line
            .split_once(':')
            .is_some_and(|(name, _)| !name.trim().is_empty())
            && !line.contains(['\r', '\n']);
        if !well_formed {
            return Err(CliFailure {
                message: format!("--header {line:?}: expected NAME: VALUE on one line"),
                exit_code: EXIT_UNKNOWN_ID,
            });
        }
        block.extend_from_slice(line.as_bytes());
        block.extend_from_slice(b"\r\n");
    }
    block.extend_from_slice(b"\r\n");
    Ok(block)
}

/// `ringrelay reply`.
pub fn reply(args: &ReplyArgs) -> Result<(), CliFailure> {
    let id = id_or_default(&args.id, "reply");
    let mut session = connect(&args.conn, &id)?;
    let max = payload_bytes_max(session.relay_max_frame_bytes());
    let answer = match (&args.payload, args.echo) {
        (Some(payload), false) => {
            let source = PayloadSource::parse(payload);
            if source == PayloadSource::Stdin {
                return Err(CliFailure {
                    message: "reply answers every request alike: give the answer as text or \
                              @FILE (or --echo)"
                        .into(),
                    exit_code: EXIT_UNKNOWN_ID,
                });
            }
            payloads(&source, None, max, &mut stdin().lock())?.pop()
        }
        _ => None,
    };
    let group = args.group.as_deref().unwrap_or_default();
    session
        .subscribe_group(args.topic.as_bytes(), group.as_bytes())
        .map_err(no_relay)?;
    serve_requests(&mut session, &args.limits, answer.as_deref())?;
    let _ = session.close();
    Ok(())
}

/// Answers requests until `limits` says stop: each message with a reply topic gets `answer`
/// (`None`: its own payload) on that topic, and is printed; a message without one is printed
/// and left unanswered.
fn serve_requests(
    session: &mut Session,
    limits: &LimitArgs,
    answer: Option<&[u8]>,
) -> Result<(), CliFailure> {
    let deadline = match limits.timeout_ms {
        0 => None,
        ms => Instant::now().checked_add(Duration::from_millis(ms)),
    };
    let mut stdout = io::stdout().lock();
    let mut handled: u64 = 0;
    while limits.count.map_or(true, |n| handled < n) {
        let Some(wait) = time_left(deadline) else {
            return timed_out(handled, limits.count);
        };
        let Some(event) = session.recv(wait).map_err(no_relay)? else {
            continue;
        };
        let Event::Message { reply, payload, .. } = &event else {
            report(event)?;
            continue;
        };
        if let Some(reply) = reply {
            let body = answer.unwrap_or(payload);
            session.publish(reply, body).map_err(no_relay)?;
            session.flush().map_err(no_relay)?;
        } else {
            tracing::warn!("a message without a reply topic: not answered");
        }
        match write_event(&mut stdout, limits.format, &event) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(CliFailure::new(format!("cannot write output: {e}"))),
            Ok(_) => {}
        }
        handled += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines_make_a_nats_header_block_and_bad_lines_are_refused() {
        assert_eq!(header_block(&[]).unwrap(), b"");
        let block = header_block(&["Trace-Id: 7".into(), "A:b".into()]).unwrap();
        assert_eq!(block, b"NATS/1.0\r\nTrace-Id: 7\r\nA:b\r\n\r\n");
        for bad in ["no colon", ": no name", "a: b\r\nc: d"] {
            assert_eq!(
                header_block(&[bad.into()]).unwrap_err().exit_code,
                EXIT_UNKNOWN_ID,
                "{bad:?}"
            );
        }
    }
}
