"""The profile the planner reads: the H2D link (pinned) and the GPU's time for the two
pieces of a decode layer, measured with torch on the spot and saved as JSON.

- transfer: seconds per pinned host-to-device copy by size, and the fit t = t0 + bytes/bw;
- recompute: seconds of the K/V GEMM (rows = batch x tokens) for the model shape;
- rest: seconds of the rest of the layer (attention over n cached tokens, O and FFN)
  for each (batch, context) asked for;
- issue: the CPU's time to issue one layer, eager (every copy, event and kernel from
  Python) and as a CUDA graph replay (one launch for the whole step).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field

import numpy as np

from .shape import ModelShape, shape_from_dict

FORMAT = "iommu-trace.kvsplit.profile/1"
SLEEP_CYCLES = 4_000_000  # ~2 ms at the H200's clock: longer than any launch sequence here


@dataclass
class Profile:
    device: str
    shape: ModelShape
    transfer: list[tuple[int, float]]  # (bytes, median seconds) per size
    recompute: list[tuple[int, float]]  # (rows, median seconds)
    rest: list[tuple[int, int, float]]  # (batch, context, median seconds)
    notes: dict = field(default_factory=dict)
    # CPU seconds to issue one layer's work (copies, events, kernels): (recomputes?, s).
    # A short layer is bound by it, not by the GPU or the link.
    issue: list[tuple[int, float]] = field(default_factory=list)
    # The same as a CUDA graph replay: the graph launch's CPU cost per layer.
    issue_graph: list[tuple[int, float]] = field(default_factory=list)

    def has_issue(self, graphs: bool = False) -> bool:
        return bool(self.issue_graph if graphs else self.issue)

    def issue_time(self, recompute: bool, graphs: bool = False) -> float:
        """CPU seconds to issue a layer in this mode; 0 where the profile has none."""
        for r, t in self.issue_graph if graphs else self.issue:
            if bool(r) == recompute:
                return t
        return 0.0

    # ---- the linear models the LP uses
    def transfer_fit(self, min_bytes: int = 1 << 20) -> tuple[float, float]:
        """(t0 seconds, bandwidth bytes/s) of t = t0 + bytes/bw over the larger copies."""
        pts = [(b, t) for b, t in self.transfer if b >= min_bytes] or self.transfer
        if len(pts) == 1:
            return 0.0, pts[0][0] / pts[0][1]
        slope, t0 = np.polyfit([b for b, _ in pts], [t for _, t in pts], 1)
        return max(float(t0), 0.0), 1.0 / float(slope)

    def recompute_fit(self, max_rows: int) -> tuple[float, float]:
        """(c0 seconds, c1 seconds per row) of the K/V GEMM over rows up to max_rows."""
        pts = [(r, t) for r, t in self.recompute if max_rows / 20 <= r <= max_rows * 1.01]
        if len(pts) < 2:
            pts = sorted(self.recompute, key=lambda p: abs(p[0] - max_rows))[:2]
        if len(pts) == 1:
            return 0.0, pts[0][1] / pts[0][0]
        c1, c0 = np.polyfit([r for r, _ in pts], [t for _, t in pts], 1)
        return max(float(c0), 0.0), max(float(c1), 0.0)

    def rest_time(self, batch: int, context: int) -> float:
        for b, n, t in self.rest:
            if (b, n) == (batch, context):
                return t
        if not self.rest:
            return 0.0
        # not measured: linear in the cached rows batch x context
        if len(self.rest) == 1:
            return self.rest[0][2] * batch * context / (self.rest[0][0] * self.rest[0][1])
        a1, a0 = np.polyfit([b * n for b, n, _ in self.rest], [t for *_, t in self.rest], 1)
        return max(float(a0 + a1 * batch * context), 0.0)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["format"] = FORMAT
        t0, bw = self.transfer_fit()
        d["transfer_fit"] = {"t0_s": t0, "bandwidth_Bps": bw}
        return d


def profile_from_dict(d: dict) -> Profile:
    if d.get("format") != FORMAT:
        raise ValueError(f"not a kvsplit profile (format {d.get('format')!r}, want {FORMAT})")
    return Profile(
        d["device"],
        shape_from_dict(d["shape"]),
        [tuple(p) for p in d["transfer"]],
        [tuple(p) for p in d["recompute"]],
        [tuple(p) for p in d["rest"]],
        d.get("notes", {}),
        [tuple(p) for p in d.get("issue", [])],
        [tuple(p) for p in d.get("issue_graph", [])],
    )


def load(path: str) -> Profile:
    with open(path) as f:
        return profile_from_dict(json.load(f))


def save(p: Profile, path: str) -> None:
    with open(path, "w") as f:
        json.dump(p.to_dict(), f, indent=1)


# ---- measuring (torch, CUDA)


def _median_time(fn, stream, reps: int, warmup: int = 2) -> float:
    import torch

    times = []
    for i in range(warmup + reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.cuda.stream(stream):
            # GPU time, not launch time: in a decode step the kernels are queued behind a
            # copy before they run, so the CPU's launch cost is hidden; a sleep queues them
            # here the same way.
            torch.cuda._sleep(SLEEP_CYCLES)
            a.record(stream)
            fn()
            b.record(stream)
        b.synchronize()
        if i >= warmup:
            times.append(a.elapsed_time(b) / 1e3)
    return statistics.median(times)


def measure(
    shape: ModelShape,
    configs: list[tuple[int, int]],
    sizes: list[int] | None = None,
    reps: int = 10,
) -> Profile:
    """Measure the link and the GPU for this shape and these (batch, context) pairs."""
    import torch

    from . import runtime

    dev = torch.device("cuda")
    s = torch.cuda.Stream(dev)
    sizes = sizes or [1 << k for k in range(16, 30, 1)]
    big = torch.empty(max(sizes), dtype=torch.uint8, pin_memory=True)
    dst = torch.empty(max(sizes), dtype=torch.uint8, device=dev)
    transfer = [
        (n, _median_time(lambda n=n: dst[:n].copy_(big[:n], non_blocking=True), s, reps))
        for n in sizes
    ]
    layer = runtime.random_layer(shape, dev, torch.Generator().manual_seed(0))
    dt, h = runtime.TORCH_DTYPE[shape.dtype], shape.hidden
    max_rows = max(b * n for b, n in configs)
    rows = sorted(
        {
            max(1, int(b * n * f))
            for b, n in configs
            for f in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
        }
    )
    x = torch.randn(max_rows, h, device=dev, dtype=dt)
    out = torch.empty(max_rows, 2 * h, device=dev, dtype=dt)
    recompute = [
        (r, _median_time(lambda r=r: runtime.project_kv(x[:r], layer, out[:r]), s, reps))
        for r in rows
    ]
    rest = []
    for b, n in configs:
        kv = torch.randn(n, b, 2, h, device=dev, dtype=dt)
        x0 = torch.randn(b, h, device=dev, dtype=dt)
        t = _median_time(
            lambda kv=kv, x0=x0: runtime.rest_of_layer(x0, kv, layer, shape.heads), s, reps
        )
        rest.append((b, n, t))
    issue, issue_graph = measure_issue(shape, reps)
    return Profile(
        torch.cuda.get_device_name(dev),
        shape,
        transfer,
        recompute,
        rest,
        {
            "torch": torch.__version__,
            "reps": reps,
            "statistic": "median, CUDA events, kernels queued behind a GPU sleep",
        },
        issue,
        issue_graph,
    )


def _issue_time(issue, sleep_stream, layers: int, reps: int) -> float:
    """Median CPU seconds per layer of issue(), while the GPU sleeps on sleep_stream."""
    import time

    import torch

    times = []
    for i in range(2 + reps):
        torch.cuda.synchronize()
        with torch.cuda.stream(sleep_stream):
            torch.cuda._sleep(10 * SLEEP_CYCLES)
        t = time.perf_counter()
        issue()
        if i >= 2:
            times.append((time.perf_counter() - t) / layers)
    torch.cuda.synchronize()
    return statistics.median(times)


def measure_issue(
    shape: ModelShape, reps: int, context: int = 256
) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """CPU seconds per layer to issue a decode step, without and with recompute: eager
    (decode_step from Python) and as one CUDA graph replay; measured while the GPU
    sleeps so that nothing the CPU issues has to wait for it. A replay's cost is per
    step, not per layer: spread over this 2-layer step it is an upper bound for more."""
    from . import runtime

    m = runtime.build(shape, 1, context, 2, "cuda")
    n, comp = len(m.layers), m.streams[1]
    eager, graph = [], []
    for split in (0, context // 2):
        g = runtime.capture(m, split)
        eager.append(
            (int(split > 0), _issue_time(lambda s=split: runtime.decode_step(m, s), comp, n, reps))
        )
        graph.append((int(split > 0), _issue_time(lambda g=g: g.replay(m), comp, n, reps)))
        del g
    return eager, graph
