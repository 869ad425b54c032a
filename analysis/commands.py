"""Click commands `report` and `compare`: thin layers over analysis.report / analysis.compare."""

from __future__ import annotations

import click

# cli.py imports this module at its end; importing cli back here at module
# level would be circular under `python -m iommu_trace.cli`.


@click.command()
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
    run, teardown), with the workload's measured throughput where known.
    """
    from ..cli import UserError, load_trace
    from . import report as rep

    if phases:
        from .overhead import print_phases

        print_phases([trace], fmt, UserError, load_trace)
        return

    r = rep.build(load_trace(trace), bins=bins)
    click.echo(
        {"text": rep.to_text, "json": rep.to_json, "csv": rep.to_csv}[fmt](r), nl=fmt != "csv"
    )


@click.command()
@click.argument("traces", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="plot: .svg, .png or .pdf (flush rate and throughput by trace; cost by size for sweeps)",
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True
)
def compare(traces, output, fmt) -> None:
    """The same figures side by side for two or more traces, with ratios to the first.

    \b
      iommu-trace compare lazy.iot strict.iot -o cmp.svg
    """
    from ..cli import UserError, load_trace
    from . import compare as cmp

    if len(traces) < 2:
        raise UserError("compare needs two or more traces")
    loaded = [load_trace(t) for t in traces]
    c = cmp.build(loaded)
    click.echo(
        {"text": cmp.to_text, "json": cmp.to_json, "csv": cmp.to_csv}[fmt](c), nl=fmt != "csv"
    )
    if output:
        try:
            cmp.plot(c, output)
        except ValueError as e:
            raise UserError(str(e)) from None
        click.echo(f"wrote {output}", err=True)
