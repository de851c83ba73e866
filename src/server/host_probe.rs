//! Startup probe: host settings that limit the relay, each with the `tuning/ringrelay-tune`
//! command that fixes it.
//!
//! Sans-IO apart from reading files: [`probe`] reads the kernel settings as files under a root
//! directory (`/` on a live host, a fixture tree in tests) and takes the process limits as
//! values ([`ProcessLimits`], read by [`ProcessLimits::current`]), so every finding can be tested
//! without touching the machine. A value that cannot be read gives an `Unknown` finding (logged
//! at debug level), never an error.
//!
//! What is checked, and against what:
//! - open files (RLIMIT_NOFILE, soft): one descriptor per connection plus a few per worker.
//!   The configured capacity (workers × `connections_per_worker_max`, 65,536 × CPUs by default)
//!   is far above what most nodes ever hold, so the need is capped at
//!   [`CONNECTIONS_EXPECTED`] connections: a relay with the default config on a small box warns
//!   when it could not hold 65,536 clients, not when it could not hold 4 million.
//! - locked memory (RLIMIT_MEMLOCK, soft): each worker pins its provided-buffer ring,
//!   `recv_buffer_count` entries of 16 bytes (4 KiB per worker by default). Since Linux 5.12
//!   the io_uring rings themselves are charged to the memory cgroup instead of RLIMIT_MEMLOCK,
//!   and the relay needs 5.19+ (buffer rings) anyway, so only the pinned ring pages count here
//!   and the usual 8 MiB default is plenty: this warns only below that need.
//! - `kernel.io_uring_disabled` (Linux 6.6+): anything but 0 stops the relay creating rings.
//! - `net.core.somaxconn`: caps the listen backlog the relay asks for ([`LISTEN_BACKLOG`]).
//!
//! [`LISTEN_BACKLOG`]: super::LISTEN_BACKLOG

use crate::config::Config;
use std::path::Path;

/// Connections a node is sized for when the configured capacity is larger: the open-files
/// need is `min(workers × connections_per_worker_max, CONNECTIONS_EXPECTED)` plus overhead.
pub const CONNECTIONS_EXPECTED: u64 = 65_536;

/// Descriptors per worker besides connections: listener, io_uring, eventfd, spare.
const FDS_PER_WORKER: u64 = 4;
/// Descriptors of the process besides workers: stdio, metrics listener, signals, logs.
const FDS_BASE: u64 = 32;

/// Descriptors a cluster node keeps back from clients: its control and data links to peers
/// (one control link plus one data link per worker, each way) and their handshakes.
const FDS_RESERVED_FOR_CLUSTER: u64 = 512;
/// Descriptors kept back for scrapes of the metrics endpoint.
const FDS_RESERVED_FOR_METRICS: u64 = 16;

/// Connections one worker may hold: `connections_per_worker_max`, lowered so that every
/// worker's connections plus the relay's other descriptors fit under the open-files soft limit
/// `nofile_soft`. Past it a connection is accepted and closed with CLOSE CONNECTION_LIMIT,
/// instead of accept failing with EMFILE and the client waiting in the kernel's queue with no
/// answer. `None` (the limit could not be read): the setting as configured.
pub fn connections_per_worker_effective(cfg: &Config, nofile_soft: Option<u64>) -> usize {
    let Some(soft) = nofile_soft else {
        return cfg.connections_per_worker_max;
    };
    let workers = cfg.worker_count().max(1) as u64;
    let per_worker =
        usize::try_from(soft.saturating_sub(fds_reserved(cfg)) / workers).unwrap_or(usize::MAX);
    per_worker.clamp(1, cfg.connections_per_worker_max)
}

/// Descriptors the relay holds besides client connections: per worker (ring, eventfd,
/// listener), the base (stdio, metrics listener, files), and reserves for the cluster's links
/// and for metrics scrapes when those are on.
fn fds_reserved(cfg: &Config) -> u64 {
    let workers = cfg.worker_count().max(1) as u64;
    let cluster = if cfg.node_id != 0 {
        FDS_RESERVED_FOR_CLUSTER
    } else {
        0
    };
    let metrics = if cfg.metrics.is_some() {
        FDS_RESERVED_FOR_METRICS
    } else {
        0
    };
    workers * FDS_PER_WORKER + FDS_BASE + cluster + metrics
}

