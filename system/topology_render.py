"""Topology output: a text tree, a path report, and graphviz drawings."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Any

from .pci import PciDevice
from .topology import Topology, build_graph, downgraded_links, link_state

if TYPE_CHECKING:
    import graphviz

DRAW_FORMATS = ("svg", "png", "pdf", "dot", "gv")
_COLOURS = {
    "gpu": "#76b900",
    "accelerator": "#76b900",
    "nic": "#4a90d9",
    "rdma-nic": "#4a90d9",
    "nvme": "#e8a33d",
    "storage": "#e8a33d",
    "root-port": "#dddddd",
    "switch-upstream": "#bbbbbb",
    "switch-downstream": "#dddddd",
    "root-complex": "#999999",
    "memory": "#ffffff",
    "netdev": "#d6e6f7",
}


def text(topo: Topology) -> str:
    """The PCI tree under each root complex, then the network links and the notes."""
    out: list[str] = []
    children: dict[str | None, list[PciDevice]] = {}
    for d in topo.devices:
        children.setdefault(d.parent, []).append(d)

    def walk(d: PciDevice, prefix: str, last: bool) -> None:
        out.append(f"{prefix}{'└─ ' if last else '├─ '}{_line(topo, d)}")
        kids = children.get(d.address, [])
        for i, k in enumerate(kids):
            walk(k, prefix + ("   " if last else "│  "), i == len(kids) - 1)

    for host in sorted({d.host_bridge for d in topo.devices}):
        numa = topo.host_numa(host)
        out.append(f"{host}  (root complex{'' if numa is None else f', NUMA node {numa}'})")
        top = [d for d in children.get(None, []) if d.host_bridge == host]
        for i, d in enumerate(top):
            walk(d, "", i == len(top) - 1)
    if not topo.devices:
        out.append("(no PCI devices visible)")
    out.append("")
    out.append("network links:")
    for ln in topo.links:
        speed = f"{ln['speed_mbps']} Mb/s" if ln.get("speed_mbps") else "-"
        out.append(
            f"  {ln['name']:<12} {ln.get('state') or '?':<8} {speed:<12} "
            f"driver {ln.get('driver') or '-':<12} pci {ln.get('pci') or '-':<13} "
            f"rdma {','.join(ln['rdma']) or '-'}" + (f"  ({ln['kind']})" if ln.get("kind") else "")
        )
    bad = downgraded_links(topo)
    if bad:
        out.append("")
        idle = (
            " (GPUs drop link speed when idle: check again under load)"
            if any(d.kind == "gpu" for d, _ in bad)
            else ""
        )
        out.append(f"downgraded links{idle}:")
        for d, text_ in bad:
            out.append(f"  above {d.address} {d.label or d.kind}: {text_}")
    snap = topo.iommu
    out.append("")
    out.append(
        f"IOMMU: {snap['mode']}"
        + (f" ({snap['vendor']})" if snap["vendor"] else "")
        + (f", {len(snap['groups'])} groups" if snap["groups"] else "")
    )
    if topo.notes:
        out.append("")
        out.extend(f"note: {n}" for n in topo.notes)
    return "\n".join(out) + "\n"


def _line(topo: Topology, d: PciDevice) -> str:
    bits = [d.address, d.label or d.kind, d.model or d.name]
    if d.driver:
        bits.append(f"[{d.driver}]")
    attached = d.netdevs + d.rdma + d.block
    if attached:
        bits.append(" ".join(attached))
    if d.iommu_group is not None:
        bits.append(f"group {d.iommu_group}")
    st = link_state(topo, d)
    if st:  # shown on the device below each link; ports' own status repeats it
        bits.append(("DOWNGRADED " if st["downgraded"] else "") + st["describe"])
    return "  ".join(bits)


def path_text(report: dict[str, Any]) -> str:
    s, d = report["src"], report["dst"]
    out = [
        f"{s['name']} ({s['address']}, {s['kind']}) -> {d['name']} ({d['address']}, {d['kind']})",
        "",
    ]
    for title, key in (
        ("host-staged (bounce through host memory)", "host_staged"),
        ("peer-to-peer (e.g. GPUDirect RDMA)", "peer_to_peer"),
    ):
        p = report[key]
        extra = f"  [{p['class']}]" if "class" in p else ""
        out.append(f"{title}:{extra}")
        out.append("  " + " -> ".join(p["hops"]))
        crossings = f"{p['pcie_links']} PCIe link crossing(s)"
        if key == "host_staged":
            crossings += ", data written to and read from host memory"
            if p["crosses_sockets"]:
                crossings += ", crosses the inter-socket link"
        out.append(f"  {crossings}")
        if p["gbps"]:
            cap = f" (links capable of {p['max_gbps']} GB/s)" if p["max_gbps"] != p["gbps"] else ""
            at_most = "at most " if p["unknown_links"] else ""
            out.append(
                f"  PCIe bound: {at_most}{p['gbps']} GB/s per direction at {p['bottleneck']}{cap}"
            )
            if p["unknown_links"]:
                out.append(f"  ({p['unknown_links']} link(s) of unknown speed on the way)")
        else:
            out.append("  PCIe bound: unknown (link speeds not visible)")
        if p.get("network_gbps"):
            out.append(f"  network bound: {p['network_gbps']:g} GB/s (the NIC's link speed)")
        out.append("")
    out.extend(f"note: {n}" for n in report["notes"])
    return "\n".join(out).rstrip() + "\n"


def graph(topo: Topology) -> graphviz.Graph:
    import graphviz  # only drawing needs it: text output works on bare machines

    g = build_graph(topo)
    dot = graphviz.Graph(
        "topology",
        graph_attr={"rankdir": "TB", "fontname": "Helvetica"},
        node_attr={
            "fontname": "Helvetica",
            "fontsize": "10",
            "shape": "box",
            "style": "rounded,filled",
        },
        edge_attr={"fontname": "Helvetica", "fontsize": "9"},
    )
    for node, data in g.nodes(data=True):
        kind = data.get("kind", "other")
        shape = {"memory": "ellipse", "netdev": "note", "root-complex": "box3d"}.get(kind, "box")
        dot.node(
            _id(node),
            data.get("label", node).replace("\n", "\\n"),
            shape=shape,
            fillcolor=_COLOURS.get(kind, "#f2f2f2"),
        )
    for u, v, data in g.edges(data=True):
        # Draw parents above children: edges go from the end nearer memory.
        top = data.get("up", u)
        bottom = v if top == u else u
        attrs = {"label": data.get("label", "")} if data.get("label") else {}
        if data.get("downgraded"):
            attrs.update(color="red", fontcolor="red")
        if data.get("kind") == "internal":
            attrs["style"] = "dashed"
        dot.edge(_id(top), _id(bottom), **attrs)
    return dot


def _id(node: str) -> str:
    """A DOT node id: graphviz reads "a:b" in an edge as node a, port b."""
    return "n_" + "".join(c if c.isalnum() else "_" for c in node)


def draw(topo: Topology, output: str) -> str:
    """Write the drawing; the format comes from `output`'s suffix. Returns the path written."""
    fmt = os.path.splitext(output)[1].lstrip(".").lower()
    if fmt not in DRAW_FORMATS:
        raise ValueError(
            f"cannot draw to .{fmt or '?'}: use one of " + ", ".join("." + f for f in DRAW_FORMATS)
        )
    dot = graph(topo)
    if fmt in ("dot", "gv"):
        data = dot.source.encode()
    else:
        if shutil.which("dot") is None:
            raise RuntimeError(
                "graphviz 'dot' not found: apt install graphviz, or write a .dot file"
            )
        data = dot.pipe(format=fmt)
    with open(output, "wb") as f:
        f.write(data)
    return output
