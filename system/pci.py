"""The PCI(e) device tree as sysfs shows it: devices, bridges, links, IOMMU groups."""

from __future__ import annotations

import posixpath
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from .fsview import FsView

PCI_DEVICES = "sys/bus/pci/devices"
_PCI_ADDR = re.compile(r"^[0-9a-f]{4,}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
_HOST_BRIDGE = re.compile(r"^pci[0-9a-f]{4,}:[0-9a-f]{2}$")

VENDORS = {
    "0x10de": "NVIDIA",
    "0x8086": "Intel",
    "0x1022": "AMD",
    "0x1002": "AMD/ATI",
    "0x15b3": "Mellanox",
    "0x1af4": "virtio",
    "0x1b36": "QEMU",
    "0x144d": "Samsung",
    "0x14e4": "Broadcom",
    "0x1d0f": "Amazon",
    "0x1000": "Broadcom/LSI",
    "0x10ec": "Realtek",
    "0x1dd8": "AMD Pensando",
    "0x1bb1": "Seagate",
    "0x1c5c": "SK hynix",
    "0x15ad": "VMware",
    "0x1414": "Microsoft",
    "0x1ae0": "Google",
    "0x104c": "Texas Instruments",
    "0x10b5": "Broadcom/PLX",
    "0x1344": "Micron",
}
# Modern virtio PCI ids are 0x1040 + the virtio device type.
VIRTIO_TYPES = {
    1: "virtio-net",
    2: "virtio-blk",
    3: "virtio-console",
    4: "virtio-rng",
    5: "virtio-balloon",
    8: "virtio-scsi",
    9: "virtio-9p",
    16: "virtio-gpu",
    18: "virtio-input",
    19: "virtio-vsock",
    20: "virtio-crypto",
    23: "virtio-iommu",
    24: "virtio-mem",
    26: "virtio-fs",
    27: "virtio-pmem",
}
# Transitional (legacy-capable) virtio PCI ids.
VIRTIO_TRANSITIONAL = {
    0x1000: "virtio-net",
    0x1001: "virtio-blk",
    0x1002: "virtio-balloon",
    0x1003: "virtio-console",
    0x1004: "virtio-scsi",
    0x1005: "virtio-rng",
    0x1009: "virtio-9p",
}
# PCIe capability "device/port type" (PCIe base spec, Express Capabilities register).
PORT_TYPES = {
    0: "endpoint",
    1: "legacy-endpoint",
    4: "root-port",
    5: "switch-upstream",
    6: "switch-downstream",
    7: "pcie-to-pci-bridge",
    8: "pci-to-pcie-bridge",
    9: "rc-endpoint",
    10: "rc-event-collector",
}
# GB/s per lane per direction after line encoding (8b/10b to Gen2, 128b/130b
# from Gen3, FLIT mode at Gen6).
LANE_GBPS = {2.5: 0.25, 5.0: 0.5, 8.0: 0.985, 16.0: 1.969, 32.0: 3.938, 64.0: 7.563}


@dataclass
class Link:
    """A device's upstream PCIe link, as trained now and as capable."""

    cur_speed: float | None  # GT/s
    max_speed: float | None
    cur_width: int | None
    max_width: int | None

    @property
    def downgraded(self) -> bool:
        """Below this end's own capability (topology.link_state judges both ends)."""
        return bool(
            (self.cur_speed and self.max_speed and self.cur_speed < self.max_speed)
            or (self.cur_width and self.max_width and self.cur_width < self.max_width)
        )

    def gbps(self, which: str = "cur") -> float | None:
        """Payload bandwidth bound in GB/s per direction (before TLP overhead)."""
        speed, width = getattr(self, f"{which}_speed"), getattr(self, f"{which}_width")
        if not speed or not width or speed not in LANE_GBPS:
            return None
        return round(LANE_GBPS[speed] * width, 2)

    def describe(self) -> str:
        def one(speed: float | None, width: int | None) -> str:
            return f"x{width or '?'} @ {speed if speed is not None else '?'} GT/s"

        text = one(self.cur_speed, self.cur_width)
        if self.downgraded:
            text += f" (capable of {one(self.max_speed, self.max_width)})"
        return text


@dataclass
class PciDevice:
    address: str
    vendor: str | None
    device: str | None
    class_code: str | None
    kind: str  # gpu | nic | rdma-nic | nvme | storage | bridge kinds | host-bridge | other
    name: str
    driver: str | None
    parent: str | None  # upstream bridge's address; None for devices on a root bus
    host_bridge: str  # e.g. "pci0000:00"
    port_type: str | None
    iommu_group: str | None
    numa_node: int | None
    link: Link | None
    netdevs: list[str] = field(default_factory=list)
    rdma: list[str] = field(default_factory=list)
    block: list[str] = field(default_factory=list)
    label: str | None = None  # gpu0, gpu1 ... for GPUs
    model: str | None = None  # from the driver when it says (NVIDIA)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.link:
            d["link"]["below_own_max"] = self.link.downgraded
            d["link"]["gbps"] = self.link.gbps()
            d["link"]["max_gbps"] = self.link.gbps("max")
        return d


def _speed(text: str | None) -> float | None:
    """'16.0 GT/s PCIe' -> 16.0; 'Unknown' / missing -> None."""
    m = re.match(r"([\d.]+)\s*GT/s", text or "")
    return float(m.group(1)) if m else None


PCIE_WIDTHS = (1, 2, 4, 8, 12, 16, 32)


def _width(text: str | None) -> int | None:
    """Lane count; 0, 255 (integrated endpoints, emulated devices) and other junk -> None."""
    return int(text) if text and text.isdigit() and int(text) in PCIE_WIDTHS else None


def _port_type(config: bytes | None) -> str | None:
    """The PCIe port type from config space, walking the capability list.

    Non-root users see only the first 64 bytes, which rarely reach the PCIe
    capability; the caller then falls back to the tree shape.
    """
    if not config or len(config) < 0x40 or not config[0x06] & 0x10:  # no capability list
        return None
    ptr, seen = config[0x34] & 0xFC, set()
    while ptr and ptr not in seen and ptr + 4 <= len(config):
        seen.add(ptr)
        if config[ptr] == 0x10:  # PCI Express capability
            return PORT_TYPES.get((config[ptr + 2] >> 4) & 0xF, "other")
        ptr = config[ptr + 1] & 0xFC
    return None


def _kind(class_code: str | None, port_type: str | None) -> str:
    c = int(class_code, 16) if class_code else -1
    base, sub = c >> 16, (c >> 8) & 0xFF
    if base == 0x03 and sub in (0x00, 0x02):  # VGA or 3D controller (H100s are 0x0302)
        return "gpu"
    if base == 0x12:  # processing accelerator
        return "accelerator"
    if base == 0x02:
        return "rdma-nic" if sub == 0x07 else "nic"
    if base == 0x01:
        return "nvme" if sub == 0x08 else "storage"
    if base == 0x06 and sub == 0x00:
        return "host-bridge"
    if base == 0x06 and sub == 0x04:
        return port_type if port_type and port_type != "endpoint" else "bridge"
    return "other"


def _name(vendor: str | None, device: str | None, kind: str) -> str:
    vname = VENDORS.get(vendor or "", vendor or "?")
    if vendor == "0x1af4" and device:
        dev = int(device, 16)
        if dev >= 0x1040 and dev - 0x1040 in VIRTIO_TYPES:
            return VIRTIO_TYPES[dev - 0x1040]
        if dev in VIRTIO_TRANSITIONAL:
            return VIRTIO_TRANSITIONAL[dev]
    return f"{vname} {kind} {device or '?'}"


def _pci_ancestor(path: str) -> str | None:
    """The nearest PCI address among `path`'s components (a function's own or its parent's)."""
    for comp in reversed(path.split("/")):
        if _PCI_ADDR.match(comp):
            return comp
    return None


def _class_members(view: FsView, cls: str) -> dict[str, list[str]]:
    """PCI address -> names in /sys/class/<cls> whose device is (under) that function."""
    out: dict[str, list[str]] = {}
    for name in view.listdir(f"sys/class/{cls}"):
        if view.readlink(f"sys/class/{cls}/{name}/device") is None:
            continue  # virtual: no device behind it
        addr = _pci_ancestor(view.realpath(f"sys/class/{cls}/{name}/device"))
        if addr:
            out.setdefault(addr, []).append(name)
    return out


def _nvidia_model(view: FsView, addr: str) -> str | None:
    info = view.read_text(f"proc/driver/nvidia/gpus/{addr}/information")
    m = re.search(r"^Model:\s*(.+)$", info or "", re.MULTILINE)
    return m.group(1).strip() if m else None


def read_devices(view: FsView) -> list[PciDevice]:
    """Every PCI function sysfs shows, ordered by address, GPUs labelled gpu0.. in that order."""
    devices: list[PciDevice] = []
    netdevs = _class_members(view, "net")
    rdma = _class_members(view, "infiniband")
    block = _class_members(view, "block")  # whole disks: partitions have no device link
    for addr in view.listdir(PCI_DEVICES):
        base = f"{PCI_DEVICES}/{addr}"
        path = view.realpath(base)
        comps = path.split("/")
        parent = next((c for c in reversed(comps[:-1]) if _PCI_ADDR.match(c)), None)
        host = next((c for c in comps if _HOST_BRIDGE.match(c)), "pci-unknown")
        vendor, device = view.read_attr(f"{base}/vendor"), view.read_attr(f"{base}/device")
        class_code = view.read_attr(f"{base}/class")
        port_type = _port_type(view.read_bytes(f"{base}/config"))
        kind = _kind(class_code, port_type)
        driver = view.readlink(f"{base}/driver")
        group = view.readlink(f"{base}/iommu_group")
        numa = view.read_attr(f"{base}/numa_node")
        speeds = [
            view.read_attr(f"{base}/{a}")
            for a in (
                "current_link_speed",
                "max_link_speed",
                "current_link_width",
                "max_link_width",
            )
        ]
        found = Link(_speed(speeds[0]), _speed(speeds[1]), _width(speeds[2]), _width(speeds[3]))
        known = any((found.cur_speed, found.max_speed, found.cur_width, found.max_width))
        # absent, or "Unknown"/0: root-complex integrated or emulated PCI
        link = found if known else None
        devices.append(
            PciDevice(
                address=addr,
                vendor=vendor,
                device=device,
                class_code=class_code,
                kind=kind,
                name=_name(vendor, device, kind),
                driver=posixpath.basename(driver) if driver else None,
                parent=parent,
                host_bridge=host,
                port_type=port_type,
                iommu_group=posixpath.basename(group) if group else None,
                numa_node=int(numa) if numa and numa.isdigit() else None,  # -1: no NUMA info
                link=link,
                netdevs=netdevs.get(addr, []),
                rdma=rdma.get(addr, []),
                block=block.get(addr, []),
                model=_nvidia_model(view, addr) if vendor == "0x10de" else None,
            )
        )
    _infer_port_types(devices)
    gpus = [d for d in devices if d.kind == "gpu"]
    for i, d in enumerate(gpus):
        d.label = f"gpu{i}"
    return devices


def _infer_port_types(devices: list[PciDevice]) -> None:
    """Name bridges by their place in the tree where config space did not say.

    Below a root port or a switch's downstream port sits a switch's upstream
    port; below an upstream port sit downstream ports.  Decided top-down.
    """
    by_addr = {d.address: d for d in devices}

    def settle(d: PciDevice, depth: int = 0) -> str:
        if d.kind != "bridge" or depth > 32:
            return d.kind
        up = by_addr.get(d.parent) if d.parent else None
        if up is None:
            d.kind = "root-port"
        else:
            d.kind = (
                "switch-downstream"
                if settle(up, depth + 1) == "switch-upstream"
                else "switch-upstream"
            )
        return d.kind

    for d in devices:
        settle(d)
