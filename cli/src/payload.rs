//! Where `send` and `pub` take their payloads from: the argument itself, `-` (standard input)
//! or `@FILE`, byte for byte. With `--count N`, standard input is read as lines and each line
//! (without its newline) is one message, up to N.

use super::CliFailure;
use std::io::{self, BufRead, Read};

/// A payload argument, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayloadSource {
    /// The argument's own bytes.
    Literal(Vec<u8>),
    /// `-`: standard input.
    Stdin,
    /// `@FILE`: the file's contents.
    File(std::path::PathBuf),
}

impl PayloadSource {
    pub fn parse(arg: &str) -> PayloadSource {
        if arg == "-" {
            PayloadSource::Stdin
        } else if let Some(path) = arg.strip_prefix('@').filter(|p| !p.is_empty()) {
            PayloadSource::File(path.into())
        } else {
            PayloadSource::Literal(arg.as_bytes().to_vec())
        }
    }
}

/// The messages to send: one payload, or with `count` (stdin only) up to `count` lines.
/// `max_bytes` is the largest payload the relay delivers; a longer one is refused here with
/// the figure, before anything is sent.
pub fn payloads(
    source: &PayloadSource,
    count: Option<u64>,
    max_bytes: usize,
    stdin: &mut impl BufRead,
) -> Result<Vec<Vec<u8>>, CliFailure> {
    let messages = match (source, count) {
        (PayloadSource::Stdin, Some(n)) => read_lines(stdin, n)?,
        (_, Some(_)) => {
            return Err(CliFailure::new(
                "--count takes its messages from standard input: give `-` as the payload",
            ))
        }
        (PayloadSource::Literal(bytes), None) => vec![bytes.clone()],
        (PayloadSource::Stdin, None) => {
            let mut all = Vec::new();
            stdin
                .take(max_bytes as u64 + 1)
                .read_to_end(&mut all)
                .map_err(|e| CliFailure::new(format!("cannot read standard input: {e}")))?;
            vec![all]
        }
        (PayloadSource::File(path), None) => {
            let len = std::fs::metadata(path)
                .map_err(|e| CliFailure::new(format!("cannot read {}: {e}", path.display())))?
                .len();
            if len > max_bytes as u64 {
                return Err(too_large(len, max_bytes));
            }
            vec![std::fs::read(path)
                .map_err(|e| CliFailure::new(format!("cannot read {}: {e}", path.display())))?]
        }
    };
    if let Some(big) = messages.iter().find(|m| m.len() > max_bytes) {
        return Err(too_large(big.len() as u64, max_bytes));
    }
    Ok(messages)
}

fn read_lines(stdin: &mut impl BufRead, count: u64) -> Result<Vec<Vec<u8>>, CliFailure> {
    let mut lines = Vec::new();
    while (lines.len() as u64) < count {
        let mut line = Vec::new();
        let read = stdin
            .read_until(b'\n', &mut line)
            .map_err(|e| CliFailure::new(format!("cannot read standard input: {e}")))?;
        if read == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        lines.push(line);
    }
    Ok(lines)
}

fn too_large(len: u64, max_bytes: usize) -> CliFailure {
    CliFailure::new(format!(
        "payload of {len} bytes exceeds the relay's largest payload, {max_bytes} bytes \
         (max_frame_bytes minus the frame's header and ids)"
    ))
}

/// Standard input, locked and buffered.
pub fn stdin() -> io::StdinLock<'static> {
    io::stdin().lock()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_name_their_source() {
        assert_eq!(PayloadSource::parse("-"), PayloadSource::Stdin);
        assert_eq!(
            PayloadSource::parse("@/tmp/x"),
            PayloadSource::File("/tmp/x".into())
        );
        assert_eq!(
            PayloadSource::parse("@"),
            PayloadSource::Literal(b"@".to_vec())
        );
        assert_eq!(
            PayloadSource::parse("hi"),
            PayloadSource::Literal(b"hi".to_vec())
        );
    }

    #[test]
    fn stdin_is_one_binary_message_or_one_message_per_line_with_count() {
        let input = b"a\r\nb\n\xff\x00\nlast";
        let one = payloads(&PayloadSource::Stdin, None, 100, &mut &input[..]).unwrap();
        assert_eq!(one, vec![input.to_vec()]);
        let lines = payloads(&PayloadSource::Stdin, Some(10), 100, &mut &input[..]).unwrap();
        assert_eq!(
            lines,
            vec![
                b"a".to_vec(),
                b"b".to_vec(),
                b"\xff\x00".to_vec(),
                b"last".to_vec()
            ]
        );
        let two = payloads(&PayloadSource::Stdin, Some(2), 100, &mut &input[..]).unwrap();
        assert_eq!(two.len(), 2);
    }

    #[test]
    fn payloads_over_the_relay_limit_are_refused_with_the_figure() {
        let err = payloads(&PayloadSource::Stdin, None, 3, &mut &b"abcdef"[..]).unwrap_err();
        assert!(err.message.contains("3 bytes"), "{}", err.message);
        let err = payloads(
            &PayloadSource::Literal(b"abcd".to_vec()),
            None,
            3,
            &mut &b""[..],
        )
        .unwrap_err();
        assert!(err.message.contains("4 bytes"), "{}", err.message);
        let err = payloads(
            &PayloadSource::Literal(b"x".to_vec()),
            Some(1),
            3,
            &mut &b""[..],
        )
        .unwrap_err();
        assert!(err.message.contains("standard input"), "{}", err.message);
    }
}
