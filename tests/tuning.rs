//! Tests of `tuning/ringrelay-tune` against fixture trees (fake /proc, /sys, /etc) built here.
//!
//! Every run passes `--root FIXTURE`, so nothing on the machine running the tests is read
//! or changed. Needs python3 (>= 3.9) on PATH. Set UPDATE_GOLDEN=1 to rewrite the golden file.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning/ringrelay-tune")
}

/// A fixture tree under the temp dir, removed on drop.
struct Fixture {
    dir: PathBuf,
}

#[derive(Debug, PartialEq)]
enum Entry {
    Dir,
    File(Vec<u8>),
    Link(PathBuf),
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "ringrelay-tune-{}-{}-{}",
            name,
            std::process::id(),
            n
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Fixture { dir }
    }

    fn file(&self, rel: &str, content: &str) {
        let p = self.dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    fn link(&self, rel: &str, target: &str) {
        let p = self.dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.dir.join(rel)).unwrap()
    }

    fn run(&self, args: &[&str]) -> Run {
        let out: Output = Command::new("python3")
            .arg(script())
            .args(args)
            .arg("--root")
            .arg(&self.dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run python3 (install python3 >= 3.9 to run these tests): {e}")
            });
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(
            !run.stderr.contains("Traceback"),
            "ringrelay-tune {args:?} crashed:\n{}",
            run.stderr
        );
        run
    }

    /// Every path under the fixture with its content (files), target (links) or nothing (dirs).
    fn snapshot(&self) -> BTreeMap<PathBuf, Entry> {
        fn walk(base: &Path, dir: &Path, map: &mut BTreeMap<PathBuf, Entry>) {
            for e in fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                let rel = p.strip_prefix(base).unwrap().to_path_buf();
                let meta = fs::symlink_metadata(&p).unwrap();
                if meta.file_type().is_symlink() {
                    map.insert(rel, Entry::Link(fs::read_link(&p).unwrap()));
                } else if meta.is_dir() {
                    map.insert(rel, Entry::Dir);
                    walk(base, &p, map);
                } else {
                    map.insert(rel, Entry::File(fs::read(&p).unwrap()));
                }
            }
        }
        let mut map = BTreeMap::new();
        walk(&self.dir, &self.dir, &mut map);
        map
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Make anything a test made unreadable removable again.
        let _ = Command::new("chmod")
            .arg("-R")
            .arg("u+rwx")
            .arg(&self.dir)
            .output();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// CPUs with `threads` hyperthreads per core, Intel-style numbering (sibling of cpu c is
/// c + cores), one NUMA node per `per_node` CPUs.
fn cpus(f: &Fixture, count: usize, threads: usize, per_node: usize) {
    let cores = count / threads;
    f.file(
        "sys/devices/system/cpu/online",
        &format!(
            "{}\n",
            if count == 1 {
                "0".into()
            } else {
                format!("0-{}", count - 1)
            }
        ),
    );
    for c in 0..count {
        let core = c % cores;
        let siblings: Vec<String> = (0..threads)
            .map(|t| (core + t * cores).to_string())
            .collect();
        let t = format!("sys/devices/system/cpu/cpu{c}/topology");
        f.file(&format!("{t}/core_id"), &format!("{core}\n"));
        f.file(
            &format!("{t}/physical_package_id"),
            &format!("{}\n", c / per_node),
        );
        f.file(
            &format!("{t}/thread_siblings_list"),
            &format!("{}\n", siblings.join(",")),
        );
    }
    for node in 0..count / per_node {
        let first = node * per_node;
        f.file(
            &format!("sys/devices/system/node/node{node}/cpulist"),
            &format!("{}-{}\n", first, first + per_node - 1),
        );
    }
}

