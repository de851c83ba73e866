//! The client verbs: `listen`, `send`, `pub`, `sub`, `watch`, `chat`. What arrives goes to
//! stdout in the chosen `--format` (flushed per message, nothing else printed there);
//! diagnostics go to stderr. Every verb uses a [`Session`]: a list of relays, and reconnection
//! after a lost connection.
//!
//! Exit status: 0 done (`--count` reached; without `--count`, the timeout passed after at least
//! one message); 1 failure (bad input, refused request); 2 `send` to an unknown id, or a usage
//! error; 3 the timeout passed before `--count` messages (without `--count`: before any); 4 no
//! relay (none reachable within `--connect-timeout-ms`, or the connection was lost and could
//! not be replaced, or the relay closed it for good); 5 `send --ack`: a message failed (not
//! acknowledged in time, or refused), with its reason.

use super::payload::{payloads, stdin, PayloadSource};
use super::render::{write_event, Format};
use super::secrets::read_private_file;
use super::CliFailure;
use clap::Args;
use ringrelay::client::{
    AckedSession, AckedSessionOptions, AckedStats, ClientError, ClientOptions, ClientTls, Event,
    Session, SessionOptions, SigningKey,
};
use ringrelay::endpoint::Endpoint;
use ringrelay::protocol::{payload_bytes_max, ErrorCode};
use std::io::{self, BufRead};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Relay address used when neither `--server` nor `RINGRELAY_SERVER` is given.
pub const DEFAULT_SERVER: &str = "127.0.0.1:7400";

/// Environment variable with the relay list (as `--server`).
pub const SERVER_ENV_VAR: &str = "RINGRELAY_SERVER";

/// Environment variable with the token (as `--token`, out of /proc/PID/cmdline).
pub const TOKEN_ENV_VAR: &str = "RINGRELAY_TOKEN";

/// Exit status: `send` to an unknown id.
pub const EXIT_UNKNOWN_ID: u8 = 2;
/// Exit status: a usage error (flags that contradict each other).
pub const EXIT_USAGE: u8 = 2;

/// Who should own a client's secret files, as a warning about their mode says.
const CLIENT_USER: &str = "the user the client runs as";
/// Exit status: the timeout passed before `--count` messages arrived.
pub const EXIT_TIMEOUT: u8 = 3;
/// Exit status: no relay could be reached, or the connection was lost for good.
pub const EXIT_NO_RELAY: u8 = 4;
/// Exit status: `send --ack`: at least one message failed.
pub const EXIT_ACK_FAILED: u8 = 5;

/// How long `send` waits for the relay to confirm it handled the messages.
const SEND_CONFIRM_WAIT: Duration = Duration::from_secs(5);

/// Longest single `recv` wait when there is no deadline (the loop just waits again).
const IDLE_RECV_SLICE: Duration = Duration::from_secs(60);

/// The largest frame the CLI reads: the relay's own upper bound on `max_frame_bytes` (every
/// DELIVER fits in what the relay announces).
const READ_FRAME_BYTES_MAX: usize = 1 << 30;

/// Where to connect and how to authenticate.
#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// Relays, comma-separated HOST:PORT, tried in turn; after a lost connection the next one
    /// is used.
    #[arg(
        long,
        value_name = "ADDR[,ADDR...]",
        env = SERVER_ENV_VAR,
        default_value = DEFAULT_SERVER,
        value_delimiter = ',',
        value_parser = parse_server,
    )]
    pub server: Vec<String>,
    /// Token sent in HELLO: the shared token, or NAME:SECRET of a credentials entry. On the
    /// command line every local user can read it (ps): prefer --token-file or RINGRELAY_TOKEN.
    #[arg(long, value_name = "T", env = TOKEN_ENV_VAR, hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the token (one line; a trailing newline is not part of it).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Private key file of a public-key credentials entry (`ringrelay keygen`): HELLO carries
    /// the entry's --name and the client signs the relay's challenge. No token is then sent.
    #[arg(long, value_name = "FILE", requires = "name")]
    pub key_file: Option<PathBuf>,
    /// Name of the public-key credentials entry whose key --key-file holds.
    #[arg(long, value_name = "NAME", requires = "key_file")]
    pub name: Option<String>,
    /// `--token` was typed on the command line (not taken from RINGRELAY_TOKEN): warned
    /// about, as `serve` does.
    #[arg(skip)]
    pub token_on_command_line: bool,
    /// How long to keep trying to reach a relay, at the start and after a lost connection.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub connect_timeout_ms: u64,
    #[command(flatten)]
    pub tls: TlsConnArgs,
}

