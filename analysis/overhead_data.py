"""What `overhead` joins: a trace's benchmark cells (timing windows) and the events in them.

Results are looked for, in order: `--results FILE`; `TRACE.bench.csv` (written by
`iommu-trace bench memcpy` under `record`); `TRACE.workload.json` (the lab's dd/sweep
runs); the trace's own `workload` metadata (`record --workload-result`).
Every cell has a CLOCK_MONOTONIC window [t_start_ns, t_end_ns) and the number of
operations (copies, reads) timed inside it; events are counted per window.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..tracefile import sidecar
from ..tracefile.meta import TraceMeta
from ..tracefile.validate import valid_runs
from .events import probes_by_category
from .taxonomy import COST_CATEGORIES

KEYS = ["pattern", "size", "mode", "memory", "direction"]


class ResultsError(ValueError):
    """No usable benchmark results for a trace; one line for the user."""


@dataclass
class Results:
    """One trace's benchmark cells and where they came from."""

    kind: str  # memcpy | dd
    cells: pd.DataFrame  # KEYS + ops, loops, lat_us, p25_us, p75_us, gbps, t_start_ns, t_end_ns
    source: str
    dev: str | None = None  # PCI address whose device-scope events count (None: all)
    label: str = ""  # IOMMU mode, for headings
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ results


