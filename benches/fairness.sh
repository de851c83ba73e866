#!/usr/bin/env bash
# Fairness between two busy senders on one worker: a one-worker relay on CPU 0, and two
# load generators on CPU 1 started together, each a one-to-one flow of COUNT (30,000,000)
# 16-byte messages. Prints, per run, how long each flow took from the common start (wall
# clock, until its load generator exited) and the later one's time over the earlier one's.
# Fair sharing makes the two finish together (ratio near 1.0); a worker that serves one
# sender's receives before the other's (the starvation the rotating re-arm in
# `Worker::rearm_starved` fixed) lets one flow finish in about half the time of the other
# (ratio near 2). RUNS (4) runs; every run is bounded by COUNT and by TIMEOUT_S per flow.
#
#   benches/fairness.sh                 # target/release/ringrelay serves and loads
#   BIN=../old/target/release/ringrelay RUNS=8 benches/fairness.sh   # another relay build
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
RUNS=${RUNS:-4}
COUNT=${COUNT:-30000000}
PORT=${PORT:-17640}
TIMEOUT_S=${TIMEOUT_S:-120}
BIN=${BIN:-./target/release/ringrelay}
LOADGEN=${LOADGEN:-./target/release/ringrelay}
need_built "$BIN" "cargo build --release"
need_built "$LOADGEN" "cargo build --release"

ends=() logs=()
for i in 0 1; do
  ends+=("$(mktemp)")
  logs+=("$(mktemp)")
done
remove_on_exit "${ends[@]}" "${logs[@]}"

for run in $(seq "$RUNS"); do
  start_pinned 0 /dev/null "$BIN" serve --workers 1 --listen "127.0.0.1:$PORT"
  relay=$(last_started)
  wait_port "$PORT"
  start=$(date +%s.%N)
  flows=()
  for i in 0 1; do
    # Each flow writes the time its load generator exited, and its status.
    (
      status=0
      timeout "$TIMEOUT_S" taskset -c 1 "$LOADGEN" bench --server "127.0.0.1:$PORT" \
        --scenario unicast --size 16 --count "$COUNT" > /dev/null 2> "${logs[$i]}" || status=$?
      echo "$(date +%s.%N) $status" > "${ends[$i]}"
    ) &
    flows+=("$!")
    kill_on_exit "$!"
  done
  wait "${flows[@]}"
  stop "$relay"
  done_at=()
  for i in 0 1; do
    read -r end status < "${ends[$i]}"
    if [ "$status" != 0 ]; then
      echo "run $run: load generator $i exited with status $status:" >&2
      tail -5 "${logs[$i]}" >&2
      exit 1
    fi
    done_at+=("$end")
  done
  python3 - "$run" "$start" "${done_at[@]}" <<'PY'
import sys
run, start = sys.argv[1], float(sys.argv[2])
took = sorted(float(t) - start for t in sys.argv[3:])
print(f"run {run}: flows took {took[0]:.2f} s and {took[1]:.2f} s, "
      f"later/earlier {took[1] / took[0]:.2f}")
PY
done
