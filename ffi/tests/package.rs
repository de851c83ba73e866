//! The C API's Debian packages (`ffi/package-deb.sh`, `[package.metadata.deb]` in
//! ffi/Cargo.toml), taken apart with dpkg-deb: libringrelay0 holds the stripped shared library
//! under its soname; libringrelay-dev the static library, the header, the pkg-config file and
//! the link for `-lringrelay`, and depends on exactly this version of libringrelay0; a C
//! program builds from the extracted packages with pkg-config's flags alone and runs against
//! the packaged shared library.
//!
//! `cargo test` holds the build directory while this runs, so the script packages the
//! libraries cargo built for these tests (`LIB_DIR`, as `support::staged` takes them) and
//! builds nothing. cargo-deb and dpkg-deb must be installed (.ci/run installs cargo-deb): a
//! missing one fails the tests with that instruction. Every child process is bounded by
//! [`support::RUN_TIME_MAX`].

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs `cmd` to its end (bounded); returns its output whatever the exit status.
fn run(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what} (is it installed?): {e}"));
    support::finish(child)
}

/// Runs `cmd`, which must succeed; returns its standard output.
fn ok(cmd: &mut Command) -> String {
    let what = format!("{cmd:?}");
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Packages {
    dev: PathBuf,
    runtime: PathBuf,
    /// Both packages extracted (`dpkg-deb -x`), as they install.
    root: PathBuf,
}

fn packages() -> &'static Packages {
    static PACKAGES: OnceLock<Packages> = OnceLock::new();
    PACKAGES.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let version = run(Command::new(&cargo).args(["deb", "--version"]));
        assert!(
            version.status.success(),
            "cargo-deb is not installed: install it with `cargo install cargo-deb --locked` \
             (.ci/run does)"
        );
        let profile = support::profile_dir();
        let out = profile.join("package-capi-test");
        let _ = std::fs::remove_dir_all(&out);
        ok(Command::new("bash")
            .arg(support::workspace_dir().join("ffi/package-deb.sh"))
            .arg(&out)
            .arg("--fast")
            .env("LIB_DIR", profile.join("deps"))
            .env("CARGO_TARGET_DIR", profile.parent().unwrap())
            .current_dir(support::workspace_dir()));
        let arch = ok(Command::new("dpkg").arg("--print-architecture"));
        let deb = |name: &str| out.join(format!("{name}_{VERSION}_{}.deb", arch.trim()));
        let (dev, runtime, root) = (
            deb("libringrelay-dev"),
            deb("libringrelay0"),
            out.join("root"),
        );
        for package in [&dev, &runtime] {
            ok(Command::new("dpkg-deb").arg("-x").arg(package).arg(&root));
        }
        Packages { dev, runtime, root }
    })
}

/// The package's paths: `(path, link target)` of every file and symlink, none of the
/// directories.
fn contents(deb: &Path) -> BTreeSet<(String, Option<String>)> {
    ok(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .filter(|line| !line.starts_with('d'))
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert!(
                f.len() == 6 || f.len() == 8,
                "odd dpkg-deb -c line {line:?}"
            );
            assert_eq!(f[1], "0/0", "{line}: every path belongs to root");
            let path = f[5].trim_start_matches('.').to_string();
            (path, f.get(7).map(|t| t.to_string()))
        })
        .collect()
}

fn set(entries: &[(&str, Option<&str>)]) -> BTreeSet<(String, Option<String>)> {
    entries
        .iter()
        .map(|(p, l)| (p.to_string(), l.map(str::to_string)))
        .collect()
}

fn field(deb: &Path, name: &str) -> String {
    ok(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name))
        .trim()
        .to_string()
}

