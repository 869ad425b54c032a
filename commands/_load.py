"""Every reader verb opens its trace here: one line on a bad file, notes on stderr."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..errors import UserError

if TYPE_CHECKING:
    from ..tracefile.reader import Trace


def load_trace(path: str, needs_events: str | None = None) -> Trace:
    """Load a trace or fail with one line; every reader command goes through here.

    needs_events: what the verb needs each event for (its own row, time, thread, stacks);
    a counting trace (record --count), which has none, is then refused in one line.
    """
    from ..tracefile.reader import TraceError, load

    try:
        trace = load(path)
    except TraceError as e:
        raise UserError(str(e)) from None
    if needs_events and trace.counting:
        raise UserError(
            f"{path} is a counting trace (record --count): counts per probe, device, size and "
            f"second, no events; {needs_events} (record without --count for that)"
        )
    for note in trace.notes:
        click.echo(f"iommu-trace: note: {note}", err=True)
    return trace
