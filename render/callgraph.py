"""Draw a call graph (analysis.callgraph) with graphviz, for papers.

One colour per layer with a legend, edge width by event count (log scale),
edge labels where the count or the bytes change, SVG/PDF/PNG/DOT by extension.
"""

from __future__ import annotations

import html
import math
import os
import shutil
from typing import TYPE_CHECKING

import networkx as nx

from ..analysis.frames import LAYER_ORDER, LAYERS
from .units import events_text

if TYPE_CHECKING:  # drawing needs graphviz; recording and reading traces must not
    import graphviz

FORMATS = ("svg", "pdf", "png", "dot")
FONT = "Helvetica"


class RenderError(RuntimeError):
    """Rendering failed; one line for the user."""


def _run_text(a: dict) -> str:
    """'⋯ 11 internal frames' for a run of frames drawn as one node or edge."""
    lo, hi = a["frames_min"], a["frames_max"]
    n = f"{lo}" if lo == hi else f"{lo}–{hi}"
    what = "internal frame" if a["fn"] == "(internal)" else "frame"
    return f"⋯ {n} {what}{'s' if hi > 1 else ''}"


def contract_runs(g: nx.DiGraph) -> nx.DiGraph:
    """Runs of frames between two drawn functions become dashed edges (`via`).

    A run that starts or ends a path, or sits next to another run, stays a node.
    """
    h = g.copy()
    for r in [n for n, a in g.nodes(data=True) if a["run"]]:
        if h.in_degree(r) != 1 or h.out_degree(r) != 1:
            continue
        (u,), (v,) = list(h.predecessors(r)), list(h.successors(r))
        if h.nodes[u]["run"] or h.nodes[v]["run"] or h.has_edge(u, v):
            continue
        attrs = dict(h.edges[r, v])
        attrs["via"] = _run_text(h.nodes[r])
        h.remove_node(r)
        h.add_edge(u, v, **attrs)
    return h


def _node_label(a: dict) -> str:
    esc = html.escape
    if a["run"]:  # a run of frames drawn as one node
        return f"<<I>{_run_text(a)}</I>>"
    name = "<BR/>".join(esc(x) for x in a["label"].split("\n"))
    lines = [f"<B>{name}</B>" if a["calls"] else name]
    small = []
    if not a["kernel"]:
        from ..analysis.frames import short_object

        small.append(short_object(a["obj"], False))
    if a["calls"]:
        small.append(f"{a['calls']} call{'s' if a['calls'] != 1 else ''}")
    if small:
        lines.append(f'<FONT POINT-SIZE="8" COLOR="#404040">{esc(" · ".join(small))}</FONT>')
    if a["leaf"] and a["probes"]:
        probes = ", ".join(f"{p}" for p in sorted(a["probes"]))
        ev = "; ".join(events_text(a["events"], a["bytes"], a["lb"]))
        lines.append(f'<FONT POINT-SIZE="8"><B>{esc(probes)}: {esc(ev)}</B></FONT>')
    return "<" + "<BR/>".join(lines) + ">"


def _edge_width(n: int, top: int) -> float:
    return round(0.8 + 2.2 * math.log1p(n) / math.log1p(max(top, 1)), 2)


def _label_edges(g: nx.DiGraph, mode: str) -> set[tuple[str, str]]:
    """Which edges carry a label: all, none, or where the numbers change (default)."""
    if mode == "all":
        return set(g.edges)
    if mode == "none":
        return set()
    out = set()
    for u, v, a in g.edges(data=True):
        ins = list(g.in_edges(u, data=True))
        if len(ins) != 1 or g.out_degree(u) != 1:
            out.add((u, v))
            continue
        prev = ins[0][2]
        if prev["events"] != a["events"] or prev["bytes"] != a["bytes"]:
            out.add((u, v))
    return out


def _legend(layers: list[str], collapsed: bool, caption: str | None) -> str:
    """The legend as an HTML table: a row of swatches, then the notes, then the caption."""
    swatches = "".join(
        f'<TD BGCOLOR="{LAYERS[k].fill}" COLOR="{LAYERS[k].border}" BORDER="1" WIDTH="14"> </TD>'
        f'<TD ALIGN="LEFT">{html.escape(LAYERS[k].title)}  </TD>'
        for k in layers
    )
    # The swatches sit in a table of their own: sharing columns with the long
    # notes below would stretch them.
    rows = [
        '<TR><TD ALIGN="LEFT"><TABLE BORDER="0" CELLBORDER="0" CELLSPACING="2" CELLPADDING="1">'
        f"<TR>{swatches}</TR></TABLE></TD></TR>"
    ]
    notes = [
        "edge: events that went through it · bytes (width ∝ log events)",
        "<B>bold</B>: a probed call, and how often it was called",
    ]
    if collapsed:
        notes.append("<I>⋯ n frames</I>, dashed: frames of one layer left out")
    if caption:
        notes.append(html.escape(caption))
    rows += [f'<TR><TD ALIGN="LEFT"><FONT POINT-SIZE="8">{n}</FONT></TD></TR>' for n in notes]
    return (
        '<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">'
        + "".join(rows)
        + "</TABLE>>"
    )


