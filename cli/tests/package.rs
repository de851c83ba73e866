//! The Debian package for a relay host (`[package.metadata.deb]` in cli/Cargo.toml), built by
//! cargo-deb from the binary under test and taken apart with dpkg-deb: the files it installs
//! with their modes and contents, its control fields and conffiles, its maintainer scripts
//! (run against stub commands, so they never touch this machine), and its programs run from
//! the extracted tree.
//!
//! `cargo test` holds the build directory while this runs, so nothing here may build:
//! `cargo deb --no-build --profile <profile>` packages `<target>/<profile>/ringrelay`, the
//! binary cargo built for this run (`CARGO_TARGET_DIR` points cargo-deb at the directory that
//! holds it, and the packaged binary's GNU build id must be the same). The package is built
//! once per run into `<target>/package-test/` and shared by the tests. cargo-deb and dpkg-deb
//! must be installed (`cargo install cargo-deb --locked`, as .ci/run does): a missing one fails
//! the tests with that instruction, it never skips them. Every child process is bounded by [`BOUND`].
//!
//! Not done: `dpkg --root DIR -i`, which runs the maintainer scripts chrooted into DIR (a whole
//! system would have to be there) or, with `--force-script-chrootless`, on this machine.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Longest any child process may take; cargo-deb (strip, split the debug symbols, xz) takes
/// about 15 s on a 2-core machine.
const BOUND: Duration = Duration::from_secs(120);

