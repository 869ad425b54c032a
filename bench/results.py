"""Benchmark results: one row per (pattern, size, mode, memory, direction) cell, as CSV.

The CSV is what `iommu-trace overhead` joins with the trace: each row carries
its timing window (t_start_ns, t_end_ns: CLOCK_MONOTONIC, the clock of the
trace's ts_ns) and the number of copies timed inside it.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from ..render.table import grid
from ..render.units import human_size

KEYS = ("pattern", "size", "mode", "memory", "direction")
COLUMNS = (
    "bench",
    *KEYS,
    "copies",
    "loops",
    "median_us",
    "p25_us",
    "p75_us",
    "min_us",
    "max_us",
    "gbps",
    "t_start_ns",
    "t_end_ns",
    "device",
    "pci",
)


def quantile(xs: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default), without numpy."""
    s = sorted(xs)
    if not s:
        return float("nan")
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass
class Cell:
    """One timed cell: `loops` loops of `copies` copies of `size` bytes each."""

    pattern: str
    size: int
    mode: str  # sync | async
    memory: str  # pinned | pageable
    direction: str  # h2d | d2h
    copies: int
    loop_us: list[float] = field(default_factory=list)  # one entry per timed loop
    t_start_ns: int = 0
    t_end_ns: int = 0

    def row(self, device: str = "", pci: str = "") -> dict:
        per_copy = [t / self.copies for t in self.loop_us]
        med = statistics.median(per_copy)
        d = asdict(self)
        del d["loop_us"]
        return {
            "bench": "memcpy",
            **d,
            "loops": len(per_copy),
            "median_us": round(med, 4),
            "p25_us": round(quantile(per_copy, 0.25), 4),
            "p75_us": round(quantile(per_copy, 0.75), 4),
            "min_us": round(min(per_copy), 4),
            "max_us": round(max(per_copy), 4),
            "gbps": round(self.size / med / 1e3, 4) if med > 0 else float("nan"),
            "device": device,
            "pci": pci,
        }


def write_csv(path: str, rows: Iterable[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def write_json(path: str, rows: list[dict]) -> None:
    """The same rows as JSON: `record --workload-result FILE` then stores them in the trace."""
    with open(path, "w") as f:
        json.dump({"bench": "memcpy", "cells": rows}, f, indent=1)


def write(path: str, rows: list[dict]) -> None:
    (write_json if path.endswith(".json") else write_csv)(path, rows)


def table(rows: Sequence[dict]) -> str:
    """A fixed-width text table of the rows, in the order given."""
    head = ("PATTERN", "SIZE", "MODE", "MEMORY", "DIR", "COPIES", "MEDIAN us", "IQR us", "GB/s")
    out = []
    for r in rows:
        iqr = f"{r['p25_us']:.2f}-{r['p75_us']:.2f}"
        out.append(
            (
                r["pattern"],
                human_size(r["size"]),
                r["mode"],
                r["memory"],
                r["direction"],
                str(r["copies"] * r["loops"]),
                f"{r['median_us']:.2f}",
                iqr,
                f"{r['gbps']:.2f}",
            )
        )
    return grid(head, out, right=range(5, len(head)))
