"""FlexGen's setup/prefill/decode split, shared by `report --phases` and `overhead --phases`."""

from __future__ import annotations

import os

import click

from ..errors import UserError
from ._load import load_trace


def print_phases(traces: tuple[str, ...] | list[str], fmt: str) -> None:
    """FlexGen's setup/prefill/decode split (`overhead --phases`, `report --phases`)."""
    import json

    from ..analysis import phases as ph

    if len(traces) != 1:
        raise UserError("--phases reads one trace")
    path = traces[0]
    t = load_trace(path)
    try:
        wl = ph.load_workload(t)
        ev = t.frame()  # no stacks needed: read once, without them
        table = ph.split(ev, t.meta, wl)
    except ph.PhaseError as e:
        raise UserError(str(e)) from None
    steps = ph.map_steps(ev, t.meta, wl)
    if fmt == "json":
        doc = {
            "trace": path,
            "workload": {k: v for k, v in wl.items() if k != "steps"},
            "phases": json.loads(table.to_json(orient="records")),
            "decode_steps_with_maps": steps,
        }
        click.echo(json.dumps(doc, indent=1))
    elif fmt == "csv":
        click.echo(table.to_csv(index=False), nl=False)
    else:
        click.echo(ph.text(os.path.basename(path), table, wl, steps))
