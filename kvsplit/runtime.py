"""A real decode step of a random-init OPT-style model whose KV cache lives in pinned
host memory: per layer, the activations X of the first l cached tokens cross PCIe and
the GPU recomputes their K and V (X·W_K, X·W_V) while the K and V of the other n-l
tokens stream in on a second stream. l = 0 is the baseline (all KV transferred).

A step runs eagerly (Python issues every copy, event and kernel, layer after layer) or
as a CUDA graph captured once per split and replayed (one launch issues the whole step):
a short layer is bound by the eager issue time, which the graph takes away.

torch is imported here only: the planner runs without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .shape import ModelShape

TORCH_DTYPE = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass
class LayerWeights:
    ln1: tuple[torch.Tensor, torch.Tensor]
    wq: torch.Tensor
    bq: torch.Tensor
    wkv: torch.Tensor  # (hidden, 2*hidden): [W_K | W_V], one GEMM recomputes both
    bkv: torch.Tensor
    wo: torch.Tensor
    bo: torch.Tensor
    ln2: tuple[torch.Tensor, torch.Tensor]
    fc1: torch.Tensor
    b1: torch.Tensor
    fc2: torch.Tensor
    b2: torch.Tensor


def random_layer(shape: ModelShape, device, gen: torch.Generator) -> LayerWeights:
    h, f, dt = shape.hidden, shape.ffn, TORCH_DTYPE[shape.dtype]

    def w(*size):  # OPT's init: normal, std 0.02
        return (torch.randn(*size, generator=gen) * 0.02).to(device=device, dtype=dt)

    def ln():
        return torch.ones(h, device=device, dtype=dt), torch.zeros(h, device=device, dtype=dt)

    return LayerWeights(
        ln(),
        w(h, h),
        w(h),
        w(h, 2 * h),
        w(2 * h),
        w(h, h),
        w(h),
        ln(),
        w(h, f),
        w(f),
        w(f, h),
        w(h),
    )


def project_kv(x2d: torch.Tensor, layer: LayerWeights, out: torch.Tensor) -> torch.Tensor:
    """K and V of the rows of x2d, written in place: (rows, hidden) -> (rows, 2*hidden)."""
    return torch.addmm(layer.bkv, x2d, layer.wkv, out=out)


def rest_of_layer(
    x: torch.Tensor, kv: torch.Tensor, layer: LayerWeights, heads: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The new token's layer with the cache in place: attention output and the layer output.

    x: (batch, hidden); kv: (n, batch, 2, hidden), token-major so any prefix is contiguous.
    """
    b, h = x.shape
    n, d = kv.shape[0], h // heads
    y = torch.nn.functional.layer_norm(x, (h,), *layer.ln1)
    q = torch.addmm(layer.bq, y, layer.wq).view(b, heads, d)
    k = kv[:, :, 0].view(n, b, heads, d)
    v = kv[:, :, 1].view(n, b, heads, d)
    scores = torch.einsum("bhd,nbhd->bhn", q, k) * (1.0 / math.sqrt(d))
    p = torch.softmax(scores.float(), dim=-1).to(x.dtype)
    a = torch.einsum("bhn,nbhd->bhd", p, v).reshape(b, h)
    attn = torch.addmm(layer.bo, a, layer.wo)
    x = x + attn
    y = torch.nn.functional.layer_norm(x, (h,), *layer.ln2)
    y = torch.relu(torch.addmm(layer.b1, y, layer.fc1))
    return attn, x + torch.addmm(layer.b2, y, layer.fc2)


@dataclass
class OffloadedModel:
    """`layers_run` layers of a shape, their caches (X and K/V of n tokens) in host memory."""

    shape: ModelShape
    batch: int
    context: int
    device: torch.device
    layers: list[LayerWeights]
    x_host: list[torch.Tensor]  # (n, batch, hidden) per layer
    kv_host: list[torch.Tensor]  # (n, batch, 2, hidden) per layer
    x_dev: torch.Tensor  # one device buffer of each, reused layer after layer
    kv_dev: torch.Tensor
    x0: torch.Tensor
    streams: tuple = field(default=())


def build(
    shape: ModelShape, batch: int, context: int, layers_run: int, device: str = "cuda", seed=0
) -> OffloadedModel:
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    dt = TORCH_DTYPE[shape.dtype]
    n, b, h = context, batch, shape.hidden
    pin = dev.type == "cuda"
    layers, xs, kvs = [], [], []
    x_dev = torch.empty(n, b, h, device=dev, dtype=dt)
    kv_dev = torch.empty(n, b, 2, h, device=dev, dtype=dt)
    for _ in range(layers_run):
        layer = random_layer(shape, dev, gen)
        # The prefill's layer inputs, and the K/V the same GEMM made of them.
        x_dev.copy_(torch.randn(n, b, h, generator=gen).to(dt))
        project_kv(x_dev.view(n * b, h), layer, kv_dev.view(n * b, 2 * h))
        xs.append(torch.empty(n, b, h, dtype=dt, pin_memory=pin).copy_(x_dev))
        kvs.append(torch.empty(n, b, 2, h, dtype=dt, pin_memory=pin).copy_(kv_dev))
        layers.append(layer)
    x0 = torch.randn(b, h, generator=gen).to(device=dev, dtype=dt)
    streams = (torch.cuda.Stream(dev), torch.cuda.Stream(dev)) if pin else ()
    if pin:
        torch.cuda.synchronize()
    return OffloadedModel(shape, b, n, dev, layers, xs, kvs, x_dev, kv_dev, x0, streams)


