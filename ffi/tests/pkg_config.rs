//! `ringrelay.pc`: its `Libs.private` is what rustc says a static Rust library needs, and a C
//! program built with nothing but `pkg-config --cflags --libs --static ringrelay` links
//! against the static library and runs.

mod support;

use std::process::Command;

fn libs_private() -> Vec<String> {
    let template =
        std::fs::read_to_string(support::workspace_dir().join("ffi/ringrelay.pc.in")).unwrap();
    template
        .lines()
        .find_map(|l| l.strip_prefix("Libs.private:"))
        .expect("ringrelay.pc.in has a Libs.private line")
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[test]
fn libs_private_matches_rustc_native_static_libs() {
    assert_eq!(
        libs_private(),
        support::native_static_libs(),
        "ffi/ringrelay.pc.in's Libs.private differs from `rustc --print native-static-libs`"
    );
}

#[test]
fn a_c_program_builds_with_pkg_config_flags_alone_and_runs() {
    let Some(cc) = support::c_compiler("cc") else {
        return;
    };
    let staged = support::staged();
    let flags = match Command::new("pkg-config")
        .args(["--cflags", "--libs", "--static", "ringrelay"])
        .env("PKG_CONFIG_PATH", staged.lib_dir.join("pkgconfig"))
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8(out.stdout).unwrap(),
        Ok(out) => panic!("pkg-config: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => {
            eprintln!("SKIP: no pkg-config ({e}); ringrelay.pc was not tried");
            return;
        }
    };
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pkg_config");
    std::fs::create_dir_all(&dir).unwrap();
    let source = support::test_source("version.c");
    let exe = dir.join("version");
    // The libdir holds libringrelay.so and .a, and the linker prefers the .so for
    // -lringrelay: name the archive, so the link is the static one Libs.private serves.
    let out = Command::new(&cc)
        .arg(&source)
        .arg("-o")
        .arg(&exe)
        .args(flags.split_whitespace().map(|f| match f {
            "-lringrelay" => "-l:libringrelay.a",
            other => other,
        }))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cc with `{flags}` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().unwrap();
    assert!(run.status.success(), "the program failed: {run:?}");
    assert!(String::from_utf8_lossy(&run.stdout).starts_with("ringrelay "));
}
