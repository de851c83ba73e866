//! The raw NATS protocol suite, run against ringrelay's NATS port and against nats-server
//! (Debian's 2.9, the oracle) with the same expectations. Each case is a script of bytes sent
//! after INFO and the exact bytes expected back, and whether the connection is then closed.
//! The cases are written from the NATS protocol documentation and from what nats-server
//! answers; where ringrelay differs on purpose, the case says so and why (the README lists the
//! same differences under "NATS clients").
//!
//! Open cases end with PING and are read until as many PONGs came as the expectation holds;
//! closing cases are read until the relay closes. Every read is bounded.

mod common;

use common::{start, WAIT};
use ringrelay::config::Config;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a case expects from one server.
#[derive(Clone, Copy, Debug)]
struct Expect {
    out: &'static [u8],
    closed: bool,
}

struct Case {
    name: &'static str,
    /// Sent in order, each part as its own write (to cut operations across receives).
    script: &'static [&'static [u8]],
    expect: Expect,
    /// ringrelay's answer where it differs from nats-server on purpose, and why.
    ringrelay: Option<(Expect, &'static str)>,
}

const fn open(out: &'static [u8]) -> Expect {
    Expect { out, closed: false }
}

const fn closed(out: &'static [u8]) -> Expect {
    Expect { out, closed: true }
}

