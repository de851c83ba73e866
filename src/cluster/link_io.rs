//! Blocking I/O of link handshakes and of the control lane (the control thread's side; data
//! links are handed to the io_uring workers right after their handshake).
//!
//! Handshake, dialer D and acceptor A (PROTOCOL.md "Cluster links"): D sends HELLO; A answers
//! HELLO and AUTH (its proof over D's nonce); D checks it and sends AUTH; A checks that and
//! confirms with a HEARTBEAT. D sends nothing else before the confirmation, so an acceptor
//! never reads past the handshake of a data link it hands to a worker.

use super::auth::{link_mac, mac_is_valid, new_nonce};
use super::link_stream::{LinkStream, TimedRead};
use super::wire::{
    decode_link, encode_link, refuse_reason_name, ControlMsg, Lane, LinkDecodeError, LinkHello,
    LinkMsg, LinkRefuse, LINK_VERSION, REFUSE_BAD_SECRET, REFUSE_ID_CLASH, REFUSE_MALFORMED,
    REFUSE_VERSION,
};
use crate::protocol::StreamDecoder;
use crate::tcp_congestion::TcpCongestion;
use crate::tls::config::ClusterTls;
use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Bound on a handshake's wall time: the connect, then the whole exchange, however slowly
/// the peer's bytes trickle in (each read waits only for what is left of it).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on one handshake frame (LINK_HELLO is at most 292 bytes, LINK_AUTH 38; LINK_REFUSE
/// texts are short): anything larger is refused from its header, before its body is read.
pub const HANDSHAKE_FRAME_BYTES_MAX: usize = 2048;
/// Control messages are at most this big (a 4096-row snapshot chunk is about 1.1 MB at the
/// longest ids).
pub const CONTROL_FRAME_BYTES_MAX: usize = 4 << 20;

/// Why a link handshake or a control-lane read failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot resolve {addr}: {source}")]
    Resolve {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} resolves to nothing")]
    NoAddress { addr: String },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("link I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer closed the link")]
    Closed,
    /// The TLS handshake of the link failed (the peer's certificate is not from the cluster
    /// CA, names another host, or the peer refused ours).
    #[error("TLS with {who} failed: {reason}")]
    Tls { who: String, reason: String },
    #[error("handshake not complete within {} ms", HANDSHAKE_TIMEOUT.as_millis())]
    HandshakeTimeout,
    #[error("bad link frame: {0}")]
    Decode(#[from] LinkDecodeError),
    /// The peer sent LINK_REFUSE.
    #[error("{who} refused the link: {} ({text})", refuse_reason_name(*.code))]
    RefusedByPeer {
        who: String,
        code: u16,
        text: String,
    },
    /// This node refused the peer (and told it so with LINK_REFUSE).
    #[error("{}: {text}", refuse_reason_name(*.code))]
    Refused { code: u16, text: String },
    #[error("{who} sent {got} instead of {expected}")]
    Unexpected {
        who: String,
        got: String,
        expected: &'static str,
    },
}

impl LinkError {
    /// The two ends do not share the cluster secret (either side refused): an operator error
    /// worth a warning, unlike a peer that is merely down.
    pub fn is_bad_secret(&self) -> bool {
        matches!(
            self,
            LinkError::RefusedByPeer {
                code: REFUSE_BAD_SECRET,
                ..
            } | LinkError::Refused {
                code: REFUSE_BAD_SECRET,
                ..
            }
        )
    }

    fn unexpected(who: &str, got: &LinkMsg, expected: &'static str) -> LinkError {
        LinkError::Unexpected {
            who: who.to_string(),
            got: format!("{got:?}"),
            expected,
        }
    }
}

/// This node's identity on links.
#[derive(Clone, Debug)]
pub struct LinkIdentity {
    pub node_id: u16,
    pub incarnation: u64,
    pub advertise: String,
    pub secret: Vec<u8>,
    /// Mutual TLS on every link (`cluster_tls_*`); `None`: links in clear.
    pub tls: Option<ClusterTls>,
    /// The TCP congestion control of the links this node dials (`tcp_congestion`).
    pub congestion: TcpCongestion,
}

/// An authenticated link: the stream, the peer's HELLO and bytes read past the handshake.
pub struct Established {
    pub stream: LinkStream,
    pub peer: LinkHello,
    pub leftover: Vec<u8>,
}

