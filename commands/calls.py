"""`iommu-trace calls`: each CUDA call with the maps, unmaps and flushes it caused."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from ..render.units import events_text, human_bytes
from ._load import load_trace

if TYPE_CHECKING:
    from ..analysis import attribution


def _fmt_ms(ns: int) -> str:
    return f"{ns / 1e6:.3f}"


def _call_row(c: attribution.Call, t0: int) -> dict:
    from ..analysis.attribution import size_of

    n, b = c.counts()
    lb = c.lower_bound()
    return {
        "t_ms": (c.ts - t0) / 1e6,
        "tid": c.ev["tid"],
        "call": c.name,
        "depth": c.depth,
        "size": size_of(c),
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


EXAMPLES = (
    "\b\nExamples:\n"
    "  iommu-trace calls run.iot\n"
    "  iommu-trace calls run.iot --mapping-only --flat\n"
    "  iommu-trace calls run.iot --call cudaHostAlloc --format json\n"
)


@click.command(epilog=EXAMPLES)
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
    from ..analysis import attribution

    t = load_trace(
        trace,
        needs_events="calls places each event in the CUDA call that brackets it on its thread",
    )
    a = attribution.attribute(t)
    t0 = t.metadata.start_mono_ns or min((e["ts_ns"] for e in a.events), default=0)
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
            "kernel_events": a.n_events,
            "explained": a.n_events - a.n_unexplained,
            "unexplained": [_jsonable(u) for u in unexplained],
        }
        click.echo(json.dumps(doc, indent=1))
        return
    if not a.calls:
        click.echo(
            f"{trace}: no CUDA call was recorded (no cuda-runtime/cuda-driver probe fired); "
            f"all {a.n_events} DMA/IOMMU events are unexplained"
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
    n = a.n_events
    click.echo(
        f"DMA/IOMMU events: {n}; caused by a recorded CUDA call: {n - a.n_unexplained}; "
        f"no call explains: {a.n_unexplained}"
    )
    rows = [(", ".join(events_text(g["events"], g["bytes"], g["lb"])), g["comm"], g["origin"])
            for g in groups]  # fmt: skip
    if rows:
        _table([("  " + a, b, c) for a, b, c in rows], left={0, 1, 2})


def _table(rows: list[tuple], left: set[int]) -> None:
    from ..render.table import grid

    right = [i for i in range(len(rows[0])) if i not in left]
    click.echo(grid(rows[0], rows[1:], right=right))
