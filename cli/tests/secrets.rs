//! The relay's secrets as `ringrelay serve` takes them, end to end with the real binary: the
//! client token from a file (`--token-file`), from the environment (`RINGRELAY_TOKEN`) or from
//! the command line (which works, with a warning that it is visible in /proc); a value and a
//! file for one secret, an empty or unreadable file: clear errors; the metrics token from the
//! environment; the warning for a metrics listener other hosts can reach.
//!
//! Synchronisation is by output lines, process exits and bounded polls, never by sleeping for
//! a fixed time.

mod common;

use common::*;
use ringrelay::client::{Client, ClientError};
use ringrelay::protocol::CloseReason;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

const ARGV_WARNING: &str = "was given on the command line, where every local user can read it";
const OPEN_FILE_WARNING: &str = "is readable by group or others";
const EXPOSED_METRICS_WARNING: &str = "is reachable beyond this host and has no authentication";

/// A scratch directory of this test process, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rr-secrets-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` to `dir/name` with permissions `mode`; returns the path as text.
fn secret_file(dir: &std::path::Path, name: &str, text: &str, mode: u32) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.to_str().unwrap().to_string()
}

/// The relay at `addr` admits a client with `right` and refuses one with `wrong` or none.
fn admits_only(addr: SocketAddr, right: &str, wrong: &str) {
    let mut a = Client::connect_with(addr, b"a", Some(right.as_bytes()), client_options())
        .expect("the right token connects");
    let mut b = Client::connect_with(addr, b"b", Some(right.as_bytes()), client_options())
        .expect("the right token connects");
    assert_round_trip(&mut a, &mut b);
    for token in [Some(wrong.as_bytes()), None] {
        match Client::connect_with(addr, b"intruder", token, client_options()) {
            Err(ClientError::Closed { reason, .. }) => assert_eq!(reason, CloseReason::AUTH_FAILED),
            Ok(_) => panic!("token {token:?} was accepted"),
            Err(e) => panic!("token {token:?}: expected Closed(AUTH_FAILED), got {e}"),
        }
    }
}

/// Stops `relay` and returns everything it wrote to stderr (complete once it has exited).
fn stop(mut relay: Proc) -> String {
    relay.terminate();
    let (status, _) = relay.wait_exit();
    assert!(status.success(), "serve exited with {status}");
    relay.stderr()
}

/// `serve ARGS` that must refuse to start: exit status 1 and one `ringrelay: ` line on stderr,
/// which is returned.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut serve = Proc::spawn_with_env(args, env);
    let (status, out) = serve.wait_exit();
    let stderr = serve.stderr();
    assert_eq!(status.code(), Some(1), "{args:?}: stderr:\n{stderr}");
    assert!(out.is_empty(), "{args:?} printed {out:?}");
    stderr
        .lines()
        .find(|l| l.starts_with("ringrelay: "))
        .unwrap_or_else(|| panic!("{args:?}: no error line in:\n{stderr}"))
        .to_string()
}

