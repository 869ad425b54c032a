"""`iommu-trace report`'s figures: counts and rates of maps, unmaps, flushes and IOVA traffic.

Per category, per device, by mapping size, over time, and per phase (setup
before the workload, the workload's own runs, teardown), with the workload's
measured throughput where the trace has it. `build` returns them as one dict
(the `--format json` document); render/report.py writes the text and CSV.

A counting trace (`record --count`) has the same figures from its count rows,
at whole-second resolution, and the counts per probe and per second besides;
what needs an event's own time (phases inside the recording) it does not split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..tracefile.reader import Trace
from . import columns
from . import events as E
from .columns import Columns
from .consistency import disagreements

MAP_CATEGORIES = ("dma_map", "iommu_map")


def rate(n: int | None, secs: float) -> float | None:
    return None if n is None or secs <= 0 else n / secs


def _phases(trace: Trace) -> list[tuple[str, int, int]]:
    start, end = E.span_ns(trace)
    runs = E.workload_runs(trace)
    if not runs:
        return [("whole trace", start, end)]
    # A trace cut short (a killed recorder's journal) may end inside a run.
    start, end = min(start, runs[0]["t_start_ns"]), max(end, runs[-1]["t_end_ns"])
    out = [("setup", start, runs[0]["t_start_ns"])]
    for i, r in enumerate(runs):
        label = f"run {i + 1}" + (f" bs={r['bs']}" if "bs" in r else "")
        out.append((label, r["t_start_ns"], r["t_end_ns"]))
    out.append(("teardown", runs[-1]["t_end_ns"], end))
    return out


def _size_histogram(ev: Columns, trace: Trace) -> list[dict]:
    rows = []
    size, valid = ev.nums["size"], ev.valid["size"]
    for name in MAP_CATEGORIES:
        sel = ev.isin("probe", E.probes_by_category(trace.metadata)[name]) & valid & (size > 0)
        if not sel.any():
            continue
        exp = np.maximum(0, np.ceil(np.log2(size[sel].astype(np.float64)))).astype(np.int64)
        for e, n in zip(*np.unique(exp, return_counts=True), strict=True):
            rows.append({"layer": name, "size_le": 1 << int(e), "count": int(n)})
    return rows


def _timeline(ev: Columns, trace: Trace, start: int, end: int, bins: int) -> list[dict]:
    width = max(1, (end - start) // bins)
    cats = ("dma_map", "iommu_map", "iommu_unmap", "dma_unmap", "flush")
    slot = np.clip((ev.nums["ts_ns"] - start) // width, 0, bins - 1)
    per = {
        c: np.bincount(slot[ev.isin("probe", E.probes_by_category(trace.metadata)[c])],
                       minlength=bins)
        for c in cats
    }  # fmt: skip
    return [
        {"t0_s": i * width / 1e9, "t1_s": (i + 1) * width / 1e9,
         **{c: int(per[c][i]) for c in cats}}
        for i in range(bins)
    ]  # fmt: skip


def _counts(trace: Trace, probe_counts: np.ndarray, values: list[str]) -> dict[str, int | None]:
    """E.counts from per-probe-code counts."""
    n = dict(zip(values, probe_counts.tolist(), strict=False))
    return {
        name: sum(n.get(p, 0) for p in probes) if probes else None
        for name, probes in E.probes_by_category(trace.metadata).items()
    }


def _devices(ev: Columns) -> list[dict]:
    dma = ev.isin("group", ["dma"]) & (ev.codes["dev"] >= 0)
    if not dma.any():
        return []
    maps, unmaps = ev.isin("op", ["map"]), ev.isin("op", ["unmap"])
    dev = ev.codes["dev"]
    k = len(ev.values["dev"])
    n_map = np.bincount(dev[dma & maps], minlength=k)
    n_unmap = np.bincount(dev[dma & unmaps], minlength=k)
    sel = dma & maps
    by = np.bincount(dev[sel], weights=ev.nums["size"][sel], minlength=k)
    seen = np.unique(dev[dma])
    names = sorted(seen.tolist(), key=lambda i: ev.values["dev"][i])
    return [{"dev": ev.values["dev"][i], "maps": int(n_map[i]), "unmaps": int(n_unmap[i]),
             "bytes_mapped": int(by[i])} for i in names]  # fmt: skip


def _workload(trace: Trace) -> dict | None:
    runs = E.workload_runs(trace)
    if not runs:
        return None
    total = sum(r.get("bytes", 0) for r in runs)
    secs = sum(r.get("elapsed_s", 0.0) for r in runs)
    return {
        "runs": len(runs),
        "bytes": total,
        "elapsed_s": secs,
        "throughput_MBps": total / secs / 1e6 if secs else None,
        "per_run": [
            {
                **{k: r.get(k) for k in ("bs", "count", "bytes", "elapsed_s")},
                "throughput_MBps": r["bytes"] / r["elapsed_s"] / 1e6
                if r.get("elapsed_s")
                else None,
            }
            for r in runs
        ],
    }


# The columns report reads; the others stay on disk.
COLUMNS = ["ts_ns", "probe", "group", "op", "dev", "size"]


def build(trace: Trace, bins: int = 10) -> dict:
    if trace.counting:
        return build_counting(trace, bins)
    ev = columns.read(trace, COLUMNS)
    start, end = E.span_ns(trace)
    secs = (end - start) / 1e9
    k = len(ev.values["probe"])
    probe = ev.codes["probe"]
    c = _counts(trace, np.bincount(probe[probe >= 0], minlength=k), ev.values["probe"])
    phases = []
    ts = ev.nums["ts_ns"]
    for label, t0, t1 in _phases(trace):
        lo, hi = np.searchsorted(ts, [t0, t1], side="left")  # ts sorted: a phase is a slice
        sub = probe[lo:hi]
        pc = _counts(trace, np.bincount(sub[sub >= 0], minlength=k), ev.values["probe"])
        dur = (t1 - t0) / 1e9
        pu = E.unmaps(pc)
        phases.append(
            {
                "phase": label,
                "start_s": (t0 - start) / 1e9,
                "duration_s": dur,
                "counts": pc,
                "flush_rate_per_s": rate(pc["flush"], dur),
                "flushes_per_unmap": pc["flush"] / pu if pc["flush"] is not None and pu else None,
            }
        )
    return {
        **_common(trace, c, secs),
        "devices": _devices(ev),
        "size_histogram": _size_histogram(ev, trace),
        "timeline": _timeline(ev, trace, start, end, bins) if ev.n else [],
        "phases": phases,
    }


def _common(trace: Trace, c: dict[str, int | None], secs: float) -> dict:
    """The figures both kinds of trace have in the same shape."""
    unmaps = E.unmaps(c)
    return {
        "trace": trace.path,
        "mode": trace.metadata.iommu.mode,
        "kernel": trace.metadata.kernel.release,
        "duration_s": secs,
        "counts": c,
        "exact_counts": trace.metadata.counts,
        "rates_per_s": {k: rate(v, secs) for k, v in c.items()},
        "flushes_per_unmap": c["flush"] / unmaps if c["flush"] is not None and unmaps else None,
        "flush_probes": list(E.flush_probes(trace)),
        "dropped": sum(trace.metadata.drops.values()) + trace.metadata.lost,
        # not in the counts either (tracer/cost.recursion_misses): rates are low by these
        "missed": dict(trace.metadata.missed),
        "disagree": [d.line() for d in disagreements(trace.metadata)],
        "workload": _workload(trace),
    }


def build_counting(trace: Trace, bins: int = 10) -> dict:
    """report's figures from a counting trace's rows: per probe, device, size and second."""
    rows = trace.count_frame()
    start, end = E.span_ns(trace)
    secs = (end - start) / 1e9
    cats = E.probes_by_category(trace.metadata)
    per_probe = E.probe_counts(trace)
    c = {
        name: sum(per_probe.get(p, 0) for p in probes) if probes else None
        for name, probes in cats.items()
    }
    second = rows["second"].astype("int64").to_numpy() if len(rows) else np.zeros(0, np.int64)
    n_s = max(int(np.ceil(secs)), int(second.max()) + 1 if len(second) else 0, 1)
    width = max(1, -(-n_s // max(1, bins)))  # whole seconds a bin
    slot = second // width
    nbins = -(-n_s // width)
    count = rows["count"].astype("int64").to_numpy() if len(rows) else np.zeros(0, np.int64)
    probe = rows["probe"].astype(str).to_numpy() if len(rows) else np.zeros(0, str)

    def binned(sel: np.ndarray) -> np.ndarray:
        return np.bincount(slot[sel], weights=count[sel], minlength=nbins).astype(np.int64)

    tl_cats = ("dma_map", "iommu_map", "iommu_unmap", "dma_unmap", "flush")
    per_cat = {k: binned(np.isin(probe, cats[k])) for k in tl_cats}
    names = sorted(per_probe, key=lambda p: -per_probe[p])
    per_p = {p: binned(probe == p) for p in names}
    # the last bin ends with the recording, not its whole second, so its rate is honest
    edges = [(i * width, min((i + 1) * width, secs) if secs > i * width else (i + 1) * width)
             for i in range(nbins)]  # fmt: skip
    summed = rows.groupby("probe", observed=True)["bytes"].sum(min_count=1) if len(rows) else {}
    bytes_by = {p: int(v) for p, v in dict(summed).items() if not pd.isna(v)}  # none: no sizes
    meta = {p.name: p for p in trace.metadata.probes}
    out = _common(trace, c, secs)
    notes = []
    if E.workload_runs(trace):
        notes.append(
            "phases: a counting trace has counts per second, not each event's time: the "
            "workload's runs are not split out (record without --count for them)"
        )
    out.update(
        counting=True,
        count_rows=len(rows),
        not_counted=trace.metadata.counting.not_counted,
        probes=[
            {
                "probe": p,
                "group": meta[p].group if p in meta else None,
                "op": meta[p].op if p in meta else None,
                "count": per_probe[p],
                "per_second": rate(per_probe[p], secs),
                "bytes": bytes_by.get(p),
            }
            for p in names
        ],
        devices=_count_devices(rows),
        size_histogram=_count_sizes(rows, cats),
        bin_s=width,
        timeline=[
            {"t0_s": t0, "t1_s": t1, **{k: int(per_cat[k][i]) for k in tl_cats}}
            for i, (t0, t1) in enumerate(edges)
        ],
        probe_timeline=[
            {
                "t0_s": t0,
                "t1_s": t1,
                "counts": {p: int(per_p[p][i]) for p in names},
                "per_second": {p: int(per_p[p][i]) / (t1 - t0) for p in names},
            }
            for i, (t0, t1) in enumerate(edges)
        ],
        phases=[
            {
                "phase": "whole trace",
                "start_s": 0.0,
                "duration_s": secs,
                "counts": c,
                "flush_rate_per_s": rate(c["flush"], secs),
                "flushes_per_unmap": out["flushes_per_unmap"],
            }
        ],
        notes=notes,
    )
    return out


def _count_devices(rows) -> list[dict]:
    dma = rows[(rows["group"] == "dma") & rows["dev"].notna()] if len(rows) else rows
    out = []
    for dev, g in dma.groupby("dev", observed=True) if len(dma) else []:
        maps, unmaps = g[g["op"] == "map"], g[g["op"] == "unmap"]
        out.append(
            {
                "dev": dev,
                "maps": int(maps["count"].sum()),
                "unmaps": int(unmaps["count"].sum()),
                "bytes_mapped": int(maps["bytes"].fillna(0).sum()),
            }
        )
    return sorted(out, key=lambda d: d["dev"])


def _count_sizes(rows, cats: dict[str, list[str]]) -> list[dict]:
    """The mapping-size histogram of report, from the size buckets (size <= 2**bucket)."""
    out = []
    for name in MAP_CATEGORIES:
        sel = (
            rows[rows["probe"].isin(cats[name]) & rows["size_bucket"].notna()]
            if len(rows)
            else rows
        )
        for b, n in sel.groupby("size_bucket")["count"].sum().items() if len(sel) else []:
            out.append({"layer": name, "size_le": 1 << int(b), "count": int(n)})
    return out
