//! The client verbs as scripts use them, against the real binary: payloads from standard
//! input and files (binary-safe, one per line with `--count`), the `json` and `raw` output
//! formats, `watch` reporting present state first, `chat`, the server list and
//! `RINGRELAY_SERVER`, and the exit statuses for a timeout (3) and for no relay (4).
//!
//! Synchronisation is by presence events of an in-test watcher and by process exits; every
//! verb runs with `--timeout-ms`, so a failure ends instead of hanging.

mod common;

use common::*;
use ringrelay::client::{Client, Event};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Output, Stdio};

/// `ringrelay ARGS` with `input` on standard input and `env` set, run to its exit.
fn run(args: &[&str], input: &[u8], env: &[(&str, &str)]) -> Output {
    let mut child = spawn(args, env);
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// `ringrelay ARGS` with piped standard streams (standard input left open).
fn spawn(args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(bin());
    command
        .args(args)
        .env_remove("RINGRELAY_SERVER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    command.spawn().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A watcher that has seen `id` come online (the verb registering it is listening). Bounded
/// by [`SLOW_WAIT`]: the verb is a process starting up.
fn await_online(w: &mut Client, id: &str) {
    loop {
        match next_event_within(w, SLOW_WAIT) {
            Event::Presence { client_id, online } if client_id == id.as_bytes() && online => return,
            Event::Presence { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// `ringrelay listen --id ID --count COUNT --format FORMAT`, registered (listening) on return.
fn listening(addr: SocketAddr, id: &str, count: u32, format: &str) -> Child {
    let mut w = watching(addr, &[id]);
    let listen = spawn(
        &[
            "listen",
            "--server",
            &addr.to_string(),
            "--id",
            id,
            "--count",
            &count.to_string(),
            "--format",
            format,
            "--timeout-ms",
            "10000",
        ],
        &[],
    );
    await_online(&mut w, id);
    listen
}

fn watching(addr: SocketAddr, ids: &[&str]) -> Client {
    let mut w = connect(addr, &format!("w-{}", ids.join("-")));
    for id in ids {
        w.watch(id.as_bytes()).unwrap();
    }
    w
}

#[test]
fn binary_payloads_from_stdin_and_files_arrive_byte_for_byte_in_raw_format() {
    let (_relay, addr) = serve(&[]);
    let server = addr.to_string();
    let listen = listening(addr, "raw-rx", 2, "raw");
    let binary: Vec<u8> = (0..=255u8)
        .chain(b"\nsecond line\r\n".iter().copied())
        .collect();
    let out = run(
        &[
            "send", "--server", &server, "--id", "tx", "--to", "raw-rx", "-",
        ],
        &binary,
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let file = std::env::temp_dir().join(format!("rr-cli-io-{}.bin", std::process::id()));
    let big = vec![0xa5u8; 300 * 1024];
    std::fs::write(&file, &big).unwrap();
    let at_file = format!("@{}", file.display());
    let out = run(
        &[
            "send", "--server", &server, "--id", "tx", "--to", "raw-rx", &at_file,
        ],
        b"",
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let got = listen.wait_with_output().unwrap();
    assert!(got.status.success(), "{}", stderr(&got));
    let mut expected = (binary.len() as u32).to_be_bytes().to_vec();
    expected.extend(&binary);
    expected.extend((big.len() as u32).to_be_bytes());
    expected.extend(&big);
    assert!(got.stdout == expected, "raw output differs");
    let _ = std::fs::remove_file(file);
}

#[test]
fn count_sends_one_message_per_line_and_json_shows_sender_and_payload() {
    let (_relay, addr) = serve(&[]);
    let server = addr.to_string();
    let listen = listening(addr, "json-rx", 3, "json");
    let out = run(
        &[
            "send", "--server", &server, "--id", "liner", "--to", "json-rx", "--count", "3", "-",
        ],
        b"one\ntwo \xff\nthree\nnot sent\n",
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let got = listen.wait_with_output().unwrap();
    assert!(got.status.success(), "{}", stderr(&got));
    let lines: Vec<serde_json::Value> = String::from_utf8(got.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["event"], "message");
    assert_eq!(lines[0]["sender"], "liner");
    assert!(lines[0]["topic"].is_null());
    assert_eq!(lines[0]["payload"], "one");
    assert_eq!(lines[0]["payload_encoding"], "utf8");
    assert_eq!(
        lines[1]["payload"], "dHdvIP8=",
        "invalid UTF-8 comes as base64"
    );
    assert_eq!(lines[1]["payload_encoding"], "base64");
    assert_eq!(lines[2]["payload"], "three");
    assert!(lines[2]["received_at_us"].as_u64().unwrap() > 0);
}

#[test]
fn watch_prints_each_ids_present_state_first() {
    let (_relay, addr) = serve(&[]);
    let _bob = connect(addr, "bob");
    let out = run(
        &[
            "watch",
            "--server",
            &addr.to_string(),
            "--count",
            "2",
            "--timeout-ms",
            "10000",
            "bob",
            "carol",
        ],
        b"",
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "online bob\noffline carol\n"
    );
}

#[test]
fn chat_delivers_typed_lines_to_the_others_but_not_the_sender() {
    // One worker: the member's messages and the chat's own round trip are handled in order.
    let (_relay, addr) = serve(&["--workers", "1"]);
    let server = addr.to_string();
    let mut member = connect(addr, "member");
    member.subscribe(b"room").unwrap();
    let mut w = watching(addr, &["talker"]);
    let mut chat = spawn(
        &["chat", "--server", &server, "--id", "talker", "room"],
        &[],
    );
    await_online(&mut w, "talker");
    sync(&mut w);
    member.publish_no_echo(b"room", b"hi talker").unwrap();
    member.flush().unwrap();
    // The chat prints the member's line once its subscription is in; the member's message
    // may come before it (then it is simply not printed), so the member says it again below.
    let mut stdin = chat.stdin.take().unwrap();
    stdin.write_all(b"hello room\n").unwrap();
    let (sender, topic, payload) = next_message(&mut member);
    assert_eq!(
        (sender.as_slice(), topic.as_deref(), payload.as_slice()),
        (&b"talker"[..], Some(&b"room"[..]), &b"hello room"[..])
    );
    member.publish_no_echo(b"room", b"bye").unwrap();
    member.flush().unwrap();
    sync(&mut member);
    drop(stdin);
    let out = chat.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("member on room: bye\n"), "{text}");
    assert!(
        !text.contains("hello room"),
        "the sender's own line came back: {text}"
    );
}

#[test]
fn the_server_list_and_the_environment_skip_a_dead_relay() {
    let (_relay, addr) = serve(&[]);
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let list = format!("{dead},{addr}");
    let mut bob = connect(addr, "bob");
    let out = run(
        &[
            "send", "--server", &list, "--id", "a", "--to", "bob", "via list",
        ],
        b"",
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(
        &["send", "--id", "a", "--to", "bob", "via env"],
        b"",
        &[("RINGRELAY_SERVER", list.as_str())],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for want in [&b"via list"[..], b"via env"] {
        let (_, _, payload) = next_message(&mut bob);
        assert_eq!(payload, want);
    }
}

#[test]
fn a_timeout_before_count_exits_3_and_no_relay_exits_4_with_a_hint() {
    let (_relay, addr) = serve(&[]);
    let out = run(
        &[
            "listen",
            "--server",
            &addr.to_string(),
            "--id",
            "quiet",
            "--count",
            "1",
            "--timeout-ms",
            "200",
        ],
        b"",
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("timed out after 0 of 1"),
        "{}",
        stderr(&out)
    );

    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = run(
        &[
            "send",
            "--server",
            &dead.to_string(),
            "--connect-timeout-ms",
            "300",
            "--id",
            "a",
            "--to",
            "b",
            "x",
        ],
        b"",
        &[],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is the relay running?"),
        "{}",
        stderr(&out)
    );

    let out = run(
        &[
            "send",
            "--server",
            "127.0.0.1",
            "--id",
            "a",
            "--to",
            "b",
            "x",
        ],
        b"",
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("'127.0.0.1'"), "{}", stderr(&out));
}
