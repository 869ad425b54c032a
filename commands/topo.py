"""`iommu-trace topo`: the PCIe tree, IOMMU groups, network links and the paths between devices."""

from __future__ import annotations

from typing import Any

import click

from ._system import ROOT_HELP, check_save, emit, fail, save_view


def _split_path(spec: str, resolve: Any) -> tuple[str, str]:
    """'eth0:gpu0' -> ('eth0', 'gpu0'); PCI addresses contain ':' so try each split point."""
    if "," in spec:
        a, _, b = spec.partition(",")
        return a, b
    cuts = [i for i, c in enumerate(spec) if c == ":"]
    if not cuts:
        fail(f"--path {spec}: expected SRC:DST, e.g. eth0:gpu0")
    last_error = None
    for i in cuts:
        a, b = spec[:i], spec[i + 1 :]
        if not a or not b:
            continue
        try:
            resolve(a)
            resolve(b)
            return a, b
        except LookupError as e:
            last_error = e
    # Nothing resolved: report against the simplest reading (the first ':').
    a, b = spec[: cuts[0]], spec[cuts[0] + 1 :]
    for side in (a, b):
        try:
            resolve(side)
        except LookupError as e:
            fail(str(e))
    fail(str(last_error))


EXAMPLES = (
    "\b\nExamples:\n"
    "  iommu-trace topo\n"
    "  iommu-trace topo --path eth0:gpu0\n"
    "  iommu-trace topo -o topo.svg\n"
)


@click.command(epilog=EXAMPLES)
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    help="draw the topology: .svg .png .pdf (need graphviz `dot`) or .dot",
)
@click.option(
    "--path",
    "path_spec",
    metavar="SRC:DST",
    help="host-staged vs peer-to-peer path between two devices, e.g. eth0:gpu0",
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("--save", metavar="DIR", help="save the sysfs/procfs/netlink state read into DIR")
@click.option("--root", default="/", type=click.Path(exists=True, file_okay=False), help=ROOT_HELP)
def topo(output: str | None, path_spec: str | None, fmt: str, save: str | None, root: str) -> None:
    """Show the PCIe tree, IOMMU groups and network links, and the paths between devices."""
    from ..system import topology
    from ..system import topology_render as render
    from ..system.fsview import FsView

    check_save(save, root)
    view = FsView(root, record=bool(save))
    topo_ = topology.collect(root, view=view)
    if save:
        save_view(view, save, {"saved_by": "topo"})
    report = None
    if path_spec:
        a, b = _split_path(path_spec, lambda n: topology.resolve(topo_, n))
        try:
            report = topology.path(topo_, a, b)
        except LookupError as e:
            fail(str(e))
    if output:
        try:
            render.draw(topo_, output)
        except (ValueError, RuntimeError, OSError) as e:
            fail(str(e))
    if fmt == "json":
        emit({**topo_.as_dict(), **({"path": report} if report else {})})
    elif report:
        click.echo(render.path_text(report), nl=False)
    elif not output:
        click.echo(render.text(topo_), nl=False)
    if output:
        click.echo(f"wrote {output}", err=True)
    if save:
        click.echo(f"saved to {save}", err=True)