const fn case(name: &'static str, script: &'static [&'static [u8]], expect: Expect) -> Case {
    Case {
        name,
        script,
        expect,
        ringrelay: None,
    }
}

const QUIET: &[u8] = b"CONNECT {\"verbose\":false}\r\n";
const HEADERS: &[u8] = b"CONNECT {\"verbose\":false,\"headers\":true}\r\n";
const NO_RESPONDERS: &[u8] =
    b"CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}\r\n";
const PARSER_ERROR: &str = "a clear error before the close costs nothing; nats-server 2.9 \
                            closes without one";

/// The cases. Subjects are distinct per case; every case runs on its own connection.
fn cases() -> Vec<Case> {
    let mut cases = vec![
        // --- CONNECT, verbose, PING ---
        case("ping", &[b"PING\r\n"], open(b"PONG\r\n")),
        case("ping before connect", &[b"PING\r\nPING\r\n"], open(b"PONG\r\nPONG\r\n")),
        case("connect quiet", &[QUIET, b"PING\r\n"], open(b"PONG\r\n")),
        case("connect default is verbose", &[b"CONNECT {}\r\nPING\r\n"], open(b"+OK\r\nPONG\r\n")),
        case(
            "connect verbose",
            &[b"CONNECT {\"verbose\":true}\r\nPING\r\n"],
            open(b"+OK\r\nPONG\r\n"),
        ),
        case(
            "connect twice",
            &[QUIET, b"CONNECT {\"verbose\":true}\r\nPING\r\n"],
            open(b"+OK\r\nPONG\r\n"),
        ),
        case(
            "connect unknown fields",
            &[b"CONNECT {\"verbose\":false,\"x\":[1,{\"y\":2}],\"protocol\":1}\r\nPING\r\n"],
            open(b"PONG\r\n"),
        ),
        case(
            "connect with client fields",
            &[b"CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"n\",\"lang\":\"rust\",\"version\":\"1.0\",\"headers\":true,\"no_responders\":true}\r\nPING\r\n"],
            open(b"PONG\r\n"),
        ),
        case(
            "no_responders without headers",
            &[b"CONNECT {\"verbose\":false,\"no_responders\":true}\r\nPING\r\n"],
            closed(b"-ERR 'no responders requires headers support'\r\n"),
        ),
        case("ping with a bare LF", &[QUIET, b"PING\n"], open(b"PONG\r\n")),
        case("ping lower case", &[QUIET, b"ping\r\n"], open(b"PONG\r\n")),
        case("ping mixed case", &[QUIET, b"pInG\r\n"], open(b"PONG\r\n")),
        case("ping with trailing letters", &[QUIET, b"PINGX\r\n"], open(b"PONG\r\n")),
        case("ping with an argument", &[QUIET, b"PING x\r\n"], open(b"PONG\r\n")),
        case("pong is accepted", &[QUIET, b"PONG\r\nPING\r\n"], open(b"PONG\r\n")),
        case("info from a client", &[b"INFO {}\r\nPING\r\n"], open(b"PONG\r\n")),
        case("ok from a client", &[b"+OK\r\nPING\r\n"], open(b"PONG\r\n")),
        case("ping split in three", &[QUIET, b"PI", b"NG", b"\r\n"], open(b"PONG\r\n")),
        // --- PUB / SUB / MSG ---
        case(
            "sub pub msg",
            &[QUIET, b"SUB o.a 1\r\nPUB o.a 2\r\nhi\r\nPING\r\n"],
            open(b"MSG o.a 1 2\r\nhi\r\nPONG\r\n"),
        ),
        case(
            "operations in lower case with runs of blanks",
            &[QUIET, b"sub  o.b\t 1\r\npub o.b  \t2\r\nhi\r\nping\r\n"],
            open(b"MSG o.b 1 2\r\nhi\r\nPONG\r\n"),
        ),
        case(
            "empty payload",
            &[QUIET, b"SUB o.c 1\r\nPUB o.c 0\r\n\r\nPING\r\n"],
            open(b"MSG o.c 1 0\r\n\r\nPONG\r\n"),
        ),
        case(
            "payload split across writes",
            &[QUIET, b"SUB o.d 1\r\nPUB o.d 5\r\nab", b"cde\r\nPING\r\n"],
            open(b"MSG o.d 1 5\r\nabcde\r\nPONG\r\n"),
        ),
        case(
            "control line split across writes",
            &[QUIET, b"SUB o.e 1\r\nPU", b"B o.e 1\r", b"\nx\r\nPING\r\n"],
            open(b"MSG o.e 1 1\r\nx\r\nPONG\r\n"),
        ),
        case(
            "payload holding CRLF and spaces",
            &[QUIET, b"SUB o.f 1\r\nPUB o.f 6\r\na\r\nb c\r\nPING\r\n"],
            open(b"MSG o.f 1 6\r\na\r\nb c\r\nPONG\r\n"),
        ),
        case(
            "pub with no subscriber",
            &[QUIET, b"PUB o.g 1\r\nx\r\nPING\r\n"],
            open(b"PONG\r\n"),
        ),
        // One sid per subject: nats-server orders two sids of one subject at random (a CI
        // run saw 2 before 1), and the protocol promises no order between sids.
        case(
            "one msg per matching sid",
            &[QUIET, b"SUB o.h 1\r\nSUB o.* 3\r\nPUB o.h 1\r\nx\r\nPING\r\n"],
            open(b"MSG o.h 1 1\r\nx\r\nMSG o.h 3 1\r\nx\r\nPONG\r\n"),
        ),
        case(
            "a sid used twice is one subscription",
            &[QUIET, b"SUB o.i 1\r\nSUB o.i 1\r\nPUB o.i 1\r\nx\r\nPING\r\n"],
            open(b"MSG o.i 1 1\r\nx\r\nPONG\r\n"),
        ),
        case(
            "star matches one token",
            &[QUIET, b"SUB w.* 1\r\nPUB w.a 1\r\nx\r\nPUB w.a.b 1\r\ny\r\nPING\r\n"],
            open(b"MSG w.a 1 1\r\nx\r\nPONG\r\n"),
        ),
        case(
            "gt matches the rest",
            &[QUIET, b"SUB v.> 1\r\nPUB v 1\r\nx\r\nPUB v.a.b 1\r\ny\r\nPING\r\n"],
            open(b"MSG v.a.b 1 1\r\ny\r\nPONG\r\n"),
        ),
        case(
            "star in the middle",
            &[QUIET, b"SUB u.*.z 1\r\nPUB u.a.z 1\r\nx\r\nPUB u.a.y 1\r\ny\r\nPING\r\n"],
            open(b"MSG u.a.z 1 1\r\nx\r\nPONG\r\n"),
        ),
        case(
            "a wildcard inside a token is literal",
            &[QUIET, b"SUB t*x 1\r\nPUB t*x 1\r\nx\r\nPUB tax 1\r\ny\r\nPING\r\n"],
            open(b"MSG t*x 1 1\r\nx\r\nPONG\r\n"),
        ),
        case(
            "full wildcard",
            &[QUIET, b"SUB > 1\r\nPUB s.q 1\r\nx\r\nPING\r\n"],
            open(b"MSG s.q 1 1\r\nx\r\nPONG\r\n"),
        ),
        case(
            "queue group on one connection gets one copy",
            &[QUIET, b"SUB q.a g 1\r\nSUB q.a g 1\r\nPUB q.a 1\r\nx\r\nPING\r\n"],
            open(b"MSG q.a 1 1\r\nx\r\nPONG\r\n"),
        ),
        case(
            "queue and plain on one connection",
            &[QUIET, b"SUB q.b 2\r\nSUB q.b g 1\r\nPUB q.b 1\r\nx\r\nPING\r\n"],
            open(b"MSG q.b 2 1\r\nx\r\nMSG q.b 1 1\r\nx\r\nPONG\r\n"),
        ),
        case(
            "echo off",
            &[b"CONNECT {\"verbose\":false,\"echo\":false}\r\nSUB e.a 1\r\nPUB e.a 1\r\nx\r\nPING\r\n"],
            open(b"PONG\r\n"),
        ),
        case(
            "headers",
            &[b"CONNECT {\"verbose\":false,\"headers\":true}\r\nSUB h.a 1\r\nPUB h.a 1\r\nx\r\nPING\r\n"],
            open(b"MSG h.a 1 1\r\nx\r\nPONG\r\n"),
        ),
        // --- Reply subjects, headers, no responders ---
        case(
            "pub with a reply subject",
            &[QUIET, b"SUB r.a 1\r\nPUB r.a inbox.1 2\r\nhi\r\nPING\r\n"],
            open(b"MSG r.a 1 inbox.1 2\r\nhi\r\nPONG\r\n"),
        ),
        case(
            "hpub arrives as hmsg",
            &[
                HEADERS,
                b"SUB r.b 1\r\nHPUB r.b 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n",
            ],
            open(b"HMSG r.b 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPONG\r\n"),
        ),
        case(
            "hpub with a reply subject and a header line",
            &[
                HEADERS,
                b"SUB r.c 1\r\nHPUB r.c inbox.2 18 20\r\nNATS/1.0\r\nA: b\r\n\r\nhi\r\nPING\r\n",
            ],
            open(b"HMSG r.c 1 inbox.2 18 20\r\nNATS/1.0\r\nA: b\r\n\r\nhi\r\nPONG\r\n"),
        ),
        case(
            "hpub split across writes",
            &[
                HEADERS,
                b"SUB r.d 1\r\nHPUB r.d 12 1",
                b"4\r\nNATS/1.",
                b"0\r\n\r\nhi\r\nPING\r\n",
            ],
            open(b"HMSG r.d 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPONG\r\n"),
        ),
        case(
            "a request nobody subscribes to gets the 503 status",
            &[
                NO_RESPONDERS,
                b"SUB _INBOX.x.* 1\r\nPUB r.nobody _INBOX.x.1 1\r\n?\r\nPING\r\n",
            ],
            open(b"HMSG _INBOX.x.1 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPONG\r\n"),
        ),
        case(
            "an hpub request nobody subscribes to gets the 503 status",
            &[
                NO_RESPONDERS,
                b"SUB _INBOX.y.* 1\r\nHPUB r.nobody _INBOX.y.1 12 13\r\nNATS/1.0\r\n\r\n?\r\nPING\r\n",
            ],
            open(b"HMSG _INBOX.y.1 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPONG\r\n"),
        ),
        case(
            "a request with a subscriber is delivered, no 503",
            &[
                NO_RESPONDERS,
                b"SUB _INBOX.z.* 1\r\nSUB r.e 2\r\nPUB r.e _INBOX.z.1 1\r\n?\r\nPING\r\n",
            ],
            open(b"MSG r.e 2 _INBOX.z.1 1\r\n?\r\nPONG\r\n"),
        ),
        case(
            "no 503 without no_responders",
            &[
                HEADERS,
                b"SUB _INBOX.w.* 1\r\nPUB r.nobody _INBOX.w.1 1\r\n?\r\nPING\r\n",
            ],
            open(b"PONG\r\n"),
        ),
        case(
            "no 503 for a publish without a reply subject",
            &[NO_RESPONDERS, b"PUB r.nobody 1\r\n?\r\nPING\r\n"],
            open(b"PONG\r\n"),
        ),
        // --- UNSUB ---
        case(
            "unsub",
            &[QUIET, b"SUB n.a 1\r\nUNSUB 1\r\nPUB n.a 1\r\nx\r\nPING\r\n"],
            open(b"PONG\r\n"),
        ),
        case(
            "unsub an unknown sid",
            &[QUIET, b"UNSUB 99\r\nPING\r\n"],
            open(b"PONG\r\n"),
        ),
        case(
            "unsub with a maximum",
            &[QUIET, b"SUB n.b 1\r\nUNSUB 1 2\r\nPUB n.b 1\r\nx\r\nPUB n.b 1\r\ny\r\nPUB n.b 1\r\nz\r\nPING\r\n"],
            open(b"MSG n.b 1 1\r\nx\r\nMSG n.b 1 1\r\ny\r\nPONG\r\n"),
        ),
        case(
            "unsub with a maximum that is not a number",
            &[QUIET, b"SUB n.c 1\r\nUNSUB 1 x\r\nPING\r\n"],
            open(b"PONG\r\n"),
        ),
        case(
            "unsub one of two sids",
            &[QUIET, b"SUB n.d 1\r\nSUB n.d 2\r\nUNSUB 1\r\nPUB n.d 1\r\nx\r\nPING\r\n"],
            open(b"MSG n.d 2 1\r\nx\r\nPONG\r\n"),
        ),
        // --- verbose ---
        case(
            "verbose acknowledges sub pub unsub, not ping",
            &[b"CONNECT {\"verbose\":true}\r\nSUB b.a 1\r\nPUB b.a 1\r\nx\r\nUNSUB 1\r\nPING\r\n"],
            open(b"+OK\r\n+OK\r\n+OK\r\nMSG b.a 1 1\r\nx\r\n+OK\r\nPONG\r\n"),
        ),
        case(
            "operations before connect are verbose",
            &[b"SUB b.b 1\r\nPUB b.b 1\r\nx\r\nPING\r\n"],
            open(b"+OK\r\n+OK\r\nMSG b.b 1 1\r\nx\r\nPONG\r\n"),
        ),
        case(
            "verbose error has no ok",
            &[b"CONNECT {\"verbose\":true}\r\nSUB b..c 1\r\nPING\r\n"],
            open(b"+OK\r\n-ERR 'Invalid Subject'\r\nPONG\r\n"),
        ),
        // --- refusals that keep the connection ---
        case("sub empty token", &[QUIET, b"SUB r..a 1\r\nPING\r\n"], open(b"-ERR 'Invalid Subject'\r\nPONG\r\n")),
        case("sub leading dot", &[QUIET, b"SUB .r 1\r\nPING\r\n"], open(b"-ERR 'Invalid Subject'\r\nPONG\r\n")),
        case("sub trailing dot", &[QUIET, b"SUB r. 1\r\nPING\r\n"], open(b"-ERR 'Invalid Subject'\r\nPONG\r\n")),
        case("sub gt not last", &[QUIET, b"SUB r.>.a 1\r\nPING\r\n"], open(b"-ERR 'Invalid Subject'\r\nPONG\r\n")),
        case(
            "pedantic sub empty token",
            &[b"CONNECT {\"verbose\":false,\"pedantic\":true}\r\nSUB r..b 1\r\nPING\r\n"],
            open(b"-ERR 'Invalid Subject'\r\nPONG\r\n"),
        ),
        case(
            "pub to a wildcard",
            &[QUIET, b"PUB p.* 1\r\nx\r\nPING\r\n"],
            open(b"-ERR 'Invalid Publish Subject'\r\nPONG\r\n"),
        ),
        case(
            "pub to gt",
            &[QUIET, b"PUB p.> 1\r\nx\r\nPING\r\n"],
            open(b"-ERR 'Invalid Publish Subject'\r\nPONG\r\n"),
        ),
        case(
            "pub empty token",
            &[QUIET, b"PUB p..a 1\r\nx\r\nPING\r\n"],
            open(b"-ERR 'Invalid Publish Subject'\r\nPONG\r\n"),
        ),
        case(
            "pub trailing dot",
            &[QUIET, b"PUB p. 1\r\nx\r\nPING\r\n"],
            open(b"-ERR 'Invalid Publish Subject'\r\nPONG\r\n"),
        ),
        case(
            "pub leading dot",
            &[QUIET, b"PUB .p 1\r\nx\r\nPING\r\n"],
            open(b"-ERR 'Invalid Publish Subject'\r\nPONG\r\n"),
        ),
        // --- breaches that close ---
        case("unknown operation", &[b"FOO\r\n"], closed(b"-ERR 'Unknown Protocol Operation'\r\n")),
        case(
            "unknown operation after connect",
            &[QUIET, b"BAR x\r\n"],
            closed(b"-ERR 'Unknown Protocol Operation'\r\n"),
        ),
        case(
            "payload longer than announced",
            &[QUIET, b"PUB c.a 3\r\nabcd\r\n"],
            closed(b"-ERR 'Unknown Protocol Operation'\r\n"),
        ),
        case(
            "payload ended by a bare LF",
            &[QUIET, b"PUB c.b 1\r\nx\nPING\r\n"],
            closed(b"-ERR 'Unknown Protocol Operation'\r\n"),
        ),
        case(
            "payload above max_payload",
            &[QUIET, b"PUB c.c 2000000\r\n"],
            closed(b"-ERR 'Maximum Payload Violation'\r\n"),
        ),
        case("error from a client", &[b"-ERR 'x'\r\n"], closed(b"")),
        case(
            "unsub without a blank",
            &[QUIET, b"UNSUB\r\n"],
            closed(b"-ERR 'Unknown Protocol Operation'\r\n"),
        ),
        case(
            "pub without a blank",
            &[QUIET, b"PUB\r\n"],
            closed(b"-ERR 'Unknown Protocol Operation'\r\n"),
        ),
        case(
            "sub without a blank",
            &[QUIET, b"SUB\r\n"],
            closed(b"-ERR 'Unknown Protocol Operation'\r\n"),
        ),
        case(
            "hpub without a blank",
            &[QUIET, b"HPUB\r\n"],
            closed(b"-ERR 'Unknown Protocol Operation'\r\n"),
        ),
    ];
    let parser_error = |name, script| Case {
        name,
        script,
        expect: closed(b""),
        ringrelay: Some((closed(b"-ERR 'Parser Error'\r\n"), PARSER_ERROR)),
    };
    cases.extend([
        parser_error("pub without a size", &[QUIET, b"PUB c.e\r\n"]),
        parser_error(
            "pub with a size that is not a number",
            &[QUIET, b"PUB c.f x\r\n"],
        ),
        parser_error("pub with a negative size", &[QUIET, b"PUB c.g -1\r\n"]),
        parser_error("pub with too many arguments", &[QUIET, b"PUB a b c d\r\n"]),
        parser_error("sub without a sid", &[QUIET, b"SUB c.h\r\n"]),
        parser_error("sub with too many arguments", &[QUIET, b"SUB a b c d\r\n"]),
        parser_error("unsub with a blank and no sid", &[QUIET, b"UNSUB \r\n"]),
        parser_error(
            "unsub with too many arguments",
            &[QUIET, b"UNSUB 1 2 3\r\n"],
        ),
        parser_error("pub with a blank and no arguments", &[QUIET, b"PUB \r\n"]),
        parser_error("connect with a blank and no options", &[b"CONNECT \r\n"]),
        parser_error("connect that is not JSON", &[b"CONNECT {bad\r\n"]),
        parser_error("connect without options", &[b"CONNECT\r\n"]),
        parser_error(
            "connect option of the wrong type",
            &[b"CONNECT {\"verbose\":\"yes\"}\r\n"],
        ),
        parser_error(
            "hpub without headers announced",
            &[QUIET, b"HPUB c.d 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"],
        ),
        parser_error(
            "hpub headers longer than the total",
            &[b"CONNECT {\"verbose\":false,\"headers\":true}\r\nHPUB c.i 14 12\r\n"],
        ),
    ]);
    cases
}

/// A server under test: where its NATS port is.
trait Target {
    fn addr(&self) -> SocketAddr;
}

/// nats-server started on a free loopback port (Debian package `nats-server`).
struct NatsServer {
    child: Child,
    addr: SocketAddr,
}

impl NatsServer {
    fn start() -> NatsServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "nats-server is the oracle of this suite: install it (apt-get install \
                 nats-server; .ci/run does)",
            );
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen within {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        NatsServer { child, addr }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Target for NatsServer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Target for ringrelay::server::Server {
    fn addr(&self) -> SocketAddr {
        self.nats_addr().expect("nats_listen is set")
    }
}

/// Runs `case` on a new connection to `addr`: what came after INFO, and whether the server
/// closed the connection.
fn run(addr: SocketAddr, case: &Case, want: &Expect) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    // INFO first.
    while !got.windows(2).any(|w| w == b"\r\n") {
        assert!(Instant::now() < deadline, "{}: no INFO", case.name);
        read_some(&mut s, &mut got);
    }
    let info_end = got.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    assert!(got.starts_with(b"INFO {"), "{}: {:?}", case.name, got);
    got.drain(..info_end);
    for part in case.script {
        if s.write_all(part).is_err() {
            break;
        }
        s.flush().unwrap();
    }
    let pongs = count(want.out, b"PONG\r\n");
    loop {
        if Instant::now() >= deadline {
            return (got, false);
        }
        if !read_some(&mut s, &mut got) {
            return (got, true);
        }
        if !want.closed && count(&got, b"PONG\r\n") >= pongs && got.ends_with(b"PONG\r\n") {
            return (got, false);
        }
    }
}

/// Reads what is there into `got`; false once the peer closed.
fn read_some(s: &mut TcpStream, got: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    match s.read(&mut buf) {
        Ok(0) => false,
        Ok(n) => {
            got.extend_from_slice(&buf[..n]);
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => true,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
        Err(e) => panic!("read: {e}"),
    }
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// Every case against `target`; returns the failures as text.
fn failures(target: &dyn Target, ringrelay: bool) -> Vec<String> {
    let mut failed = Vec::new();
    for case in cases() {
        let want = match (&case.ringrelay, ringrelay) {
            (Some((differs, _why)), true) => *differs,
            _ => case.expect,
        };
        let (got, was_closed) = run(target.addr(), &case, &want);
        if got != want.out || was_closed != want.closed {
            failed.push(format!(
                "{}: want {:?} (closed {}), got {:?} (closed {})",
                case.name,
                String::from_utf8_lossy(want.out),
                want.closed,
                String::from_utf8_lossy(&got),
                was_closed
            ));
        }
    }
    failed
}

#[test]
fn the_suite_has_at_least_sixty_cases_with_unique_names() {
    let cases = cases();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut names: Vec<_> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names are unique");
    let explained = |c: &Case| match c.ringrelay {
        Some((_, why)) => !why.is_empty(),
        None => true,
    };
    assert!(cases.iter().all(explained), "every difference says why");
}

#[test]
fn ringrelay_answers_every_case_as_expected() {
    let server = start(Config {
        nats_listen: Some("127.0.0.1:0".parse().unwrap()),
        workers: 1,
        ..common::config()
    });
    let failed = failures(&server, true);
    assert!(
        failed.is_empty(),
        "{} failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn nats_server_answers_every_case_as_expected() {
    let oracle = NatsServer::start();
    let failed = failures(&oracle, false);
    assert!(
        failed.is_empty(),
        "{} failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}
