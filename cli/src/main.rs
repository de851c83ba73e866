//! The `ringrelay` binary: `serve`, the client verbs (`listen`, `send`, `pub`, `sub`, `req`,
//! `reply`, `watch`, `chat`), `passwd`, `keygen` and `bench` (the load generator crate, `ringrelay-loadgen`). The relay itself is
//! the `ringrelay` library; this crate adds the command line, logging and the global
//! allocator.
//!
//! Errors are printed as `ringrelay: <message>` on stderr. Exit status (also in `--help`): 1
//! for failures, 2 for `send` to an unknown id, a request nobody subscribes to, and usage
//! errors, 3 for a receiving verb's
//! timeout before `--count`, 4 when no relay can be reached or the connection is lost for good.

mod acked_send;
mod chat;
mod client_verbs;
mod keygen;
mod passwd;
mod payload;
mod render;
mod request_verbs;
mod secrets;
mod serve;
mod signals;

pub use chat::ChatArgs;
pub use client_verbs::{ConnArgs, ListenArgs, PubArgs, SendArgs, SubArgs, WatchArgs};
pub use keygen::KeygenArgs;
pub use passwd::PasswdArgs;
pub use request_verbs::{ReplyArgs, ReqArgs};
pub use serve::{parse_cpu_list, CpuList, ServeArgs};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::io::Write;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// Environment variable holding the log filter (tracing-subscriber `EnvFilter` syntax).
pub const LOG_ENV_VAR: &str = "RINGRELAY_LOG";

/// `--version`: the package version and the commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("RINGRELAY_BUILD_COMMIT"),
    ")"
);

/// Thread-per-core io_uring message relay.
#[derive(Parser, Debug)]
#[command(name = "ringrelay", version = VERSION, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The end of `ringrelay --help`: environment and exit status.
const AFTER_HELP: &str = "\
Environment:
  RINGRELAY_SERVER  relays for the client verbs, as --server (comma-separated HOST:PORT)
  RINGRELAY_LOG     log filter, e.g. debug or ringrelay=trace (default: info for serve,
                    warn for the client verbs)

Exit status:
  0  done (a receiving verb: --count reached, or its timeout after at least one message)
  1  failure (bad input, a refused request, a relay that cannot start)
  2  send to an unknown id; req to a topic nobody subscribes to; a usage error
  3  a receiving verb's --timeout-ms passed before --count messages (without --count: any);
     req: no answer within --timeout-ms
  4  no relay: none reachable within --connect-timeout-ms, or the connection was lost and
     could not be replaced";

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the relay.
    Serve(Box<ServeArgs>),
    /// Register an id and print every message delivered to it, one per line.
    Listen(ListenArgs),
    /// Send a message (or one per input line) to a client id; confirmed by the relay.
    Send(SendArgs),
    /// Publish a message (or one per input line) to a topic.
    Pub(PubArgs),
    /// Subscribe to a topic and print every message, one per line.
    Sub(SubArgs),
    /// Publish a request (with a reply topic) and print the first answer.
    Req(ReqArgs),
    /// Answer requests on a topic: publish an answer to each request's reply topic.
    Reply(ReplyArgs),
    /// Print each id's present state, then `online ID` / `offline ID` as it changes.
    Watch(WatchArgs),
    /// Chat on a topic: typed lines go to everyone else subscribed, theirs are printed.
    Chat(ChatArgs),
    /// Run the load generator against a relay.
    Bench(ringrelay_loadgen::BenchArgs),
    /// Hash a secret (read from stdin) for a credentials file's `secret_hash`.
    Passwd(PasswdArgs),
    Keygen(KeygenArgs),
}

/// A failed command: what to print after `ringrelay: ` and the exit status.
#[derive(Debug, PartialEq, Eq)]
pub struct CliFailure {
    pub message: String,
    pub exit_code: u8,
}

impl CliFailure {
    /// A failure with exit status 1.
    pub fn new(message: impl Into<String>) -> CliFailure {
        CliFailure {
            message: message.into(),
            exit_code: 1,
        }
    }
}

impl<E: std::error::Error> From<E> for CliFailure {
    fn from(e: E) -> Self {
        CliFailure::new(e.to_string())
    }
}

// The binary's allocator: fast, low fragmentation for connection buffers. Never set by the
// library, so programs embedding it keep their own.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Parses the process arguments, runs the command, and returns the exit status.
fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match run(with_value_sources(cli, &matches)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let _ = writeln!(std::io::stderr(), "ringrelay: {}", failure.message);
            ExitCode::from(failure.exit_code)
        }
    }
}

/// Notes what only the matches know, not the parsed values: which secret flags of `serve`
/// came from the command line rather than their environment variables.
fn with_value_sources(mut cli: Cli, matches: &clap::ArgMatches) -> Cli {
    if let (Command::Serve(args), Some(("serve", serve))) = (&mut cli.command, matches.subcommand())
    {
        args.secrets_on_command_line = secrets::given_on_command_line(serve);
    }
    if let (Some(conn), Some((_, verb))) = (cli.command.conn_mut(), matches.subcommand()) {
        let source = verb.value_source("token");
        conn.token_on_command_line = source == Some(clap::parser::ValueSource::CommandLine);
    }
    cli
}

