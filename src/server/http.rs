//! A minimal HTTP/1.x responder for the metrics and health endpoint: one thread answers one
//! connection at a time, each bounded in bytes ([`REQUEST_HEAD_BYTES_MAX`]) and in time
//! ([`REQUEST_DEADLINE`]), then closes it. No thread per connection, nothing grows with the
//! number of clients, and an accept that fails for lack of descriptors (EMFILE, ENFILE) or
//! memory is retried after a short pause instead of ending the thread, so `/healthz` answers
//! again as soon as descriptors are free. Requests are parsed with `httparse`.
//!
//! Serial answers suit scrapes and health probes (a few per second, each answered in well
//! under a millisecond); a client that connects and says nothing delays the others by at most
//! the deadline. Authentication is the handler's: it sees the `Authorization` header
//! ([`Request::authorization`]) and may answer with a `WWW-Authenticate` challenge.
//!
//! With a TLS configuration (`metrics_tls`) each connection is HTTPS: the handshake
//! ([`TlsStream`], blocking) runs within the same deadline as the request, every read and
//! write bounded by what is left of it, so a silent or trickling TLS client holds the thread
//! no longer than a plaintext one.

use crate::tls::handshake::TLS_HANDSHAKE_RECORD;
use crate::tls::TlsStream;
use rustls::ServerConfig;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes of a request head (request line and headers) at most: scrapes send a few hundred.
pub const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// Time one connection gets for its TLS handshake (with `metrics_tls`), to send its request
/// and to read the answer.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(1);
/// Time an answer gets to be written even when reading its request took the whole deadline.
const ANSWER_WRITE_MIN: Duration = Duration::from_millis(100);
/// Pause after an accept failed for lack of descriptors or memory.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(50);
/// At most one warning about failing accepts per this long.
const ACCEPT_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// What the handler sees of a request.
pub struct Request<'a> {
    pub method: &'a str,
    /// The path without the query string.
    pub path: &'a str,
    /// The query string (after `?`), empty when there is none.
    pub query: &'a str,
    /// The `Authorization` header's value; `None` when there is none or it is not UTF-8.
    pub authorization: Option<&'a str>,
    /// Where the request came from.
    pub peer: SocketAddr,
}

/// What the handler answers.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// A `WWW-Authenticate` header's value (with a 401).
    pub www_authenticate: Option<&'static str>,
}

/// Accepts and answers connections on `listener` until `stop` is set (the caller then wakes
/// a blocked accept by shutting the listener down). `tls` is asked at each accept: with a
/// configuration the connection is answered over TLS (the handshake within the same
/// deadline), so a reload's new certificate serves the next connection.
pub fn serve(
    listener: &TcpListener,
    stop: &AtomicBool,
    tls: impl Fn() -> Option<Arc<ServerConfig>>,
    mut handle: impl FnMut(&Request) -> Response,
) {
    let mut last_warning: Option<Instant> = None;
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let conn = Deadlined {
                    sock: stream,
                    deadline: Instant::now() + REQUEST_DEADLINE,
                };
                match tls() {
                    Some(config) => answer_tls(conn, peer, config, &mut handle),
                    None => answer(conn, peer, &mut handle),
                }
            }
            Err(_) if stop.load(Ordering::Acquire) => return,
            Err(e) => {
                if !last_warning.is_some_and(|t| t.elapsed() < ACCEPT_WARNING_INTERVAL) {
                    tracing::warn!("metrics endpoint: accept failed ({e}); retrying");
                    last_warning = Some(Instant::now());
                }
                std::thread::sleep(ACCEPT_RETRY_PAUSE);
            }
        }
    }
}

/// A connection whose every read and write ends by `deadline`: the socket's timeout is set
/// to what is left before each, so a peer that trickles bytes cannot stretch its turn.
struct Deadlined {
    sock: TcpStream,
    deadline: Instant,
}

