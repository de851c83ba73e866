//! The README's quick-start blocks, run exactly as written: the `sh` block under "Quick start"
//! and the one under "Three nodes on one machine", each by `bash -e` in a scratch directory
//! where `./target/release/ringrelay` is the binary under test and `cargo` does nothing (the
//! binary is built already). A block passes when bash exits 0 and the receiver printed the
//! message; whatever it left running is killed with its process group.

mod common;

use common::*;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A block that has not finished by then has hung (it waits for relays and clients with
/// bounded timeouts of its own, 10 s at most each).
const BLOCK_BOUND: Duration = Duration::from_secs(60);

/// The first ```sh block after the line `heading`.
fn block_after(readme: &str, heading: &str) -> String {
    let rest = readme
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README.md has no heading {heading:?}"))
        .1;
    let body = rest
        .split_once("```sh\n")
        .unwrap_or_else(|| panic!("no sh block after {heading:?}"))
        .1;
    body.split_once("\n```")
        .unwrap_or_else(|| panic!("unterminated sh block after {heading:?}"))
        .0
        .to_string()
}

/// A scratch directory with `target/release/ringrelay` (the binary under test) and a `cargo`
/// that does nothing, in `shim/`.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rr-readme-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("target/release")).unwrap();
    std::fs::create_dir_all(dir.join("shim")).unwrap();
    std::os::unix::fs::symlink(bin(), dir.join("target/release/ringrelay")).unwrap();
    let cargo = dir.join("shim/cargo");
    std::fs::write(&cargo, "#!/bin/sh\nexit 0\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Runs `block` with `bash -e` in `dir`; returns its exit code and what it printed.
fn run_block(dir: &Path, block: &str) -> (Option<i32>, String, String) {
    let out = dir.join("stdout");
    let err = dir.join("stderr");
    let path = format!(
        "{}:{}",
        dir.join("shim").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("bash")
        .args(["-e", "-c", block])
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("RINGRELAY_SERVER")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .process_group(0)
        .spawn()
        .expect("bash runs");
    let deadline = Instant::now() + BLOCK_BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: kill(2) on the process group the block runs in (its pgid is the child's pid);
    // no memory is shared with the kernel.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.wait();
    wait_until_group_gone(child.id() as i32);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (status.and_then(|s| s.code()), read(&out), read(&err))
}

/// Waits (at most 5 s) until no process of group `pgid` is left, so that the next block finds
/// the ports free: relays the block started are orphans after bash exits, and are reaped by
/// init once the SIGKILL has taken them down.
fn wait_until_group_gone(pgid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    // SAFETY: kill(2) with signal 0 only checks that the group exists; nothing is shared.
    while unsafe { libc::kill(-pgid, 0) } == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap()
}

/// Runs the block under `heading` and checks that bash succeeded and printed `line`.
fn assert_block_prints(heading: &str, name: &str, line: &str) {
    let _alone = alone();
    let block = block_after(&readme(), heading);
    let dir = scratch(name);
    let (code, out, err) = run_block(&dir, &block);
    assert_eq!(
        code,
        Some(0),
        "block:\n{block}\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert!(
        out.lines().any(|l| l == line),
        "stdout:\n{out}\nstderr:\n{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_quick_start_block_works_as_written() {
    assert_block_prints("## Quick start", "quick", "alice: hello bob");
}

#[test]
fn the_three_node_cluster_block_works_as_written() {
    assert_block_prints("### Three nodes on one machine", "cluster", "c1: hello");
}
