#!/usr/bin/env bash
# Memory per idle connection (issue 15, item 6): starts ringrelay (defaults: one worker per
# CPU) and then nats-server (with its ping interval set to the relay's 5 s heartbeat), opens
# CONNECTIONS (19,000) idle client connections to each with benches/idle_conns.py, waits until
# every one has answered a heartbeat PING, and prints the server's RSS growth divided by the
# connections, RUNS times each (medians last). User-space memory only: what the kernel holds
# for the sockets is not in RSS. Needs python3, nats-server and a release build.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
CONNECTIONS=${CONNECTIONS:-19000}
RELAY_PORT=${RELAY_PORT:-17480}
NATS_PORT=${NATS_PORT:-14280}
BIN=${BIN:-./target/release/ringrelay}

need_cmd python3 "python3 not installed (apt-get install python3)"
need_nats_server nats-server
need_built "$BIN" "cargo build --release"
# The server and the client each hold CONNECTIONS sockets, plus their own descriptors.
need_fds=$((CONNECTIONS + 512))
hard_fds=$(ulimit -Hn)
if [ "$hard_fds" != unlimited ] && [ "$hard_fds" -lt "$need_fds" ]; then
  echo "the open-files limit ($hard_fds) is below $need_fds: lower CONNECTIONS" >&2
  exit 1
fi
ulimit -n "$need_fds"

nats_config=$(mktemp)
remove_on_exit "$nats_config"
printf 'ping_interval: "5s"\nmax_connections: %d\n' $((CONNECTIONS + 100)) > "$nats_config"

rss_kib() {
  awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# settled_rss_kib PID: the server's RSS once it has held still for half a second (at most 10
# s). A server's port opens before it has set itself up: the relay's workers touch their
# receive buffer rings (about 50 MB with the defaults) within the next 200 ms or so, and a
# baseline read before that counts them as memory of the idle connections.
settled_rss_kib() {
  local last now _
  last=$(rss_kib "$1")
  for _ in $(seq 20); do
    sleep 0.5
    now=$(rss_kib "$1")
    if [ "$now" = "$last" ]; then
      echo "$now"
      return
    fi
    last=$now
  done
  echo "the server's RSS did not settle within 10 s: baseline ${last} KiB" >&2
  echo "$last"
}

# The idle client's output, and the pipe that holds its standard input open while it holds
# the connections.
idle_out=$(mktemp)
hold=$(mktemp -u)
mkfifo "$hold"
remove_on_exit "$idle_out" "$hold"

# measure KIND PORT PID: prints "before after", the server's RSS in KiB before and after
# CONNECTIONS idle connections answered a heartbeat.
measure() {
  local kind=$1 port=$2 pid=$3 before after idle _
  before=$(settled_rss_kib "$pid")
  python3 benches/idle_conns.py "$kind" "$port" "$CONNECTIONS" --timeout-s 180 \
    < "$hold" > "$idle_out" &
  idle=$!
  exec 3> "$hold"
  for _ in $(seq 2000); do
    grep -qx "heartbeat $CONNECTIONS" "$idle_out" && break
    kill -0 "$idle" 2>/dev/null || break
    sleep 0.1
  done
  grep -qx "heartbeat $CONNECTIONS" "$idle_out" || { echo "$kind: idle clients failed" >&2; exit 1; }
  after=$(rss_kib "$pid")
  exec 3>&-
  wait "$idle" || true
  echo "$before $after"
}

# run_server RUN NAME KIND PORT CMD...: starts one server, measures it, stops it, reports the
# run, and leaves the bytes per idle connection in $per_conn (no subshell, so the server
# started here is still killed on exit should the measurement fail).
per_conn=
run_server() {
  local run=$1 name=$2 kind=$3 port=$4 pid before after
  shift 4
  start_bg /dev/null "$@"
  pid=$(last_started)
  wait_port "$port"
  read -r before after <<< "$(measure "$kind" "$port" "$pid")"
  stop "$pid"
  per_conn=$(( (after - before) * 1024 / CONNECTIONS ))
  echo "run $run $name: RSS ${before} KiB -> ${after} KiB, $per_conn B per idle connection"
}

relay_rows=() nats_rows=()
for run in $(seq "$RUNS"); do
  run_server "$run" ringrelay relay "$RELAY_PORT" "$BIN" serve --listen "127.0.0.1:$RELAY_PORT"
  relay_rows+=("$per_conn")
  run_server "$run" nats-server nats "$NATS_PORT" \
    nats-server -a 127.0.0.1 -p "$NATS_PORT" -c "$nats_config"
  nats_rows+=("$per_conn")
done
relay_median=$(printf '%s\n' "${relay_rows[@]}" | median)
nats_median=$(printf '%s\n' "${nats_rows[@]}" | median)
echo "median of $RUNS, $CONNECTIONS idle connections: ringrelay $relay_median B, nats-server $nats_median B per connection"