/// Reads whole link messages from a blocking stream.
pub struct MessageReader {
    /// Reassembles frames that straddle reads; a frame inside one read is not copied.
    frames: StreamDecoder,
    /// The last read (or the handshake's leftover); `buf[start..]` is not yet consumed.
    buf: Vec<u8>,
    start: usize,
    /// Reads fail with [`LinkError::HandshakeTimeout`] from this moment (handshakes only).
    deadline: Option<Instant>,
}

impl MessageReader {
    /// A reader of the control lane (frames up to [`CONTROL_FRAME_BYTES_MAX`]), starting with
    /// bytes already read past the handshake.
    pub fn new(leftover: Vec<u8>) -> Self {
        MessageReader {
            frames: StreamDecoder::new(CONTROL_FRAME_BYTES_MAX),
            buf: leftover,
            start: 0,
            deadline: None,
        }
    }

    /// A reader of one handshake: frames up to [`HANDSHAKE_FRAME_BYTES_MAX`], and every read
    /// done by `deadline`.
    fn handshake(deadline: Instant) -> Self {
        MessageReader {
            frames: StreamDecoder::new(HANDSHAKE_FRAME_BYTES_MAX),
            buf: Vec::new(),
            start: 0,
            deadline: Some(deadline),
        }
    }

    /// Waits for the socket no longer than the deadline allows (none: as the socket is set).
    fn bound_read(&self, stream: &TcpStream) -> Result<(), LinkError> {
        // With no deadline the socket is as it was set (the control lane: no timeout).
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LinkError::HandshakeTimeout);
            }
            stream.set_read_timeout(Some(left))?;
        }
        Ok(())
    }

    /// The next message; an error on EOF, I/O error or a frame that does not decode.
    pub fn next(&mut self, stream: &mut impl TimedRead) -> Result<LinkMsg, LinkError> {
        loop {
            let mut data = self.buf.get(self.start..).unwrap_or_default();
            let before = data.len();
            let frame = self.frames.next(&mut data);
            self.start += before - data.len();
            match frame.map_err(LinkDecodeError::from) {
                Ok(Some(frame)) => {
                    return match decode_link(frame, CONTROL_FRAME_BYTES_MAX)? {
                        Some((msg, _)) => Ok(msg),
                        None => Err(LinkDecodeError::Malformed(
                            "a whole link frame decoded as incomplete",
                        )
                        .into()),
                    };
                }
                Ok(None) => {}
                Err(e) => return Err(e.into()),
            }
            // A bad kind or flags is refused from the header, before the body is waited for.
            decode_link(self.frames.pending(), CONTROL_FRAME_BYTES_MAX)?;
            self.bound_read(stream.socket())?;
            self.buf.resize(64 * 1024, 0);
            self.start = 0;
            let read = stream.read(&mut self.buf);
            self.buf.truncate(*read.as_ref().unwrap_or(&0));
            match read {
                Ok(0) => return Err(LinkError::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if self.deadline.is_some()
                        && matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                {
                    return Err(LinkError::HandshakeTimeout)
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Bytes received past the last message returned: an unfinished frame, or unread whole ones.
    pub fn into_leftover(mut self) -> Vec<u8> {
        let mut leftover = self.frames.take_buffered();
        leftover.extend_from_slice(self.buf.get(self.start..).unwrap_or_default());
        leftover
    }
}

pub fn write_msg(stream: &mut impl Write, msg: &LinkMsg) -> std::io::Result<()> {
    let mut out = Vec::new();
    encode_link(msg, &mut out);
    stream.write_all(&out)?;
    stream.flush()
}

fn refuse(stream: &mut LinkStream, reason: u16, text: &str) -> LinkError {
    let _ = write_msg(
        stream,
        &LinkMsg::Refuse(LinkRefuse {
            reason,
            text: text.into(),
        }),
    );
    stream.shutdown();
    LinkError::Refused {
        code: reason,
        text: text.into(),
    }
}

/// The error for a LINK_REFUSE received from `who`.
fn refused(who: &str, r: &LinkRefuse) -> LinkError {
    LinkError::RefusedByPeer {
        who: who.to_string(),
        code: r.reason,
        text: r.text.clone(),
    }
}

fn hello(me: &LinkIdentity, lane: Lane, worker: u16, nonce: [u8; 16]) -> LinkMsg {
    LinkMsg::Hello(LinkHello {
        version: LINK_VERSION,
        lane,
        node_id: me.node_id,
        incarnation: me.incarnation,
        worker,
        nonce,
        advertise: me.advertise.clone(),
    })
}

fn set_timeouts(stream: &TcpStream, t: Option<Duration>) -> std::io::Result<()> {
    stream.set_read_timeout(t)?;
    stream.set_write_timeout(t)
}

/// A TCP connection to `target` with `congestion` set before it connects, within
/// [`HANDSHAKE_TIMEOUT`].
fn connect(target: SocketAddr, congestion: &TcpCongestion) -> std::io::Result<TcpStream> {
    let socket = congestion.new_socket(target)?;
    socket.connect_timeout(&target.into(), HANDSHAKE_TIMEOUT)?;
    Ok(socket.into())
}

/// Dials `addr` and authenticates a link of `lane`.
pub fn dial(
    addr: &str,
    lane: Lane,
    worker: u16,
    me: &LinkIdentity,
) -> Result<Established, LinkError> {
    let target: SocketAddr = addr
        .to_socket_addrs()
        .map_err(|source| LinkError::Resolve {
            addr: addr.into(),
            source,
        })?
        .next()
        .ok_or_else(|| LinkError::NoAddress { addr: addr.into() })?;
    let sock = connect(target, &me.congestion).map_err(|source| LinkError::Connect {
        addr: addr.into(),
        source,
    })?;
    let _ = sock.set_nodelay(true);
    set_timeouts(&sock, Some(HANDSHAKE_TIMEOUT))?;
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut stream =
        LinkStream::dial(sock, me.tls.as_ref(), host, HANDSHAKE_TIMEOUT).map_err(|e| {
            LinkError::Tls {
                who: addr.into(),
                reason: e.to_string(),
            }
        })?;
    let our_nonce = new_nonce();
    write_msg(&mut stream, &hello(me, lane, worker, our_nonce))?;
    let mut reader = MessageReader::handshake(Instant::now() + HANDSHAKE_TIMEOUT);
    let peer = match reader.next(&mut stream)? {
        LinkMsg::Hello(h) => h,
        LinkMsg::Refuse(r) => return Err(refused(addr, &r)),
        other => return Err(LinkError::unexpected(addr, &other, "HELLO")),
    };
    if peer.node_id == me.node_id {
        return Err(refuse(&mut stream, REFUSE_ID_CLASH, "same node id as mine"));
    }
    let mac = match reader.next(&mut stream)? {
        LinkMsg::Auth(mac) => mac,
        LinkMsg::Refuse(r) => return Err(refused(addr, &r)),
        _ => return Err(refuse(&mut stream, REFUSE_MALFORMED, "expected AUTH")),
    };
    if !mac_is_valid(&me.secret, &our_nonce, &peer.nonce, peer.node_id, &mac) {
        return Err(refuse(
            &mut stream,
            REFUSE_BAD_SECRET,
            "wrong cluster secret (bad AUTH)",
        ));
    }
    let ours = link_mac(&me.secret, &peer.nonce, &our_nonce, me.node_id);
    write_msg(&mut stream, &LinkMsg::Auth(ours))?;
    match reader.next(&mut stream)? {
        LinkMsg::Control(ControlMsg::Heartbeat) => {}
        LinkMsg::Refuse(r) => return Err(refused(addr, &r)),
        other => return Err(LinkError::unexpected(addr, &other, "the confirmation")),
    }
    set_timeouts(stream.socket(), None)?;
    Ok(Established {
        stream,
        peer,
        leftover: reader.into_leftover(),
    })
}

/// Runs the acceptor's side of the handshake on a new connection.
pub fn accept(sock: TcpStream, me: &LinkIdentity) -> Result<Established, LinkError> {
    let _ = sock.set_nodelay(true);
    set_timeouts(&sock, Some(HANDSHAKE_TIMEOUT))?;
    let who = sock
        .peer_addr()
        .map_or_else(|_| "a peer".to_string(), |a| a.to_string());
    let mut stream = LinkStream::accept(sock, me.tls.as_ref(), HANDSHAKE_TIMEOUT).map_err(|e| {
        LinkError::Tls {
            who,
            reason: e.to_string(),
        }
    })?;
    let mut reader = MessageReader::handshake(Instant::now() + HANDSHAKE_TIMEOUT);
    let peer = match reader.next(&mut stream) {
        Ok(LinkMsg::Hello(h)) => h,
        Ok(_) => return Err(refuse(&mut stream, REFUSE_MALFORMED, "expected HELLO")),
        Err(e) => return Err(refuse(&mut stream, REFUSE_MALFORMED, &e.to_string())),
    };
    if peer.version != LINK_VERSION {
        return Err(refuse(
            &mut stream,
            REFUSE_VERSION,
            "unsupported link version",
        ));
    }
    if peer.node_id == me.node_id || peer.node_id == 0 {
        return Err(refuse(
            &mut stream,
            REFUSE_ID_CLASH,
            "node id clashes with mine",
        ));
    }
    let our_nonce = new_nonce();
    let ours = link_mac(&me.secret, &peer.nonce, &our_nonce, me.node_id);
    write_msg(&mut stream, &hello(me, peer.lane, 0, our_nonce))?;
    write_msg(&mut stream, &LinkMsg::Auth(ours))?;
    let mac = match reader.next(&mut stream)? {
        LinkMsg::Auth(mac) => mac,
        LinkMsg::Refuse(r) => return Err(refused(&format!("node {}", peer.node_id), &r)),
        _ => return Err(refuse(&mut stream, REFUSE_MALFORMED, "expected AUTH")),
    };
    if !mac_is_valid(&me.secret, &our_nonce, &peer.nonce, peer.node_id, &mac) {
        return Err(refuse(
            &mut stream,
            REFUSE_BAD_SECRET,
            "wrong cluster secret (bad AUTH)",
        ));
    }
    write_msg(&mut stream, &LinkMsg::Control(ControlMsg::Heartbeat))?;
    set_timeouts(stream.socket(), None)?;
    Ok(Established {
        stream,
        peer,
        leftover: reader.into_leftover(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn id(node_id: u16, secret: &[u8]) -> LinkIdentity {
        LinkIdentity {
            node_id,
            incarnation: node_id as u64 * 10,
            advertise: format!("node{node_id}"),
            secret: secret.to_vec(),
            tls: None,
            congestion: TcpCongestion::Host,
        }
    }

    fn handshake(
        dialer: LinkIdentity,
        acceptor: LinkIdentity,
    ) -> (
        Result<Established, LinkError>,
        Result<Established, LinkError>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let t = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            accept(s, &acceptor)
        });
        let d = dial(&addr, Lane::Control, 0, &dialer);
        (d, t.join().unwrap())
    }

    #[test]
    fn a_dialled_link_uses_the_nodes_congestion_control() {
        use crate::tcp_congestion::test_support::{algorithm_of, other_than_the_hosts};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let other = other_than_the_hosts();
        let sock = connect(target, &TcpCongestion::Named(other.clone())).unwrap();
        assert_eq!(algorithm_of(&(&sock).into()), other);
    }

    #[test]
    fn right_secret_links_and_both_sides_learn_the_peer() {
        let (d, a) = handshake(id(1, b"s"), id(2, b"s"));
        let (d, a) = (d.unwrap(), a.unwrap());
        assert_eq!(d.peer.node_id, 2);
        assert_eq!(a.peer.node_id, 1);
        assert_eq!(a.peer.advertise, "node1");
        assert!(d.leftover.is_empty() && a.leftover.is_empty());
    }

    #[test]
    fn wrong_secret_or_same_id_is_refused_on_both_sides() {
        let (d, a) = handshake(id(1, b"s"), id(2, b"other"));
        let d = d.err().unwrap();
        assert!(d.is_bad_secret(), "{d}");
        assert!(d.to_string().contains("secret"), "{d}");
        assert!(a.is_err());
        let (d, a) = handshake(id(3, b"s"), id(3, b"s"));
        assert!(d.is_err());
        let a = a.err().unwrap();
        assert!(
            matches!(
                a,
                LinkError::Refused {
                    code: REFUSE_ID_CLASH,
                    ..
                }
            ),
            "{a}"
        );
        assert!(a.to_string().contains("node id"), "{a}");
    }
}
