//! The C API as C programs use it: each program under `ffi/tests/c/` is compiled as C11 with
//! every warning an error, linked against the staged `libringrelay.a`, and run under
//! AddressSanitizer (leaks included) and UndefinedBehaviorSanitizer against a relay this test
//! starts. A test prints SKIP and passes only when the machine has no C compiler.

mod support;

use ringrelay::config::Config;
use ringrelay::server::Server;
use support::{assert_passed, build_c, run, test_source};

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

#[test]
fn c_callbacks_send_from_inside_and_cannot_free_their_own_client() {
    run_against_relay("callback_send");
}

#[test]
fn c_panic_in_the_library_comes_back_as_a_status() {
    let Some(exe) = build_c("panic", &[test_source("panic.c")], "cc", "c11") else {
        return;
    };
    assert_passed(&run(&exe, &[]), "panic");
}
