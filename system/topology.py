"""The machine's I/O topology as a graph, and the paths data takes between two devices.

Nodes: NUMA memory ("mem:N"), PCIe host bridges / root complexes ("pci0000:00"),
PCI functions (by address) and network interfaces ("net:eth0").  Each PCI
function has an edge to its parent.  Edges from an endpoint or a switch's
upstream port are physical links; edges from a root port or a switch's
downstream port are inside the root complex or the switch.  A function on a
root bus with no port above it (integrated, or any device of a flat VM bus)
counts as one link of unknown speed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import iommu as iommu_mod
from .fsview import FsView
from .netlinks import read_links
from .pci import Link, PciDevice, read_devices

if TYPE_CHECKING:
    import networkx as nx

# Ports whose edge to their parent is internal wiring, not a PCIe link.
INTERNAL_PORTS = ("root-port", "switch-downstream")


@dataclass
class Topology:
    devices: list[PciDevice]
    links: list[dict[str, Any]]
    iommu: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def device(self, address: str) -> PciDevice:
        return next(d for d in self.devices if d.address == address)

    def host_numa(self, host_bridge: str) -> int | None:
        """A root complex's NUMA node: that of the first device under it that has one."""
        return next(
            (
                d.numa_node
                for d in self.devices
                if d.host_bridge == host_bridge and d.numa_node is not None
            ),
            None,
        )

    def as_dict(self) -> dict[str, Any]:
        devices = []
        for d in self.devices:
            st = link_state(self, d)
            devices.append({**d.as_dict(), "link_downgraded": bool(st and st["downgraded"])})
        return {
            "devices": devices,
            "links": self.links,
            "iommu": {k: self.iommu[k] for k in ("present", "vendor", "mode", "groups")},
            "notes": self.notes,
        }


def collect(root: str = "/", view: FsView | None = None) -> Topology:
    """Read the PCI tree, the network links and the IOMMU groups; never raises for missing files."""
    view = view or FsView(root)
    notes: list[str] = []
    devices = read_devices(view)
    if not view.exists("sys/bus/pci"):
        notes.append("no /sys/bus/pci: this machine (or container) shows no PCI bus at all")
    elif not devices:
        notes.append(
            "/sys/bus/pci/devices is empty: no PCI devices visible here "
            "(a container without /sys of the host, or a VM with MMIO-only devices)"
        )
    elif not any(d.link for d in devices):
        notes.append(
            "no PCIe link attributes in sysfs: the bus is emulated conventional PCI "
            "(typical of VMs), so link speeds and widths are unknown"
        )
    if devices and all(
        d.kind not in ("root-port", "switch-upstream", "switch-downstream") for d in devices
    ):
        notes.append(
            "flat bus: no PCIe bridges or switches visible (a VM usually hides the "
            "host's real topology)"
        )
    if devices and not any(d.kind == "gpu" for d in devices):
        notes.append("no GPU on the PCI bus")
    links, link_notes = read_links(view)
    snap = iommu_mod.snapshot(root, view=view)
    if not snap["present"]:
        notes.append("no IOMMU: devices have no IOMMU groups")
    return Topology(devices, links, snap, notes + link_notes)


def build_graph(topo: Topology) -> nx.Graph:
    """Undirected: paths run both ways.  Each edge's "up" names its end nearer memory."""
    import networkx as nx  # only drawing needs it: collect() runs on bare machines too

    g = nx.Graph()
    hosts = sorted({d.host_bridge for d in topo.devices})
    numas = sorted({topo.host_numa(h) for h in hosts}, key=lambda n: -1 if n is None else n)
    for n in numas or [None]:
        g.add_node(_mem(n), kind="memory", label=f"CPU / memory{'' if n is None else f' node {n}'}")
    for a, b in zip(numas, numas[1:], strict=False):
        g.add_edge(_mem(a), _mem(b), kind="smp", label="inter-socket", up=_mem(a))
    for h in hosts:
        g.add_node(h, kind="root-complex", label=f"root complex {h}")
        g.add_edge(h, _mem(topo.host_numa(h)), kind="host", label="", up=_mem(topo.host_numa(h)))
    for d in topo.devices:
        g.add_node(d.address, kind=d.kind, label=_label(d), device=d)
    for d in topo.devices:
        up = d.parent if d.parent in g else d.host_bridge
        if d.kind in INTERNAL_PORTS:
            g.add_edge(d.address, up, kind="internal", link=None, label="", up=up)
            continue
        st = link_state(topo, d)
        g.add_edge(
            d.address,
            up,
            kind="pcie",
            link=st["link"] if st else None,
            downgraded=bool(st and st["downgraded"]),
            label=st["describe"] if st else "",
            up=up,
        )
    for ln in topo.links:
        if ln.get("pci") in g:
            g.add_node(f"net:{ln['name']}", kind="netdev", label=_net_label(ln))
            g.add_edge(f"net:{ln['name']}", ln["pci"], kind="function", label="", up=ln["pci"])
    return g