/// The most descriptors the relay holds with `cfg` when each worker may hold
/// `connections_per_worker` connections: those connections and the reserve of
/// [`connections_per_worker_effective`], capped by the open-files soft limit.
pub fn descriptors_max(cfg: &Config, connections_per_worker: usize) -> u64 {
    let workers = cfg.worker_count().max(1) as u64;
    let want = workers
        .saturating_mul(connections_per_worker as u64)
        .saturating_add(fds_reserved(cfg));
    match ProcessLimits::current().nofile {
        Some(limit) => want.min(limit.soft),
        None => want,
    }
}

/// The memory this process may use: the host's (`MemTotal`), or its cgroup's limit when that
/// is lower (a container). `None` when neither can be read.
pub fn memory_available_bytes() -> Option<u64> {
    let host = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total_bytes(&text));
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok());
    match (host, cgroup) {
        (Some(h), Some(c)) => Some(h.min(c)),
        (h, c) => h.or(c),
    }
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes of one provided-buffer ring entry (`struct io_uring_buf`).
const BUF_RING_ENTRY_BYTES: u64 = 16;
const PAGE_BYTES: u64 = 4096;

/// The fix for the process limits: the systemd drop-in `persist` writes, then a restart.
pub const FIX_LIMITS: &str = "ringrelay-tune persist && systemctl restart ringrelay \
     (sets LimitNOFILE=1048576, LimitMEMLOCK=infinity; from a shell: ulimit -n / ulimit -l)";
pub const FIX_IO_URING: &str =
    "ringrelay-tune apply --only kernel.io_uring_disabled && ringrelay-tune persist";
pub const FIX_SOMAXCONN: &str =
    "ringrelay-tune apply --only net.core.somaxconn && ringrelay-tune persist";

/// How a setting stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// It limits the relay: logged as a warning.
    Limiting,
    /// It could not be read (or does not exist on this kernel): logged at debug level.
    Unknown,
}

/// One setting that limits the relay, or that could not be checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The setting's key in `ringrelay-tune check` (`limit.nofile`, `net.core.somaxconn`, ...).
    pub setting: &'static str,
    pub level: Level,
    /// What is wrong and what it does to the relay.
    pub message: String,
    /// The `ringrelay-tune` command that fixes it (empty for `Unknown`).
    pub fix: &'static str,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)?;
        if !self.fix.is_empty() {
            write!(f, "; fix: {}", self.fix)?;
        }
        Ok(())
    }
}

/// A resource limit; `u64::MAX` is unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub soft: u64,
    pub hard: u64,
}

/// The process limits the probe checks; `None` when they could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessLimits {
    pub nofile: Option<Limit>,
    pub memlock: Option<Limit>,
}

impl ProcessLimits {
    /// This process's limits (getrlimit).
    pub fn current() -> ProcessLimits {
        ProcessLimits {
            nofile: get_limit(libc::RLIMIT_NOFILE),
            memlock: get_limit(libc::RLIMIT_MEMLOCK),
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
type Resource = libc::c_int;

fn get_limit(resource: Resource) -> Option<Limit> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the live struct passed.
    if unsafe { libc::getrlimit(resource, &mut rl) } != 0 {
        return None;
    }
    let value = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            u64::MAX
        } else {
            // rlim_t is u32 on some 32-bit targets.
            #[allow(clippy::unnecessary_cast)]
            let v = v as u64;
            v
        }
    };
    Some(Limit {
        soft: value(rl.rlim_cur),
        hard: value(rl.rlim_max),
    })
}

/// Open descriptors the relay needs with `cfg` (see the module docs).
pub fn nofile_need(cfg: &Config) -> u64 {
    let workers = cfg.worker_count() as u64;
    let capacity = workers.saturating_mul(cfg.connections_per_worker_max as u64);
    capacity.min(CONNECTIONS_EXPECTED) + workers * FDS_PER_WORKER + FDS_BASE
}

/// Locked bytes the relay's buffer rings need with `cfg`: each worker's ring rounded up to
/// whole pages.
pub fn memlock_need(cfg: &Config) -> u64 {
    let ring =
        |count: usize| (count as u64 * BUF_RING_ENTRY_BYTES).div_ceil(PAGE_BYTES) * PAGE_BYTES;
    let tls_ring = cfg.tls_recv_buffers().map_or(0, |(count, _)| ring(count));
    cfg.worker_count() as u64 * (ring(cfg.recv_buffer_count) + tls_ring)
}

