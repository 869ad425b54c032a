"""`iommu-trace callgraph`: the CUDA -> ioctl -> driver -> DMA/IOMMU call paths, drawn."""

from __future__ import annotations

import json
import os

import click

from ..analysis.taxonomy import KINDS
from ..errors import UserError
from ._load import load_trace

# the choices of --format, without importing graphviz for --help
GRAPH_FORMATS = ("svg", "pdf", "png", "dot")


def _caption(t) -> str:
    m = t.metadata
    kernel, iommu = m.kernel.release or "?", m.iommu.mode or "?"
    return f"{os.path.basename(t.path)}: {m.what} · {m.hostname} · {kernel} · IOMMU {iommu}"


EXAMPLES = (
    "\b\nExamples:\n"
    "  iommu-trace callgraph run.iot -o path.svg\n"
    "  iommu-trace callgraph run.iot --from cudaHostAlloc --to dma_map_sg_attrs -o path.pdf\n"
    "  iommu-trace callgraph run.iot --from cudaHostAlloc --from cudaFreeHost --collapse -o p.png\n"
)


@click.command("callgraph", epilog=EXAMPLES)
@click.argument("trace", type=click.Path(dir_okay=False))
@click.option("-o", "--output", help="FILE.svg, .pdf, .png, .dot or .json (networkx node-link)")
@click.option("--format", "fmt", type=click.Choice([*GRAPH_FORMATS, "json"]),
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

    User and kernel stacks of each DMA/IOMMU event are joined into one path;
    edges count the events that went through them and the bytes they mapped.
    """
    from ..analysis import callgraph as cg
    from ..render import callgraph as render_graph
    from ..render.units import events_text

    t = load_trace(trace, needs_events="callgraph walks each event's stacks")
    opts = cg.Options(
        from_fn=from_fn, to_fn=to_fn, collapse=collapse, keep=keep, landmarks=landmarks,
        app_frames=app_frames,
        kinds=kinds, probes=probes,
    )  # fmt: skip
    evs = cg.dma_events.kernel_groups(t)
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
