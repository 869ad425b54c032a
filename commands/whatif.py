"""`iommu-trace whatif`: the events and time an IOMMU mode would add to a trace."""

from __future__ import annotations

import click

from ..errors import UserError
from ._load import load_trace

EXAMPLES = (
    "\b\nExamples:\n"
    "  iommu-trace whatif traces/flexgen/flexgen.iot --mode strict\n"
    "  iommu-trace whatif run.iot --mode lazy --costs mymachine.json --format json\n"
    "  iommu-trace whatif strict-timed.iot --measure --costs mymachine.json\n"
    "  sudo iommu-trace lab --mode strict -o s.iot --costs lab-costs.json\n"
)


@click.command("whatif", epilog=EXAMPLES)
@click.argument("trace", type=click.Path(dir_okay=False))
@click.option("--mode", type=click.Choice(["strict", "lazy", "passthrough"]),
              help="the IOMMU mode to price")  # fmt: skip
@click.option("--costs", type=click.Path(dir_okay=False),
              help="cost table (JSON, from `lab --costs FILE`); default: the lab's")  # fmt: skip
@click.option("--measure", is_flag=True,
              help="instead: measure TRACE's costs (recorded with the timing probes, strict or "
              "lazy) into the --costs table")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)  # fmt: skip
def whatif(trace, mode, costs, measure, fmt) -> None:
    """Predict, per phase, what IOMMU MODE would add to TRACE: flushes, IOVA allocs, time.

    Works on any trace, one recorded with no IOMMU included: strict adds one
    synchronous IOTLB invalidation per unmap; lazy, flush-queue drains (at
    the timer and when a CPU's queue fills); passthrough, nothing. Times are
    ranges, n x [p10, p90] of the measured cost per call.
    """
    from ..analysis import costs as C
    from ..analysis import whatif as W
    from ..render import whatif as R

    t = load_trace(
        trace,
        needs_events="whatif replays each unmap's time and CPU through the IOMMU's flush queue",
    )
    try:
        if measure:
            _measure(t, costs, mode)
            return
        if mode is None:
            raise UserError("give --mode strict, lazy or passthrough (or --measure)")
        w = W.predict(t, mode, C.load(costs))
    except C.CostsError as e:
        raise UserError(str(e)) from None
    click.echo(R.to_json(w) if fmt == "json" else R.to_text(w))


def _measure(t, costs: str | None, mode: str | None) -> None:
    import os

    from ..analysis import costs as C

    if not costs:
        raise UserError("--measure writes into the table --costs FILE names")
    recorded = t.metadata.iommu.mode
    mode = mode or recorded
    if mode not in ("strict", "lazy"):
        raise UserError(
            f"{t.path}: recorded in {recorded} mode; costs are measured in strict or lazy"
        )
    C.merge(costs, mode, C.measure(t, mode), os.path.basename(t.path))
    click.echo(f"iommu-trace: {mode} costs from {t.path} written to {costs}", err=True)
