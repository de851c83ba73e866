#!/usr/bin/env python3
"""Messages/s of independent one-to-one flows by where their connections landed.

Starts `ringrelay serve` with two workers on CPUs 0 and 1 (and metrics on loopback), runs
`ringrelay bench --scenario pairs --pairs P` against it, reads from `/connections` which
worker each sender and receiver landed on while the run goes, and prints one JSON line per
run: pairs, msgs/s, relay and load-generator CPU-ns per message, connections moved, and the
placement as the connections landed and as the run ended: "same" when every pair has both
ends on one worker,
"split" when every pair has its ends on different workers, "mixed" otherwise, plus whether
the pairs sit on different workers. SO_REUSEPORT spreads connections by their ports, so
placements vary from run to run; repeat and group. The relay steers connections
(`steer_connections`, every 250 ms), so runs shorter than a few seconds measure mostly the
placement they landed in; STEER=0 in the environment turns steering off.

    benches/worker_placement.py [RUNS [COUNT]]     # default 6 runs of pairs=1 and of pairs=2

Each run also says how busy CPUs 0 and 1 were while it ran (`cpus_busy`, and `cpus_stolen`
by the hypervisor, from /proc/stat). A last line sums the runs up: the median msgs/s of one
flow and of two, their ratio, and what bounds the ratio here: two flows share the two CPUs
with the load generator, so at R + L CPU-ns per message (relay and load generator, medians
of the two-flow runs) two fully busy CPUs carry at most 2 / (R + L) msgs/s (`ratio_ceiling`
is that over one flow's). The windows differ a little: R and msgs/s are the bench's measured
window, L (the bench's rusage) its whole life, connecting and settling included, and the busy
share the whole bench plus this script's polling; so L, and the busy share, read slightly
high, and the ceiling slightly low.

The load generator runs on the same two CPUs as the relay (`taskset -c 0,1`, unpinned
within them), as it would unpinned on a 2-CPU machine.
Every run is bounded by COUNT messages (default 100,000,000: about five seconds, time for
steering to act and for the run to measure where it left the flows) and the bench's --duration-s.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "ringrelay")


def connections(metrics):
    with urllib.request.urlopen(f"http://{metrics}/connections?limit=1000", timeout=2) as r:
        return json.load(r)["connections"]


def placement(workers, pairs):
    """The placement of `workers` (id -> worker): (label, pairs on distinct workers, pairs)."""
    ends = {}
    for cid, worker in workers.items():
        tag, _, role = cid.rpartition("-")
        ends.setdefault(role[1:], {})[role[0]] = worker
    pair_workers = [(e.get("s"), e.get("r")) for e in ends.values()]
    same = [s == r for s, r in pair_workers]
    label = "same" if all(same) else "split" if not any(same) else "mixed"
    distinct = len({s for s, _ in pair_workers}) == len(pair_workers)
    return label, distinct, pair_workers


def moves(metrics):
    with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=2) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("ringrelay_connection_moves_total "):
                return int(float(line.split()[1]))
    return 0


def run(pairs, count, port):
    listen, metrics = f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}"
    config = os.path.join(ROOT, "target", "worker_placement.toml")
    with open(config, "w") as f:
        f.write(f"steer_connections = {'false' if os.environ.get('STEER') == '0' else 'true'}\n")
    relay = subprocess.Popen(
        [BIN, "serve", "--cpus", "0,1", "--listen", listen, "--metrics", metrics,
         "--config", config],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                connections(metrics)
                break
            except OSError:
                time.sleep(0.05)
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        machine_before = machine_ticks()
        bench = subprocess.Popen(
            ["taskset", "-c", "0,1", BIN, "bench", "--server", listen, "--scenario", "pairs",
             "--pairs", str(pairs),
             "--count", str(count), "--size", "16", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        first, last, moved = {}, {}, 0
        deadline = time.monotonic() + 300
        while bench.poll() is None and time.monotonic() < deadline:
            seen = {c["id"]: c["worker"] for c in connections(metrics) if c.get("id")}
            if len(seen) == 2 * pairs:
                first = first or seen
                last = seen
                moved = moves(metrics)
            time.sleep(0.05)
        out, _ = bench.communicate(timeout=300)
        # The bench is the only child reaped since `children_before` (the relay still runs).
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        machine_after = machine_ticks()
    finally:
        relay.terminate()
        relay.wait(timeout=10)
    row = json.loads(out.splitlines()[0])
    landed, ended = placement(first, pairs), placement(last, pairs)
    return {
        "pairs": pairs,
        "msgs_per_s": round(row["msgs_per_s"]),
        "relay_ns_per_msg": round(row["server_cpu_s"] / row["received"] * 1e9, 1),
        "loadgen_ns_per_msg": round(
            cpu_s(children_after, children_before) / row["received"] * 1e9, 1
        ),
        "cpus_busy": busy_fraction(machine_before, machine_after),
        "cpus_stolen": busy_fraction(machine_before, machine_after, field=1),
        "moves": moved,
        "placement": landed[0],
        "pairs_on_distinct_workers": landed[1],
        "workers": landed[2],
        "ended": ended[0],
        "ended_on_distinct_workers": ended[1],
        "ended_workers": ended[2],
    }


def machine_ticks():
    """(busy, stolen, total) clock ticks of CPUs 0 and 1 (the relay's and the load
    generator's) so far, from /proc/stat: busy is user, nice, system, irq and softirq; stolen
    is the hypervisor's (steal), which is neither busy nor idle here. guest and guest_nice are
    left out: user and nice already hold them."""
    busy = stolen = total = 0
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name in ("cpu0", "cpu1"):
                user, nice, system, idle, iowait, irq, softirq, steal = map(int, fields[:8])
                busy += user + nice + system + irq + softirq
                stolen += steal
                total += user + nice + system + idle + iowait + irq + softirq + steal
    return busy, stolen, total


def busy_fraction(before, after, field=0):
    """The share of CPUs 0 and 1's time between two `machine_ticks` that was busy (or, with
    field=1, stolen)."""
    return round((after[field] - before[field]) / max(1, after[2] - before[2]), 3)


def cpu_s(after, before):
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def summary(rows):
    """Medians of each pair count and their ratio; and what bounds the ratio on this machine.
    Two flows share its CPUs with the load generator: at R + L CPU-ns per message (the relay's
    and the load generator's, as the two-flow runs measured them) two fully busy CPUs carry at
    most 2 / (R + L) messages/s, so the ratio is at most that over one flow's msgs/s, and
    `two_flows_cpus_busy` says how much of both CPUs the two-flow runs kept busy."""
    median = statistics.median
    one = [r for r in rows if r["pairs"] == 1]
    two = [r for r in rows if r["pairs"] == 2]
    if not one or not two:
        return None
    one_msgs = median([r["msgs_per_s"] for r in one])
    two_msgs = median([r["msgs_per_s"] for r in two])
    relay = median([r["relay_ns_per_msg"] for r in two])
    loadgen = median([r["loadgen_ns_per_msg"] for r in two])
    return {
        "one_flow_msgs_per_s": round(one_msgs),
        "two_flows_msgs_per_s": round(two_msgs),
        "ratio": round(two_msgs / one_msgs, 2),
        "two_flows_relay_ns_per_msg": relay,
        "two_flows_loadgen_ns_per_msg": loadgen,
        "two_flows_cpus_busy": median([r["cpus_busy"] for r in two]),
        "two_flows_cpus_stolen": median([r["cpus_stolen"] for r in two]),
        "ratio_ceiling": round(2e9 / (relay + loadgen) / one_msgs, 2),
    }


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000_000
    if not os.access(BIN, os.X_OK):
        sys.exit(f"build first: cargo build --release ({BIN} is missing)")
    port = 17800
    rows = []
    for _ in range(runs):
        for pairs in (1, 2):
            rows.append(run(pairs, count, port))
            print(json.dumps(rows[-1]), flush=True)
            port += 2
    print(json.dumps({"summary": summary(rows)}), flush=True)


if __name__ == "__main__":
    main()