/// A 4-CPU host (2 cores x 2 threads) with one two-queue NIC, untuned or tuned.
fn host(name: &str, tuned: bool) -> Fixture {
    let f = Fixture::new(name);
    let pick = |untuned: &'static str, good: &'static str| if tuned { good } else { untuned };
    for (key, untuned, good) in [
        ("kernel/io_uring_disabled", "2", "0"),
        ("fs/nr_open", "1048576", "1048576"),
        ("net/core/somaxconn", "4096", "65535"),
        ("net/ipv4/tcp_max_syn_backlog", "512", "65535"),
        ("net/core/rmem_max", "212992", "16777216"),
        ("net/core/wmem_max", "212992", "16777216"),
        ("net/core/netdev_max_backlog", "1000", "16384"),
        (
            "net/ipv4/ip_local_port_range",
            "32768\t60999",
            "1024\t65535",
        ),
        ("vm/swappiness", "60", "1"),
        ("net/core/busy_poll", "0", "50"),
        ("net/core/busy_read", "0", "50"),
    ] {
        f.file(
            &format!("proc/sys/{key}"),
            &format!("{}\n", pick(untuned, good)),
        );
    }
    f.file(
        "proc/self/limits",
        &format!(
            "Limit                     Soft Limit           Hard Limit           Units     \n\
             Max open files            {0:<20} {0:<20} files     \n\
             Max locked memory         {1:<20} {1:<20} bytes     \n",
            pick("1024", "1048576"),
            pick("8388608", "unlimited")
        ),
    );
    f.file("proc/1/comm", "systemd\n");
    if !tuned {
        f.file("proc/4242/comm", "irqbalance\n");
        f.link(
            "etc/systemd/system/multi-user.target.wants/irqbalance.service",
            "/lib/systemd/system/irqbalance.service",
        );
    }
    cpus(&f, 4, 2, 4);
    for c in 0..4 {
        let d = format!("sys/devices/system/cpu/cpu{c}/cpufreq");
        f.file(
            &format!("{d}/scaling_governor"),
            &format!("{}\n", pick("powersave", "performance")),
        );
        f.file(
            &format!("{d}/scaling_available_governors"),
            "performance powersave\n",
        );
    }
    f.file(
        "sys/kernel/mm/transparent_hugepage/enabled",
        pick("[always] madvise never\n", "always [madvise] never\n"),
    );
    f.file("sys/class/net/lo/mtu", "65536\n");
    f.file("sys/class/net/eth0/device/numa_node", "0\n");
    for irq in [40, 41, 42] {
        f.file(
            &format!("sys/class/net/eth0/device/msi_irqs/{irq}"),
            "msix\n",
        );
        f.file(
            &format!("proc/irq/{irq}/smp_affinity_list"),
            pick("0-3\n", "0,2\n"),
        );
    }
    for q in 0..2 {
        f.file(
            &format!("sys/class/net/eth0/queues/rx-{q}/rps_cpus"),
            pick("0\n", "a\n"),
        );
        let xps = if q == 0 { "5\n" } else { "a\n" };
        f.file(
            &format!("sys/class/net/eth0/queues/tx-{q}/xps_cpus"),
            pick("0\n", xps),
        );
    }
    f
}

fn check_json(f: &Fixture) -> Vec<serde_json::Value> {
    let run = f.run(&["check", "--json"]);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", run.stdout))
}

fn row<'a>(rows: &'a [serde_json::Value], key: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["setting"] == key)
        .unwrap_or_else(|| panic!("no row {key}"))
}

#[test]
fn check_json_matches_golden_file() {
    let f = host("golden", false);
    let run = f.run(&["check", "--json"]);
    assert_eq!(run.code, 1);
    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning/tests/golden/check-untuned.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(&golden, &run.stdout).unwrap();
    }
    let want = fs::read_to_string(&golden).expect("golden file (UPDATE_GOLDEN=1 writes it)");
    assert_eq!(
        run.stdout,
        want,
        "check --json differs from {}",
        golden.display()
    );
    // The same again: the output is deterministic.
    assert_eq!(f.run(&["check", "--json"]).stdout, want);
}

