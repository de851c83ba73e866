//! The checked-in `include/ringrelay.h` is exactly what cbindgen makes of this crate today, and
//! it compiles as C11 and C++17 with every warning an error.
//!
//! To write it anew after changing the API: `RINGRELAY_BLESS_HEADER=1 cargo test -p
//! ringrelay-ffi --test header`, then commit the header.

use std::path::PathBuf;
use std::process::Command;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn header_path() -> PathBuf {
    crate_dir().join("../include/ringrelay.h")
}

/// The version macros, from this crate's version, placed after the includes.
fn version_macros() -> String {
    let (major, minor, patch) = (
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
    );
    let number = major.parse::<u32>().unwrap() * 1_000_000
        + minor.parse::<u32>().unwrap() * 1_000
        + patch.parse::<u32>().unwrap();
    format!(
        "/** The version of this header; `ringrelay_version_number()` is the library's. */\n\
         #define RINGRELAY_VERSION_MAJOR {major}\n\
         #define RINGRELAY_VERSION_MINOR {minor}\n\
         #define RINGRELAY_VERSION_PATCH {patch}\n\
         /** `major * 1000000 + minor * 1000 + patch`. */\n\
         #define RINGRELAY_VERSION_NUMBER {number}\n"
    )
}

fn generate() -> String {
    let mut config = cbindgen::Config::from_file(crate_dir().join("cbindgen.toml"))
        .expect("ffi/cbindgen.toml parses");
    config.after_includes = Some(version_macros());
    let bindings = cbindgen::Builder::new()
        .with_crate(crate_dir())
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

#[test]
fn checked_in_header_is_what_cbindgen_generates() {
    let fresh = generate();
    let path = header_path();
    if std::env::var_os("RINGRELAY_BLESS_HEADER").is_some() {
        std::fs::write(&path, &fresh).expect("write include/ringrelay.h");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != fresh {
        let first_difference = checked_in
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| checked_in.lines().count().min(fresh.lines().count()));
        panic!(
            "include/ringrelay.h differs from what cbindgen generates (first at line {}); \
             run `RINGRELAY_BLESS_HEADER=1 cargo test -p ringrelay-ffi --test header` and \
             commit the header",
            first_difference + 1
        );
    }
}

/// Compiles a translation unit that includes the header with `compiler` and `flags`.
fn compiles(compiler: &str, flags: &[&str], source: &str, ext: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let file = dir.join(format!("header_check_{compiler}.{ext}"));
    std::fs::write(&file, source).unwrap();
    let include = header_path().parent().unwrap().to_path_buf();
    let out = Command::new(compiler)
        .args(flags)
        .arg("-I")
        .arg(&include)
        .args(["-fsyntax-only"])
        .arg(&file)
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIP: no {compiler} on this machine ({e}); the header was not compiled");
            return;
        }
        Err(e) => panic!("cannot run {compiler}: {e}"),
    };
    assert!(
        out.status.success(),
        "{compiler} {flags:?} rejects include/ringrelay.h:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const USES_THE_HEADER: &str = r#"
#include "ringrelay.h"
int main(void) {
    ringrelay_client_options opts;
    ringrelay_client_options_init(&opts, sizeof opts);
    ringrelay_status s = RINGRELAY_STATUS_OK;
    (void)ringrelay_status_str(s);
    return (int)(RINGRELAY_VERSION_NUMBER - RINGRELAY_VERSION_NUMBER);
}
"#;

#[test]
fn header_compiles_as_c11_with_warnings_as_errors() {
    compiles(
        "cc",
        &["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"],
        USES_THE_HEADER,
        "c",
    );
}

#[test]
fn header_compiles_as_cpp17_with_warnings_as_errors() {
    compiles(
        "c++",
        &["-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic"],
        USES_THE_HEADER,
        "cpp",
    );
}
