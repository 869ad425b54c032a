"""`iommu-trace doctor`: can this machine record, and what is its IOMMU mode."""

from __future__ import annotations

import click

from ._system import ROOT_HELP, check_save, emit, fail, save_view

EXAMPLES = (
    "\b\nExamples:\n"
    "  iommu-trace doctor\n"
    "  sudo iommu-trace doctor --save snap/          # for a bug report\n"
    "  iommu-trace doctor --with lazy.iot --with strict.iot\n"
)


@click.command(epilog=EXAMPLES)
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
    from ..system import doctor as doc
    from ..system.fsview import FsView

    check_save(save, root)
    view = FsView(root, record=bool(save))
    try:
        report = doc.diagnose(root, view=view, mount=not no_mount)
    except OSError as e:
        fail(f"cannot read {root}: {e.strerror or e}")
    if save:
        save_view(
            view,
            save,
            {
                "kernel": report["kernel"],
                "iommu_mode": report["iommu"]["mode"],
                "saved_by": "doctor",
            },
        )
    if traces:
        from ..analysis.recorded_iommu import compare

        try:
            report["traces"] = compare(list(traces), here=report["iommu"])
        except (OSError, ValueError, ImportError) as e:
            fail(f"cannot compare traces: {e}")
    if fmt == "json":
        emit(report)
    else:
        click.echo(doc.render_text(report), nl=False)
        if traces:
            from ..render.recorded_iommu import render_text as trace_text

            click.echo(trace_text(report["traces"]), nl=False)
    if save:
        click.echo(f"saved to {save}", err=True)