/// TLS to the relay's `tls_listen` port.
#[derive(Args, Debug, Clone, Default)]
pub struct TlsConnArgs {
    /// Dial over TLS, trusting the CA certificates in FILE (PEM) for the relay's certificate.
    #[arg(long, value_name = "FILE", env = "RINGRELAY_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) presented when the relay asks for one
    /// (`tls_client_auth`); needs --tls-key-file.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key_file", "tls_ca_file"])]
    pub tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert-file.
    #[arg(long, value_name = "FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// The name the relay's certificate must carry. Default: the host of the first --server
    /// when it is a DNS name, else the IP address dialed.
    #[arg(long, value_name = "NAME", requires = "tls_ca_file")]
    pub tls_server_name: Option<String>,
}

/// When a receiving verb stops.
#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// Exit after this many messages (or presence lines for `watch`); default: no limit.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Exit after this much total wall time; 0 means no timeout.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub timeout_ms: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Args, Debug, Clone)]
#[command(after_help = "Example:\n  ringrelay listen --id bob --count 1\n\n\
                        Acknowledged messages (`send --ack`) are acknowledged and printed once \
                        each.")]
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
#[command(
    after_help = "Examples:\n  ringrelay send --id alice --to bob 'hello bob'\n  \
                        ringrelay send --id alice --to bob @photo.jpg\n  \
                        seq 1 100 | ringrelay send --id alice --to bob --count 100 -"
)]
pub struct SendArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Client id to register.
    #[arg(long, value_name = "ID")]
    pub id: String,
    /// Client id to deliver to.
    #[arg(long, value_name = "TARGET")]
    pub to: String,
    /// Send one message per line of standard input, at most N (the payload must be `-`).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Wait (up to --connect-timeout-ms) until TARGET is online before sending, instead of
    /// failing with `unknown id`: for scripts that start the receiver just before.
    #[arg(long)]
    pub wait_for_target: bool,
    /// Acknowledged delivery: wait until TARGET's client has each message (exit 0), or until
    /// it fails (exit 5 with the reason); sent again on loss, and to a TARGET that is not
    /// online yet once it comes online. Counters are printed on stderr at the end.
    #[arg(long)]
    pub ack: bool,
    /// With --ack: a message not acknowledged within this time fails.
    #[arg(long, value_name = "MS", default_value_t = 30_000, requires = "ack")]
    pub ack_timeout_ms: u64,
    /// The payload: the text itself, `-` for standard input, or `@FILE` (bytes as they are).
    pub payload: String,
}

#[derive(Args, Debug, Clone)]
#[command(after_help = "Examples:\n  ringrelay pub news 'hello everyone'\n  \
                        tail -f app.log | ringrelay pub --count 1000000 logs -")]
pub struct PubArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Client id to register (default `pub-<pid>`).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Do not deliver to this client's own subscriptions (only useful with `chat`, or a
    /// program holding the same id).
    #[arg(long)]
    pub no_echo: bool,
    /// Publish one message per line of standard input, at most N (the payload must be `-`).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    pub topic: String,
    /// The payload: the text itself, `-` for standard input, or `@FILE` (bytes as they are).
    pub payload: String,
}

#[derive(Args, Debug, Clone)]
#[command(after_help = "Example:\n  ringrelay sub --format json news")]
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
#[command(after_help = "Example:\n  ringrelay watch alice bob")]
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

