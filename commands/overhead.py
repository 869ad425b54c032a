"""`iommu-trace overhead`: measured operation cost joined with the DMA/IOMMU events of its window.

The work is in analysis/: overhead_data (results + event counts), overhead_fit
(overhead %, cost per event) and phases (FlexGen's setup/prefill/decode split); what
is printed in render/: overhead (tables), overhead_plot (the arch plot), phases.
"""

from __future__ import annotations

import os

import click

from ..errors import UserError
from ._load import load_trace

EXAMPLES = (
    "\b\nExamples:\n"
    "  iommu-trace overhead bench.iot                      # latency, GB/s, events per copy\n"
    "  iommu-trace overhead off.iot strict.iot -o arch.svg  # overhead % and cost per event\n"
    "  iommu-trace overhead pt.iot strict.iot lazy.iot     # each against the first (lab sweeps)\n"
    "  iommu-trace overhead --phases flexgen.iot           # prefill vs decode, per token\n"
)


@click.command("overhead", epilog=EXAMPLES)
@click.argument("traces", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--results",
    "results",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="results file for the trace in the same position (default: found beside or in the trace)",
)
@click.option(
    "-o",
    "--output",
    "plot",
    type=click.Path(dir_okay=False),
    help="draw the arch plot here (.svg, .png or .pdf)",
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True
)
@click.option(
    "--phases",
    is_flag=True,
    help="FlexGen: DMA events and copies per token in setup, prefill and decode",
)
def overhead(traces, results, plot, fmt, phases) -> None:
    """Copy cost by pattern and size, with the maps, unmaps and flushes per copy beside it.

    Results come from --results, else TRACE.bench.csv (bench memcpy), else
    TRACE.workload.json (lab, examples/flexgen_run.py), else the trace's
    workload metadata (record --workload-result).
    """
    if phases:
        from ._phases import print_phases

        print_phases(traces, fmt)
        return
    from ..analysis import overhead_data as od
    from ..analysis import overhead_fit as oc
    from ..render import overhead as rep

    if results and len(results) != len(traces):
        raise UserError("give one --results per trace, in the same order")
    if plot and not plot.lower().endswith((".svg", ".png", ".pdf")):
        raise UserError(f"{plot}: the plot is written as .svg, .png or .pdf")
    singles, loaded = [], []
    for i, path in enumerate(traces):
        t = load_trace(
            path,
            needs_events="overhead counts the events inside each benchmark window by their times",
        )
        loaded.append(t)
        try:
            res = od.find_results(path, t.metadata, results[i] if results else None)
        except od.ResultsError as e:
            raise UserError(str(e)) from None
        ev = t.frame()  # no stacks needed: read once, without them
        cells = od.count_events(ev, t.metadata, res)
        name = os.path.basename(path)
        singles.append((name, res, cells, od.outside_windows(ev, t.metadata, res)))
    kinds = {s[1].kind for s in singles}
    if len(kinds) > 1:
        raise UserError(f"the traces hold different benchmarks ({', '.join(sorted(kinds))})")
    comps = []
    base = singles[0]
    for other in singles[1:]:
        try:
            comps.append(
                oc.compare(base[2], other[2], base[0], other[0], (base[1].label, other[1].label))
            )
        except ValueError as e:
            raise UserError(str(e)) from None
    from ..analysis import iommu_time
    from ..render import iommu_time as rt

    timed = [
        (os.path.basename(p), iommu_time.build(t)) for p, t in zip(traces, loaded, strict=True)
    ]
    if fmt == "json":
        import json

        doc = json.loads(rep.to_json(singles, comps))
        doc["iommu_time"] = {name: rt.to_dict(it) for name, it in timed}
        click.echo(json.dumps(doc, indent=1))
    elif fmt == "csv":
        click.echo(rep.to_csv(singles, comps), nl=False)
    else:
        parts = [rep.single_text(*s) for s in singles] if not comps else []
        parts += [rep.compare_text(c) for c in comps]
        parts += [f"{name}: {rt.to_text(it)}" for name, it in timed]
        click.echo("\n\n".join(parts))
    if plot:
        from ..render.overhead_plot import arch_plot

        arch_plot(plot, singles, comps)
        click.echo(f"iommu-trace: plot written to {plot}", err=True)