def to_dot(
    g: nx.DiGraph,
    *,
    edge_labels: str = "changes",
    legend: bool = True,
    caption: str | None = None,
    rankdir: str = "TB",
    runs: str = "edges",
) -> graphviz.Digraph:
    """The graphviz drawing; `runs` draws runs of frames as dashed "edges" or as "nodes"."""
    if runs == "edges":
        g = contract_runs(g)
    import graphviz  # noqa: PLC0415 - recording must not need the drawing package

    d = graphviz.Digraph("callgraph")
    d.attr(
        rankdir=rankdir,
        nodesep="0.18",
        ranksep="0.22",
        fontname=FONT,
        fontsize="10",
        pad="0.1",
        newrank="true",
    )
    d.attr("node", shape="box", style="rounded,filled", fontname=FONT, fontsize="10",
           height="0.28", margin="0.10,0.03", penwidth="1.1")  # fmt: skip
    d.attr("edge", fontname=FONT, fontsize="8", color="#4d4d4d", arrowsize="0.55",
           fontcolor="#262626")  # fmt: skip
    ids = {n: f"n{i}" for i, n in enumerate(g.nodes)}
    for n, a in g.nodes(data=True):
        ly = LAYERS[a["layer"]]
        style = "rounded,filled" + (",dashed" if a["run"] else "")
        d.node(ids[n], label=_node_label(a), fillcolor=ly.fill, color=ly.border, style=style,
               tooltip=f"{a['fn']} [{a['obj']}]")  # fmt: skip
    top = max((sum(a["events"].values()) for _, _, a in g.edges(data=True)), default=1)
    labelled = _label_edges(g, edge_labels)
    for u, v, a in g.edges(data=True):
        n = sum(a["events"].values())
        attrs = {"penwidth": str(_edge_width(n, top))}
        lines = [html.escape(x) for x in events_text(a["events"], a["bytes"], a["lb"])]
        lines = lines if (u, v) in labelled else []
        if a.get("via"):
            attrs["style"] = "dashed"
            lines.insert(0, f'<FONT COLOR="#595959"><I>{html.escape(a["via"])}</I></FONT>')
        if lines:
            attrs["label"] = "<" + "".join(f'{x}<BR ALIGN="LEFT"/>' for x in lines) + ">"
        d.edge(ids[u], ids[v], **attrs)
    # The legend is the graph's label: drawn below the layout, it moves no node.
    if legend:
        present = [k for k in LAYER_ORDER if any(a["layer"] == k for _, a in g.nodes(data=True))]
        collapsed = any(a["run"] for _, a in g.nodes(data=True)) or any(
            a.get("via") for _, _, a in g.edges(data=True)
        )
        d.attr(label=_legend(present, collapsed, caption), labelloc="b", labeljust="l",
               fontsize="9")  # fmt: skip
    elif caption:
        d.attr(label=caption, labelloc="b", labeljust="l", fontsize="9")
    return d


def write(d: graphviz.Digraph, path: str, fmt: str | None = None) -> str:
    """Write the drawing to `path`; the format comes from `fmt` or the extension."""
    import graphviz  # noqa: PLC0415

    fmt = (fmt or os.path.splitext(path)[1].lstrip(".") or "svg").lower()
    if fmt == "gv":
        fmt = "dot"
    if fmt not in FORMATS:
        raise RenderError(f"{path}: unknown output format {fmt!r} (use {', '.join(FORMATS)})")
    if fmt == "dot":
        with open(path, "w") as f:
            f.write(d.source)
        return path
    if shutil.which("dot") is None:
        raise RenderError(
            "graphviz's dot is not installed (apt-get install graphviz); "
            "-o FILE.dot works without it"
        )
    try:
        data = d.pipe(format=fmt)
    except (graphviz.ExecutableNotFound, graphviz.CalledProcessError) as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise RenderError(f"dot failed to draw {fmt}: {first}") from None
    with open(path, "wb") as f:
        f.write(data)
    return path
