"""The study's four copy access patterns, as region index lists (no GPU needed).

A pattern is the order in which one loop of the benchmark copies regions: for
copy k it names the host region and the device region (each `size` bytes,
region i at offset i * size of one large buffer).  The same lists are reused
for every loop, so loops are comparable, and they are seeded, so two runs (IOMMU
on and off) copy exactly the same regions in the same order.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

REGIONS = 256
RANDOM_CPU_SUBSET = 192  # of 256: the study's "random CPU regions"
SEED = 20240229

DESCRIPTIONS = {
    "single": "one region, copied again and again (host 0 <-> device 0)",
    "sequential": "regions 0..N-1 in order on both sides (one contiguous sweep)",
    "random-cpu": "192 of the 256 host regions in random order; device regions in order",
    "random-all": "host and device regions both in (independent) random order",
}
PATTERNS = tuple(DESCRIPTIONS)


@dataclass(frozen=True)
class Pattern:
    name: str
    host: tuple[int, ...]  # host region of copy k
    dev: tuple[int, ...]  # device region of copy k

    @property
    def copies(self) -> int:
        return len(self.host)


def make(name: str, regions: int = REGIONS, seed: int = SEED) -> Pattern:
    """The index lists of one pattern over `regions` regions."""
    if regions < 1:
        raise ValueError("regions must be at least 1")
    rng = random.Random(f"{seed}:{name}:{regions}")  # str seeds are stable across runs
    order = list(range(regions))
    if name == "single":
        host = dev = [0] * regions
    elif name == "sequential":
        host = dev = order
    elif name == "random-cpu":
        # 3/4 of the regions, so the host side is neither a sweep nor a full permutation
        n = max(1, regions * RANDOM_CPU_SUBSET // REGIONS)
        host, dev = rng.sample(order, n), order[:n]
    elif name == "random-all":
        host, dev = rng.sample(order, regions), rng.sample(order, regions)
    else:
        raise ValueError(f"unknown pattern {name!r} (one of: {', '.join(PATTERNS)}, all)")
    return Pattern(name, tuple(host), tuple(dev))


def parse_patterns(text: str) -> list[str]:
    """'all' or a comma list of pattern names."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    if names == ["all"]:
        return list(PATTERNS)
    for n in names:
        if n not in DESCRIPTIONS:
            raise ValueError(f"unknown pattern {n!r} (one of: {', '.join(PATTERNS)}, all)")
    if not names:
        raise ValueError("no pattern given")
    return names


def parse_sizes(text: str) -> list[int]:
    """Region sizes in bytes from log2 exponents: 'LO:HI[:STEP]' (inclusive) or 'a,b,c'."""
    text = text.strip()
    m = re.fullmatch(r"(\d+):(\d+)(?::(\d+))?", text)
    if m:
        lo, hi, step = int(m[1]), int(m[2]), int(m[3] or 1)
        if lo > hi or step < 1:
            raise ValueError(f"bad size range {text!r} (LO:HI[:STEP] with LO <= HI)")
        exps = list(range(lo, hi + 1, step))
    elif re.fullmatch(r"\d+(,\d+)*", text):
        exps = [int(x) for x in text.split(",")]
    else:
        raise ValueError(f"bad sizes {text!r} (log2 exponents: 6:24, 6:24:2 or 12,16,20)")
    if any(e > 34 for e in exps):
        raise ValueError("sizes are log2 exponents: 6:24 means 64 B .. 16 MiB")
    return [1 << e for e in exps]
