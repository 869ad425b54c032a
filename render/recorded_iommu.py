"""`doctor --with`'s part: the IOMMU state of each trace (analysis.recorded_iommu) as text."""

from __future__ import annotations

from typing import Any


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
