"""`iommu-trace upgrade`: rewrite a trace (version 1, or a killed recorder's journal) as v2."""

from __future__ import annotations

import os

import click

from ..errors import UserError
from ._load import load_trace

EXAMPLES = (
    "\b\nExamples:\n  iommu-trace upgrade old.iot -o new.iot\n"
    "  iommu-trace upgrade old.iot            # in place\n"
)


@click.command(epilog=EXAMPLES)
@click.argument("trace", type=click.Path(dir_okay=False))
@click.option("-o", "--output", help="where to write (default: replace TRACE)")
def upgrade(trace, output) -> None:
    """Rewrite TRACE in the current trace format (events with stack ids, stacks once).

    Every reader already reads older versions; upgrading makes big traces
    cheaper to read and lets pandas/DuckDB use the documented stacks join.
    A journal left by a killed recorder is finalized as it stands.
    """
    from ..tracefile.schema import VERSION
    from ..tracefile.writer import write_parquet

    t = load_trace(trace)
    out = output or trace
    if t.version == VERSION and t.finalized and out == trace:
        click.echo(f"{trace}: already format version {VERSION}")
        return
    d = os.path.dirname(os.path.abspath(out))
    if not os.access(d, os.W_OK):
        raise UserError(f"cannot write {out}: {d} is not writable")
    # the metadata JSON written back as it was read (typed access would drop what it
    # does not know, and the file must keep it all)
    meta = {**t.meta, "upgraded_from": t.version}
    if not t.finalized:
        meta["finalized_by_upgrade"] = True
    counts = t.count_rows()  # a counting trace's rows (a journal of one has none yet)
    write_parquet(out, t.read(), t.stack_rows(), meta, counts=counts)
    rows = f", {counts.num_rows} count rows" if t.counting else ""
    click.echo(
        f"{out}: {t.num_events} events, {len(t.stacks)} stacks{rows}, format version {VERSION}"
    )