/// The binary under test. Not `common::bin()`: this test needs none of the relay helpers.
fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ringrelay"))
}

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn source(rel: &str) -> Vec<u8> {
    let path = workspace().join(rel);
    fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Runs `cmd` to its end, at most [`BOUND`]: past it, its process group is killed and the test
/// fails. Returns the output whatever the exit status.
fn run(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what} (is it installed?): {e}"));
    let collect = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = collect(Box::new(child.stdout.take().unwrap()));
    let stderr = collect(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            // SAFETY: kill(2) on the process group the child leads (its pgid is its pid, and it
            // is not reaped yet); no memory is shared with the kernel.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.wait();
            panic!("{what} still running after {BOUND:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Runs `cmd`, which must succeed; returns its standard output.
fn ok(cmd: &mut Command) -> String {
    let what = format!("{cmd:?}");
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

// ---------------------------------------------------------------------------------------------
// The package, built once
// ---------------------------------------------------------------------------------------------

struct Package {
    deb: PathBuf,
    /// `dpkg-deb -x`: the files as installed.
    root: PathBuf,
    /// `dpkg-deb -e`: control, conffiles and the maintainer scripts.
    control: PathBuf,
}

static PACKAGE: OnceLock<Result<Package, String>> = OnceLock::new();

/// The package; the first caller builds it, and a failed build fails every test with its reason.
fn package() -> &'static Package {
    let built = PACKAGE.get_or_init(|| {
        std::panic::catch_unwind(build).map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
    });
    match built {
        Ok(p) => p,
        Err(why) => panic!("the package could not be built: {why}"),
    }
}

fn arch() -> String {
    ok(Command::new("dpkg").arg("--print-architecture"))
        .trim()
        .to_string()
}

fn require_cargo_deb() {
    let out = run(cargo().args(["deb", "--version"]));
    assert!(
        out.status.success(),
        "cargo-deb is not installed: install it with `cargo install cargo-deb --locked` \
         (.ci/run does). `cargo deb --version` said: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

fn build() -> Package {
    let profile_dir = bin().parent().unwrap();
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("the binary under test always lies in <target>/<profile>/");
    assert_ne!(
        profile,
        "debug",
        "cargo-deb packages an optimised binary, but the binary under test is {}: run this \
         test with the README's `cargo test --profile test-release` (or `--release`)",
        bin().display()
    );
    let target = profile_dir.parent().unwrap();
    require_cargo_deb();
    let dir = target.join("package-test");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    ok(cargo()
        .args(["deb", "-p", "ringrelay-cli", "--no-build"])
        .args(["--profile", profile, "--output"])
        .arg(&dir)
        .env("CARGO_TARGET_DIR", target)
        .current_dir(workspace()));
    let name = format!("ringrelay_{}_{}.deb", env!("CARGO_PKG_VERSION"), arch());
    let deb = dir.join(&name);
    assert!(
        deb.is_file(),
        "cargo deb made no {name} in {}",
        dir.display()
    );
    let (root, control) = (dir.join("root"), dir.join("control"));
    ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    ok(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    Package { deb, root, control }
}

// ---------------------------------------------------------------------------------------------
// Contents
// ---------------------------------------------------------------------------------------------

/// One line of `dpkg-deb -c`: `-rwxr-xr-x 0/0 1234 2026-01-01 00:00 ./usr/bin/x [-> target]`.
#[derive(Debug)]
struct Entry {
    mode: String,
    owner: String,
    path: String,
    link: Option<String>,
}

fn listing(p: &Package) -> Vec<Entry> {
    ok(Command::new("dpkg-deb").arg("-c").arg(&p.deb))
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert!(
                f.len() == 6 || f.len() == 8,
                "odd dpkg-deb -c line {line:?}"
            );
            Entry {
                mode: f[0].to_string(),
                owner: f[1].to_string(),
                path: usr_merged(f[5].trim_start_matches('.')),
                link: f.get(7).map(|t| t.to_string()),
            }
        })
        .collect()
}

/// `path` in its /usr form: cargo-deb versions differ on /lib/systemd/system versus
/// /usr/lib/systemd/system, which are one directory on a merged-/usr system.
fn usr_merged(path: &str) -> String {
    match path.strip_prefix("/lib/") {
        Some(rest) => format!("/usr/lib/{rest}"),
        None => path.to_string(),
    }
}

/// The tuning tool's modules, from the source tree, so a new module cannot be left out.
fn tuning_modules() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(workspace().join("tuning/ringrelay_tune"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".py"))
        .collect();
    names.sort();
    assert!(names.iter().any(|n| n == "cli.py"), "modules: {names:?}");
    names
}

/// Every file the package installs, with its mode, and its source in the tree (`None`: made by
/// cargo-deb).
fn expected_files() -> Vec<(String, &'static str, Option<String>)> {
    let mut files = vec![
        ("/usr/bin/ringrelay", "-rwxr-xr-x", None),
        (
            "/usr/lib/ringrelay/ringrelay-tune",
            "-rwxr-xr-x",
            Some("tuning/ringrelay-tune"),
        ),
        (
            "/etc/ringrelay/ringrelay.toml",
            "-rw-r-----",
            Some("packaging/deb/ringrelay.toml"),
        ),
        (
            "/usr/lib/systemd/system/ringrelay.service",
            "-rw-r--r--",
            Some("packaging/deb/ringrelay.service"),
        ),
        (
            "/usr/share/doc/ringrelay/README.md",
            "-rw-r--r--",
            Some("README.md"),
        ),
        (
            "/usr/share/doc/ringrelay/PROTOCOL.md",
            "-rw-r--r--",
            Some("PROTOCOL.md"),
        ),
        (
            "/usr/share/doc/ringrelay/tuning/README.md",
            "-rw-r--r--",
            Some("tuning/README.md"),
        ),
        ("/usr/share/doc/ringrelay/copyright", "-rw-r--r--", None),
    ]
    .into_iter()
    .map(|(path, mode, src)| (path.to_string(), mode, src.map(str::to_string)))
    .collect::<Vec<_>>();
    for m in tuning_modules() {
        files.push((
            format!("/usr/lib/ringrelay/ringrelay_tune/{m}"),
            "-rw-r--r--",
            Some(format!("tuning/ringrelay_tune/{m}")),
        ));
    }
    files
}

#[test]
fn the_package_holds_exactly_the_binary_the_tuning_tool_the_unit_the_config_and_the_docs() {
    let p = package();
    let entries = listing(p);
    for e in &entries {
        assert_eq!(e.owner, "0/0", "{e:?}: every path belongs to root");
    }
    let files: BTreeSet<(String, String)> = entries
        .iter()
        .filter(|e| !e.mode.starts_with('d') && !e.mode.starts_with('l'))
        .map(|e| (e.path.clone(), e.mode.clone()))
        .collect();
    let expected: BTreeSet<(String, String)> = expected_files()
        .into_iter()
        .map(|(path, mode, _)| (path, mode.to_string()))
        .collect();
    assert_eq!(files, expected, "files (path, mode) in {}", p.deb.display());
    let links: Vec<(&str, Option<&str>)> = entries
        .iter()
        .filter(|e| e.mode.starts_with('l'))
        .map(|e| (e.path.as_str(), e.link.as_deref()))
        .collect();
    assert_eq!(
        links,
        [(
            "/usr/bin/ringrelay-tune",
            Some("../lib/ringrelay/ringrelay-tune")
        )],
        "the only symlink puts ringrelay-tune on PATH, relative within /usr (Debian policy 10.5)"
    );
}

#[test]
fn the_packaged_files_are_the_ones_in_the_source_tree() {
    let p = package();
    for (path, _, src) in expected_files() {
        let Some(src) = src else { continue };
        let rel = path.trim_start_matches('/');
        // The unit may be under /lib rather than /usr/lib (see `usr_merged`).
        let installed = [
            p.root.join(rel),
            p.root.join(rel.trim_start_matches("usr/")),
        ]
        .into_iter()
        .find(|f| f.exists())
        .unwrap_or_else(|| panic!("{path} is not in the package"));
        let packaged = fs::read(&installed).unwrap();
        assert!(packaged == source(&src), "{path} differs from {src}");
    }
}

#[test]
fn the_packaged_unit_is_the_tuning_unit_with_the_binary_in_usr_bin() {
    // Source against source, so the two units cannot drift apart; the test above checks that
    // the packaged copy is what the package installs.
    let manual = String::from_utf8(source("tuning/ringrelay.service")).unwrap();
    let packaged = String::from_utf8(source("packaging/deb/ringrelay.service")).unwrap();
    let (manual, packaged): (Vec<&str>, Vec<&str>) =
        (manual.lines().collect(), packaged.lines().collect());
    assert_eq!(
        manual.len(),
        packaged.len(),
        "the units have different lengths"
    );
    let differing: Vec<(&str, &str)> = manual
        .iter()
        .zip(&packaged)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| (*a, *b))
        .collect();
    assert_eq!(
        differing.len(),
        1,
        "only ExecStart may differ: {differing:#?}"
    );
    let (a, b) = differing[0];
    let args = a
        .strip_prefix("ExecStart=/usr/local/bin/ringrelay ")
        .unwrap_or_else(|| panic!("tuning/ringrelay.service: unexpected line {a:?}"));
    assert_eq!(b, format!("ExecStart=/usr/bin/ringrelay {args}"));
    assert_eq!(
        args, "serve --config /etc/ringrelay/ringrelay.toml",
        "the packaged config"
    );
}

// ---------------------------------------------------------------------------------------------
// Control fields
// ---------------------------------------------------------------------------------------------

fn field<'a>(control: &'a str, name: &str) -> &'a str {
    control
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
        .unwrap_or_else(|| panic!("no {name} in control:\n{control}"))
}