#[test]
fn the_token_from_a_file_or_the_environment_admits_the_right_client_only() {
    let dir = scratch("token");
    let file = secret_file(&dir, "token", "from-a-file\r\n", 0o600);
    let (relay, addr) = serve(&["--token-file", &file]);
    admits_only(addr, "from-a-file", "from-a-file\r\n");
    let stderr = stop(relay);
    for warning in [ARGV_WARNING, OPEN_FILE_WARNING] {
        assert!(!stderr.contains(warning), "{stderr}");
    }

    let (relay, addr) = serve_with_env(&[], &[("RINGRELAY_TOKEN", "from-the-env")]);
    admits_only(addr, "from-the-env", "from-a-file");
    let stderr = stop(relay);
    assert!(!stderr.contains(ARGV_WARNING), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_token_on_the_command_line_works_and_is_warned_about() {
    let (relay, addr) = serve(&["--token", "on-argv"]);
    admits_only(addr, "on-argv", "on-argV");
    let stderr = stop(relay);
    let warning = stderr
        .lines()
        .find(|l| l.contains(ARGV_WARNING))
        .unwrap_or_else(|| panic!("no warning about --token in:\n{stderr}"));
    for needle in ["--token ", "/proc", "--token-file", "RINGRELAY_TOKEN"] {
        assert!(warning.contains(needle), "{warning}");
    }
    assert!(
        !stderr.contains("on-argv"),
        "the warning never shows the secret: {stderr}"
    );
}

/// `serve`'s arguments, its environment, and a text its error line must contain.
type Refusal<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn a_value_and_a_file_or_an_unusable_file_are_errors_naming_the_setting() {
    let dir = scratch("errors");
    let good = secret_file(&dir, "good", "s3cret\n", 0o600);
    let empty = secret_file(&dir, "empty", "\n", 0o600);
    let missing = dir.join("missing").to_str().unwrap().to_string();
    let toml = secret_file(
        &dir,
        "both.toml",
        &format!("listen = \"127.0.0.1:0\"\ntoken = \"t\"\ntoken_file = \"{good}\"\n"),
        0o600,
    );
    let cases: [Refusal; 7] = [
        (
            &["serve", "--token", "t", "--token-file", &good],
            &[],
            "ringrelay: --token and --token-file are both set: give one",
        ),
        (
            &["serve", "--token-file", &good],
            &[("RINGRELAY_TOKEN", "t")],
            "ringrelay: RINGRELAY_TOKEN and --token-file are both set: give one",
        ),
        (
            &["serve", "--cluster-secret-file", &good],
            &[("RINGRELAY_CLUSTER_SECRET", "s")],
            "ringrelay: RINGRELAY_CLUSTER_SECRET and --cluster-secret-file are both set",
        ),
        (
            &["serve", "--config", &toml],
            &[],
            "token and token_file are both set: give one",
        ),
        (
            &["serve", "--token-file", &empty],
            &[],
            ": is empty (a secret cannot be empty)",
        ),
        (
            &["serve", "--metrics-token-file", &missing],
            &[],
            ": cannot read it: No such file",
        ),
        (
            &["serve"],
            &[("RINGRELAY_CLUSTER_SECRET", "")],
            "ringrelay: RINGRELAY_CLUSTER_SECRET is empty (a secret cannot be empty)",
        ),
    ];
    for (args, env, expected) in cases {
        let line = refused(args, env);
        assert!(line.contains(expected), "{args:?} {env:?}: {line}");
    }
    let line = refused(&["serve", "--token-file", &empty], &[]);
    assert!(
        line.starts_with(&format!("ringrelay: token_file {empty}")),
        "{line}"
    );
    let line = refused(&["serve", "--metrics-token-file", &missing], &[]);
    assert!(
        line.starts_with(&format!("ringrelay: metrics_token_file {missing}")),
        "{line}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_secret_file_others_may_read_is_warned_about_and_check_config_never_shows_a_secret() {
    let dir = scratch("check");
    let token = secret_file(&dir, "token", "token-in-a-file\n", 0o640);
    let metrics = secret_file(&dir, "metrics", "metrics-in-a-file", 0o600);
    let mut check = Proc::spawn_with_env(
        &[
            "serve",
            "--check-config",
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            &token,
            "--metrics-token-file",
            &metrics,
        ],
        &[("RINGRELAY_CLUSTER_SECRET", "secret-in-the-env")],
    );
    let (status, out) = check.wait_exit();
    let stderr = check.stderr();
    assert!(status.success(), "stderr:\n{stderr}");
    let text = out.join("\n");
    let json_end = text.find("\n}").expect("a JSON object") + 2;
    let json: serde_json::Value = serde_json::from_str(&text[..json_end]).expect("JSON");
    for secret in ["token", "metrics_token", "cluster_secret"] {
        assert_eq!(json[secret], "(set)", "{secret}");
    }
    for value in ["token-in-a-file", "metrics-in-a-file", "secret-in-the-env"] {
        assert!(!text.contains(value), "{value} shown:\n{text}");
        assert!(!stderr.contains(value), "{value} logged:\n{stderr}");
    }
    let open = stderr
        .lines()
        .filter(|l| l.contains(OPEN_FILE_WARNING))
        .collect::<Vec<_>>();
    assert_eq!(
        open.len(),
        1,
        "one warning, for the 0640 file only:\n{stderr}"
    );
    assert!(
        open[0].contains(&token) && open[0].contains("0640"),
        "{}",
        open[0]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A loopback port free a moment ago (for `serve --metrics`).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `GET path` with an optional `Authorization` header; (status, head, body), or the error of a
/// connection that failed (the endpoint not up yet).
fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, WAIT)?;
    s.set_read_timeout(Some(WAIT))?;
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, head.to_string(), body.to_string()))
}

#[test]
fn the_metrics_token_from_the_environment_guards_every_endpoint_but_healthz() {
    let metrics = free_port();
    let (relay, _) = serve_with_env(
        &["--metrics", &metrics.to_string()],
        &[("RINGRELAY_METRICS_TOKEN", "scrape-token")],
    );
    // The endpoint is bound before the workers start, so it answers once `listening` is out.
    assert_eq!(get(metrics, "/healthz", None).unwrap().0, 200);
    for path in [
        "/metrics",
        "/config",
        "/cluster",
        "/connections",
        "/nowhere",
    ] {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("scrape-token"),
            Some("Basic scrape-token"),
        ] {
            let (status, head, _) = get(metrics, path, auth).unwrap();
            assert_eq!(status, 401, "{path} {auth:?}");
            assert!(head.contains("\r\nWWW-Authenticate: Bearer\r\n"), "{head}");
        }
        let (status, _, _) = get(metrics, path, Some("Bearer scrape-token")).unwrap();
        assert_eq!(status, if path == "/nowhere" { 404 } else { 200 }, "{path}");
    }
    let (_, _, config) = get(metrics, "/config", Some("Bearer scrape-token")).unwrap();
    assert!(config.contains("\"metrics_token\":\"(set)\""), "{config}");
    assert!(!config.contains("scrape-token"), "{config}");
    let stderr = stop(relay);
    assert!(!stderr.contains(EXPOSED_METRICS_WARNING), "{stderr}");
}

