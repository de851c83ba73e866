//! Stamps the library with its git commit (`ringrelay_version()`) and gives the shared library
//! the soname C programs link against, `libringrelay.so.0` (the major ABI version: it changes
//! only when a change breaks programs built against an older header).

include!("../build_support/commit_stamp.rs");

fn main() {
    stamp_commit();
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libringrelay.so.0");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../build_support/commit_stamp.rs");
}