/// Installs a stand-in relay at `usr/bin/ringrelay` under the fixture that prints `needs` for
/// `serve --print-host-needs` and records its arguments in `relay-args`.
fn fake_relay(f: &Fixture, needs: &str) {
    let args = f.dir.join("relay-args");
    f.file(
        "usr/bin/ringrelay",
        &format!(
            "#!/bin/sh\necho \"$@\" > '{}'\necho '{needs}'\n",
            args.display()
        ),
    );
    let bin = f.dir.join("usr/bin/ringrelay");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn check_holds_the_limits_to_what_the_relay_says_it_needs() {
    let f = host("needs", false);
    f.file("etc/ringrelay/ringrelay.toml", "workers = 2\n");
    fake_relay(
        &f,
        r#"{"limit.nofile":1000,"limit.memlock":32768,"net.core.somaxconn":4096}"#,
    );
    let run = f.run(&["check"]);
    // 1024 open files and 8 MiB locked cover those needs: only io_uring_disabled is off.
    assert!(
        run.stdout
            .contains("required settings off: kernel.io_uring_disabled\n"),
        "{}",
        run.stdout
    );
    let rows = check_json(&f);
    for key in ["limit.nofile", "limit.memlock"] {
        assert_eq!(row(&rows, key)["ok"], true, "{}", row(&rows, key));
    }
    assert!(row(&rows, "limit.memlock")["current"]
        .as_str()
        .unwrap()
        .ends_with("the relay needs 32768"));
    // The relay was asked about the config file of the host.
    let asked = f.read("relay-args");
    let config = f.dir.join("etc/ringrelay/ringrelay.toml");
    assert_eq!(
        asked.trim(),
        format!("serve --print-host-needs --config {}", config.display())
    );
}

#[test]
fn without_a_relay_to_ask_check_holds_the_limits_to_the_recommended_values_and_says_so() {
    let f = host("no-relay", false);
    let rows = check_json(&f);
    let memlock = row(&rows, "limit.memlock");
    assert_eq!(memlock["ok"], false, "{memlock}");
    assert!(memlock["current"]
        .as_str()
        .unwrap()
        .contains("no ringrelay binary found (--relay BIN names one); held to 67108864"));
    fake_relay(&f, "not json");
    let rows = check_json(&f);
    assert!(row(&rows, "limit.nofile")["current"]
        .as_str()
        .unwrap()
        .contains("printed no JSON; held to 1048576"));
}

#[test]
fn check_exit_status_follows_required_settings() {
    let untuned = host("exit-untuned", false);
    let run = untuned.run(&["check"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run
        .stdout
        .contains("required settings off: kernel.io_uring_disabled, limit.nofile, limit.memlock"));
    let tuned = host("exit-tuned", true);
    let run = tuned.run(&[]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(run.stdout.contains("every required setting is ok"));
    let rows = check_json(&tuned);
    for r in &rows {
        assert_eq!(r["ok"], true, "{r}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let f = host("usage", true);
    assert_eq!(f.run(&["frobnicate"]).code, 2);
    assert_eq!(f.run(&["check", "--no-such-flag"]).code, 2);
}

#[test]
fn missing_unreadable_or_garbage_values_are_unknown() {
    let f = host("unknown", false);
    fs::remove_file(f.dir.join("proc/sys/net/core/somaxconn")).unwrap();
    f.file("proc/sys/vm/swappiness", "sixty\n");
    // A directory where a file should be cannot be read even by root.
    fs::remove_file(f.dir.join("proc/sys/net/core/busy_read")).unwrap();
    fs::create_dir(f.dir.join("proc/sys/net/core/busy_read")).unwrap();
    let rmem = f.dir.join("proc/sys/net/core/rmem_max");
    fs::set_permissions(&rmem, fs::Permissions::from_mode(0o000)).unwrap();
    fs::write(
        f.dir.join("sys/kernel/mm/transparent_hugepage/enabled"),
        b"\xff\xfe\n",
    )
    .unwrap();
    fs::remove_file(f.dir.join("proc/self/limits")).unwrap();
    fs::remove_dir_all(f.dir.join("sys/class/net/eth0/queues")).unwrap();

    let rows = check_json(&f);
    for key in [
        "net.core.somaxconn",
        "vm.swappiness",
        "net.core.busy_read",
        "vm.transparent_hugepage",
        "nic.rps.eth0",
        "nic.xps.eth0",
    ] {
        assert_eq!(row(&rows, key)["current"], "unknown", "{key}");
        assert_eq!(row(&rows, key)["ok"], serde_json::Value::Null, "{key}");
    }
    // Unreadable only when not running as root.
    let r = row(&rows, "net.core.rmem_max");
    assert!(r["current"] == "unknown" || r["current"] == "212992", "{r}");
    assert!(row(&rows, "limit.nofile")["current"]
        .as_str()
        .unwrap()
        .starts_with("self unknown"));
    assert_eq!(row(&rows, "limit.nofile")["ok"], serde_json::Value::Null);

    let run = f.run(&["check"]);
    assert_eq!(run.code, 1); // kernel.io_uring_disabled is still off
    assert!(
        run.stdout.contains("unknown (could not read): "),
        "{}",
        run.stdout
    );
    // plan and apply leave unknown values alone and do not crash.
    let plan = f.run(&["plan"]);
    assert_eq!(plan.code, 0);
    assert!(
        !plan.stdout.contains("somaxconn") && !plan.stdout.contains("swappiness"),
        "{}",
        plan.stdout
    );
    assert_eq!(f.run(&["apply"]).code, 0);
    assert_eq!(f.read("proc/sys/vm/swappiness"), "sixty\n");
}

#[test]
fn empty_root_gives_unknown_without_crashing() {
    let f = Fixture::new("empty");
    let rows = check_json(&f);
    assert!(rows.iter().all(|r| r["ok"] != false), "{rows:?}");
    assert_eq!(f.run(&["check"]).code, 0);
    assert_eq!(
        f.run(&["plan"]).stdout.lines().last(),
        Some("nothing to do")
    );
    let cpus = f.run(&["cpus"]);
    assert_eq!(cpus.code, 1);
    assert!(cpus.stderr.contains("cannot read the CPU topology"));
}

#[test]
fn plan_lists_the_writes_and_nothing_on_a_tuned_host() {
    let f = host("plan", false);
    let run = f.run(&["plan"]);
    let root = f.dir.display().to_string();
    let expect = [
        format!("echo 0 > {root}/proc/sys/kernel/io_uring_disabled"),
        format!("echo 65535 > {root}/proc/sys/net/core/somaxconn"),
        format!("echo '1024 65535' > {root}/proc/sys/net/ipv4/ip_local_port_range"),
        format!("echo performance > {root}/sys/devices/system/cpu/cpu3/cpufreq/scaling_governor"),
        format!("echo madvise > {root}/sys/kernel/mm/transparent_hugepage/enabled"),
        format!("echo 0,2 > {root}/proc/irq/41/smp_affinity_list"),
        format!("echo 0000000a > {root}/sys/class/net/eth0/queues/rx-1/rps_cpus"),
        format!("echo 00000005 > {root}/sys/class/net/eth0/queues/tx-0/xps_cpus"),
        "# irqbalance: not run under --root: systemctl stop irqbalance.service".to_string(),
    ];
    for line in &expect {
        assert!(
            run.stdout.lines().any(|l| l == line),
            "missing {line:?} in:\n{}",
            run.stdout
        );
    }
    assert!(!run.stdout.contains("nothing to do"));
    let tuned = host("plan-tuned", true);
    assert_eq!(tuned.run(&["plan"]).stdout, "nothing to do\n");
}

#[test]
fn apply_twice_changes_nothing_the_second_time() {
    let f = host("apply-twice", false);
    let first = f.run(&["apply"]);
    assert_eq!(first.code, 0, "{}", first.stdout);
    assert!(f.dir.join("var/lib/ringrelay-tune/originals.json").exists());
    assert_eq!(f.read("proc/sys/net/core/somaxconn"), "65535\n");
    assert_eq!(
        f.read("sys/class/net/eth0/queues/tx-1/xps_cpus"),
        "0000000a\n"
    );
    let after_first = f.snapshot();
    let second = f.run(&["apply"]);
    assert_eq!(second.code, 0, "{}", second.stdout);
    assert!(!second.stdout.contains("set "), "{}", second.stdout);
    assert_eq!(f.snapshot(), after_first);
    // Everything apply can fix is fixed; what is left are limits (persist) and irqbalance.
    let rows = check_json(&f);
    for r in &rows {
        let key = r["setting"].as_str().unwrap();
        if !key.starts_with("limit.") && key != "irqbalance" {
            assert_eq!(r["ok"], true, "{r}");
        }
    }
    assert_eq!(
        f.run(&["plan"]).stdout.lines().last(),
        Some("nothing to do")
    );
}

#[test]
fn originals_are_saved_once() {
    let f = host("originals", false);
    assert_eq!(f.run(&["apply", "--only", "net.core.somaxconn"]).code, 0);
    let state = f.read("var/lib/ringrelay-tune/originals.json");
    assert!(state.contains("/proc/sys/net/core/somaxconn"));
    assert!(!state.contains("swappiness"));
    // The tuned value is not recorded over the original; new settings are added.
    f.file("proc/sys/net/core/somaxconn", "100\n");
    assert_eq!(f.run(&["apply"]).code, 0);
    let state: serde_json::Value =
        serde_json::from_str(&f.read("var/lib/ringrelay-tune/originals.json")).unwrap();
    assert_eq!(
        state["files"]["/proc/sys/net/core/somaxconn"]["raw"],
        "4096\n"
    );
    assert_eq!(state["files"]["/proc/sys/vm/swappiness"]["raw"], "60\n");
    assert_eq!(
        state["files"]["/sys/kernel/mm/transparent_hugepage/enabled"]["restore"],
        "always"
    );
}

#[test]
fn apply_then_revert_restores_the_fixture_byte_for_byte() {
    let f = host("revert", false);
    let before = f.snapshot();
    assert_eq!(f.run(&["apply"]).code, 0);
    assert_ne!(f.snapshot(), before);
    let run = f.run(&["revert"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(f.snapshot(), before);
    assert_eq!(
        f.run(&["revert"]).stdout,
        "nothing to revert (no /var/lib/ringrelay-tune/originals.json)\n"
    );
}

#[test]
fn persist_writes_drop_ins_and_revert_removes_them() {
    let f = host("persist", false);
    let before = f.snapshot();
    let run = f.run(&["persist"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let sysctl = f.read("etc/sysctl.d/60-ringrelay.conf");
    assert!(sysctl.contains("net.core.somaxconn = 65535\n"), "{sysctl}");
    assert!(
        sysctl.contains("net.ipv4.ip_local_port_range = 1024 65535\n"),
        "{sysctl}"
    );
    let limits = f.read("etc/systemd/system/ringrelay.service.d/60-ringrelay-limits.conf");
    assert!(
        limits.contains("[Service]\nLimitNOFILE=1048576\nLimitMEMLOCK=infinity\n"),
        "{limits}"
    );
    let boot = f.read("etc/systemd/system/ringrelay-tune-boot.service");
    assert!(boot.contains("apply --only-nonsysctl"), "{boot}");
    assert!(boot.contains("WantedBy=multi-user.target"), "{boot}");
    assert_eq!(
        fs::read_link(
            f.dir
                .join("etc/systemd/system/multi-user.target.wants/ringrelay-tune-boot.service")
        )
        .unwrap(),
        Path::new("/etc/systemd/system/ringrelay-tune-boot.service")
    );
    // check now sees them: sysctls, limits (unit) and boot settings are persisted.
    let rows = check_json(&f);
    for key in [
        "net.core.somaxconn",
        "limit.nofile",
        "limit.memlock",
        "cpu.governor",
        "nic.rps.eth0",
    ] {
        assert_eq!(row(&rows, key)["persisted"], "yes", "{key}");
    }
    assert_eq!(row(&rows, "limit.nofile")["ok"], true); // the unit gives it to the relay
                                                        // persist again: nothing changes.
    let snap = f.snapshot();
    assert_eq!(f.run(&["persist"]).code, 0);
    assert_eq!(f.snapshot(), snap);
    // apply on top, then one revert undoes both.
    assert_eq!(f.run(&["apply"]).code, 0);
    assert_eq!(f.run(&["revert"]).code, 0);
    assert_eq!(f.snapshot(), before);
}

#[test]
fn persist_keeps_and_revert_restores_an_existing_file() {
    let f = host("persist-existing", false);
    f.file(
        "etc/sysctl.d/60-ringrelay.conf",
        "# the admin's own\nvm.swappiness = 10\n",
    );
    let before = f.snapshot();
    assert_eq!(f.run(&["persist"]).code, 0);
    assert!(f
        .read("etc/sysctl.d/60-ringrelay.conf")
        .contains("vm.swappiness = 1\n"));
    assert_eq!(f.run(&["revert"]).code, 0);
    assert_eq!(f.snapshot(), before);
}

fn cpus_lines(f: &Fixture, extra: &[&str]) -> (String, String) {
    let mut args = vec!["cpus"];
    args.extend_from_slice(extra);
    let run = f.run(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut lines = run.stdout.lines();
    (
        lines.next().unwrap().to_string(),
        lines.next().unwrap().to_string(),
    )
}

#[test]
fn cpus_on_1_2_4_and_8_cpu_machines() {
    let cases: [(usize, usize, usize, &str, &str); 5] = [
        (1, 1, 1, "--cpus 0", "irq cpus: 0 (shared with the relay)"),
        (2, 1, 2, "--cpus 1", "irq cpus: 0"),
        (2, 2, 2, "--cpus 1", "irq cpus: 0"), // one core, two threads
        (4, 2, 4, "--cpus 1,3", "irq cpus: 0,2"),
        (8, 2, 8, "--cpus 1-3,5-7", "irq cpus: 0,4"),
    ];
    for (count, threads, per_node, relay, irq) in cases {
        let f = Fixture::new(&format!("cpus{count}x{threads}"));
        cpus(&f, count, threads, per_node);
        f.file("sys/class/net/eth0/device/numa_node", "0\n");
        assert_eq!(
            cpus_lines(&f, &[]),
            (relay.to_string(), irq.to_string()),
            "{count} CPUs x {threads}"
        );
    }
}

#[test]
fn cpus_follow_the_nic_numa_node_and_one_per_core() {
    let f = Fixture::new("cpus-numa");
    cpus(&f, 8, 1, 4); // nodes 0 (CPUs 0-3) and 1 (CPUs 4-7), no hyperthreads
    f.file("sys/class/net/eth0/device/numa_node", "1\n");
    assert_eq!(
        cpus_lines(&f, &[]),
        ("--cpus 0-3,5-7".to_string(), "irq cpus: 4".to_string())
    );
    let g = Fixture::new("cpus-per-core");
    cpus(&g, 8, 2, 8);
    assert_eq!(
        cpus_lines(&g, &["--one-per-core"]),
        ("--cpus 1-3".to_string(), "irq cpus: 0,4".to_string())
    );
}
