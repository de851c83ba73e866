#!/usr/bin/env bash
# Cross-node speed against nats-server: two ringrelay nodes of one cluster (one worker each)
# and two nats-servers joined by a route, all four pinned to CPU 0; the load generator on CPU 1
# sends on the first node and receives on the second. Workloads: one-to-one 16 B and fan-out to
# 10 subscribers 16 B. Each runs RUNS times (default 3); the table shows the median of each
# figure and the median of the per-run ringrelay/nats ratios. Builds nothing: needs
# target/release/ringrelay (cargo build --release) and nats-server. Every run is bounded by
# --count, --duration-s and `timeout`; the servers are stopped on every exit path.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
# Ports: relay clients, relay cluster links, relay metrics, nats clients, nats routes.
RELAY_PORT_1=${RELAY_PORT_1:-17401}
RELAY_PORT_2=${RELAY_PORT_2:-17402}
CLUSTER_PORT_1=${CLUSTER_PORT_1:-17501}
CLUSTER_PORT_2=${CLUSTER_PORT_2:-17502}
METRICS_PORT_1=${METRICS_PORT_1:-17601}
METRICS_PORT_2=${METRICS_PORT_2:-17602}
NATS_PORT_1=${NATS_PORT_1:-14222}
NATS_PORT_2=${NATS_PORT_2:-14223}
ROUTE_PORT_1=${ROUTE_PORT_1:-16222}
ROUTE_PORT_2=${ROUTE_PORT_2:-16223}
COUNT_ONE=${COUNT_ONE:-3000000}
COUNT_FANOUT=${COUNT_FANOUT:-500000}
DURATION_S=${DURATION_S:-20}
# Hard bound on one bench invocation (both targets, setup and probing included).
RUN_TIMEOUT_S=${RUN_TIMEOUT_S:-150}
# Seconds allowed for the servers to come up (and the relay nodes to report ready).
STARTUP_TIMEOUT_S=${STARTUP_TIMEOUT_S:-20}
BIN=./target/release/ringrelay
NATS_SERVER=${NATS_SERVER:-nats-server}
OUT=${OUT:-target/compare_nats_cluster.jsonl}
SECRET=bench-cluster-secret-$$

