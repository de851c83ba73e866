//! `ringrelay chat --id ID TOPIC`: a chat room on a topic. Each line typed on standard input is
//! published with no-echo (everyone in the room but the sender gets it); what the others say
//! is printed as `SENDER on TOPIC: TEXT` (or in `--format`). Ends at the end of input, after
//! the relay has confirmed the last line.

use super::client_verbs::{connect, lines_of, no_relay, report, ConnArgs};
use super::render::{write_event, Format};
use super::CliFailure;
use clap::Args;
use ringrelay::client::Event;
use std::io::{self, BufReader};
use std::sync::mpsc::TryRecvError;
use std::time::Duration;

/// How long one wait for messages lasts before typed lines are sent: the most a typed line
/// waits before it leaves.
const INPUT_POLL: Duration = Duration::from_millis(20);

/// How long the end of input waits for the relay to confirm the last lines.
const CONFIRM_WAIT: Duration = Duration::from_secs(5);

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Example (in two terminals):\n  ringrelay chat --id alice lobby\n  \
                        ringrelay chat --id bob lobby"
)]
pub struct ChatArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Client id to register (your name in the room).
    #[arg(long, value_name = "ID")]
    pub id: String,
    /// Output format for what the others say.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The room.
    pub topic: String,
}

/// `ringrelay chat`.
pub fn chat(args: &ChatArgs) -> Result<(), CliFailure> {
    let mut session = connect(&args.conn, &args.id)?;
    let topic = args.topic.as_bytes();
    session.subscribe(topic).map_err(no_relay)?;
    let lines = lines_of(BufReader::new(io::stdin()));
    let mut stdout = io::stdout().lock();
    loop {
        let mut input_ended = false;
        loop {
            match lines.try_recv() {
                Ok(Ok(line)) => session.publish_no_echo(topic, &line).map_err(no_relay)?,
                Ok(Err(e)) => {
                    return Err(CliFailure::new(format!("cannot read standard input: {e}")))
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    input_ended = true;
                    break;
                }
            }
        }
        session.flush().map_err(no_relay)?;
        if input_ended {
            for event in session.round_trip(CONFIRM_WAIT).map_err(no_relay)? {
                show(&mut stdout, args.format, event)?;
            }
            let _ = session.close();
            return Ok(());
        }
        if let Some(event) = session.recv(INPUT_POLL).map_err(no_relay)? {
            show(&mut stdout, args.format, event)?;
        }
    }
}

fn show(out: &mut impl io::Write, format: Format, event: Event) -> Result<(), CliFailure> {
    if let Event::Message { .. } = event {
        return match write_event(out, format, &event) {
            Ok(_) => Ok(()),
            Err(e) => Err(CliFailure::new(format!("cannot write output: {e}"))),
        };
    }
    report(event)
}
