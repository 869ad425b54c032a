"""`iommu-trace export`: the timeline as Chrome/Perfetto trace-event JSON."""

from __future__ import annotations

import click

from ..errors import UserError
from ._load import load_trace

EXAMPLES = (
    "\b\nExamples:\n"
    "  iommu-trace export run.iot --perfetto run.json\n"
    "  iommu-trace export run.iot --perfetto run.json --no-ioctls --stacks\n"
)


@click.command(epilog=EXAMPLES)
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
    from ..render import perfetto

    t = load_trace(trace, needs_events="a timeline shows each event at its time")
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
