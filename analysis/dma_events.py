"""The two kinds of rows the call-graph readers join: kernel DMA/IOMMU events and CUDA calls."""

from __future__ import annotations

from ..tracefile.reader import Trace
from .taxonomy import CALL_GROUPS, KERNEL_GROUPS, KIND

# Traces recorded before the raw-tracepoint path (no `at_least` column): the
# dma_map_sg/dma_unmap_sg records carried at most this many sg entries
# (DMA_TRACE_MAX_ENTRIES); `size` summed those, so past it it is a lower bound.
SG_TRACE_MAX_ENTRIES = 128

_COLUMNS = [
    "ts_ns", "dur_ns", "pid", "tid", "comm", "probe", "group", "op", "dev",
    "addr", "iova", "size", "count", "dir", "flags", "ret", "cmd", "nents", "at_least",
    "kstack", "ustack",
]  # fmt: skip


def rows(trace: Trace) -> list[dict]:
    """All events as dicts (None for nulls), in time order."""
    have = [c for c in _COLUMNS if c in trace.table.column_names]
    out = trace.table.select(have).to_pylist()
    for r in out:
        for c in _COLUMNS:
            r.setdefault(c, None)
    out.sort(key=lambda r: r["ts_ns"])
    return out


def is_kernel_event(r: dict) -> bool:
    return r["group"] in KERNEL_GROUPS and r["op"] in KIND


def is_call(r: dict) -> bool:
    return r["group"] in CALL_GROUPS and r["dur_ns"] is not None


def kind(r: dict) -> str:
    return KIND[r["op"]]


def mark_lower_bounds(events: list[dict]) -> None:
    """Set `size_lb` on sg events whose size is a lower bound.

    The trace says so itself (`at_least`, set where a scatter-list walk hit its
    bound); for older traces, an sg event longer than the record kept.
    """
    for r in events:
        if r.get("at_least") is not None:
            r["size_lb"] = bool(r["at_least"])
            continue
        r["size_lb"] = bool(
            r["probe"] in ("dma_map_sg", "dma_unmap_sg")
            and r["count"] is not None
            and r["count"] > SG_TRACE_MAX_ENTRIES
            and r["size"] is not None
        )


def fill_unmap_sizes(events: list[dict]) -> int:
    """Give unmaps that carry no size the size of the map they undo (same device and IOVA).

    dma_unmap_sg's tracepoint has no total length; the matching dma_map_sg has.
    Sets `size_inferred` on those rows; returns how many were filled.
    """
    live: dict[tuple, tuple[int, bool]] = {}
    filled = 0
    for r in events:
        if not is_kernel_event(r) or r["iova"] is None:
            continue
        key = (r["dev"], r["iova"])
        k = kind(r)
        if k == "map" and r["size"] is not None:
            live[key] = (r["size"], r.get("size_lb", False))
        elif k == "unmap":
            hit = live.pop(key, None)
            if r["size"] is None and hit is not None:
                r["size"], r["size_lb"] = hit
                r["size_inferred"] = True
                filled += 1
    return filled


def kernel_events(trace: Trace) -> list[dict]:
    evs = [r for r in rows(trace) if is_kernel_event(r)]
    prepare(evs)
    return evs


def prepare(evs: list[dict]) -> None:
    """Sizes as exact as the trace allows: lower bounds marked, unmap sizes filled."""
    mark_lower_bounds(evs)
    fill_unmap_sizes(evs)
