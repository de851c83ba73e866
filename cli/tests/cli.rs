//! The real `ringrelay` binary end to end: `serve` announces its address, the client verbs talk
//! through it, and failures print `ringrelay: ...` with the documented exit statuses.
//!
//! Synchronisation is by output lines, presence events and process exits, never by sleeping:
//! an in-test watcher (a library `Client`) sees a verb's id come online before the test acts
//! on it.

mod common;

use common::*;
use ringrelay::client::{Client, Event};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// An in-test client watching `ids` (synchronised: the WATCHes are in the table on return).
fn watcher(addr: SocketAddr, name: &str, ids: &[&str]) -> Client {
    let mut w = connect(addr, name);
    for id in ids {
        w.watch(id.as_bytes()).unwrap();
    }
    // The relay answers each WATCH with the id's present state: none is registered yet.
    let answers: Vec<Event> = ids
        .iter()
        .map(|id| Event::Presence {
            client_id: id.as_bytes().to_vec(),
            online: false,
        })
        .collect();
    assert_eq!(sync(&mut w), answers);
    w
}

/// The next event of `w` is `id`'s presence. Bounded by [`SLOW_WAIT`]: the change follows a
/// verb's process starting or exiting.
fn expect_presence(w: &mut Client, id: &str, online: bool) {
    match next_event_within(w, SLOW_WAIT) {
        Event::Presence {
            client_id,
            online: o,
        } if client_id == id.as_bytes() && o == online => {}
        other => panic!("expected presence {id} online={online}, got {other:?}"),
    }
}

#[test]
fn serve_prints_its_address_and_exits_cleanly_on_sigterm() {
    let (mut relay, addr) = serve(&["--workers", "2"]);
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0, "the announced port is the bound one");
    let mut a = connect(addr, "a");
    let mut b = connect(addr, "b");
    assert_round_trip(&mut a, &mut b);
    relay.terminate();
    // Connected clients are told the relay is going away.
    match next_event(&mut a) {
        Event::Closed { reason, .. } => {
            assert_eq!(reason, ringrelay::protocol::CloseReason::SHUTDOWN)
        }
        other => panic!("expected Closed(SHUTDOWN), got {other:?}"),
    }
    let (status, rest) = relay.wait_exit_within(Duration::from_secs(10));
    assert!(
        status.success(),
        "serve exited with {status}; stderr:\n{}",
        relay.stderr()
    );
    assert!(
        rest.is_empty(),
        "serve printed more than its address: {rest:?}"
    );
}

#[test]
fn sigint_at_any_moment_of_the_start_up_ends_serve_promptly() {
    // The moments vary from before the signal thread exists to after the workers run; the
    // sleeps choose the moment, they wait for nothing.
    for delay_ms in [0u64, 1, 3, 10, 30, 100, 300] {
        let mut relay = Proc::spawn(&["serve", "--listen", "127.0.0.1:0", "--workers", "4"]);
        std::thread::sleep(Duration::from_millis(delay_ms));
        relay.signal(libc::SIGINT);
        let (status, _) = relay.wait_exit_within(Duration::from_secs(5));
        use std::os::unix::process::ExitStatusExt;
        // 0: it had started and stopped cleanly; 130 (128 + SIGINT): it was starting;
        // killed by SIGINT: the signal came before the relay set up its handling.
        let honoured =
            matches!(status.code(), Some(0) | Some(130)) || status.signal() == Some(libc::SIGINT);
        assert!(
            honoured,
            "SIGINT after {delay_ms} ms: {status}; stderr:\n{}",
            relay.stderr()
        );
    }
}

#[test]
fn listen_prints_a_sent_payload_and_exits_zero() {
    let (_relay, addr) = serve(&[]);
    let server = addr.to_string();
    let mut w = watcher(addr, "cli-watcher", &["listener"]);
    let mut listen = Proc::spawn(&[
        "listen",
        "--server",
        &server,
        "--id",
        "listener",
        "--count",
        "1",
        "--timeout-ms",
        "20000",
    ]);
    // Registered means listening: `listen` does nothing after HELLO but receive.
    expect_presence(&mut w, "listener", true);
    let mut send = Proc::spawn(&[
        "send",
        "--server",
        &server,
        "--id",
        "cli-sender",
        "--to",
        "listener",
        "hello from the cli",
    ]);
    let (status, out) = send.wait_exit();
    assert!(
        status.success(),
        "send: {status}; stderr:\n{}",
        send.stderr()
    );
    assert!(out.is_empty(), "send printed {out:?}");
    let (status, out) = listen.wait_exit();
    assert!(
        status.success(),
        "listen: {status}; stderr:\n{}",
        listen.stderr()
    );
    assert_eq!(out, ["cli-sender: hello from the cli"]);
    // It exited after its one line, so its id went offline.
    expect_presence(&mut w, "listener", false);
}

