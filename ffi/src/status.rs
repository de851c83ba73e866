//! `ringrelay_status`, the one result code of every call, and how Rust errors map onto it.
//!
//! The values are the ABI: they are never renumbered, and a value that falls out of use stays
//! reserved (`tests/status.rs` pins every one).

use ringrelay::client::ClientError;
use ringrelay::protocol::CloseReason;
use std::ffi::c_char;

/// The result of a call. `RINGRELAY_STATUS_OK` (0) is success; every other value is a failure,
/// and `ringrelay_last_error` then has the reason in words.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ringrelay_status {
    /// Success.
    Ok = 0,
    /// A NULL pointer, an empty id, a field too long for the protocol, or an unknown option.
    InvalidArgument = 1,
    /// A bug in the library: a Rust panic was caught at the API boundary. The object it
    /// happened in may be unusable; free it.
    Panic = 2,
    /// The call is not allowed inside a callback of this object (for example freeing a client
    /// from its own event callback).
    InCallback = 3,
    /// The output buffer is too small; nothing was written.
    BufferTooSmall = 4,
    /// The call would have to wait and the caller asked it not to (a full window or queue).
    WouldBlock = 5,
    /// The relay did not answer within the time given.
    Timeout = 6,
    /// The client or node is closed: by the caller, or for good by the relay.
    Closed = 7,
    /// The connection to the relay was lost and could not be replaced in time.
    Disconnected = 8,
    /// No relay of the server list accepted a connection.
    ConnectFailed = 9,
    /// The relay refused the id or token.
    AuthFailed = 10,
    /// The message is larger than the relay accepts; nothing was queued.
    FrameTooLarge = 11,
    /// The relay sent something that does not follow the protocol.
    Protocol = 12,
    /// The relay speaks a protocol version this library does not.
    UnsupportedVersion = 13,
    /// A configuration key or value was refused.
    Config = 14,
    /// A listener could not be bound (address in use, bad address).
    Listen = 15,
    /// The kernel does not offer io_uring to this process.
    IoUringUnavailable = 16,
    /// The system refused a resource: threads, memory, file descriptors.
    Resource = 17,
    /// The node was stopped.
    NodeStopped = 18,
    /// The node failed while running.
    NodeFailed = 19,
    /// The call does not fit the object's state or mode (for example draining a client that
    /// has an event callback).
    BadState = 20,
    /// The TLS handshake with the relay failed: its certificate is not from the CA trusted
    /// (`tls_ca_file`), or does not name the server (`tls_server_name`), or the relay refused
    /// the client's certificate.
    Tls = 21,
}

impl ringrelay_status {
    /// Every status, in value order (for the string table and the tests).
    pub const ALL: [ringrelay_status; 22] = [
        Self::Ok,
        Self::InvalidArgument,
        Self::Panic,
        Self::InCallback,
        Self::BufferTooSmall,
        Self::WouldBlock,
        Self::Timeout,
        Self::Closed,
        Self::Disconnected,
        Self::ConnectFailed,
        Self::AuthFailed,
        Self::FrameTooLarge,
        Self::Protocol,
        Self::UnsupportedVersion,
        Self::Config,
        Self::Listen,
        Self::IoUringUnavailable,
        Self::Resource,
        Self::NodeStopped,
        Self::NodeFailed,
        Self::BadState,
        Self::Tls,
    ];

