#!/usr/bin/env bash
# Interleaved A/B of the NATS port between two builds of the binary: both relays serve (one
# worker each, CPU 0), and the same NATS client (the load generator's NATS driver, on CPU 1)
# runs against A, B, A, B, ... so that drift hits both alike. Prints the median deliveries/s
# and deliveries per relay CPU-second of each, and the median of the paired B/A ratios.
#
#   benches/ab_nats_front.sh OLD_BIN NEW_BIN [bench args...]
#   PAIRS=8 benches/ab_nats_front.sh ../before/target/release/ringrelay \
#       target/release/ringrelay --scenario fanout --size 16 --subscribers 10 --count 500000
#
# Default workload: 16 B one-to-one, 2,000,000 messages. Every run is bounded by --count.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
[ $# -ge 2 ] || { sed -n '2,11p' "$0" >&2; exit 2; }
A=$1
B=$2
shift 2
[ $# -gt 0 ] || set -- --scenario unicast --size 16 --count 2000000
PAIRS=${PAIRS:-5}
out=$(mktemp)
cfg=$(mktemp)
remove_on_exit "$out" "$cfg"
# As compare_nats_front.sh: nats-server's default max_pending, so no run closes a consumer.
write_relay_config "$cfg"

start_bg /dev/null "$A" serve --cpus 0 --config "$cfg" --listen 127.0.0.1:17510 --nats-listen 127.0.0.1:4310
start_bg /dev/null "$B" serve --cpus 0 --config "$cfg" --listen 127.0.0.1:17511 --nats-listen 127.0.0.1:4311
for port in 4310 4311; do wait_port "$port"; done

for i in $(seq "$PAIRS"); do
  for t in A B; do
    relay=17510
    nats=4310
    if [ "$t" = B ]; then relay=17511; nats=4311; fi
    # The run against the native port is discarded; the NATS run is the figure. OLD_BIN's
    # load generator drives both (a newer one may speak a protocol version OLD_BIN refuses).
    taskset -c 1 "$A" bench --server "127.0.0.1:$relay" "$@" \
      --compare "nats://127.0.0.1:$nats" --json 2>/dev/null \
      | tag_rows ab "$t" pair "$i" >> "$out"
  done
done

summarize "$out" <<'PY'
nats = [r for r in rows if r.get("target") == "nats"]
def series(t, key):
    return {r["pair"]: r[key] for r in nats if r["ab"] == t and r.get(key)}
for t in ("A", "B"):
    d = series(t, "deliveries_per_s")
    c = series(t, "deliveries_per_cpu_s")
    print(f"{t}: NATS port deliveries/s median {statistics.median(d.values()):,.0f}, "
          f"per relay CPU-s {statistics.median(c.values()):,.0f} over {len(d)} runs")
a, b = series("A", "deliveries_per_s"), series("B", "deliveries_per_s")
ratios = paired(b, a)
print(f"B vs A: median of {len(ratios)} paired deliveries/s ratios x{statistics.median(ratios):.3f}")
PY
