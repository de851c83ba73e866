//! What the C tests share: the staged C library (`target/<profile>/capi/`), compiling a C
//! program against it under AddressSanitizer and UndefinedBehaviorSanitizer, and running it with
//! a bound on its time.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Longest a C test program may run.
pub const RUN_TIME_MAX: Duration = Duration::from_secs(120);

/// `target/<profile>`: the directory this test binary's `deps/` lives in.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps")
        .to_path_buf()
}

pub fn workspace_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The C library as users get it: `capi/lib/libringrelay.a` and `libringrelay.so` (with its
/// soname link), copied from the `libringrelay_ffi.*` cargo built for this test run.
pub struct Staged {
    pub lib_dir: PathBuf,
    pub include_dir: PathBuf,
}

pub fn staged() -> &'static Staged {
    static STAGED: OnceLock<Staged> = OnceLock::new();
    STAGED.get_or_init(|| {
        let profile = profile_dir();
        let lib_dir = profile.join("capi/lib");
        std::fs::create_dir_all(&lib_dir).unwrap();
        for (from, to) in [
            ("libringrelay_ffi.a", "libringrelay.a"),
            ("libringrelay_ffi.so", "libringrelay.so.0"),
        ] {
            // `cargo test` leaves the build it made for the tests (feature `test-hooks` on) in
            // deps/; only `cargo build` copies one up to target/<profile>/.
            let source = profile.join("deps").join(from);
            assert!(
                source.exists(),
                "{} is missing: cargo builds it with the tests",
                source.display()
            );
            let tmp = lib_dir.join(format!("{to}.tmp"));
            std::fs::copy(&source, &tmp).unwrap();
            std::fs::rename(&tmp, lib_dir.join(to)).unwrap();
        }
        let link = lib_dir.join("libringrelay.so");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("libringrelay.so.0", &link).unwrap();
        // The header and the pkg-config file, as an install lays them out.
        let prefix = profile.join("capi");
        std::fs::create_dir_all(prefix.join("include")).unwrap();
        std::fs::copy(
            workspace_dir().join("include/ringrelay.h"),
            prefix.join("include/ringrelay.h"),
        )
        .unwrap();
        let template =
            std::fs::read_to_string(workspace_dir().join("ffi/ringrelay.pc.in")).unwrap();
        let pc = template
            .replace("@PREFIX@", &prefix.to_string_lossy())
            .replace("@VERSION@", env!("CARGO_PKG_VERSION"));
        std::fs::create_dir_all(lib_dir.join("pkgconfig")).unwrap();
        std::fs::write(lib_dir.join("pkgconfig/ringrelay.pc"), pc).unwrap();
        Staged {
            lib_dir,
            include_dir: workspace_dir().join("include"),
        }
    })
}

/// What a static Rust library needs from the system when linked into a C program, as rustc
/// prints it (`-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc` on glibc).
pub fn native_static_libs() -> &'static [String] {
    static LIBS: OnceLock<Vec<String>> = OnceLock::new();
    LIBS.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("native-static-libs");
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("empty.rs");
        std::fs::write(&src, "").unwrap();
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        let out = Command::new(rustc)
            .args([
                "--crate-type",
                "staticlib",
                "--print",
                "native-static-libs",
                "-o",
            ])
            .arg(dir.join("libempty.a"))
            .arg(&src)
            .output()
            .expect("rustc runs");
        let text = String::from_utf8_lossy(&out.stderr);
        let line = text
            .lines()
            .find_map(|l| l.split_once("native-static-libs: ").map(|(_, libs)| libs))
            .unwrap_or_else(|| panic!("rustc printed no native-static-libs:\n{text}"));
        line.split_whitespace().map(String::from).collect()
    })
}

/// The C compiler (`cc`, or `CC`), or `None` with a printed SKIP reason when there is none.
pub fn c_compiler(name: &str) -> Option<String> {
    let var = if name == "c++" { "CXX" } else { "CC" };
    let compiler = std::env::var(var).unwrap_or_else(|_| name.to_string());
    match Command::new(&compiler).arg("--version").output() {
        Ok(out) if out.status.success() => Some(compiler),
        _ => {
            eprintln!("SKIP: no C compiler ({compiler}); the C tests did not run");
            None
        }
    }
}

/// Compiles `sources` (paths under `ffi/tests/c/` or the workspace) into `name`, linked
/// statically against libringrelay.a, with every warning an error and under ASan and UBSan.
/// `None` when there is no compiler.
pub fn build_c(name: &str, sources: &[PathBuf], compiler: &str, std: &str) -> Option<PathBuf> {
    let compiler = c_compiler(compiler)?;
    let staged = staged();
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("c");
    std::fs::create_dir_all(&out_dir).unwrap();
    let exe = out_dir.join(name);
    let output = Command::new(&compiler)
        .arg(format!("-std={std}"))
        .args(["-Wall", "-Wextra", "-Werror", "-pedantic", "-g", "-O1"])
        .args([
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=undefined",
        ])
        .arg("-fno-omit-frame-pointer")
        .arg("-I")
        .arg(&staged.include_dir)
        .arg("-I")
        .arg(workspace_dir().join("ffi/tests/c"))
        .args(sources)
        .arg(staged.lib_dir.join("libringrelay.a"))
        .args(native_static_libs())
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("the compiler runs");
    assert!(
        output.status.success(),
        "{compiler} failed on {name}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(exe)
}

pub fn test_source(file: &str) -> PathBuf {
    workspace_dir().join("ffi/tests/c").join(file)
}

/// `exe` with `args`, under the sanitizers' options (leak checking on), output piped.
pub fn sanitized(exe: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(exe);
    command
        .args(args)
        .env(
            "ASAN_OPTIONS",
            "detect_leaks=1:abort_on_error=0:exitcode=23",
        )
        .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `exe` with `args` under the sanitizers' options (leak checking on), killed after
/// [`RUN_TIME_MAX`]; returns its output.
pub fn run(exe: &Path, args: &[&str]) -> Output {
    let child = sanitized(exe, args)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    finish(child)
}

/// Waits for `child` to exit, killing it after [`RUN_TIME_MAX`]; returns its output.
pub fn finish(mut child: std::process::Child) -> Output {
    let started = Instant::now();
    // A child process has no completion to await from the standard library but its exit:
    // poll it, coarsely, up to the bound.
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > RUN_TIME_MAX {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Asserts that `out` is a clean exit that printed `PASS <name>`.
pub fn assert_passed(out: &Output, name: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(&format!("PASS {name}")),
        "{name} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
}

/// The lines a child prints, read on a thread of their own so a test can wait for one.
pub struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Lines {
    pub fn of(out: impl std::io::Read + Send + 'static) -> Lines {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits (at most [`RUN_TIME_MAX`]) for a line that `wanted` accepts; returns it.
    pub fn until(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + RUN_TIME_MAX;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no line {what} came; lines so far: {:?}", self.seen),
            }
        }
    }

    /// Every line until the child closes its output.
    pub fn rest(mut self) -> Vec<String> {
        while let Ok(line) = self.rx.recv_timeout(RUN_TIME_MAX) {
            self.seen.push(line);
        }
        self.seen
    }
}
