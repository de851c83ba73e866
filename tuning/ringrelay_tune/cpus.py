"""CPU topology, and which CPUs go to relay workers and which to NIC interrupts.

The split follows Seastar perftune's "sq_split" mode: all of a NIC's interrupts go to one
whole physical core (every hyperthread of it) on the NIC's NUMA node, so no relay worker
shares a core with interrupt handling; RPS then spreads the network stack's per-packet
work over the relay CPUs. Hosts with more than 16 physical cores on the NIC's node give
one more interrupt core per 16 cores. Small machines:

- 1 CPU: the relay and the interrupts share CPU 0 (nothing to split).
- 2 CPUs (or one core with two threads): interrupts on the first CPU, relay on the other.
"""
import re

from .fsroot import format_cpulist, parse_cpulist

CPU_DIR = "/sys/devices/system/cpu"
NODE_DIR = "/sys/devices/system/node"
NET_DIR = "/sys/class/net"
CORES_PER_IRQ_CORE = 16


def _int(text):
    try:
        return int(text.strip())
    except (AttributeError, ValueError):
        return None


def physical_nics(root, only=None):
    """Interfaces backed by a device (not lo, bridges, veth...), sorted; None if unknown."""
    names = root.listdir(NET_DIR)
    if names is None:
        return None
    nics = [n for n in names if n != "lo" and root.exists("%s/%s/device" % (NET_DIR, n))]
    if only:
        nics = [n for n in nics if n in only]
    return nics


class Topology:
    def __init__(self, online, core_of, node_of):
        self.online = online  # sorted CPU ids
        self.core_of = core_of  # cpu -> core key (sortable); siblings share it
        self.node_of = node_of  # cpu -> NUMA node

    def cores(self, cpus):
        """Physical cores among `cpus`, each a sorted CPU list, in order of first CPU."""
        by_core = {}
        for c in sorted(cpus):
            by_core.setdefault(self.core_of[c], []).append(c)
        return sorted(by_core.values())


def read_topology(root):
    online = parse_cpulist(root.read(CPU_DIR + "/online"))
    if not online:
        names = root.listdir(CPU_DIR) or []
        online = sorted(int(n[3:]) for n in names if re.fullmatch(r"cpu[0-9]+", n))
    if not online:
        return None
    core_of = {}
    for c in online:
        topo = "%s/cpu%d/topology" % (CPU_DIR, c)
        siblings = parse_cpulist(root.read(topo + "/thread_siblings_list"))
        siblings = [s for s in (siblings or []) if s in online]
        package = _int(root.read(topo + "/physical_package_id"))
        if siblings:
            core_of[c] = (package or 0, min(siblings))
        else:
            core_id = _int(root.read(topo + "/core_id"))
            core_of[c] = (package or 0, "core", core_id) if core_id is not None else (0, "cpu", c)
    # Siblings found only through core_id: key the core by its first CPU so keys compare.
    first = {}
    for c in online:
        first.setdefault(core_of[c], c)
    core_of = {c: first[core_of[c]] for c in online}
    node_of = {c: 0 for c in online}
    for name in root.listdir(NODE_DIR) or []:
        if re.fullmatch(r"node[0-9]+", name):
            for c in parse_cpulist(root.read("%s/%s/cpulist" % (NODE_DIR, name))) or []:
                if c in node_of:
                    node_of[c] = int(name[4:])
    return Topology(online, core_of, node_of)


class CpuPlan:
    def __init__(self, relay, irq, shared, note):
        self.relay = relay
        self.irq = irq
        self.shared = shared  # True when relay and interrupts must share CPUs (1 CPU)
        self.note = note


def plan_cpus(root, only_nics=None, one_per_core=False):
    topo = read_topology(root)
    if topo is None:
        return None
    online = topo.online
    nodes = sorted(set(topo.node_of.values()))
    nics = physical_nics(root, only_nics) or []
    nic_nodes = {}
    for n in nics:
        node = _int(root.read("%s/%s/device/numa_node" % (NET_DIR, n)))
        nic_nodes[n] = node if node in nodes else None
    irq_nodes = sorted({v for v in nic_nodes.values() if v is not None}) or [topo.node_of[online[0]]]
    cores = topo.cores(online)
    threads = max(len(c) for c in cores)
    shape = "%d CPU%s, %d core%s%s, %d NUMA node%s" % (
        len(online), "s" if len(online) != 1 else "",
        len(cores), "s" if len(cores) != 1 else "",
        " x %d threads" % threads if threads > 1 else "",
        len(nodes), "s" if len(nodes) != 1 else "")
    where = ", ".join(
        "%s on node %s" % (n, v if v is not None else "unknown") for n, v in sorted(nic_nodes.items())
    ) or "no NIC found"

    if len(online) == 1:
        return CpuPlan(online, online, True,
                       "%s; %s; one CPU: relay and interrupts share it" % (shape, where))
    irq = []
    for node in irq_nodes:
        node_cores = topo.cores([c for c in online if topo.node_of[c] == node])
        n = max(1, -(-len(node_cores) // CORES_PER_IRQ_CORE))
        for core in node_cores[:n]:
            irq.extend(core)
    irq = sorted(irq)
    relay = [c for c in online if c not in irq]
    why = "interrupts on whole core%s (CPU%s %s)" % (
        "s" if len(irq) > threads else "", "s" if len(irq) > 1 else "", format_cpulist(irq))
    if not relay:
        # One core with two threads, or every core needed for interrupts: give the
        # interrupts only the first CPU of the first interrupt node.
        first = min(c for c in online if topo.node_of[c] == irq_nodes[0])
        irq = [first]
        relay = [c for c in online if c != first]
        why = "too few cores to split whole cores: interrupts on CPU %d" % first
    if one_per_core:
        relay = [core[0] for core in topo.cores(relay)]
        why += ", relay on one thread per core"
    return CpuPlan(relay, irq, False, "%s; %s; %s, relay workers on the other %d CPU%s" % (
        shape, where, why, len(relay), "s" if len(relay) != 1 else ""))


def cpus_report(root, only_nics=None, one_per_core=False):
    """The `cpus` verb's lines, or None when the topology cannot be read."""
    plan = plan_cpus(root, only_nics, one_per_core)
    if plan is None:
        return None
    irq = "irq cpus: %s" % format_cpulist(plan.irq)
    if plan.shared:
        irq += " (shared with the relay)"
    return ["--cpus %s" % format_cpulist(plan.relay), irq, "note: " + plan.note]

