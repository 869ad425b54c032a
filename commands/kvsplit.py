"""`iommu-trace kvsplit`: profile the link and GPU, plan the KV-cache split, run it."""

from __future__ import annotations

import json

import click

from ..errors import UserError
from ..kvsplit.shape import DTYPE_BYTES, OPT, ModelShape


def _shape_options(f):
    opts = [
        click.option(
            "--model",
            "model",
            default="opt-6.7b",
            show_default=True,
            type=click.Choice(sorted(OPT)),
            help="OPT config for the shape (no weights)",
        ),
        click.option("--hidden", type=int, help="override the hidden size"),
        click.option("--heads", type=int, help="override the attention heads"),
        click.option("--layers", type=int, help="override the layer count"),
        click.option("--ffn", type=int, help="override the FFN size"),
        click.option(
            "--dtype", type=click.Choice(sorted(DTYPE_BYTES)), default="fp16", show_default=True
        ),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _shape(model, hidden, heads, layers, ffn, dtype) -> ModelShape:
    s = OPT[model]
    return ModelShape(
        s.name if not (hidden or heads or layers or ffn) else f"{s.name}-custom",
        hidden or s.hidden,
        heads or s.heads,
        layers or s.layers,
        ffn or s.ffn,
        dtype,
    )


def _need_torch_cuda(device: str = "cuda"):
    try:
        import torch
    except ImportError as e:
        raise UserError("torch is not installed (pip install 'iommu-trace[kvsplit]')") from e
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "no CUDA device: profiling and timing need the GPU (try --device cpu "
            "for a numerical check only)"
        )


