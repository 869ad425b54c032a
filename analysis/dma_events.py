"""The two kinds of rows the call-graph readers join: kernel DMA/IOMMU events and CUDA calls."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa

from ..tracefile.reader import Trace
from . import columns
from .columns import Columns
from .taxonomy import CALL_GROUPS, KERNEL_GROUPS, KIND, KINDS

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
    """All events as dicts (None for nulls), in time order: for small traces."""
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


# ------------------------------------------------------------------ at scale
# The same rules on numpy columns, for traces of millions of events: events
# that share probe, stacks (and thread name) are one group with a count and a
# byte sum, and the per-event Python above runs on the groups only.

SCALE_COLUMNS = ["ts_ns", "probe", "group", "op", "dev", "iova", "size", "count", "at_least",
                 "kstack_id", "ustack_id"]  # fmt: skip


def kernel_mask(ev: Columns) -> np.ndarray:
    return ev.isin("group", KERNEL_GROUPS) & ev.isin("op", KIND)


def kind_codes(ev: Columns) -> np.ndarray:
    """Per row, the index in KINDS of its op's kind (-1: not a kernel kind)."""
    kinds = [KINDS.index(KIND[v]) if v in KIND else -1 for v in ev.values["op"]]
    table = np.array(kinds + [-1], np.int8)
    return table[ev.codes["op"]]  # code -1 (null op) takes the trailing -1


