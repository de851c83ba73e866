#!/usr/bin/env bash
# ringrelay's NATS front against nats-server, with the same NATS client (the load generator's
# NATS driver): one ringrelay serving its native port and its NATS port (--nats-listen), and
# nats-server, both pinned to CPU 0; the load generator on CPU 1. Each workload runs RUNS
# times against three targets back to back: ringrelay native, ringrelay over NATS, and
# nats-server; prints the median of each figure and of the per-run ratios. Needs nats-server
# (apt-get install nats-server) and a release build. Every run is bounded by --count.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
RELAY_CPU=${RELAY_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
NATS_PORT=${NATS_PORT:-4222}
FRONT_PORT=${FRONT_PORT:-4223}
RELAY_PORT=${RELAY_PORT:-17400}
BIN=./target/release/ringrelay
OUT=${OUT:-target/compare_nats_front.jsonl}

command -v nats-server >/dev/null || { echo "nats-server not installed (apt-get install nats-server)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  return 1
}

relay_config=$(mktemp)
# Same per-connection outbound bound as nats-server's default max_pending (64 MiB).
printf 'pending_bytes_max = 67108864\n' > "$relay_config"
taskset -c "$RELAY_CPU" nats-server -a 127.0.0.1 -p "$NATS_PORT" >/dev/null 2>&1 &
nats_pid=$!
"$BIN" serve --cpus "$RELAY_CPU" --config "$relay_config" --listen "127.0.0.1:$RELAY_PORT" \
  --nats-listen "127.0.0.1:$FRONT_PORT" >/dev/null 2>&1 &
relay_pid=$!
trap 'kill $nats_pid $relay_pid 2>/dev/null || true; rm -f "$relay_config"' EXIT
wait_port "$NATS_PORT"
wait_port "$FRONT_PORT"

: > "$OUT"
workloads=(
  "unicast-16    --scenario unicast --size 16   --count 2000000"
  "unicast-1024  --scenario unicast --size 1024 --count 1000000"
  "fanout10-16   --scenario fanout  --size 16   --subscribers 10 --count 500000"
)
for w in "${workloads[@]}"; do
  name=${w%% *}
  args=${w#* }
  for run in $(seq "$RUNS"); do
    for target in front nats-server; do
      port=$FRONT_PORT
      [ "$target" = nats-server ] && port=$NATS_PORT
      echo "== $name run $run $target" >&2
      # The native run of each invocation is kept once (from the first); its NATS run is the
      # target's figure.
      # shellcheck disable=SC2086
      taskset -c "$LOADGEN_CPU" "$BIN" bench --server "127.0.0.1:$RELAY_PORT" $args \
        --compare "nats://127.0.0.1:$port" --json 2>/dev/null \
        | sed "s/^{/{\"workload\":\"$name\",\"run\":$run,\"via\":\"$target\",/" >> "$OUT" \
        || echo "run failed: $name run $run $target" >&2
    done
  done
done

python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def pick(w, run, via, target):
    rs = [r for r in rows if r["workload"] == w and r["run"] == run and r["via"] == via and r.get("target") == target]
    return rs[0] if rs else None
print(f"{'workload':14} {'target':22} {'msgs/s':>12} {'deliv/s':>12} {'cpu-s':>6} {'deliv/cpu-s':>12}")
for w in dict.fromkeys(r["workload"] for r in rows):
    runs = sorted({r["run"] for r in rows if r["workload"] == w})
    series = {
        "ringrelay native": [pick(w, r, "front", "ringrelay") for r in runs],
        "ringrelay NATS front": [pick(w, r, "front", "nats") for r in runs],
        "nats-server": [pick(w, r, "nats-server", "nats") for r in runs],
    }
    for name, rs in series.items():
        rs = [r for r in rs if r]
        m = {k: med([r.get(k) for r in rs]) for k in ("msgs_per_s", "deliveries_per_s", "server_cpu_s", "deliveries_per_cpu_s")}
        f = lambda x, d=0: "-" if x is None else f"{x:,.{d}f}"
        print(f"{w:14} {name:22} {f(m['msgs_per_s']):>12} {f(m['deliveries_per_s']):>12} {f(m['server_cpu_s'],2):>6} {f(m['deliveries_per_cpu_s']):>12}")
    ratios = []
    for a, b in zip(series["ringrelay NATS front"], series["nats-server"]):
        if a and b and b["deliveries_per_s"]:
            ratios.append(a["deliveries_per_s"] / b["deliveries_per_s"])
    if ratios:
        print(f"{w:14} NATS front / nats-server deliveries/s x{med(ratios):.2f} (median of {len(ratios)} per-run ratios)")
PY
