#!/usr/bin/env bash
# Measures the copy path against the zero-copy path for one-to-one messages of growing size, to
# choose `zero_copy_threshold_bytes`. The relay (one worker) is pinned to RELAY_CPU, the load
# generator to LOADGEN_CPU; each (path, size) is run RUNS times and the median is printed.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
RELAY_CPU=${RELAY_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
SIZES=${SIZES:-"4096 8192 16384 32768 65536 131072 262144"}
BIN=./target/release/ringrelay
need_built "$BIN" "cargo build --release"
work=$(mktemp -d)
remove_on_exit "$work"

# The band's top is the largest frame (zero_copy_max_bytes also sizes the memory budget, so it
# cannot be "infinite"). threshold = max_frame_bytes: never zero-copy for the sizes measured
# (every payload is copied once into the send buffer); threshold 1 KiB: every frame that does
# not fit the current receive buffer goes zero-copy.
max_frame=${MAX_FRAME_BYTES:-4194304}
for path in "copy:$max_frame" zerocopy:1024; do
  name=${path%%:*}
  # A 256 MiB per-connection bound so a load generator that falls behind (its sender and
  # receiver share one CPU) is not closed as a slow consumer mid-run.
  printf 'zero_copy_threshold_bytes = %s\nzero_copy_max_bytes = %s\npending_bytes_max = 268435456\nmax_frame_bytes = %s\n' \
    "${path#*:}" "$max_frame" "$max_frame" > "$work/relay.toml"
  taskset -c "$RELAY_CPU" "$BIN" serve --listen 127.0.0.1:0 --cpus "$RELAY_CPU" --config "$work/relay.toml" \
    > "$work/serve.out" 2>/dev/null &
  relay_pid=$!
  kill_on_exit "$relay_pid"
  for _ in $(seq 100); do grep -q '^listening ' "$work/serve.out" && break; sleep 0.05; done
  addr=$(sed -n 's/^listening //p' "$work/serve.out")
  for size in $SIZES; do
    count=$(( 2000000000 / size )); [ "$count" -gt 200000 ] && count=200000
    for run in $(seq "$RUNS"); do
      taskset -c "$LOADGEN_CPU" "$BIN" bench --server "$addr" --scenario unicast --size "$size" \
        --count "$count" --json 2>/dev/null | tag_rows path "$name" run "$run" >> "$work/out.jsonl" \
        || echo "run failed: $name size $size run $run" >&2
    done
  done
  stop "$relay_pid"
done

summarize "$work/out.jsonl" <<'PY'
rows = [r for r in rows if "target" in r]
print(f"{'size':>8} {'path':9} {'msgs/s':>10} {'MB/s':>8} {'relay cpu us/msg':>17}")
for size in sorted({r["size"] for r in rows}):
    for path in ("copy", "zerocopy"):
        rs = [r for r in rows if r["size"] == size and r["path"] == path]
        if not rs: continue
        mps = statistics.median(r["msgs_per_s"] for r in rs)
        cpu = [r["server_cpu_s"] * 1e6 / r["received"] for r in rs if r.get("server_cpu_s") and r["received"]]
        print(f"{size:>8} {path:9} {mps:>10,.0f} {mps*size/1e6:>8,.0f} {statistics.median(cpu) if cpu else float('nan'):>17.2f}")
PY
