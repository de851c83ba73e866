//! Stamps the binary with the git commit it was built from (`ringrelay --version`).

include!("../build_support/commit_stamp.rs");

fn main() {
    stamp_commit();
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../build_support/commit_stamp.rs");
}
