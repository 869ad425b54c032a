"""GPUs, the NVIDIA driver and RDMA devices, as sysfs and procfs show them."""

from __future__ import annotations

import re
from typing import Any

from .checks import Check
from .fsview import FsView
from .pci import PciDevice

NVIDIA_VENDOR = "0x10de"
# Modules whose presence changes what can be traced or how DMA flows.
NVIDIA_MODULES = ("nvidia", "nvidia_uvm", "nvidia_peermem", "nvidia_drm", "nvidia_modeset")


def nvidia_driver(view: FsView) -> dict[str, Any]:
    """Driver version and loaded modules; version None when the driver is not loaded."""
    text = view.read_text("proc/driver/nvidia/version")
    m = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", text or "")
    return {
        "version": m.group(1) if m else (view.read_attr("sys/module/nvidia/version")),
        "version_text": (text or "").strip().splitlines()[0] if text else None,
        "modules": [mod for mod in NVIDIA_MODULES if view.exists(f"sys/module/{mod}")],
    }


def check(view: FsView, devices: list[PciDevice]) -> tuple[list[Check], dict[str, Any]]:
    checks: list[Check] = []
    gpus = [d for d in devices if d.kind in ("gpu", "accelerator")]
    nv = [d for d in devices if d.vendor == NVIDIA_VENDOR]
    drv = nvidia_driver(view)
    rdma = view.listdir("sys/class/infiniband")

    if gpus:
        lines = [
            f"{d.label or d.address}: {d.address} {d.model or d.name}, driver "
            f"{d.driver or 'none bound'}"
            + (f", IOMMU group {d.iommu_group}" if d.iommu_group else "")
            + (f", link {d.link.describe()}" if d.link else "")
            for d in gpus
        ]
        checks.append(
            Check("gpu", "gpus", "ok", f"{len(gpus)} GPU(s) on the PCI bus", detail=lines)
        )
    elif not devices:
        checks.append(
            Check(
                "gpu",
                "gpus",
                "unknown",
                "no PCI devices visible: cannot look for GPUs (container without the host's /sys?)",
            )
        )
    else:
        checks.append(
            Check(
                "gpu",
                "gpus",
                "info",
                "no GPU on the PCI bus: CUDA probes will "
                "have nothing to attach to; DMA/IOMMU probes still work",
            )
        )

    if drv["version"]:
        checks.append(
            Check(
                "gpu",
                "nvidia driver",
                "ok",
                f"NVIDIA driver {drv['version']} "
                f"loaded (modules: {', '.join(drv['modules']) or '?'})",
            )
        )
        if "nvidia_uvm" not in drv["modules"]:
            checks.append(
                Check(
                    "gpu",
                    "nvidia_uvm",
                    "warn",
                    "nvidia_uvm not loaded: CUDA "
                    "loads it on first use (managed memory and copies need it)",
                    fix="modprobe nvidia_uvm",
                )
            )
    elif nv:
        bound = {d.driver for d in nv if d.kind == "gpu"}
        checks.append(
            Check(
                "gpu",
                "nvidia driver",
                "fail",
                "NVIDIA GPU present but the NVIDIA "
                f"driver is not loaded (bound: {', '.join(map(str, bound))})",
                fix="install and load the NVIDIA driver (modprobe nvidia)",
            )
        )

    if rdma:
        checks.append(Check("rdma", "rdma devices", "ok", f"RDMA devices: {', '.join(rdma)}"))
        if gpus and drv["version"] and "nvidia_peermem" not in drv["modules"]:
            checks.append(
                Check(
                    "rdma",
                    "gpudirect rdma",
                    "warn",
                    "GPU and RDMA NIC present but "
                    "nvidia_peermem is not loaded: GPUDirect RDMA falls back to "
                    "host staging unless the stack uses dma-buf",
                    fix="modprobe nvidia_peermem",
                )
            )
    facts = {"gpus": [d.address for d in gpus], "nvidia": drv, "rdma": rdma}
    return checks, facts