def _load_profile(path: str):
    from ..kvsplit import profile

    try:
        return profile.load(path)
    except (ValueError, KeyError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: {e}") from e


def _note_missing_floor(p, graphs: bool) -> None:
    if not p.has_issue(graphs):
        mode = "CUDA-graph" if graphs else "eager"
        click.echo(
            f"note: the profile has no {mode} CPU issue floor (measured by an older "
            "`kvsplit profile`); it counts as 0",
            err=True,
        )


def _size(s: str) -> int:
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    s = s.strip().lower()
    try:
        return int(float(s[:-1]) * mult[s[-1]]) if s[-1] in mult else int(s)
    except (ValueError, IndexError) as e:
        raise click.BadParameter(f"{s!r} is not a size (e.g. 4096, 64k, 2m)") from e


@click.group(
    epilog="\b\nExamples:\n"
    + "  iommu-trace kvsplit profile --batch 1,8 --context 1024,4096 -o h200.json\n"
    + "  iommu-trace kvsplit plan --profile h200.json --batch 8 --context 4096\n"
    + "  iommu-trace kvsplit run --profile h200.json --batch 1,8 --context 1024,4096 -o res.json\n"
)
def kvsplit() -> None:
    """I/O-aware KV-cache split: recompute K/V of the first l tokens from activations.

    A KV cache in host memory makes decode PCIe-bound. Sending a token's activations
    (half the bytes of its K and V) and recomputing K and V on the GPU, while the rest of
    the cache streams in, moves fewer bytes. `profile` measures the link and the GPU,
    `plan` picks l with an LP, `run` executes a real decode step with it (docs/kvsplit.md).
    """


def _graphs_option(default: bool | None):
    return click.option(
        "--graphs/--no-graphs",
        default=default,
        help="run each step as one CUDA graph replay (default on CUDA), or issue it "
        "eagerly from Python; the LP's CPU issue floor follows the mode",
    )


def _ints(ctx, param, value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError as e:
        raise click.BadParameter(f"{value!r} is not a comma list of integers") from e


@kvsplit.command(
    epilog="\b\nExamples:\n"
    + "  iommu-trace kvsplit profile -o h200.json\n"
    + "  iommu-trace kvsplit profile --model opt-13b --batch 4 --context 2048 -o p.json\n"
)
@_shape_options
@click.option("--batch", default="1,8", show_default=True, callback=_ints, help="batch sizes")
@click.option(
    "--context",
    default="1024,4096",
    show_default=True,
    callback=_ints,
    help="context lengths (cached tokens)",
)
@click.option("--reps", default=10, show_default=True, help="timed repetitions per point")
@click.option("-o", "--output", default="kvsplit-profile.json", show_default=True)
def profile(model, hidden, heads, layers, ffn, dtype, batch, context, reps, output) -> None:
    """Measure pinned H2D bandwidth by size and the GPU's K/V recompute and layer time."""
    from ..kvsplit import profile as prof
    from ..kvsplit import schedule

    _need_torch_cuda()
    shape = _shape(model, hidden, heads, layers, ffn, dtype)
    p = prof.measure(shape, [(b, n) for b in batch for n in context], reps=reps)
    prof.save(p, output)
    t0, bw = p.transfer_fit()
    click.echo(f"{p.device}: pinned H2D {bw / 1e9:.2f} GB/s + {t0 * 1e6:.1f} us per copy")
    click.echo(
        "  CPU issue per layer (without / with recompute): eager "
        + " / ".join(f"{p.issue_time(r) * 1e6:.1f}" for r in (False, True))
        + " us, CUDA graph replay "
        + " / ".join(f"{p.issue_time(r, True) * 1e6:.1f}" for r in (False, True))
        + " us"
    )
    for b in batch:
        for n in context:
            c = schedule.costs(p, shape, b, n)
            click.echo(
                f"  batch {b} context {n}: recompute {c.c0 * 1e6:.1f} us + "
                f"{c.c1 * 1e9:.3f} ns/row, rest of layer {c.rest * 1e3:.3f} ms"
            )
    click.echo(f"wrote {output}")


@kvsplit.command(
    epilog="\b\nExamples:\n"
    + "  iommu-trace kvsplit plan --profile h200.json --batch 8 --context 4096\n"
    + "  iommu-trace kvsplit plan --profile h200.json --schedule column --batches 8\n"
    + "  iommu-trace kvsplit plan --profile h200.json --map-cost-us 72 --map-chunk 64k\n"
    + "  iommu-trace kvsplit plan --profile h200.json --batch 1 --context 1024 --no-graphs\n"
)
@click.option(
    "--profile",
    "profile_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="profile JSON from `kvsplit profile`",
)
@_shape_options
@click.option("--batch", default=8, show_default=True)
@click.option("--context", default=4096, show_default=True)
@click.option(
    "--schedule",
    "sched",
    type=click.Choice(["row", "column"]),
    default="row",
    show_default=True,
    help="row: latency (one batch); column: throughput",
)
@click.option(
    "--batches",
    default=4,
    show_default=True,
    help="column schedule: batches that reuse one layer's weights",
)
@click.option(
    "--map-cost-us",
    type=float,
    default=0.0,
    show_default=True,
    help="map+unmap cost per chunk when buffers are mapped per transfer "
    "(README's lab: strict unmap 72.0 us per 64 KiB)",
)
@click.option("--map-chunk", default="64k", show_default=True, help="bytes per map")
@_graphs_option(True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="write the plan as JSON")
def plan(
    profile_path,
    model,
    hidden,
    heads,
    layers,
    ffn,
    dtype,
    batch,
    context,
    sched,
    batches,
    map_cost_us,
    map_chunk,
    graphs,
    output,
) -> None:
    """Pick the split with the LP and print the predicted layer and token time."""
    from ..kvsplit import schedule
    from ..render import kvsplit as render

    p = _load_profile(profile_path)
    shape = _shape(model, hidden, heads, layers, ffn, dtype)
    if shape.hidden != p.shape.hidden or shape.dtype != p.shape.dtype:
        click.echo(
            f"note: the profile was measured for {p.shape.name} ({p.shape.hidden}, "
            f"{p.shape.dtype}); its recompute times are used as they are",
            err=True,
        )
    _note_missing_floor(p, graphs)
    c = schedule.costs(p, shape, batch, context, graphs)
    if map_cost_us:
        c = schedule.with_map_cost(c, map_cost_us * 1e-6, _size(map_chunk))
    pl = schedule.plan(c, shape.layers, sched, batches)
    click.echo(render.plan_text(pl, shape.layers))
    if output:
        with open(output, "w") as f:
            json.dump(
                {
                    "shape": shape.to_dict(),
                    "profile": profile_path,
                    "map_cost_us": map_cost_us,
                    "map_chunk": _size(map_chunk),
                    **pl.to_dict(),
                },
                f,
                indent=1,
            )
        click.echo(f"wrote {output}")


@kvsplit.command(
    epilog="\b\nExamples:\n"
    + "  iommu-trace kvsplit run --profile h200.json -o res.json --table res.md --plot res.svg\n"
    + "  iommu-trace record -o kv.iot -- iommu-trace kvsplit run --profile h200.json \\\n"
    + "      --batch 8 --context 1024 --splits 0,100 --iters 2\n"
    + "  iommu-trace kvsplit run --profile h200.json --batch 1 --context 1024 --no-graphs\n"
    + "  iommu-trace kvsplit run --device cpu --profile h200.json --batch 2 --context 64\n"
)
@click.option(
    "--profile",
    "profile_path",
    type=click.Path(dir_okay=False),
    help="profile JSON (measured on the spot when not given)",
)
@_shape_options
@click.option("--batch", default="1,8", show_default=True, callback=_ints)
@click.option("--context", default="1024,4096", show_default=True, callback=_ints)
@click.option(
    "--splits",
    default="0,10,20,30,40,50,60,70,80,90,100",
    show_default=True,
    callback=_ints,
    help="percent of the context recomputed (the LP's split is added)",
)
@click.option(
    "--layers-run",
    default=4,
    show_default=True,
    help="layers actually run (each with its own weights and host cache)",
)
@click.option("--iters", default=5, show_default=True, help="timed steps per split")
@click.option(
    "--device",
    type=click.Choice(["cuda", "cpu"]),
    default="cuda",
    show_default=True,
    help="cpu: numerical check only, no timing",
)
@_graphs_option(None)
@click.option("-o", "--output", default="kvsplit-results.json", show_default=True)
@click.option("--table", "table_path", type=click.Path(dir_okay=False), help="markdown table")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="SVG/PNG plot")
def run(
    profile_path,
    model,
    hidden,
    heads,
    layers,
    ffn,
    dtype,
    batch,
    context,
    splits,
    layers_run,
    iters,
    device,
    graphs,
    output,
    table_path,
    plot_path,
) -> None:
    """Run real decode steps over splits: predicted vs measured, equality vs full transfer."""
    from ..kvsplit import profile as prof
    from ..kvsplit import sweep
    from ..render import kvsplit as render

    _need_torch_cuda(device)
    if graphs is None:
        graphs = device == "cuda"
    elif graphs and device != "cuda":
        raise UserError("--graphs needs --device cuda (CUDA graphs); --device cpu runs eagerly")
    shape = _shape(model, hidden, heads, layers, ffn, dtype)
    configs = [(b, n) for b in batch for n in context]
    if profile_path:
        p = _load_profile(profile_path)
    elif device == "cuda":
        p = prof.measure(shape, configs)
    else:
        raise UserError("--device cpu needs --profile (the CPU is not profiled)")
    if device == "cuda":
        _note_missing_floor(p, graphs)

    def show(cfg: dict) -> None:
        ch = cfg.get("chosen")
        mode = "graphs" if cfg["graphs"] else "eager"
        line = (
            f"batch {cfg['batch']} context {cfg['context']} ({mode}): "
            f"LP split {cfg['plan']['split']}"
        )
        if ch:
            line += (
                f", predicted {ch['predicted_layer_s'] * 1e3:.3f} ms/layer, measured "
                f"{ch['measured_layer_s'] * 1e3:.3f} ({ch['error']:+.1%}), gain over full "
                f"transfer {ch['measured_gain']:+.1%}"
            )
        diff = max(r["max_abs_diff"] for r in cfg["splits"])
        click.echo(f"{line}; max |attention - baseline| {diff:.2g}")

    res = sweep.run(shape, p, configs, splits, layers_run, iters, output, device, show, graphs)
    if table_path:
        with open(table_path, "w") as f:
            f.write(render.results_markdown(res))
    if plot_path:
        render.results_plot(res, plot_path)
    click.echo(f"wrote {output}")
