"""The errors a user sees: a failure they can fix, printed as one line (exit status 2)."""

from __future__ import annotations

from typing import IO, Any

import click


class UserError(click.ClickException):
    """A failure the user can fix: printed as one line, exit status 2."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:  # one clear line, never a traceback
        click.echo(f"iommu-trace: {self.format_message()}", err=True, file=file)


class TraceError(ValueError):
    """A trace that cannot be read; the message is one line for the user.

    The reader raises it on load, and also later, when a lazily read column of
    a damaged file fails to decode: the command line turns it into a UserError
    wherever it is raised.
    """