/// `--server` entries: HOST:PORT (a host name or an address, IPv6 in brackets), by the parser
/// `serve` and the config file use; port 0 is refused (it cannot be dialled).
fn parse_server(arg: &str) -> Result<String, String> {
    let endpoint: Endpoint = arg.parse()?;
    if endpoint.port() == 0 {
        return Err(format!("'{arg}' has port 0, which cannot be dialled"));
    }
    Ok(endpoint.to_string())
}

/// `ringrelay listen`: acknowledges acknowledged messages and prints each once; their
/// counters go to stderr at the end if any came.
pub fn listen(args: &ListenArgs) -> Result<(), CliFailure> {
    let mut session = connect_acked(&args.conn, &args.id, AckedSessionOptions::default())?;
    let printed = print_events(&mut session, &args.limits, false);
    if let Ok(stats) = session.close() {
        if stats.receiver.delivered + stats.receiver.duplicates_suppressed > 0 {
            eprintln!("{}", receiver_summary(&stats));
        }
    }
    printed
}

/// `ringrelay send`: exit status 2 when the relay reports the target unknown.
pub fn send(args: &SendArgs) -> Result<(), CliFailure> {
    if args.ack {
        return super::acked_send::send_acked(args);
    }
    let source = PayloadSource::parse(&args.payload);
    let mut session = connect(&args.conn, &args.id)?;
    let max = payload_bytes_max(session.relay_max_frame_bytes());
    let messages = payloads(&source, args.count, max, &mut stdin())?;
    if args.wait_for_target {
        let bound = Duration::from_millis(args.conn.connect_timeout_ms);
        await_online(&mut session, &args.to, bound)?;
    }
    for payload in &messages {
        session
            .send(args.to.as_bytes(), payload)
            .map_err(no_relay)?;
    }
    confirm(&mut session, &args.to)?;
    let _ = session.close();
    Ok(())
}

/// `ringrelay pub`.
pub fn publish(args: &PubArgs) -> Result<(), CliFailure> {
    let id = id_or_default(&args.id, "pub");
    let source = PayloadSource::parse(&args.payload);
    let mut session = connect(&args.conn, &id)?;
    let max = payload_bytes_max(session.relay_max_frame_bytes());
    let messages = payloads(&source, args.count, max, &mut stdin())?;
    for payload in &messages {
        let topic = args.topic.as_bytes();
        let sent = if args.no_echo {
            session.publish_no_echo(topic, payload)
        } else {
            session.publish(topic, payload)
        };
        sent.map_err(no_relay)?;
    }
    confirm(&mut session, &args.topic)?;
    let _ = session.close();
    Ok(())
}

/// `ringrelay sub`.
pub fn subscribe(args: &SubArgs) -> Result<(), CliFailure> {
    let id = id_or_default(&args.id, "sub");
    let mut session = connect(&args.conn, &id)?;
    let group = args.group.as_deref().unwrap_or_default();
    session
        .subscribe_group(args.topic.as_bytes(), group.as_bytes())
        .map_err(no_relay)?;
    print_events(&mut session, &args.limits, false)?;
    let _ = session.close();
    Ok(())
}

/// `ringrelay watch`.
pub fn watch(args: &WatchArgs) -> Result<(), CliFailure> {
    let id = id_or_default(&args.id, "watch");
    let mut session = connect(&args.conn, &id)?;
    for watched in &args.ids {
        session.watch(watched.as_bytes()).map_err(no_relay)?;
    }
    print_events(&mut session, &args.limits, true)?;
    let _ = session.close();
    Ok(())
}

/// A session to the relays of `conn`, registered as `id`.
pub fn connect(conn: &ConnArgs, id: &str) -> Result<Session, CliFailure> {
    Session::connect(id.as_bytes(), session_options(conn)?).map_err(no_relay)
}

