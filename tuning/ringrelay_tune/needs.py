"""What the relay needs of the host, asked of the relay binary itself.

`ringrelay serve --print-host-needs [--config FILE]` prints the least value of each host
setting the relay's settings need (open files, locked memory, somaxconn). Those numbers are
computed in one place, the relay's start-up probe (src/server/host_probe.rs), and `check`
holds the required limits to them, so `check` and `ringrelay serve` never disagree about
whether a host can run the relay. The larger values in the settings catalogue are what
`persist` writes: recommendations, not thresholds.
"""
import json
import os
import shutil
import subprocess

RELAY_PATHS = ["/usr/bin/ringrelay", "/usr/local/bin/ringrelay"]
CONFIG_PATH = "/etc/ringrelay/ringrelay.toml"
# The relay answers at once (it reads its config and prints); more means something is wrong.
TIMEOUT_S = 10


def find_relay(root, explicit):
    """The relay binary: --relay, else the packaged or installed one under root, else (on the
    live system) `ringrelay` on PATH."""
    if explicit:
        return explicit
    for p in RELAY_PATHS:
        if os.access(root.path(p), os.X_OK):
            return root.path(p)
    return shutil.which("ringrelay") if root.live else None


def ask(root, relay, config):
    """(needs by setting key, None) or (None, why they are unknown)."""
    binary = find_relay(root, relay)
    if binary is None:
        return None, "no ringrelay binary found (--relay BIN names one)"
    if config is None and os.path.isfile(root.path(CONFIG_PATH)):
        config = root.path(CONFIG_PATH)
    cmd = [binary, "serve", "--print-host-needs"] + (["--config", config] if config else [])
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S,
                             stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, "`%s` failed: %s" % (" ".join(cmd), e)
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["exit status %d" % run.returncode])[-1]
        return None, "`%s` failed: %s" % (" ".join(cmd), last)
    try:
        needs = json.loads(run.stdout)
    except ValueError:
        return None, "`%s` printed no JSON" % " ".join(cmd)
    if not isinstance(needs, dict) or not all(isinstance(v, int) for v in needs.values()):
        return None, "`%s` printed something other than needs" % " ".join(cmd)
    return needs, None
