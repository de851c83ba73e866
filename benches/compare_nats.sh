#!/usr/bin/env bash
# Runs the issue's speed matrix: ringrelay (one worker pinned to CPU 0) against nats-server
# (pinned to CPU 0), load generator on CPU 1, each workload RUNS times, and prints the median
# of each figure and of the ringrelay/nats ratio. Needs nats-server (apt-get install nats-server)
# and a release build (cargo build --release). Every run is bounded by --count / --duration-s.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
RELAY_CPU=${RELAY_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
NATS_PORT=${NATS_PORT:-4222}
BIN=./target/release/ringrelay
OUT=${OUT:-target/compare_nats.jsonl}

need_nats_server nats-server
need_built "$BIN" "cargo build --release"

# JetStream on (-js) for the acknowledged workloads: memory streams only, so its store
# directory stays empty; core NATS publish/subscribe does not go through it.
js_store=$(mktemp -d)
remove_on_exit "$js_store"
start_nats_server "$RELAY_CPU" "$NATS_PORT" /dev/null -js -sd "$js_store"
wait_port "$NATS_PORT" 50 || true

: > "$OUT"
# Same per-connection outbound bound as nats-server's default max_pending (64 MiB), so neither
# server closes the load generator's receiver as a slow consumer when it falls behind.
relay_config=$(mktemp)
remove_on_exit "$relay_config"
write_relay_config "$relay_config"
workloads=(
  "unicast-16    --scenario unicast --size 16   --count 5000000"
  "unicast-128   --scenario unicast --size 128  --count 5000000"
  "unicast-1024  --scenario unicast --size 1024 --count 2000000"
  "fanout10-16   --scenario fanout  --size 16   --subscribers 10 --count 1000000"
  "latency-128   --scenario latency --size 128  --rate 100000 --duration-s 5"
  "acked-16      --ack --size 16   --count 2000000"
  "acked-1024    --ack --size 1024 --count 1000000"
)
# WORKLOADS=acked runs only the workloads whose name starts with it.
mapfile -t workloads < <(select_workloads "${workloads[@]}")

# run_one NAME RUN ARGS...: one bench run, both targets back to back.
run_one() {
  local name=$1 run=$2
  shift 2
  echo "== $name run $run" >&2
  taskset -c "$LOADGEN_CPU" "$BIN" bench --relay-cpus "$RELAY_CPU" --relay-config "$relay_config" "$@" \
    --compare "nats://127.0.0.1:$NATS_PORT" --json 2>/dev/null \
    | tag_rows workload "$name" run "$run" >> "$OUT" \
    || echo "run failed: $name run $run" >&2
}
for_each_run run_one "${workloads[@]}"

summarize "$OUT" <<'PY'
print(f"{'workload':14} {'target':9} {'msgs/s':>12} {'deliv/s':>12} {'p50 us':>8} {'p99 us':>9} {'p99.9 us':>9} {'cpu-s':>6} {'deliv/cpu-s':>12}")
for w in workload_names():
    med_by = {}
    for t in ("ringrelay", "nats"):
        rs = [r for r in rows if r["workload"] == w and r.get("target") == t]
        m = {k: med([r.get(k) for r in rs]) for k in ("msgs_per_s", "deliveries_per_s", "p50_us", "p99_us", "p999_us", "server_cpu_s", "deliveries_per_cpu_s")}
        med_by[t] = m
        print(f"{w:14} {t:9} {fmt(m['msgs_per_s']):>12} {fmt(m['deliveries_per_s']):>12} {fmt(m['p50_us'],1):>8} {fmt(m['p99_us'],1):>9} {fmt(m['p999_us'],1):>9} {fmt(m['server_cpu_s'],2):>6} {fmt(m['deliveries_per_cpu_s']):>12}")
    # Median of the per-run ratios (each run measured both targets back to back).
    ratios = []
    for run in runs_of(w):
        a = first(workload=w, run=run, target="ringrelay")
        b = first(workload=w, run=run, target="nats")
        if a and b and b["deliveries_per_s"]:
            ratios.append((a["deliveries_per_s"] / b["deliveries_per_s"],
                           (a["p99_us"] / b["p99_us"]) if a.get("p99_us") and b.get("p99_us") else None,
                           (a["p999_us"] / b["p999_us"]) if a.get("p999_us") and b.get("p999_us") else None))
    if ratios:
        print(f"{w:14} ratio     deliveries/s x{med([r[0] for r in ratios]):.2f}"
              + (f"  p99 x{med([r[1] for r in ratios]):.2f}  p99.9 x{med([r[2] for r in ratios]):.2f}" if ratios[0][1] else "")
              + f"  (median of {len(ratios)} per-run ratios)")
# Acknowledged against best effort, ringrelay only (the issue's 50 % and 70 % bars).
for acked, plain in (("acked-16", "unicast-16"), ("acked-1024", "unicast-1024")):
    a = med([r["msgs_per_s"] for r in rows if r["workload"] == acked and r.get("target") == "ringrelay"])
    b = med([r["msgs_per_s"] for r in rows if r["workload"] == plain and r.get("target") == "ringrelay"])
    if a and b:
        print(f"ringrelay {acked} / {plain}: {a / b:.1%} of best-effort msgs/s")
PY
