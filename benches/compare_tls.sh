#!/usr/bin/env bash
# TLS against plaintext, in one run (issue 14 item 6): one ringrelay (one worker, pinned to CPU
# 0) with a plaintext listener and a TLS listener, nats-server pinned to CPU 0 twice (plaintext,
# and TLS from a config file with a tls block), load generator on CPU 1. Each workload runs
# RUNS times, plaintext then TLS back to back; prints the medians and the ratios TLS/plaintext
# (ringrelay, nats) and ringrelay-TLS / nats-TLS. The CA and the server certificate are made
# with openssl in a temporary directory (as in README "#### TLS"). Needs nats-server
# (apt-get install nats-server) and a release build (cargo build --release --workspace); BIN
# overrides the binary. Every run is bounded by --count and --duration-s.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
RELAY_CPU=${RELAY_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
RELAY_PORT=${RELAY_PORT:-7400}
RELAY_TLS_PORT=${RELAY_TLS_PORT:-7443}
NATS_PORT=${NATS_PORT:-4222}
NATS_TLS_PORT=${NATS_TLS_PORT:-4443}
TARGET_DIR=${CARGO_TARGET_DIR:-./target}
BIN=${BIN:-$TARGET_DIR/release/ringrelay}
OUT=${OUT:-$TARGET_DIR/compare_tls.jsonl}
DURATION_S=${DURATION_S:-30}

need_nats_server nats-server
need_cmd openssl "openssl not installed"
need_built "$BIN" "cargo build --release --workspace (or set BIN)"

dir=$(mktemp -d)
remove_on_exit "$dir"

# A CA and a server certificate for localhost and 127.0.0.1.
(
  cd "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=bench CA" -keyout ca.key -out ca.pem
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
    -keyout server.key -out server.csr
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
    -extfile server.ext -out server.pem
  chmod 600 ca.key server.key
) >/dev/null 2>&1 || { echo "openssl could not make the certificates" >&2; exit 1; }

# Same per-connection outbound bound as nats-server's default max_pending (64 MiB), as in
# compare_nats.sh.
write_relay_config "$dir/relay.toml"
cat > "$dir/nats-tls.conf" <<EOF
host: 127.0.0.1
port: $NATS_TLS_PORT
tls {
  cert_file: "$dir/server.pem"
  key_file: "$dir/server.key"
  timeout: 5
}
EOF

start_pinned "$RELAY_CPU" "$dir/relay.log" "$BIN" serve --cpus "$RELAY_CPU" --config "$dir/relay.toml" \
  --listen "127.0.0.1:$RELAY_PORT" --tls-listen "127.0.0.1:$RELAY_TLS_PORT" \
  --tls-cert-file "$dir/server.pem" --tls-key-file "$dir/server.key"
start_nats_server "$RELAY_CPU" "$NATS_PORT" "$dir/nats.log"
start_pinned "$RELAY_CPU" "$dir/nats-tls.log" nats-server -c "$dir/nats-tls.conf"
for port in "$RELAY_PORT" "$RELAY_TLS_PORT" "$NATS_PORT" "$NATS_TLS_PORT"; do
  wait_port "$port" || { echo "logs:" >&2; cat "$dir"/*.log >&2; exit 1; }
done

: > "$OUT"
workloads=(
  "unicast-16    --scenario unicast --size 16   --count 5000000"
  "unicast-1024  --scenario unicast --size 1024 --count 2000000"
)
# WORKLOADS=unicast-16 runs only the workloads whose name starts with it.
mapfile -t workloads < <(select_workloads "${workloads[@]}")

# run_one NAME RUN ARGS...: the workload in plaintext, then over TLS (each against both).
run_one() {
  local name=$1 run=$2 mode targets
  shift 2
  for mode in plain tls; do
    echo "== $name run $run $mode" >&2
    if [ "$mode" = plain ]; then
      targets=(--server "127.0.0.1:$RELAY_PORT" --compare "nats://127.0.0.1:$NATS_PORT")
    else
      targets=(--server "127.0.0.1:$RELAY_TLS_PORT" --compare "nats://127.0.0.1:$NATS_TLS_PORT"
        --tls-ca-file "$dir/ca.pem" --tls-server-name localhost)
    fi
    taskset -c "$LOADGEN_CPU" "$BIN" bench "$@" --duration-s "$DURATION_S" "${targets[@]}" \
      --json 2>"$dir/bench.err" \
      | tag_rows workload "$name" run "$run" mode "$mode" >> "$OUT" \
      || { echo "run failed: $name run $run $mode" >&2; cat "$dir/bench.err" >&2; }
    # The load generator's notes and warnings (not its progress lines).
    tr '\r' '\n' < "$dir/bench.err" | grep -aE '(note|warning|error)' >&2 || true
  done
}
for_each_run run_one "${workloads[@]}"

summarize "$OUT" <<'PY'
def pick(w, run, mode, target):
    return first(workload=w, run=run, mode=mode, target=target)
print(f"{'workload':13} {'target':9} {'mode':5} {'msgs/s':>12} {'p50 us':>8} {'p99 us':>9} {'cpu-s':>6} {'msgs/cpu-s':>11}")
for w in workload_names():
    runs = runs_of(w)
    for t in ("ringrelay", "nats"):
        for mode in ("plain", "tls"):
            rs = [r for r in (pick(w, run, mode, t) for run in runs) if r]
            m = {k: med([r.get(k) for r in rs]) for k in ("msgs_per_s", "p50_us", "p99_us", "server_cpu_s", "deliveries_per_cpu_s")}
            print(f"{w:13} {t:9} {mode:5} {fmt(m['msgs_per_s']):>12} {fmt(m['p50_us'],1):>8} {fmt(m['p99_us'],1):>9} {fmt(m['server_cpu_s'],2):>6} {fmt(m['deliveries_per_cpu_s']):>11}")
    # Medians of the per-run ratios (each run measured all four back to back).
    def ratio(a, b, key):
        xs = []
        for run in runs:
            x, y = pick(w, run, *a), pick(w, run, *b)
            if x and y and x.get(key) and y.get(key):
                xs.append(x[key] / y[key])
        return med(xs), len(xs)
    # msgs/s is the run's rate; msgs/cpu-s is the server's own efficiency (what its CPU
    # would carry if it, not the load generator, were the limit).
    for label, a, b in (
        ("ringrelay TLS / plaintext", ("tls", "ringrelay"), ("plain", "ringrelay")),
        ("nats TLS / plaintext", ("tls", "nats"), ("plain", "nats")),
        ("ringrelay-TLS / nats-TLS", ("tls", "ringrelay"), ("tls", "nats")),
        ("ringrelay / nats (plaintext)", ("plain", "ringrelay"), ("plain", "nats")),
    ):
        r, n = ratio(a, b, "msgs_per_s")
        c, _ = ratio(a, b, "deliveries_per_cpu_s")
        if r is not None:
            print(f"{w:13} {label:29} msgs/s x{r:.2f} ({r:.1%})"
                  + (f"  msgs/cpu-s x{c:.2f}" if c is not None else "")
                  + f"  (medians of {n} per-run ratios)")
PY
