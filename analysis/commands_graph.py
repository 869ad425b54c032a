"""`iommu-trace callgraph`, `calls` and `export`: the CUDA-call to DMA-mapping readers."""

from __future__ import annotations

import json
import os
import shlex

import click

# cli.py imports this module at its end: cli is imported inside the commands,
# since importing it here would be circular under `python -m iommu_trace.cli`.
from . import attribution, render_graph
from . import callgraph as cg
from .dma_events import KINDS
from .render_graph import events_text, human_bytes


def _caption(t) -> str:
    m = t.meta
    cmd = shlex.join(m["command"]) if m.get("command") else f"({m.get('follow')})"
    iommu = (m.get("iommu") or {}).get("mode") or "?"
    kernel = (m.get("kernel") or {}).get("release") or "?"
    return f"{os.path.basename(t.path)}: {cmd} · {m.get('hostname')} · {kernel} · IOMMU {iommu}"


@click.command("callgraph")
@click.argument("trace", type=click.Path(dir_okay=False))
@click.option("-o", "--output", help="FILE.svg, .pdf, .png, .dot or .json (networkx node-link)")
@click.option("--format", "fmt", type=click.Choice([*render_graph.FORMATS, "json"]),
              help="output format, if not the extension's")  # fmt: skip
@click.option("--from", "from_fn", multiple=True, metavar="FUNC",
              help="keep paths through FUNC, drawn from it down (repeatable, globs)")  # fmt: skip
@click.option("--to", "to_fn", multiple=True, metavar="FUNC",
              help="keep paths reaching FUNC, drawn down to it (repeatable)")  # fmt: skip
@click.option("--collapse", is_flag=True,
              help="leave out frames inside a layer but the telling ones (dashed)")  # fmt: skip
@click.option("--keep", multiple=True, metavar="FUNC", help="a frame --collapse must keep")
@click.option("--landmarks/--no-landmarks", default=True, show_default=True,
              help="--collapse keeps the driver functions that tell the story")  # fmt: skip
@click.option("--kind", "kinds", multiple=True, type=click.Choice(KINDS),
              help="only these kernel events (default: all)")  # fmt: skip
@click.option("--probe", "probes", multiple=True, help="only events of this probe (dma_map_sg…)")
@click.option("--app-frames", default=1, show_default=True,
              help="application frames kept above the outermost CUDA frame")  # fmt: skip
@click.option("--edge-labels", type=click.Choice(["changes", "all", "none"]), default="changes",
              show_default=True, help="which edges carry events · bytes")  # fmt: skip
@click.option("--no-legend", is_flag=True, help="leave the legend out")
@click.option("--caption/--no-caption", default=True, show_default=True,
              help="name the trace, host, kernel and IOMMU mode under the graph")  # fmt: skip
@click.option("--rankdir", type=click.Choice(["TB", "LR"]), default="TB", show_default=True)
@click.option("--runs", type=click.Choice(["edges", "nodes"]), default="edges", show_default=True,
              help="draw frames left out as a dashed edge, or as a node")  # fmt: skip
