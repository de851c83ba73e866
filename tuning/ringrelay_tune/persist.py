"""Files that make the tuning survive a reboot, and their removal on revert."""
import os
import shlex
import sys

from . import state as st
from .settings import BOOT_UNIT, WANTS_DIR, Limit, Sysctl

SYSCTL_FILE = "/etc/sysctl.d/60-ringrelay.conf"
LIMITS_FILE = "/etc/systemd/system/ringrelay.service.d/60-ringrelay-limits.conf"
BOOT_FILE = "/etc/systemd/system/" + BOOT_UNIT
BOOT_LINK = "%s/%s" % (WANTS_DIR, BOOT_UNIT)

HEADER = "# Written by ringrelay-tune persist; removed by ringrelay-tune revert.\n"


def sysctl_conf(ctx, settings):
    lines = [HEADER, "# See tuning/README.md for the reasons.\n"]
    for s in settings:
        if isinstance(s, Sysctl) and ctx.root.exists(s.path):
            lines.append("%s = %s\n" % (s.key, s.persist_value(ctx)))
    return "".join(lines)


def limits_conf(settings):
    lines = [HEADER, "[Service]\n"]
    for s in settings:
        if isinstance(s, Limit):
            lines.append("%s=%s\n" % (s.directive, "infinity" if s.want == float("inf") else s.want))
    return "".join(lines)


def boot_unit(ifaces):
    exe = os.path.realpath(sys.argv[0]) if sys.argv and sys.argv[0] else "/usr/local/sbin/ringrelay-tune"
    args = [exe, "apply", "--only-nonsysctl"] + ["--iface=" + i for i in ifaces or []]
    return (
        HEADER
        + "[Unit]\n"
        "Description=ringrelay host tuning that sysctl.d cannot persist "
        "(cpufreq governor, THP, NIC IRQ affinity, RPS/XPS)\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n"
        "Before=ringrelay.service\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        "ExecStart=%s\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n" % " ".join(shlex.quote(a) for a in args)
    )


def plan_files(ctx, settings):
    """[(path, content)] that persist writes; the wants symlink is handled separately."""
    return [
        (SYSCTL_FILE, sysctl_conf(ctx, settings)),
        (LIMITS_FILE, limits_conf(settings)),
        (BOOT_FILE, boot_unit(ctx.ifaces)),
    ]


def persist(ctx, settings, out):
    """Write the drop-ins and the boot unit (state first). True if anything changed."""
    root = ctx.root
    state = st.load(root)
    files = plan_files(ctx, settings)
    # Record what was there before touching anything.
    for path, _ in files:
        if path not in state["persist"]:
            existed = root.exists(path)
            state["persist"][path] = {"existed": existed, "raw": root.read(path) if existed else None}
    if BOOT_LINK not in state["persist"]:
        state["persist"][BOOT_LINK] = {"existed": root.exists(BOOT_LINK), "raw": None,
                                       "link": root.readlink(BOOT_LINK)}
    st.save(root, state)
    changed = False
    for path, content in files:
        if root.read(path) == content:
            out("same  %s" % path)
            continue
        st.record_created(state, root.makedirs(os.path.dirname(path)))
        st.save(root, state)
        root.write_atomic(path, content)
        out("wrote %s" % path)
        changed = True
    if not root.exists(BOOT_LINK):
        st.record_created(state, root.makedirs(WANTS_DIR))
        st.save(root, state)
        root.symlink(BOOT_FILE, BOOT_LINK)
        out("enabled %s (%s -> %s)" % (BOOT_UNIT, BOOT_LINK, BOOT_FILE))
        changed = True
    return changed


def unpersist(root, state, out):
    """Put back what persist replaced and remove what it created. Returns the failures."""
    failures = 0
    for path in sorted(state["persist"], reverse=True):
        rec = state["persist"][path]
        try:
            if rec.get("existed"):
                if rec.get("link") is not None:
                    if root.readlink(path) != rec["link"]:
                        root.remove(path)
                        root.symlink(rec["link"], path)
                elif rec.get("raw") is not None and root.read(path) != rec["raw"]:
                    root.write_atomic(path, rec["raw"])
                    out("restored %s" % path)
            elif root.exists(path):
                root.remove(path)
                out("removed %s" % path)
            del state["persist"][path]
        except st.WriteError as e:
            out("FAIL  %s" % e)
            failures += 1
    return failures
