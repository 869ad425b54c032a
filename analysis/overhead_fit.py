"""Two runs of one benchmark (IOMMU off vs on, lazy vs strict): overhead and cost per event.

overhead % = T_on / T_off - 1 per cell.  Where the events per operation differ,
the latency difference is fitted as cost x (event difference), through the
origin, over the cells where they differ: that cost is what one more event of
that kind (and whatever moves in step with it) costs.  Where they do not differ,
the difference cannot come from mapping, unmapping or flushing per operation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .overhead_data import KEYS
from .taxonomy import COST_CATEGORIES, LABEL

# fewer than one event per 100 operations apart: "the same" (stray events from
# other work in the window would otherwise count as a difference)
SAME_PER_OP = 0.01
# Which category a fit names when several differ: the one differing in the most cells
# (strict vs lazy: the flush, while a stray split request may change an unmap count in
# one cell); on a tie the first here: the IOMMU unmap (one per mapped request, the
# transaction whose map, IOVA and flush move with it), then the flush
FIT_ORDER = ["iommu_unmap", "flush", "iommu_map", "iova_alloc", "dma_unmap", "dma_map"]


@dataclass
class Fit:
    category: str
    cost_us: float  # per event
    err_us: float  # standard error (nan when it cannot be estimated)
    cells: int
    moving: dict[str, int] = field(default_factory=dict)  # other differing kinds: in N cells

    def text(self) -> str:
        err = f" +- {self.err_us:.3g} us" if math.isfinite(self.err_us) else " us (no spread known)"
        what = {"flush": "IOTLB flush"}.get(self.category, LABEL[self.category].rstrip("s"))
        cells = f"{self.cells} cell" + ("s" if self.cells != 1 else "")
        s = f"cost per {what}: {self.cost_us:.3g}{err} (fit over {cells})"
        if math.isfinite(self.err_us) and abs(self.cost_us) < 2 * self.err_us:
            s += ", not distinguishable from zero at this spread"
        together = [c for c, n in self.moving.items() if n >= self.cells]
        partly = [f"{LABEL[c]} in {n}" for c, n in self.moving.items() if n < self.cells]
        if together:
            s += "; " + ", ".join(LABEL[c] for c in together) + " differ with it in every cell, "
            s += "so this is their cost together"
        if partly:
            s += "; also differing in some cells: " + ", ".join(partly)
        return s


@dataclass
class Comparison:
    base: str
    other: str
    cells: pd.DataFrame  # KEYS, lat_base, lat_other, overhead_pct, err_pct, <cat>_base/_other
    recordable: list[str]  # categories recorded in both traces
    differing: list[str]  # categories whose per-op counts differ in some cell
    fit: Fit | None
    statement: str


def _sem_us(df: pd.DataFrame) -> pd.Series:
    # standard error of a median ~ 1.2533 sigma / sqrt(n), sigma ~ IQR / 1.349
    return 1.2533 * (df["p75_us"] - df["p25_us"]) / 1.349 / np.sqrt(df["loops"])


def fit_cost(dn: np.ndarray, dt: np.ndarray, sig: np.ndarray) -> tuple[float, float]:
    """Least squares of dt = c * dn through the origin; (c, standard error of c).

    Weighted by 1/sig^2 where every cell's spread is known; the error is then
    scaled up by the scatter about the line when that is larger (Birge ratio).
    """
    k = len(dn)
    weighted = bool(k) and bool(np.all(np.isfinite(sig))) and bool(np.all(sig > 0))
    w = 1 / sig**2 if weighted else np.ones(k)
    sxx = float(np.sum(w * dn * dn))
    c = float(np.sum(w * dn * dt)) / sxx
    if k >= 2:
        s2 = float(np.sum(w * (dt - c * dn) ** 2)) / (k - 1)  # reduced chi^2 when weighted
        return c, math.sqrt((max(s2, 1.0) if weighted else s2) / sxx)
    return c, float(sig[0] / abs(dn[0])) if weighted else float("nan")


def compare(
    base: pd.DataFrame,
    other: pd.DataFrame,
    base_name: str,
    other_name: str,
    modes: tuple[str, str] = ("", ""),
) -> Comparison:
    cols = ["lat_us", "p25_us", "p75_us", "loops", "ops", *COST_CATEGORIES]
    j = base[KEYS + cols].merge(other[KEYS + cols], on=KEYS, suffixes=("_base", "_other"))
    if j.empty:
        raise ValueError(f"{base_name} and {other_name} share no benchmark cells")
    out = j[KEYS].copy()
    out["lat_base"] = j["lat_us_base"]
    out["lat_other"] = j["lat_us_other"]
    out["overhead_pct"] = (j["lat_us_other"] / j["lat_us_base"] - 1) * 100
    sb = _sem_us(j.rename(columns=lambda c: c.removesuffix("_base")))
    so = _sem_us(j.rename(columns=lambda c: c.removesuffix("_other")))
    sig = np.sqrt(sb**2 + so**2)
    out["dlat_us"] = j["lat_us_other"] - j["lat_us_base"]
    out["err_us"] = sig
    out["err_pct"] = sig / j["lat_us_base"] * 100
    recordable, differing = [], []
    for c in COST_CATEGORIES:
        out[c + "_base"], out[c + "_other"] = j[c + "_base"], j[c + "_other"]
        if j[c + "_base"].notna().all() and j[c + "_other"].notna().all():
            recordable.append(c)
            if ((j[c + "_other"] - j[c + "_base"]).abs() >= SAME_PER_OP).any():
                differing.append(c)
    fit = None
    ndiff = {
        c: int(((j[c + "_other"] - j[c + "_base"]).abs() >= SAME_PER_OP).sum()) for c in differing
    }
    primary = min(differing, key=lambda c: (-ndiff[c], FIT_ORDER.index(c)), default=None)
    if primary:
        dn_all = (out[primary + "_other"] - out[primary + "_base"]).to_numpy(float)
        sel = np.abs(dn_all) >= SAME_PER_OP
        dt, sg = out["dlat_us"].to_numpy(float), sig.to_numpy(float)
        cost, err = fit_cost(dn_all[sel], dt[sel], sg[sel])
        out["cost_us"] = np.where(sel, out["dlat_us"] / np.where(sel, dn_all, 1), np.nan)
        moving = {x: ndiff[x] for x in differing if x != primary}
        fit = Fit(primary, cost, err, int(sel.sum()), moving)
    stmt = statement(out, recordable, differing, fit, base_name, other_name, modes)
    return Comparison(base_name, other_name, out, recordable, differing, fit, stmt)


def _range(pct: pd.Series) -> str:
    return f"median {pct.median():+.1f}%, from {pct.min():+.1f}% to {pct.max():+.1f}%"


def statement(
    out: pd.DataFrame,
    recordable: list[str],
    differing: list[str],
    fit: Fit | None,
    base: str,
    other: str,
    modes: tuple[str, str] = ("", ""),
) -> str:
    if not recordable:
        return "No DMA/IOMMU event kind was recordable in both traces: counts cannot be compared."
    same = [c for c in recordable if c not in differing]
    unrec = [c for c in COST_CATEGORIES if c not in recordable]
    lines = []
    if not differing:
        top = max(max(out[c + "_base"].max(), out[c + "_other"].max()) for c in recordable)
        kinds = ", ".join(LABEL[c] for c in recordable)
        if top == 0:
            lines.append(
                f"The counts do not differ: no timed operation in {base} or {other} "
                f"caused a single event ({kinds}: 0 per operation in all "
                f"{len(out)} cells)."
            )
        else:
            lines.append(
                f"The counts do not differ: {kinds} per operation are the same in "
                f"{base} and {other} in every cell (at most {top:.2f})."
            )
        lines.append(
            f"So the time difference ({_range(out['overhead_pct'])}) does not come from "
            "mapping, unmapping or flushing per operation."
        )
        if modes[0] and modes[0] == modes[1]:
            lines.append(f"Both ran with the IOMMU {modes[0]}: it is run-to-run variation.")
        else:
            lines.append(
                "For pinned memory the mappings are made when it is allocated, so any "
                "IOMMU overhead left must come from address translation (IOTLB misses "
                "and page walks)."
            )
    else:
        lines.append(
            f"{', '.join(LABEL[c] for c in differing)} per operation differ between {base} "
            f"and {other}; overhead {_range(out['overhead_pct'])}."
        )
        if fit:
            lines.append(fit.text() + ".")
        if same:
            lines.append(f"The same in both: {', '.join(LABEL[c] for c in same)}.")
    if unrec:
        lines.append(
            f"Not recordable in both traces (probe absent): {', '.join(LABEL[c] for c in unrec)}."
        )
    return " ".join(lines)