def decode_step(m: OffloadedModel, split: int) -> list[torch.Tensor]:
    """One token through the layers with the first `split` cached tokens recomputed.

    On the GPU: the copy stream moves X[:l] then KV[l:]; the compute stream recomputes
    K/V[:l] once X[:l] has arrived (overlapping the KV copy) and runs attention once
    both are in. Returns each layer's attention output.
    """
    n, b, h = m.context, m.batch, m.shape.hidden
    k = max(0, min(split, n))
    outs, x = [], m.x0
    if not m.streams:  # CPU: the same work in order
        for i, layer in enumerate(m.layers):
            m.kv_dev[k:].copy_(m.kv_host[i][k:])
            if k:
                m.x_dev[:k].copy_(m.x_host[i][:k])
                project_kv(m.x_dev[:k].view(k * b, h), layer, m.kv_dev[:k].view(k * b, 2 * h))
            attn, x = rest_of_layer(x, m.kv_dev, layer, m.shape.heads)
            outs.append(attn)
        return outs
    copy, comp = m.streams
    for i, layer in enumerate(m.layers):
        copy.wait_stream(comp)  # the device buffers are free once the last layer is done
        with torch.cuda.stream(copy):
            if k:
                m.x_dev[:k].copy_(m.x_host[i][:k], non_blocking=True)
                act_in = torch.cuda.Event()
                act_in.record(copy)
            if k < n:
                m.kv_dev[k:].copy_(m.kv_host[i][k:], non_blocking=True)
            kv_in = torch.cuda.Event()
            kv_in.record(copy)
        with torch.cuda.stream(comp):
            if k:
                comp.wait_event(act_in)
                project_kv(m.x_dev[:k].view(k * b, h), layer, m.kv_dev[:k].view(k * b, 2 * h))
            comp.wait_event(kv_in)
            attn, x = rest_of_layer(x, m.kv_dev, layer, m.shape.heads)
            outs.append(attn)
    return outs


class GraphsUnavailable(RuntimeError):
    """CUDA graphs cannot run for this model (say why in one line)."""


def graphs_unavailable(m: OffloadedModel) -> str | None:
    """Why this model cannot run as a CUDA graph, or None."""
    if m.device.type != "cuda":
        return f"CUDA graphs need a CUDA device (this model is on {m.device.type})"
    if not torch.cuda.is_available():
        return "CUDA graphs need a CUDA device (torch sees none)"
    return None


@dataclass
class GraphStep:
    """One decode step at one split captured as a CUDA graph. Its inputs are the model's
    fixed buffers (x0, the pinned host caches, read again by every replay) and its
    outputs are `outs`, which every replay rewrites in place."""

    split: int
    graph: torch.cuda.CUDAGraph
    outs: list[torch.Tensor]

    def replay(self, m: OffloadedModel) -> list[torch.Tensor]:
        with torch.cuda.stream(m.streams[1]):
            self.graph.replay()
        return self.outs


def capture(m: OffloadedModel, split: int) -> GraphStep:
    """Capture decode_step(m, split) on the compute stream. The copy stream joins the
    capture through decode_step's own fork (copy waits on compute) and join (compute
    waits on the copies' events), so the graph keeps the two branches concurrent."""
    why = graphs_unavailable(m)
    if why:
        raise GraphsUnavailable(why)
    decode_step(m, split)  # cuBLAS handles and workspaces exist before capture
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=m.streams[1]):
        outs = decode_step(m, split)
    torch.cuda.synchronize()
    return GraphStep(split, g, outs)


def time_step(
    m: OffloadedModel, split: int, iters: int = 5, warmup: int = 2, graph: GraphStep | None = None
) -> list[float]:
    """Seconds per decode step over `layers_run` layers, each step timed with CUDA events
    from an idle GPU: eager (issued from Python) or, with `graph`, one replay."""
    comp = m.streams[1]
    if graph is not None and graph.split != split:
        raise ValueError(f"graph captured for split {graph.split}, not {split}")
    times = []
    for it in range(warmup + iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record(comp)
        if graph is None:
            decode_step(m, split)
        else:
            graph.replay(m)
        end.record(comp)
        end.synchronize()
        if it >= warmup:
            times.append(start.elapsed_time(end) / 1e3)
    return times


def outputs(m: OffloadedModel, split: int, graph: GraphStep | None = None) -> list[torch.Tensor]:
    """Each layer's attention output of one step (eager, or a replay of `graph`), on the
    CPU once the GPU has finished (the streams are not the default one)."""
    outs = decode_step(m, split) if graph is None else graph.replay(m)
    if m.streams:
        torch.cuda.synchronize()
    return [o.float().cpu() for o in outs]


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


def compare(m: OffloadedModel, split: int, graph: GraphStep | None = None) -> float:
    """Largest absolute difference of any layer's attention output from the eager
    baseline (split 0): the eager split's and, with `graph`, the graph replay's too."""
    base = outputs(m, 0)
    diff = _max_diff(base, outputs(m, split)) if split else 0.0
    if graph is not None:
        diff = max(diff, _max_diff(base, outputs(m, split, graph)))
    return diff
