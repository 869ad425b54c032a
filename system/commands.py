"""Click commands `doctor` and `topo`: option parsing and output only; logic lives beside."""

from __future__ import annotations

import json
import os
from typing import Any, NoReturn

import click

ROOT_HELP = "read a snapshot saved with --save instead of this machine"


def _fail(message: str) -> NoReturn:
    from ..cli import UserError  # late: cli imports this module while it loads

    raise UserError(message)


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=1, default=str))


def _check_save(save: str | None, root: str) -> None:
    if save and root != "/":
        _fail("--save reads this machine; it cannot be combined with --root")
    if save and os.path.exists(save) and not os.path.isdir(save):
        _fail(f"--save {save}: exists and is not a directory")


@click.command()
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("--no-mount", is_flag=True, help="do not mount tracefs even as root")
@click.option("--save", metavar="DIR", help="also save what was read into DIR (for bug reports)")
@click.option("--root", default="/", type=click.Path(exists=True, file_okay=False), help=ROOT_HELP)
@click.option(
    "--with",
    "traces",
    multiple=True,
    type=click.Path(exists=True, dir_okay=True),
    metavar="TRACE",
    help="compare the IOMMU state and map/flush counts of traces "
    "(repeat: --with A.iot --with B.iot)",
)
def doctor(fmt: str, no_mount: bool, save: str | None, root: str, traces: tuple[str, ...]) -> None:
    """Check that this machine can record, and explain its IOMMU mode.

    Works without root for the read-only parts and says what it could not see.
    """
    from . import doctor as doc
    from .fsview import FsView

    _check_save(save, root)
    view = FsView(root, record=bool(save))
    try:
        report = doc.diagnose(root, view=view, mount=not no_mount)
    except OSError as e:
        _fail(f"cannot read {root}: {e.strerror or e}")
    if save:
        _save(
            view,
            save,
            {
                "kernel": report["kernel"],
                "iommu_mode": report["iommu"]["mode"],
                "saved_by": "doctor",
            },
        )
    if traces:
        from .trace_compare import compare

        try:
            report["traces"] = compare(list(traces), here=report["iommu"])
        except (OSError, ValueError, ImportError) as e:
            _fail(f"cannot compare traces: {e}")
    if fmt == "json":
        _emit(report)
    else:
        click.echo(doc.render_text(report), nl=False)
        if traces:
            from .trace_compare import render_text as trace_text

            click.echo(trace_text(report["traces"]), nl=False)
    if save:
        click.echo(f"saved to {save}", err=True)


def _save(view: Any, dest: str, about: dict[str, Any]) -> None:
    try:
        view.save(dest, about=about)
    except OSError as e:
        _fail(f"cannot save to {dest}: {e.strerror or e}")


def _split_path(spec: str, resolve: Any) -> tuple[str, str]:
    """'eth0:gpu0' -> ('eth0', 'gpu0'); PCI addresses contain ':' so try each split point."""
    if "," in spec:
        a, _, b = spec.partition(",")
        return a, b
    cuts = [i for i, c in enumerate(spec) if c == ":"]
    if not cuts:
        _fail(f"--path {spec}: expected SRC:DST, e.g. eth0:gpu0")
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
            _fail(str(e))
    _fail(str(last_error))


@click.command()
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
    from . import topology
    from . import topology_render as render
    from .fsview import FsView

    _check_save(save, root)
    view = FsView(root, record=bool(save))
    topo_ = topology.collect(root, view=view)
    if save:
        _save(view, save, {"saved_by": "topo"})
    report = None
    if path_spec:
        a, b = _split_path(path_spec, lambda n: topology.resolve(topo_, n))
        try:
            report = topology.path(topo_, a, b)
        except LookupError as e:
            _fail(str(e))
    if output:
        try:
            render.draw(topo_, output)
        except (ValueError, RuntimeError, OSError) as e:
            _fail(str(e))
    if fmt == "json":
        _emit({**topo_.as_dict(), **({"path": report} if report else {})})
    elif report:
        click.echo(render.path_text(report), nl=False)
    elif not output:
        click.echo(render.text(topo_), nl=False)
    if output:
        click.echo(f"wrote {output}", err=True)
    if save:
        click.echo(f"saved to {save}", err=True)
