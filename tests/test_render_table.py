"""The one table renderer: plain aligned text whatever the terminal, cells never markup."""

from __future__ import annotations

from iommu_trace.render.table import grid


def test_plain_aligned_columns():
    out = grid(("NAME", "N"), [("dma_map", 5), ("x", 12345)], right=[1])
    assert out.splitlines() == ["NAME         N", "dma_map      5", "x        12345"]
    assert "\x1b" not in out  # no colour codes, even from rich


def test_cells_are_text_and_long_cells_are_whole():
    long = "/usr/lib/x86_64-linux-gnu/" + "x" * 400 + ".so"
    out = grid(("A", "B"), [("[bold]w[/bold]", long), ("", None)])
    assert "[bold]w[/bold]" in out and long in out
    assert out.split("\n")[2] == ""  # an empty row: its line trims to nothing
