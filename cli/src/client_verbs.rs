//! The client verbs: `listen`, `send`, `pub`, `sub`, `watch`. Payload and presence lines go
//! to stdout (flushed per line, nothing else printed there); diagnostics go to stderr.

use super::CliFailure;
use clap::Args;
use ringrelay::client::{Client, ClientError, Event};
use ringrelay::protocol::ErrorCode;
use std::io::{self, Write};
use std::time::{Duration, Instant};

/// Relay address used when `--server` is not given.
pub const DEFAULT_SERVER: &str = "127.0.0.1:7400";

/// How long `send` waits for an ERROR about its message (the relay does not acknowledge
/// deliveries, so silence within this window means the target was known).
const SEND_ERROR_WAIT_MS: u64 = 200;

/// Longest single `recv` wait when there is no deadline (the loop just waits again).
const IDLE_RECV_SLICE: Duration = Duration::from_secs(60);

/// Where to connect and how to authenticate.
#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// Relay address.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// Token sent in HELLO.
    #[arg(long, value_name = "T")]
    pub token: Option<String>,
}

/// When a receiving verb stops.
#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// Exit after this many lines (default: no limit).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Exit after this much total wall time; 0 means no timeout.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub timeout_ms: u64,
}

#[derive(Args, Debug, Clone)]
pub struct ListenArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Client id to register.
    #[arg(long, value_name = "ID")]
    pub id: String,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Args, Debug, Clone)]
pub struct SendArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Client id to register.
    #[arg(long, value_name = "ID")]
    pub id: String,
    /// Client id to deliver to.
    #[arg(long, value_name = "TARGET")]
    pub to: String,
    /// Message payload.
    pub payload: String,
}

#[derive(Args, Debug, Clone)]
pub struct PubArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Client id to register (default `pub-<pid>`).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Do not deliver to this connection even if it subscribes.
    #[arg(long)]
    pub no_echo: bool,
    pub topic: String,
    pub payload: String,
}

#[derive(Args, Debug, Clone)]
pub struct SubArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Client id to register (default `sub-<pid>`).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Queue group: each message goes to one member of the group.
    #[arg(long, value_name = "G")]
    pub group: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
    pub topic: String,
}

#[derive(Args, Debug, Clone)]
pub struct WatchArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Client id to register (default `watch-<pid>`).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Client ids to watch.
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
}

/// `ringrelay listen`.
pub fn listen(args: &ListenArgs) -> Result<(), CliFailure> {
    let mut client = connect(&args.conn, &args.id)?;
    print_lines(&mut client, &args.limits, payload_line)?;
    client.close()?;
    Ok(())
}

/// `ringrelay send`: exit status 2 when the relay reports the target unknown.
pub fn send(args: &SendArgs) -> Result<(), CliFailure> {
    let mut client = connect(&args.conn, &args.id)?;
    client.send(args.to.as_bytes(), args.payload.as_bytes())?;
    client.flush()?;
    let deadline = Instant::now() + Duration::from_millis(SEND_ERROR_WAIT_MS);
    while let Some(wait) = time_left(Some(deadline)) {
        match client.recv(wait)? {
            Some(Event::Error { code, .. }) if code == ErrorCode::UNKNOWN_ID => {
                let _ = client.close();
                return Err(CliFailure {
                    message: format!("unknown id {}", args.to),
                    exit_code: 2,
                });
            }
            Some(Event::Error { text, .. }) => {
                let _ = client.close();
                return Err(CliFailure::new(format!(
                    "relay refused the message: {text}"
                )));
            }
            Some(Event::Closed { reason, text }) => {
                return Err(ClientError::Closed { reason, text }.into())
            }
            Some(_) | None => {}
        }
    }
    client.close()?;
    Ok(())
}

/// `ringrelay pub`.
pub fn publish(args: &PubArgs) -> Result<(), CliFailure> {
    let id = id_or_default(&args.id, "pub");
    let mut client = connect(&args.conn, &id)?;
    if args.no_echo {
        client.publish_no_echo(args.topic.as_bytes(), args.payload.as_bytes())?;
    } else {
        client.publish(args.topic.as_bytes(), args.payload.as_bytes())?;
    }
    client.flush()?;
    client.close()?;
    Ok(())
}

/// `ringrelay sub`.
pub fn subscribe(args: &SubArgs) -> Result<(), CliFailure> {
    let id = id_or_default(&args.id, "sub");
    let mut client = connect(&args.conn, &id)?;
    let group = args.group.as_deref().unwrap_or_default();
    client.subscribe_group(args.topic.as_bytes(), group.as_bytes())?;
    print_lines(&mut client, &args.limits, payload_line)?;
    client.close()?;
    Ok(())
}

