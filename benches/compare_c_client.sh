#!/usr/bin/env bash
# The C API's speed against the Rust client's, in one run: 16 B messages from a sender to a
# receiver through a relay (one worker pinned to CPU 0; clients on CPU 1), RUNS times each,
# alternating; prints the medians and the C/Rust ratio. Then a node embedded in the C program:
# its local client receiving against a TCP client of the same node (rate, and the receiving
# thread's CPU time per message). Every run is bounded by COUNT messages and a 30 s wait.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
COUNT=${COUNT:-2000000}
RELAY_CPU=${RELAY_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${PORT:-7455}

build_release -p ringrelay-cli -p ringrelay-ffi --examples
libs=$(rustc --crate-type staticlib --print native-static-libs -o /tmp/rr_empty.a - </dev/null 2>&1 \
  | sed -n 's/.*native-static-libs: //p')
c_bench=target/release/c_client_rate
# shellcheck disable=SC2086
cc -std=c11 -O2 -Iinclude ffi/benches/c_client_rate.c target/release/libringrelay_ffi.a $libs -o "$c_bench"
rust_bench=target/release/examples/rust_client_rate

start_pinned "$RELAY_CPU" /dev/null target/release/ringrelay serve --listen "127.0.0.1:$PORT" --workers 1
wait_port "$PORT" 50 || true

rate() { sed -n 's/^msgs_per_sec \([0-9]*\).*/\1/p'; }
cpu() { sed -n 's/^rx_cpu_ns_per_msg \([0-9.]*\).*/\1/p'; }
c_runs=() rust_runs=() local_runs=() tcp_runs=() local_cpu=() tcp_cpu=()
for run in $(seq "$RUNS"); do
  c_runs+=("$(taskset -c "$CLIENT_CPU" "$c_bench" "127.0.0.1:$PORT" "$COUNT" | rate)")
  rust_runs+=("$(taskset -c "$CLIENT_CPU" "$rust_bench" "127.0.0.1:$PORT" "$COUNT" | rate)")
  # The embedded node: its worker pinned to RELAY_CPU, the clients on CLIENT_CPU, as above.
  out=$(taskset -c "$CLIENT_CPU" "$c_bench" - "$COUNT" local "[$RELAY_CPU]")
  local_runs+=("$(rate <<<"$out")") local_cpu+=("$(cpu <<<"$out")")
  out=$(taskset -c "$CLIENT_CPU" "$c_bench" - "$COUNT" embedded-tcp "[$RELAY_CPU]")
  tcp_runs+=("$(rate <<<"$out")") tcp_cpu+=("$(cpu <<<"$out")")
  echo "run $run: c ${c_runs[-1]} rust ${rust_runs[-1]} local ${local_runs[-1]} (${local_cpu[-1]} ns/msg) embedded-tcp ${tcp_runs[-1]} (${tcp_cpu[-1]} ns/msg)" >&2
done
c=$(printf '%s\n' "${c_runs[@]}" | median)
rust=$(printf '%s\n' "${rust_runs[@]}" | median)
local_rx=$(printf '%s\n' "${local_runs[@]}" | median)
tcp_rx=$(printf '%s\n' "${tcp_runs[@]}" | median)
local_ns=$(printf '%s\n' "${local_cpu[@]}" | median)
tcp_ns=$(printf '%s\n' "${tcp_cpu[@]}" | median)
echo "16 B through a relay, medians of $RUNS: C API $c msgs/s, Rust client $rust msgs/s, C/Rust $(ratio "$c" "$rust")"
echo "embedded node, medians of $RUNS: local receiver $local_rx msgs/s, TCP receiver $tcp_rx msgs/s, local/TCP $(ratio "$local_rx" "$tcp_rx")"
echo "embedded node, receiving thread's CPU per message, medians of $RUNS: local $local_ns ns, TCP $tcp_ns ns, TCP/local $(ratio "$tcp_ns" "$local_ns")"
