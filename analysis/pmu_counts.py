"""IOMMU PMU counts per phase, and the IOTLB hit rates they give (rows of group "pmu")."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow.compute as pc

from ..system.pmu import NO_PMU_HINT, RATES
from ..tracefile.reader import Trace


@dataclass(frozen=True)
class PmuPhase:
    phase: str
    duration_s: float
    counts: dict[str, float]  # counter -> events in the phase
    per_s: dict[str, float]
    rates: dict[str, float]  # "dmar0 IOTLB hit rate" -> 0..1


@dataclass(frozen=True)
class PmuCounts:
    counters: list[str]
    phases: list[PmuPhase]
    notes: list[str]


def _overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0))


def _rates(counts: dict[str, float]) -> dict[str, float]:
    out = {}
    units = sorted({c.split("/", 1)[0] for c in counts})
    for unit in units:
        for label, hit, other, kind in RATES:
            h, o = counts.get(f"{unit}/{hit}"), counts.get(f"{unit}/{other}")
            if h is None or o is None:
                continue
            total = o if kind == "lookups" else h + o
            if total > 0:
                out[f"{unit} {label}"] = h / total
    return out


def build(trace: Trace) -> PmuCounts:
    from .iommu_time import phase_windows

    pmu = trace.metadata.pmu
    notes = list(pmu.notes)
    if not pmu.recorded:
        notes.append("the trace was recorded without PMU counting (an older recorder)")
    ev = trace.frame(["ts_ns", "dur_ns", "probe", "group", "count"],
                     where=pc.field("group") == "pmu")  # fmt: skip
    rows = ev[ev["group"] == "pmu"]
    samples = list(zip(rows["ts_ns"], rows["dur_ns"], rows["probe"], rows["count"], strict=True))
    counters = sorted({s[2] for s in samples})
    phases = []
    for name, t0, t1 in phase_windows(trace) if samples else []:
        counts: dict[str, float] = {c: 0.0 for c in counters}
        for ts, dur, label, n in samples:
            ts, dur = int(ts), int(dur)
            if dur > 0:  # spread evenly over the interval it was counted in
                counts[label] += n * _overlap(ts, ts + dur, t0, t1) / dur
        secs = (t1 - t0) / 1e9
        phases.append(
            PmuPhase(name, secs, counts, {c: v / secs for c, v in counts.items()} if secs > 0
                     else {}, _rates(counts))
        )  # fmt: skip
    if not samples and NO_PMU_HINT not in notes and pmu.recorded:
        notes.append("no counter was read during the recording")
    return PmuCounts(counters, phases, notes)
