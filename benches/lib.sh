# shellcheck shell=bash
# Pieces shared by the benchmark scripts of benches/, sourced by each of them:
#   # shellcheck source-path=SCRIPTDIR source=lib.sh
#   source "$(dirname "$0")/lib.sh"
# It changes no directory and has no settings of its own (it reads the scripts' RUNS and
# WORKLOADS); sourcing it sets an EXIT trap (and makes INT and TERM exit 130 through it) that
# stops what start_bg started or kill_on_exit was given and removes what remove_on_exit was
# given, so a script sets no trap of its own.
#
# Checks (each prints why and exits 1 when it fails):
#   need_cmd CMD MESSAGE        CMD is on the PATH.
#   need_nats_server CMD        CMD (nats-server, or the build of it to use) is on the PATH.
#   need_built BIN HOW          BIN is an executable file; else says "build first: HOW".
# Building:
#   build_release ARGS...       cargo build --release ARGS..., quiet; on failure it runs again
#                               with its output shown (and the script stops).
# Servers and clean-up:
#   start_bg LOG CMD...         runs CMD in the background, stdout and stderr to LOG, and stops
#                               it on exit; last_started prints its pid.
#   start_pinned CPU LOG CMD... start_bg with CMD pinned to CPU (taskset).
#   start_nats_server CPU PORT LOG [ARGS...]
#                               nats-server pinned to CPU, on 127.0.0.1:PORT, with ARGS.
#   kill_on_exit PID...         stops PID (kill, then wait) on exit.
#   stop PID                    stops PID now (kill, then wait), and not again on exit; fails
#                               (as kill does) when PID had already exited.
#   remove_on_exit PATH...      removes PATH (rm -rf) on exit.
#   port_open PORT              true when something accepts on 127.0.0.1:PORT.
#   wait_port PORT [TRIES]      polls port_open every 0.1 s, TRIES times (100); else says
#                               "nothing listens on port PORT" and returns 1.
#   write_relay_config FILE     a relay config with nats-server's default max_pending (64 MiB)
#                               as pending_bytes_max, so no run closes a slow consumer; and
#                               tcp_congestion = "$RELAY_TCP_CONGESTION" when that is set
#                               (builds before the setting refuse the key).
# Workloads ("NAME ARGS...", ARGS split on spaces):
#   select_workloads W...       prints, one a line, the W whose NAME starts with $WORKLOADS
#                               (all of them when WORKLOADS is unset or empty).
#   for_each_run FUNC W...      for each W and each run 1..$RUNS, calls FUNC NAME RUN ARGS...
#   tag_rows KEY VALUE...       copies stdin's JSON lines with "KEY":VALUE put first in each
#                               (VALUE quoted unless it is a whole number).
# Figures:
#   median                      the median (the lower middle one) of the numbers on stdin.
#   ratio A B                   A / B to two decimals.
#   summarize JSONL [ARG...]    runs the Python summary read from stdin with sys.argv[1:] =
#                               JSONL ARG... and these defined: json, statistics, sys; rows
#                               (JSONL's non-blank lines, parsed); med(xs) (median of the xs
#                               that are not None, None when none are); fmt(x, d=0) ("-" for
#                               None, else x with thousands separators and d decimals);
#                               paired(a, b) (the ratios a[k] / b[k] for each key k of the
#                               dict a that the dict b has, where a[k] is not None and b[k] is
#                               neither None nor 0, in a's order); workload_names() (the
#                               rows' "workload" values, in first-seen order); runs_of(w) (the
#                               sorted "run" values of workload w's rows); first(**fields) (the
#                               first row with all these field values, None when there is none).

bench_pids=()
bench_paths=()

bench_cleanup() {
  local pid
  for pid in "${bench_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${bench_pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "${#bench_paths[@]}" -gt 0 ]; then
    rm -rf "${bench_paths[@]}"
  fi
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

need_cmd() {
  command -v "$1" >/dev/null || { echo "$2" >&2; exit 1; }
}

need_nats_server() {
  need_cmd "$1" "nats-server not installed (apt-get install nats-server)"
}

need_built() {
  [ -x "$1" ] || { echo "build first: $2" >&2; exit 1; }
}

build_release() {
  cargo build --release "$@" >/dev/null 2>&1 || cargo build --release "$@"
}

kill_on_exit() {
  bench_pids+=("$@")
}

remove_on_exit() {
  bench_paths+=("$@")
}

start_bg() {
  local log=$1
  shift
  "$@" >"$log" 2>&1 &
  kill_on_exit "$!"
}

start_pinned() {
  local cpu=$1 log=$2
  shift 2
  start_bg "$log" taskset -c "$cpu" "$@"
}

start_nats_server() {
  local cpu=$1 port=$2 log=$3
  shift 3
  start_pinned "$cpu" "$log" nats-server -a 127.0.0.1 -p "$port" "$@"
}

last_started() {
  echo "${bench_pids[-1]}"
}

stop() {
  local pid kept=() status=0
  kill "$1" || status=$?
  wait "$1" 2>/dev/null || true
  for pid in "${bench_pids[@]}"; do
    [ "$pid" = "$1" ] || kept+=("$pid")
  done
  bench_pids=("${kept[@]}")
  return "$status"
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_port() {
  local _
  for _ in $(seq "${2:-100}"); do
    port_open "$1" && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  return 1
}

write_relay_config() {
  printf 'pending_bytes_max = 67108864\n' > "$1"
  if [ -n "${RELAY_TCP_CONGESTION+set}" ]; then
    printf 'tcp_congestion = "%s"\n' "$RELAY_TCP_CONGESTION" >> "$1"
  fi
}

select_workloads() {
  local w
  for w in "$@"; do
    [[ $w == "${WORKLOADS:-}"* ]] && echo "$w"
  done
  return 0
}

for_each_run() {
  local func=$1 w run
  shift
  for w in "$@"; do
    for run in $(seq "$RUNS"); do
      # shellcheck disable=SC2086 # the workload's arguments are split on spaces
      "$func" "${w%% *}" "$run" ${w#* }
    done
  done
}

tag_rows() {
  local fields="" sep=""
  while [ $# -ge 2 ]; do
    if [[ $2 =~ ^[0-9]+$ ]]; then
      fields+="$sep\"$1\":$2"
    else
      fields+="$sep\"$1\":\"$2\""
    fi
    sep=,
    shift 2
  done
  sed "s/^{/{$fields,/"
}

median() {
  sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
}

bench_py_prelude=$(cat <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def fmt(x, d=0):
    return "-" if x is None else f"{x:,.{d}f}"
def paired(a, b):
    return [a[k] / b[k] for k in a if k in b and a[k] is not None and b[k]]
def workload_names():
    return list(dict.fromkeys(r["workload"] for r in rows))
def runs_of(w):
    return sorted({r["run"] for r in rows if r["workload"] == w})
def first(**fields):
    return next((r for r in rows if all(r.get(k) == v for k, v in fields.items())), None)
PY
)

summarize() {
  python3 -c "$bench_py_prelude"$'\n'"$(cat)" "$@"
}
