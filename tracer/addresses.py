"""Keep physical, DMA and kernel addresses out of traces unless asked.

Raw addresses defeat KASLR. Each address is replaced by a stable pseudonym:
its 2 MiB region gets a small sequential number (per column, in order of first
appearance) and its page offset inside that region is kept. Equal addresses
stay equal (a map joins its unmap), contiguity inside a region survives, and
sizes are untouched; absolute values are gone.
"""

from __future__ import annotations

import re

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

    def pfn(self, column: str, v: np.ndarray) -> np.ndarray:
        """Page frame numbers: pseudonymized as the addresses of their pages."""
        return self(column, v << np.uint64(12)) >> np.uint64(12)

    def pointer(self, column: str, v: np.ndarray) -> np.ndarray:
        """Values that may be pointers: those of 64 KiB and more (as signed) are."""
        s = v.view(np.int64)
        big = (s >= POINTER_MIN) | (s <= -POINTER_MIN)
        out = v.copy()
        if big.any():
            out[big] = self(column, v[big])
        return out


# Where a value may be a pointer or a code (ret of an ad-hoc probe), smaller is a code.
POINTER_MIN = 1 << 16
# Hex literals in free text (dmesg lines, kernel command lines): 0x with 5+ digits,
# or a bare word of 8-16 hex digits with a letter in it (`reg_base_addr fed90000`).
_HEX = re.compile(
    r"(?<![\w.])0[xX](?P<x>[0-9a-fA-F]{5,16})(?![\w.])"
    r"|(?<![\w.-])(?P<bare>(?=[0-9]*[a-fA-F])[0-9a-fA-F]{8,16})(?![\w.-])"
)
PSEUDONYM = "addr#"


class TextRedactor:
    """Address-like hex in strings to stable pseudonyms: equal values, equal names."""

    def __init__(self) -> None:
        self._ids: dict[int, int] = {}

    def _sub(self, m: re.Match) -> str:
        v = int(m.group("x") or m.group("bare"), 16)
        n = self._ids.setdefault(v, len(self._ids) + 1)
        return f"{PSEUDONYM}{n}"

    def text(self, s: str) -> str:
        return _HEX.sub(self._sub, s)

    def tree(self, doc):
        """Every string in a JSON-like value (keys too), redacted."""
        if isinstance(doc, str):
            return self.text(doc)
        if isinstance(doc, dict):
            return {self.text(k) if isinstance(k, str) else k: self.tree(v) for k, v in doc.items()}
        if isinstance(doc, list):
            return [self.tree(v) for v in doc]
        return doc


def raw_addresses_in(doc) -> list[str]:
    """The address-like hex literals left in a JSON-like value (a redaction test)."""
    found: list[str] = []

    def walk(x):
        if isinstance(x, str):
            found.extend(m.group(0) for m in _HEX.finditer(x))
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(k)
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(doc)
    return found


def raw_address_columns(table, meta: dict) -> list[str]:
    """Columns of a trace whose addresses look raw, not pseudonymized (a redaction test).

    Pseudonyms number 2 MiB regions 1, 2, 3... in order of appearance, so the
    largest region number cannot exceed the number of distinct regions; raw
    addresses (physical, IOVA, user pointers) have region numbers far larger.
    """
    import pyarrow.compute as pc  # noqa: PLC0415 - only this check needs it

    kinds = {}
    for p in meta.get("probes") or []:
        if p.get("op") == "iova_alloc":
            kinds[p["name"]] = ("ret", "pfn")
        elif p.get("group") == "user":
            kinds[p["name"]] = ("ret", "pointer")
    samples = {c: table.column(c).drop_null().to_numpy().view(np.uint64) for c in ADDRESS_COLUMNS}
    probe = table.column("probe")
    extra = {"addr": [samples["addr"]], "iova": [samples["iova"]]}
    for name, (col, kind) in kinds.items():
        v = table.filter(pc.equal(probe, name)).column(col).drop_null().to_numpy()
        v = v.astype(np.int64)
        if kind == "pfn":
            extra["iova"].append(v.view(np.uint64) << np.uint64(12))
        else:
            extra["addr"].append(v[np.abs(v) >= POINTER_MIN].view(np.uint64))
    bad = []
    for ns, parts in extra.items():
        v = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
        v = v[v != 0]
        if not len(v):
            continue
        regions = v >> np.uint64(REGION_SHIFT)
        if int(regions.max()) > len(np.unique(regions)):
            bad.append(ns)
    return bad
