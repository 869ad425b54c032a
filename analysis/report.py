"""`iommu-trace report`: counts and rates of maps, unmaps, flushes and IOVA traffic.

Per category, per device, by mapping size, over time, and per phase (setup
before the workload, the workload's own runs, teardown), with the workload's
measured throughput where the trace has it.
"""

from __future__ import annotations

import csv
import io
import json
import math

import pandas as pd

from ..render.table import grid
from ..tracefile.reader import Trace
from . import events as E
from .taxonomy import BY_NAME

MAP_CATEGORIES = ("dma_map", "iommu_map")


def _rate(n: int | None, secs: float) -> float | None:
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


def _size_histogram(ev: pd.DataFrame, trace: Trace) -> list[dict]:
    rows = []
    for name in MAP_CATEGORIES:
        sizes = ev.loc[E.category_mask(trace, ev, name), "size"].dropna()
        sizes = sizes[sizes > 0].astype("int64")
        if sizes.empty:
            continue
        buckets = sizes.map(lambda s: 1 << max(0, math.ceil(math.log2(s))))
        for b, n in buckets.value_counts().sort_index().items():
            rows.append({"layer": name, "size_le": int(b), "count": int(n)})
    return rows


def _timeline(ev: pd.DataFrame, trace: Trace, start: int, end: int, bins: int) -> list[dict]:
    width = max(1, (end - start) // bins)
    rows = []
    cats = ("dma_map", "iommu_map", "iommu_unmap", "dma_unmap", "flush")
    masks = {c: E.category_mask(trace, ev, c) for c in cats}
    slot = ((ev["ts_ns"] - start) // width).clip(0, bins - 1)
    for i in range(bins):
        row = {"t0_s": i * width / 1e9, "t1_s": (i + 1) * width / 1e9}
        in_bin = slot == i
        for c in cats:
            row[c] = int((masks[c] & in_bin).sum())
        rows.append(row)
    return rows


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


def build(trace: Trace, bins: int = 10) -> dict:
    ev = trace.events
    start, end = E.span_ns(trace)
    secs = (end - start) / 1e9
    c = E.counts(trace)
    unmaps = E.unmaps(c)
    phases = []
    for label, t0, t1 in _phases(trace):
        sub = ev[(ev["ts_ns"] >= t0) & (ev["ts_ns"] < t1)]
        pc = E.counts(trace, sub)
        dur = (t1 - t0) / 1e9
        pu = E.unmaps(pc)
        phases.append(
            {
                "phase": label,
                "start_s": (t0 - start) / 1e9,
                "duration_s": dur,
                "counts": pc,
                "flush_rate_per_s": _rate(pc["flush"], dur),
                "flushes_per_unmap": pc["flush"] / pu if pc["flush"] is not None and pu else None,
            }
        )
    devices = []
    dma = ev[ev["group"] == "dma"]
    if not dma.empty and dma["dev"].notna().any():
        for dev, g in dma.groupby("dev", dropna=True):
            devices.append(
                {
                    "dev": dev,
                    "maps": int((g["op"] == "map").sum()),
                    "unmaps": int((g["op"] == "unmap").sum()),
                    "bytes_mapped": int(g.loc[g["op"] == "map", "size"].fillna(0).sum()),
                }
            )
    return {
        "trace": trace.path,
        "mode": trace.metadata.iommu.mode,
        "kernel": trace.metadata.kernel.release,
        "duration_s": secs,
        "counts": c,
        "exact_counts": trace.meta.get("counts") or {},
        "rates_per_s": {k: _rate(v, secs) for k, v in c.items()},
        "flushes_per_unmap": c["flush"] / unmaps if c["flush"] is not None and unmaps else None,
        "flush_probes": list(E.flush_probes(trace)),
        "dropped": sum((trace.meta.get("drops") or {}).values()) + (trace.meta.get("lost") or 0),
        "devices": devices,
        "size_histogram": _size_histogram(ev, trace),
        "timeline": _timeline(ev, trace, start, end, bins) if len(ev) else [],
        "phases": phases,
        "workload": _workload(trace),
    }


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 1000 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _table(rows: list[list], header: list[str]) -> list[str]:
    cells = [header] + [[_fmt(x) for x in r] for r in rows]
    return grid(header, cells[1:], right=range(1, len(header))).split("\n")


def to_text(r: dict) -> str:
    out = [
        f"{r['trace']}: IOMMU {r['mode']}, kernel {r['kernel']}, {r['duration_s']:.3f} s"
        + (f", {r['dropped']} events dropped" if r["dropped"] else ""),
        "",
    ]
    rows = [
        [BY_NAME[k].label, v, r["rates_per_s"][k]] for k, v in r["counts"].items() if v is not None
    ]
    out += _table(rows, ["event", "count", "per second"])
    fpu = r["flushes_per_unmap"]
    out.append(
        f"\nIOTLB flushes per unmap: {_fmt(fpu)}   (flushes counted at: "
        f"{', '.join(r['flush_probes']) or 'no flush probe attached'})"
    )
    if r["workload"]:
        w = r["workload"]
        out.append(
            f"workload: {w['bytes']:,} bytes in {w['elapsed_s']:.3f} s = "
            f"{_fmt(w['throughput_MBps'])} MB/s over {w['runs']} run(s)"
        )
    out += ["", "phases:"]
    out += _table(
        [
            [
                p["phase"],
                p["duration_s"],
                p["counts"].get("dma_map"),
                p["counts"].get("iommu_map"),
                E.unmaps(p["counts"]),
                p["counts"].get("flush"),
                p["flush_rate_per_s"],
                p["flushes_per_unmap"],
            ]
            for p in r["phases"]
        ],
        [
            "phase",
            "seconds",
            "dma maps",
            "iommu maps",
            "unmaps",
            "flushes",
            "flushes/s",
            "flush/unmap",
        ],
    )
    if r["devices"]:
        out += ["", "per device (DMA API):"]
        out += _table(
            [[d["dev"], d["maps"], d["unmaps"], d["bytes_mapped"]] for d in r["devices"]],
            ["device", "maps", "unmaps", "bytes mapped"],
        )
    if r["size_histogram"]:
        out += ["", "mapping sizes:"]
        out += _table(
            [[h["layer"], h["size_le"], h["count"]] for h in r["size_histogram"]],
            ["layer", "size <= bytes", "count"],
        )
    if r["timeline"]:
        out += ["", "timeline:"]
        out += _table(
            [
                [
                    f"{t['t0_s']:.3f}-{t['t1_s']:.3f}",
                    t["dma_map"],
                    t["iommu_map"],
                    t["iommu_unmap"],
                    t["dma_unmap"],
                    t["flush"],
                ]
                for t in r["timeline"]
            ],
            ["seconds", "dma maps", "iommu maps", "iommu unmaps", "dma unmaps", "flushes"],
        )
    return "\n".join(out)


def to_csv(r: dict) -> str:
    """One row per (section, key): flat enough for a spreadsheet."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["section", "key", "count", "per_second"])
    for k, v in r["counts"].items():
        w.writerow(["counts", k, v, r["rates_per_s"][k]])
    w.writerow(["ratio", "flushes_per_unmap", r["flushes_per_unmap"], ""])
    for p in r["phases"]:
        for k, v in p["counts"].items():
            w.writerow([f"phase:{p['phase']}", k, v, _rate(v, p["duration_s"])])
    for h in r["size_histogram"]:
        w.writerow([f"sizes:{h['layer']}", h["size_le"], h["count"], ""])
    for t in r["timeline"]:
        for k in ("dma_map", "iommu_map", "iommu_unmap", "dma_unmap", "flush"):
            w.writerow([f"timeline:{t['t0_s']:.3f}", k, t[k], ""])
    return buf.getvalue()


def to_json(r: dict) -> str:
    return json.dumps(r, indent=2, default=str)
