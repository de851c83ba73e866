"""The verbs: check (default), plan, apply, persist, revert, cpus."""
import argparse
import json
import subprocess
import sys

from . import persist as ps
from . import state as st
from .cpus import cpus_report
from .fsroot import Root, WriteError
from .settings import REQUIRED, Context, Irqbalance, Note, Sysctl, Systemctl, Write, catalogue

VERBS = ("check", "plan", "apply", "persist", "revert", "cpus")
COLUMNS = ("setting", "current", "recommended", "ok", "severity", "persisted", "fix")


def out(line=""):
    print(line, flush=True)


def err(line):
    print("ringrelay-tune: " + line, file=sys.stderr, flush=True)


def parse_args(argv):
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", default="/", metavar="DIR",
                        help="prefix for every path read or written (default /: this machine)")
    common.add_argument("--iface", action="append", default=[], metavar="IF",
                        help="only this NIC (repeatable; default: every NIC with a device)")
    common.add_argument("--relay", metavar="BIN",
                        help="the ringrelay binary that says what the relay needs (default: "
                             "/usr/bin/ringrelay, /usr/local/bin/ringrelay, then PATH)")
    common.add_argument("--config", metavar="FILE",
                        help="the relay's config file the needs are computed for (default: "
                             "/etc/ringrelay/ringrelay.toml when it exists)")
    p = argparse.ArgumentParser(prog="ringrelay-tune", description=(
        "Check and tune a host for ringrelay. The verb defaults to check. See tuning/README.md."))
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    c = sub.add_parser("check", parents=[common], help="compare settings with the recommendations (read-only)")
    c.add_argument("--json", action="store_true", help="a JSON list instead of a table")
    for verb, text in (("plan", "print the commands apply would run"),
                       ("apply", "change what is off, saving the originals first")):
        a = sub.add_parser(verb, parents=[common], help=text)
        a.add_argument("--only", action="append", default=[], metavar="KEY",
                       help="only settings whose key starts with KEY (repeatable)")
        a.add_argument("--only-nonsysctl", action="store_true",
                       help="skip sysctls (the boot unit uses this; sysctl.d covers them)")
    sub.add_parser("persist", parents=[common], help="write sysctl.d and systemd drop-ins and the boot unit")
    sub.add_parser("revert", parents=[common], help="restore the saved originals, remove persisted files")
    cp = sub.add_parser("cpus", parents=[common], help="which CPUs for relay workers and for NIC interrupts")
    cp.add_argument("--one-per-core", action="store_true", help="one relay CPU per physical core")
    # The verb may come after options; with none, it is check.
    args = list(argv)
    i, verb_at = 0, None
    while i < len(args):
        if args[i] in ("--root", "--iface", "--relay", "--config"):
            i += 2
            continue
        if args[i] in VERBS:
            verb_at = i
            break
        if args[i] in ("-h", "--help") and i == 0:
            break
        i += 1
    if verb_at is None:
        if args and not args[0].startswith("-"):
            p.error("unknown verb %r (choose from %s)" % (args[0], ", ".join(VERBS)))
        if not (args and args[0] in ("-h", "--help")):
            args.insert(0, "check")
    else:
        args.insert(0, args.pop(verb_at))
    return p.parse_args(args)


def selected(settings, args):
    chosen = []
    for s in settings:
        if getattr(args, "only_nonsysctl", False) and isinstance(s, Sysctl):
            continue
        if getattr(args, "only", None) and not any(s.key.startswith(k) for k in args.only):
            continue
        chosen.append(s)
    return chosen


def rows(ctx, settings):
    result = []
    for s in settings:
        status = s.status(ctx)
        result.append({
            "setting": s.key,
            "current": status.current,
            "recommended": s.recommended,
            "ok": status.ok,
            "severity": s.severity,
            "persisted": status.persisted,
            "fix": status.fix,
            "reason": s.reason,
        })
    return result


def show_ok(v):
    return "yes" if v is True else "NO" if v is False else "unknown"


