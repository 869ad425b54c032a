"""Text, CSV and JSON renderings of `overhead` results."""

from __future__ import annotations

import json
import math

import pandas as pd

from ..analysis.overhead_data import Results
from ..analysis.overhead_fit import Comparison
from ..analysis.taxonomy import COST_CATEGORIES, LABEL, SHORT
from .table import grid
from .units import human_size


def _num(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return "0" if x == 0 else f"{x:.3g}"


def _fixed(x: float, spec: str) -> str:
    """A measured figure; "n/a" where there was nothing to measure (no events in the run)."""
    return "n/a" if x is None or not math.isfinite(x) else format(x, spec)


def _finite(doc):
    """NaN/inf (nothing measured) as null: JSON has no NaN."""
    if isinstance(doc, dict):
        return {k: _finite(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_finite(v) for v in doc]
    return None if isinstance(doc, float) and not math.isfinite(doc) else doc


def _grid(rows: list[tuple[str, ...]], left: int) -> str:
    """Fixed-width columns; the first `left` left-aligned, the rest right-aligned."""
    return grid(rows[0], rows[1:], right=range(left, len(rows[0])))


def _keys(r) -> tuple[str, ...]:
    return (r.pattern, human_size(int(r.size)), r.mode, r.memory, r.direction)


def _recordable(cells: pd.DataFrame) -> list[str]:
    return [c for c in COST_CATEGORIES if cells[c].notna().all()]


def single_text(name: str, res: Results, cells: pd.DataFrame, outside: dict) -> str:
    unit = "copy" if res.kind == "memcpy" else "read"
    cats = _recordable(cells)
    head = (
        "PATTERN",
        "SIZE",
        "MODE",
        "MEMORY",
        "DIR",
        "OPS",
        f"us/{unit}",
        "IQR us",
        "GB/s",
        *(SHORT[c] for c in cats),
    )
    rows = [head]
    for r in cells.itertuples():
        iqr = "-" if math.isnan(r.p25_us) else f"{r.p25_us:.2f}-{r.p75_us:.2f}"
        rows.append(
            (
                *_keys(r),
                str(r.ops),
                _fixed(r.lat_us, ".2f"),
                iqr,
                _fixed(r.gbps, ".3g"),
                *(_num(getattr(r, c)) for c in cats),
            )
        )
    lines = [
        f"{name}: {res.kind} benchmark, IOMMU {res.label}, results from {res.source}"
        + (f", events of device {res.dev}" if res.dev else ""),
        "",
        _grid(rows, 5),
        "",
    ]
    legend = ", ".join(f"{SHORT[c]} = {LABEL[c]}" for c in cats)
    lines.append(f"OPS = {unit}s timed; events per {unit}: {legend}.")
    lines += [n + "." for n in res.notes]
    unrec = [LABEL[c] for c in COST_CATEGORIES if c not in cats]
    if unrec:
        lines.append(f"Not recordable in this trace (probe absent): {', '.join(unrec)}.")
    tot = [f"{inside} of {total} {LABEL[c]}" for c, (total, inside) in outside.items() if total]
    if tot:
        lines.append(f"Inside the timed windows: {', '.join(tot)}; the rest happened outside them.")
    elif outside:
        lines.append("The trace holds no event of the recordable kinds at all.")
    return "\n".join(lines)


def compare_text(cmp: Comparison) -> str:
    cats = cmp.recordable
    fit = cmp.fit
    head = (
        "PATTERN",
        "SIZE",
        "MODE",
        "MEMORY",
        "DIR",
        "BASE us",
        "OTHER us",
        "OVERHEAD %",
        "+-%",
        *(SHORT[c] for c in cats),
    )
    if fit:
        head += (f"us/{SHORT[fit.category]}",)
    rows = [head]
    for r in cmp.cells.itertuples():
        counts = tuple(
            f"{_num(getattr(r, c + '_base'))}>{_num(getattr(r, c + '_other'))}" for c in cats
        )
        row = (
            *_keys(r),
            f"{r.lat_base:.2f}",
            f"{r.lat_other:.2f}",
            f"{r.overhead_pct:+.1f}",
            _num(r.err_pct),
            *counts,
        )
        if fit:
            row += (_num(r.cost_us),)
        rows.append(row)
    lines = [
        f"{cmp.other} against {cmp.base} (overhead % = T_other / T_base - 1; "
        "events per operation, base>other)",
        "",
        _grid(rows, 5),
        "",
        cmp.statement,
    ]
    return "\n".join(lines)


def _records(df: pd.DataFrame) -> list[dict]:
    return json.loads(df.to_json(orient="records"))


def to_json(singles: list[tuple[str, Results, pd.DataFrame, dict]], comps: list[Comparison]) -> str:
    doc = {
        "traces": [
            {
                "trace": n,
                "kind": r.kind,
                "iommu": r.label,
                "results": r.source,
                "dev": r.dev,
                "cells": _records(c),
                "events_in_windows": {k: {"total": t, "inside": i} for k, (t, i) in o.items()},
            }
            for n, r, c, o in singles
        ],
        "comparisons": [
            {
                "base": c.base,
                "other": c.other,
                "recordable": c.recordable,
                "differing": c.differing,
                "statement": c.statement,
                "cells": _records(c.cells),
                "fit": None
                if not c.fit
                else {
                    "category": c.fit.category,
                    "cost_us": c.fit.cost_us,
                    "err_us": c.fit.err_us,
                    "cells": c.fit.cells,
                    "moving": c.fit.moving,
                },
            }
            for c in comps
        ],
    }
    return json.dumps(_finite(doc), indent=1, allow_nan=False)


def to_csv(singles, comps: list[Comparison]) -> str:
    if comps:
        frames = [c.cells.assign(base=c.base, other=c.other) for c in comps]
    else:
        frames = [c.assign(trace=n) for n, _, c, _ in singles]
    return pd.concat(frames, ignore_index=True).to_csv(index=False)


__all__ = ["compare_text", "single_text", "to_csv", "to_json"]