/// The least value of each host setting the relay needs with `cfg`, by `ringrelay-tune check`
/// key: the one source of these thresholds. The start-up probe warns below them, and
/// `ringrelay-tune check` asks the binary for them (`serve --print-host-needs`), so the two
/// cannot disagree; the tool's larger recommended values are what `persist` writes.
pub fn needs(cfg: &Config) -> [(&'static str, u64); 3] {
    [
        ("limit.nofile", nofile_need(cfg)),
        ("limit.memlock", memlock_need(cfg)),
        ("net.core.somaxconn", super::LISTEN_BACKLOG as u64),
    ]
}

/// What raising a soft limit did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Raised {
    pub from: u64,
    pub to: u64,
}

/// Raises the open-files and locked-memory soft limits to their hard limits where they are
/// below what `cfg` needs (an unprivileged process may do that). Returns what was raised, by
/// setting key, and the errors of raises that failed; never fails itself.
pub fn raise_soft_limits(cfg: &Config) -> Vec<(&'static str, Result<Raised, std::io::Error>)> {
    let mut done = Vec::new();
    let wanted = [
        ("limit.nofile", libc::RLIMIT_NOFILE, nofile_need(cfg)),
        ("limit.memlock", libc::RLIMIT_MEMLOCK, memlock_need(cfg)),
    ];
    for (key, resource, need) in wanted {
        let Some(limit) = get_limit(resource) else {
            continue;
        };
        if limit.soft >= need || limit.soft >= limit.hard {
            continue;
        }
        let rl = libc::rlimit {
            rlim_cur: limit.hard as libc::rlim_t,
            rlim_max: limit.hard as libc::rlim_t,
        };
        // SAFETY: setrlimit reads one live rlimit struct.
        let result = if unsafe { libc::setrlimit(resource, &rl) } == 0 {
            Ok(Raised {
                from: limit.soft,
                to: limit.hard,
            })
        } else {
            Err(std::io::Error::last_os_error())
        };
        done.push((key, result));
    }
    done
}

/// Checks the host under `root` (`/` on a live host) and the process `limits` against `cfg`.
/// Returns one finding per setting that limits the relay or could not be read, in a fixed
/// order: open files, locked memory, io_uring_disabled, somaxconn.
pub fn probe(root: &Path, cfg: &Config, limits: &ProcessLimits) -> Vec<Finding> {
    let mut findings = Vec::new();
    let workers = cfg.worker_count();

    let need = nofile_need(cfg);
    match limits.nofile {
        None => findings.push(unknown("limit.nofile", "open-files limit unreadable")),
        Some(l) if l.soft < need => findings.push(Finding {
            setting: "limit.nofile",
            level: Level::Limiting,
            message: format!(
                "open-files limit {} (hard {}) is below the {need} descriptors for \
                 min({workers} workers x {} connections, {CONNECTIONS_EXPECTED}) connections; \
                 accepts beyond it fail with EMFILE",
                show(l.soft),
                show(l.hard),
                cfg.connections_per_worker_max,
            ),
            fix: FIX_LIMITS,
        }),
        Some(_) => {}
    }

    let need = memlock_need(cfg);
    match limits.memlock {
        None => findings.push(unknown("limit.memlock", "locked-memory limit unreadable")),
        Some(l) if l.soft < need => findings.push(Finding {
            setting: "limit.memlock",
            level: Level::Limiting,
            message: format!(
                "locked-memory limit {} B is below the {need} B the buffer rings pin \
                 ({workers} workers x {} entries x 16 B); workers may fail to register them \
                 (the io_uring rings themselves are charged to the memory cgroup on 5.12+)",
                show(l.soft),
                cfg.recv_buffer_count,
            ),
            fix: FIX_LIMITS,
        }),
        Some(_) => {}
    }

    let sysctl = |key: &str| read_sysctl(root, key);
    match sysctl("kernel.io_uring_disabled") {
        Sysctl::Value(0) => {}
        Sysctl::Value(v) => findings.push(Finding {
            setting: "kernel.io_uring_disabled",
            level: Level::Limiting,
            message: format!(
                "kernel.io_uring_disabled is {v}: {}",
                if v == 1 {
                    "only members of kernel.io_uring_group (or CAP_SYS_ADMIN) may create rings"
                } else {
                    "io_uring is disabled; the relay cannot create its rings"
                }
            ),
            fix: FIX_IO_URING,
        }),
        // Kernels before 6.6 have no such switch: io_uring is on.
        Sysctl::Missing => findings.push(unknown(
            "kernel.io_uring_disabled",
            "n/a (no such sysctl before Linux 6.6: io_uring is enabled)",
        )),
        Sysctl::Unreadable(why) => findings.push(unknown("kernel.io_uring_disabled", &why)),
    }

    let backlog = super::LISTEN_BACKLOG as u64;
    match sysctl("net.core.somaxconn") {
        Sysctl::Value(v) if v < backlog => findings.push(Finding {
            setting: "net.core.somaxconn",
            level: Level::Limiting,
            message: format!(
                "net.core.somaxconn {v} caps the listen backlog of {backlog}; in a reconnect \
                 storm the accept queue overflows and SYNs are dropped (1 s client retries)"
            ),
            fix: FIX_SOMAXCONN,
        }),
        Sysctl::Value(_) => {}
        Sysctl::Missing => findings.push(unknown("net.core.somaxconn", "sysctl not found")),
        Sysctl::Unreadable(why) => findings.push(unknown("net.core.somaxconn", &why)),
    }
    findings
}

