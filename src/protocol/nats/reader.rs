//! Operations out of a byte stream received in arbitrary chunks: [`NatsReader`] parses
//! straight out of each receive and copies only an operation that straddles two receives.

use super::parse::{parse, ClientOp, NatsError, Parsed};
use super::CONTROL_LINE_BYTES_MAX;

/// A held buffer that grew past this is given back once its operation is done, so a
/// connection that once sent a large straddling payload does not keep its memory.
const HELD_RETAIN_BYTES: usize = 16 * 1024;

/// What a [`NatsReader::feed`] ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fed {
    /// Every whole operation was applied; an unfinished one (if any) is held.
    Drained,
    /// `apply` asked to stop (the connection is closing); the rest of the receive is dropped.
    Stopped,
}

/// Reassembles NATS operations from a stream. Holds at most one unfinished operation:
/// [`CONTROL_LINE_BYTES_MAX`] + 2 bytes while its control line is unfinished, the whole
/// operation (control line, payload, CRLF) once the line announced a payload within
/// `payload_bytes_max`.
#[derive(Debug, Default)]
pub struct NatsReader {
    held: Vec<u8>,
}

impl NatsReader {
    /// Bytes of an unfinished operation held across receives.
    pub fn held_bytes(&self) -> usize {
        self.held.len()
    }

    /// Forgets any unfinished operation (after an error, or at close).
    pub fn clear(&mut self) {
        self.held = Vec::new();
    }

    /// Applies every whole operation of `data`, in order, after the one held from earlier
    /// receives. `apply` returns false to stop. An error is returned at the first malformed
    /// operation; what came before it was applied.
    pub fn feed(
        &mut self,
        data: &[u8],
        payload_bytes_max: usize,
        apply: impl FnMut(ClientOp<'_>) -> bool,
    ) -> Result<Fed, NatsError> {
        self.feed_bounded(data, || payload_bytes_max, apply)
    }

    /// [`Self::feed`] with the payload bound read before each operation (it may change with
    /// what an operation did: a connection's bound grows once its CONNECT is accepted).
    pub fn feed_bounded(
        &mut self,
        mut data: &[u8],
        payload_bytes_max: impl Fn() -> usize,
        mut apply: impl FnMut(ClientOp<'_>) -> bool,
    ) -> Result<Fed, NatsError> {
        while !self.held.is_empty() {
            match parse(&self.held, payload_bytes_max())? {
                Parsed::Op { op, consumed } => {
                    debug_assert_eq!(consumed, self.held.len(), "held bytes are one operation");
                    let go_on = apply(op);
                    self.release_held();
                    if !go_on {
                        return Ok(Fed::Stopped);
                    }
                }
                Parsed::Incomplete { needed } => {
                    if data.is_empty() {
                        return Ok(Fed::Drained);
                    }
                    let take = self.completion(data, needed);
                    self.held.extend_from_slice(&data[..take]);
                    data = &data[take..];
                }
            }
        }
        loop {
            match parse(data, payload_bytes_max())? {
                Parsed::Op { op, consumed } => {
                    if !apply(op) {
                        return Ok(Fed::Stopped);
                    }
                    data = &data[consumed..];
                }
                Parsed::Incomplete { .. } => {
                    self.held.extend_from_slice(data);
                    return Ok(Fed::Drained);
                }
            }
        }
    }

    /// How many bytes of `data` to add to the held operation: up to its announced end, or
    /// up to the end of its control line (never past the line bound, so a line without an
    /// end is refused after at most that many bytes).
    fn completion(&self, data: &[u8], needed: usize) -> usize {
        if needed > 0 {
            return (needed - self.held.len()).min(data.len());
        }
        let line_room = (CONTROL_LINE_BYTES_MAX + 2)
            .saturating_sub(self.held.len())
            .max(1);
        match data.iter().take(line_room).position(|&b| b == b'\n') {
            Some(i) => i + 1,
            None => line_room.min(data.len()),
        }
    }

    fn release_held(&mut self) {
        if self.held.capacity() > HELD_RETAIN_BYTES {
            self.held = Vec::new();
        } else {
            self.held.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1024;

    /// Every operation of `stream` fed in chunks of `chunk` bytes, as debug strings.
    fn ops(stream: &[u8], chunk: usize) -> (Vec<String>, Result<Fed, NatsError>) {
        let mut reader = NatsReader::default();
        let mut seen = Vec::new();
        let mut last = Ok(Fed::Drained);
        for piece in stream.chunks(chunk.max(1)) {
            last = reader.feed(piece, MAX, |op| {
                seen.push(format!("{op:?}"));
                true
            });
            if last.is_err() {
                break;
            }
            assert!(reader.held_bytes() <= CONTROL_LINE_BYTES_MAX + 2 + MAX + 2);
        }
        (seen, last)
    }

    #[test]
    fn any_chunking_gives_the_same_operations() {
        let stream = b"CONNECT {\"verbose\":false}\r\nSUB foo 1\r\nPUB foo r 5\r\nhello\r\n\
                       HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nping\nPONG\r\nUNSUB 1 3\r\n";
        let (whole, end) = ops(stream, stream.len());
        assert_eq!(whole.len(), 7);
        assert_eq!(end, Ok(Fed::Drained));
        for chunk in 1..stream.len() {
            assert_eq!(
                ops(stream, chunk),
                (whole.clone(), Ok(Fed::Drained)),
                "{chunk}"
            );
        }
    }

    #[test]
    fn errors_surface_whatever_the_chunking() {
        let stream = b"PING\r\nPUB foo 3\r\nabcd\r\nPING\r\n";
        for chunk in 1..stream.len() {
            let (seen, end) = ops(stream, chunk);
            assert_eq!(seen, vec!["Ping".to_string()], "{chunk}");
            assert_eq!(end, Err(NatsError::UnknownOperation), "{chunk}");
        }
        let mut endless = b"PUB ".to_vec();
        endless.resize(3 * CONTROL_LINE_BYTES_MAX, b'x');
        for chunk in [1, 100, 5000] {
            assert_eq!(
                ops(&endless, chunk).1,
                Err(NatsError::ControlLineTooLong),
                "{chunk}"
            );
        }
    }

    #[test]
    fn stopping_drops_the_rest_of_the_receive() {
        let mut reader = NatsReader::default();
        let mut n = 0;
        let fed = reader.feed(b"PING\r\nPING\r\nPI", MAX, |_| {
            n += 1;
            false
        });
        assert_eq!((fed, n), (Ok(Fed::Stopped), 1));
    }
}