/// The session settings of `conn`: its relays, token (or entry name and key) and reconnect
/// bound; frames up to the relay's own upper bound.
fn session_options(conn: &ConnArgs) -> Result<SessionOptions, CliFailure> {
    let (token, signing_key) = credentials(conn)?;
    Ok(SessionOptions {
        servers: conn.server.clone(),
        token,
        reconnect_timeout: Duration::from_millis(conn.connect_timeout_ms),
        client: ClientOptions {
            max_frame_bytes: READ_FRAME_BYTES_MAX,
            signing_key,
            tls: client_tls(&conn.tls, &conn.server)?,
            ..ClientOptions::default()
        },
        ..SessionOptions::default()
    })
}

/// The TLS settings of `--tls-*`, or `None` for plain TCP. A file that does not load is an
/// error naming the flag and the file.
fn client_tls(tls: &TlsConnArgs, servers: &[String]) -> Result<Option<ClientTls>, CliFailure> {
    let Some(ca_file) = &tls.tls_ca_file else {
        return Ok(None);
    };
    let identity = match (&tls.tls_cert_file, &tls.tls_key_file) {
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        _ => None,
    };
    let server_name = tls
        .tls_server_name
        .clone()
        .or_else(|| servers.first().and_then(|s| dns_host(s)));
    ClientTls::new(ca_file, identity, server_name.as_deref())
        .map(Some)
        .map_err(|e| CliFailure {
            message: e.to_string(),
            exit_code: EXIT_USAGE,
        })
}

/// The host of `HOST:PORT` when it is a DNS name (not an IP address, bracketed or not).
fn dns_host(server: &str) -> Option<String> {
    let (host, _port) = server.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(_) => None,
        Err(_) if host.is_empty() => None,
        Err(_) => Some(host.to_string()),
    }
}

/// HELLO's token, and the key that answers a CHALLENGE (with `--key-file`).
type HelloCredentials = (Option<Vec<u8>>, Option<Arc<SigningKey>>);

/// What HELLO carries: the token (`--token`, `RINGRELAY_TOKEN` or `--token-file`), or the
/// entry name with its key (`--name`, `--key-file`). Two of them at once is a usage error
/// naming where each came from; a token typed on the command line is warned about.
fn credentials(conn: &ConnArgs) -> Result<HelloCredentials, CliFailure> {
    let token_source = match conn.token_on_command_line {
        true => "--token",
        false => TOKEN_ENV_VAR,
    };
    let usage = |message: String| CliFailure {
        message,
        exit_code: EXIT_USAGE,
    };
    if conn.token.is_some() && conn.token_file.is_some() {
        return Err(usage(format!(
            "{token_source} and --token-file are both set: give one"
        )));
    }
    if let (Some(path), Some(name)) = (&conn.key_file, &conn.name) {
        if conn.token.is_some() || conn.token_file.is_some() {
            let other = match conn.token_file {
                Some(_) => "--token-file",
                None => token_source,
            };
            return Err(usage(format!(
                "--key-file and {other} are both set: a key client sends its entry's --name, \
                 no token"
            )));
        }
        let text = read_private_file("--key-file", path, CLIENT_USER)
            .map_err(|e| CliFailure::new(format!("cannot read {}: {e}", path.display())))?;
        let key = SigningKey::parse(&text)
            .map_err(|e| CliFailure::new(format!("--key-file {}: {e}", path.display())))?;
        return Ok((Some(name.as_bytes().to_vec()), Some(Arc::new(key))));
    }
    if conn.token_on_command_line {
        tracing::warn!(
            "--token was given on the command line, where every local user can read it \
             (/proc/PID/cmdline, ps); use --token-file FILE or {TOKEN_ENV_VAR} instead"
        );
    }
    if let Some(path) = &conn.token_file {
        let text = read_private_file("--token-file", path, CLIENT_USER)
            .map_err(|e| CliFailure::new(format!("cannot read {}: {e}", path.display())))?;
        let token = ringrelay::secret_files::secret_in_file_text(&text);
        if token.is_empty() {
            return Err(CliFailure::new(format!(
                "{} holds no token",
                path.display()
            )));
        }
        return Ok((Some(token.as_bytes().to_vec()), None));
    }
    Ok((conn.token.as_ref().map(|t| t.as_bytes().to_vec()), None))
}

