"""`doctor --with A.iot B.iot`: the IOMMU state each trace ran under, and what it cost.

The doctor's angle is the machine: which mode and group types each trace was
recorded under (the trace's metadata: our snapshot) against this machine's.  What
counts as a map, an unmap or a flush is decided in one place,
iommu_trace.analysis.events, so these numbers agree with `report` and
`compare` (which give the full comparison).
"""

from __future__ import annotations

from typing import Any

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


def summarise(trace: Any) -> dict[str, Any]:
    """One trace: where it ran, under which IOMMU mode, and its map/unmap/flush counts."""
    from ..analysis import events  # the recorder side's single definition of the categories

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
    from ..tracefile.reader import load

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


def render_text(result: dict[str, Any]) -> str:
    out = ["", "Traces (full comparison: iommu-trace compare)"]
    for s in result["traces"]:
        out.append(
            f"  {s['path']}: IOMMU {s['mode']}"
            + (f" ({s['vendor']})" if s["vendor"] else "")
            + (f", groups {'/'.join(s['group_types'])}" if s["group_types"] else "")
            + f", kernel {s['kernel']}"
            + (f", {s['seconds']} s" if s["seconds"] is not None else "")
        )
        seen = [f"{k} {v}" for k, v in s["counts"].items() if v is not None]
        out.append("    " + (", ".join(seen) or "no DMA/IOMMU probe attached"))
        if s["flush_per_unmap"] is not None:
            out.append(f"    IOTLB flushes per unmap: {s['flush_per_unmap']}")
    if result["differences"]:
        out += ["", "Differences"] + [f"  {d}" for d in result["differences"]]
    return "\n".join(out) + "\n"
