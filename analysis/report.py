"""`iommu-trace report`: counts and rates of maps, unmaps, flushes and IOVA traffic.

Per category, per device, by mapping size, over time, and per phase (setup
before the workload, the workload's own runs, teardown), with the workload's
measured throughput where the trace has it.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np

from ..render.table import grid
from ..tracefile.reader import Trace
from . import columns
from . import events as E
from .columns import Columns
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


def _size_histogram(ev: Columns, trace: Trace) -> list[dict]:
    rows = []
    size, valid = ev.nums["size"], ev.valid["size"]
    for name in MAP_CATEGORIES:
        sel = ev.isin("probe", E.probes_by_category(trace.meta)[name]) & valid & (size > 0)
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
        c: np.bincount(slot[ev.isin("probe", E.probes_by_category(trace.meta)[c])],
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
        for name, probes in E.probes_by_category(trace.meta).items()
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
    ev = columns.read(trace, COLUMNS)
    start, end = E.span_ns(trace)
    secs = (end - start) / 1e9
    k = len(ev.values["probe"])
    probe = ev.codes["probe"]
    c = _counts(trace, np.bincount(probe[probe >= 0], minlength=k), ev.values["probe"])
    unmaps = E.unmaps(c)
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
                "flush_rate_per_s": _rate(pc["flush"], dur),
                "flushes_per_unmap": pc["flush"] / pu if pc["flush"] is not None and pu else None,
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
        "devices": _devices(ev),
        "size_histogram": _size_histogram(ev, trace),
        "timeline": _timeline(ev, trace, start, end, bins) if ev.n else [],
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
