"""T_IOMMU as text and JSON (analysis.iommu_time.IommuTime)."""

from __future__ import annotations

import dataclasses
import json

from ..analysis.iommu_time import IommuTime
from .report import table


def _us(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def to_text(t: IommuTime) -> str:
    head = "time inside IOMMU code (T_IOMMU, timing probes; each nanosecond counted once):"
    if not t.measured:
        return "\n".join(["T_IOMMU not measured here:", *(f"  - {u}" for u in t.unmeasured)])
    rows = []
    for r in t.ops:
        comps = ", ".join(f"{k} {v:.4f}" for k, v in r.components_s.items()) or "-"
        rows.append([
            r.phase, r.op, f"{r.t_iommu.n:,}", _us(r.t_iommu.median_us), _us(r.t_iommu.p99_us),
            _us(r.t_iommu.mean_us), _us(r.own.median_us), _pct(r.share_median),
            _pct(r.share_total), comps,
        ])  # fmt: skip
    header = ["phase", "op", "calls", "T_IOMMU median us", "p99 us", "mean us",
              "call median us", "share median", "share of sum", "by component (s)"]  # fmt: skip
    out = [head, *table(rows, header)]
    if t.flushes:
        rows = [
            [f.phase, f.label, f"{f.dur.n:,}", _us(f.dur.median_us), _us(f.dur.p99_us),
             f"{f.dur.total_s:.4f}"]
            for f in t.flushes
        ]  # fmt: skip
        out += ["", "per flush (inclusive of the wait for the hardware):"]
        out += table(rows, ["phase", "flush", "count", "median us", "p99 us", "total s"])
    bg = ", ".join(f"{k} {v:.4f} s" for k, v in t.background.items()) or "none"
    out += [
        "",
        f"outside any DMA-API call: {bg}",
        f"T_IOMMU in all: {t.total_s:.4f} s of {t.run_s:.3f} s traced "
        f"({_pct(t.total_s / t.run_s if t.run_s else None)} of one CPU; {t.cpus} CPU(s) seen)",
        "not measured: " + "; ".join(t.unmeasured),
    ]
    return "\n".join(out)


def to_dict(t: IommuTime) -> dict:
    d = dataclasses.asdict(t)
    d.pop("calls", None)
    return d


def to_json(t: IommuTime) -> str:
    return json.dumps(to_dict(t), indent=1)
