"""`iommu-trace info`: what a trace holds."""

from __future__ import annotations

import click

from ._load import load_trace

EXAMPLES = "\b\nExamples:\n  iommu-trace info run.iot\n  iommu-trace info run.iot --format json\n"


@click.command(epilog=EXAMPLES)
@click.argument("trace", type=click.Path(dir_okay=False))
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def info(trace, fmt) -> None:
    """What a trace holds: command, kernel, IOMMU mode, probes, counts, drops."""
    from ..analysis import summary
    from ..render import summary as rs

    t = load_trace(trace)
    s = summary.summarize(t)
    click.echo(rs.to_json(s) if fmt == "json" else rs.to_text(s))