impl Command {
    /// The connection settings of a client verb.
    fn conn_mut(&mut self) -> Option<&mut ConnArgs> {
        match self {
            Command::Listen(args) => Some(&mut args.conn),
            Command::Send(args) => Some(&mut args.conn),
            Command::Pub(args) => Some(&mut args.conn),
            Command::Sub(args) => Some(&mut args.conn),
            Command::Req(args) => Some(&mut args.conn),
            Command::Reply(args) => Some(&mut args.conn),
            Command::Watch(args) => Some(&mut args.conn),
            Command::Chat(args) => Some(&mut args.conn),
            Command::Serve(_) | Command::Bench(_) | Command::Passwd(_) | Command::Keygen(_) => None,
        }
    }
}

/// Runs one parsed command.
pub fn run(cli: Cli) -> Result<(), CliFailure> {
    match cli.command {
        Command::Serve(args) => {
            init_logging("info");
            serve::run(&args)
        }
        Command::Listen(args) => {
            init_logging("warn");
            client_verbs::listen(&args)
        }
        Command::Send(args) => {
            init_logging("warn");
            client_verbs::send(&args)
        }
        Command::Pub(args) => {
            init_logging("warn");
            client_verbs::publish(&args)
        }
        Command::Sub(args) => {
            init_logging("warn");
            client_verbs::subscribe(&args)
        }
        Command::Watch(args) => {
            init_logging("warn");
            client_verbs::watch(&args)
        }
        Command::Req(args) => {
            init_logging("warn");
            request_verbs::request(&args)
        }
        Command::Reply(args) => {
            init_logging("warn");
            request_verbs::reply(&args)
        }
        Command::Chat(args) => {
            init_logging("warn");
            chat::chat(&args)
        }
        Command::Bench(args) => {
            init_logging("info");
            ringrelay_loadgen::run(&args).map_err(|e| CliFailure::new(e.to_string()))
        }
        Command::Passwd(args) => passwd::passwd(&args),
        Command::Keygen(args) => keygen::keygen(&args),
    }
}

/// Logs to stderr with the filter from `RINGRELAY_LOG`, else `default_filter`.
fn init_logging(default_filter: &str) {
    let filter =
        EnvFilter::try_from_env(LOG_ENV_VAR).unwrap_or_else(|_| EnvFilter::new(default_filter));
    // A second initialisation (only possible in tests) keeps the first subscriber.
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_verb_shows_an_example_in_its_help() {
        for verb in Cli::command().get_subcommands() {
            let after = verb
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                after.contains("Example"),
                "`ringrelay {} --help` has no example",
                verb.get_name()
            );
        }
    }

    #[test]
    fn client_verbs_parse_with_defaults() {
        let cli =
            Cli::try_parse_from(["ringrelay", "send", "--id", "a", "--to", "b", "hello"]).unwrap();
        match cli.command {
            Command::Send(args) => {
                assert_eq!(args.conn.server, ["127.0.0.1:7400"]);
                assert_eq!(args.conn.connect_timeout_ms, 10_000);
                assert_eq!(args.conn.token, None);
                assert_eq!(
                    (args.id.as_str(), args.to.as_str(), args.payload.as_str()),
                    ("a", "b", "hello")
                );
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = Cli::try_parse_from([
            "ringrelay",
            "watch",
            "--token",
            "t",
            "--count",
            "2",
            "x",
            "y",
        ])
        .unwrap();
        match cli.command {
            Command::Watch(args) => {
                assert_eq!(args.conn.token.as_deref(), Some("t"));
                assert_eq!(args.ids, vec!["x".to_string(), "y".to_string()]);
                assert_eq!(args.limits.count, Some(2));
                assert_eq!(args.limits.timeout_ms, 0);
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn pub_and_sub_flags_parse() {
        let cli =
            Cli::try_parse_from(["ringrelay", "pub", "--no-echo", "--server", "h:1", "t", "p"])
                .unwrap();
        assert!(
            matches!(cli.command, Command::Pub(ref a) if a.no_echo && a.topic == "t" && a.conn.server == ["h:1"])
        );
        let cli = Cli::try_parse_from([
            "ringrelay",
            "sub",
            "--group",
            "g",
            "--timeout-ms",
            "50",
            "t",
        ])
        .unwrap();
        assert!(
            matches!(cli.command, Command::Sub(ref a) if a.group.as_deref() == Some("g") && a.limits.timeout_ms == 50)
        );
    }

    #[test]
    fn serve_rejects_workers_with_cpus_and_bad_lists() {
        assert!(
            Cli::try_parse_from(["ringrelay", "serve", "--workers", "2", "--cpus", "0"]).is_err()
        );
        assert!(Cli::try_parse_from(["ringrelay", "serve", "--cpus", "3-1"]).is_err());
        assert!(
            Cli::try_parse_from(["ringrelay", "serve", "--cpus", "0,2-3", "--token", "t"]).is_ok()
        );
    }
}