def prepared_sizes(ev: Columns) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(size, size valid, size is a lower bound, size inferred) per row, unmap sizes filled
    as `prepare` does.

    An unmap without a size takes the size of the map it undoes: the last map
    with a size on the same (dev, iova), if no unmap took it since.
    """
    size, valid = ev.nums["size"].copy(), ev.valid["size"].copy()
    # The trace says so itself (at_least); for older traces, an sg event longer than
    # the record kept (as mark_lower_bounds).
    legacy = (
        ev.isin("probe", ("dma_map_sg", "dma_unmap_sg"))
        & ev.valid["count"] & (ev.nums["count"] > SG_TRACE_MAX_ENTRIES) & valid
    )  # fmt: skip
    said = ev.valid["at_least"]
    lb = np.where(said, ev.nums["at_least"].astype(bool), legacy)
    kind = kind_codes(ev)
    is_map, is_unmap = kind == KINDS.index("map"), kind == KINDS.index("unmap")
    live = kernel_mask(ev) & ev.valid["iova"] & ((is_map & valid) | is_unmap)
    rows = np.flatnonzero(live)
    inferred = np.zeros(ev.n, bool)
    if len(rows):
        order = np.lexsort((rows, ev.nums["iova"][rows], ev.codes["dev"][rows]))
        r = rows[order]
        same = (ev.codes["dev"][r][1:] == ev.codes["dev"][r][:-1]) & (
            ev.nums["iova"][r][1:] == ev.nums["iova"][r][:-1]
        )
        take = same & is_map[r][:-1] & is_unmap[r][1:] & ~valid[r][1:]
        dst, src = r[1:][take], r[:-1][take]
        size[dst], valid[dst], lb[dst], inferred[dst] = size[src], True, lb[src], True
    return size, valid, lb, inferred


def _combine(cols: list[np.ndarray]) -> np.ndarray:
    """One int64 key per row that is equal exactly where all the columns are."""
    key = np.zeros(len(cols[0]), np.int64)
    for c in cols:
        c = c.astype(np.int64) - int(c.min())
        k = int(c.max()) + 1
        if int(key.max()) * k + k >= 1 << 62:  # renumber densely before it could overflow
            key = np.unique(key, return_inverse=True)[1].reshape(-1).astype(np.int64)
        key = key * k + c
    return key


def groups(ev: Columns, rows: np.ndarray, stacks: dict[int, list[str]], by_comm: bool = False,
           size=None, valid=None, lb=None) -> list[dict]:  # fmt: skip
    """Kernel events `rows` (a mask) as one dict per distinct (probe, op, stacks, lower bound
    [, comm]): the keys `kind_events` gives one event, plus `n` and `size` (their byte sum)."""
    if size is None:
        size, valid, lb, _ = prepared_sizes(ev)
    keys = [ev.codes["probe"], ev.codes["op"], ev.codes["group"],
            ev.nums["kstack_id"], ev.valid["kstack_id"],
            ev.nums["ustack_id"], ev.valid["ustack_id"], lb]  # fmt: skip
    if by_comm:
        keys.append(ev.codes["comm"])
    every = bool(rows.all())
    if not rows.any():
        return []
    cols = [np.asarray(k) if every else np.asarray(k)[rows] for k in keys]
    _, first, inverse = np.unique(_combine(cols), return_index=True, return_inverse=True)
    uniq = np.stack([c[first].astype(np.int64) for c in cols], axis=1)
    del cols
    n = np.bincount(inverse, minlength=len(uniq))
    w = np.where(valid, size, 0) if every else np.where(valid[rows], size[rows], 0)
    b = np.bincount(inverse, weights=w, minlength=len(uniq))
    out = []
    names = ev.values
    for u, k, nb in zip(uniq.tolist(), n.tolist(), b.tolist(), strict=True):
        out.append({
            "probe": names["probe"][u[0]], "op": names["op"][u[1]],
            "group": names["group"][u[2]] if u[2] >= 0 else None,
            "kstack": stacks.get(u[3]) if u[4] else None,
            "ustack": stacks.get(u[5]) if u[6] else None,
            "size_lb": bool(u[7]), "n": k, "size": int(nb),
            "comm": (names["comm"][u[8]] if u[8] >= 0 else None) if by_comm else None,
        })  # fmt: skip
    return out


def group_op(head: Columns) -> Columns:
    """Only the group and op columns of `head` (sharing its arrays): what
    read_kernel_events needs of it, so a caller can drop the rest first."""
    return Columns(head.n, {c: head.codes[c] for c in ("group", "op")},
                   {c: head.values[c] for c in ("group", "op")}, {}, {}, head.index)  # fmt: skip


def read_kernel_events(
    trace: Trace, more: tuple[str, ...] = (), head: Columns | None = None
) -> Columns:
    """The columns `groups` needs, of kernel DMA/IOMMU events only (read, then filtered).

    `head`: the group and op columns of every event, if the caller has them."""
    head = group_op(columns.read(trace, ["group", "op"], order_by_time=False) if head is None
                    else head)  # fmt: skip
    mask = kernel_mask(head)
    # A finalized trace is in time order; a journal is sorted here (needs ts_ns).
    rest = [c for c in SCALE_COLUMNS if c not in ("group", "op")] + list(more)
    if trace.finalized:
        rest.remove("ts_ns")
    ev = columns.read(trace, rest, order_by_time=False, rows=mask)
    return head.take(mask).merge(ev).by_time()


def kernel_groups(trace: Trace) -> list[dict]:
    """A trace's kernel DMA/IOMMU events as weighted groups (see `groups`)."""
    ev = read_kernel_events(trace)
    return groups(ev, np.ones(ev.n, bool), trace.stacks)


def event_dicts(trace: Trace, rows: np.ndarray) -> list[dict]:
    """These rows (a mask) as dicts like `rows` gives, stacks as frame lists."""
    if not rows.any():
        return []
    keep = pa.array(rows)
    cols = [c for c in _COLUMNS if c not in ("kstack", "ustack")] + ["kstack_id", "ustack_id"]
    t = pa.table({c: trace.read([c]).column(c).filter(keep) for c in cols})
    out = t.to_pylist()
    st = trace.stacks
    for r in out:
        k, u = r.pop("kstack_id"), r.pop("ustack_id")
        r["kstack"] = None if k is None else st.get(k)
        r["ustack"] = None if u is None else st.get(u)
    return out


def call_counts(trace: Trace) -> Counter:
    """Calls per probe (uprobe entry/return pairs)."""
    ev = columns.read(trace, ["probe", "group", "dur_ns"], order_by_time=False)
    sel = ev.isin("group", CALL_GROUPS) & ev.valid["dur_ns"]
    n = np.bincount(ev.codes["probe"][sel], minlength=len(ev.values["probe"]))
    return Counter({p: int(k) for p, k in zip(ev.values["probe"], n.tolist(), strict=True) if k})
