#!/usr/bin/env bash
# Fairness between two busy senders on one worker: a one-worker relay on CPU 0, and two
# load generators on CPU 1 started together, each a one-to-one flow of COUNT (30,000,000)
# 16-byte messages. Prints, per run, how long each flow took and the later one's time over
# the earlier one's. Fair sharing makes the two finish together (ratio near 1.0); a worker
# that serves one sender's receives before the other's (the starvation the rotating re-arm in
# `Worker::rearm_starved` fixed) lets one flow finish in about half the time of the other
# (ratio near 2). RUNS (4) runs; every run is bounded by COUNT.
#
#   benches/fairness.sh                 # target/release/ringrelay
#   BIN=../old/target/release/ringrelay RUNS=8 benches/fairness.sh
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
RUNS=${RUNS:-4}
COUNT=${COUNT:-30000000}
PORT=${PORT:-17640}
BIN=${BIN:-./target/release/ringrelay}
need_built "$BIN" "cargo build --release"
need_cmd python3 "python3 not installed (apt-get install python3)"

flow_out=()
for i in 1 2; do
  flow_out+=("$(mktemp)")
done
remove_on_exit "${flow_out[@]}"

for run in $(seq "$RUNS"); do
  start_pinned 0 /dev/null "$BIN" serve --workers 1 --listen "127.0.0.1:$PORT"
  relay=$(last_started)
  wait_port "$PORT"
  flows=()
  for i in 0 1; do
    taskset -c 1 "$BIN" bench --server "127.0.0.1:$PORT" --scenario unicast --size 16 \
      --count "$COUNT" --json 2>/dev/null > "${flow_out[$i]}" &
    flows+=("$!")
  done
  for pid in "${flows[@]}"; do
    wait "$pid" || { echo "run $run: a load generator failed" >&2; exit 1; }
  done
  stop "$relay"
  python3 - "$run" "${flow_out[@]}" <<'PY'
import json, sys
run, files = sys.argv[1], sys.argv[2:]
rows = [json.loads(open(f).readline()) for f in files]
took = sorted(r["received"] / r["msgs_per_s"] for r in rows)
print(f"run {run}: flows took {took[0]:.2f} s and {took[1]:.2f} s, later/earlier {took[1] / took[0]:.2f}")
PY
done
