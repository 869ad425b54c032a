"""A what-if prediction (analysis.whatif.Prediction) as text and JSON."""

from __future__ import annotations

import json

from ..analysis.whatif import PhasePrediction, Prediction
from .report import table


def _range(lo: float, hi: float, scale: float = 1e3, unit: str = "ms") -> str:
    return f"{lo * scale:,.3f}-{hi * scale:,.3f} {unit}"


def _row(p: PhasePrediction) -> list:
    lo, hi = p.flushes_range
    fl = f"{p.flushes:,}" + (f" ({lo:,}-{hi:,})" if (lo, hi) != (p.flushes, p.flushes) else "")
    return [p.name, p.maps, p.unmaps, fl, p.flushes_timer, p.flushes_queue_full, p.iova_allocs,
            _range(*p.t_iommu_s), f"{p.duration_s:.3f}"]  # fmt: skip


def to_text(w: Prediction) -> str:
    out = [f"{w.trace}: what {w.mode} mode would add (costs: {w.costs})", ""]
    header = ["phase", "maps", "unmaps", "flushes", "timer", "queue-full", "IOVA allocs",
              "T_IOMMU", "phase s"]  # fmt: skip
    out += table([_row(p) for p in w.phases] + [_row(w.total)], header)
    out += [f"note: {n}" for n in w.notes]
    return "\n".join(out)


def _phase(p: PhasePrediction) -> dict:
    return {
        "name": p.name,
        "maps": p.maps,
        "unmaps": p.unmaps,
        "flushes": p.flushes,
        "flushes_range": list(p.flushes_range),
        "flushes_timer": p.flushes_timer,
        "flushes_queue_full": p.flushes_queue_full,
        "iova_allocs": p.iova_allocs,
        "t_iommu_s": list(p.t_iommu_s),
        "duration_s": p.duration_s,
    }


def to_dict(w: Prediction) -> dict:
    return {
        "trace": w.trace,
        "mode": w.mode,
        "costs": w.costs,
        "phases": [_phase(p) for p in w.phases],
        "total": _phase(w.total),
        "notes": w.notes,
    }


def to_json(w: Prediction) -> str:
    return json.dumps(to_dict(w), indent=1)