impl Deadlined {
    fn left(&self) -> io::Result<Duration> {
        match self.deadline.saturating_duration_since(Instant::now()) {
            left if left.is_zero() => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request deadline passed",
            )),
            left => Ok(left),
        }
    }

    /// The first byte the peer sent, without taking it.
    fn peek_first(&self) -> io::Result<u8> {
        self.sock.set_read_timeout(Some(self.left()?))?;
        let mut first = [0u8; 1];
        match self.sock.peek(&mut first)? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            _ => Ok(first[0]),
        }
    }
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.set_read_timeout(Some(self.left()?))?;
        self.sock.read(buf)
    }
}

impl Write for Deadlined {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.set_write_timeout(Some(self.left()?))?;
        self.sock.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

/// A connection answered in plain HTTP or over TLS.
trait Conn: Read + Write {
    fn deadlined(&mut self) -> &mut Deadlined;
    /// Sends what is buffered and ends the stream (over TLS, with close_notify).
    fn finish(&mut self) -> io::Result<()>;
}

impl Conn for Deadlined {
    fn deadlined(&mut self) -> &mut Deadlined {
        self
    }

    fn finish(&mut self) -> io::Result<()> {
        self.flush()
    }
}

impl Conn for TlsStream<Deadlined> {
    fn deadlined(&mut self) -> &mut Deadlined {
        self.get_mut()
    }

    fn finish(&mut self) -> io::Result<()> {
        self.close()
    }
}

/// The handshake, then the request over TLS, all within the connection's deadline. A peer
/// whose first byte is not a TLS handshake record (a plaintext HTTP client) is answered 400
/// in plain HTTP, saying what the endpoint speaks.
fn answer_tls(
    mut conn: Deadlined,
    peer: SocketAddr,
    config: Arc<ServerConfig>,
    handle: &mut impl FnMut(&Request) -> Response,
) {
    match conn.peek_first() {
        Ok(TLS_HANDSHAKE_RECORD) => {}
        Ok(_) => {
            // Take what the client sent (its request head, as a rule) so closing the socket
            // does not reset the connection before the answer is read.
            let _ = conn.read(&mut [0u8; REQUEST_HEAD_BYTES_MAX]);
            let refusal = plain(
                400,
                "this endpoint speaks HTTPS (metrics_tls): use https://\n",
            );
            return respond(&mut conn, refusal);
        }
        Err(_) => return,
    }
    match TlsStream::accept(conn, config) {
        Ok(tls) => answer(tls, peer, handle),
        Err(e) => tracing::debug!(%peer, "metrics endpoint: TLS handshake failed: {e}"),
    }
}

/// Reads one request head within the deadline, answers it, closes the connection.
fn answer<C: Conn>(mut conn: C, peer: SocketAddr, handle: &mut impl FnMut(&Request) -> Response) {
    let mut buf = [0u8; REQUEST_HEAD_BYTES_MAX];
    let mut len = 0;
    let response = loop {
        match conn.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                let (method, target) = (request.method.unwrap_or(""), request.path.unwrap_or(""));
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let head_only = method == "HEAD";
                let authorization = header(request.headers, "authorization");
                let mut response = handle(&Request {
                    method,
                    path,
                    query,
                    authorization,
                    peer,
                });
                if head_only {
                    response.body.clear();
                }
                break response;
            }
            Ok(httparse::Status::Partial) if len < buf.len() => {}
            Ok(httparse::Status::Partial) => break plain(431, "request head too large\n"),
            Err(_) => break plain(400, "bad request\n"),
        }
    };
    respond(&mut conn, response);
}

/// Writes `response` and ends the connection. The answer gets at least
/// [`ANSWER_WRITE_MIN`] even when reading the request took the whole deadline.
fn respond<C: Conn>(conn: &mut C, response: Response) {
    let at_least = Instant::now() + ANSWER_WRITE_MIN;
    let deadlined = conn.deadlined();
    deadlined.deadline = deadlined.deadline.max(at_least);
    let challenge = response
        .www_authenticate
        .map(|c| format!("WWW-Authenticate: {c}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{challenge}Connection: close\r\n\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    let _ = conn
        .write_all(head.as_bytes())
        .and_then(|()| conn.write_all(response.body.as_bytes()))
        .and_then(|()| conn.finish());
}

/// The value of the header `name` (case-insensitive; the first, if repeated), if UTF-8.
fn header<'a>(headers: &[httparse::Header<'a>], name: &str) -> Option<&'a str> {
    let found = headers.iter().find(|h| h.name.eq_ignore_ascii_case(name))?;
    std::str::from_utf8(found.value).ok()
}

