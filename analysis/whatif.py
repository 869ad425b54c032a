"""What would strict, lazy or passthrough IOMMU mode have cost this trace?

From any trace's DMA-API calls (a GPU trace recorded with no IOMMU included)
and a cost table of measured T_IOMMU per call (costs.py), per phase:

- strict: one IOVA allocation per map, one synchronous IOTLB invalidation per
  unmap, paid inside the unmap;
- lazy: unmapped IOVAs wait in a per-CPU flush queue of the kernel's size
  (IOVA_FQ_SIZE, 256 on 6.1); the domain is flushed when a CPU's queue is full
  and by the flush-queue timer, armed at the first queued IOVA and fired after
  the measured delay (10 ms asked, later under load);
- passthrough: identity mapping, no IOVA, no flush, no IOMMU time.

The timeline is the trace's own: a mode that slows the workload stretches
it, which the lazy timer model does not see (docs/overhead.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..tracefile.reader import Trace
from .costs import MAP_OPS, UNMAP_OPS, Costs

MODES = ("strict", "lazy", "passthrough")


@dataclass(frozen=True)
class PhasePrediction:
    name: str
    maps: int
    unmaps: int
    flushes: int  # the model's count at the mean timer delay
    flushes_range: tuple[int, int]
    flushes_timer: int
    flushes_queue_full: int
    iova_allocs: int
    t_iommu_s: tuple[float, float]
    duration_s: float


@dataclass(frozen=True)
class Prediction:
    trace: str
    mode: str
    costs: str  # where the cost table came from
    phases: list[PhasePrediction]
    total: PhasePrediction
    notes: list[str] = field(default_factory=list)


def _dma_calls(trace: Trace):
    ev = trace.frame(["ts_ns", "dur_ns", "cpu", "group", "op", "dev"])
    sel = ev[(ev["group"] == "dma") & ev["op"].isin(MAP_OPS + UNMAP_OPS)]
    ts = sel["ts_ns"].astype("int64").to_numpy()
    dur = sel["dur_ns"].fillna(0).astype("int64").to_numpy()
    is_map = sel["op"].isin(MAP_OPS).to_numpy(dtype=bool)
    cpu = sel["cpu"].fillna(0).astype("int64").to_numpy()
    dev = sel["dev"].fillna("?").astype(str).to_numpy()
    return ts, dur, is_map, cpu, dev


def flush_queue(
    unmap_ns: np.ndarray, cpu: np.ndarray, dev: np.ndarray, delay_ns: int, size: int
) -> tuple[list[int], list[int]]:
    """Times of the timer flushes and of the queue-full flushes the flush queue would do.

    One queue per (device's domain, CPU); one timer per domain, armed when an
    IOVA is queued and the timer is off. A flush (either kind) empties every
    queue of the domain: what it covered is freed at the next queueing.
    """
    timer, full = [], []
    order = np.lexsort((unmap_ns, dev))
    cur_dev, fire_at = None, None
    rings: dict = {}
    for i in order:
        t, c, d = int(unmap_ns[i]), int(cpu[i]), dev[i]
        if d != cur_dev:
            if fire_at is not None:
                timer.append(fire_at)
            cur_dev, fire_at, rings = d, None, {}
        if fire_at is not None and fire_at <= t:
            timer.append(fire_at)
            fire_at, rings = None, {}
        if rings.get(c, 0) >= size:
            full.append(t)
            rings = {}
        rings[c] = rings.get(c, 0) + 1
        if fire_at is None:
            fire_at = t + delay_ns
    if fire_at is not None:
        timer.append(fire_at)
    return sorted(timer), sorted(full)


def _in(times: list[int], t0: int, t1: int, last: bool) -> int:
    return sum(1 for t in times if t0 <= t < t1 or (last and t >= t1))


def predict(trace: Trace, mode: str, costs: Costs) -> Prediction:
    from . import events as E
    from .iommu_time import phase_windows

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    ts, dur, is_map, cpu, dev = _dma_calls(trace)
    phases = phase_windows(trace)
    start, end = E.span_ns(trace)
    notes = []
    flush_sets: dict[str, tuple[list[int], list[int]]] = {}
    if mode == "lazy":
        unmap_at = (ts + dur)[~is_map]  # the IOVA is queued as the unmap returns
        fq = costs.flush_queue
        for q, delay in (
            ("low", fq.delay_p90_s),
            ("mid", fq.delay_mean_s),
            ("high", fq.delay_p10_s),
        ):
            flush_sets[q] = flush_queue(
                unmap_at, cpu[~is_map], dev[~is_map], int(delay * 1e9), fq.size
            )
    mc = costs.mode(mode)
    rows = []
    for k, (name, t0, t1) in enumerate(phases):
        last = k == len(phases) - 1
        inside = (ts >= t0) & (ts < t1)
        maps = int((inside & is_map).sum())
        unmaps = int((inside & ~is_map).sum())
        if mode == "passthrough":
            rows.append(
                PhasePrediction(name, maps, unmaps, 0, (0, 0), 0, 0, 0, (0.0, 0.0), (t1 - t0) / 1e9)
            )
            continue
        lo = maps * mc.map.p10_s + unmaps * mc.unmap.p10_s
        hi = maps * mc.map.p90_s + unmaps * mc.unmap.p90_s
        if mode == "strict":
            rows.append(
                PhasePrediction(
                    name,
                    maps,
                    unmaps,
                    unmaps,
                    (unmaps, unmaps),
                    0,
                    0,
                    maps,
                    (lo, hi),
                    (t1 - t0) / 1e9,
                )
            )
            continue
        counts = {
            q: (_in(timer, t0, t1, last), _in(full, t0, t1, last))
            for q, (timer, full) in flush_sets.items()
        }
        n_lo, n_mid, n_hi = (sum(counts[q]) for q in ("low", "mid", "high"))
        flush = mc.flush
        rows.append(
            PhasePrediction(
                name, maps, unmaps, n_mid, (n_lo, n_hi), counts["mid"][0], counts["mid"][1], maps,
                (lo + n_lo * flush.p10_s, hi + n_hi * flush.p90_s), (t1 - t0) / 1e9,
            )
        )  # fmt: skip
    total = PhasePrediction(
        "total",
        sum(r.maps for r in rows),
        sum(r.unmaps for r in rows),
        sum(r.flushes for r in rows),
        (sum(r.flushes_range[0] for r in rows), sum(r.flushes_range[1] for r in rows)),
        sum(r.flushes_timer for r in rows),
        sum(r.flushes_queue_full for r in rows),
        sum(r.iova_allocs for r in rows),
        (sum(r.t_iommu_s[0] for r in rows), sum(r.t_iommu_s[1] for r in rows)),
        (end - start) / 1e9,
    )
    recorded = trace.metadata.iommu.mode
    if recorded not in (None, "off", "passthrough") and recorded != mode:
        notes.append(
            f"the trace was recorded in {recorded} mode: "
            "its timeline already carries that mode's cost"
        )
    return Prediction(trace.path, mode, costs.source, rows, total, notes)
