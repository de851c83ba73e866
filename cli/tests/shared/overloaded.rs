//! Finding a drop report among a client's events.

use ringrelay::client::Event;
use ringrelay::protocol::ErrorCode;

/// The text of the first ERROR OVERLOADED about `subject` in `events`.
pub fn overloaded_about(events: &[Event], subject: &[u8]) -> Option<String> {
    events.iter().find_map(|e| match e {
        Event::Error {
            code,
            subject: about,
            text,
        } if *code == ErrorCode::OVERLOADED && about == subject => Some(text.clone()),
        _ => None,
    })
}
