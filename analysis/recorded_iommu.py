"""`doctor --with A.iot B.iot`: the IOMMU state each trace ran under, and what it cost.

The doctor's angle is the machine: which mode and group types each trace was
recorded under (the trace's metadata: our snapshot) against this machine's. What
counts as a map, an unmap or a flush is decided in one place, analysis/events.py,
so these numbers agree with `report` and `compare` (which give the full
comparison); render/recorded_iommu.py writes them as text.
"""

from __future__ import annotations

from typing import Any

from ..tracefile.reader import Trace, load
from . import events

# analysis.events categories shown here, in this order.
SHOWN = (
    "dma_map",
    "dma_unmap",
    "iommu_map",
    "iommu_unmap",
    "flush",
    "flush_strict",
    "flush_queue",
    "iova_alloc",
    "iova_free",
)


def summarise(trace: Trace) -> dict[str, Any]:
    """One trace: where it ran, under which IOMMU mode, and its map/unmap/flush counts."""
    typed = trace.metadata
    start, end = typed.start_mono_ns, typed.end_mono_ns
    counts = events.counts(trace)
    unmaps = events.unmaps(counts)
    flush = counts.get("flush")
    return {
        "path": trace.path,
        "host": typed.hostname,
        "kernel": typed.kernel.release,
        "command": typed.command,
        "mode": typed.iommu.mode or "unknown",
        "vendor": typed.iommu.vendor,
        "iommu_params": typed.iommu.params,
        "group_types": typed.iommu.group_types,
        "seconds": round((end - start) / 1e9, 3) if start and end else None,
        "finalized": trace.finalized,
        "counts": {k: counts.get(k) for k in SHOWN},  # None: no probe of that kind attached
        "flush_per_unmap": round(flush / unmaps, 3) if flush is not None and unmaps else None,
    }


def compare(paths: list[str], here: dict[str, Any] | None = None) -> dict[str, Any]:
    """Summaries of each trace and one line per difference in IOMMU state worth reading.

    `here`: this machine's iommu.snapshot(), to say whether a trace's mode is this one.
    """
    sums = [summarise(load(p)) for p in paths]
    diffs: list[str] = []
    if len({s["mode"] for s in sums}) > 1:
        diffs.append("IOMMU modes differ: " + ", ".join(f"{s['path']}: {s['mode']}" for s in sums))
    if len({tuple(sorted(s["iommu_params"].items())) for s in sums}) > 1:
        diffs.append(
            "kernel IOMMU parameters differ: "
            + "; ".join(
                f"{s['path']}: {' '.join(f'{k}={v}' for k, v in s['iommu_params'].items()) or '-'}"
                for s in sums
            )
        )
    if here is not None:
        for s in sums:
            if s["mode"] != here.get("mode"):
                diffs.append(
                    f"{s['path']} was recorded under {s['mode']}; this machine is "
                    f"{here.get('mode')}"
                )
    for s in sums:
        if s["mode"] in ("off", "passthrough") and s["counts"].get("flush"):
            diffs.append(
                f"{s['path']}: {s['counts']['flush']} IOTLB flushes under "
                f"{s['mode']}: from devices outside the kernel DMA API (e.g. VFIO)"
            )
        if s["mode"] in ("lazy", "strict") and s["counts"].get("flush") is None:
            diffs.append(
                f"{s['path']}: no flush probe attached, so the {s['mode']} mode's "
                "flush cost is not in this trace"
            )
        if not s["finalized"]:
            diffs.append(f"{s['path']}: not finalized; counts are those of events in the file")
    return {"traces": sums, "differences": diffs}