def _mem(numa: int | None) -> str:
    return f"mem:{'?' if numa is None else numa}"


def _label(d: PciDevice) -> str:
    head = d.label or d.kind
    parts = [f"{head}  {d.address}", d.model or d.name]
    if d.driver:
        parts.append(f"driver {d.driver}")
    if d.iommu_group is not None:
        parts.append(f"IOMMU group {d.iommu_group}")
    return "\n".join(parts)


def _net_label(ln: dict[str, Any]) -> str:
    speed = f"{ln['speed_mbps'] // 1000} Gb/s" if ln.get("speed_mbps") else "speed ?"
    rdma = f"  RDMA {','.join(ln['rdma'])}" if ln.get("rdma") else ""
    return f"{ln['name']} ({ln.get('state') or '?'}, {speed}){rdma}"


# -- endpoints and paths ------------------------------------------------------


def resolve(topo: Topology, name: str) -> PciDevice:
    """A PCI device from a user's name: gpuN, a netdev, an RDMA or block device, or an address."""
    for d in topo.devices:
        if name in (d.address, d.label) or name in d.netdevs or name in d.rdma or name in d.block:
            return d
        if re.fullmatch(r"[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]", name) and d.address.endswith(name):
            return d
    for ln in topo.links:
        if ln["name"] == name:
            raise LookupError(
                f"{name} is not backed by a PCI device "
                f"({ln.get('kind') or ln.get('type') or 'virtual'} link)"
            )
    if re.fullmatch(r"gpu\d+", name):
        n = sum(d.kind == "gpu" for d in topo.devices)
        raise LookupError(f"no {name}: this machine has {n} GPU(s) on its PCI bus")
    raise LookupError(
        f"no device called {name} (try a netdev, gpuN, an RDMA device or a PCI address)"
    )


def _chain(topo: Topology, d: PciDevice) -> list[PciDevice]:
    """`d` and its upstream bridges, nearest first."""
    by_addr = {x.address: x for x in topo.devices}
    out = [d]
    while out[-1].parent in by_addr and len(out) < 64:
        out.append(by_addr[out[-1].parent])
    return out


def _link_of(d: PciDevice, by_addr: dict[str, PciDevice]) -> Link | None:
    """The link above `d`: its own status, else the port's below which it sits (same link)."""
    if d.link and d.link.cur_speed:
        return d.link
    parent = by_addr.get(d.parent or "")
    return parent.link if parent and parent.kind in INTERNAL_PORTS and parent.link else d.link


def _crossed(topo: Topology, segment: list[PciDevice]) -> list[tuple[PciDevice, Link | None]]:
    """The physical links an up-chain segment crosses (internal port edges skipped)."""
    by_addr = {d.address: d for d in topo.devices}
    return [(d, _link_of(d, by_addr)) for d in segment if d.kind not in INTERNAL_PORTS]


def _bound(crossed: list[tuple[PciDevice, Link | None]]) -> dict[str, Any]:
    """The narrowest link along a path, now and as capable (GB/s per direction)."""
    now = [(g, d, ln) for d, ln in crossed if ln and (g := ln.gbps())]
    cap = [g for _, ln in crossed if ln and (g := ln.gbps("max"))]
    res: dict[str, Any] = {
        "pcie_links": len(crossed),
        "gbps": None,
        "max_gbps": min(cap) if cap else None,
        "bottleneck": None,
        "unknown_links": len(crossed) - len(now),
        "links": [{"below": d.address, "link": ln.describe() if ln else None} for d, ln in crossed],
    }
    if now:
        gbps, d, ln = min(now, key=lambda x: x[0])
        res.update(gbps=gbps, bottleneck=f"{d.address} {ln.describe()}")
    return res


