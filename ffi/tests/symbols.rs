//! The shared library exports the C API and nothing else: every dynamic symbol it defines is a
//! `ringrelay_*` function, and every function the header declares is among them.

mod support;

use std::collections::BTreeSet;
use std::process::Command;

fn exported() -> Option<BTreeSet<String>> {
    let lib = support::staged().lib_dir.join("libringrelay.so.0");
    let out = match Command::new("nm")
        .args(["-D", "--defined-only", "--format=posix"])
        .arg(&lib)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("SKIP: cannot run nm ({e}); the exported symbols were not checked");
            return None;
        }
    };
    assert!(out.status.success(), "nm failed on {}", lib.display());
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(String::from)
            .collect(),
    )
}

/// Function names the header declares (`<type> ringrelay_x(` at the start of a line).
fn declared() -> BTreeSet<String> {
    let header = std::fs::read_to_string(support::workspace_dir().join("include/ringrelay.h"))
        .expect("include/ringrelay.h exists");
    header
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with("typedef") && !l.starts_with('#'))
        .filter_map(|l| l.split_once('(').map(|(before, _)| before))
        .filter_map(|l| l.split_whitespace().last())
        .map(|name| name.trim_start_matches('*').to_string())
        .filter(|name| name.starts_with("ringrelay_"))
        .collect()
}

#[test]
fn shared_library_exports_only_ringrelay_symbols() {
    let Some(symbols) = exported() else { return };
    let strays: Vec<&String> = symbols
        .iter()
        .filter(|s| !s.starts_with("ringrelay_"))
        .collect();
    assert!(
        strays.is_empty(),
        "exported symbols outside ringrelay_*: {strays:?}"
    );
}

#[test]
fn every_function_in_the_header_is_exported() {
    let Some(symbols) = exported() else { return };
    let declared = declared();
    assert!(
        declared.len() >= 20,
        "the header parse found only {declared:?}"
    );
    let missing: Vec<&String> = declared.difference(&symbols).collect();
    assert!(missing.is_empty(), "declared but not exported: {missing:?}");
}

#[test]
fn shared_library_soname_is_the_major_abi_version() {
    let lib = support::staged().lib_dir.join("libringrelay.so.0");
    let Ok(out) = Command::new("readelf").arg("-d").arg(&lib).output() else {
        eprintln!("SKIP: no readelf; the soname was not checked");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Library soname: [libringrelay.so.0]"),
        "soname of {}:\n{text}",
        lib.display()
    );
}
