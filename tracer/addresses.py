"""Keep physical, DMA and kernel addresses out of traces unless asked.

Raw addresses defeat KASLR. Each address is replaced by a stable pseudonym:
its 2 MiB region gets a small sequential number (per column, in order of first
appearance) and its page offset inside that region is kept. Equal addresses
stay equal (a map joins its unmap), contiguity inside a region survives, and
sizes are untouched; absolute values are gone.
"""

from __future__ import annotations

REGION_SHIFT = 21
PAGE_MASK = ~0xFFF


class Pseudonyms:
    def __init__(self) -> None:
        self._regions: dict[str, dict[int, int]] = {}

    def __call__(self, column: str, addr: int) -> int:
        regions = self._regions.setdefault(column, {})
        region = addr >> REGION_SHIFT
        rid = regions.setdefault(region, len(regions) + 1)
        return (rid << REGION_SHIFT) | (addr & ((1 << REGION_SHIFT) - 1) & PAGE_MASK)