#[test]
fn a_metrics_listener_beyond_loopback_without_a_token_is_warned_about() {
    let (relay, _) = serve(&["--metrics", "0.0.0.0:0"]);
    let stderr = stop(relay);
    let warning = stderr
        .lines()
        .find(|l| l.contains(EXPOSED_METRICS_WARNING))
        .unwrap_or_else(|| panic!("no warning in:\n{stderr}"));
    assert!(
        warning.contains("0.0.0.0:") && warning.contains("metrics_token_file"),
        "{warning}"
    );

    let (relay, _) = serve_with_env(
        &["--metrics", "0.0.0.0:0"],
        &[("RINGRELAY_METRICS_TOKEN", "t")],
    );
    let stderr = stop(relay);
    assert!(
        !stderr.contains(EXPOSED_METRICS_WARNING),
        "with a token: {stderr}"
    );
    let (relay, _) = serve(&["--metrics", "127.0.0.1:0"]);
    let stderr = stop(relay);
    assert!(
        !stderr.contains(EXPOSED_METRICS_WARNING),
        "on loopback: {stderr}"
    );
}

#[test]
fn nodes_link_with_the_cluster_secret_from_a_file_and_from_the_environment() {
    let dir = scratch("cluster");
    let file = secret_file(&dir, "cluster-secret", "shared-by-both\n", 0o600);
    let (cluster1, metrics2) = (free_port().to_string(), free_port());
    let (node1, _) = serve(&[
        "--node-id",
        "1",
        "--cluster-listen",
        &cluster1,
        "--cluster-secret-file",
        &file,
    ]);
    let (node2, _) = serve_with_env(
        &[
            "--node-id",
            "2",
            "--cluster-listen",
            &free_port().to_string(),
            "--peers",
            &cluster1,
            "--metrics",
            &metrics2.to_string(),
        ],
        &[("RINGRELAY_CLUSTER_SECRET", "shared-by-both")],
    );
    wait_until_within("node 2 to list node 1 as up", SLOW_WAIT, || {
        get(metrics2, "/cluster", None)
            .ok()
            .and_then(|(_, _, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|json| json["members"].as_array().cloned())
            .is_some_and(|members| {
                members
                    .iter()
                    .any(|m| m["node_id"] == 1 && m["state"] == "up")
            })
    });
    for (name, node) in [("node 1", node1), ("node 2", node2)] {
        let stderr = stop(node);
        assert!(!stderr.contains(ARGV_WARNING), "{name}: {stderr}");
        assert!(!stderr.contains("shared-by-both"), "{name}: {stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
