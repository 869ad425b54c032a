"""The LP that picks the split l (tokens whose K/V are recomputed from activations).

Per layer, for context n, batch B, with a transfer t(bytes) = t0 + bytes/bw and a K/V
recompute r(rows) = c0 + c1*rows (profile.py):

row-by-row (latency; weights resident, one batch, layer after layer):
    T >= t(l*A) + t((n-l)*K) + rest the link carries the activations, then the rest of KV
    T >= t(l*A) + r(B*l) + rest     recompute starts once the activations are in
    T >= issue(l > 0)               the CPU's time to issue the layer's copies and kernels
                                    (eager: from Python; CUDA graphs: the replay's launch)
    (T is the layer: attention/FFN, rest(B, n), need the whole K/V)
column-by-column (throughput; weights also offloaded, loaded once per layer and reused by
m batches; the next batch's transfers overlap this batch's compute):
    T >= t(W) + m*[t(l*A) + t((n-l)*K)]
    T >= t(W) + t(l*A) + m*[r(B*l) + rest(B, n)]
with A = activation bytes per token, K = 2A its K+V. The fixed terms t0, c0 are paid only
when their piece exists: binaries z (l > 0) and y (l < n) make it a small MILP (scipy's
HiGHS). A per-transfer IOMMU map cost adds to t0 and to the per-byte cost (with_map_cost).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from .profile import Profile
from .shape import ModelShape


@dataclass(frozen=True)
class Costs:
    """The linear cost model for one (shape, batch, context)."""

    t0: float  # s per transfer
    per_byte: float  # s per byte (1/bandwidth)
    c0: float  # s per recompute GEMM
    c1: float  # s per recomputed row (token x sequence)
    rest: float  # s for the rest of the layer
    act: int  # activation bytes per token (whole batch)
    kv: int  # K+V bytes per token
    weights: int  # one layer's weight bytes
    batch: int
    context: int
    issue0: float = 0.0  # CPU s to issue a layer without recompute
    issue1: float = 0.0  # ... with recompute
    graphs: bool = False  # the issue times are a CUDA graph replay's, not eager issue's

    def transfer(self, nbytes: float) -> float:
        return self.t0 + nbytes * self.per_byte if nbytes > 0 else 0.0


def costs(p: Profile, shape: ModelShape, batch: int, context: int, graphs: bool = False) -> Costs:
    """The cost model from a profile; `graphs` picks the issue floor of CUDA graph replay."""
    t0, bw = p.transfer_fit()
    c0, c1 = p.recompute_fit(batch * context)
    return Costs(
        t0,
        1.0 / bw,
        c0,
        c1,
        p.rest_time(batch, context),
        shape.act_bytes(batch),
        shape.kv_bytes(batch),
        shape.weight_bytes(),
        batch,
        context,
        p.issue_time(False, graphs),
        p.issue_time(True, graphs),
        graphs,
    )


def with_map_cost(c: Costs, per_map: float, chunk: int) -> Costs:
    """Buffers mapped per transfer, not pinned once: each copy maps and unmaps its pages
    in `chunk`-byte pieces at `per_map` seconds (map + unmap) each, before the DMA runs."""
    return replace(c, t0=c.t0 + per_map, per_byte=c.per_byte + per_map / chunk)


def predict(c: Costs, split: int, schedule: str = "row", batches: int = 1) -> float:
    """Seconds per layer (row) or per layer for all m batches (column) at this split."""
    n, k = c.context, split
    act, rest_kv = c.transfer(k * c.act), c.transfer((n - k) * c.kv)
    rc = c.c0 + c.c1 * c.batch * k if k else 0.0
    if schedule == "row":
        batches = 1  # one batch: the column's m is meaningless here
    issue = batches * (c.issue1 if k else c.issue0)
    if schedule == "row":
        return max(act + rest_kv + c.rest, act + rc + c.rest, issue)
    w = c.transfer(c.weights)
    return max(w + batches * (act + rest_kv), w + act + batches * (rc + c.rest), issue)


@dataclass
class Plan:
    schedule: str
    batch: int
    context: int
    batches: int
    split: int  # tokens recomputed per layer
    fraction: float
    layer_s: float  # predicted per layer (column: per layer for all m batches)
    token_s: float  # predicted per generated token (all layers; column: per token of a batch)
    baseline_layer_s: float  # split 0: every K/V transferred
    gain: float  # 1 - layer_s / baseline_layer_s
    tokens_per_s: float
    baseline_tokens_per_s: float
    costs: dict

    def to_dict(self) -> dict:
        return asdict(self)


def solve(c: Costs, schedule: str = "row", batches: int = 1) -> int:
    """The split l minimising the layer time: a MILP over x = (l, z, y, T)."""
    n, B, m = c.context, c.batch, (batches if schedule == "column" else 1)
    pb = c.per_byte
    # Constraints as rows of A x <= 0 or bounds; T's coefficient -1.
    # link:  t0 z + l A pb + t0 y + (n - l) K pb <= T  ->  m*(...) (+ t(W) in column)
    # chain: t0 z + l A pb + [c0 z + c1 B l] (+ rest) <= T
    w = c.transfer(c.weights) if schedule == "column" else 0.0
    rest = c.rest if schedule == "row" else 0.0  # column: overlapped with the link
    link = [m * (c.act - c.kv) * pb, m * c.t0, m * c.t0, -1.0]  # + m n K pb + w + rest <= T
    chain = [c.act * pb + m * c.c1 * B, c.t0 + m * c.c0, 0.0, -1.0]  # + w + m rest <= T
    issue = [0.0, m * (c.issue1 - c.issue0), 0.0, -1.0]  # + m issue0 <= T: the CPU's floor
    A = np.array([link, chain, issue, [1.0, -n, 0, 0], [-1.0, 0, -n, 0]])
    ub = np.array([-(m * n * c.kv * pb + w + rest), -(w + m * c.rest), -m * c.issue0, 0.0, -n])
    res = milp(
        c=[0, 0, 0, 1.0],
        constraints=LinearConstraint(A, -np.inf, ub),
        integrality=[1, 1, 1, 0],
        bounds=Bounds([0, 0, 0, 0], [n, 1, 1, np.inf]),
    )
    if not res.success:
        raise RuntimeError(f"the split LP did not solve: {res.message}")
    k = int(round(res.x[0]))
    # the LP's optimum is a vertex; rounding may sit one token off the integer best
    return min({max(0, k - 1), k, min(n, k + 1)}, key=lambda s: predict(c, s, schedule, m))


def plan(c: Costs, layers: int, schedule: str = "row", batches: int = 1) -> Plan:
    m = batches if schedule == "column" else 1
    k = solve(c, schedule, m)
    t, t_base = predict(c, k, schedule, m), predict(c, 0, schedule, m)
    tokens = m * c.batch
    return Plan(
        schedule,
        c.batch,
        c.context,
        m,
        k,
        k / c.context,
        t,
        t * layers,
        t_base,
        1.0 - t / t_base,
        tokens / (t * layers),
        tokens / (t_base * layers),
        asdict(c),
    )


def split_grid(n: int, percents: list[int]) -> list[int]:
    return [math.floor(n * p / 100) for p in percents]
