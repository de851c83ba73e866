"""The settings catalogue: for each setting its recommended value, severity and reason, how
to read it, what `apply` writes to fix it, and how it is persisted.

Kinds of persistence:
- sysctl:  /etc/sysctl.d/60-ringrelay.conf
- limit:   the systemd drop-in of ringrelay.service (LimitNOFILE=, LimitMEMLOCK=)
- boot:    ringrelay-tune-boot.service runs `ringrelay-tune apply --only-nonsysctl` at boot
- service: the irqbalance unit is disabled

A setting's status is (current, ok, persisted, fix). ok is True, False, or None when the
current value cannot be read ("unknown"). Settings that do not apply to this machine (no
cpufreq, no NIC, one CPU) are ok with a current value starting with "n/a".
"""
import shlex

from . import needs as relay_needs
from .cpus import physical_nics, plan_cpus
from .fsroot import cpus_of, format_cpulist, format_mask, mask_of, parse_cpulist, parse_mask

REQUIRED = "required"
RECOMMENDED = "recommended"
INFINITY = float("inf")
UNKNOWN = "unknown"

BOOT_UNIT = "ringrelay-tune-boot.service"
RELAY_UNIT = "ringrelay.service"
UNIT_DIRS = ["/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system",
             "/usr/lib/systemd/system", "/lib/systemd/system"]
WANTS_DIR = "/etc/systemd/system/multi-user.target.wants"
SYSCTL_DIRS = ["/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d",
               "/lib/sysctl.d"]


class Status:
    def __init__(self, current, ok, persisted, fix=""):
        self.current, self.ok, self.persisted, self.fix = current, ok, persisted, fix


class Write:
    """Write `value` to a file. `restore` is what revert writes when the kernel refuses the
    original bytes (THP files read "always [madvise] never" but accept only one word)."""

    def __init__(self, path, value, sysctl=None, restore=None):
        self.path, self.value, self.sysctl, self.restore = path, value, sysctl, restore

    def command(self, root):
        if root.live and self.sysctl:
            return "sysctl -w %s" % shlex.quote("%s=%s" % (self.sysctl, self.value))
        return "echo %s > %s" % (shlex.quote(self.value), shlex.quote(root.path(self.path)))


class Systemctl:
    """A systemctl call; only ever run on the live system (--root /)."""

    def __init__(self, *args):
        self.args = list(args)

    def command(self, root):
        return "systemctl " + " ".join(self.args)


class Note:
    """Something apply cannot do; plan shows it as a comment."""

    def __init__(self, text):
        self.text = text


# ---- shared readers --------------------------------------------------------------------------


