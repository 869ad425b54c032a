"""What the events mean for IOMMU cost: maps, unmaps, flushes by cause, IOVA traffic.

One place decides which probes count as what, so `report`, `compare` and
`overhead` agree. A flush is counted once however many probes saw it: on
Intel, a strict unmap fires iotlb_sync then qi_submit, and a flush-queue
drain fires fq_flush_timeout -> fq_flush -> iotlb_flush_all -> qi_submit.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..tracefile.meta import TraceMeta
from ..tracefile.reader import Trace
from ..tracefile.sidecar import SidecarError
from ..tracefile.validate import valid_runs
from .taxonomy import CATEGORIES, FLUSH_ENTRY_PROBES, FLUSH_FALLBACK_PROBES


def probes_by_category(meta: TraceMeta) -> dict[str, list[str]]:
    """Per category, the attached probes that count for it ([]: not recordable in this trace)."""
    att = meta.attached
    out = {}
    for cat in CATEGORIES:
        if cat.name == "flush":
            names = [n for n in FLUSH_ENTRY_PROBES if n in att]
            names = names or [n for n in FLUSH_FALLBACK_PROBES if n in att]
        else:
            names = [
                n for n, p in att.items()
                if n in cat.probes or (p.group in cat.groups and p.op in cat.ops)
            ]  # fmt: skip
        out[cat.name] = names
    return out


def flush_probes(trace: Trace) -> tuple[str, ...]:
    return tuple(probes_by_category(trace.metadata)["flush"])


def category_mask(trace: Trace, ev: pd.DataFrame, name: str) -> pd.Series:
    probes = probes_by_category(trace.metadata)[name]
    return ev["probe"].isin(probes).fillna(False).astype(bool)


def probe_counts(trace: Trace) -> dict[str, int]:
    """Events per probe in the file: a counting trace's count rows summed, else its events
    (the probe column is enough: one dictionary-coded column)."""
    if not trace.counting:
        return trace.value_counts("probe")
    rows = trace.count_rows()
    probe = rows.column("probe").cast(pa.string())
    per = pa.table({"probe": probe, "count": rows.column("count")}).group_by("probe")
    t = per.aggregate([("count", "sum")])
    return dict(zip(t["probe"].to_pylist(), t["count_sum"].to_pylist(), strict=True))


def counts(trace: Trace, ev: pd.DataFrame | None = None) -> dict[str, int | None]:
    """Events per category; None where no probe of the category attached."""
    if ev is None:
        n = probe_counts(trace)
        return {
            name: sum(n.get(p, 0) for p in probes) if probes else None
            for name, probes in probes_by_category(trace.metadata).items()
        }
    return {
        name: int(ev["probe"].isin(probes).sum()) if probes else None
        for name, probes in probes_by_category(trace.metadata).items()
    }


def unmaps(c: dict[str, int | None]) -> int | None:
    """Unmaps that an IOTLB flush protects: the page-table layer if seen, else the DMA API."""
    return c["iommu_unmap"] if c.get("iommu_unmap") is not None else c.get("dma_unmap")


def workload_runs(trace: Trace) -> list[dict]:
    """The workload's own measured runs (trace metadata, else the lab's sidecar JSON).

    Only runs with a valid time window count: a damaged sidecar must not place
    a phase before the trace starts or give it a negative length.
    """
    try:
        runs = trace.workload().get("runs")
    except SidecarError:
        return []
    return valid_runs(runs)


def span_ns(trace: Trace) -> tuple[int, int]:
    start, end = trace.metadata.start_mono_ns, trace.metadata.end_mono_ns
    if start is None or end is None:  # no Python list per event
        lo, hi = pc.min_max(trace.read(["ts_ns"]).column("ts_ns")).values()
        start = start or (lo.as_py() or 0)
        end = end or (hi.as_py() or start)
    return int(start), int(end)
