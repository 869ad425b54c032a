"""FlexGen's setup/prefill/decode split, shared by `report --phases` and `overhead --phases`."""

from __future__ import annotations

import os

import click

from ..errors import UserError
from ._load import load_trace


def print_phases(traces: tuple[str, ...] | list[str], fmt: str) -> None:
    """FlexGen's setup/prefill/decode split (`overhead --phases`, `report --phases`)."""
    from ..analysis import phases as ph
    from ..render import phases as rp

    if len(traces) != 1:
        raise UserError("--phases reads one trace")
    path = traces[0]
    t = load_trace(
        path, needs_events="phases splits the events by the times of the workload's steps"
    )
    try:
        wl = ph.load_workload(t)
        ev = t.frame()  # no stacks needed: read once, without them
        table = ph.split(ev, t.metadata, wl)
    except ph.PhaseError as e:
        raise UserError(str(e)) from None
    steps = ph.map_steps(ev, t.metadata, wl)
    if fmt == "json":
        click.echo(rp.to_json(path, table, wl, steps))
    elif fmt == "csv":
        click.echo(rp.to_csv(table), nl=False)
    else:
        click.echo(rp.text(os.path.basename(path), table, wl, steps))
