// The commit stamp shared by the build scripts of `cli/` and `ffi/` (each `include!`s this
// file): the git commit a build came from (`ringrelay --version`, `ringrelay_version()`), or
// "unknown commit" when built outside a git checkout (a source tarball, `cargo install` from a
// registry).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

/// Sets `RINGRELAY_BUILD_COMMIT` for the crate being built and reruns on a new commit.
fn stamp_commit() {
    let stamp = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(c) => format!("commit {c}"),
        None => "unknown commit".to_string(),
    };
    println!("cargo:rustc-env=RINGRELAY_BUILD_COMMIT={stamp}");
    // A new commit (HEAD or the branch it names moves) rebuilds the stamp.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        let reference = git(&["symbolic-ref", "-q", "HEAD"]);
        for file in reference.iter().map(String::as_str).chain(["packed-refs"]) {
            let path = format!("{dir}/{file}");
            // A missing file would make cargo run this script on every build.
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}
