"""The IOMMU state of a machine, read from files only.

`snapshot()` is stored verbatim in every trace's metadata (meta["iommu"]), so
its key names are an interface: add keys, never rename or remove them.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from . import bootlog, kconfig
from .fsview import FsView

# Kernel parameters that decide whether and how DMA is translated.
IOMMU_PARAMS = (
    "intel_iommu",
    "amd_iommu",
    "iommu",
    "iommu.strict",
    "iommu.passthrough",
    "iommu.forcedac",
    "swiotlb",
)
# Build-time defaults, used when neither cmdline nor sysfs says.
IOMMU_CONFIG = (
    "CONFIG_IOMMU_SUPPORT",
    "CONFIG_INTEL_IOMMU",
    "CONFIG_AMD_IOMMU",
    "CONFIG_ARM_SMMU_V3",
    "CONFIG_VIRTIO_IOMMU",
    "CONFIG_IOMMU_DEFAULT_PASSTHROUGH",
    "CONFIG_IOMMU_DEFAULT_DMA_LAZY",
    "CONFIG_IOMMU_DEFAULT_DMA_STRICT",
    "CONFIG_INTEL_IOMMU_DEFAULT_ON",
)
# /sys/kernel/iommu_groups/N/type -> the mode it means.
GROUP_TYPE_MODE = {"identity": "passthrough", "DMA-FQ": "lazy", "DMA": "strict"}

# Boot-log lines about the IOMMU; the command-line echo is excluded (it is in "cmdline").
_BOOTLOG_IOMMU = re.compile(
    r"iommu|DMAR|AMD-Vi|smmu|PCI-DMA|swiotlb|Directed I/O|\bIOVA\b|DMA domain", re.IGNORECASE
)
# Per-device "Adding to iommu group" lines repeat what "groups" says, hundreds on big hosts.
_BOOTLOG_SKIP = re.compile(r"Command line:|Kernel command line:|Adding to iommu group")
BOOTLOG_MAX_LINES = 200  # the snapshot rides in every trace's metadata: keep it small

SNAPSHOT_FORMAT = 1


def parse_cmdline(cmdline: str) -> dict[str, str]:
    """The IOMMU-relevant `key=value` parameters (bare flags map to "").

    Arguments after `--` go to init, not the kernel, and are ignored.  When a
    parameter repeats, the last one wins, as it does for these in the kernel.
    """
    try:
        tokens = shlex.split(cmdline)
    except ValueError:  # unbalanced quote: the kernel tolerates it, so do we
        tokens = cmdline.split()
    params: dict[str, str] = {}
    for tok in tokens:
        if tok == "--":
            break
        key, _, value = tok.partition("=")
        if key in IOMMU_PARAMS or key.startswith("iommu."):
            params[key] = value
    return params


def vendor_of(unit_names: list[str]) -> str | None:
    """Which IOMMU implementation, from /sys/class/iommu entry names."""
    for name in unit_names:
        if name.startswith("dmar"):
            return "intel"
        if name.startswith("ivhd"):
            return "amd"
        if name.startswith(("smmu", "arm-smmu")):
            return "arm-smmu"
        if name.startswith(("virtio", "viommu")):
            return "virtio"
    return "other" if unit_names else None


def summarise_mode(present: bool, groups: list[dict[str, Any]]) -> str:
    """One word for the whole machine: off | passthrough | lazy | strict | mixed | unknown.

    Groups owned by VFIO ("unmanaged") or blocked are not the kernel's DMA API
    and do not count; a machine whose groups are all such is "unknown".
    """
    if not present and not groups:
        return "off"
    modes = {GROUP_TYPE_MODE[g["type"]] for g in groups if g.get("type") in GROUP_TYPE_MODE}
    if len(modes) == 1:
        return modes.pop()
    return "mixed" if modes else "unknown"


def _groups(view: FsView, notes: list[str]) -> list[dict[str, Any]]:
    base = "sys/kernel/iommu_groups"
    groups = []
    names = view.listdir(base)
    for name in sorted(names, key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n)):
        gtype = view.read_attr(f"{base}/{name}/type")
        if gtype is None:
            notes.append(f"/{base}/{name}/type not readable (kernel older than 5.11?)")
        groups.append(
            {
                "group": name,
                "type": gtype,
                "devices": view.listdir(f"{base}/{name}/devices"),
            }
        )
    return groups


def _kernel_default(lines: list[str], config: dict[str, str]) -> dict[str, str | None]:
    """The default domain the kernel chose at boot, from its log, else from its config."""
    domain = invalidation = None
    source = None
    for ln in lines:
        m = re.search(r"Default domain type: (\w+)", ln)
        if m:
            domain, source = m.group(1).lower(), "boot log"
        m = re.search(r"TLB invalidation policy: (\w+) mode", ln)
        if m:
            invalidation = m.group(1).lower()
    if domain is None and config:
        source = "kernel config"
        if kconfig.enabled(config, "CONFIG_IOMMU_DEFAULT_PASSTHROUGH"):
            domain = "passthrough"
        else:
            domain = "translated"
            invalidation = (
                "strict" if kconfig.enabled(config, "CONFIG_IOMMU_DEFAULT_DMA_STRICT") else "lazy"
            )
    return {"domain": domain, "invalidation": invalidation, "source": source}


def _boot_log_lines(view: FsView, notes: list[str]) -> list[str]:
    def produce() -> dict[str, Any]:
        lines, why = bootlog.read_boot_log()
        found = bootlog.grep(lines, _BOOTLOG_IOMMU, _BOOTLOG_SKIP)
        if len(found) > BOOTLOG_MAX_LINES:
            why = f"{len(found) - BOOTLOG_MAX_LINES} more IOMMU boot-log lines left out"
        return {"lines": found[:BOOTLOG_MAX_LINES], "note": why}

    saved = view.data("bootlog_iommu", produce)
    if saved is None:
        notes.append("boot log not in this snapshot")
        return []
    if saved.get("note"):
        notes.append(saved["note"])
    # Filter again: snapshots saved by older versions kept lines filtered out now.
    return bootlog.grep(list(saved.get("lines", [])), _BOOTLOG_IOMMU, _BOOTLOG_SKIP)


def snapshot(root: str = "/", view: FsView | None = None) -> dict[str, Any]:
    """The machine's IOMMU state as a JSON-serialisable dict (see docs/system.md).

    `root` is "/" for this machine or a directory written by `save_snapshot`.
    Never raises for missing or unreadable files: it says so in "notes".
    """
    view = view or FsView(root)
    notes: list[str] = []

    cmdline = view.read_attr("proc/cmdline")
    if cmdline is None:
        notes.append("/proc/cmdline not readable")
    units = view.listdir("sys/class/iommu")
    groups_dir = view.exists("sys/kernel/iommu_groups")
    groups = _groups(view, notes) if groups_dir else []
    if not groups_dir:
        notes.append("/sys/kernel/iommu_groups missing: kernel built without IOMMU support")
    present = bool(units or groups)
    config, config_source = kconfig.read_config(view)
    if not config:
        notes.append("kernel config not found (/proc/config.gz, /boot/config-*)")
    boot = _boot_log_lines(view, notes)
    default = _kernel_default(boot, config)
    mode = summarise_mode(present, groups)

    if not present and default["domain"] == "translated":
        notes.append(
            f"kernel would use {default['invalidation'] or 'translated'} DMA domains"
            " but no IOMMU hardware is visible (none in firmware tables, or none given to this VM)"
        )
    if present and not groups:
        notes.append("IOMMU units present but no groups: no device is behind them")
    if groups and mode == "unknown":
        notes.append("every group is unmanaged/blocked (e.g. bound to vfio): no kernel DMA mode")

    return {
        "format": SNAPSHOT_FORMAT,
        "kernel": kconfig.kernel_release(view),
        "cmdline": cmdline,
        "iommu_params": parse_cmdline(cmdline or ""),
        "present": present,
        "vendor": vendor_of(units),
        "units": units,
        "groups": groups,
        "mode": mode,
        "kernel_default": default,
        "config": {k: config[k] for k in IOMMU_CONFIG if k in config},
        "config_source": config_source,
        "dmesg": boot,
        "notes": notes,
    }


def save_snapshot(dest: str, root: str = "/") -> dict[str, Any]:
    """Copy every file `snapshot()` reads into `dest`, so `snapshot(dest)` replays it.

    Works on any machine with only the Python standard library and this
    package (the lab VM uses it inside the guest).  Returns the snapshot.
    """
    view = FsView(root, record=True)
    snap = snapshot(root, view=view)
    view.save(dest, about={"kernel": snap["kernel"], "iommu_mode": snap["mode"]})
    return snap
