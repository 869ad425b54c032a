"""IOMMU PMU counts per phase (analysis.pmu_counts.PmuCounts) as text."""

from __future__ import annotations

from ..analysis.pmu_counts import PmuCounts
from .report import table


def to_text(p: PmuCounts) -> str:
    if not p.counters:
        return "IOMMU PMU counts: none in this trace" + "".join(f"\n  - {n}" for n in p.notes)
    rows = []
    for ph in p.phases:
        for c in p.counters:
            rows.append([ph.phase, c, f"{ph.counts[c]:,.0f}", f"{ph.per_s.get(c, 0):,.0f}"])
        for label, r in ph.rates.items():
            rows.append([ph.phase, label, f"{100 * r:.2f}%", ""])
    out = ["IOMMU PMU counts (system-wide, read once a second, spread evenly over each second):"]
    out += table(rows, ["phase", "counter", "count", "per second"])
    out += [f"note: {n}" for n in p.notes]
    return "\n".join(out)
