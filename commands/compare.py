"""`iommu-trace compare`: the same figures side by side for two or more traces."""

from __future__ import annotations

import click

from ..errors import UserError
from ._load import load_trace

EXAMPLES = (
    "\b\nExamples:\n"
    "  iommu-trace compare lazy.iot strict.iot\n"
    "  iommu-trace compare lazy.iot strict.iot -o cmp.svg\n"
)


@click.command(epilog=EXAMPLES)
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
    """The same figures side by side for two or more traces, with ratios to the first."""
    from ..analysis import side_by_side as cmp
    from ..render import compare as rc

    if len(traces) < 2:
        raise UserError("compare needs two or more traces")
    loaded = [load_trace(t) for t in traces]
    c = cmp.build(loaded)
    click.echo({"text": rc.to_text, "json": rc.to_json, "csv": rc.to_csv}[fmt](c), nl=fmt != "csv")
    if output:
        try:
            rc.plot(c, output)
        except ValueError as e:
            raise UserError(str(e)) from None
        click.echo(f"wrote {output}", err=True)
