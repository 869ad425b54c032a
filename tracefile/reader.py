"""Read a trace (finalized Parquet, or the journal a killed recorder left): the one reader.

Every trace goes through validate, so no analysis sees a field of the wrong
type or an impossible row. Readers ask for the columns they need
(`Trace.read`): a finalized version-2 file whose column statistics show
nothing to repair is read lazily, those columns only; anything else (a
journal, version 1, a file that needs repair) is read and checked whole.
`Trace.table`/`Trace.events` (all event columns, stacks as frame lists) are
for small traces and ad-hoc use. A counting trace (`record --count`) has no
per-event rows: `Trace.counting` says so and `Trace.count_rows` holds what the
kernel counted per probe, device, size bucket and second.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import journal, sidecar
from .meta import TraceMeta
from .schema import COLUMNS, COUNT_COLUMNS, EVENT_COLUMNS
from .validate import (
    CORE,
    IMPOSSIBLE,
    NON_NEGATIVE,
    TraceError,
    check_counts,
    check_meta,
    check_stacks,
    check_table,
    decode_meta,
    same_kind,
    type_error,
)
from .writer import split_records

PARQUET_MAGIC = b"PAR1"
IPC_MAGIC = b"\xff\xff\xff\xff"  # the unframed journals of earlier versions
_STACKS = pa.list_(pa.string())

__all__ = ["Trace", "TraceError", "load"]


def _why(e: Exception) -> str:
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}"


@dataclass
class Trace:
    path: str
    meta: dict
    finalized: bool
    num_events: int
    notes: list[str] = field(default_factory=list)
    _pf: pq.ParquetFile | None = None  # version 2 Parquet read lazily: columns on demand
    _groups: list[int] = field(default_factory=list)  # its event row groups
    _count_groups: list[int] = field(default_factory=list)  # ... and its count row groups
    _events_table: pa.Table | None = None  # otherwise: the checked events, in memory
    _counts_table: pa.Table | None = None  # ... and the checked count rows
    _stack_rows: pa.Table | None = None
    _stacks: dict[int, list[str]] | None = None
    _table: pa.Table | None = None
    _events: pd.DataFrame | None = None
    _workload: dict | None = None
    _metadata: TraceMeta | None = None
    _count_rows: pa.Table | None = None

    @property
    def metadata(self) -> TraceMeta:
        """The metadata, typed (`meta` is the raw JSON)."""
        if self._metadata is None:
            self._metadata = TraceMeta.from_json(self.meta)
        return self._metadata

    @property
    def version(self) -> int:
        return int(self.meta.get("version", 1))

    @property
    def counting(self) -> bool:
        """A counting trace (`record --count`): count rows, no per-event rows."""
        return self.metadata.mode == "count"

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """Event rows, only these columns (all event columns if None)."""
        cols = list(EVENT_COLUMNS) if columns is None else list(columns)
        if self._pf is None:
            assert self._events_table is not None
            return self._events_table.select(cols)
        return self._row_groups(self._groups, cols)

    def _row_groups(self, groups: list[int], cols: list[str]) -> pa.Table:
        try:
            if not groups:
                return _empty(cols)
            return self._pf.read_row_groups(groups, columns=cols)  # type: ignore[union-attr]
        except Exception as e:  # pyarrow raises several types for damaged files
            raise TraceError(f"{self.path}: corrupt trace file ({_why(e)})") from None

    def count_rows(self) -> pa.Table:
        """A counting trace's rows (COUNT_COLUMNS): per probe, device, size bucket and
        second, the events counted and their bytes summed; empty for other traces."""
        if self._count_rows is None:
            if self._pf is not None and self._count_groups:
                t = self._row_groups(self._count_groups, list(COUNT_COLUMNS))
                self._count_rows = check_counts(t, self.path, self.notes)
            elif self._counts_table is not None:
                self._count_rows = self._counts_table
            else:
                self._count_rows = _empty(list(COUNT_COLUMNS))
        return self._count_rows

    def count_frame(self) -> pd.DataFrame:
        """count_rows() as a DataFrame, typed as `frame` types events."""
        return _pandas(self.count_rows())

    def frame(
        self, columns: list[str] | None = None, where: pc.Expression | None = None
    ) -> pd.DataFrame:
        """Event columns (all but the stacks if None) as a DataFrame like `events`: strings
        and numbers Arrow-backed, 64-bit values exact with nulls. No stacks are joined, so
        this is what analyses that need no frames read at scale; `where` (an Arrow
        expression on those columns) keeps only the rows they look at, before pandas."""
        t = self.read(columns)
        return _pandas(t if where is None else t.filter(where))

    def value_counts(self, column: str) -> dict:
        """Rows per value of a dictionary-coded column, counted on its codes (no strings)."""
        out: dict = {}
        for chunk in self.read([column]).column(column).chunks:
            if not pa.types.is_dictionary(chunk.type):
                chunk = chunk.dictionary_encode()
            codes = chunk.indices.fill_null(-1).to_numpy()
            n = np.bincount(codes[codes >= 0], minlength=len(chunk.dictionary))
            for value, k in zip(chunk.dictionary.to_pylist(), n.tolist(), strict=True):
                if k:
                    out[value] = out.get(value, 0) + k
        return out

    def stack_rows(self) -> pa.Table:
        """The stacks table: stack_id, frames."""
        if self._stack_rows is None:
            if self._pf is None:
                self._stack_rows = pa.table({"stack_id": pa.array([], pa.int32()),
                                             "frames": pa.array([], _STACKS)})  # fmt: skip
            else:
                n = self._pf.metadata.num_row_groups
                taken = set(self._groups) | set(self._count_groups)
                rest = [i for i in range(n) if i not in taken]
                try:
                    t = self._pf.read_row_groups(rest, columns=["stack_id", "frames"])
                except Exception as e:
                    raise TraceError(f"{self.path}: corrupt trace file ({_why(e)})") from None
                self._stack_rows = check_stacks(t, self.path, self.notes)
        return self._stack_rows

    @property
    def stacks(self) -> dict[int, list[str]]:
        """stack_id -> frames, innermost first."""
        if self._stacks is None:
            t = self.stack_rows()
            ids = t.column("stack_id").to_pylist()
            self._stacks = dict(zip(ids, t.column("frames").to_pylist(), strict=True))
        return self._stacks

    def frames(self, ids: pa.ChunkedArray | pa.Array) -> pa.Array:
        """Stack ids to their frame lists (null where the id is null or unknown).

        Large lists of large strings: millions of events times their frames
        exceed the 2 GiB a plain string array holds."""
        t = self.stack_rows()
        idx = pc.index_in(ids, value_set=t.column("stack_id").combine_chunks())
        frames = t.column("frames").combine_chunks().cast(pa.large_list(pa.large_string()))
        return frames.take(idx)

    @property
    def table(self) -> pa.Table:
        """Every event column, plus kstack/ustack as frame lists (version 1's layout)."""
        if self._table is None:
            t = self.read()
            t = t.append_column("kstack", self.frames(t.column("kstack_id")))
            self._table = t.append_column("ustack", self.frames(t.column("ustack_id")))
        return self._table

    @property
    def events(self) -> pd.DataFrame:
        """Every event column plus kstack/ustack frame lists: for small traces."""
        if self._events is None:
            self._events = _pandas(self.table)
        return self._events

    def workload(self) -> dict:
        """The workload's own results: trace metadata, else TRACE.workload.json (read once).

        Raises sidecar.SidecarError when the sidecar exists but cannot be read.
        """
        if self._workload is None:
            w = self.metadata.workload
            if not w:
                side = sidecar.read_workload(self.path)
                w = side.results if side else {}
            self._workload = w
        return self._workload


def _empty(cols: list[str]) -> pa.Table:
    return pa.table({c: pa.array([], COLUMNS[c][0]) for c in cols})


def _pandas(t: pa.Table) -> pd.DataFrame:
    # Arrow-backed columns keep 64-bit addresses exact despite nulls; dictionary
    # strings become plain ones, so comparisons and groupby act as on any string.
    t = t.cast(pa.schema([
        pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
        for f in t.schema
    ]))  # fmt: skip
    return t.to_pandas(types_mapper=pd.ArrowDtype)


def from_v1(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """A checked version-1 table (stacks inline) as version 2 (events with stack ids, stacks)."""
    ids: dict[tuple[str, ...], int] = {}
    cols = {}
    for col in ("kstack", "ustack"):
        out = []
        for s in table.column(col).to_pylist():
            out.append(None if s is None else ids.setdefault(tuple(s), len(ids)))
        cols[col + "_id"] = pa.array(out, pa.int32())
    events = table.drop_columns(["kstack", "ustack"])
    for name, arr in cols.items():
        events = events.append_column(name, arr)
    events = events.cast(pa.schema([pa.field(n, COLUMNS[n][0]) for n in events.column_names]))
    stacks = pa.table({"stack_id": pa.array(list(ids.values()), pa.int32()),
                       "frames": pa.array([list(k) for k in ids], _STACKS)})  # fmt: skip
    return events.select(list(EVENT_COLUMNS)), stacks


def _in_memory(path: str, raw_meta, table: pa.Table, notes: list[str], finalized=None) -> Trace:
    """Check a whole table (either version) and keep it in memory."""
    meta = check_meta(decode_meta(raw_meta, path), notes)
    counts = None
    if meta["version"] < 2:
        events, stacks = from_v1(check_table(table, path, notes, version=1))
    else:
        if "record" in table.column_names:
            ev, st, co = split_records(table)
            counts = check_counts(co, path, notes) if co.num_rows else None
        else:  # events only, from another writer
            ev, st = table, table.slice(0, 0)
        events = check_table(ev, path, notes, version=2)
        stacks = check_stacks(st, path, notes)
    if finalized is None:
        finalized = bool(meta.get("finalized", True))
    return Trace(path, meta, finalized, events.num_rows, notes,
                 _events_table=events, _counts_table=counts, _stack_rows=stacks)  # fmt: skip


def _read_journal(path: str, head: bytes) -> Trace:
    with open(path, "rb") as f:
        try:
            j = journal.read(f.read()) if head == journal.MAGIC else journal.read_legacy(f)
        except journal.JournalError as e:
            raise TraceError(f"{path}: trace journal is corrupt: {e}") from None
    notes: list[str] = []
    try:
        table = pa.Table.from_batches(j.batches, j.schema)
    except pa.ArrowInvalid as e:
        raise TraceError(f"{path}: trace journal is corrupt ({_why(e)})") from None
    t = _in_memory(path, j.schema.metadata, table, notes, finalized=False)
    notes.insert(
        0,
        "trace was not finalized (the recorder was killed?): events up to its last flush are "
        "here, exact per-probe counts and the exit status are not",
    )
    if j.damage:
        notes.insert(
            1,
            f"the journal is damaged from {j.damage}: the {len(j.batches)} batches before it "
            f"({t.num_events} events) are read, the rest is not",
        )
    return t


def _lazy_groups(pf: pq.ParquetFile, path: str) -> tuple[list[int], list[int]] | None:
    """The event row groups and the count row groups of a version-2 file, if its schema and
    column statistics show nothing validate would repair; None if it must be read and
    checked whole. (Count rows are few, and checked whenever they are read.)"""
    schema = pf.schema_arrow
    for name in EVENT_COLUMNS + ("record", "stack_id", "frames"):
        i = schema.get_field_index(name)
        if i < 0:
            return None  # another writer's file: absent columns are filled when checked
        got, want = schema.field(i).type, COLUMNS[name][0]
        if got != want:
            if not same_kind(got, want):
                raise type_error(path, name, got, want, 2)
            return None
    md = pf.metadata
    index = {schema.field(i).name: i for i in range(len(schema))}
    groups: list[int] = []
    counts: list[int] = []
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        if rg.num_rows == 0:
            continue  # the writer's empty event group of a trace without events: no statistics
        stats = {name: rg.column(index[name]).statistics for name in index}
        sid = stats["stack_id"]
        if sid is None:
            return None
        if sid.null_count == 0:
            continue  # a group of stack rows (checked when read)
        if sid.null_count != rg.num_rows:
            return None  # events and stacks in one group: another writer's file
        if "second" in index:  # files from before count rows have no such column
            sec = stats["second"]
            if sec is None:
                return None
            if sec.null_count == 0:
                counts.append(g)  # a group of count rows
                continue
            if sec.null_count != rg.num_rows:
                return None  # events and count rows in one group: another writer's file
        for name in CORE:
            s = stats[name]
            if s is None or s.null_count:
                return None
        for name in ("ts_ns", *NON_NEGATIVE):
            s = stats[name]
            if s is None:
                return None
            if s.null_count == rg.num_rows:
                continue
            if not s.has_min_max or s.min < 0 or s.max > IMPOSSIBLE:
                return None
        groups.append(g)
    return groups, counts


def load(path: str) -> Trace:
    if not os.path.exists(path):
        raise TraceError(f"{path}: no such file")
    size = os.path.getsize(path)
    if size == 0:
        raise TraceError(f"{path}: empty file (the recorder died before writing anything)")
    with open(path, "rb") as f:
        head = f.read(len(journal.MAGIC))
        f.seek(max(0, size - 4))
        tail = f.read(4)
    if head == journal.MAGIC or head.startswith(IPC_MAGIC):
        return _read_journal(path, head)
    if not head.startswith(PARQUET_MAGIC):
        raise TraceError(f"{path}: not an iommu-trace file (unknown format)")
    if tail != PARQUET_MAGIC:
        raise TraceError(f"{path}: truncated trace file (Parquet footer missing)")
    try:
        pf = pq.ParquetFile(path, page_checksum_verification=True)
        raw_meta = pf.schema_arrow.metadata
    except Exception as e:  # pyarrow raises several types for damaged files
        raise TraceError(f"{path}: corrupt trace file ({_why(e)})") from None
    meta = decode_meta(raw_meta, path)  # a foreign file is refused before its data is read
    try:
        lazy = _lazy_groups(pf, path) if meta["version"] >= 2 else None
        if lazy is None:
            return _in_memory(path, raw_meta, pf.read(), [])
    except TraceError:
        raise
    except Exception as e:
        raise TraceError(f"{path}: corrupt trace file ({_why(e)})") from None
    notes: list[str] = []
    meta = check_meta(meta, notes)
    groups, counts = lazy
    n = sum(pf.metadata.row_group(i).num_rows for i in groups)
    return Trace(path, meta, bool(meta.get("finalized", True)), n, notes, _pf=pf,
                 _groups=groups, _count_groups=counts)  # fmt: skip
