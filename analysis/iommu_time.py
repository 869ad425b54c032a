"""T_IOMMU: the time the kernel spends inside IOMMU code, per DMA-API call and per phase.

The timing probes (catalog group `iommu-time`, plus the timed `iova_alloc`)
are entry/return pairs that nest: a dma-iommu unmap calls the page-table
unmap, then the IOTLB sync, which waits in qi_submit_sync. Per thread the
intervals form a tree; each nanosecond is counted once, in the innermost
probe that saw it (its exclusive time), and belongs to the nearest DMA-API
call (`dma` group) around it. An interrupt that unmaps inside another call
of the same thread is its own call: its time is taken out of the outer one.
Timing probes outside any DMA-API call (the flush-queue timer) are
"background" IOMMU work, attributed to no call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from ..tracefile.meta import TraceMeta
from ..tracefile.reader import Trace
from . import events as E

TIMING_GROUP = "iommu-time"
# Timed probes outside the iommu-time group that are IOMMU code too.
TIMED_ELSEWHERE = ("iova_alloc",)
# What each timing probe's exclusive time is: the component it is added to.
COMPONENT = {
    "t_dma_iommu_map_page": "dma-iommu",
    "t_dma_iommu_unmap_page": "dma-iommu",
    "t_dma_iommu_map_sg": "dma-iommu",
    "t_dma_iommu_unmap_sg": "dma-iommu",
    "iova_alloc": "iova",
    "t_iova_free": "iova",
    "t_pgtable_map": "page-table",
    "t_pgtable_unmap": "page-table",
    "t_iotlb_sync": "iotlb-flush",
    "t_flush_all": "iotlb-flush",
    "t_flush_psi": "iotlb-flush",
    "t_qi_wait": "invalidation-wait",
    "t_fq_timer": "flush-queue",
}
# Timing probes that run from a timer or softirq: whatever call they interrupted
# (softirqs run on interrupt exit, in the current task) is not charged for them.
BACKGROUND_ROOTS = ("t_fq_timer",)
COMPONENTS = ("dma-iommu", "iova", "page-table", "iotlb-flush", "invalidation-wait", "flush-queue")
# Flush entry points whose whole (inclusive) duration is one flush's cost.
FLUSH_TIMERS = {
    "t_iotlb_sync": "IOTLB sync (strict, per unmap)",
    "t_flush_all": "domain flush (flush queue)",
    "t_fq_timer": "flush-queue timer (flush + IOVA frees)",
    "t_qi_wait": "VT-d invalidation wait",
}
# Terms of T_on = T_DMA + T_other + T_IOMMU that no probe here measures.
UNMEASURED_ALWAYS = (
    "T_DMA (the device's transfer and its address translation by the IOMMU hardware: "
    "no CPU probe sees it; IOTLB misses show only in IOMMU PMU counts)"
)


@dataclass
class _Node:
    ts: int
    end: int
    probe: str
    is_call: bool  # a DMA-API call (dma group)
    op: str
    cpu: int
    children: list[_Node] = field(default_factory=list)
    owner: _Node | None = None  # nearest DMA-API call around it (itself for a call)
    outer_call: _Node | None = None  # for a call: the call it interrupted, if any

    @property
    def dur(self) -> int:
        return self.end - self.ts

    @property
    def exclusive(self) -> int:
        return self.dur - sum(c.dur for c in self.children)


@dataclass(frozen=True)
class CallTime:
    """One DMA-API call: its own time (nested calls taken out) and the IOMMU time in it."""

    ts_ns: int
    probe: str
    op: str  # map, unmap, alloc, free
    own_ns: int
    t_iommu_ns: int
    components: dict[str, int]


@dataclass(frozen=True)
class Dist:
    n: int
    median_us: float | None
    p99_us: float | None
    mean_us: float | None
    total_s: float

    @classmethod
    def of(cls, ns: list[int] | np.ndarray) -> Dist:
        a = np.asarray(ns, dtype=float)
        if not len(a):
            return cls(0, None, None, None, 0.0)
        return cls(
            len(a),
            float(np.median(a)) / 1e3,
            float(np.percentile(a, 99)) / 1e3,
            float(a.mean()) / 1e3,
            float(a.sum()) / 1e9,
        )


@dataclass(frozen=True)
class OpRow:
    """Per phase and operation: T_IOMMU per call, its share of the call, by component."""

    phase: str
    op: str
    t_iommu: Dist
    own: Dist  # the calls' own time
    share_median: float | None  # median over calls of T_IOMMU / own time
    share_total: float | None  # sum T_IOMMU / sum own time
    components_s: dict[str, float]


@dataclass(frozen=True)
class FlushRow:
    phase: str
    probe: str
    label: str
    dur: Dist


@dataclass(frozen=True)
class IommuTime:
    trace: str
    mode: str | None
    measured: bool
    unmeasured: list[str]  # terms not measured here, and why
    ops: list[OpRow]
    flushes: list[FlushRow]
    background: dict[str, float]  # seconds of IOMMU work outside any DMA-API call, by component
    total_s: float  # all IOMMU time in the trace, each nanosecond once
    run_s: float  # the trace's span
    cpus: int
    calls: list[CallTime] = field(repr=False, default_factory=list)


def timing_probes(meta: TraceMeta) -> tuple[list[str], list[str]]:
    """Attached timing probes, and one reason line per timing probe that did not attach."""
    attached, missing = [], []
    for p in meta.probes:
        if p.group != TIMING_GROUP and p.name not in TIMED_ELSEWHERE:
            continue
        if p.attached and "ret" in p.target:
            attached.append(p.name)
        elif p.group == TIMING_GROUP:
            missing.append(f"{p.name}: {p.reason or p.status}")
    return attached, missing


def _trees(ev, timed: list[str]) -> list[_Node]:
    """Root nodes of the per-thread nesting of DMA-API calls and timing probes."""
    calls = (ev["group"] == "dma") & ev["dur_ns"].notna()
    sel = ev[calls | ev["probe"].isin(timed)]
    # a value the reader nulled (out of range in a damaged file) cannot be placed in a tree
    sel = sel[sel["dur_ns"].notna() & sel["ts_ns"].notna() & sel["tid"].notna()]
    roots: list[_Node] = []
    cols = zip(
        sel["tid"],
        sel["ts_ns"],
        sel["dur_ns"],
        sel["probe"],
        sel["group"],
        sel["op"],
        sel["cpu"],
        strict=True,
    )
    by_tid: dict[int, list[tuple]] = {}
    for tid, ts, dur, probe, group, op, cpu in cols:
        # a null group or cpu (a damaged trace's repair) is no DMA call, no known CPU
        is_call = isinstance(group, str) and group == "dma"
        where = -1 if pd.isna(cpu) else int(cpu)
        by_tid.setdefault(int(tid), []).append(
            (int(ts), int(ts) + int(dur), probe, is_call, op, where)
        )
    for items in by_tid.values():
        items.sort(key=lambda x: (x[0], -x[1]))
        stack: list[_Node] = []
        for ts, end, probe, is_call, op, cpu in items:
            node = _Node(ts, end, probe, is_call, op, cpu)
            while stack and not (stack[-1].ts <= ts and end <= stack[-1].end):
                stack.pop()  # ended before this one (or overlaps it without nesting)
            root = is_call or probe in BACKGROUND_ROOTS
            if stack:
                stack[-1].children.append(node)
                node.owner = node if root else stack[-1].owner
                node.outer_call = stack[-1].owner if root else None
            else:
                roots.append(node)
                node.owner = node if root else None
            stack.append(node)
    return roots


def _walk(roots: list[_Node]):
    todo = list(roots)
    while todo:
        n = todo.pop()
        yield n
        todo.extend(n.children)


def _calls_and_background(roots: list[_Node]) -> tuple[list[CallTime], list[tuple[int, str, int]]]:
    per_call: dict[int, dict[str, int]] = {}
    nested_calls: dict[int, int] = {}
    background: list[tuple[int, str, int]] = []  # (ts, component, ns)
    nodes = list(_walk(roots))
    for n in nodes:
        if n.outer_call is not None and n.outer_call.is_call:
            # an interrupt's call or a softirq's timer: not the outer call's time
            key = id(n.outer_call)
            nested_calls[key] = nested_calls.get(key, 0) + n.dur
        if n.is_call:
            per_call.setdefault(id(n), {})
            continue
        comp = COMPONENT.get(n.probe, "dma-iommu")
        excl = n.exclusive  # a call nested under a timing probe is a child: taken out
        if n.owner is None or not n.owner.is_call:
            background.append((n.ts, comp, excl))
        else:
            d = per_call.setdefault(id(n.owner), {})
            d[comp] = d.get(comp, 0) + excl
    out = []
    for n in nodes:
        if not n.is_call:
            continue
        comps = per_call.get(id(n), {})
        out.append(
            CallTime(
                n.ts,
                n.probe,
                n.op,
                n.dur - nested_calls.get(id(n), 0),
                sum(comps.values()),
                comps,
            )
        )
    out.sort(key=lambda c: c.ts_ns)
    return out, background


def _flush_rows(ev, phases, attached) -> list[FlushRow]:
    rows = []
    for probe, label in FLUSH_TIMERS.items():
        if probe not in attached:
            continue
        sub = ev[(ev["probe"] == probe) & ev["dur_ns"].notna()]
        for name, t0, t1 in phases:
            d = sub.loc[(sub["ts_ns"] >= t0) & (sub["ts_ns"] < t1), "dur_ns"]
            if len(d):
                rows.append(FlushRow(name, probe, label, Dist.of(d.astype("int64").to_numpy())))
    return rows


def _op_rows(calls: list[CallTime], phases) -> list[OpRow]:
    rows = []
    for name, t0, t1 in phases:
        inside = [c for c in calls if t0 <= c.ts_ns < t1]
        for op in sorted({c.op for c in inside}):
            cs = [c for c in inside if c.op == op]
            t = [c.t_iommu_ns for c in cs]
            own = [c.own_ns for c in cs]
            shares = [c.t_iommu_ns / c.own_ns for c in cs if c.own_ns > 0]
            comps = {k: sum(c.components.get(k, 0) for c in cs) / 1e9 for k in COMPONENTS}
            rows.append(
                OpRow(
                    name,
                    op,
                    Dist.of(t),
                    Dist.of(own),
                    float(np.median(shares)) if shares else None,
                    sum(t) / sum(own) if sum(own) else None,
                    {k: v for k, v in comps.items() if v},
                )
            )
    return rows


def phase_windows(trace: Trace) -> list[tuple[str, int, int]]:
    """FlexGen's setup/prefill/decode/teardown where the trace has them, else report's
    setup / each workload run / teardown."""
    from . import phases as ph
    from .report import _phases

    try:
        wins = ph.windows(ph.load_workload(trace))
    except ph.PhaseError:
        return _phases(trace)
    out = [(w.name, w.t_start_ns, w.t_end_ns) for w in wins]
    start, end = E.span_ns(trace)  # the first and last phase reach the trace's ends
    out[0] = (out[0][0], min(start, out[0][1]), out[0][2])
    out[-1] = (out[-1][0], out[-1][1], max(end, out[-1][2]) + 1)
    return out


def build(trace: Trace) -> IommuTime:
    cpus = pc.count_distinct(trace.read(["cpu"]).column("cpu")).as_py() or 0
    start, end = E.span_ns(trace)
    mode = trace.metadata.iommu.mode
    attached, missing = timing_probes(trace.metadata)
    unmeasured = [UNMEASURED_ALWAYS]
    if trace.counting:
        unmeasured.insert(
            0, "T_IOMMU: a counting trace (record --count) keeps counts, not each call's duration"
        )
        return IommuTime(
            trace.path, mode, False, unmeasured, [], [], {}, 0.0, (end - start) / 1e9, cpus
        )
    if not any(p in attached for p in COMPONENT if p != "iova_alloc"):
        if missing:
            # "t_x: kprobe+ret:f: this kernel has no kprobes" -> the reason, once
            why = sorted({m.rpartition(": ")[2] for m in missing})
            unmeasured.insert(0, f"T_IOMMU: no IOMMU timing probe attached ({'; '.join(why)})")
        else:
            unmeasured.insert(0, "T_IOMMU: the trace was recorded without IOMMU timing probes")
        return IommuTime(
            trace.path, mode, False, unmeasured, [], [], {}, 0.0, (end - start) / 1e9, cpus
        )
    unmeasured.append(
        "T_other (the caller's own code, e.g. the driver around the DMA-API call: "
        "only where the call itself is timed, as the calls' own time)"
    )
    phases = phase_windows(trace)
    # Only timed events (calls and timing probes) take part; read once it is known they
    # can (an untimed 10 M-event trace skipped 1.2 s of reading here)
    ev = trace.frame(["ts_ns", "dur_ns", "cpu", "tid", "probe", "group", "op"],
                     where=pc.field("dur_ns").is_valid())  # fmt: skip
    calls, background = _calls_and_background(_trees(ev, attached))
    bg: dict[str, float] = {}
    for _, comp, ns in background:
        bg[comp] = bg.get(comp, 0.0) + ns / 1e9
    total = sum(c.t_iommu_ns for c in calls) / 1e9 + sum(bg.values())
    return IommuTime(
        trace.path,
        mode,
        True,
        unmeasured,
        _op_rows(calls, phases),
        _flush_rows(ev, phases, attached),
        bg,
        total,
        (end - start) / 1e9,
        cpus,
        calls,
    )
