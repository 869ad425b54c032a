"""Keep physical, DMA and kernel addresses out of traces unless asked.

Raw addresses defeat KASLR. Each address is replaced by a stable pseudonym:
its 2 MiB region gets a small sequential number (per column, in order of first
appearance) and its page offset inside that region is kept. Equal addresses
stay equal (a map joins its unmap), contiguity inside a region survives, and
sizes are untouched; absolute values are gone.
"""

from __future__ import annotations

import numpy as np

from ..tracefile.schema import ADDRESS_COLUMNS

REGION_SHIFT = 21


class Pseudonymizer:
    """Region -> number in order of first appearance (per column, per trace); page kept."""

    def __init__(self) -> None:
        self._ids: dict[str, dict[int, int]] = {c: {} for c in ADDRESS_COLUMNS}

    def __call__(self, column: str, v: np.ndarray) -> np.ndarray:
        ids = self._ids[column]
        region = v >> np.uint64(REGION_SHIFT)
        uniq, first, inverse = np.unique(region, return_index=True, return_inverse=True)
        for r in uniq[np.argsort(first)].tolist():
            if r not in ids:
                ids[r] = len(ids) + 1
        mapped = np.array([ids[r] for r in uniq.tolist()], dtype=np.uint64)[inverse]
        page = v & np.uint64(((1 << REGION_SHIFT) - 1) & ~0xFFF)
        out = (mapped << np.uint64(REGION_SHIFT)) | page
        return np.where(v == 0, np.uint64(0), out)
