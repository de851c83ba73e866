//! The byte stream under a [`super::Client`]: TCP to a relay, or one end of a Unix socket pair
//! to a node in the same process (`Server::connect_local`).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

#[derive(Debug)]
pub(crate) enum Transport {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Transport {
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.shutdown(how),
            Transport::Unix(s) => s.shutdown(how),
        }
    }

    pub(crate) fn set_read_timeout(&self, wait: Option<Duration>) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.set_read_timeout(wait),
            Transport::Unix(s) => s.set_read_timeout(wait),
        }
    }

    pub(crate) fn set_write_timeout(&self, wait: Option<Duration>) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.set_write_timeout(wait),
            Transport::Unix(s) => s.set_write_timeout(wait),
        }
    }

    pub(crate) fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.set_nonblocking(nonblocking),
            Transport::Unix(s) => s.set_nonblocking(nonblocking),
        }
    }

    /// The TCP address at `local` or remote end; an error for a local (Unix) connection.
    pub(crate) fn addr(&self, local: bool) -> io::Result<SocketAddr> {
        match (self, local) {
            (Transport::Tcp(s), true) => s.local_addr(),
            (Transport::Tcp(s), false) => s.peer_addr(),
            (Transport::Unix(_), _) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a local connection to an embedded node has no network address",
            )),
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.read(buf),
            Transport::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            // std writes TCP with MSG_NOSIGNAL.
            Transport::Tcp(s) => s.write(buf),
            // MSG_NOSIGNAL here too: in a C host, which does not ignore SIGPIPE as a Rust
            // program does, a write to a node that stopped must fail with EPIPE, not kill the
            // process (older std releases wrote Unix sockets without the flag).
            Transport::Unix(s) => {
                socket2::SockRef::from(&*s).send_with_flags(buf, libc::MSG_NOSIGNAL)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for Transport {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Transport::Tcp(s) => s.as_raw_fd(),
            Transport::Unix(s) => s.as_raw_fd(),
        }
    }
}
