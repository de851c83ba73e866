//! The relay and `ringrelay-tune check` hold the host to the same thresholds: the binary
//! prints the needs its start-up probe checks (`serve --print-host-needs`), and the tuning
//! tool, given that binary, judges the required limits by them. Before, `check` failed a host
//! over an 8 MiB locked-memory limit that `serve` was content with.

mod common;

use common::*;
use ringrelay::config::Config;
use ringrelay::server::host_probe;
use std::path::Path;
use std::process::Command;

fn needs_printed(args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin())
        .args(["serve", "--print-host-needs"])
        .args(args)
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn print_host_needs_prints_what_the_start_up_probe_checks() {
    let cfg = Config {
        workers: 3,
        recv_buffer_count: 4096,
        ..Config::default()
    };
    let dir = std::env::temp_dir().join(format!("rr-needs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("relay.toml");
    std::fs::write(&file, "workers = 3\nrecv_buffer_count = 4096\n").unwrap();
    let printed = needs_printed(&["--config", file.to_str().unwrap()]);
    let want: serde_json::Map<String, serde_json::Value> = host_probe::needs(&cfg)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect();
    assert_eq!(printed, serde_json::Value::Object(want));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn ringrelay_tune_check_accepts_an_8_mib_locked_memory_limit_that_the_relay_accepts() {
    let root = std::env::temp_dir().join(format!("rr-needs-root-{}", std::process::id()));
    std::fs::create_dir_all(root.join("proc/self")).unwrap();
    std::fs::write(
        root.join("proc/self/limits"),
        "Limit                     Soft Limit           Hard Limit           Units     \n\
         Max open files            1048576              1048576              files     \n\
         Max locked memory         8388608              8388608              bytes     \n",
    )
    .unwrap();
    let config = root.join("relay.toml");
    std::fs::write(&config, "workers = 2\n").unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tuning/ringrelay-tune");
    let out = Command::new("python3")
        .arg(script)
        .args(["check", "--json", "--relay", bin(), "--config"])
        .arg(&config)
        .arg("--root")
        .arg(&root)
        .output()
        .expect("python3 runs the tuning tool");
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    let memlock = rows
        .iter()
        .find(|r| r["setting"] == "limit.memlock")
        .expect("a limit.memlock row");
    let need = needs_printed(&["--workers", "2"])["limit.memlock"].clone();
    assert!(need.as_u64().unwrap() < 8 << 20);
    assert_eq!(memlock["ok"], true, "{memlock}");
    assert!(
        memlock["current"]
            .as_str()
            .unwrap()
            .ends_with(&format!("the relay needs {need}")),
        "{memlock}"
    );
    let _ = std::fs::remove_dir_all(root);
}
