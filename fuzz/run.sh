#!/usr/bin/env bash
# Builds the fuzz targets once, then runs each for SECONDS_PER_TARGET seconds (default 60).
# Exits non-zero if any target crashed, printing the crashing input's path.
#
#   fuzz/run.sh [SECONDS_PER_TARGET]
#
# Seeds are read from corpus/<target>/ (committed); what a run discovers is written to
# corpus-run/<target>/ (ignored by git), crashes to artifacts/<target>/ (ignored).
set -euo pipefail

secs="${1:-60}"
case "$secs" in
  '' | *[!0-9]*)
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
    ;;
esac
cd "$(dirname "$0")"

# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, ...); this lets a stable toolchain
# accept them.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

targets=(client_codec stream_decoder link_codec nats_codec credentials tls_record)
echo "fuzz: building ${targets[*]}"
cargo fuzz build

failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus-run/$t" "artifacts/$t"
  marker=$(mktemp)
  echo "fuzz: running $t for ${secs}s"
  if ! cargo fuzz run "$t" "corpus-run/$t" "corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -print_final_stats=1; then
    failed+=("$t")
    found=0
    while IFS= read -r artifact; do
      echo "fuzz: $t crashed; input: $PWD/$artifact" >&2
      echo "fuzz: reproduce: (cd $PWD && RUSTC_BOOTSTRAP=1 cargo fuzz run $t $artifact)" >&2
      found=1
    done < <(find "artifacts/$t" -type f -newer "$marker")
    if [ "$found" = 0 ]; then
      echo "fuzz: $t failed without writing an artifact (see the output above)" >&2
    fi
  fi
  rm -f "$marker"
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${secs}s each without a crash"
