"""The `iommu-trace` command line: one click group; each verb is a module of commands/."""

from __future__ import annotations

import sys

import click

from . import __version__
from .commands import COMMANDS
from .errors import TraceError, UserError

__all__ = ["UserError", "cli", "main"]


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TraceError as e:  # a damaged column met after load (read lazily): one line
            raise UserError(str(e)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="iommu-trace")
def cli() -> None:
    """Trace and explain what IOMMU protection costs a (GPU) workload.

    Record once (`record`), then read the trace as many ways as you like.
    """


for command in COMMANDS:
    cli.add_command(command)


def main() -> None:
    try:
        cli(prog_name="iommu-trace")
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as e:
        # A file the user named could not be read or written (any command):
        # the path and the reason are the whole story.
        where = f"{e.filename}: " if e.filename else ""
        click.echo(f"iommu-trace: {where}{e.strerror or e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
