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

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Bytes of a request head (request line and headers) at most: scrapes send a few hundred.
pub const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// Time one connection gets to send its request and read the answer.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(1);
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
/// a blocked accept by shutting the listener down).
pub fn serve(
    listener: &TcpListener,
    stop: &AtomicBool,
    mut handle: impl FnMut(&Request) -> Response,
) {
    let mut last_warning: Option<Instant> = None;
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, peer)) => answer(stream, peer, &mut handle),
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

/// Reads one request head within the deadline, answers it, closes the connection.
fn answer(mut stream: TcpStream, peer: SocketAddr, handle: &mut impl FnMut(&Request) -> Response) {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut buf = [0u8; REQUEST_HEAD_BYTES_MAX];
    let mut len = 0;
    let response = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut buf[len..]) {
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
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    let _ = stream.set_write_timeout(Some(left));
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
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(response.body.as_bytes()));
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
    use std::sync::Arc;

    /// A server on a loopback port answering `path?query` as the body; stopped on drop.
    struct Running {
        addr: std::net::SocketAddr,
        stop: Arc<AtomicBool>,
        listener: TcpListener,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Running {
        fn start() -> Running {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let (l, s) = (listener.try_clone().unwrap(), Arc::clone(&stop));
            let thread = std::thread::spawn(move || {
                serve(&l, &s, |r| match r.authorization {
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
}