#[test]
fn the_control_fields_name_ringrelay_depend_on_python3_and_mark_the_config_a_conffile() {
    let p = package();
    let control = ok(Command::new("dpkg-deb").arg("-f").arg(&p.deb));
    assert_eq!(field(&control, "Package"), "ringrelay");
    assert_eq!(field(&control, "Version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(field(&control, "Architecture"), arch());
    assert_eq!(field(&control, "Section"), "net");
    assert_eq!(field(&control, "Priority"), "optional");
    // Each alternative of each dependency, by package name.
    let depends: Vec<&str> = field(&control, "Depends")
        .split([',', '|'])
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .collect();
    // ringrelay-tune needs Python 3.9 (tuning/README.md); libc6 comes from `$auto`.
    assert!(field(&control, "Depends").contains("python3 (>= 3.9)"));
    for needed in ["python3", "libc6"] {
        assert!(
            depends.contains(&needed),
            "Depends lacks {needed}: {depends:?}"
        );
    }
    assert!(
        depends.contains(&"adduser") && depends.contains(&"passwd"),
        "{depends:?}"
    );
    let conffiles = fs::read_to_string(p.control.join("conffiles")).unwrap();
    assert_eq!(
        conffiles.lines().collect::<Vec<_>>(),
        ["/etc/ringrelay/ringrelay.toml"]
    );
}

// ---------------------------------------------------------------------------------------------
// Maintainer scripts
// ---------------------------------------------------------------------------------------------

const SCRIPTS: [&str; 3] = ["postinst", "prerm", "postrm"];

/// Commands the maintainer scripts may call, as stubs that log their arguments. The scripts
/// run with only the stubs on PATH, so nothing on this machine is changed and a command
/// without a stub fails the script. `STUB_*` variables choose the answers.
const STUBS: &[(&str, &str)] = &[
    ("getent", "[ -n \"$STUB_USER_EXISTS\" ] || exit 2"),
    ("adduser", ""),
    ("useradd", ""),
    ("deluser", ""),
    ("userdel", ""),
    ("delgroup", ""),
    ("groupdel", ""),
    ("dpkg-statoverride", "exit 1"),
    ("chown", ""),
    ("chmod", ""),
    ("systemctl", ""),
    ("deb-systemd-invoke", ""),
    // As deb-systemd-helper answers: `debian-installed` when the unit was installed before;
    // `--quiet was-enabled` on a first install (no state yet: "enable it"), else when the admin
    // had enabled it.
    (
        "deb-systemd-helper",
        "case $1 in debian-installed) [ -n \"$STUB_INSTALLED\" ];; \
         --quiet) [ -z \"$STUB_INSTALLED\" ] || [ -n \"$STUB_WAS_ENABLED\" ];; esac",
    ),
];

/// A directory of [`STUBS`] under the temp dir, removed on drop.
struct Stubs {
    dir: PathBuf,
}

impl Stubs {
    fn new(name: &str, without: &[&str]) -> Stubs {
        let dir = std::env::temp_dir().join(format!("rr-package-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("bin")).unwrap();
        for (cmd, body) in STUBS.iter().filter(|(c, _)| !without.contains(c)) {
            let path = dir.join("bin").join(cmd);
            fs::write(
                &path,
                format!("#!/bin/sh\necho \"${{0##*/}} $*\" >>\"$STUB_LOG\"\n{body}\n"),
            )
            .unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        Stubs { dir }
    }

    /// Runs the package's `script ARGS` with `env`; it must exit 0. Returns the stub calls.
    fn run(&self, p: &Package, script: &str, args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
        let log = self.dir.join("log");
        fs::write(&log, "").unwrap();
        ok(Command::new(p.control.join(script))
            .args(args)
            .env_clear()
            .env("PATH", self.dir.join("bin"))
            .env("STUB_LOG", &log)
            .envs(env.iter().copied()));
        fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Stubs {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A call that would enable or start the relay (`try-restart` on upgrade is neither).
fn enables_or_starts(call: &str) -> bool {
    let words: Vec<&str> = call.split_whitespace().collect();
    match words.as_slice() {
        ["systemctl", rest @ ..] => rest
            .iter()
            .any(|w| ["enable", "start", "restart", "reenable", "--now"].contains(w)),
        ["deb-systemd-invoke", "start" | "restart", ..] => true,
        ["deb-systemd-helper", "enable", ..] => true,
        _ => false,
    }
}

#[test]
fn the_maintainer_scripts_are_executable_posix_sh_with_set_e() {
    let p = package();
    for script in SCRIPTS {
        let path = p.control.join(script);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("#!/bin/sh\n"), "{script}: not #!/bin/sh");
        assert!(text.lines().any(|l| l == "set -e"), "{script}: no `set -e`");
        assert!(
            !text.contains("#DEBHELPER#"),
            "{script}: cargo-deb left #DEBHELPER#"
        );
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "{script}: mode {mode:o}");
        ok(Command::new("sh").arg("-n").arg(&path));
    }
}

/// Text that enables or starts a unit in a maintainer script: `systemctl enable/start`,
/// `--now`, and the start branches of cargo-deb's fragments (`postinst-systemd-start`,
/// `postinst-systemd-restart`).
const ENABLE_OR_START: &[&str] = &[
    "systemctl enable",
    "systemctl start",
    "--now",
    "deb-systemd-invoke start",
    "_dh_action=start",
];

#[test]
fn postinst_creates_the_system_user_and_neither_enables_nor_starts_the_service() {
    let p = package();
    let stubs = Stubs::new("postinst", &[]);
    let calls = stubs.run(p, "postinst", &["configure", ""], &[]);
    let adduser: Vec<&String> = calls.iter().filter(|c| c.starts_with("adduser ")).collect();
    assert_eq!(adduser.len(), 1, "{calls:#?}");
    for flag in ["--system", "--group", "--no-create-home", "ringrelay"] {
        assert!(
            adduser[0].split_whitespace().any(|w| w == flag),
            "{flag}: {calls:#?}"
        );
    }
    // An upgrade: the user exists, the unit was installed before and the admin left it off.
    let upgrade = [("STUB_USER_EXISTS", "1"), ("STUB_INSTALLED", "1")];
    let calls_upgrade = stubs.run(p, "postinst", &["configure", "0.0.1"], &upgrade);
    for call in calls.iter().chain(&calls_upgrade) {
        assert!(
            !enables_or_starts(call),
            "postinst enabled or started: {call}"
        );
    }
    assert!(
        !calls_upgrade.iter().any(|c| c.starts_with("adduser")),
        "{calls_upgrade:#?}"
    );
    // Enabled by the admin: it stays enabled (deb-systemd-helper recreates its links).
    let enabled = [upgrade[0], upgrade[1], ("STUB_WAS_ENABLED", "1")];
    let calls_enabled = stubs.run(p, "postinst", &["configure", "0.0.1"], &enabled);
    assert!(calls_enabled
        .iter()
        .any(|c| c == "deb-systemd-helper enable ringrelay.service"));
    // Starting is guarded by `[ -d /run/systemd/system ]`, which the stubs cannot fake, so
    // the text is checked as well.
    let text = fs::read_to_string(p.control.join("postinst")).unwrap();
    let code = text.lines().filter(|l| !l.trim_start().starts_with('#'));
    for line in code {
        for bad in ENABLE_OR_START {
            assert!(!line.contains(bad), "postinst: {line:?}");
        }
    }
    // Where the config exists (a host with the package installed), only its group changes.
    for call in calls.iter().filter(|c| c.starts_with("ch")) {
        assert!(
            call == "chown root:ringrelay /etc/ringrelay/ringrelay.toml"
                || call == "chmod 0640 /etc/ringrelay/ringrelay.toml",
            "{call}"
        );
    }
}

#[test]
fn postinst_creates_the_user_with_useradd_where_adduser_is_missing() {
    let p = package();
    let stubs = Stubs::new("useradd", &["adduser"]);
    let calls = stubs.run(p, "postinst", &["configure", ""], &[]);
    let useradd: Vec<&String> = calls.iter().filter(|c| c.starts_with("useradd ")).collect();
    assert_eq!(useradd.len(), 1, "{calls:#?}");
    for flag in ["--system", "--user-group", "--no-create-home", "ringrelay"] {
        assert!(
            useradd[0].split_whitespace().any(|w| w == flag),
            "{flag}: {calls:#?}"
        );
    }
}

#[test]
fn removal_and_purge_keep_the_user_and_stop_the_service_only_on_removal() {
    let p = package();
    let stubs = Stubs::new("remove", &[]);
    let upgrade = stubs.run(p, "prerm", &["upgrade", "0.0.2"], &[]);
    assert!(
        upgrade.iter().all(|c| !c.contains("stop")),
        "prerm upgrade stopped the relay: {upgrade:#?}"
    );
    let mut calls = stubs.run(p, "prerm", &["remove"], &[]);
    // systemd fragments run only where systemd runs (`/run/systemd/system`), so the stop
    // appears or not with the host; when it does it is this one.
    for call in &calls {
        assert_eq!(call, "deb-systemd-invoke stop ringrelay.service");
    }
    calls.extend(stubs.run(p, "postrm", &["remove"], &[]));
    calls.extend(stubs.run(p, "postrm", &["purge"], &[]));
    for call in &calls {
        let cmd = call.split_whitespace().next().unwrap_or("");
        assert!(
            !["deluser", "userdel", "delgroup", "groupdel"].contains(&cmd),
            "the ringrelay user is kept on purge (Debian convention): {call}"
        );
        assert!(!enables_or_starts(call), "{call}");
    }
}

// ---------------------------------------------------------------------------------------------
// The programs, run from the extracted tree
// ---------------------------------------------------------------------------------------------

/// The GNU build id of an ELF file: the 20 bytes after the NT_GNU_BUILD_ID note's header
/// (namesz 4, descsz 20, type 3, "GNU\0"; little-endian, as on every target Debian builds this
/// for). strip keeps the note, so a stripped copy has the build id of its original.
fn build_id(elf: &[u8]) -> Option<&[u8]> {
    const HEADER: [u8; 16] = [4, 0, 0, 0, 20, 0, 0, 0, 3, 0, 0, 0, b'G', b'N', b'U', 0];
    let at = elf.windows(HEADER.len()).position(|w| w == HEADER)?;
    elf.get(at + HEADER.len()..at + HEADER.len() + 20)
}

#[test]
fn the_packaged_binary_is_the_binary_under_test_and_accepts_the_packaged_config() {
    let p = package();
    let packaged = p.root.join("usr/bin/ringrelay");
    let (ours, theirs) = (fs::read(bin()).unwrap(), fs::read(&packaged).unwrap());
    let id = build_id(&ours).expect("the binary under test has a GNU build id");
    assert_eq!(
        build_id(&theirs),
        Some(id),
        "cargo-deb packaged another binary"
    );
    assert!(theirs.len() < ours.len(), "the packaged binary is stripped");
    let version = ok(Command::new(&packaged).arg("--version"));
    assert_eq!(version, ok(Command::new(bin()).arg("--version")));
    let config = p.root.join("etc/ringrelay/ringrelay.toml");
    let out = ok(Command::new(&packaged)
        .args(["serve", "--check-config", "--config"])
        .arg(&config));
    for line in [
        r#""listen": "127.0.0.1:7400""#,
        r#""metrics": "127.0.0.1:7402""#,
    ] {
        assert!(
            out.contains(line),
            "--check-config printed no {line}:\n{out}"
        );
    }
}

#[test]
fn the_packaged_ringrelay_tune_runs_through_its_usr_bin_symlink_and_writes_no_bytecode() {
    let p = package();
    // The relative link resolves inside the extracted tree, as it does in / once installed,
    // and the script finds its modules next to its real path.
    let help = ok(Command::new(p.root.join("usr/bin/ringrelay-tune")).arg("--help"));
    assert!(help.contains("usage: ringrelay-tune"), "{help}");
    let lib = p.root.join("usr/lib/ringrelay");
    let mut names = Vec::new();
    let mut dirs = vec![lib];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            names.push(e.file_name().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            }
        }
    }
    assert!(
        !names
            .iter()
            .any(|n| n == "__pycache__" || n.ends_with(".pyc")),
        "{names:?}"
    );
}
