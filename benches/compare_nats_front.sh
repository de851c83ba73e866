#!/usr/bin/env bash
# ringrelay's NATS front against nats-server, with the same NATS client (the load generator's
# NATS driver): one ringrelay serving its native port and its NATS port (--nats-listen), and
# nats-server, both pinned to CPU 0; the load generator on CPU 1. Each workload runs RUNS
# times against three targets back to back: ringrelay native, ringrelay over NATS, and
# nats-server; prints the median of each figure and of the per-run ratios. Needs nats-server
# (apt-get install nats-server) and a release build. Every run is bounded by --count.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
RELAY_CPU=${RELAY_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
NATS_PORT=${NATS_PORT:-4222}
FRONT_PORT=${FRONT_PORT:-4223}
RELAY_PORT=${RELAY_PORT:-17400}
BIN=./target/release/ringrelay
OUT=${OUT:-target/compare_nats_front.jsonl}

need_nats_server nats-server
need_built "$BIN" "cargo build --release"

relay_config=$(mktemp)
remove_on_exit "$relay_config"
# Same per-connection outbound bound as nats-server's default max_pending (64 MiB).
write_relay_config "$relay_config"
start_nats_server "$RELAY_CPU" "$NATS_PORT" /dev/null
start_bg /dev/null "$BIN" serve --cpus "$RELAY_CPU" --config "$relay_config" --listen "127.0.0.1:$RELAY_PORT" \
  --nats-listen "127.0.0.1:$FRONT_PORT"
wait_port "$NATS_PORT"
wait_port "$FRONT_PORT"

: > "$OUT"
workloads=(
  "unicast-16    --scenario unicast --size 16   --count 2000000"
  "unicast-1024  --scenario unicast --size 1024 --count 1000000"
  "fanout10-16   --scenario fanout  --size 16   --subscribers 10 --count 500000"
)
# run_one NAME RUN ARGS...: the workload against ringrelay's NATS front, then nats-server.
run_one() {
  local name=$1 run=$2 target port
  shift 2
  for target in front nats-server; do
    port=$FRONT_PORT
    [ "$target" = nats-server ] && port=$NATS_PORT
    echo "== $name run $run $target" >&2
    # The native run of each invocation is kept once (from the first); its NATS run is the
    # target's figure.
    taskset -c "$LOADGEN_CPU" "$BIN" bench --server "127.0.0.1:$RELAY_PORT" "$@" \
      --compare "nats://127.0.0.1:$port" --json 2>/dev/null \
      | tag_rows workload "$name" run "$run" via "$target" >> "$OUT" \
      || echo "run failed: $name run $run $target" >&2
  done
}
for_each_run run_one "${workloads[@]}"

summarize "$OUT" <<'PY'
def pick(w, run, via, target):
    return first(workload=w, run=run, via=via, target=target)
print(f"{'workload':14} {'target':22} {'msgs/s':>12} {'deliv/s':>12} {'cpu-s':>6} {'deliv/cpu-s':>12}")
for w in workload_names():
    runs = runs_of(w)
    series = {
        "ringrelay native": [pick(w, r, "front", "ringrelay") for r in runs],
        "ringrelay NATS front": [pick(w, r, "front", "nats") for r in runs],
        "nats-server": [pick(w, r, "nats-server", "nats") for r in runs],
    }
    for name, rs in series.items():
        rs = [r for r in rs if r]
        m = {k: med([r.get(k) for r in rs]) for k in ("msgs_per_s", "deliveries_per_s", "server_cpu_s", "deliveries_per_cpu_s")}
        print(f"{w:14} {name:22} {fmt(m['msgs_per_s']):>12} {fmt(m['deliveries_per_s']):>12} {fmt(m['server_cpu_s'],2):>6} {fmt(m['deliveries_per_cpu_s']):>12}")
    deliveries = lambda rs: {i: r["deliveries_per_s"] for i, r in enumerate(rs) if r}
    ratios = paired(deliveries(series["ringrelay NATS front"]), deliveries(series["nats-server"]))
    if ratios:
        print(f"{w:14} NATS front / nats-server deliveries/s x{med(ratios):.2f} (median of {len(ratios)} per-run ratios)")
PY
