"""Runs inside the lab guest: note what the kernel set up, then run (and record) the workload.

`python -m iommu_trace.lab.guest SPEC.json`; SPEC says
    {"facts": FILE, "workload": [argv], "record": OUT.iot or null, "record_opts": [...]}
Exits with the status of the recorder (or of the workload when not recording).
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from collections.abc import Sequence

TRACEFS = "/sys/kernel/tracing"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def nvme_facts() -> dict:
    """The NVMe controller's PCI address and IOMMU group (the device the workload DMAs with)."""
    for ctrl in sorted(glob.glob("/sys/class/nvme/nvme*")):
        dev = os.path.realpath(os.path.join(ctrl, "device"))
        group = os.path.realpath(os.path.join(dev, "iommu_group"))
        return {
            "controller": os.path.basename(ctrl),
            "pci": os.path.basename(dev),
            "iommu_group": os.path.basename(group) if os.path.isdir(group) else None,
            "group_type": _read(os.path.join(group, "type")),
        }
    return {}


def iommu_units() -> list[str]:
    """The IOMMU units the kernel registered: dmar* (Intel VT-d), ivhd* (AMD-Vi)."""
    try:
        return sorted(os.listdir("/sys/class/iommu"))
    except OSError:
        return []


def facts() -> dict:
    return {
        "kernel": os.uname().release,
        "cmdline": _read("/proc/cmdline"),
        "iommu_units": iommu_units(),
        "nvme": nvme_facts(),
        "cpus": os.cpu_count(),
    }


def ensure_tracefs() -> None:
    if not os.path.exists(os.path.join(TRACEFS, "events")):
        subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS], check=False)


def recorder_argv(out: str, workload: list[str], opts: Sequence[str] = ()) -> list[str]:
    # same interpreter as ours: the host's venv, seen through the 9p root
    # --as-root: the workload reads a raw block device, never drop to a sudo user
    record = ["record", "--all", "--as-root", *opts, "-o", out]
    return [sys.executable, "-m", "iommu_trace.cli", *record, "--", *workload]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        spec = json.load(f)
    ensure_tracefs()
    info = facts()
    with open(spec["facts"], "w") as f:
        json.dump(info, f, indent=1)
    nvme = info["nvme"]
    print(
        f"guest: {info['kernel']}, iommu {','.join(info['iommu_units']) or 'none'}, "
        f"nvme {nvme.get('pci')} in iommu group "
        f"{nvme.get('iommu_group')} type {nvme.get('group_type')}",
        file=sys.stderr,
        flush=True,
    )
    wl = spec["workload"]
    opts = spec.get("record_opts", [])
    cmd = recorder_argv(spec["record"], wl, opts) if spec.get("record") else wl
    print("guest: $ " + " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main())
