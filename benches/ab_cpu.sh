#!/usr/bin/env bash
# Interleaved A/B of relay CPU per delivery between two builds of the binary, for "must not
# regress by more than N%" checks on a machine whose speed drifts: runs A, B, A, B, ... so
# drift hits both alike, and prints the median CPU-ns per delivery of each and the median of
# the paired B/A ratios. Relay on CPU 0 (one worker), load generator on CPU 1.
#
#   benches/ab_cpu.sh OLD_BIN NEW_BIN [bench args...]
#   PAIRS=12 benches/ab_cpu.sh ../before/target/release/ringrelay target/release/ringrelay \
#       --scenario fanout --size 16 --subscribers 10 --count 2000000
#
# Default workload: 16 B one-to-one, 10,000,000 messages. Every run is bounded by --count.
# CONFIG_B=FILE gives B's relay its own config file (A keeps the default one, which sets only
# pending_bytes_max), and B_ARGS="..." adds bench arguments to B's runs only: for comparing one
# build with and without a setting, e.g. credentials:
#   CONFIG_B=creds.toml B_ARGS="--token bench:pw" benches/ab_cpu.sh target/release/ringrelay \
#       target/release/ringrelay
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,11p' "$0" >&2; exit 2; }
A=$1
B=$2
shift 2
[ $# -gt 0 ] || set -- --scenario unicast --size 16 --count 10000000
PAIRS=${PAIRS:-8}
out=$(mktemp)
cfg=$(mktemp)
trap 'rm -f "$out" "$cfg"' EXIT
# As compare_nats.sh: nats-server's default max_pending, so no run closes a slow consumer.
printf 'pending_bytes_max = 67108864\n' > "$cfg"
cfg_b=${CONFIG_B:-$cfg}
read -r -a b_args <<< "${B_ARGS:-}"
for i in $(seq "$PAIRS"); do
  for t in A B; do
    bin=$A
    config=$cfg
    extra=()
    if [ "$t" = B ]; then
      bin=$B
      config=$cfg_b
      extra=("${b_args[@]}")
    fi
    taskset -c 1 "$bin" bench --relay-cpus 0 --relay-config "$config" "$@" "${extra[@]}" --json 2>/dev/null \
      | sed "s/^{/{\"ab\":\"$t\",\"pair\":$i,/" >> "$out"
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ns = lambda r: r["server_cpu_s"] / r["received"] * 1e9
for t in ("A", "B"):
    xs = [ns(r) for r in rows if r["ab"] == t]
    print(f"{t}: relay CPU ns/delivery median {statistics.median(xs):.1f} over {len(xs)} runs: "
          + " ".join(f"{x:.0f}" for x in xs))
pairs = {}
for r in rows:
    pairs.setdefault(r["pair"], {})[r["ab"]] = ns(r)
ratios = [p["B"] / p["A"] for p in pairs.values() if "A" in p and "B" in p]
print(f"B vs A: median of {len(ratios)} paired ratios {100 * (statistics.median(ratios) - 1):+.1f}%")
PY
