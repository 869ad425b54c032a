"""Every reader verb opens its trace here: one line on a bad file, notes on stderr."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..errors import UserError

if TYPE_CHECKING:
    from ..tracefile.reader import Trace


def load_trace(path: str) -> Trace:
    """Load a trace or fail with one line; every reader command goes through here."""
    from ..tracefile.reader import TraceError, load

    try:
        trace = load(path)
    except TraceError as e:
        raise UserError(str(e)) from None
    for note in trace.notes:
        click.echo(f"iommu-trace: note: {note}", err=True)
    return trace