def callgraph(trace, output, fmt, from_fn, to_fn, collapse, keep, landmarks, kinds, probes,
              app_frames, edge_labels, no_legend, caption, rankdir, runs) -> None:  # fmt: skip
    """Draw the CUDA -> ioctl -> driver -> DMA/IOMMU call paths of a trace's mappings.

    \b
      iommu-trace callgraph run.iot -o path.svg
      iommu-trace callgraph run.iot --from cudaHostAlloc --to dma_map_sg_attrs -o path.pdf
      iommu-trace callgraph run.iot --from cudaHostAlloc --from cudaFreeHost --collapse -o p.png
    User and kernel stacks of each DMA/IOMMU event are joined into one path;
    edges count the events that went through them and the bytes they mapped.
    """
    from ..cli import UserError, load_trace

    t = load_trace(trace)
    opts = cg.Options(
        from_fn=from_fn, to_fn=to_fn, collapse=collapse, keep=keep, landmarks=landmarks,
        app_frames=app_frames,
        kinds=kinds, probes=probes,
    )  # fmt: skip
    evs = cg.dma_events.kernel_events(t)
    g = cg.build_from_events(evs, opts, calls=cg.call_counts(t))
    try:
        cg.check(g, trace, evs, opts)
    except cg.GraphError as e:
        raise UserError(str(e)) from None
    output = output or os.path.splitext(trace)[0] + "-callgraph." + (fmt or "svg")
    fmt = fmt or os.path.splitext(output)[1].lstrip(".").lower() or "svg"
    if fmt == "json":
        with open(output, "w") as f:
            json.dump(cg.to_json(g), f, indent=1)
    else:
        d = render_graph.to_dot(
            g, edge_labels=edge_labels, legend=not no_legend,
            caption=_caption(t) if caption else None, rankdir=rankdir, runs=runs,
        )  # fmt: skip
        try:
            render_graph.write(d, output, fmt)
        except render_graph.RenderError as e:
            raise UserError(str(e)) from None
    st = g.graph["stats"]
    what = "; ".join(events_text(g.graph["events"], g.graph["bytes"], g.graph["lb"]))
    click.echo(
        f"{output}: {g.number_of_nodes()} functions, {g.number_of_edges()} calls; "
        f"{what} ({st.on_paths} of {st.events} DMA/IOMMU events"
        + (f", {st.no_stack} without stacks" if st.no_stack else "")
        + ")"
    )


# ------------------------------------------------------------------ calls


def _fmt_ms(ns: int) -> str:
    return f"{ns / 1e6:.3f}"


def _call_row(c: attribution.Call, t0: int) -> dict:
    n, b = c.counts()
    lb = c.lower_bound()
    return {
        "t_ms": (c.ts - t0) / 1e6,
        "tid": c.ev["tid"],
        "call": c.name,
        "depth": c.depth,
        "size": attribution.size_of(c),
        "dur_ns": c.ev["dur_ns"],
        "ret": c.ev["ret"],
        "ioctls": c.n_ioctls(),
        "maps": n["map"],
        "map_bytes": b["map"],
        "unmaps": n["unmap"],
        "unmap_bytes": b["unmap"],
        "flushes": n["flush"],
        "iova_ops": n["iova"],
        "bytes_lower_bound": sorted(lb),
    }


def _bytes(n: int, lb: bool) -> str:
    return ("≥" if lb else "") + human_bytes(n) if n else "-"


@click.command()
@click.argument("trace", type=click.Path(dir_okay=False))
@click.option("--mapping-only", is_flag=True, help="only calls that caused a DMA/IOMMU event")
@click.option("--flat", is_flag=True, help="only outermost calls (nested ones count for them)")
@click.option("--call", "names", multiple=True, help="only calls to this function (repeatable)")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)  # fmt: skip
def calls(trace, mapping_only, flat, names, fmt) -> None:
    """Each CUDA call with its duration, size and the maps/unmaps/flushes it caused.

    A kernel event belongs to the call on its thread whose entry and return
    bracket it. Events no call brackets are summed at the end, by thread and by
    where their stacks say they came from.
    """
    from ..cli import load_trace

    t = load_trace(trace)
    a = attribution.attribute(t)
    t0 = t.meta.get("start_mono_ns") or min((e["ts_ns"] for e in a.events), default=0)
    rows = []
    for c in a.calls:
        if flat and c.parent is not None:
            continue
        if names and c.name not in names:
            continue
        r = _call_row(c, t0)
        if mapping_only and not (r["maps"] or r["unmaps"] or r["flushes"] or r["iova_ops"]):
            continue
        rows.append(r)
    summary = attribution.by_name(a)
    unexplained = attribution.unexplained_summary(a)
    if fmt == "json":
        doc = {
            "trace": trace,
            "calls": rows,
            "by_call": [_jsonable(s) for s in summary],
            "kernel_events": len(a.events),
            "explained": len(a.events) - len(a.unexplained),
            "unexplained": [_jsonable(u) for u in unexplained],
        }
        click.echo(json.dumps(doc, indent=1))
        return
    if not a.calls:
        click.echo(
            f"{trace}: no CUDA call was recorded (no cuda-runtime/cuda-driver probe fired); "
            f"all {len(a.events)} DMA/IOMMU events are unexplained"
        )
    else:
        _print_calls(rows)
        click.echo("")
        _print_summary(summary)
    click.echo("")
    _print_unexplained(a, unexplained)