def cmd_check(ctx, args):
    table = rows(ctx, catalogue(ctx))
    if args.json:
        out(json.dumps(table, indent=2))
    else:
        cells = [[c.upper() for c in COLUMNS]]
        for r in table:
            cells.append([show_ok(r[c]) if c == "ok" else str(r[c]) for c in COLUMNS])
        widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
        for row in cells:
            out("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        off = [r["setting"] for r in table if r["severity"] == REQUIRED and r["ok"] is False]
        unknown = [r["setting"] for r in table if r["ok"] is None]
        out()
        out("required settings off: " + ", ".join(off) if off else "every required setting is ok")
        if unknown:
            out("unknown (could not read): " + ", ".join(unknown))
    return 1 if any(r["severity"] == REQUIRED and r["ok"] is False for r in table) else 0


def planned(ctx, args):
    return [(s, s.actions(ctx)) for s in selected(catalogue(ctx), args)]


def cmd_plan(ctx, args):
    commands = 0
    for s, actions in planned(ctx, args):
        for a in actions:
            if isinstance(a, Note):
                out("# " + a.text)
            elif isinstance(a, Systemctl) and not ctx.root.live:
                out("# %s: not run under --root: %s" % (s.key, a.command(ctx.root)))
            else:
                out(a.command(ctx.root))
                commands += 1
    if not commands:
        out("nothing to do")
    return 0


def run_systemctl(a):
    cmd = ["systemctl"] + a.args
    try:
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    except OSError as e:
        raise WriteError("cannot run %s: %s" % (" ".join(cmd), e.strerror)) from None
    if done.returncode != 0:
        raise WriteError("%s failed: %s" % (" ".join(cmd), done.stderr.strip()))


def service_state(ctx, unit):
    return {"active": bool(ctx.pids_named(unit.split(".")[0])), "enabled": ctx.unit_enabled(unit)}


def cmd_apply(ctx, args):
    root = ctx.root
    plan = planned(ctx, args)
    state = st.load(root)
    # Save the originals of everything about to change, once, before changing anything.
    failures = 0
    for s, actions in plan:
        for a in actions:
            try:
                if isinstance(a, Write):
                    st.record_file(root, state, a.path, a.restore)
                elif isinstance(a, Systemctl) and root.live and isinstance(s, Irqbalance):
                    state["services"].setdefault(s.unit, service_state(ctx, s.unit))
            except WriteError as e:
                err(str(e))
                return 1
    if any(isinstance(a, Write) or (isinstance(a, Systemctl) and root.live)
           for _, actions in plan for a in actions):
        try:
            st.save(root, state)
        except WriteError as e:
            err("%s; nothing was changed" % e)
            return 1
    for s, actions in plan:
        before = s.status(ctx)
        if not actions:
            word = "ok" if before.ok else "unknown" if before.ok is None else "off"
            out("%-5s %s: %s" % ("skip", s.key, "%s (%s)" % (before.current, word)))
            continue
        for a in actions:
            try:
                if isinstance(a, Note):
                    out("note  %s" % a.text)
                elif isinstance(a, Systemctl):
                    if not root.live:
                        out("skip  %s: services are not touched under --root (%s)" % (s.key, a.command(root)))
                        continue
                    run_systemctl(a)
                    out("run   %s" % a.command(root))
                else:
                    root.write(a.path, a.value + "\n")
                    out("set   %s: %s <- %s" % (s.key, a.path, a.value))
            except WriteError as e:
                out("FAIL  %s: %s" % (s.key, e))
                failures += 1
        after = s.status(ctx)
        if after.ok is False and any(not isinstance(a, Note) for a in actions):
            if not (isinstance(s, Irqbalance) and not root.live):
                out("FAIL  %s: reads %s after the change, expected %s" % (s.key, after.current, s.recommended))
                failures += 1
    return 1 if failures else 0


def cmd_persist(ctx, args):
    root = ctx.root
    try:
        changed = ps.persist(ctx, catalogue(ctx), out)
        irq = Irqbalance()
        if ctx.unit_enabled(irq.unit):
            if root.live:
                state = st.load(root)
                state["services"].setdefault(irq.unit, service_state(ctx, irq.unit))
                st.save(root, state)
                run_systemctl(Systemctl("disable", irq.unit))
                out("run   systemctl disable %s" % irq.unit)
            else:
                out("skip  irqbalance: services are not touched under --root (systemctl disable %s)" % irq.unit)
        if root.live and changed:
            run_systemctl(Systemctl("daemon-reload"))
    except (WriteError, st.StateError) as e:
        out("FAIL  %s" % e)
        return 1
    return 0


def cmd_revert(ctx, args):
    root = ctx.root
    if not st.exists(root):
        out("nothing to revert (no %s)" % st.STATE_FILE)
        return 0
    state = st.load(root)
    failures = 0
    for path in sorted(state["files"]):
        rec = state["files"][path]
        if root.read(path) == rec["raw"]:
            out("same  %s" % path)
        else:
            try:
                try:
                    root.write(path, rec["raw"])
                except WriteError:
                    if rec.get("restore") is None:
                        raise
                    root.write(path, rec["restore"] + "\n")
                out("restored %s" % path)
            except WriteError as e:
                out("FAIL  %s" % e)
                failures += 1
                continue
        del state["files"][path]
    for unit in sorted(state["services"]):
        was = state["services"][unit]
        try:
            if root.live:
                if was.get("enabled"):
                    run_systemctl(Systemctl("enable", unit))
                    out("run   systemctl enable %s" % unit)
                if was.get("active"):
                    run_systemctl(Systemctl("start", unit))
                    out("run   systemctl start %s" % unit)
            del state["services"][unit]
        except WriteError as e:
            out("FAIL  %s" % e)
            failures += 1
    had_persist = bool(state["persist"])
    failures += ps.unpersist(root, state, out)
    if root.live and had_persist:
        try:
            run_systemctl(Systemctl("daemon-reload"))
        except WriteError as e:
            out("FAIL  %s" % e)
            failures += 1
    if failures:
        st.save(root, state)
        out("%d failure%s; %s keeps what is left to revert" % (failures, "s" if failures > 1 else "", st.STATE_FILE))
        return 1
    try:
        root.remove(st.STATE_FILE)
    except WriteError as e:
        out("FAIL  %s" % e)
        return 1
    for d in sorted(state["created_dirs"], key=len, reverse=True):
        root.rmdir_if_empty(d)
    out("reverted; removed %s" % st.STATE_FILE)
    return 0


def cmd_cpus(ctx, args):
    lines = cpus_report(ctx.root, ctx.ifaces, args.one_per_core)
    if lines is None:
        err("cannot read the CPU topology under %s" % ctx.root.path("/sys/devices/system/cpu"))
        return 1
    for line in lines:
        out(line)
    return 0


def main(argv):
    args = parse_args(argv)
    if args.verb is None:
        return 2
    ctx = Context(Root(args.root), args.iface, args.relay, args.config)
    if not ctx.root.isdir("/"):
        err("--root %s is not a directory" % args.root)
        return 2
    verb = {"check": cmd_check, "plan": cmd_plan, "apply": cmd_apply, "persist": cmd_persist,
            "revert": cmd_revert, "cpus": cmd_cpus}[args.verb]
    try:
        return verb(ctx, args)
    except st.StateError as e:
        err(str(e))
        return 1
    except BrokenPipeError:
        return 1
