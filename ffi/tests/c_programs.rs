//! The C API as C programs use it: each program under `ffi/tests/c/` is compiled as C11 with
//! every warning an error, linked against the staged `libringrelay.a`, and run under
//! AddressSanitizer (leaks included) and UndefinedBehaviorSanitizer against a relay this test
//! starts. A test prints SKIP and passes only when the machine has no C compiler.

mod support;

use ringrelay::config::Config;
use ringrelay::server::Server;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use support::{assert_passed, build_c, run, sanitized, test_source, workspace_dir, Lines};

fn relay() -> Server {
    Server::start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: 1,
        ..Config::default()
    })
    .expect("relay starts")
}

/// Builds `ffi/tests/c/<name>.c` and runs it with the relay's address.
fn run_against_relay(name: &str) {
    let Some(exe) = build_c(name, &[test_source(&format!("{name}.c"))], "cc", "c11") else {
        return;
    };
    let server = relay();
    let addr = server.local_addr().to_string();
    let out = run(&exe, &[&addr]);
    server.shutdown();
    assert_passed(&out, name);
}

#[test]
fn c_client_round_trip_by_callback_and_by_queue() {
    run_against_relay("client_roundtrip");
}

/// A relay whose TLS listener asks every client for a certificate from a fresh PKI's CA; the
/// program gets the TLS address and the PKI's directory.
#[test]
fn c_clients_exchange_messages_over_mutual_tls_and_a_foreign_ca_is_refused() {
    let Some(exe) = build_c("client_tls", &[test_source("client_tls.c")], "cc", "c11") else {
        return;
    };
    let pki = ringrelay::tls::test_pki::Pki::new();
    let dir = pki.write_to_temp_dir("ffi-c-client-tls");
    let server = Server::start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: 1,
        tls_listen: Some("127.0.0.1:0".parse().unwrap()),
        tls_cert_file: Some(dir.join("server.pem")),
        tls_key_file: Some(dir.join("server.key")),
        tls_ca_file: Some(dir.join("ca.pem")),
        tls_client_auth: ringrelay::tls::ClientAuth::Required,
        ..Config::default()
    })
    .expect("relay starts");
    let addr = server.tls_addr().expect("tls_listen is set").to_string();
    let out = run(&exe, &[&addr, dir.to_str().expect("temp paths are UTF-8")]);
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    assert_passed(&out, "client_tls");
}

#[test]
fn c_callbacks_send_from_inside_and_cannot_free_their_own_client() {
    run_against_relay("callback_send");
}

#[test]
fn c_acked_queued_messages_are_sent_again_after_close_timeouts_fail_and_mutual_flushes_settle() {
    run_against_relay("acked_queue_close");
}

#[test]
fn c_panic_in_the_library_comes_back_as_a_status() {
    let Some(exe) = build_c("panic", &[test_source("panic.c")], "cc", "c11") else {
        return;
    };
    assert_passed(&run(&exe, &[]), "panic");
}

/// Builds `ffi/tests/c/<name>.c` and runs it with `args` (the program starts its own node).
fn run_alone(name: &str, args: &[&str]) {
    let Some(exe) = build_c(name, &[test_source(&format!("{name}.c"))], "cc", "c11") else {
        return;
    };
    assert_passed(&run(&exe, args), name);
}

#[test]
fn c_embedded_node_serves_two_local_clients_and_a_remote_one() {
    run_alone("node_local", &[]);
}

#[test]
fn c_embedded_node_log_hook_hears_the_cluster_control_thread() {
    run_alone("node_log", &[]);
}

#[test]
fn c_embedded_node_authorize_hook_refuses_one_id() {
    run_alone("node_authorize", &[]);
}

/// More than one window (4,096) of acked messages, so the window fills at least once.
const ACKED_MESSAGES: &str = "20000";

#[test]
fn c_acked_sends_are_all_confirmed_and_delivered_once_in_order() {
    run_alone("acked", &[ACKED_MESSAGES]);
}

/// Start/stop cycles of an embedded node with clients attached, leak-checked.
const NODE_CYCLES: &str = "1000";

#[test]
fn c_embedded_node_survives_start_stop_cycles_without_leaks() {
    run_alone("node_cycles", &[NODE_CYCLES]);
}

fn example(path: &str) -> PathBuf {
    workspace_dir().join("examples").join(path)
}

/// The README's example: a C server embedding a node hosts a chat room; each line a client
/// types reaches everyone in the room but that client (the server too, as a local client).
#[test]
fn c_chat_server_example_relays_each_line_to_everyone_but_the_sender() {
    let Some(server_exe) = build_c("chat_server", &[example("c/chat_server.c")], "cc", "c11")
    else {
        return;
    };
    let Some(client_exe) = build_c("chat_client", &[example("c/client.c")], "cc", "c11") else {
        return;
    };
    let mut server = sanitized(&server_exe, &["127.0.0.1:0"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("chat_server starts");
    let mut server_lines = Lines::of(server.stdout.take().unwrap());
    let listening = server_lines.until("listening on", |l| l.starts_with("listening on "));
    let addr = listening.trim_start_matches("listening on ").to_string();

    // Bob joins and waits for three lines; Alice says three and leaves. Her second line comes
    // in two writes with Bob's first line heard in between (a partial line waits for its
    // end), and her last has no newline (said at the end of input).
    let mut bob = sanitized(&client_exe, &[&addr, "bob", "3"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("client starts");
    let mut bob_lines = Lines::of(bob.stdout.take().unwrap());
    bob_lines.until("ready", |l| l == "ready");
    drop(bob.stdin.take()); // Bob types nothing.
    let mut alice = sanitized(&client_exe, &[&addr, "alice", "0"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("client starts");
    let mut alice_in = alice.stdin.take().unwrap();
    alice_in.write_all(b"hello\nwor").unwrap();
    alice_in.flush().unwrap();
    bob_lines.until("from alice", |l| l == "alice: hello");
    alice_in.write_all(b"ld\nbye").unwrap();
    drop(alice_in);
    let alice_out = support::finish(alice);
    assert!(alice_out.status.success(), "alice: {alice_out:?}");
    assert_eq!(
        String::from_utf8_lossy(&alice_out.stdout).trim(),
        "ready",
        "alice hears no echo"
    );

    bob_lines.until("from alice", |l| l == "alice: world");
    bob_lines.until("from alice", |l| l == "alice: bye");
    assert!(
        !bob_lines.seen.iter().any(|l| l == "alice: wor"),
        "a partial line was said before its end: {:?}",
        bob_lines.seen
    );
    let bob_out = support::finish(bob);
    assert!(
        bob_out.status.success(),
        "bob: {bob_out:?} {:?}",
        bob_lines.seen
    );

    server_lines.until("the room's line", |l| l == "alice: world");
    drop(server.stdin.take());
    let server_out = support::finish(server);
    let lines = server_lines.rest();
    assert!(server_out.status.success(), "chat_server: {server_out:?}");
    for expected in [
        "* server online",
        "* bob online",
        "* alice online",
        "alice: hello",
    ] {
        assert!(
            lines.iter().any(|l| l == expected),
            "{expected:?} not in {lines:?}"
        );
    }
}

/// The C++ example: RAII handles over the C API, two local clients of an embedded node.
#[test]
fn cpp_example_embeds_a_node_with_raii_handles() {
    let Some(exe) = build_c("embed_cpp", &[example("cpp/embed.cpp")], "c++", "c++17") else {
        return;
    };
    assert_passed(&run(&exe, &[]), "embed");
}