command -v "$NATS_SERVER" >/dev/null || { echo "nats-server not installed (apt-get install nats-server)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed for the summary" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is needed to poll /healthz" >&2; exit 1; }
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
"$BIN" serve --help | grep -q -- '--node-id' || { echo "$BIN has no cluster support (serve --node-id)" >&2; exit 1; }

pids=()
tmpdir=$(mktemp -d)
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmpdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

for port in "$RELAY_PORT_1" "$RELAY_PORT_2" "$CLUSTER_PORT_1" "$CLUSTER_PORT_2" \
  "$METRICS_PORT_1" "$METRICS_PORT_2" "$NATS_PORT_1" "$NATS_PORT_2" "$ROUTE_PORT_1" "$ROUTE_PORT_2"; do
  if port_in_use "$port"; then
    echo "port $port is already in use on 127.0.0.1 (set the *_PORT_* variables)" >&2
    exit 1
  fi
done

# Same per-connection outbound bound as nats-server's max_pending (64 MiB; set explicitly for
# nats too), so neither server closes the load generator's receiver as a slow consumer.
relay_config=$tmpdir/relay.toml
printf 'pending_bytes_max = 67108864\n' > "$relay_config"
nats_config=$tmpdir/nats.conf
printf 'max_pending: 67108864\n' > "$nats_config"

# start_bg LOG CMD...: starts CMD in the background pinned to SERVER_CPU, remembers its pid.
start_bg() {
  local log=$1
  shift
  taskset -c "$SERVER_CPU" "$@" >"$log" 2>&1 &
  pids+=("$!")
}

# wait_until NAME PID LOG CHECK...: polls CHECK until it succeeds, the process dies or time is up.
wait_until() {
  local name=$1 pid=$2 log=$3
  shift 3
  local deadline=$((SECONDS + STARTUP_TIMEOUT_S))
  until "$@"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited during startup; its output:" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      echo "$name not ready within ${STARTUP_TIMEOUT_S} s; its output:" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
    sleep 0.1
  done
}

healthz_ready() {
  [ "$(curl -fsS --max-time 1 "http://127.0.0.1:$1/healthz" 2>/dev/null)" = ready ]
}

start_bg "$tmpdir/relay1.log" "$BIN" serve --listen "127.0.0.1:$RELAY_PORT_1" --workers 1 \
  --config "$relay_config" --metrics "127.0.0.1:$METRICS_PORT_1" --node-id 1 \
  --cluster-listen "127.0.0.1:$CLUSTER_PORT_1" --cluster-secret "$SECRET"
relay1_pid=${pids[-1]}
start_bg "$tmpdir/relay2.log" "$BIN" serve --listen "127.0.0.1:$RELAY_PORT_2" --workers 1 \
  --config "$relay_config" --metrics "127.0.0.1:$METRICS_PORT_2" --node-id 2 \
  --cluster-listen "127.0.0.1:$CLUSTER_PORT_2" --cluster-secret "$SECRET" \
  --peers "127.0.0.1:$CLUSTER_PORT_1"
relay2_pid=${pids[-1]}
start_bg "$tmpdir/nats1.log" "$NATS_SERVER" -c "$nats_config" -a 127.0.0.1 -p "$NATS_PORT_1" \
  --cluster_name bench --cluster "nats://127.0.0.1:$ROUTE_PORT_1" --routes "nats://127.0.0.1:$ROUTE_PORT_2"
nats1_pid=${pids[-1]}
start_bg "$tmpdir/nats2.log" "$NATS_SERVER" -c "$nats_config" -a 127.0.0.1 -p "$NATS_PORT_2" \
  --cluster_name bench --cluster "nats://127.0.0.1:$ROUTE_PORT_2" --routes "nats://127.0.0.1:$ROUTE_PORT_1"
nats2_pid=${pids[-1]}

wait_until "ringrelay node 1" "$relay1_pid" "$tmpdir/relay1.log" healthz_ready "$METRICS_PORT_1"
wait_until "ringrelay node 2" "$relay2_pid" "$tmpdir/relay2.log" healthz_ready "$METRICS_PORT_2"
wait_until "nats-server 1" "$nats1_pid" "$tmpdir/nats1.log" port_in_use "$NATS_PORT_1"
wait_until "nats-server 2" "$nats2_pid" "$tmpdir/nats2.log" port_in_use "$NATS_PORT_2"
# Routes and cluster links may still be forming: the load generator probes across the nodes
# until deliveries arrive before it measures.

mkdir -p "$(dirname "$OUT")"
: > "$OUT"
workloads=(
  "one-to-one-16  --scenario cross-node        --size 16 --count $COUNT_ONE"
  "fanout10-16    --scenario cross-node-fanout --size 16 --subscribers 10 --count $COUNT_FANOUT"
)
for w in "${workloads[@]}"; do
  name=${w%% *}
  args=${w#* }
  for run in $(seq "$RUNS"); do
    echo "== $name run $run" >&2
    # shellcheck disable=SC2086
    timeout "$RUN_TIMEOUT_S" taskset -c "$LOADGEN_CPU" "$BIN" bench $args --duration-s "$DURATION_S" \
      --server "127.0.0.1:$RELAY_PORT_1" --server-b "127.0.0.1:$RELAY_PORT_2" \
      --compare "nats://127.0.0.1:$NATS_PORT_1,nats://127.0.0.1:$NATS_PORT_2" --json \
      2>"$tmpdir/bench.err" \
      | sed "s/^{/{\"workload\":\"$name\",\"run\":$run,/" >> "$OUT" \
      || echo "run failed: $name run $run" >&2
    # Notes, warnings and errors of the run, without the \r-updated progress lines.
    grep -av $'\r' "$tmpdir/bench.err" >&2 || true
  done
done

python3 - "$OUT" "$RUNS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
runs = int(sys.argv[2])
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def fmt(x, d=0):
    return "-" if x is None else f"{x:,.{d}f}"
metric = {"cross-node": ("msgs/s", "msgs_per_s"), "cross-node-fanout": ("deliveries/s", "deliveries_per_s")}
print("| workload | metric | ringrelay | nats | ringrelay/nats | ringrelay CPU-s (node 1+2) | nats CPU-s (server 1+2) | runs |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
incomplete = []
for w in dict.fromkeys(r["workload"] for r in rows):
    wr = [r for r in rows if r["workload"] == w and r.get("target")]
    label, key = metric[wr[0]["scenario"]]
    by = {t: [r for r in wr if r["target"] == t] for t in ("ringrelay", "nats")}
    for t, rs in by.items():
        incomplete += [f"{w} {t} run {r['run']}: {r['received']} of {r['expected']} deliveries, {r['errors']} errors"
                       for r in rs if r["received"] < r["expected"] or r["errors"]]
    def cpu(rs):
        total = med([r.get("server_cpu_s") for r in rs])
        parts = [med([(r.get("server_cpu_by_node_s") or [None, None])[i] for r in rs]) for i in (0, 1)]
        return f"{fmt(total, 2)} ({fmt(parts[0], 2)}+{fmt(parts[1], 2)})"
    # Median of the per-run ratios (each run measured both targets back to back).
    ratios = []
    for run in sorted({r["run"] for r in wr}):
        a = [r[key] for r in by["ringrelay"] if r["run"] == run]
        b = [r[key] for r in by["nats"] if r["run"] == run]
        if a and b and b[0]:
            ratios.append(a[0] / b[0])
    ratio = f"x{med(ratios):.2f}" if ratios else "-"
    print(f"| {w} | {label} | {fmt(med([r[key] for r in by['ringrelay']]))} | {fmt(med([r[key] for r in by['nats']]))} "
          f"| {ratio} | {cpu(by['ringrelay'])} | {cpu(by['nats'])} | {len(ratios)}/{runs} |")
print()
print("Medians over runs; ratio = median of per-run ringrelay/nats ratios; both servers of each "
      "kind pinned to one CPU, load generator on another; sender on node 1, receivers on node 2.")
for line in incomplete:
    print(f"warning: {line}", file=sys.stderr)
PY
