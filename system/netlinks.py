"""Network links: netlink (pyroute2) for the link table, sysfs for speed, driver, PCI, RDMA."""

from __future__ import annotations

import posixpath
from typing import Any

from .fsview import FsView
from .pci import _pci_ancestor

# ARPHRD_* values that matter here (include/uapi/linux/if_arp.h).
LINK_TYPES = {1: "ether", 32: "infiniband", 772: "loopback", 776: "sit", 65534: "none"}


def _netlink_dump() -> dict[str, Any]:
    """The kernel's link table; a note instead when netlink or pyroute2 is unavailable."""
    try:
        from pyroute2 import IPRoute
    except ImportError as e:
        return {"links": None, "note": f"pyroute2 not importable ({e}): links from sysfs only"}
    try:
        with IPRoute() as ipr:
            raw = ipr.get_links()
    except Exception as e:  # any netlink failure degrades to the sysfs listing
        return {"links": None, "note": f"netlink dump failed ({e}): links from sysfs only"}
    links = []
    for msg in raw:
        info = msg.get_attr("IFLA_LINKINFO")
        links.append(
            {
                "name": msg.get_attr("IFLA_IFNAME"),
                "ifindex": msg["index"],
                "state": (msg.get_attr("IFLA_OPERSTATE") or "").lower() or None,
                "mtu": msg.get_attr("IFLA_MTU"),
                "type": LINK_TYPES.get(msg["ifi_type"], str(msg["ifi_type"])),
                "kind": info.get_attr("IFLA_INFO_KIND") if info else None,
                "parent_bus": msg.get_attr("IFLA_PARENT_DEV_BUS_NAME"),
                "parent_dev": msg.get_attr("IFLA_PARENT_DEV_NAME"),
            }
        )
    return {"links": links, "note": None}


def _rdma_by_netdev(view: FsView) -> dict[str, list[str]]:
    """netdev -> RDMA devices bound to it (RoCE gid tables name the netdev)."""
    out: dict[str, list[str]] = {}
    for ib in view.listdir("sys/class/infiniband"):
        for port in view.listdir(f"sys/class/infiniband/{ib}/ports"):
            ndevs = f"sys/class/infiniband/{ib}/ports/{port}/gid_attrs/ndevs"
            for idx in view.listdir(ndevs)[:1]:  # gid 0 names the port's netdev
                nd = view.read_attr(f"{ndevs}/{idx}")
                if nd:
                    out.setdefault(nd, []).append(ib)
    return out


def read_links(view: FsView) -> tuple[list[dict[str, Any]], list[str]]:
    """Every network link with state, speed, driver, PCI address and RDMA devices; and notes."""
    notes: list[str] = []
    dump = view.data("netlink_links", _netlink_dump) or {"links": None, "note": "no netlink data"}
    if dump.get("note"):
        notes.append(dump["note"])
    links = dump["links"]
    if links is None:
        links = [
            {
                "name": n,
                "ifindex": None,
                "state": None,
                "mtu": None,
                "type": None,
                "kind": None,
                "parent_bus": None,
                "parent_dev": None,
            }
            for n in view.listdir("sys/class/net")
        ]
    rdma_nd = _rdma_by_netdev(view)
    rdma_pci: dict[str, list[str]] = {}
    for ib in view.listdir("sys/class/infiniband"):
        if view.readlink(f"sys/class/infiniband/{ib}/device"):
            addr = _pci_ancestor(view.realpath(f"sys/class/infiniband/{ib}/device"))
            if addr:
                rdma_pci.setdefault(addr, []).append(ib)
    out = []
    for link in links:
        name = link["name"]
        base = f"sys/class/net/{name}"
        speed = view.read_attr(f"{base}/speed")  # EINVAL when down or virtual
        pci = None
        driver = None
        if view.readlink(f"{base}/device"):
            pci = _pci_ancestor(view.realpath(f"{base}/device"))
            drv = view.readlink(f"{base}/device/driver")
            driver = posixpath.basename(drv) if drv else None
        state = link["state"] or view.read_attr(f"{base}/operstate")
        rdma = sorted(set(rdma_nd.get(name, []) + (rdma_pci.get(pci, []) if pci else [])))
        out.append(
            {
                **link,
                "state": state,
                "speed_mbps": int(speed) if speed and speed.isdigit() else None,
                "driver": driver,
                "pci": pci,
                "rdma": rdma,
            }
        )
    if not view.exists("sys/class/infiniband"):
        notes.append("no /sys/class/infiniband: no RDMA devices (or rdma drivers not loaded)")
    elif not view.listdir("sys/class/infiniband"):
        notes.append("/sys/class/infiniband is empty: no RDMA devices")
    return out, notes