#[test]
fn send_to_an_unknown_id_exits_two_with_unknown_id() {
    let (_relay, addr) = serve(&[]);
    let mut send = Proc::spawn(&[
        "send",
        "--server",
        &addr.to_string(),
        "--id",
        "cli-sender",
        "--to",
        "nobody",
        "hi",
    ]);
    let (status, out) = send.wait_exit();
    assert_eq!(status.code(), Some(2), "stderr:\n{}", send.stderr());
    assert!(out.is_empty());
    let stderr = send.stderr();
    assert!(
        stderr.contains("ringrelay: unknown id nobody"),
        "stderr:\n{stderr}"
    );
}

/// A loopback port free a moment ago (for `serve --metrics`).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Polls the relay's `/subscriptions` (metrics endpoint `metrics`) until `topic` has a plain
/// subscriber; panics after [`SLOW_WAIT`].
fn await_subscriber(metrics: SocketAddr, topic: &str) {
    let deadline = Instant::now() + SLOW_WAIT;
    loop {
        let body = TcpStream::connect_timeout(&metrics, WAIT)
            .and_then(|mut s| {
                s.set_read_timeout(Some(WAIT))?;
                write!(s, "GET /subscriptions HTTP/1.0\r\nHost: {metrics}\r\n\r\n")?;
                let mut raw = String::new();
                s.read_to_string(&mut raw)?;
                Ok(raw)
            })
            .ok()
            .and_then(|raw| Some(raw.split_once("\r\n\r\n")?.1.to_string()));
        let subscribed = body
            .as_deref()
            .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
            .is_some_and(|json| {
                json["topics"].as_array().is_some_and(|topics| {
                    topics
                        .iter()
                        .any(|t| t["topic"] == topic && t["subscribers"].as_u64() >= Some(1))
                })
            });
        if subscribed {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no subscriber to {topic:?} listed; last answer: {body:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sub_prints_two_published_messages_and_exits_zero() {
    let metrics = free_port();
    let (_relay, addr) = serve(&["--metrics", &metrics.to_string()]);
    let server = addr.to_string();
    let mut w = watcher(addr, "cli-watcher", &["cli-sub"]);
    let mut sub = Proc::spawn(&[
        "sub",
        "--server",
        &server,
        "--id",
        "cli-sub",
        "--count",
        "2",
        "--timeout-ms",
        "20000",
        "news",
    ]);
    expect_presence(&mut w, "cli-sub", true);
    // `sub` subscribes right after its HELLO; its SUBSCRIBE can still be on the way when the
    // test sees it online, and a PUBLISH routed before the SUBSCRIBE reaches nobody (it is
    // dropped, never delayed): wait until the relay lists the subscription.
    await_subscriber(metrics, "news");
    for payload in ["first", "second"] {
        let mut publish = Proc::spawn(&[
            "pub", "--server", &server, "--id", "cli-pub", "news", payload,
        ]);
        let (status, out) = publish.wait_exit();
        assert!(
            status.success(),
            "pub: {status}; stderr:\n{}",
            publish.stderr()
        );
        assert!(out.is_empty());
    }
    let (status, out) = sub.wait_exit();
    assert!(status.success(), "sub: {status}; stderr:\n{}", sub.stderr());
    assert_eq!(out, ["cli-pub on news: first", "cli-pub on news: second"]);
}

#[test]
fn watch_sees_online_then_offline_for_a_listen_that_runs_and_exits() {
    let (_relay, addr) = serve(&[]);
    let server = addr.to_string();
    let mut w = watcher(addr, "cli-watcher", &["cli-watch", "transient"]);
    let mut watch = Proc::spawn(&[
        "watch",
        "--server",
        &server,
        "--id",
        "cli-watch",
        "--count",
        "3",
        "--timeout-ms",
        "10000",
        "transient",
    ]);
    // The relay answers the WATCH with the present state: once that line is out, the WATCH is
    // in place and no change can be missed.
    assert_eq!(
        watch.next_line_within(SLOW_WAIT).as_deref(),
        Some("offline transient"),
        "stderr:\n{}",
        watch.stderr()
    );
    expect_presence(&mut w, "cli-watch", true);
    let mut listen = Proc::spawn(&[
        "listen",
        "--server",
        &server,
        "--id",
        "transient",
        "--timeout-ms",
        "300",
    ]);
    expect_presence(&mut w, "transient", true);
    let (status, out) = listen.wait_exit();
    assert_eq!(
        status.code(),
        Some(3),
        "listen's timeout with nothing received: {status}; stderr:\n{}",
        listen.stderr()
    );
    assert!(out.is_empty(), "listen printed {out:?}");
    expect_presence(&mut w, "transient", false);
    let (status, rest) = watch.wait_exit();
    assert!(
        status.success(),
        "watch: {status}; stderr:\n{}",
        watch.stderr()
    );
    assert_eq!(rest, ["online transient", "offline transient"]);
    expect_presence(&mut w, "cli-watch", false);
}

#[test]
fn serve_with_a_bad_config_prints_an_error_and_exits_one() {
    let dir = std::env::temp_dir().join(format!("ringrelay-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unknown_key = dir.join("unknown-key.toml");
    std::fs::write(&unknown_key, "listne = \"127.0.0.1:0\"\n").unwrap();
    let bad_bound = dir.join("bad-bound.toml");
    std::fs::write(
        &bad_bound,
        "listen = \"127.0.0.1:0\"\nrecv_buffer_count = 1000\n",
    )
    .unwrap();
    let missing = dir.join("does-not-exist.toml");
    for (label, path) in [
        ("unknown key", &unknown_key),
        ("bad bound", &bad_bound),
        ("missing file", &missing),
    ] {
        let mut serve = Proc::spawn(&["serve", "--config", path.to_str().unwrap()]);
        let (status, out) = serve.wait_exit();
        let stderr = serve.stderr();
        assert_eq!(status.code(), Some(1), "{label}: stderr:\n{stderr}");
        assert!(out.is_empty(), "{label}: serve printed {out:?}");
        assert!(
            stderr.starts_with("ringrelay: "),
            "{label}: stderr:\n{stderr}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn version_names_the_commit_and_help_documents_environment_exit_status_and_examples() {
    let mut version = Proc::spawn(&["--version"]);
    let (status, out) = version.wait_exit();
    assert!(status.success());
    let line = out.first().expect("a version line");
    assert!(
        line.starts_with(&format!("ringrelay {} (", env!("CARGO_PKG_VERSION")))
            && (line.contains("(commit ") || line.contains("(unknown commit)")),
        "{line}"
    );
    let mut help = Proc::spawn(&["--help"]);
    let (status, out) = help.wait_exit();
    assert!(status.success());
    let text = out.join("\n");
    for needle in [
        "RINGRELAY_SERVER",
        "RINGRELAY_LOG",
        "Exit status:",
        "  4  no relay",
    ] {
        assert!(text.contains(needle), "--help lacks {needle:?}:\n{text}");
    }
    let mut help = Proc::spawn(&["send", "--help"]);
    let (status, out) = help.wait_exit();
    assert!(status.success());
    let text = out.join("\n");
    for needle in [
        "[default: 127.0.0.1:7400]",
        "[env: RINGRELAY_SERVER=",
        "[default: 10000]",
        "Examples:",
        "ringrelay send --id alice --to bob",
    ] {
        assert!(
            text.contains(needle),
            "send --help lacks {needle:?}:\n{text}"
        );
    }
}

#[test]
fn check_config_prints_the_effective_settings_and_budget_and_starts_nothing() {
    let mut check = Proc::spawn(&[
        "serve",
        "--check-config",
        "--listen",
        "127.0.0.1:0",
        "--token",
        "hunter2",
    ]);
    let (status, out) = check.wait_exit();
    assert!(status.success(), "stderr:\n{}", check.stderr());
    let text = out.join("\n");
    let json_end = text.find("\n}").expect("a JSON object") + 2;
    let json: serde_json::Value = serde_json::from_str(&text[..json_end]).expect("JSON");
    assert_eq!(json["listen"], "127.0.0.1:0");
    assert_eq!(json["token"], "(set)");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("memory budget: "), "{text}");
    assert_eq!(out.last().map(String::as_str), Some("config ok"));
    assert!(!check.stderr().contains("listening"), "it started nothing");

    let mut bad = Proc::spawn(&["serve", "--check-config", "--workers", "1", "--cpus", "0"]);
    let (status, _) = bad.wait_exit();
    assert_eq!(
        status.code(),
        Some(2),
        "conflicting flags are a usage error"
    );
    let dir = std::env::temp_dir().join(format!("rr-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "max_frame_bytes = 10\n").unwrap();
    let mut bad = Proc::spawn(&[
        "serve",
        "--check-config",
        "--config",
        file.to_str().unwrap(),
    ]);
    let (status, out) = bad.wait_exit();
    assert_eq!(status.code(), Some(1), "stderr:\n{}", bad.stderr());
    assert!(out.is_empty(), "{out:?}");
    assert!(bad.stderr().contains("max_frame_bytes"), "{}", bad.stderr());
}
