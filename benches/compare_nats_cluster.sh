#!/usr/bin/env bash
# Cross-node speed against nats-server: two ringrelay nodes of one cluster (one worker each)
# and two nats-servers joined by a route, all four pinned to CPU 0; the load generator on CPU 1
# sends on the first node and receives on the second. Workloads: one-to-one 16 B and fan-out to
# 10 subscribers 16 B. Each runs RUNS times (default 3); the table shows the median of each
# figure and the median of the per-run ringrelay/nats ratios. Builds nothing: needs
# target/release/ringrelay (cargo build --release) and nats-server. Every run is bounded by
# --count, --duration-s and `timeout`; the servers are stopped on every exit path.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
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

need_nats_server "$NATS_SERVER"
need_cmd python3 "python3 is needed for the summary"
need_cmd curl "curl is needed to poll /healthz"
need_built "$BIN" "cargo build --release"
"$BIN" serve --help | grep -q -- '--node-id' || { echo "$BIN has no cluster support (serve --node-id)" >&2; exit 1; }

tmpdir=$(mktemp -d)
remove_on_exit "$tmpdir"

for port in "$RELAY_PORT_1" "$RELAY_PORT_2" "$CLUSTER_PORT_1" "$CLUSTER_PORT_2" \
  "$METRICS_PORT_1" "$METRICS_PORT_2" "$NATS_PORT_1" "$NATS_PORT_2" "$ROUTE_PORT_1" "$ROUTE_PORT_2"; do
  if port_open "$port"; then
    echo "port $port is already in use on 127.0.0.1 (set the *_PORT_* variables)" >&2
    exit 1
  fi
done

# Same per-connection outbound bound as nats-server's max_pending (64 MiB; set explicitly for
# nats too), so neither server closes the load generator's receiver as a slow consumer.
relay_config=$tmpdir/relay.toml
write_relay_config "$relay_config"
nats_config=$tmpdir/nats.conf
printf 'max_pending: 67108864\n' > "$nats_config"

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

start_pinned "$SERVER_CPU" "$tmpdir/relay1.log" "$BIN" serve --listen "127.0.0.1:$RELAY_PORT_1" --workers 1 \
  --config "$relay_config" --metrics "127.0.0.1:$METRICS_PORT_1" --node-id 1 \
  --cluster-listen "127.0.0.1:$CLUSTER_PORT_1" --cluster-secret "$SECRET"
relay1_pid=$(last_started)
start_pinned "$SERVER_CPU" "$tmpdir/relay2.log" "$BIN" serve --listen "127.0.0.1:$RELAY_PORT_2" --workers 1 \
  --config "$relay_config" --metrics "127.0.0.1:$METRICS_PORT_2" --node-id 2 \
  --cluster-listen "127.0.0.1:$CLUSTER_PORT_2" --cluster-secret "$SECRET" \
  --peers "127.0.0.1:$CLUSTER_PORT_1"
relay2_pid=$(last_started)
start_pinned "$SERVER_CPU" "$tmpdir/nats1.log" "$NATS_SERVER" -c "$nats_config" -a 127.0.0.1 -p "$NATS_PORT_1" \
  --cluster_name bench --cluster "nats://127.0.0.1:$ROUTE_PORT_1" --routes "nats://127.0.0.1:$ROUTE_PORT_2"
nats1_pid=$(last_started)
start_pinned "$SERVER_CPU" "$tmpdir/nats2.log" "$NATS_SERVER" -c "$nats_config" -a 127.0.0.1 -p "$NATS_PORT_2" \
  --cluster_name bench --cluster "nats://127.0.0.1:$ROUTE_PORT_2" --routes "nats://127.0.0.1:$ROUTE_PORT_1"
nats2_pid=$(last_started)

wait_until "ringrelay node 1" "$relay1_pid" "$tmpdir/relay1.log" healthz_ready "$METRICS_PORT_1"
wait_until "ringrelay node 2" "$relay2_pid" "$tmpdir/relay2.log" healthz_ready "$METRICS_PORT_2"
wait_until "nats-server 1" "$nats1_pid" "$tmpdir/nats1.log" port_open "$NATS_PORT_1"
wait_until "nats-server 2" "$nats2_pid" "$tmpdir/nats2.log" port_open "$NATS_PORT_2"
# Routes and cluster links may still be forming: the load generator probes across the nodes
# until deliveries arrive before it measures.

mkdir -p "$(dirname "$OUT")"
: > "$OUT"
workloads=(
  "one-to-one-16  --scenario cross-node        --size 16 --count $COUNT_ONE"
  "fanout10-16    --scenario cross-node-fanout --size 16 --subscribers 10 --count $COUNT_FANOUT"
)
# run_one NAME RUN ARGS...: one bench run, both targets back to back.
run_one() {
  local name=$1 run=$2
  shift 2
  echo "== $name run $run" >&2
  timeout "$RUN_TIMEOUT_S" taskset -c "$LOADGEN_CPU" "$BIN" bench "$@" --duration-s "$DURATION_S" \
    --server "127.0.0.1:$RELAY_PORT_1" --server-b "127.0.0.1:$RELAY_PORT_2" \
    --compare "nats://127.0.0.1:$NATS_PORT_1,nats://127.0.0.1:$NATS_PORT_2" --json \
    2>"$tmpdir/bench.err" \
    | tag_rows workload "$name" run "$run" >> "$OUT" \
    || echo "run failed: $name run $run" >&2
  # Notes, warnings and errors of the run, without the \r-updated progress lines.
  grep -av $'\r' "$tmpdir/bench.err" >&2 || true
}
for_each_run run_one "${workloads[@]}"

summarize "$OUT" "$RUNS" <<'PY'
runs = int(sys.argv[2])
metric = {"cross-node": ("msgs/s", "msgs_per_s"), "cross-node-fanout": ("deliveries/s", "deliveries_per_s")}
print("| workload | metric | ringrelay | nats | ringrelay/nats | ringrelay CPU-s (node 1+2) | nats CPU-s (server 1+2) | runs |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
incomplete = []
for w in workload_names():
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
    first = lambda rs: {r["run"]: r[key] for r in reversed(rs)}  # each run's first row
    ratios = paired(first(by["ringrelay"]), first(by["nats"]))
    ratio = f"x{med(ratios):.2f}" if ratios else "-"
    print(f"| {w} | {label} | {fmt(med([r[key] for r in by['ringrelay']]))} | {fmt(med([r[key] for r in by['nats']]))} "
          f"| {ratio} | {cpu(by['ringrelay'])} | {cpu(by['nats'])} | {len(ratios)}/{runs} |")
print()
print("Medians over runs; ratio = median of per-run ringrelay/nats ratios; both servers of each "
      "kind pinned to one CPU, load generator on another; sender on node 1, receivers on node 2.")
for line in incomplete:
    print(f"warning: {line}", file=sys.stderr)
PY
