"""`iommu-trace probes`: the catalog, and which probes this kernel and its libraries offer."""

from __future__ import annotations

import click

from ..errors import UserError

EXAMPLES = (
    "\b\nExamples:\n"
    "  sudo iommu-trace probes                # what this kernel offers\n"
    "  sudo iommu-trace probes -v -c python3  # and why fallbacks were passed over\n"
    "  iommu-trace probes --format json\n"
)


@click.command(epilog=EXAMPLES)
@click.option(
    "--catalog", type=click.Path(exists=True, dir_okay=False), help="another probe catalog"
)
@click.option(
    "-v", "--verbose", is_flag=True, help="show every fallback target and why it was passed over"
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "-c",
    "--command",
    "command",
    default=None,
    help="the workload's interpreter/command, to find the libraries it brings (e.g. python3)",
)
def probes(catalog, verbose, fmt, command) -> None:
    """The probe catalog, and which probes this kernel and its libraries offer."""
    import json

    from ..probes import catalog as cat_mod
    from ..probes import discover
    from ..render.table import grid

    try:
        cat = cat_mod.load(catalog)
    except (cat_mod.CatalogError, OSError) as e:
        raise UserError(f"probe catalog: {e}") from None
    if discover.tracefs(mount=True) is None:
        click.echo(
            "iommu-trace: note: tracefs is not readable (run as root to see tracepoints "
            "and kprobes); kernel probes show as absent",
            err=True,
        )
    resolved = discover.resolve(cat, command=[command] if command else None, mount=False)
    if fmt == "json":
        click.echo(json.dumps([r.as_meta() for r in resolved], indent=2))
        return
    rows = []
    for r in resolved:
        detail = r.target.describe() if r.target else r.reason
        if r.paths:
            detail += " in " + ", ".join(r.paths)
        rows.append((r.probe.group, r.probe.name, r.status, detail))
        if verbose:
            if r.target:
                rows.append(("", "", "", f"  path: {discover.path_reason(r)}"))
            rows.extend(("", "", "", f"  passed over {s}") for s in r.skipped)
    click.echo(grid(("GROUP", "PROBE", "STATUS", "TARGET / REASON"), rows))
