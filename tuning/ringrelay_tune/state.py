"""The originals file: what every file this tool changed contained before the first change.

<root>/var/lib/ringrelay-tune/originals.json, written before anything is changed. Entries
are only ever added, never overwritten, so a second apply (or the boot unit) cannot replace
the real originals with already-tuned values. revert deletes it last, after everything was
restored; while a restore fails the file stays so revert can be run again.

    {
      "version": 1,
      "files":    {"/proc/sys/net/core/somaxconn": {"raw": "4096\\n", "restore": null}},
      "persist":  {"/etc/sysctl.d/60-ringrelay.conf": {"existed": false, "raw": null}},
      "services": {"irqbalance.service": {"active": true, "enabled": true}},
      "created_dirs": ["/etc/systemd/system/ringrelay.service.d"]
    }

"raw" is the exact original content; "restore" is what to write instead when the kernel
refuses the raw bytes (THP files). "created_dirs" are removed by revert when empty.
"""
import json

from .fsroot import WriteError

STATE_DIR = "/var/lib/ringrelay-tune"
STATE_FILE = STATE_DIR + "/originals.json"


class StateError(Exception):
    pass


def empty():
    return {"version": 1, "files": {}, "persist": {}, "services": {}, "created_dirs": []}


def load(root):
    """The state, an empty state when there is none, or StateError when it is unusable
    (never silently replaced: it is the only record of the originals)."""
    if not root.exists(STATE_FILE):
        return empty()
    text = root.read(STATE_FILE)
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValueError("unknown format")
    except (TypeError, ValueError) as e:
        raise StateError("cannot use %s (%s); fix or remove it by hand" % (STATE_FILE, e)) from None
    state = empty()
    state.update(data)
    return state


def exists(root):
    return root.exists(STATE_FILE)


def save(root, state):
    created = root.makedirs(STATE_DIR)
    for d in created:
        if d not in state["created_dirs"]:
            state["created_dirs"].append(d)
    root.write_atomic(STATE_FILE, json.dumps(state, indent=2, sort_keys=True) + "\n")


def record_file(root, state, path, restore=None):
    """Remember a file's original content unless it is already recorded. True if added."""
    if path in state["files"]:
        return False
    raw = root.read(path)
    if raw is None:
        raise WriteError("cannot read %s to save its original value" % path)
    state["files"][path] = {"raw": raw, "restore": restore}
    return True


def record_created(state, dirs):
    for d in dirs:
        if d not in state["created_dirs"]:
            state["created_dirs"].append(d)