fn unknown(setting: &'static str, why: &str) -> Finding {
    Finding {
        setting,
        level: Level::Unknown,
        message: format!("unknown: {why}"),
        fix: "",
    }
}

fn show(v: u64) -> String {
    if v == u64::MAX {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

enum Sysctl {
    Value(u64),
    Missing,
    Unreadable(String),
}

/// Reads `ROOT/proc/sys/<key with / for .>` as one unsigned integer.
fn read_sysctl(root: &Path, key: &str) -> Sysctl {
    let path = root.join("proc/sys").join(key.replace('.', "/"));
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(v) => Sysctl::Value(v),
            Err(_) => Sysctl::Unreadable(format!("{} holds {:?}", path.display(), text.trim())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Sysctl::Missing,
        Err(e) => Sysctl::Unreadable(format!("cannot read {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total_is_read_in_bytes() {
        let text = "MemTotal:       24562756 kB\nMemFree:         1000 kB\n";
        assert_eq!(mem_total_bytes(text), Some(24_562_756 * 1024));
        assert_eq!(mem_total_bytes("MemFree: 1 kB\n"), None);
    }
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh fixture root under the temp dir, removed on drop.
    struct Fixture(PathBuf);

    impl Fixture {
        fn new() -> Fixture {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "ringrelay-probe-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Fixture(dir)
        }

        fn sysctl(&self, key: &str, value: &str) -> &Self {
            let path = self.0.join("proc/sys").join(key.replace('.', "/"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, format!("{value}\n")).unwrap();
            self
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn cfg() -> Config {
        Config {
            workers: 2,
            ..Config::default()
        }
    }

    fn limits(nofile: u64, memlock: u64) -> ProcessLimits {
        ProcessLimits {
            nofile: Some(Limit {
                soft: nofile,
                hard: nofile,
            }),
            memlock: Some(Limit {
                soft: memlock,
                hard: memlock,
            }),
        }
    }

    fn keys(findings: &[Finding], level: Level) -> Vec<&'static str> {
        findings
            .iter()
            .filter(|f| f.level == level)
            .map(|f| f.setting)
            .collect()
    }

    #[test]
    fn needs_are_capped_and_counted_per_worker() {
        // 2 x 65,536 configured, capped at 65,536, plus 2 x 4 + 32.
        assert_eq!(nofile_need(&cfg()), 65_536 + 8 + 32);
        let small = Config {
            workers: 2,
            connections_per_worker_max: 100,
            ..Config::default()
        };
        assert_eq!(nofile_need(&small), 200 + 8 + 32);
        // 256 entries x 16 B = 1 page per worker.
        assert_eq!(memlock_need(&cfg()), 2 * 4096);
        let tiny = Config {
            workers: 3,
            recv_buffer_count: 16,
            ..Config::default()
        };
        assert_eq!(memlock_need(&tiny), 3 * 4096);
    }

    #[test]
    fn a_tuned_host_has_no_findings() {
        let root = Fixture::new();
        root.sysctl("kernel.io_uring_disabled", "0")
            .sysctl("net.core.somaxconn", "65535");
        let findings = probe(&root.0, &cfg(), &limits(1 << 20, u64::MAX));
        assert_eq!(findings, vec![]);
    }

    #[test]
    fn defaults_of_a_stock_host_do_not_warn() {
        // Linux 5.4+ defaults: somaxconn 4096, memlock 8 MiB; a service with LimitNOFILE=65536
        // plus the 1024 soft limit of a login shell raised to its 524288 hard limit.
        let root = Fixture::new();
        root.sysctl("kernel.io_uring_disabled", "0")
            .sysctl("net.core.somaxconn", "4096");
        let findings = probe(&root.0, &cfg(), &limits(524_288, 8 << 20));
        assert_eq!(findings, vec![]);
    }

    #[test]
    fn an_untuned_host_gets_one_warning_per_setting_each_with_its_fix() {
        let root = Fixture::new();
        root.sysctl("kernel.io_uring_disabled", "2")
            .sysctl("net.core.somaxconn", "128");
        let findings = probe(&root.0, &cfg(), &limits(1024, 4096));
        assert_eq!(
            keys(&findings, Level::Limiting),
            vec![
                "limit.nofile",
                "limit.memlock",
                "kernel.io_uring_disabled",
                "net.core.somaxconn"
            ]
        );
        for f in &findings {
            assert!(f.fix.starts_with("ringrelay-tune "), "{f}");
            assert!(f.to_string().contains("fix: ringrelay-tune"), "{f}");
        }
        assert!(findings[0].message.contains("1024"), "{}", findings[0]);
        assert!(findings[2].message.contains("disabled"), "{}", findings[2]);
        assert!(findings[3].message.contains("128"), "{}", findings[3]);
        assert_eq!(findings[2].fix, FIX_IO_URING);
        assert_eq!(findings[3].fix, FIX_SOMAXCONN);
    }

    #[test]
    fn io_uring_restricted_to_a_group_is_reported() {
        let root = Fixture::new();
        root.sysctl("kernel.io_uring_disabled", "1")
            .sysctl("net.core.somaxconn", "4096");
        let findings = probe(&root.0, &cfg(), &limits(1 << 20, u64::MAX));
        assert_eq!(findings.len(), 1);
        assert!(findings[0].message.contains("io_uring_group"));
    }

    #[test]
    fn missing_or_garbled_values_are_unknown_not_errors() {
        let root = Fixture::new(); // no proc/sys at all
        let none = ProcessLimits {
            nofile: None,
            memlock: None,
        };
        let findings = probe(&root.0, &cfg(), &none);
        assert_eq!(keys(&findings, Level::Limiting), Vec::<&str>::new());
        assert_eq!(
            keys(&findings, Level::Unknown),
            vec![
                "limit.nofile",
                "limit.memlock",
                "kernel.io_uring_disabled",
                "net.core.somaxconn"
            ]
        );
        root.sysctl("net.core.somaxconn", "lots");
        let findings = probe(&root.0, &cfg(), &limits(1 << 20, u64::MAX));
        assert_eq!(
            keys(&findings, Level::Unknown),
            vec!["kernel.io_uring_disabled", "net.core.somaxconn"]
        );
        assert!(findings[1].message.contains("lots"));
        // A root that does not exist at all.
        let gone = root.0.join("nonexistent");
        assert_eq!(probe(&gone, &cfg(), &none).len(), 4);
    }

    #[test]
    fn the_live_host_can_be_probed() {
        let findings = probe(Path::new("/"), &cfg(), &ProcessLimits::current());
        assert!(findings.len() <= 4);
    }

    #[test]
    fn connections_per_worker_fit_under_the_open_files_limit() {
        let two_workers = Config {
            workers: 2,
            ..Config::default()
        };
        assert_eq!(connections_per_worker_effective(&two_workers, None), 65_536);
        assert_eq!(
            connections_per_worker_effective(&two_workers, Some(1 << 30)),
            65_536,
            "a high limit leaves the setting alone"
        );
        // 20,000 descriptors less 2 x 4 per worker and 32 for the process, split in two.
        assert_eq!(
            connections_per_worker_effective(&two_workers, Some(20_000)),
            (20_000 - 8 - 32) / 2
        );
        let clustered = Config {
            node_id: 1,
            metrics: Some("127.0.0.1:0".parse().unwrap()),
            ..two_workers.clone()
        };
        assert_eq!(
            connections_per_worker_effective(&clustered, Some(20_000)),
            (20_000 - 8 - 32 - 512 - 16) / 2
        );
        assert_eq!(connections_per_worker_effective(&two_workers, Some(10)), 1);
    }
}
