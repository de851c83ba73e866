#!/usr/bin/env python3
"""Messages/s of independent one-to-one flows by where their connections landed.

Starts `ringrelay serve` with two workers on CPUs 0 and 1 (and metrics on loopback), runs
`ringrelay bench --scenario pairs --pairs P` against it, reads from `/connections` which
worker each sender and receiver landed on while the run goes, and prints one JSON line per
run: pairs, msgs/s, relay CPU-ns per message, connections moved, and the placement as the
connections landed and as the run ended: "same" when every pair has both ends on one worker,
"split" when every pair has its ends on different workers, "mixed" otherwise, plus whether
the pairs sit on different workers. SO_REUSEPORT spreads connections by their ports, so
placements vary from run to run; repeat and group. The relay steers connections
(`steer_connections`, every 250 ms), so runs shorter than a few seconds measure mostly the
placement they landed in; STEER=0 in the environment turns steering off.

    benches/worker_placement.py [RUNS [COUNT]]     # default 6 runs of pairs=1 and of pairs=2

The load generator is not pinned: on a 2-CPU machine it shares both CPUs with the relay.
Every run is bounded by COUNT messages (default 100,000,000: about five seconds, time for
steering to act and for the run to measure where it left the flows) and the bench's --duration-s.
"""

import json
import os
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
        bench = subprocess.Popen(
            [BIN, "bench", "--server", listen, "--scenario", "pairs", "--pairs", str(pairs),
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
    finally:
        relay.terminate()
        relay.wait(timeout=10)
    row = json.loads(out.splitlines()[0])
    landed, ended = placement(first, pairs), placement(last, pairs)
    return {
        "pairs": pairs,
        "msgs_per_s": round(row["msgs_per_s"]),
        "relay_ns_per_msg": round(row["server_cpu_s"] / row["received"] * 1e9, 1),
        "moves": moved,
        "placement": landed[0],
        "pairs_on_distinct_workers": landed[1],
        "workers": landed[2],
        "ended": ended[0],
        "ended_on_distinct_workers": ended[1],
        "ended_workers": ended[2],
    }


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000_000
    if not os.access(BIN, os.X_OK):
        sys.exit(f"build first: cargo build --release ({BIN} is missing)")
    port = 17800
    for _ in range(runs):
        for pairs in (1, 2):
            print(json.dumps(run(pairs, count, port)), flush=True)
            port += 2


if __name__ == "__main__":
    main()
