"""`iommu-trace report`: counts and rates of one trace's DMA/IOMMU events."""

from __future__ import annotations

import click

from ._load import load_trace

EXAMPLES = (
    "\b\nExamples:\n"
    "  iommu-trace report run.iot\n"
    "  iommu-trace report run.iot --format csv --bins 20 > run.csv\n"
    "  iommu-trace report --phases flexgen.iot      # setup, prefill, decode\n"
)


@click.command(epilog=EXAMPLES)
@click.argument("trace", type=click.Path(dir_okay=False))
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True
)
@click.option("--bins", default=10, show_default=True, help="timeline bins")
@click.option(
    "--phases",
    is_flag=True,
    help="FlexGen traces: setup, prefill and decode, with DMA events and copy time per token",
)
def report(trace, fmt, bins, phases) -> None:
    """Counts and rates of maps, unmaps, IOTLB flushes and IOVA allocs in TRACE.

    Per device, by mapping size, over time, per phase (setup, each workload
    run, teardown), with the workload's measured throughput where known; the
    time inside IOMMU code (T_IOMMU) where the timing probes recorded it, and
    IOMMU PMU counts with IOTLB hit rates where the machine has a PMU.
    """
    from ..analysis import report as rep

    if phases:
        from ._phases import print_phases

        print_phases([trace], fmt)
        return

    import dataclasses

    from ..analysis import iommu_time, pmu_counts
    from ..render import iommu_time as rt
    from ..render import pmu as rp
    from ..render import report as rr

    t = load_trace(trace)
    r = rep.build(t, bins=bins)
    it = iommu_time.build(t)
    pm = pmu_counts.build(t)
    if fmt == "json":
        r["iommu_time"] = rt.to_dict(it)
        r["pmu"] = dataclasses.asdict(pm)
    out = {"text": rr.to_text, "json": rr.to_json, "csv": rr.to_csv}[fmt](r)
    if fmt == "text":
        out += "\n\n" + rt.to_text(it) + "\n\n" + rp.to_text(pm)
    click.echo(out, nl=fmt != "csv")
