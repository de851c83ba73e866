#!/usr/bin/env bash
# Makes the C API's Debian packages in OUTPUT (default target/debian): libringrelay0, the
# shared library, and libringrelay-dev, the static library, header, pkg-config file and the
# libringrelay.so link (ffi/Cargo.toml's [package.metadata.deb]). The release profile keeps
# debug info (86 MB of it in the static library), so stripped copies are staged under
# <target>/release/deb-capi/ first. Needs cargo-deb (`cargo install cargo-deb --locked`) and
# binutils. Usage: ffi/package-deb.sh [OUTPUT [CARGO_DEB_ARGS...]] (`--fast`: lighter compression,
# as the package test uses). LIB_DIR: take libringrelay_ffi.{a,so} from there instead of
# building them (ffi/tests/package.rs, which runs while cargo holds the build directory).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/debian}
shift || true
target=${CARGO_TARGET_DIR:-target}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
lib_dir=${LIB_DIR:-}
if [ -z "$lib_dir" ]; then
  cargo build --release -p ringrelay-ffi
  lib_dir="$target/release"
fi
stage="$target/release/deb-capi"
rm -rf "$stage"
mkdir -p "$stage" "$out"
strip --strip-debug -o "$stage/libringrelay.a" "$lib_dir/libringrelay_ffi.a"
strip --strip-unneeded -o "$stage/libringrelay.so.0" "$lib_dir/libringrelay_ffi.so"
sed -e "s|@PREFIX@|/usr|" -e "s|@VERSION@|$version|" ffi/ringrelay.pc.in >"$stage/ringrelay.pc"
cargo deb -p ringrelay-ffi --no-build --no-strip --output "$out" "$@"
cargo deb -p ringrelay-ffi --no-build --no-strip --variant runtime --output "$out" "$@"