/// An acknowledged-delivery session to the relays of `conn`, registered as `id`.
pub fn connect_acked(
    conn: &ConnArgs,
    id: &str,
    mut opts: AckedSessionOptions,
) -> Result<AckedSession, CliFailure> {
    opts.session = session_options(conn)?;
    AckedSession::connect(id.as_bytes(), opts).map_err(no_relay)
}

/// The receiving side's counters, one line.
pub fn receiver_summary(stats: &AckedStats) -> String {
    let r = &stats.receiver;
    format!(
        "acked: delivered {} once each, duplicates suppressed {}, acks sent {} (gap reports {})",
        r.delivered, r.duplicates_suppressed, r.acks_sent, r.gap_reports_sent
    )
}

/// What the receiving verbs read from: a plain or an acknowledged-delivery session.
pub trait Receive {
    fn recv(&mut self, timeout: Duration) -> Result<Option<Event>, ClientError>;
}

impl Receive for Session {
    fn recv(&mut self, timeout: Duration) -> Result<Option<Event>, ClientError> {
        Session::recv(self, timeout)
    }
}

impl Receive for AckedSession {
    fn recv(&mut self, timeout: Duration) -> Result<Option<Event>, ClientError> {
        AckedSession::recv(self, timeout)
    }
}

/// A client error that ends the verb: exit status 4 when it means no relay, else 1. A refused
/// connection gets a hint that the relay may not be running.
pub fn no_relay(e: ClientError) -> CliFailure {
    let exit_code = match &e {
        ClientError::Connect { .. }
        | ClientError::Timeout { .. }
        | ClientError::Io(_)
        | ClientError::Disconnected
        | ClientError::Closed { .. } => EXIT_NO_RELAY,
        _ => 1,
    };
    let mut message = e.to_string();
    if let ClientError::Connect { source, .. } = &e {
        if source.kind() == io::ErrorKind::ConnectionRefused {
            message.push_str(
                " (is the relay running? `ringrelay serve` starts one; --server or \
                 RINGRELAY_SERVER name another)",
            );
        }
    }
    CliFailure { message, exit_code }
}