/// A plain-text response.
pub fn plain(status: u16, body: &str) -> Response {
    Response {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.into(),
        www_authenticate: None,
    }
}

/// A JSON response with status 200.
pub fn json(body: String) -> Response {
    Response {
        status: 200,
        content_type: "application/json",
        body,
        www_authenticate: None,
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::config::{client_config, server_config, Tickets};
    use crate::tls::test_pki::Pki;
    use crate::tls::{ClientCertificates, Identity, Origin, TrustAnchors};
    use std::sync::RwLock;

    fn server_tls(pki: &Pki) -> Arc<ServerConfig> {
        let identity = Identity::from_pem(
            Origin::memory("tls_cert_file"),
            pki.server.cert_pem.as_bytes(),
            Origin::memory("tls_key_file"),
            pki.server.key_pem.as_bytes(),
        )
        .unwrap();
        server_config(&identity, &ClientCertificates::NotAsked, Tickets::Client).unwrap()
    }

    fn client_tls(ca_pem: &str) -> Arc<rustls::ClientConfig> {
        let anchors = TrustAnchors::from_pem(Origin::memory("tls_ca_file"), ca_pem.as_bytes());
        client_config(&anchors.unwrap(), None).unwrap()
    }

    /// A server on a loopback port answering `path?query` as the body; stopped on drop.
    struct Running {
        addr: std::net::SocketAddr,
        stop: Arc<AtomicBool>,
        listener: TcpListener,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Running {
        fn start() -> Running {
            Running::serving(Arc::new(RwLock::new(None)))
        }

        /// Answers over TLS with whatever configuration `tls` holds at each accept.
        fn serving(tls: Arc<RwLock<Option<Arc<ServerConfig>>>>) -> Running {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let (l, s) = (listener.try_clone().unwrap(), Arc::clone(&stop));
            let thread = std::thread::spawn(move || {
                let in_force = || tls.read().unwrap().clone();
                serve(&l, &s, in_force, |r| match r.authorization {
                    Some(auth) => Response {
                        www_authenticate: Some("Bearer"),
                        ..plain(401, auth)
                    },
                    None => plain(200, &format!("{} {}?{}", r.method, r.path, r.query)),
                })
            });
            Running {
                addr,
                stop,
                listener,
                thread: Some(thread),
            }
        }

        /// `request` over TLS, trusting `client`'s CA; the answer, or why the handshake failed.
        fn ask_tls(
            &self,
            client: &Arc<rustls::ClientConfig>,
            request: &[u8],
        ) -> io::Result<String> {
            let s = TcpStream::connect(self.addr)?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let mut tls = TlsStream::connect(s, Arc::clone(client), name)?;
            tls.write_all(request)?;
            tls.flush()?;
            let mut out = String::new();
            tls.read_to_string(&mut out)?;
            Ok(out)
        }

        fn ask(&self, request: &[u8]) -> String {
            let mut s = TcpStream::connect(self.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(request).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Release);
            let _ = socket2::SockRef::from(&self.listener).shutdown(std::net::Shutdown::Read);
            if let Some(t) = self.thread.take() {
                t.join().unwrap();
            }
        }
    }

    #[test]
    fn answers_a_request_split_across_writes_and_closes() {
        let server = Running::start();
        let out = server.ask(b"GET /healthz?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("Content-Length: 16\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\nGET /healthz?x=1"), "{out}");
        let head = server.ask(b"HEAD /metrics HTTP/1.0\r\n\r\n");
        assert!(
            head.ends_with("Connection: close\r\n\r\n"),
            "no body for HEAD: {head}"
        );
    }

    #[test]
    fn the_authorization_header_reaches_the_handler_and_a_challenge_the_client() {
        let server = Running::start();
        let out = server.ask(b"GET /x HTTP/1.1\r\nHost: a\r\nauthorization: Bearer t0k\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{out}");
        assert!(out.contains("\r\nWWW-Authenticate: Bearer\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\nBearer t0k"), "{out}");
        let open = server.ask(b"GET /x HTTP/1.1\r\n\r\n");
        assert!(!open.contains("WWW-Authenticate"), "{open}");
    }

    #[test]
    fn garbage_oversized_and_silent_clients_are_bounded_and_others_still_answered() {
        let server = Running::start();
        assert!(server
            .ask(b"\x00\x01 nonsense\r\n\r\n")
            .starts_with("HTTP/1.1 400 "));
        // Exactly the bound with no end of head: all of it is read, then refused.
        let mut req = b"GET /".to_vec();
        req.resize(REQUEST_HEAD_BYTES_MAX, b'a');
        assert!(server.ask(&req).starts_with("HTTP/1.1 431 "));
        // A client that says nothing holds the server for at most the deadline.
        let _silent = TcpStream::connect(server.addr).unwrap();
        let t = Instant::now();
        assert!(server
            .ask(b"GET / HTTP/1.0\r\n\r\n")
            .starts_with("HTTP/1.1 200 "));
        assert!(t.elapsed() < REQUEST_DEADLINE + Duration::from_secs(1));
    }

    #[test]
    fn https_answers_scrapes_from_the_rust_tls_client() {
        let pki = Pki::new();
        let server = Running::serving(Arc::new(RwLock::new(Some(server_tls(&pki)))));
        let client = client_tls(&pki.ca_pem);
        for path in ["/metrics", "/healthz"] {
            let request = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
            let out = server.ask_tls(&client, request.as_bytes()).unwrap();
            assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
            assert!(out.ends_with(&format!("\r\n\r\nGET {path}?")), "{out}");
        }
        let out = server
            .ask_tls(
                &client,
                b"GET /x HTTP/1.1\r\nAuthorization: Bearer t\r\n\r\n",
            )
            .unwrap();
        assert!(
            out.starts_with("HTTP/1.1 401 "),
            "the header crosses TLS: {out}"
        );
        let stranger = client_tls(&pki.other_ca_pem);
        assert!(server
            .ask_tls(&stranger, b"GET / HTTP/1.0\r\n\r\n")
            .is_err());
    }

    #[test]
    fn a_new_certificate_serves_the_next_connection() {
        let (old, new) = (Pki::new(), Pki::new());
        let in_force = Arc::new(RwLock::new(Some(server_tls(&old))));
        let server = Running::serving(Arc::clone(&in_force));
        let request = b"GET /healthz HTTP/1.0\r\n\r\n";
        assert!(server.ask_tls(&client_tls(&old.ca_pem), request).is_ok());
        *in_force.write().unwrap() = Some(server_tls(&new));
        let out = server.ask_tls(&client_tls(&new.ca_pem), request).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
        assert!(server.ask_tls(&client_tls(&old.ca_pem), request).is_err());
    }

    #[test]
    fn plaintext_and_silent_clients_of_the_tls_port_are_bounded_and_the_next_is_served() {
        let pki = Pki::new();
        let server = Running::serving(Arc::new(RwLock::new(Some(server_tls(&pki)))));
        let client = client_tls(&pki.ca_pem);
        // Plain HTTP to the HTTPS port: told so, in plain HTTP.
        let out = server.ask(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
        assert!(out.contains("speaks HTTPS"), "{out}");
        // One that says nothing, one that stops inside its ClientHello: each holds the
        // thread at most the deadline, then the next client is served.
        let _silent = TcpStream::connect(server.addr).unwrap();
        let mut stalled = TcpStream::connect(server.addr).unwrap();
        stalled.write_all(&[22, 3, 1, 0, 200, 1]).unwrap();
        let t = Instant::now();
        let out = server
            .ask_tls(&client, b"GET /healthz HTTP/1.0\r\n\r\n")
            .unwrap();
        assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
        assert!(
            t.elapsed() < 2 * REQUEST_DEADLINE + Duration::from_secs(1),
            "{:?}",
            t.elapsed()
        );
    }
}