    /// The name, NUL-terminated, as C spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "RINGRELAY_STATUS_OK\0",
            Self::InvalidArgument => "RINGRELAY_STATUS_INVALID_ARGUMENT\0",
            Self::Panic => "RINGRELAY_STATUS_PANIC\0",
            Self::InCallback => "RINGRELAY_STATUS_IN_CALLBACK\0",
            Self::BufferTooSmall => "RINGRELAY_STATUS_BUFFER_TOO_SMALL\0",
            Self::WouldBlock => "RINGRELAY_STATUS_WOULD_BLOCK\0",
            Self::Timeout => "RINGRELAY_STATUS_TIMEOUT\0",
            Self::Closed => "RINGRELAY_STATUS_CLOSED\0",
            Self::Disconnected => "RINGRELAY_STATUS_DISCONNECTED\0",
            Self::ConnectFailed => "RINGRELAY_STATUS_CONNECT_FAILED\0",
            Self::AuthFailed => "RINGRELAY_STATUS_AUTH_FAILED\0",
            Self::FrameTooLarge => "RINGRELAY_STATUS_FRAME_TOO_LARGE\0",
            Self::Protocol => "RINGRELAY_STATUS_PROTOCOL\0",
            Self::UnsupportedVersion => "RINGRELAY_STATUS_UNSUPPORTED_VERSION\0",
            Self::Config => "RINGRELAY_STATUS_CONFIG\0",
            Self::Listen => "RINGRELAY_STATUS_LISTEN\0",
            Self::IoUringUnavailable => "RINGRELAY_STATUS_IO_URING_UNAVAILABLE\0",
            Self::Resource => "RINGRELAY_STATUS_RESOURCE\0",
            Self::NodeStopped => "RINGRELAY_STATUS_NODE_STOPPED\0",
            Self::NodeFailed => "RINGRELAY_STATUS_NODE_FAILED\0",
            Self::BadState => "RINGRELAY_STATUS_BAD_STATE\0",
            Self::Tls => "RINGRELAY_STATUS_TLS\0",
        }
    }
}

/// A failed call: its status and the words for `ringrelay_last_error`.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: ringrelay_status,
    pub(crate) text: String,
}

impl Failure {
    pub(crate) fn new(status: ringrelay_status, text: impl Into<String>) -> Failure {
        Failure {
            status,
            text: text.into(),
        }
    }

    pub(crate) fn invalid(text: impl Into<String>) -> Failure {
        Failure::new(ringrelay_status::InvalidArgument, text)
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        Failure::new(client_status(&e), e.to_string())
    }
}

/// The status a client error maps to.
pub(crate) fn client_status(e: &ClientError) -> ringrelay_status {
    use ringrelay_status as S;
    match e {
        ClientError::Encode(_) => S::InvalidArgument,
        ClientError::FrameTooLarge { .. } => S::FrameTooLarge,
        ClientError::Connect { .. } => S::ConnectFailed,
        ClientError::Tls { .. } => S::Tls,
        ClientError::Timeout { .. } | ClientError::NoAnswer { .. } => S::Timeout,
        ClientError::Io(_) | ClientError::Disconnected | ClientError::RelaySilent { .. } => {
            S::Disconnected
        }
        ClientError::Protocol(_) | ClientError::UnexpectedFrame(_) => S::Protocol,
        ClientError::UnsupportedVersion(_) => S::UnsupportedVersion,
        ClientError::Closed { reason, .. } => closed_status(*reason),
        ClientError::KeyRequired => S::AuthFailed,
    }
}

/// The status of a connection the relay closed for `reason`.
pub(crate) fn closed_status(reason: CloseReason) -> ringrelay_status {
    match reason {
        CloseReason::AUTH_FAILED | CloseReason::BAD_HANDSHAKE => ringrelay_status::AuthFailed,
        CloseReason::UNSUPPORTED_VERSION => ringrelay_status::UnsupportedVersion,
        CloseReason::PROTOCOL_ERROR => ringrelay_status::Protocol,
        CloseReason::FRAME_TOO_LARGE => ringrelay_status::FrameTooLarge,
        _ => ringrelay_status::Closed,
    }
}

/// The status's name, as a static NUL-terminated string (`"RINGRELAY_STATUS_OK"`); an unknown
/// value gives `"RINGRELAY_STATUS_UNKNOWN"`. Never NULL; the string is never freed. Callable
/// from any thread and inside callbacks.
#[no_mangle]
pub extern "C" fn ringrelay_status_str(status: u32) -> *const c_char {
    let name = usize::try_from(status)
        .ok()
        .and_then(|i| ringrelay_status::ALL.get(i))
        .map_or("RINGRELAY_STATUS_UNKNOWN\0", |s| s.name());
    name.as_ptr().cast()
}