/// Waits until the relay has handled everything sent (a PING/PONG round trip: frames of one
/// connection are handled in order), failing on an ERROR about `what`.
fn confirm(session: &mut Session, what: &str) -> Result<(), CliFailure> {
    let events = session.round_trip(SEND_CONFIRM_WAIT).map_err(no_relay)?;
    for event in events {
        match event {
            Event::Error { code, .. } if code == ErrorCode::UNKNOWN_ID => {
                return Err(CliFailure {
                    message: format!("unknown id {what}"),
                    exit_code: EXIT_UNKNOWN_ID,
                });
            }
            Event::Error { text, .. } => {
                return Err(CliFailure::new(format!(
                    "relay refused the message: {text}"
                )));
            }
            Event::Reconnected { server } => {
                return Err(CliFailure {
                    message: format!(
                        "the connection was lost before the relay confirmed the messages \
                         (now connected to {server}); some may not have been sent"
                    ),
                    exit_code: EXIT_NO_RELAY,
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Waits until `id` is online (the relay answers a WATCH with the present state first), at
/// most `bound`; exit status 2 when it never comes.
fn await_online(session: &mut Session, id: &str, bound: Duration) -> Result<(), CliFailure> {
    session.watch(id.as_bytes()).map_err(no_relay)?;
    let deadline = Instant::now() + bound;
    loop {
        let Some(wait) = time_left(Some(deadline)) else {
            return Err(CliFailure {
                message: format!("{id} did not come online within {} ms", bound.as_millis()),
                exit_code: EXIT_UNKNOWN_ID,
            });
        };
        match session.recv(wait).map_err(no_relay)? {
            Some(Event::Presence { client_id, online }) if client_id == id.as_bytes() && online => {
                return session.unwatch(id.as_bytes()).map_err(no_relay);
            }
            Some(Event::Presence { .. }) => {}
            Some(other) => report(other)?,
            None => {}
        }
    }
}

pub fn id_or_default(id: &Option<String>, verb: &str) -> String {
    id.clone()
        .unwrap_or_else(|| format!("{verb}-{}", std::process::id()))
}

/// Time until `deadline` (`None`: a long idle slice); `None` once the deadline has passed.
pub fn time_left(deadline: Option<Instant>) -> Option<Duration> {
    match deadline {
        None => Some(IDLE_RECV_SLICE),
        Some(d) => Some(d.saturating_duration_since(Instant::now())).filter(|w| !w.is_zero()),
    }
}

/// Prints what arrives in `limits.format` until `limits` says stop: messages (or, with
/// `presence`, presence changes). A closed stdout (for example `| head -1`) ends the loop
/// quietly. Returns the exit status's reason as an error (timeout: 3, lost relay: 4).
pub fn print_events(
    session: &mut impl Receive,
    limits: &LimitArgs,
    presence: bool,
) -> Result<(), CliFailure> {
    let deadline = match limits.timeout_ms {
        0 => None,
        ms => Instant::now().checked_add(Duration::from_millis(ms)),
    };
    let mut stdout = io::stdout().lock();
    let mut printed: u64 = 0;
    while limits.count.map_or(true, |n| printed < n) {
        let Some(wait) = time_left(deadline) else {
            return timed_out(printed, limits.count);
        };
        let Some(event) = session.recv(wait).map_err(no_relay)? else {
            continue;
        };
        // An acknowledged message prints as a direct message (it was de-duplicated already).
        let event = match event {
            Event::AckedMessage {
                sender, payload, ..
            } => Event::Message {
                sender,
                topic: None,
                payload,
                reply: None,
                headers: None,
            },
            other => other,
        };
        let shown = match &event {
            Event::Message { .. } if !presence => true,
            Event::Presence { .. } if presence => true,
            _ => false,
        };
        if shown {
            match write_event(&mut stdout, limits.format, &event) {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(CliFailure::new(format!("cannot write output: {e}"))),
                Ok(_) => {}
            }
            printed += 1;
            continue;
        }
        report(event)?;
    }
    Ok(())
}

/// Events a verb does not print: diagnostics on stderr, or the end of the session.
pub fn report(event: Event) -> Result<(), CliFailure> {
    match event {
        Event::Closed { reason, text } => Err(no_relay(ClientError::Closed { reason, text })),
        Event::Error {
            code,
            subject,
            text,
        } => {
            tracing::warn!(
                code = code.0,
                subject = %String::from_utf8_lossy(&subject),
                "relay error: {text}"
            );
            Ok(())
        }
        Event::Reconnected { server } => {
            tracing::warn!("connection lost; reconnected to {server}");
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The timeout passed: success only without `--count` and after at least one message.
pub fn timed_out(printed: u64, count: Option<u64>) -> Result<(), CliFailure> {
    if count.is_none() && printed > 0 {
        return Ok(());
    }
    let wanted = count.map_or_else(|| "any".to_string(), |n| n.to_string());
    Err(CliFailure {
        message: format!("timed out after {printed} of {wanted} messages"),
        exit_code: EXIT_TIMEOUT,
    })
}

/// Reads lines of `input` on a thread of its own and hands them over a channel (ends with
/// the input); bounded, so a fast producer waits for the relay.
pub fn lines_of(
    input: impl BufRead + Send + 'static,
) -> std::sync::mpsc::Receiver<io::Result<Vec<u8>>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1024);
    std::thread::spawn(move || {
        let mut input = input;
        loop {
            let mut line = Vec::new();
            match input.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    if tx.send(Ok(line)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_must_be_host_and_port_and_the_error_echoes_the_input() {
        assert_eq!(parse_server("h:1").unwrap(), "h:1");
        assert_eq!(parse_server("[::1]:7400").unwrap(), "[::1]:7400");
        let err = parse_server("127.0.0.1").unwrap_err();
        assert!(err.contains("'127.0.0.1'"), "{err}");
        assert!(parse_server(":7400").is_err());
        assert!(parse_server("h:0").is_err());
        assert!(parse_server("h:x").is_err());
    }

    fn conn_args(args: &[&str]) -> ConnArgs {
        use clap::{CommandFactory, FromArgMatches};
        let argv = [&["ringrelay", "watch"], args, &["someone"]].concat();
        let matches = crate::Cli::command().try_get_matches_from(argv).unwrap();
        let (_, verb) = matches.subcommand().unwrap();
        let mut conn = ConnArgs::from_arg_matches(verb).unwrap();
        conn.token_on_command_line = verb.value_source("token").is_some();
        conn
    }

    #[test]
    fn the_tls_server_name_defaults_to_a_dns_host_never_an_ip() {
        assert_eq!(
            dns_host("relay1.example:7443").as_deref(),
            Some("relay1.example")
        );
        assert_eq!(dns_host("localhost:7443").as_deref(), Some("localhost"));
        assert_eq!(dns_host("10.0.0.1:7443"), None);
        assert_eq!(dns_host("[::1]:7443"), None);
        assert_eq!(dns_host(":7443"), None);
    }

    #[test]
    fn a_key_file_sends_the_entry_name_and_carries_the_key() {
        let dir = std::env::temp_dir().join(format!("rr-conn-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k");
        let key = SigningKey::generate().unwrap();
        std::fs::write(&path, key.file_text()).unwrap();
        let file = path.to_str().unwrap();
        let (token, signing_key) =
            credentials(&conn_args(&["--key-file", file, "--name", "sensor"])).unwrap();
        assert_eq!(token.as_deref(), Some(b"sensor".as_slice()));
        assert_eq!(signing_key.as_deref(), Some(&key));
        let both = credentials(&conn_args(&[
            "--key-file",
            file,
            "--name",
            "s",
            "--token",
            "t",
        ]));
        let both = both.unwrap_err();
        assert_eq!(both.exit_code, EXIT_USAGE);
        assert!(
            both.message.contains("--key-file and --token"),
            "{}",
            both.message
        );
        std::fs::write(&path, "not a key").unwrap();
        let bad = credentials(&conn_args(&["--key-file", file, "--name", "s"])).unwrap_err();
        assert!(bad.message.contains("ed25519-seed:"), "{}", bad.message);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_token_file_is_read_and_conflicts_with_a_token() {
        let dir = std::env::temp_dir().join(format!("rr-conn-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t");
        std::fs::write(&path, "game:s3cret\n").unwrap();
        let file = path.to_str().unwrap();
        let (token, key) = credentials(&conn_args(&["--token-file", file])).unwrap();
        assert_eq!(token.as_deref(), Some(b"game:s3cret".as_slice()));
        assert!(key.is_none());
        let both = credentials(&conn_args(&["--token-file", file, "--token", "t"])).unwrap_err();
        assert!(
            both.message.contains("--token and --token-file"),
            "{}",
            both.message
        );
        use clap::Parser;
        let name_alone = crate::Cli::try_parse_from(["ringrelay", "watch", "--name", "n", "x"]);
        assert!(name_alone.is_err(), "--name needs --key-file");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn timeouts_succeed_only_without_count_and_after_a_message() {
        assert!(timed_out(1, None).is_ok());
        assert_eq!(timed_out(0, None).unwrap_err().exit_code, EXIT_TIMEOUT);
        assert_eq!(timed_out(2, Some(3)).unwrap_err().exit_code, EXIT_TIMEOUT);
    }

    #[test]
    fn lost_relays_exit_4_and_refusals_carry_a_hint() {
        let refused = no_relay(ClientError::Connect {
            addr: "127.0.0.1:1".into(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        });
        assert_eq!(refused.exit_code, EXIT_NO_RELAY);
        assert!(refused.message.contains("is the relay running?"));
        assert_eq!(no_relay(ClientError::Disconnected).exit_code, EXIT_NO_RELAY);
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
