"""The one text-table renderer, on rich: plain text (no colour codes, no box
lines), columns two spaces apart, trailing spaces trimmed, and a fixed width so
pipes, files and tests see the same layout as a terminal.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

WIDTH = 1000  # no table wraps or clips a cell; the same whatever the terminal


def grid(head: Sequence[str], rows: Iterable[Sequence[object]], right: Iterable[int] = ()) -> str:
    """head and rows as aligned columns; the columns numbered in right align right."""
    from rich.console import Console  # noqa: PLC0415  (rich only when a table is printed)
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415  (cells are text, never markup)

    right = set(right)
    t = Table(box=None, padding=(0, 1), pad_edge=False, show_edge=False, header_style="")
    for i, h in enumerate(head):
        t.add_column(h, justify="right" if i in right else "left", no_wrap=True)
    for r in rows:
        t.add_row(*(Text("" if c is None else str(c)) for c in r))
    out = io.StringIO()
    Console(file=out, width=WIDTH, color_system=None, force_terminal=False, highlight=False,
            emoji=False, markup=False).print(t)  # fmt: skip
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines())
