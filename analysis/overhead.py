"""`iommu-trace overhead` (being written)."""

from __future__ import annotations

import click


@click.command("overhead")
def overhead() -> None:
    """Copy cost per pattern and size, with DMA/IOMMU counts (being written)."""
