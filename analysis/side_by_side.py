"""`iommu-trace compare`'s figures: report's of several traces side by side (render/compare.py
writes them as text, CSV, JSON and a plot)."""

from __future__ import annotations

import os

from ..tracefile.reader import Trace
from . import events as E
from . import report as R


def _latency_us(trace: Trace, op: str) -> float | None:
    """Median duration of DMA API map or unmap calls, where the probe timed them (a counting
    trace has no durations)."""
    if trace.counting:
        return None
    ev = trace.frame(["group", "op", "dur_ns"])
    d = ev.loc[(ev["group"] == "dma") & (ev["op"] == op), "dur_ns"].dropna()
    return float(d.median()) / 1e3 if len(d) else None


def _per_run(trace: Trace) -> list[dict]:
    """Flushes and throughput per workload run; none from a counting trace (its counts are
    per second, the runs' windows are not)."""
    if trace.counting:
        return []
    ev = trace.frame(["ts_ns", "probe"])
    out = []
    for r in E.workload_runs(trace):
        sub = ev[(ev["ts_ns"] >= r["t_start_ns"]) & (ev["ts_ns"] < r["t_end_ns"])]
        c = E.counts(trace, sub)
        mb = r["bytes"] / 1e6 if r.get("bytes") else None
        out.append(
            {
                "bs": r.get("bs"),
                "throughput_MBps": mb / r["elapsed_s"] if mb and r.get("elapsed_s") else None,
                "flushes": c["flush"],
                "unmaps": E.unmaps(c),
                "flushes_per_MB": c["flush"] / mb if c["flush"] is not None and mb else None,
            }
        )
    return out


def _window_rate(r: dict) -> float | None:
    """Flushes per second inside the workload's runs: the steady state, without setup."""
    runs = [p for p in r["phases"] if p["phase"].startswith("run ")]
    secs = sum(p["duration_s"] for p in runs)
    flushes = [p["counts"]["flush"] for p in runs]
    if not runs or secs <= 0 or any(f is None for f in flushes):
        return None
    return sum(flushes) / secs


def build(traces: list[Trace]) -> dict:
    cols = []
    for t in traces:
        r = R.build(t)
        cols.append(
            {
                "trace": t.path,
                "label": f"{r['mode']} ({os.path.basename(t.path)})",
                "mode": r["mode"],
                "counting": t.counting,
                "duration_s": r["duration_s"],
                "counts": r["counts"],
                "rates_per_s": r["rates_per_s"],
                "flushes_per_unmap": r["flushes_per_unmap"],
                "flush_probes": r["flush_probes"],
                "map_latency_us": _latency_us(t, "map"),
                "unmap_latency_us": _latency_us(t, "unmap"),
                "throughput_MBps": (r["workload"] or {}).get("throughput_MBps"),
                "runs": _per_run(t),
                "workload_flush_rate_per_s": _window_rate(r),
            }
        )
    return {"traces": cols}