def _jsonable(d: dict) -> dict:
    def plain(v):
        return dict(v) if isinstance(v, dict) else sorted(v) if isinstance(v, set) else v

    return {k: plain(v) for k, v in d.items()}


def _print_calls(rows: list[dict]) -> None:
    hdr = ("t_ms", "tid", "call", "size", "dur_ms", "ioctls", "maps", "mapped", "unmaps",
           "unmapped", "flushes")  # fmt: skip
    out = [hdr]
    for r in rows:
        lb = set(r["bytes_lower_bound"])
        out.append((
            f"{r['t_ms']:.3f}", str(r["tid"]), "  " * r["depth"] + r["call"],
            human_bytes(r["size"]) if r["size"] is not None else "-", _fmt_ms(r["dur_ns"]),
            str(r["ioctls"]), str(r["maps"] or "-"), _bytes(r["map_bytes"], "map" in lb),
            str(r["unmaps"] or "-"), _bytes(r["unmap_bytes"], "unmap" in lb),
            str(r["flushes"] or "-"),
        ))  # fmt: skip
    _table(out, left={2})


def _print_summary(summary: list[dict]) -> None:
    out = [("call", "calls", "mapping", "total_ms", "maps", "mapped", "unmaps", "unmapped")]
    for s in summary:
        n, b = s["events"], s["bytes"]
        mapping = s["mapping_calls"]
        out.append((
            s["call"], str(s["calls"]), f"{mapping}" if mapping else "none",
            _fmt_ms(s["dur_ns"]), str(n["map"] or "-"), _bytes(b["map"], "map" in s["lb"]),
            str(n["unmap"] or "-"), _bytes(b["unmap"], "unmap" in s["lb"]),
        ))  # fmt: skip
    click.echo('per function ("mapping": calls that caused a DMA/IOMMU event):')
    _table(out, left={0})


def _print_unexplained(a: attribution.Attribution, groups: list[dict]) -> None:
    n = len(a.events)
    click.echo(
        f"DMA/IOMMU events: {n}; caused by a recorded CUDA call: {n - len(a.unexplained)}; "
        f"no call explains: {len(a.unexplained)}"
    )
    rows = [(", ".join(events_text(g["events"], g["bytes"], g["lb"])), g["comm"], g["origin"])
            for g in groups]  # fmt: skip
    if rows:
        _table([("  " + a, b, c) for a, b, c in rows], left={0, 1, 2})


def _table(rows: list[tuple], left: set[int]) -> None:
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo(
            "  ".join(
                c.ljust(w[i]) if i in left else c.rjust(w[i]) for i, c in enumerate(r)
            ).rstrip()
        )


# ------------------------------------------------------------------ export


@click.command()
@click.argument("trace", type=click.Path(dir_okay=False))
@click.option("--perfetto", "out", required=True, metavar="FILE.json",
              help="write a Chrome/Perfetto trace-event JSON timeline")  # fmt: skip
@click.option("--no-ioctls", is_flag=True, help="leave the ioctl slices out")
@click.option("--stacks", is_flag=True, help="put each DMA event's stacks in its args")
def export(trace, out, no_ioctls, stacks) -> None:
    """Export the timeline for the Perfetto UI (ui.perfetto.dev) or chrome://tracing.

    CUDA calls and ioctls are slices on their thread; DMA/IOMMU events are
    instants on the thread they fired on, naming the call they belong to;
    counters track bytes mapped and maps/unmaps/flushes over time.
    """
    from ..cli import UserError, load_trace
    from . import perfetto

    t = load_trace(trace)
    doc = perfetto.export(t, ioctls=not no_ioctls, stacks=stacks)
    try:
        perfetto.write(doc, out)
    except OSError as e:
        raise UserError(f"{out}: {e.strerror}") from None
    o = doc["otherData"]
    click.echo(
        f"{out}: {len(doc['traceEvents'])} trace events ({o['cuda_calls']} CUDA calls, "
        f"{o['dma_events']} DMA/IOMMU events); open it in https://ui.perfetto.dev"
    )