/// `ringrelay watch`.
pub fn watch(args: &WatchArgs) -> Result<(), CliFailure> {
    let id = id_or_default(&args.id, "watch");
    let mut client = connect(&args.conn, &id)?;
    for watched in &args.ids {
        client.watch(watched.as_bytes())?;
    }
    print_lines(&mut client, &args.limits, presence_line)?;
    client.close()?;
    Ok(())
}

fn connect(conn: &ConnArgs, id: &str) -> Result<Client, CliFailure> {
    let token = conn.token.as_deref().map(str::as_bytes);
    Ok(Client::connect(conn.server.as_str(), id.as_bytes(), token)?)
}

fn id_or_default(id: &Option<String>, verb: &str) -> String {
    id.clone()
        .unwrap_or_else(|| format!("{verb}-{}", std::process::id()))
}

fn payload_line(event: &Event) -> Option<String> {
    match event {
        Event::Message { payload, .. } => Some(String::from_utf8_lossy(payload).into_owned()),
        _ => None,
    }
}

fn presence_line(event: &Event) -> Option<String> {
    match event {
        Event::Presence { client_id, online } => {
            let state = if *online { "online" } else { "offline" };
            Some(format!("{state} {}", String::from_utf8_lossy(client_id)))
        }
        _ => None,
    }
}

/// Time until `deadline` (`None`: a long idle slice); `None` once the deadline has passed.
fn time_left(deadline: Option<Instant>) -> Option<Duration> {
    match deadline {
        None => Some(IDLE_RECV_SLICE),
        Some(d) => Some(d.saturating_duration_since(Instant::now())).filter(|w| !w.is_zero()),
    }
}

/// Prints `line_for(event)` for each event it maps, until `limits` says stop. A closed stdout
/// (for example `| head -1`) ends the loop quietly.
fn print_lines(
    client: &mut Client,
    limits: &LimitArgs,
    line_for: fn(&Event) -> Option<String>,
) -> Result<(), CliFailure> {
    let deadline = match limits.timeout_ms {
        0 => None,
        ms => Instant::now().checked_add(Duration::from_millis(ms)),
    };
    let mut stdout = io::stdout().lock();
    let mut printed: u64 = 0;
    while limits.count.map_or(true, |n| printed < n) {
        let Some(wait) = time_left(deadline) else {
            return Ok(());
        };
        let Some(event) = client.recv(wait)? else {
            continue;
        };
        if let Some(line) = line_for(&event) {
            match write_line(&mut stdout, &line) {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
                other => other?,
            }
            printed += 1;
            continue;
        }
        match event {
            Event::Closed { reason, text } => {
                return Err(ClientError::Closed { reason, text }.into())
            }
            Event::Error {
                code,
                subject,
                text,
            } => tracing::warn!(
                code = code.0,
                subject = %String::from_utf8_lossy(&subject),
                "relay error: {text}"
            ),
            _ => {}
        }
    }
    Ok(())
}

fn write_line(out: &mut impl Write, line: &str) -> io::Result<()> {
    writeln!(out, "{line}")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_render_payloads_and_presence() {
        let msg = Event::Message {
            sender: b"a".to_vec(),
            topic: None,
            payload: b"hi \xff".to_vec(),
        };
        assert_eq!(payload_line(&msg).as_deref(), Some("hi \u{fffd}"));
        assert_eq!(presence_line(&msg), None);
        let online = Event::Presence {
            client_id: b"bob".to_vec(),
            online: true,
        };
        let offline = Event::Presence {
            client_id: b"bob".to_vec(),
            online: false,
        };
        assert_eq!(presence_line(&online).as_deref(), Some("online bob"));
        assert_eq!(presence_line(&offline).as_deref(), Some("offline bob"));
        assert_eq!(payload_line(&online), None);
    }

    #[test]
    fn deadlines_and_default_ids() {
        assert_eq!(time_left(None), Some(IDLE_RECV_SLICE));
        assert_eq!(time_left(Some(Instant::now())), None);
        assert!(time_left(Some(Instant::now() + Duration::from_secs(5))).is_some());
        assert_eq!(id_or_default(&Some("x".into()), "pub"), "x");
        assert_eq!(
            id_or_default(&None, "sub"),
            format!("sub-{}", std::process::id())
        );
    }
}