def _memcpy_cells(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    need = {*KEYS, "copies", "loops", "median_us", "t_start_ns", "t_end_ns"}
    missing = need - set(df.columns)
    if missing:
        raise ResultsError(f"benchmark results lack {', '.join(sorted(missing))}")
    out = pd.DataFrame({k: df[k] for k in KEYS})
    out["size"] = out["size"].astype("int64")
    out["loops"] = df["loops"].astype("int64")
    out["ops"] = df["copies"].astype("int64") * out["loops"]
    for c in ("median_us", "p25_us", "p75_us", "gbps"):
        out[c if c != "median_us" else "lat_us"] = pd.to_numeric(df.get(c), errors="coerce")
    out["t_start_ns"] = df["t_start_ns"].astype("int64")
    out["t_end_ns"] = df["t_end_ns"].astype("int64")
    return out


def _dd_cells(runs: list[dict]) -> pd.DataFrame:
    """The lab's dd runs: one cell per block size, one op per dd read."""
    rows = []
    for r in runs:
        if "bs" not in r or "t_start_ns" not in r:
            continue
        count = int(r.get("count") or 0)
        el = float(r["elapsed_s"])
        nbytes = r.get("bytes") or r["bs"] * count
        rows.append(
            {
                "pattern": "dd-direct",
                "size": int(r["bs"]),
                "mode": "read",
                "memory": "-",
                "direction": "read",
                "loops": 1,
                "ops": count,
                "lat_us": el * 1e6 / count if count else float("nan"),
                "p25_us": float("nan"),
                "p75_us": float("nan"),
                "gbps": nbytes / el / 1e9 if el > 0 else float("nan"),
                "t_start_ns": int(r["t_start_ns"]),
                "t_end_ns": int(r["t_end_ns"]),
            }
        )
    if not rows:
        raise ResultsError("the workload results hold no dd runs with timing windows")
    return pd.DataFrame(rows)


def _from_json(data: dict, source: str) -> Results:
    if not isinstance(data, dict):
        raise ResultsError(f"{source}: not benchmark results (a JSON {type(data).__name__})")
    if data.get("bench") == "memcpy" and "cells" in data:
        cells = data["cells"]
        return Results("memcpy", _memcpy_cells(cells), source, dev=_first_pci(cells))
    wl = sidecar.from_dict(data, source).results
    if wl.get("workload") == "flexgen":
        raise ResultsError(f"{source} is a FlexGen run: use `iommu-trace overhead --phases`")
    if "runs" in wl:
        nvme = (data.get("guest") or {}).get("nvme") or {}
        res = Results("dd", _dd_cells(valid_runs(wl["runs"])), source, dev=nvme.get("pci"))
        res.label = data.get("mode", "")
        return res
    raise ResultsError(f"{source}: no benchmark cells or dd runs in it")


def _first_pci(rows: list[dict]) -> str | None:
    return next((r["pci"] for r in rows if r.get("pci")), None)


def read_results(path: str) -> Results:
    """A results file: the bench's CSV, its JSON, or a lab workload JSON."""
    try:
        with open(path) as f:
            if path.endswith(".csv"):
                rows = list(csv.DictReader(f))
                if not rows:
                    raise ResultsError(f"{path}: no rows")
                return Results("memcpy", _memcpy_cells(rows), path, dev=_first_pci(rows))
            return _from_json(json.load(f), path)
    except OSError as e:
        raise ResultsError(f"{path}: {e.strerror}") from None
    except (ValueError, KeyError, TypeError) as e:
        if isinstance(e, ResultsError):
            raise
        raise ResultsError(f"{path}: unreadable results ({e})") from None


def _workload_sidecar(trace_path: str) -> sidecar.WorkloadSidecar | None:
    try:
        return sidecar.read_workload(trace_path)
    except sidecar.SidecarError as e:
        raise ResultsError(str(e)) from None


def find_results(trace_path: str, meta: TraceMeta, explicit: str | None = None) -> Results:
    if explicit:
        res = read_results(explicit)
    elif os.path.exists(sidecar.bench_path(trace_path)):
        res = read_results(sidecar.bench_path(trace_path))
    elif side := _workload_sidecar(trace_path):  # the lab's also names the NVMe device
        res = _from_json(side.envelope, side.path)
    elif meta.workload and ("cells" in meta.workload or "runs" in meta.workload):
        res = _from_json(meta.workload, f"{trace_path} (workload metadata)")
    else:
        raise ResultsError(
            f"{trace_path}: no benchmark results beside it ({os.path.basename(trace_path)}"
            f"{sidecar.BENCH_SUFFIX} or {sidecar.WORKLOAD_SUFFIX}) or in it; give --results FILE"
        )
    if not res.label:
        res.label = meta.iommu.mode or "?"
    return res


# ------------------------------------------------------------------ events


def category_probes(meta: TraceMeta) -> dict[str, list[str]]:
    """Per category, the attached probes that count for it: the same as report's."""
    every = probes_by_category(meta)
    return {c: every[c] for c in COST_CATEGORIES}


def _times(events: pd.DataFrame, probes: list[str], dev: str | None) -> np.ndarray:
    sel = events["probe"].isin(probes).to_numpy(dtype=bool, na_value=False)
    if dev:  # device-scope events of other devices (disks, NICs) are not the benchmark's
        d = events["dev"]
        sel = sel & (d.isna() | (d == dev)).to_numpy(dtype=bool, na_value=True)
    ts = events["ts_ns"].to_numpy(dtype="int64", na_value=0)[sel]
    ts.sort()
    return ts


def count_events(events: pd.DataFrame, meta: TraceMeta, res: Results) -> pd.DataFrame:
    """res.cells plus, per category, the events in each window (N_cat) and per op (cat)."""
    cells = res.cells.copy()
    start = cells["t_start_ns"].to_numpy()
    end = cells["t_end_ns"].to_numpy()
    for cat, probes in category_probes(meta).items():
        if not probes:
            cells["N_" + cat] = np.nan
            cells[cat] = np.nan
            continue
        ts = _times(events, probes, res.dev)
        n = np.searchsorted(ts, end, "left") - np.searchsorted(ts, start, "left")
        cells["N_" + cat] = n
        cells[cat] = n / cells["ops"].where(cells["ops"] > 0)
    if res.kind == "dd":
        dd_io_latency(events, meta, res, cells)
    return cells


def dd_io_latency(events: pd.DataFrame, meta: TraceMeta, res: Results, cells: pd.DataFrame) -> None:
    """Lab dd cells: latency per read from the device's first to last DMA event in the run.

    The workload's elapsed time includes starting and ending dd (150-600 ms under
    the lab's emulated CPU, more than all the reads at large block sizes); the
    span of the device's DMA events covers only the reads themselves.
    """
    probes = [p for ps in category_probes(meta).values() for p in ps]
    ts = _times(events, probes, res.dev)
    lat = []
    for a, b, n in zip(cells["t_start_ns"], cells["t_end_ns"], cells["ops"], strict=True):
        w = ts[np.searchsorted(ts, a) : np.searchsorted(ts, b)]
        lat.append((w[-1] - w[0]) / 1e3 / n if len(w) >= 2 and n else float("nan"))
    cells["elapsed_us"] = cells["lat_us"]
    cells["lat_us"] = lat
    cells["gbps"] = cells["size"] / cells["lat_us"] / 1e3
    res.notes.append(
        f"us/read is from the first to the last DMA event of {res.dev or 'any device'} in each "
        "run, over its reads (dd's start and exit left out; elapsed_us in --format json/csv "
        "has the workload's own time)"
    )


def outside_windows(
    events: pd.DataFrame, meta: TraceMeta, res: Results
) -> dict[str, tuple[int, int]]:
    """Per recordable category: (events in the trace, of which inside some timed window)."""
    spans = sorted(zip(res.cells["t_start_ns"], res.cells["t_end_ns"], strict=True))
    out = {}
    for cat, probes in category_probes(meta).items():
        if not probes:
            continue
        ts = _times(events, probes, res.dev)
        inside = sum(
            int(np.searchsorted(ts, b, "left") - np.searchsorted(ts, a, "left")) for a, b in spans
        )
        out[cat] = (len(ts), inside)
    return out
