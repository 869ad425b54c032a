"""Sizes and event counts as people read them, for every renderer."""

from __future__ import annotations

from collections import Counter
from collections.abc import Set


def human_size(n: int) -> str:
    """An exact size: '16 MiB', '64 B'; not a whole unit stays in the smaller one."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} B"


_NOUN = {"map": ("map", "maps"), "unmap": ("unmap", "unmaps"), "flush": ("flush", "flushes"),
         "iova": ("IOVA op", "IOVA ops")}  # fmt: skip


def human_bytes(n: int) -> str:
    for unit, step in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= step:
            v = n / step
            return f"{v:.1f} {unit}" if v < 10 and v != int(v) else f"{v:.0f} {unit}"
    return f"{n} B"


def events_text(
    events: Counter, nbytes: Counter, lb: Set[str] = frozenset(), sep: str = " · "
) -> list[str]:
    """One line per kind: '4 maps · 36 MiB' ('≥' where an sg list was cut short)."""
    out = []
    for k in ("map", "unmap", "flush", "iova"):
        n = events.get(k, 0)
        if not n:
            continue
        s = f"{n} {_NOUN[k][n != 1]}"
        if nbytes.get(k):
            s += f"{sep}{'≥' if k in lb else ''}{human_bytes(nbytes[k])}"
        out.append(s)
    return out