class Context:
    """Reads shared by several settings, computed once per run."""

    def __init__(self, root, ifaces=None, relay=None, relay_config=None):
        self.root = root
        self.ifaces = ifaces or None
        self.relay, self.relay_config = relay, relay_config
        self._cache = {}

    def relay_needs(self):
        """(needs by setting key, None), or (None, why unknown): see needs.py."""
        return self._memo("needs", lambda: relay_needs.ask(self.root, self.relay, self.relay_config))

    def _memo(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def cpu_plan(self):
        return self._memo("plan", lambda: plan_cpus(self.root, self.ifaces))

    def nics(self):
        return self._memo("nics", lambda: physical_nics(self.root, self.ifaces))

    def pids_named(self, name):
        """PIDs whose /proc/PID/comm is `name`, or None when /proc cannot be listed."""
        entries = self.root.listdir("/proc")
        if entries is None:
            return None
        pids = []
        for e in entries:
            if e.isdigit() and (self.root.read("/proc/%s/comm" % e) or "").strip() == name:
                pids.append(int(e))
        return sorted(pids)

    def sysctl_conf(self):
        """sysctl values configured for boot, as systemd-sysctl would apply them."""
        return self._memo("sysctl_conf", self._read_sysctl_conf)

    def _read_sysctl_conf(self):
        chosen = {}
        for d in SYSCTL_DIRS:
            for name in self.root.listdir(d) or []:
                if name.endswith(".conf") and name not in chosen:
                    chosen[name] = "%s/%s" % (d, name)
        files = [chosen[n] for n in sorted(chosen)] + ["/etc/sysctl.conf"]
        values = {}
        for path in files:
            for line in (self.root.read(path) or "").splitlines():
                line = line.strip()
                if not line or line[0] in "#;" or "=" not in line:
                    continue
                key, value = line.split("=", 1)
                key = key.strip().lstrip("-").replace("/", ".")
                values[key] = " ".join(value.split())
        return values

    def unit_directive(self, unit, directive):
        """The last value of [Service] `directive` in `unit` and its drop-ins, or None."""
        files = []
        for d in UNIT_DIRS:
            if self.root.exists("%s/%s" % (d, unit)):
                files.append("%s/%s" % (d, unit))
                break
        chosen = {}
        for d in UNIT_DIRS:
            for name in self.root.listdir("%s/%s.d" % (d, unit)) or []:
                if name.endswith(".conf") and name not in chosen:
                    chosen[name] = "%s/%s.d/%s" % (d, unit, name)
        files += [chosen[n] for n in sorted(chosen)]
        value = None
        for path in files:
            section = None
            for line in (self.root.read(path) or "").splitlines():
                line = line.strip()
                if line.startswith("[") and line.endswith("]"):
                    section = line[1:-1]
                elif section == "Service" and line.startswith(directive + "="):
                    value = line.split("=", 1)[1].strip()
        return value

    def unit_enabled(self, unit):
        return self.root.exists("%s/%s" % (WANTS_DIR, unit))

    def boot_persisted(self):
        ok = self.unit_enabled(BOOT_UNIT) and self.root.exists("/etc/systemd/system/" + BOOT_UNIT)
        return "yes" if ok else "no"


def _ints(text):
    try:
        return [int(x) for x in text.split()]
    except (AttributeError, ValueError):
        return None


def _summary(values, fmt=str):
    """One display string for a value read from several files (CPUs, queues, IRQs)."""
    known = [v for v in values.values() if v is not None]
    if not values:
        return UNKNOWN
    if len(known) == len(values) and len(set(map(fmt, known))) == 1:
        return fmt(known[0])
    if len(values) <= 4:
        return "; ".join("%s=%s" % (k, UNKNOWN if v is None else fmt(v)) for k, v in values.items())
    return "mixed (%d files)" % len(values)


def _all_ok(values, good):
    """True if every value is good, False if a known value is bad, else None (unknown)."""
    if any(v is not None and not good(v) for v in values):
        return False
    if any(v is None for v in values):
        return None
    return True


# ---- settings ----------------------------------------------------------------------------------


class Setting:
    key = ""
    severity = RECOMMENDED
    recommended = ""
    reason = ""
    kind = "boot"
    fix = "ringrelay-tune apply && ringrelay-tune persist"

    def status(self, ctx):
        raise NotImplementedError

    def actions(self, ctx):
        """What apply does now (only for parts that are off); [] when nothing."""
        return []


class Sysctl(Setting):
    kind = "sysctl"

    def __init__(self, key, want, cmp, severity, reason):
        self.key, self.want, self.cmp, self.severity, self.reason = key, want, cmp, severity, reason
        self.path = "/proc/sys/" + key.replace(".", "/")
        word = {"min": "at least ", "max": "at most ", "eq": "", "range": "covering "}[cmp]
        self.recommended = word + want
        self.fix = "sysctl -w %s; ringrelay-tune persist" % shlex.quote("%s=%s" % (key, want))

    def good(self, value):
        have, want = _ints(value), _ints(self.want)
        if not have or len(have) != len(want):
            return None
        if self.cmp == "min":
            return have[0] >= want[0]
        if self.cmp == "max":
            return have[0] <= want[0]
        if self.cmp == "range":
            return have[0] <= want[0] and have[1] >= want[1]
        return have == want

    def read(self, ctx):
        raw = ctx.root.read(self.path)
        return None if raw is None else " ".join(raw.split())

    def status(self, ctx):
        value = self.read(ctx)
        configured = ctx.sysctl_conf().get(self.key)
        persisted = "yes" if configured is not None and self.good(configured) else "no"
        if value is None and self.key == "kernel.io_uring_disabled" and ctx.root.isdir("/proc/sys/kernel"):
            # Kernels before 6.6 have no switch: io_uring cannot be disabled by sysctl.
            return Status("n/a (kernel has no switch)", True, "n/a")
        ok = None if value is None else self.good(value)
        current = UNKNOWN if value is None or ok is None else value
        return Status(current, ok, persisted, "" if ok else self.fix)

    def actions(self, ctx):
        if self.status(ctx).ok is False:
            return [Write(self.path, self.want, sysctl=self.key)]
        return []

    def persist_value(self, ctx):
        """What the sysctl.d file sets: the current value if it is already good (an admin's
        larger value is kept), else the recommended one."""
        value = self.read(ctx)
        return value if value is not None and self.good(value) else self.want


def _parse_limit(text):
    """'1024', 'unlimited', 'infinity', '64M', '1024:4096' (soft:hard) -> soft limit."""
    if text is None:
        return None
    text = text.strip().split(":")[0].strip().lower()
    if text in ("unlimited", "infinity"):
        return INFINITY
    scale = 1
    if text and text[-1] in "kmgtpe":
        scale = 1024 ** ("kmgtpe".index(text[-1]) + 1)
        text = text[:-1]
    try:
        return int(text) * scale
    except ValueError:
        return None


def _show_limit(v):
    return UNKNOWN if v is None else "unlimited" if v == INFINITY else str(v)


def _proc_limit(ctx, pid, label):
    text = ctx.root.read("/proc/%s/limits" % pid)
    for line in (text or "").splitlines():
        if line.startswith(label):
            fields = line[len(label):].split()
            return _parse_limit(fields[0]) if fields else None
    return None


class Limit(Setting):
    """A resource limit of the relay process. The limit of a running relay is read from
    /proc/PID/limits; with no relay running, the limit the service will get (its unit and
    drop-ins) or, failing that, this process's own limit (what `ringrelay serve` started from
    this shell would inherit) counts."""

    kind = "limit"
    fix = "ringrelay-tune persist; systemctl daemon-reload; systemctl restart ringrelay"

    def __init__(self, key, label, directive, want, accept, shown, severity, reason):
        self.key, self.label, self.directive = key, label, directive
        self.want, self.accept, self.recommended = want, accept, shown
        self.severity, self.reason = severity, reason

    def threshold(self, ctx):
        """(least acceptable value, how it was chosen): what the relay says it needs, or the
        recommended value when the relay cannot be asked."""
        needs, why = ctx.relay_needs()
        if needs is not None and self.key in needs:
            return needs[self.key], "the relay needs %d" % needs[self.key]
        return self.accept, "%s; held to %s" % (why or "the relay names no need", _show_limit(self.accept))

    def status(self, ctx):
        least, basis = self.threshold(ctx)

        def good(v):
            return v is not None and v >= least

        unit = _parse_limit(ctx.unit_directive(RELAY_UNIT, self.directive))
        persisted = "yes" if good(unit) else "no"
        pids = ctx.pids_named("ringrelay")
        if pids:
            have = _proc_limit(ctx, pids[0], self.label)
            ok = None if have is None else good(have)
            current = "%s (ringrelay pid %d)" % (_show_limit(have), pids[0])
        else:
            own = _proc_limit(ctx, "self", self.label)
            if good(unit) or good(own):
                ok = True
            else:
                ok = None if own is None else False
            current = "self %s, unit %s" % (_show_limit(own), "unset" if unit is None else _show_limit(unit))
        return Status("%s; %s" % (current, basis), ok, persisted, "" if ok else self.fix)

    def actions(self, ctx):
        if self.status(ctx).ok is False:
            return [Note("%s: a running process's limit is not changed; run `ringrelay-tune persist`"
                         " and restart ringrelay (or raise `ulimit` before `ringrelay serve`)" % self.key)]
        return []


class Governor(Setting):
    key = "cpu.governor"
    recommended = "performance"
    reason = ("Frequency scaling adds wake-up latency and lets cores clock down between bursts; "
              "a dedicated relay host should run its cores at full speed.")
    fix = "ringrelay-tune apply (or cpupower frequency-set -g performance); ringrelay-tune persist"

    def files(self, ctx):
        online = parse_cpulist(ctx.root.read("/sys/devices/system/cpu/online"))
        if online is None:
            return None
        return {"cpu%d" % c: "/sys/devices/system/cpu/cpu%d/cpufreq" % c for c in online
                if ctx.root.isdir("/sys/devices/system/cpu/cpu%d/cpufreq" % c)}

    def status(self, ctx):
        files = self.files(ctx)
        if files is None:
            return Status(UNKNOWN, None, ctx.boot_persisted(), self.fix)
        if not files:
            return Status("n/a (no cpufreq)", True, "n/a")
        values = {cpu: _word(ctx.root.read(d + "/scaling_governor")) for cpu, d in files.items()}
        ok = _all_ok(values.values(), lambda v: v == "performance")
        return Status(_summary(values), ok, ctx.boot_persisted(), "" if ok else self.fix)

    def actions(self, ctx):
        files = self.files(ctx) or {}
        out = []
        for cpu, d in files.items():
            value = _word(ctx.root.read(d + "/scaling_governor"))
            if value is None or value == "performance":
                continue
            available = ctx.root.read(d + "/scaling_available_governors")
            if available is not None and "performance" not in available.split():
                out.append(Note("%s: %s offers no performance governor (%s)" % (self.key, cpu, available.strip())))
            else:
                out.append(Write(d + "/scaling_governor", "performance"))
        return out


def _word(text):
    """The file's single word, or None (empty, several words, or not printable ASCII)."""
    if text is None:
        return None
    words = text.split()
    if len(words) != 1 or not (words[0].isascii() and words[0].isprintable()):
        return None
    return words[0]


def _selected(text):
    """'always [madvise] never' -> 'madvise'; a single word (a fixture, or after a write) is
    taken as is."""
    if text is None:
        return None
    for w in text.split():
        if w.startswith("[") and w.endswith("]"):
            return _word(w[1:-1])
    return _word(text)


class Thp(Setting):
    key = "vm.transparent_hugepage"
    recommended = "madvise (or never; not always)"
    reason = ("With 'always' the kernel compacts memory and collapses pages behind the relay's "
              "back, which shows up as latency spikes; 'madvise' keeps huge pages for programs "
              "that ask for them.")
    path = "/sys/kernel/mm/transparent_hugepage/enabled"

    def status(self, ctx):
        value = _selected(ctx.root.read(self.path))
        ok = None if value is None else value in ("madvise", "never")
        return Status(value or UNKNOWN, ok, ctx.boot_persisted(), "" if ok else self.fix)

    def actions(self, ctx):
        value = _selected(ctx.root.read(self.path))
        if value is not None and value not in ("madvise", "never"):
            return [Write(self.path, "madvise", restore=value)]
        return []


class Irqbalance(Setting):
    key = "irqbalance"
    kind = "service"
    recommended = "stopped and disabled"
    reason = ("irqbalance moves interrupts every few seconds and would undo the NIC interrupt "
              "pinning below. Detected by a process named irqbalance in /proc/PID/comm (running) "
              "and /etc/systemd/system/multi-user.target.wants/irqbalance.service (enabled).")
    fix = "systemctl disable --now irqbalance.service"
    unit = "irqbalance.service"

    def status(self, ctx):
        pids = ctx.pids_named("irqbalance")
        enabled = ctx.unit_enabled(self.unit)
        persisted = "no" if enabled else "yes"
        if pids is None:
            return Status(UNKNOWN, None, persisted, self.fix)
        current = "%s, %s" % ("running" if pids else "stopped", "enabled" if enabled else "disabled")
        ok = not pids
        return Status(current, ok, persisted, "" if ok and not enabled else self.fix)

    def actions(self, ctx):
        if ctx.pids_named("irqbalance"):
            return [Systemctl("stop", self.unit)]
        return []


class NicSetting(Setting):
    """One row per physical NIC; with no NIC, one n/a row."""

    def __init__(self, iface):
        self.iface = iface
        self.key = "%s.%s" % (self.base, iface or "*")

    def precheck(self, ctx):
        """A Status when the setting does not apply or cannot be read, else None."""
        if self.iface is None:
            nics = ctx.nics()
            return Status(UNKNOWN if nics is None else "n/a (no NIC found)",
                          None if nics is None else True, "n/a")
        plan = ctx.cpu_plan()
        if plan is None:
            return Status(UNKNOWN, None, ctx.boot_persisted(), self.fix)
        if plan.shared:
            return Status("n/a (one CPU)", True, "n/a")
        return None


class IrqAffinity(NicSetting):
    base = "nic.irq_affinity"
    recommended = "the irq cpus of `ringrelay-tune cpus`"
    reason = ("The NIC's interrupts are pinned to their own physical core so that relay workers "
              "are never interrupted by packet processing (perftune's sq_split). IRQs are the "
              "device's msi_irqs, else /proc/interrupts lines naming the interface or device.")

    def irqs(self, ctx):
        base = "/sys/class/net/%s/device" % self.iface
        msi = ctx.root.listdir(base + "/msi_irqs")
        if msi:
            return sorted(int(n) for n in msi if n.isdigit())
        table = ctx.root.read("/proc/interrupts")
        if table is None:
            return None
        link = ctx.root.readlink(base)
        names = [self.iface] + ([link.rstrip("/").rsplit("/", 1)[-1]] if link else [])
        irqs = []
        for line in table.splitlines()[1:]:
            head, _, rest = line.partition(":")
            if not head.strip().isdigit():
                continue
            for tok in rest.split():
                if any(tok == n or (tok.startswith(n) and tok[len(n)] in "-@_.:") for n in names):
                    irqs.append(int(head))
                    break
        return sorted(irqs)

    def read(self, ctx):
        irqs = self.irqs(ctx)
        if irqs is None:
            return None
        return {"irq%d" % i: parse_cpulist(ctx.root.read("/proc/irq/%d/smp_affinity_list" % i)) for i in irqs}

    def status(self, ctx):
        pre = self.precheck(ctx)
        if pre:
            return pre
        values = self.read(ctx)
        if values is None:
            return Status(UNKNOWN, None, ctx.boot_persisted(), self.fix)
        if not values:
            return Status("n/a (no IRQs found)", True, "n/a")
        want = ctx.cpu_plan().irq
        ok = _all_ok(values.values(), lambda v: v == want)
        return Status(_summary(values, format_cpulist), ok, ctx.boot_persisted(), "" if ok else self.fix)

    def actions(self, ctx):
        if self.precheck(ctx):
            return []
        want = ctx.cpu_plan().irq
        return [Write("/proc/irq/%s/smp_affinity_list" % irq[3:], format_cpulist(want))
                for irq, v in (self.read(ctx) or {}).items() if v is not None and v != want]


class QueueMasks(NicSetting):
    """rps_cpus / xps_cpus of each queue of a NIC."""

    def queues(self, ctx):
        names = ctx.root.listdir("/sys/class/net/%s/queues" % self.iface)
        if names is None:
            return None
        qs = [n for n in names if n.startswith(self.prefix) and n[len(self.prefix):].isdigit()]
        return sorted(qs, key=lambda n: int(n[len(self.prefix):]))

    def file(self, q):
        return "/sys/class/net/%s/queues/%s/%s" % (self.iface, q, self.filename)

    def wanted(self, ctx, queues):
        raise NotImplementedError

    def status(self, ctx):
        pre = self.precheck(ctx)
        if pre:
            return pre
        queues = self.queues(ctx)
        if queues is None:
            return Status(UNKNOWN, None, ctx.boot_persisted(), self.fix)
        want = self.wanted(ctx, queues)
        if want is None:
            return Status("n/a (%d queue%s)" % (len(queues), "s" if len(queues) != 1 else ""), True, "n/a")
        values = {q: parse_mask(ctx.root.read(self.file(q))) for q in queues}
        ok = _all_ok([values[q] == want[q] if values[q] is not None else None for q in queues],
                     lambda v: v)
        shown = {q: v for q, v in values.items()}
        return Status(_summary(shown, lambda m: format_cpulist(cpus_of(m)) or "none"), ok,
                      ctx.boot_persisted(), "" if ok else self.fix)

    def actions(self, ctx):
        if self.precheck(ctx):
            return []
        queues = self.queues(ctx) or []
        want = self.wanted(ctx, queues)
        out = []
        for q in queues if want else []:
            raw = ctx.root.read(self.file(q))
            have = parse_mask(raw)
            if have is not None and have != want[q]:
                out.append(Write(self.file(q), format_mask(want[q], raw)))
        return out


class Rps(QueueMasks):
    base = "nic.rps"
    prefix = "rx-"
    filename = "rps_cpus"
    recommended = "the relay cpus of `ringrelay-tune cpus` on every rx queue"
    reason = ("With the NIC's interrupts on one core, RPS hands the network stack's per-packet "
              "work to the relay CPUs instead of piling it on the interrupt core.")

    def wanted(self, ctx, queues):
        if not queues:
            return None
        relay = mask_of(ctx.cpu_plan().relay)
        return {q: relay for q in queues}


class Xps(QueueMasks):
    base = "nic.xps"
    prefix = "tx-"
    filename = "xps_cpus"
    recommended = "online CPUs spread round-robin over the tx queues"
    reason = ("Each CPU sends on its own tx queue, so sending relay workers do not contend for a "
              "queue lock. Not applicable with a single tx queue.")

    def wanted(self, ctx, queues):
        if len(queues) < 2:
            return None
        plan = ctx.cpu_plan()
        online = sorted(set(plan.relay) | set(plan.irq))
        return {q: mask_of(online[i::len(queues)]) for i, q in enumerate(queues)}


def catalogue(ctx):
    """Every setting, in a fixed order (the order of check's output and of apply)."""
    s = [
        Sysctl("kernel.io_uring_disabled", "0", "eq", REQUIRED,
               "ringrelay is built on io_uring; 1 or 2 make io_uring_setup fail (kernel 6.6+)."),
        Sysctl("fs.nr_open", "1048576", "min", REQUIRED,
               "Upper bound for any process's open-files limit; LimitNOFILE cannot exceed it."),
        # `accept` is used only when the relay binary cannot say what it needs (needs.py).
        Limit("limit.nofile", "Max open files", "LimitNOFILE", 1048576, 1048576, "1048576",
              REQUIRED, "One descriptor per client connection; ok when the limit covers what "
              "the relay needs with its config (`ringrelay serve --print-host-needs`); persist "
              "writes 1048576 so the connection bound, not the limit, decides."),
        Limit("limit.memlock", "Max locked memory", "LimitMEMLOCK", INFINITY, 64 << 20,
              "unlimited", REQUIRED,
              "Each worker pins its provided-buffer ring (16 B per recv buffer); ok when the "
              "limit covers what the relay needs with its config (`ringrelay serve "
              "--print-host-needs`); persist writes unlimited."),
        Sysctl("net.core.somaxconn", "65535", "min", RECOMMENDED,
               "Caps the listen backlog; after a relay restart thousands of clients reconnect at "
               "once and an overflowing accept queue drops their SYNs (1 s retry)."),
        Sysctl("net.ipv4.tcp_max_syn_backlog", "65535", "min", RECOMMENDED,
               "Half-open connections queued during a reconnect storm."),
        Sysctl("net.core.rmem_max", "16777216", "min", RECOMMENDED,
               "Largest receive buffer a socket may ask for; 16 MiB covers high bandwidth-delay "
               "links between relays."),
        Sysctl("net.core.wmem_max", "16777216", "min", RECOMMENDED,
               "Largest send buffer a socket may ask for (see rmem_max)."),
        Sysctl("net.core.netdev_max_backlog", "16384", "min", RECOMMENDED,
               "Packets queued per CPU between the NIC and the stack; the default 1000 drops "
               "packets in bursts at 10G+."),
        Sysctl("net.ipv4.ip_local_port_range", "1024 65535", "range", RECOMMENDED,
               "Ephemeral ports for outgoing connections (relay to relay, load generators on "
               "the host); the default 32768-60999 allows only 28k per destination."),
        Sysctl("vm.swappiness", "1", "max", RECOMMENDED,
               "A relay whose buffers are swapped out stalls every connection of that worker; "
               "1 swaps only to avoid an out-of-memory kill."),
        Sysctl("net.core.busy_poll", "50", "min", RECOMMENDED,
               "Microseconds to busy-poll the NIC in poll/epoll before sleeping: lower latency "
               "for CPU time, right on a dedicated host (TuneD network-latency uses 50)."),
        Sysctl("net.core.busy_read", "50", "min", RECOMMENDED,
               "Microseconds to busy-poll on socket reads (see busy_poll)."),
        Governor(),
        Thp(),
        Irqbalance(),
    ]
    nics = ctx.nics()
    for cls in (IrqAffinity, Rps, Xps):
        if nics:
            s.extend(cls(n) for n in nics)
        else:
            s.append(cls(None))
    return s