def path(topo: Topology, src: str, dst: str) -> dict[str, Any]:
    """Host-staged and peer-to-peer paths between two devices, with link crossings and bounds."""
    a, b = resolve(topo, src), resolve(topo, dst)
    if a.address == b.address:
        raise LookupError(f"{src} and {dst} are the same PCI function ({a.address})")
    ca, cb = _chain(topo, a), _chain(topo, b)
    numa_a, numa_b = topo.host_numa(a.host_bridge), topo.host_numa(b.host_bridge)

    # Host-staged: each device DMAs to/from host memory through its whole upstream chain.
    staged_hops = [f"{d.address}" for d in ca] + [a.host_bridge, _mem(numa_a)]
    if numa_a != numa_b:
        staged_hops.append(_mem(numa_b))
    staged_hops += [b.host_bridge] + [d.address for d in reversed(cb)]
    staged = {
        "hops": _dedupe(staged_hops),
        "host_memory_passes": 2,  # written by one device, read by the other
        "crosses_sockets": numa_a != numa_b and None not in (numa_a, numa_b),
        **_bound(_crossed(topo, ca) + _crossed(topo, cb)),
    }

    # Peer-to-peer: up to the lowest common bridge, or through the root complex(es).
    common = next((x for x in ca if x.address in {y.address for y in cb}), None)
    if common is not None:
        up = ca[: ca.index(common)]
        down = cb[: [y.address for y in cb].index(common.address)]
        p2p_hops = [d.address for d in up] + [common.address] + [d.address for d in reversed(down)]
        single_switch = len(up) <= 2 and len(down) <= 2 and common.kind == "switch-upstream"
        cls = "PIX" if single_switch or (len(up) == 1 and len(down) == 1) else "PXB"
    else:
        up, down = ca, cb
        if a.host_bridge == b.host_bridge:
            cls, mid = "PHB", [a.host_bridge]
        else:
            cls = "SYS" if numa_a != numa_b else "NODE"
            mid = (
                [a.host_bridge]
                + ([_mem(numa_a), _mem(numa_b)] if cls == "SYS" else [])
                + [b.host_bridge]
            )
        p2p_hops = [d.address for d in up] + mid + [d.address for d in reversed(down)]
    p2p = {
        "hops": _dedupe(p2p_hops),
        "class": cls,
        **_bound(_crossed(topo, up) + _crossed(topo, down)),
    }
    # A NIC cannot move more than its network link carries, whatever its PCIe link.
    wire = [
        (n, ln["speed_mbps"] / 8000)
        for n in (src, dst)
        for ln in topo.links
        if ln["name"] == n and ln.get("speed_mbps")
    ]
    for p in (staged, p2p):
        p["network_gbps"] = min((g for _, g in wire), default=None)

    notes = []
    snap = topo.iommu
    translated = [
        g
        for g in snap.get("groups", [])
        if g["type"] in ("DMA", "DMA-FQ") and {a.address, b.address} & set(g["devices"])
    ]
    if translated and cls in ("PIX", "PXB"):
        notes.append(
            "the IOMMU translates these devices' DMA: where the switch ports have "
            "ACS, Linux turns on P2P request redirect, so peer writes go up to the root "
            "complex for translation and P2P behaves like PHB (unless ATS is used)"
        )
    if a.iommu_group is not None and a.iommu_group == b.iommu_group:
        notes.append(
            f"both are in IOMMU group {a.iommu_group}: no isolation between them "
            "(no ACS between them)"
        )
    if cls in ("NODE", "SYS"):
        notes.append(
            f"{cls}: peer-to-peer across root complexes is slow or unsupported on many "
            "CPUs; GPUDirect RDMA wants PIX or PXB"
        )
    if staged["unknown_links"] or p2p["unknown_links"]:
        notes.append("some link speeds are unknown (no PCIe link attributes in sysfs)")
    return {
        "src": {"name": src, "address": a.address, "kind": a.kind},
        "dst": {"name": dst, "address": b.address, "kind": b.kind},
        "host_staged": staged,
        "peer_to_peer": p2p,
        "notes": notes,
    }


def _dedupe(hops: list[str]) -> list[str]:
    out: list[str] = []
    for h in hops:
        if not out or out[-1] != h:
            out.append(h)
    return out


def link_state(topo: Topology, d: PciDevice) -> dict[str, Any] | None:
    """The physical link above `d` judged from both ends.

    A link trains to the lower of the two ends' capabilities, so a root port
    capable of x16 above an x1 device is not a downgrade; a link is downgraded
    only when it runs below what both ends support (bad slot or riser, BIOS
    setting, or a GPU idling in a low-power link state).
    """
    if d.kind in INTERNAL_PORTS:
        return None
    by_addr = {x.address: x for x in topo.devices}
    link = _link_of(d, by_addr)
    if link is None or not (link.cur_speed or link.cur_width):
        return None
    parent = by_addr.get(d.parent or "")
    ends = [
        x
        for x in (d.link, parent.link if parent and parent.kind in INTERNAL_PORTS else None)
        if x is not None
    ]
    max_speed = min((e.max_speed for e in ends if e.max_speed), default=None)
    max_width = min((e.max_width for e in ends if e.max_width), default=None)
    expected = Link(max_speed, max_speed, max_width, max_width)
    downgraded = bool(
        (link.cur_speed and max_speed and link.cur_speed < max_speed)
        or (link.cur_width and max_width and link.cur_width < max_width)
    )
    return {
        "link": link,
        "expected": expected,
        "downgraded": downgraded,
        "describe": link.describe()
        if not downgraded
        else f"x{link.cur_width or '?'} @ {link.cur_speed or '?'} GT/s (both ends capable of "
        f"x{max_width or '?'} @ {max_speed or '?'} GT/s)",
    }


def downgraded_links(topo: Topology) -> list[tuple[PciDevice, str]]:
    """(device below the link, description) for each link running below both ends' capability."""
    out = []
    for d in topo.devices:
        st = link_state(topo, d)
        if st and st["downgraded"]:
            out.append((d, st["describe"]))
    return out
