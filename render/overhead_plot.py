"""The study's "arch" plot: overhead % against region size, one line per access pattern.

One panel per (memory, direction, mode).  With several comparisons (lab: strict
and lazy against passthrough) each gets its own line style.  The compared trace's
count per operation of the explaining event kind is drawn dotted on a right axis,
so the curve and the events that explain it sit side by side (flushes per
operation where they differ, else the fitted kind).  With a single
trace the panels show bandwidth instead.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ..analysis.overhead_fit import Comparison
from ..analysis.taxonomy import SHORT
from .units import human_size

FORMATS = (".svg", ".png", ".pdf")
STYLES = ["-", "--", "-.", ":"]


def _facets(df: pd.DataFrame) -> list[tuple[str, str, str]]:
    return list(dict.fromkeys(zip(df["memory"], df["direction"], df["mode"], strict=True)))


def _explaining(cmp: Comparison | None) -> str | None:
    """The event kind drawn beside the curve: flushes where they differ, else the fitted kind."""
    if cmp is None:
        return None
    if "flush" in cmp.differing:
        return "flush"
    return cmp.fit.category if cmp.fit else None


def arch_plot(path: str, singles: list, comps: list[Comparison]) -> None:
    import matplotlib  # noqa: PLC0415 - only this option needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    if comps:
        series: list[tuple[str, Any, str, str, Comparison | None]] = [
            (c.other, c.cells, "overhead_pct", "err_pct", c) for c in comps
        ]
        ylabel = "overhead % (T_on / T_off - 1)"
        title = "IOMMU overhead against " + comps[0].base
    else:
        name, _, cells, _ = singles[0]
        series = [(name, cells.assign(err=float("nan")), "gbps", "err", None)]
        ylabel, title = "bandwidth GB/s", name
    facets = _facets(series[0][1])
    ncols = min(4, len(facets))
    nrows = math.ceil(len(facets) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    patterns = list(dict.fromkeys(series[0][1]["pattern"]))
    # one pattern (the lab's dd): colour by compared trace instead
    by_trace = len(patterns) == 1 and len(series) > 1
    for ax, (mem, direc, mode) in zip(axes.flat, facets, strict=False):
        twin = None
        for k, (name, df, ycol, ecol, cmp) in enumerate(series):
            f = df[(df["memory"] == mem) & (df["direction"] == direc) & (df["mode"] == mode)]
            for i, p in enumerate(patterns):
                g = f[f["pattern"] == p].sort_values("size")
                if g.empty:
                    continue
                color = f"C{k if by_trace else i}"
                x = [math.log2(s) for s in g["size"]]
                label = p if len(series) == 1 else f"{p}, {name}"
                ax.errorbar(x, g[ycol], yerr=g[ecol].fillna(0), color=color,
                            ls=STYLES[0 if by_trace else k % len(STYLES)], marker="o", ms=3,
                            capsize=2, label=label)  # fmt: skip
                cat = _explaining(cmp)
                if cat:
                    twin = twin or ax.twinx()
                    twin.plot(x, g[cat + "_other"], color=color, ls=":", marker="x", ms=3,
                              alpha=0.7)  # fmt: skip
                    twin.set_ylabel(f"{SHORT[cat]} per op (dotted)", fontsize=8)
        if comps:
            ax.axhline(0, color="grey", lw=0.6)
        sizes = sorted(set(series[0][1]["size"]))
        ax.set_xticks([math.log2(s) for s in sizes])
        ax.set_xticklabels(
            [human_size(int(s)).replace(" ", "") for s in sizes], rotation=60, fontsize=7
        )
        words = dict.fromkeys(x for x in (mem, direc, mode) if x and x != "-")  # dd: "read" once
        ax.set_title(" ".join(words), fontsize=9)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(facets) :]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