#[test]
fn the_packages_hold_the_libraries_the_header_and_the_pkg_config_file() {
    let p = packages();
    assert_eq!(
        contents(&p.runtime),
        set(&[
            ("/usr/lib/libringrelay.so.0", None),
            ("/usr/share/doc/libringrelay0/copyright", None),
        ])
    );
    assert_eq!(
        contents(&p.dev),
        set(&[
            ("/usr/include/ringrelay.h", None),
            ("/usr/lib/libringrelay.a", None),
            ("/usr/lib/libringrelay.so", Some("libringrelay.so.0")),
            ("/usr/lib/pkgconfig/ringrelay.pc", None),
            ("/usr/share/doc/libringrelay-dev/copyright", None),
        ])
    );
    let header = std::fs::read(p.root.join("usr/include/ringrelay.h")).unwrap();
    let source = std::fs::read(support::workspace_dir().join("include/ringrelay.h")).unwrap();
    assert!(
        header == source,
        "the packaged header is not include/ringrelay.h"
    );
    let pc = std::fs::read_to_string(p.root.join("usr/lib/pkgconfig/ringrelay.pc")).unwrap();
    assert!(pc.contains("prefix=/usr\n"), "{pc}");
    assert!(pc.contains(&format!("Version: {VERSION}\n")), "{pc}");
}

#[test]
fn the_dev_package_depends_on_exactly_this_version_of_the_runtime_package() {
    let p = packages();
    assert_eq!(field(&p.dev, "Package"), "libringrelay-dev");
    assert_eq!(field(&p.runtime, "Package"), "libringrelay0");
    for deb in [&p.dev, &p.runtime] {
        assert_eq!(field(deb, "Version"), VERSION);
    }
    assert_eq!(
        field(&p.dev, "Depends"),
        format!("libringrelay0 (= {VERSION})"),
        "ffi/Cargo.toml's depends must name the crate's version"
    );
}

/// The newest `GLIBC_2.N` symbol version `lib` uses, as N.
fn newest_glibc_minor(lib: &Path) -> u32 {
    ok(Command::new("objdump").arg("-T").arg(lib))
        .split("GLIBC_2.")
        .skip(1)
        .filter_map(|rest| {
            let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
            minor.parse().ok()
        })
        .max()
        .expect("the library uses glibc")
}

#[test]
fn the_shared_library_is_stripped_named_by_its_soname_and_its_needs_are_depended_on() {
    let p = packages();
    let lib = p.root.join("usr/lib/libringrelay.so.0");
    let dynamic = ok(Command::new("readelf").arg("-d").arg(&lib));
    assert!(
        dynamic.contains("Library soname: [libringrelay.so.0]"),
        "{dynamic}"
    );
    let sections = ok(Command::new("readelf").arg("-S").arg(&lib));
    assert!(
        !sections.contains(".debug_info"),
        "not stripped: {sections}"
    );
    let depends = field(&p.runtime, "Depends");
    for (needed, package) in [
        ("libc.so.6", "libc6"),
        ("libgcc_s.so.1", "libgcc-s1"),
        ("ld-linux", "libc6"),
    ] {
        if dynamic.contains(needed) {
            assert!(
                depends.contains(package),
                "{needed} needs {package}: {depends}"
            );
        }
    }
    let minor = newest_glibc_minor(&lib);
    assert!(
        depends.contains(&format!("libc6 (>= 2.{minor})")),
        "the library uses GLIBC_2.{minor}: {depends}"
    );
}

#[test]
fn a_c_program_builds_from_the_packages_with_pkg_config_and_runs_on_the_shared_library() {
    let Some(cc) = support::c_compiler("cc") else {
        return;
    };
    let p = packages();
    let flags = ok(Command::new("pkg-config")
        .args(["--cflags", "--libs", "ringrelay"])
        .env("PKG_CONFIG_PATH", p.root.join("usr/lib/pkgconfig"))
        .env("PKG_CONFIG_SYSROOT_DIR", &p.root));
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("package_capi");
    std::fs::create_dir_all(&dir).unwrap();
    let source = support::test_source("version.c");
    let exe = dir.join("version");
    ok(Command::new(&cc)
        .arg(&source)
        .arg("-o")
        .arg(&exe)
        .args(flags.split_whitespace()));
    let needed = ok(Command::new("readelf").arg("-d").arg(&exe));
    assert!(needed.contains("[libringrelay.so.0]"), "{needed}");
    let printed = ok(Command::new(&exe).env("LD_LIBRARY_PATH", p.root.join("usr/lib")));
    assert!(
        printed.starts_with(&format!("ringrelay {VERSION}")),
        "{printed}"
    );
}
