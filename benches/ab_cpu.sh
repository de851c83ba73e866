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
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
[ $# -ge 2 ] || { sed -n '2,11p' "$0" >&2; exit 2; }
A=$1
B=$2
shift 2
[ $# -gt 0 ] || set -- --scenario unicast --size 16 --count 10000000
PAIRS=${PAIRS:-8}
out=$(mktemp)
cfg=$(mktemp)
remove_on_exit "$out" "$cfg"
# As compare_nats.sh: nats-server's default max_pending, so no run closes a slow consumer.
write_relay_config "$cfg"
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
      | tag_rows ab "$t" pair "$i" >> "$out"
  done
done
summarize "$out" <<'PY'
ns = lambda r: r["server_cpu_s"] / r["received"] * 1e9
for t in ("A", "B"):
    xs = [ns(r) for r in rows if r["ab"] == t]
    print(f"{t}: relay CPU ns/delivery median {statistics.median(xs):.1f} over {len(xs)} runs: "
          + " ".join(f"{x:.0f}" for x in xs))
series = lambda t: {r["pair"]: ns(r) for r in rows if r["ab"] == t}
ratios = paired(series("B"), series("A"))
print(f"B vs A: median of {len(ratios)} paired ratios {100 * (statistics.median(ratios) - 1):+.1f}%")
PY
