#!/usr/bin/env bash
# Installs the C API under PREFIX (default /usr/local): lib/libringrelay.a,
# lib/libringrelay.so.0.1.0 with its soname link libringrelay.so.0 and the link
# libringrelay.so, include/ringrelay.h and lib/pkgconfig/ringrelay.pc. Builds first.
# Usage: ffi/install.sh [PREFIX]
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-/usr/local}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
cargo build --release -p ringrelay-ffi
install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 644 target/release/libringrelay_ffi.a "$prefix/lib/libringrelay.a"
install -m 755 target/release/libringrelay_ffi.so "$prefix/lib/libringrelay.so.$version"
ln -sf "libringrelay.so.$version" "$prefix/lib/libringrelay.so.0"
ln -sf libringrelay.so.0 "$prefix/lib/libringrelay.so"
install -m 644 include/ringrelay.h "$prefix/include/ringrelay.h"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" ffi/ringrelay.pc.in \
  > "$prefix/lib/pkgconfig/ringrelay.pc"
echo "installed the C API under $prefix (pkg-config --cflags --libs ringrelay)"
