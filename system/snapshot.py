"""Save everything `doctor`, `topo` and `iommu.snapshot` read, in one directory.

Needs only the standard library (pyroute2 and bcc are used when present), so
it runs inside the lab VM or on a GPU machine from a bare checkout:

    python3 -m iommu_trace.system.snapshot DEST
"""

from __future__ import annotations

import sys
from typing import Any

from . import doctor, topology
from .fsview import FsView


def save_all(dest: str, root: str = "/", mount: bool = False) -> dict[str, Any]:
    """Record a doctor report and a topology into `dest`; returns {"doctor", "topology"}."""
    view = FsView(root, record=True)
    report = doctor.diagnose(root, view=view, mount=mount)
    topo = topology.collect(root, view=view)
    view.save(
        dest,
        about={
            "kernel": report["kernel"],
            "iommu_mode": report["iommu"]["mode"],
            "saved_by": "iommu_trace.system.snapshot",
        },
    )
    return {"doctor": report, "topology": topo.as_dict()}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python3 -m iommu_trace.system.snapshot DEST", file=sys.stderr)
        return 2
    out = save_all(args[0])
    print(
        f"saved to {args[0]}: kernel {out['doctor']['kernel']}, IOMMU "
        f"{out['doctor']['iommu']['mode']}, {len(out['topology']['devices'])} PCI devices"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
