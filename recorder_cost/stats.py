"""Slowdown statistics for the overhead harness: paired medians with a bootstrap CI.

A pair is one untraced run and the traced run next to it (the harness
interleaves them, so slow drift of the machine cancels within a pair). The
slowdown of a pair is untraced / traced throughput - 1: 0.05 means the traced
run did 5% less work per second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Slowdown:
    median: float  # median over pairs of (untraced / traced - 1)
    low: float  # bootstrap 95% CI of that median
    high: float
    pairs: int


def pair_slowdowns(untraced: list[float], traced: list[float]) -> np.ndarray:
    u, t = np.asarray(untraced, float), np.asarray(traced, float)
    if u.shape != t.shape or u.size == 0:
        raise ValueError(f"need equal, non-empty lists of pairs ({u.size} vs {t.size})")
    if (u <= 0).any() or (t <= 0).any():
        raise ValueError("throughputs must be positive")
    return u / t - 1


def bootstrap_median_ci(
    values: np.ndarray, *, level: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the median (resampling with replacement, seeded)."""
    v = np.asarray(values, float)
    rng = np.random.default_rng(seed)
    meds = np.median(v[rng.integers(0, v.size, size=(resamples, v.size))], axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(meds, alpha)), float(np.quantile(meds, 1 - alpha))


def slowdown(untraced: list[float], traced: list[float], **kw) -> Slowdown:
    s = pair_slowdowns(untraced, traced)
    low, high = bootstrap_median_ci(s, **kw)
    return Slowdown(float(np.median(s)), low, high, int(s.size))
