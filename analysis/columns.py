"""A trace's event columns as numpy arrays, for readers that must scale to 10 M events.

Strings stay dictionary codes (int32, -1 for null) with their values listed
once; numbers come with a validity mask. Nothing here makes a Python object
per event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..tracefile.reader import Trace


@dataclass
class Columns:
    n: int
    codes: dict[str, np.ndarray]  # string column -> codes into values[column]
    values: dict[str, list[str]]
    nums: dict[str, np.ndarray]  # numeric column, its own int type (0 where null)
    valid: dict[str, np.ndarray]  # numeric column -> bool
    index: np.ndarray | None = None  # each row's position among the trace's events

    def isin(self, column: str, wanted) -> np.ndarray:
        """Rows whose string column is one of `wanted`."""
        vals = self.values[column]
        ids = [i for i, v in enumerate(vals) if v in set(wanted)]
        return np.isin(self.codes[column], ids) if ids else np.zeros(self.n, bool)

    def merge(self, other: Columns) -> Columns:
        """The columns of both (same rows)."""
        return Columns(
            self.n,
            {**self.codes, **other.codes},
            {**self.values, **other.values},
            {**self.nums, **other.nums},
            {**self.valid, **other.valid},
            self.index,
        )

    def take(self, rows: np.ndarray) -> Columns:
        return Columns(
            int(rows.sum()) if rows.dtype == bool else len(rows),
            {k: v[rows] for k, v in self.codes.items()},
            self.values,
            {k: v[rows] for k, v in self.nums.items()},
            {k: v[rows] for k, v in self.valid.items()},
            None if self.index is None else self.index[rows],
        )

    def by_time(self) -> Columns:
        """Sorted by ts_ns (a finalized trace already is; a journal may not be)."""
        ts = self.nums.get("ts_ns")
        if ts is None or not self.n or not np.any(np.diff(ts) < 0):
            return self
        return self.take(np.argsort(ts, kind="stable"))


def _codes(col: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    if not pa.types.is_dictionary(col.type):
        col = col.dictionary_encode()
    col = col.unify_dictionaries() if col.num_chunks > 1 else col
    if col.num_chunks == 0:
        return np.zeros(0, np.int32), []
    values = col.chunk(0).dictionary.to_pylist()
    codes = np.concatenate([c.indices.fill_null(-1).to_numpy() for c in col.chunks])
    return codes.astype(np.int32, copy=False), values


def read(
    trace: Trace, columns: list[str], order_by_time: bool = True, rows: np.ndarray | None = None
) -> Columns:
    """These event columns (of `rows` only, a mask, if given); sorted by ts_ns when they
    include it (a journal may not be)."""
    codes, values, nums, valid = {}, {}, {}, {}
    n = 0
    keep = None if rows is None else pa.array(rows)
    for name in columns:  # one at a time: Arrow's copy is freed before the next
        col = trace.read([name]).column(name)
        if keep is not None:
            col = col.filter(keep)
        n = len(col)
        if pa.types.is_dictionary(col.type) or pa.types.is_string(col.type):
            codes[name], values[name] = _codes(col)
        else:
            arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
            valid[name] = (
                np.ones(len(arr), bool)
                if arr.null_count == 0
                else arr.is_valid().to_numpy(zero_copy_only=False)
            )
            nums[name] = arr.fill_null(False if pa.types.is_boolean(arr.type) else 0).to_numpy(
                zero_copy_only=False
            )
    index = np.arange(n) if rows is None else np.flatnonzero(rows)
    c = Columns(n, codes, values, nums, valid, index)
    return c.by_time() if order_by_time else c
