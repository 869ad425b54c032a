"""The `iommu-trace` command line: one click group, each verb a thin layer over a module."""

from __future__ import annotations

import sys

import click

from . import __version__


class UserError(click.ClickException):
    """A failure the user can fix: printed as one line, exit status 2."""

    exit_code = 2

    def show(self, file=None) -> None:  # one clear line, never a traceback
        click.echo(f"iommu-trace: {self.format_message()}", err=True, file=file)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="iommu-trace")
def cli() -> None:
    """Trace and explain what IOMMU protection costs a (GPU) workload.

    Record once (`record`), then read the trace as many ways as you like.
    """


def main() -> None:
    try:
        cli(prog_name="iommu-trace")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
